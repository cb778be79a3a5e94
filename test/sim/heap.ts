// The simulator's event queue: a binary min-heap on (time, insertion number), so events at the
// same simulated time run in the order they were scheduled and every run is reproducible.
export interface Scheduled<T> { at: number; n: number; ev: T }

export class EventQueue<T> {
  private readonly h: Array<Scheduled<T>> = [];
  private counter = 0;

  get size(): number { return this.h.length; }

  push(at: number, ev: T): void {
    const h = this.h;
    const s: Scheduled<T> = { at, n: this.counter++, ev };
    // sift up by moving parents down into the hole, then place s once
    let i = h.length;
    h.push(s);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(s, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = s;
  }

  pop(): Scheduled<T> | undefined {
    const h = this.h;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    const n = h.length;
    if (n > 0) {
      // sift down: move the smaller child up into the hole until `last` fits
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const m = r < n && less(h[r], h[l]) ? r : l;
        if (!less(h[m], last)) break;
        h[i] = h[m];
        i = m;
      }
      h[i] = last;
    }
    return top;
  }

  /** drop every queued event the predicate rejects */
  retain(keep: (ev: T) => boolean): void {
    const kept = this.h.filter((s) => keep(s.ev));
    this.h.length = 0;
    for (const s of kept.sort((a, b) => a.at - b.at || a.n - b.n)) this.h.push(s);
  }
}

function less<T>(a: Scheduled<T>, b: Scheduled<T>): boolean { return a.at < b.at || (a.at === b.at && a.n < b.n); }
