// How fast a node sends full copies of partitions (rebalancing), from what its foreground writes
// feel. The rule: rebalancing may cost the foreground at most 2× its p99. The node
// measures its own writes (as leader: arrival to quorum ack), learns their usual latency while it
// sends no copy, and while it does, widens the gap between copy parts when the writes slow down
// past `slack` × that baseline and narrows it again when they recover (multiplicative both ways,
// as TCP's congestion window). Pure: the caller feeds latencies and closes windows on its clock.
import { limits } from './limits.js';

export interface PacerOptions {
  /** the gap between parts with nothing to protect (no baseline yet, or writes at baseline) */
  minIntervalMs: number;
  /** the widest gap: a copy always progresses (one 256 KiB part per this) */
  maxIntervalMs: number;
  /** a window with fewer writes says nothing (keeps the gap) */
  samplesMin: number;
  /** writes slower than slack × baseline (at the window's p99, what the issue bounds) widen the gap */
  slack: number;
  /** weight of a new quiet window in the baseline */
  baselineWeight: number;
}

export const defaultPacerOptions: PacerOptions = {
  minIntervalMs: limits.copyPartIntervalMsMin,
  maxIntervalMs: limits.copyPartIntervalMsMax,
  samplesMin: 50,
  slack: 1.5,
  baselineWeight: 0.2,
};

/** one window's verdict, for metrics and logs */
export interface PacerWindow { samples: number; p99Ms: number | null; baselineMs: number | null; intervalMs: number }

export class CopyPacer {
  private samples: number[] = [];
  private baseline: number | null = null;
  private interval: number;

  constructor(private readonly o: PacerOptions = defaultPacerOptions) {
    this.interval = o.minIntervalMs;
  }

  /** One foreground write's latency. Bounded: past 10,000 in a window, later ones are skipped. */
  record(latencyMs: number): void {
    if (this.samples.length < PACER_SAMPLES_MAX) this.samples.push(latencyMs);
  }

  /** The gap between copy parts to use from now on. */
  get intervalMs(): number { return this.interval; }

  /**
   * Close a window: `copying` says whether this node sent copies during it, `quiet` whether its
   * writes then show the usual foreground (nothing moving anywhere), to learn the baseline from.
   */
  closeWindow(copying: boolean, quiet = !copying): PacerWindow {
    const n = this.samples.length;
    const p99 = n >= this.o.samplesMin ? quantile(this.samples, 0.99) : null;
    this.samples = [];
    if (p99 !== null && quiet) {
      this.baseline = this.baseline === null ? p99 : this.baseline + this.o.baselineWeight * (p99 - this.baseline);
    }
    // Between two copies (a move sends one per partition) the gap narrows as in a good window, so
    // the next copy starts near the pace the last one found rather than at full speed.
    const slow = copying && p99 !== null && this.baseline !== null && p99 > this.o.slack * this.baseline;
    const judged = !copying || (p99 !== null && this.baseline !== null);
    if (slow) this.interval = Math.min(this.o.maxIntervalMs, this.interval * 2);
    else if (judged) this.interval = Math.max(this.o.minIntervalMs, Math.round(this.interval * 0.75));
    return { samples: n, p99Ms: p99, baselineMs: this.baseline, intervalMs: this.interval };
  }
}

/** a window's samples kept at most (a node leading 10k writes a second fills it) */
const PACER_SAMPLES_MAX = 10_000;

/** nearest rank: the smallest sample that at least q of them do not exceed */
function quantile(xs: number[], q: number): number {
  const sorted = Float64Array.from(xs).sort();
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}
