// A live time-series chart on uPlot: one series per name, the newest POINTS_MAX samples.
import uPlot from 'uplot';

/** samples kept per chart (at one a second: five minutes) */
export const POINTS_MAX = 300;
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569', '#ea580c'];
/** series drawn per chart; more names are left out of the chart (the tables still show them) */
export const SERIES_MAX = COLORS.length;

export class LiveChart {
  private readonly xs: number[] = [];
  private readonly ys = new Map<string, Array<number | null>>();
  private plot: uPlot | undefined;
  private stale = true;
  readonly root: HTMLDivElement;

  constructor(private readonly title: string, private readonly unit: string) {
    this.root = document.createElement('div');
    this.root.className = 'chart';
    this.root.dataset.points = '0';
  }

  /** one sample per series at time `tMs`; a series missing from `values` gets a gap */
  push(tMs: number, values: Map<string, number>): void {
    for (const name of values.keys()) {
      if (!this.ys.has(name) && this.ys.size < SERIES_MAX) {
        this.ys.set(name, this.xs.map(() => null));
        this.stale = true;
      }
    }
    this.xs.push(tMs / 1000);
    for (const [name, ys] of this.ys) ys.push(values.get(name) ?? null);
    if (this.xs.length > POINTS_MAX) {
      this.xs.shift();
      for (const ys of this.ys.values()) ys.shift();
    }
    this.root.dataset.points = String(this.xs.length);
    this.draw();
  }

  /** draws into its root when the root is on the page */
  draw(): void {
    if (!this.root.isConnected) return;
    const data = [this.xs, ...this.ys.values()] as uPlot.AlignedData;
    const width = Math.max(300, this.root.clientWidth || 600);
    if (this.stale || !this.plot || this.plot.root.parentElement !== this.root) {
      this.plot?.destroy();
      this.root.replaceChildren();
      this.plot = new uPlot({
        title: this.title,
        width,
        height: 200,
        series: [{}, ...[...this.ys.keys()].map((name, i) => ({ label: name, stroke: COLORS[i % COLORS.length], width: 1.5, value: (_u: uPlot, v: number | null) => (v === null ? '–' : `${v.toFixed(v < 10 ? 2 : 0)} ${this.unit}`) }))],
        axes: [{}, { size: 60 }],
        scales: { y: { range: (_u, min, max) => [0, Math.max(1, max, min)] } },
      }, data, this.root);
      this.stale = false;
    } else {
      if (this.plot.width !== width) this.plot.setSize({ width, height: 200 });
      this.plot.setData(data);
    }
  }
}
