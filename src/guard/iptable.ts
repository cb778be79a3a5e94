// Per-address state in memory fixed at start: every array is allocated from `limits.ipsMax`, so
// no rate or variety of traffic can grow it.
// - IpTable: addresses as 4 × u32 (IPv4 as its IPv4-mapped IPv6 form, so no two addresses share a
//   key; keys are compared whole, so a hash collision costs a probe, never a merge), an
//   open-addressing hash table (seeded hash, linear probing, load ≤ 1/2, backward-shift deletion:
//   no tombstones) and an intrusive LRU list over entry indexes.
// - IpState: the scenarios' state as columns indexed by entry: a leaky bucket is a float64 level
//   (float32's rounding tips events that land exactly on the capacity, e.g. 20 × 0.95 after 20
//   pours) and a u32 time (ms from a base that moves forward as event time does); a blackholed bucket is
//   level −1 with the time it ends; a ratio window is four u32; the distinct values a bucket has
//   seen are chains of 4-value blocks from one shared pool.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { BucketSpec, PourResult } from './bucket.js';
import { fnv } from './sketch.js';

const EMPTY = -1;

/** murmur3's fmix32 */
function mix(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); h ^= h >>> 16;
  return h >>> 0;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Dotted quad from `s[from, to)` as a u32, or −1. */
function parseV4(s: string, from: number, to: number): number {
  let v = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = from; i <= to; i++) {
    const c = i < to ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 255) return -1;
      v = v * 256 + part;
      parts++;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + c - 48;
      digits++;
    } else {
      return -1;
    }
  }
  return parts === 4 ? v : -1;
}

/** IPv6 text (with `::`, an embedded dotted quad, a %zone ignored) into 8 groups; false if malformed. */
function parseV6(s: string, g: Uint16Array): boolean {
  let end = s.indexOf('%');
  if (end < 0) end = s.length;
  let n = 0;
  let gap = -1;
  let i = 0;
  if (s.startsWith('::')) {
    gap = 0;
    i = 2;
  }
  while (i < end) {
    let v = 0;
    let digits = 0;
    const start = i;
    for (; i < end && digits < 5; i++) {
      const d = hexDigit(s.charCodeAt(i));
      if (d < 0) break;
      v = v * 16 + d;
      digits++;
    }
    if (i < end && s.charCodeAt(i) === 46) {
      const v4 = parseV4(s, start, end);
      if (v4 < 0 || n > 6) return false;
      g[n++] = v4 >>> 16;
      g[n++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (digits === 0 || digits > 4 || n >= 8) return false;
    g[n++] = v;
    if (i === end) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && s.charCodeAt(i) === 58) {
      if (gap >= 0) return false;
      gap = n;
      i++;
    } else if (i === end) {
      return false;
    }
  }
  if (gap < 0) return n === 8;
  if (n > 7) return false;
  const tail = n - gap;
  for (let k = 0; k < tail; k++) g[7 - k] = g[n - 1 - k];
  for (let k = gap; k < 8 - tail; k++) g[k] = 0;
  return true;
}

const groups = new Uint16Array(8);

/**
 * An address's key: IPv4 a.b.c.d → [0, 0, 0xffff, a.b.c.d]; IPv6 → its 128 bits. Text that is
 * neither (the parser upstream lets none through) gets [0xfffffffe, three 32-bit hashes]: a
 * 96-bit hash, whose collisions (≈ n²/2⁹⁷) would only merge two such keys' counts.
 */
export function ipKey(ip: string, out: Uint32Array): void {
  const v4 = ip.includes(':') ? -1 : parseV4(ip, 0, ip.length);
  if (v4 >= 0) {
    out[0] = 0; out[1] = 0; out[2] = 0xffff; out[3] = v4;
  } else if (v4 < 0 && ip.includes(':') && parseV6(ip, groups)) {
    for (let k = 0; k < 4; k++) out[k] = (groups[2 * k] << 16 | groups[2 * k + 1]) >>> 0;
  } else {
    out[0] = 0xfffffffe; out[1] = fnv(ip, 1); out[2] = fnv(ip, 2); out[3] = fnv(ip, 3);
  }
}

/**
 * Up to `capacity` addresses. Full policy: inserting a new address evicts the least recently
 * used one (`onEvict` is told its index first, so the columns indexed by it can be cleared).
 */
export class IpTable {
  size = 0;
  evictions = 0;
  /** called with an entry's index just before the entry is reused or removed */
  onEvict: (entry: number) => void = () => undefined;
  private readonly keys: Uint32Array;
  private readonly hashes: Uint32Array;
  /** entry index + 1 per slot; 0 is empty */
  private readonly slots: Int32Array;
  private readonly mask: number;
  /** LRU: `prev` points towards the most recently used end */
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private mru = EMPTY;
  private lru = EMPTY;
  /** entries never used yet start at `fresh`; removed ones are chained through `next` */
  private fresh = 0;
  private freeList = EMPTY;
  private readonly key = new Uint32Array(4);
  private readonly seed = new Uint32Array(randomBytes(8).buffer, 0, 2);

  constructor(readonly capacity: number) {
    assert.ok(Number.isInteger(capacity) && capacity >= 1 && capacity < 2 ** 30, 'IpTable capacity');
    this.keys = new Uint32Array(capacity * 4);
    this.hashes = new Uint32Array(capacity);
    let n = 2;
    while (n < capacity * 2) n *= 2;
    this.slots = new Int32Array(n);
    this.mask = n - 1;
    this.prev = new Int32Array(capacity);
    this.next = new Int32Array(capacity);
  }

  /** bytes of the arrays above */
  get bytes(): number {
    return this.keys.byteLength + this.hashes.byteLength + this.slots.byteLength + this.prev.byteLength + this.next.byteLength;
  }

  /**
   * Seeded per table: without the seed, addresses that share a slot cannot be computed, so an
   * attacker free to pick the low 64 bits of its IPv6 addresses cannot pile them into one probe
   * chain. Each step is a bijection of the word folded in, so two keys collide only if their
   * running hashes do; IPv4 keys (only the last word varies) never share a 32-bit hash.
   */
  private hashWords(k: Uint32Array): number {
    let h = mix(k[0] ^ this.seed[0]);
    h = mix(h ^ k[1]);
    h = mix(h ^ k[2]);
    return mix((h ^ k[3]) + this.seed[1]);
  }

  private hashKey(): number {
    return this.hashWords(this.key);
  }

  /** the 32-bit hash of an address's key in this table (tests: to find two addresses whose hashes collide) */
  hash(ip: string): number {
    const k = new Uint32Array(4);
    ipKey(ip, k);
    return this.hashWords(k);
  }

  /** the slot holding the current key, or the empty slot where it belongs */
  private find(h: number): number {
    const k = this.key;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const e = this.slots[i] - 1;
      if (e < 0) return i;
      if (this.hashes[e] === h) {
        const o = e * 4;
        if (this.keys[o] === k[0] && this.keys[o + 1] === k[1] && this.keys[o + 2] === k[2] && this.keys[o + 3] === k[3]) return i;
      }
    }
  }

  /** The entry of `ip`, made the most recently used; −1 when absent. */
  get(ip: string): number {
    ipKey(ip, this.key);
    const e = this.slots[this.find(this.hashKey())] - 1;
    if (e >= 0) this.touch(e);
    return e;
  }

  /** whether the last `upsert` added its address */
  added = false;

  /** The entry of `ip`, added (evicting the least recently used when full) if absent; `added` says which. */
  upsert(ip: string): number {
    ipKey(ip, this.key);
    const h = this.hashKey();
    let slot = this.find(h);
    const found = this.slots[slot] - 1;
    if (found >= 0) {
      this.touch(found);
      this.added = false;
      return found;
    }
    if (this.size === this.capacity) {
      this.evictOldest();
      slot = this.find(h); // the removal may have shifted the probe sequence
    }
    let e: number;
    if (this.freeList !== EMPTY) {
      e = this.freeList;
      this.freeList = this.next[e];
    } else {
      e = this.fresh++;
    }
    this.size++;
    this.keys.set(this.key, e * 4);
    this.hashes[e] = h;
    this.slots[slot] = e + 1;
    this.linkFront(e);
    this.added = true;
    return e;
  }

  /** the least recently used entry, or −1 */
  get oldest(): number { return this.lru; }

  /** Evicts the least recently used entry (to free what it holds); false when empty. */
  evictOldest(): boolean {
    if (this.lru === EMPTY) return false;
    this.evictions++;
    this.delete(this.lru);
    return true;
  }

  /** Removes entry `e` (`onEvict` is told first); its index is reused by a later insert. */
  delete(e: number): void {
    this.remove(e);
    this.next[e] = this.freeList;
    this.freeList = e;
  }

  /** entries from most to least recently used (tests, diagnostics) */
  *entries(): Generator<number> {
    for (let e = this.mru; e !== EMPTY; e = this.next[e]) yield e;
  }

  /** the key words of an entry (tests, diagnostics) */
  keyOf(e: number): number[] {
    return [...this.keys.subarray(e * 4, e * 4 + 4)];
  }

  /** Unlinks and unhashes entry `e` (backward-shift deletion keeps every probe sequence intact). */
  private remove(e: number): void {
    this.onEvict(e);
    let i = this.hashes[e] & this.mask;
    while (this.slots[i] !== e + 1) {
      assert.ok(this.slots[i] !== 0, 'IpTable: entry not in its probe sequence');
      i = (i + 1) & this.mask;
    }
    for (let j = (i + 1) & this.mask; this.slots[j] !== 0; j = (j + 1) & this.mask) {
      const home = this.hashes[this.slots[j] - 1] & this.mask;
      // the entry at j may move back to i when i lies on its probe path (home … j)
      if (((j - home) & this.mask) >= ((j - i) & this.mask)) {
        this.slots[i] = this.slots[j];
        i = j;
      }
    }
    this.slots[i] = 0;
    this.unlink(e);
    this.size--;
  }

  private touch(e: number): void {
    if (this.mru === e) return;
    this.unlink(e);
    this.linkFront(e);
  }

  private unlink(e: number): void {
    const p = this.prev[e];
    const n = this.next[e];
    if (p === EMPTY) this.mru = n; else this.next[p] = n;
    if (n === EMPTY) this.lru = p; else this.prev[n] = p;
  }

  private linkFront(e: number): void {
    this.prev[e] = EMPTY;
    this.next[e] = this.mru;
    if (this.mru !== EMPTY) this.prev[this.mru] = e;
    this.mru = e;
    if (this.lru === EMPTY) this.lru = e;
  }
}

const BLOCK_VALUES = 4;

/**
 * The distinct values of many buckets in one pool of 4-value blocks, each bucket's in a chain
 * oldest first. Full policy: `reclaim()` is asked to free blocks (the guard evicts its least
 * recently used addresses); if it cannot, the bucket asking starts an empty set.
 */
export class SeenPool {
  private readonly values: Uint32Array;
  private readonly nextBlock: Int32Array;
  private free: number;
  blocksUsed = 0;
  /** per set: first block + 1 (0: none), number of values, offset of the oldest in the first block */
  private readonly head: Int32Array;
  private readonly count: Uint32Array;
  private readonly offset: Uint8Array;

  constructor(sets: number, readonly blocks: number, private readonly reclaim: () => boolean) {
    assert.ok(blocks >= 1, 'SeenPool needs a block');
    this.values = new Uint32Array(blocks * BLOCK_VALUES);
    this.nextBlock = new Int32Array(blocks);
    for (let b = 0; b < blocks; b++) this.nextBlock[b] = b + 1 < blocks ? b + 1 : EMPTY;
    this.free = 0;
    this.head = new Int32Array(sets);
    this.count = new Uint32Array(sets);
    this.offset = new Uint8Array(sets);
  }

  get bytes(): number {
    return this.values.byteLength + this.nextBlock.byteLength + this.head.byteLength + this.count.byteLength + this.offset.byteLength;
  }

  size(set: number): number { return this.count[set]; }

  /** values of a set, oldest first (tests) */
  list(set: number): number[] {
    const out: number[] = [];
    let b = this.head[set] - 1;
    let pos = this.offset[set];
    for (let left = this.count[set]; left > 0; left--) {
      out.push(this.values[b * BLOCK_VALUES + pos]);
      if (++pos === BLOCK_VALUES) { pos = 0; b = this.nextBlock[b]; }
    }
    return out;
  }

  /**
   * Adds `v` unless present; says whether it was added. Past `max` values the oldest is dropped.
   */
  add(set: number, v: number, max: number): boolean {
    let n = this.count[set];
    let b = this.head[set] - 1;
    let pos = this.offset[set];
    let last = b;
    for (let left = n; left > 0; left--) {
      if (this.values[b * BLOCK_VALUES + pos] === v) return false;
      last = b;
      if (++pos === BLOCK_VALUES) { pos = 0; b = this.nextBlock[b]; }
    }
    // `pos` is now where the next value goes: in `last` unless it is full (or there is none)
    if (n === 0 || pos === 0) {
      const nb = this.alloc(set);
      if (nb === EMPTY) {
        // the set was emptied to make room (start it again), or there is none at all: the value
        // is not kept and not counted (a count too low, never too high)
        return this.count[set] !== n ? this.add(set, v, max) : false;
      }
      if (n === 0) {
        this.head[set] = nb + 1;
        this.offset[set] = 0;
        pos = 0;
      } else {
        this.nextBlock[last] = nb;
      }
      last = nb;
    }
    this.values[last * BLOCK_VALUES + pos] = v;
    this.count[set] = n + 1;
    if (n + 1 > max) this.dropOldest(set);
    return true;
  }

  clear(set: number): void {
    let b = this.head[set] - 1;
    let blocks = this.count[set] === 0 ? 0 : Math.ceil((this.offset[set] + this.count[set]) / BLOCK_VALUES);
    while (blocks-- > 0) {
      const n = this.nextBlock[b];
      this.release(b);
      b = n;
    }
    this.head[set] = 0;
    this.count[set] = 0;
    this.offset[set] = 0;
  }

  private dropOldest(set: number): void {
    const off = this.offset[set] + 1;
    this.count[set]--;
    if (off === BLOCK_VALUES || this.count[set] === 0) {
      const b = this.head[set] - 1;
      this.head[set] = this.count[set] === 0 ? 0 : this.nextBlock[b] + 1;
      this.offset[set] = 0;
      this.release(b);
    } else {
      this.offset[set] = off;
    }
  }

  /** A free block, reclaiming when none is; EMPTY when there is none (after emptying `set` itself if it held any). */
  private alloc(set: number): number {
    while (this.free === EMPTY) {
      if (this.reclaim()) continue;
      if (this.count[set] > 0) this.clear(set);
      return EMPTY;
    }
    return this.allocFree();
  }

  private allocFree(): number {
    const b = this.free;
    assert.ok(b !== EMPTY, 'SeenPool: no free block');
    this.free = this.nextBlock[b];
    this.nextBlock[b] = EMPTY;
    this.blocksUsed++;
    return b;
  }

  private release(b: number): void {
    this.nextBlock[b] = this.free;
    this.free = b;
    this.blocksUsed--;
  }
}

/** what the columns are for, by scenario index */
export interface IpScenarioSpec {
  type: 'leaky' | 'ratio' | 'prefix';
  bucket: BucketSpec;
}

/** times are u32 ms from `baseMs`; the base starts this far before the first event … */
const BASE_LEAD_MS = 2 ** 31;
/** … and moves when event time comes this close to the top of the u32 range (then a run over the columns shifts them) */
const REBASE_MARGIN_MS = 2 ** 28;
const TIME_MAX = 2 ** 32 - 1;

/**
 * The scenarios' per-address state for up to `ipsMax` addresses. `enter(ip)` selects (and if
 * needed adds) the address; `pour` and `count` then act on it. An address's values are its
 * entry's row in each column; eviction (IpTable's LRU) zeroes the row, which is the state of an
 * address never seen.
 */
export class IpState {
  readonly table: IpTable;
  readonly seen: SeenPool;
  private readonly level: Array<Float64Array | undefined>;
  private readonly time: Array<Uint32Array | undefined>;
  /** distinct set number per scenario (−1: not distinct); an entry's set is entry × distinctCount + it */
  private readonly distinctOf: number[];
  private readonly distinctCount: number;
  private readonly rStart: Array<Uint32Array | undefined>;
  private readonly rTotal: Array<Uint32Array | undefined>;
  private readonly rMatched: Array<Uint32Array | undefined>;
  private readonly rUntil: Array<Uint32Array | undefined>;
  /** the input partition the address was last seen in (the caller's number for it) + 1; 0: none */
  private readonly source: Int32Array;
  private baseMs: number | undefined;
  private current = EMPTY;
  rebases = 0;

  /** `seenBlocks`: 4-value blocks shared by the distinct sets (default one per address and distinct scenario) */
  constructor(readonly ipsMax: number, private readonly specs: IpScenarioSpec[], seenBlocks?: number) {
    this.table = new IpTable(ipsMax);
    const col32 = (want: boolean) => (want ? new Uint32Array(ipsMax) : undefined);
    this.level = specs.map((s) => (s.type === 'leaky' ? new Float64Array(ipsMax) : undefined));
    this.time = specs.map((s) => col32(s.type === 'leaky'));
    let d = 0;
    this.distinctOf = specs.map((s) => (s.type === 'leaky' && s.bucket.distinct ? d++ : -1));
    this.distinctCount = d;
    this.rStart = specs.map((s) => col32(s.type === 'ratio'));
    this.rTotal = specs.map((s) => col32(s.type === 'ratio'));
    this.rMatched = specs.map((s) => col32(s.type === 'ratio'));
    this.rUntil = specs.map((s) => col32(s.type === 'ratio'));
    this.seen = new SeenPool(ipsMax * d, d === 0 ? 1 : (seenBlocks ?? ipsMax * d), () => {
      const old = this.table.oldest;
      return old !== EMPTY && old !== this.current && this.table.evictOldest();
    });
    this.source = new Int32Array(ipsMax);
    this.table.onEvict = (e) => this.clearRow(e);
  }

  get size(): number { return this.table.size; }
  get evictions(): number { return this.table.evictions; }

  /** bytes of every array (the memory this state holds, whatever the traffic) */
  get bytes(): number {
    let b = this.table.bytes + this.seen.bytes + this.source.byteLength;
    for (const cols of [this.level, this.time, this.rStart, this.rTotal, this.rMatched, this.rUntil]) for (const c of cols) b += c?.byteLength ?? 0;
    return b;
  }

  /**
   * Selects `ip`'s row (added as the most recently used address, evicting the least recently used
   * when full) and tags it with `source`, the input partition the event came from (see `forget`).
   */
  enter(ip: string, source?: number): number {
    const e = (this.current = this.table.upsert(ip));
    this.source[e] = source === undefined ? 0 : source + 1;
    return e;
  }

  /** `ip`'s row, made the most recently used, or undefined when it has none */
  get(ip: string): number | undefined {
    const e = this.table.get(ip);
    return e < 0 ? undefined : e;
  }

  /** Drops the addresses last seen in one of `sources`; returns how many. */
  forget(sources: ReadonlySet<number>): number {
    const gone: number[] = [];
    for (const e of this.table.entries()) if (this.source[e] !== 0 && sources.has(this.source[e] - 1)) gone.push(e);
    for (const e of gone) this.table.delete(e);
    if (gone.includes(this.current)) this.current = EMPTY;
    return gone.length;
  }

  /** One event into leaky scenario `sc` for the selected address: bucket.ts `pour` over columns. */
  pour(sc: number, nowMs: number, distinctValue?: string): PourResult {
    const spec = this.specs[sc].bucket;
    const e = this.current;
    const L = this.level[sc]!;
    const T = this.time[sc]!;
    const now = this.rel(nowMs);
    let stored = L[e];
    if (stored < 0) {
      if (now < T[e]) return 'blackholed';
      stored = 0;
    }
    const level = Math.max(0, stored - Math.max(0, now - T[e]) / spec.leakMs);
    if (now > T[e]) T[e] = now; // time never runs backwards for a bucket
    const d = this.distinctOf[sc];
    const set = e * this.distinctCount + d;
    if (d >= 0 && level === 0) this.seen.clear(set);
    if (d >= 0 && !this.seen.add(set, fnv(distinctValue ?? '', 0), spec.capacity + 1)) {
      L[e] = level;
      return 'duplicate';
    }
    if (level + 1 > spec.capacity + 1e-9) {
      L[e] = -1;
      T[e] = Math.min(TIME_MAX, now + spec.blackholeMs);
      if (d >= 0) this.seen.clear(set);
      return 'overflow';
    }
    L[e] = level + 1;
    return 'poured';
  }

  /** the level of the selected address's bucket at `nowMs` (tests) */
  levelAt(sc: number, nowMs: number): number {
    const e = this.current;
    const stored = this.level[sc]![e];
    if (stored < 0) return 0;
    return Math.max(0, stored - Math.max(0, this.rel(nowMs) - this.time[sc]![e]) / this.specs[sc].bucket.leakMs);
  }

  /**
   * One event of a ratio scenario's source for the selected address: a window of `windowMs` from
   * its first event; true when `min` events are in, the matching share reached `threshold` and the
   * scenario is not blackholed (the window then restarts and the address is blackholed).
   */
  count(sc: number, nowMs: number, matched: boolean, o: { windowMs: number; min: number; threshold: number; blackholeMs: number }): { total: number; matched: number } | undefined {
    const e = this.current;
    const S = this.rStart[sc]!;
    const N = this.rTotal[sc]!;
    const M = this.rMatched[sc]!;
    const U = this.rUntil[sc]!;
    const now = this.rel(nowMs);
    if (S[e] === 0 || now - S[e] >= o.windowMs) {
      S[e] = now;
      N[e] = 0;
      M[e] = 0;
    }
    if (N[e] < TIME_MAX) N[e]++;
    if (matched && M[e] < TIME_MAX) M[e]++;
    if (now >= U[e] && N[e] >= o.min && M[e] / N[e] >= o.threshold) {
      const out = { total: N[e], matched: M[e] };
      U[e] = Math.min(TIME_MAX, now + o.blackholeMs);
      N[e] = 0;
      M[e] = 0;
      S[e] = now;
      return out;
    }
    return undefined;
  }

  /** event time → u32 ms from the base (≥ 1: 0 marks an unused ratio window) */
  private rel(nowMs: number): number {
    if (this.baseMs === undefined) this.baseMs = Math.round(nowMs) - BASE_LEAD_MS;
    let r = Math.round(nowMs) - this.baseMs;
    if (r > TIME_MAX - REBASE_MARGIN_MS) {
      this.rebase(r - BASE_LEAD_MS);
      r = BASE_LEAD_MS;
    }
    return r < 1 ? 1 : r;
  }

  /** Moves the base `shiftMs` forward: times before it become 1 (long past: a bucket has leaked empty, a blackhole ended). */
  private rebase(shiftMs: number): void {
    this.rebases++;
    this.baseMs! += shiftMs;
    const shift = (col: Uint32Array) => {
      for (let i = 0; i < col.length; i++) {
        const t = col[i];
        if (t !== 0) col[i] = t > shiftMs ? t - shiftMs : 1;
      }
    };
    for (const cols of [this.time, this.rStart, this.rUntil]) for (const c of cols) if (c) shift(c);
  }

  private clearRow(e: number): void {
    this.source[e] = 0;
    for (let sc = 0; sc < this.specs.length; sc++) {
      if (this.level[sc]) {
        this.level[sc]![e] = 0;
        this.time[sc]![e] = 0;
        const d = this.distinctOf[sc];
        if (d >= 0) this.seen.clear(e * this.distinctCount + d);
      }
      if (this.rStart[sc]) {
        this.rStart[sc]![e] = 0;
        this.rTotal[sc]![e] = 0;
        this.rMatched[sc]![e] = 0;
        this.rUntil[sc]![e] = 0;
      }
    }
  }
}
