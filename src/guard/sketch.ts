// Aggregates over many keys in fixed memory: a count-min sketch (counts per key, never under the
// truth, over it by at most ε·N with probability 1−δ, where N is the total count) over a sliding
// window, and Space-Saving top-K (the K heaviest keys; a tracked key's count is over its truth by
// at most its `error`, and any key with a true count above N/K is tracked).
import assert from 'node:assert/strict';

/** FNV-1a over UTF-16 code units, seeded: two of them give the d row hashes (Kirsch–Mitzenmacher). */
export function fnv(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // final avalanche (murmur3 fmix32): FNV's low bits are weak for short similar keys
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b) >>> 0; h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35) >>> 0; h ^= h >>> 16;
  return h >>> 0;
}

export class CountMinSketch {
  readonly width: number;
  readonly depth: number;
  private readonly cells: Uint32Array;
  total = 0;

  /** `epsilon`: error as a fraction of the total count; `delta`: probability of exceeding it */
  constructor(epsilon: number, delta: number) {
    assert.ok(epsilon > 0 && epsilon < 1 && delta > 0 && delta < 1, 'sketch error bounds');
    this.width = Math.ceil(Math.E / epsilon);
    this.depth = Math.ceil(Math.log(1 / delta));
    this.cells = new Uint32Array(this.width * this.depth);
  }

  get bytes(): number { return this.cells.byteLength; }

  private index(row: number, h1: number, h2: number): number {
    return row * this.width + ((h1 + Math.imul(row, h2 | 1)) >>> 0) % this.width;
  }

  /** Adds `n` and returns the new estimate (conservative update: only the minimal cells grow). */
  add(key: string, n = 1): number {
    return this.addHashed(fnv(key, 0), fnv(key, 0x9e3779b9), n);
  }

  estimate(key: string): number {
    return this.estimateHashed(fnv(key, 0), fnv(key, 0x9e3779b9));
  }

  /** the same with the key's two hashes computed once by the caller (hashes()) */
  addHashed(h1: number, h2: number, n = 1): number {
    const target = this.estimateHashed(h1, h2) + n;
    for (let r = 0; r < this.depth; r++) {
      const i = this.index(r, h1, h2);
      if (this.cells[i] < target) this.cells[i] = Math.min(target, 0xffffffff);
    }
    this.total += n;
    return target;
  }

  estimateHashed(h1: number, h2: number): number {
    let min = Infinity;
    for (let r = 0; r < this.depth; r++) min = Math.min(min, this.cells[this.index(r, h1, h2)]);
    return min;
  }

  clear(): void {
    this.cells.fill(0);
    this.total = 0;
  }
}

/**
 * Counts per key over a sliding window of `windowMs`, approximated from two fixed windows: the
 * current one and the previous one weighted by how much of it still overlaps the sliding window.
 */
export class WindowedSketch {
  private cur: CountMinSketch;
  private prev: CountMinSketch;
  private startMs: number | undefined;

  constructor(readonly windowMs: number, epsilon: number, delta: number) {
    this.cur = new CountMinSketch(epsilon, delta);
    this.prev = new CountMinSketch(epsilon, delta);
  }

  get bytes(): number { return this.cur.bytes + this.prev.bytes; }

  /** Moves the windows to `nowMs`; says whether a new window began (so callers can decay their own state). */
  advance(nowMs: number): boolean {
    if (this.startMs === undefined) {
      this.startMs = nowMs;
      return false;
    }
    if (nowMs < this.startMs + this.windowMs) return false;
    if (nowMs >= this.startMs + 2 * this.windowMs) {
      this.cur.clear();
      this.prev.clear();
      this.startMs = nowMs;
      return true;
    }
    const old = this.prev;
    old.clear();
    this.prev = this.cur;
    this.cur = old;
    this.startMs += this.windowMs;
    return true;
  }

  add(key: string, nowMs: number, n = 1): number {
    this.advance(nowMs);
    const h1 = fnv(key, 0);
    const h2 = fnv(key, 0x9e3779b9);
    const cur = this.cur.addHashed(h1, h2, n);
    return cur + this.prev.estimateHashed(h1, h2) * (1 - this.into(nowMs));
  }

  estimate(key: string, nowMs: number): number {
    return this.cur.estimate(key) + this.prev.estimate(key) * (1 - this.into(nowMs));
  }

  private into(nowMs: number): number {
    return this.startMs === undefined ? 0 : Math.min(1, Math.max(0, (nowMs - this.startMs) / this.windowMs));
  }
}

export interface TopEntry {
  key: string;
  count: number;
  /** the count may exceed the truth by at most this much */
  error: number;
  /** distinct members seen while tracked, at most `membersMax` */
  members: Set<string>;
}

/** Space-Saving: K counters; a new key replaces the smallest one and inherits its count as error. */
export class TopK {
  private readonly entries = new Map<string, TopEntry>();

  constructor(readonly k: number, readonly membersMax: number) {
    assert.ok(k >= 1 && membersMax >= 0, 'top-K sizes');
  }

  get size(): number { return this.entries.size; }

  /** rough bytes held (keys, counters, member sets) for the memory metric */
  get bytes(): number {
    let b = 0;
    for (const e of this.entries.values()) b += 64 + e.key.length * 2 + e.members.size * 48;
    return b;
  }

  add(key: string, member?: string, n = 1): TopEntry {
    let e = this.entries.get(key);
    if (!e) {
      if (this.entries.size < this.k) {
        e = { key, count: 0, error: 0, members: new Set() };
      } else {
        let min: TopEntry | undefined;
        for (const x of this.entries.values()) if (!min || x.count < min.count) min = x;
        this.entries.delete(min!.key);
        e = { key, count: min!.count, error: min!.count, members: new Set() };
      }
      this.entries.set(key, e);
    }
    e.count += n;
    if (member !== undefined && e.members.size < this.membersMax) e.members.add(member);
    return e;
  }

  get(key: string): TopEntry | undefined { return this.entries.get(key); }

  /** heaviest first */
  top(n = this.k): TopEntry[] {
    return [...this.entries.values()].sort((a, b) => b.count - a.count).slice(0, n);
  }

  /** Halves every count (a new window began): old heavy hitters fade instead of staying forever. */
  decay(): void {
    for (const [k, e] of this.entries) {
      e.count = Math.floor(e.count / 2);
      e.error = Math.floor(e.error / 2);
      if (e.count === 0) this.entries.delete(k);
    }
  }

  delete(key: string): void { this.entries.delete(key); }
}
