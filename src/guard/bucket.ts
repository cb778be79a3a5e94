// Per-key leaky buckets with CrowdSec's semantics, as pure functions over plain state (the
// reference: iptable.ts runs the same arithmetic over typed-array columns, and a test compares them):
// - a bucket holds up to `capacity` events and leaks one every `leakMs`, continuously (CrowdSec's
//   leaky bucket is golang.org/x/time/rate with burst = capacity and rate = 1/leakspeed);
// - an event poured into a full bucket overflows it: the bucket is emptied and its key is
//   blackholed for `blackholeMs` (events for it are dropped, it cannot overflow again);
// - `distinct`: an event whose distinct value the bucket has already seen is not poured; the set
//   of seen values lives as long as the bucket holds something (a drained bucket starts afresh),
//   and is bounded by `capacity + 1` entries, the most an un-overflowed bucket can need.
// - capacity 0 is CrowdSec's "trigger": every event overflows.
import assert from 'node:assert/strict';
import { LRUCache } from 'lru-cache';
import { fnv } from './sketch.js';

export interface BucketSpec {
  capacity: number;
  leakMs: number;
  blackholeMs: number;
  distinct: boolean;
}

export interface Bucket {
  /** events in the bucket at `atMs` */
  level: number;
  atMs: number;
  blackholeUntilMs: number;
  /** 32-bit hashes of the distinct values seen (a collision only undercounts by one) */
  seen?: Set<number>;
}

export type PourResult = 'poured' | 'overflow' | 'blackholed' | 'duplicate';

export function newBucket(nowMs: number): Bucket {
  return { level: 0, atMs: nowMs, blackholeUntilMs: 0 };
}

/** Level after leaking to `nowMs` (time never runs backwards for a bucket: an older event leaks nothing). */
export function levelAt(spec: BucketSpec, b: Bucket, nowMs: number): number {
  const elapsed = Math.max(0, nowMs - b.atMs);
  return Math.max(0, b.level - elapsed / spec.leakMs);
}

/** Pours one event; mutates `b` (the caller owns it) and says what happened. */
export function pour(spec: BucketSpec, b: Bucket, nowMs: number, distinctValue?: string): PourResult {
  assert.ok(spec.capacity >= 0 && spec.leakMs > 0, 'bucket spec');
  if (nowMs < b.blackholeUntilMs) return 'blackholed';
  const level = levelAt(spec, b, nowMs);
  b.level = level;
  b.atMs = Math.max(b.atMs, nowMs);
  if (level === 0) b.seen = undefined;
  if (spec.distinct) {
    const v = fnv(distinctValue ?? '', 0);
    if (b.seen?.has(v)) return 'duplicate';
    (b.seen ??= new Set()).add(v);
    if (b.seen.size > spec.capacity + 1) b.seen.delete(b.seen.values().next().value as number);
  }
  // rate.Limiter.Allow(): allowed while a whole token is left, i.e. level + 1 <= capacity.
  if (level + 1 > spec.capacity + 1e-9) {
    b.level = 0;
    b.seen = undefined;
    b.blackholeUntilMs = nowMs + spec.blackholeMs;
    return 'overflow';
  }
  b.level = level + 1;
  assert.ok(b.level <= spec.capacity + 1e-9, 'a bucket never holds more than its capacity');
  return 'poured';
}

/** A bucket that has drained and is not blackholed holds no information and may be dropped. */
export function isIdle(spec: BucketSpec, b: Bucket, nowMs: number): boolean {
  return nowMs >= b.blackholeUntilMs && levelAt(spec, b, nowMs) === 0;
}

/**
 * A map bounded to `maxEntries` in least-recently-used order (lru-cache: O(1) get/set/evict).
 * Full policy: the least recently used key is evicted. (Per-IP buckets live in iptable.ts, whose
 * columns do the same in fixed memory; this one bounds the smaller maps.)
 */
export class LruMap<V extends {}> {
  private readonly cache: LRUCache<string, V>;
  evictions = 0;

  constructor(readonly maxEntries: number) {
    assert.ok(maxEntries >= 1, 'LruMap needs room for one entry');
    this.cache = new LRUCache<string, V>({
      max: maxEntries,
      disposeAfter: (_v, _k, reason) => { if (reason === 'evict') this.evictions++; },
    });
  }

  get size(): number { return this.cache.size; }

  get(key: string): V | undefined { return this.cache.get(key); }

  set(key: string, v: V): void { this.cache.set(key, v); }

  delete(key: string): boolean { return this.cache.delete(key); }

  /** every entry, most recently used first; do not change the map while iterating */
  entries(): IterableIterator<[string, V]> { return this.cache.entries(); }
}
