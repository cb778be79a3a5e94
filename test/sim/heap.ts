// The simulator's event queue: a binary min-heap on (time, insertion number), so events at the
// same simulated time run in the order they were scheduled and every run is reproducible.
export interface Scheduled<T> { at: number; n: number; ev: T }

export class EventQueue<T> {
  private readonly h: Array<Scheduled<T>> = [];
  private counter = 0;

  get size(): number { return this.h.length; }

  push(at: number, ev: T): void {
    const h = this.h;
    h.push({ at, n: this.counter++, ev });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  pop(): Scheduled<T> | undefined {
    const h = this.h;
    if (h.length === 0) return undefined;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l], h[m])) m = l;
        if (r < h.length && less(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
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
