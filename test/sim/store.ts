// The durable side of a simulated node: a sorted in-memory column family that applies ops the way
// the worker does (puts and dels, then range deletes). It is a Storage (src/actors/storage.ts), so
// the simulator recovers and catches up with the worker's own code (recovery.ts, catch-up.ts).
import { diskCodec } from '../../src/runtime/codec.js';
import { limits } from '../../src/runtime/limits.js';
import { epoch, partitionId, seq } from '../../src/runtime/ids.js';
import * as K from '../../src/storage/keys.js';
import { emptyStream, initialState, streamKeyOf, type CopyLedger, type Op, type PartitionMeta, type PartitionState, type ProducerWindow } from '../../src/actors/partition.js';
import { decodeEntry as decodeReplicaEntry, restoreHints, type Entry, type Replica } from '../../src/actors/replica.js';

/** Keys are stored as lowercase hex: string order is byte order. */
const hex = (b: Uint8Array): string => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength)).toString('hex');

const LOG_KIND_HEX = hex(Buffer.from([K.Kind.log]));
/** the state-machine keys digest() covers (KV, expiry, batches, time index, groups, streams, producers), as hex bounds */
const DIGEST_GTE = hex(Buffer.from([K.Kind.kv]));
const DIGEST_LT = hex(Buffer.from([K.Kind.producer + 1]));
const inDigest = (k: string): boolean => k >= DIGEST_GTE && k < DIGEST_LT;
/** the seq of a log key (K.logKey: kind byte, u64 seq) held as hex, as K.seqOfLogKey reads it */
const seqOfLogHex = (k: string): number => parseInt(k.slice(2, 10), 16) * 2 ** 32 + parseInt(k.slice(10, 18), 16);
const isLogHex = (k: string): boolean => k.length === 18 && k.startsWith(LOG_KIND_HEX);
const BATCH_KIND_HEX = hex(Buffer.from([K.Kind.batch]));
/** a batch key's stream (K.batchRange's bound: kind, topic id, partition) as hex */
const batchStreamOf = (k: string): string | undefined => (k.length === 34 && k.startsWith(BATCH_KIND_HEX) ? k.slice(0, 18) : undefined);

/** the kind byte (K.Kind) of a hex key, read from its first two digits */
const nibble = (c: number): number => (c <= 0x39 ? c - 0x30 : c - 0x57); // '0'-'9', 'a'-'f' (Buffer's hex is lowercase)
const kindOfHex = (k: string): number => (nibble(k.charCodeAt(0)) << 4) | nibble(k.charCodeAt(1));

/** The changes to one stream's batch keys, and the count at the last that was not an append at its end. */
export interface BatchEdits { changes: number; rewrittenAt: number }

/**
 * Two independent 32-bit hashes of one (key, value) pair. digest() sums them over the pairs it
 * covers, so a put or delete updates it at once instead of rehashing the whole state after every
 * write; a pair's hashes see every byte, and the sum differs between two sets of pairs unless
 * 64 bits collide.
 */
let pairA = 0;
let pairB = 0;
function hashPair(k: string, v: Uint8Array): void {
  let a = 0x811c9dc5;
  let b = 0x9747b28c ^ v.length;
  for (let i = 0; i < k.length; i++) {
    const c = k.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995); b ^= b >>> 15;
  }
  a = Math.imul(a ^ 0x3a, 0x01000193); // the ':' between key and value
  for (let i = 0; i < v.length; i++) {
    const c = v[i];
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995); b ^= b >>> 15;
  }
  pairA = fmix(a);
  pairB = fmix(b ^ Math.imul(k.length, 0x27d4eb2f));
}
function fmix(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
const hex8 = (n: number): string => (n >>> 0).toString(16).padStart(8, '0');

export class MemStore {
  private readonly data = new Map<string, Buffer>();
  /** the keys as bytes, made once per key: recovery, catch-up and digests iterate the same keys again and again */
  private readonly keyBytes = new Map<string, Buffer>();
  /** the keys in order, kept up to date once built (a binary insert beats re-sorting after each new key) */
  private sorted: string[] | undefined;
  /** the log entries by seq: the checker reads them after every event */
  private readonly logs = new Map<number, Buffer>();
  /** digest(): the pairs it covers, counted and summed (hashPair) */
  private digestCount = 0;
  private digestA = 0;
  private digestB = 0;
  /** bumped by every change to a key of that kind, so a check of one kind can tell nothing changed */
  private readonly kindVersions = new Uint32Array(256);
  /** by stream (batchStreamOf): a walk over its batches need only go on past what it saw while they were only appended to */
  private readonly batchEdits = new Map<string, BatchEdits>();
  /**
   * Checker-only: entries this store's state is the result of that its log does not hold. A
   * snapshot does not copy the replication log (K.snapshotRange), and the one copy of a partition
   * of N = 1 writes none (replica.ts write), so the checker keeps them here, in their logged form,
   * and still counts this replica as holding them. Durable like the rest.
   */
  private unlogged = new Map<number, Buffer>();

  get size(): number { return this.data.size; }

  apply(ops: readonly Op[]): void {
    const ranges: Array<{ gte: Buffer; lt: Buffer }> = [];
    for (const op of ops) {
      if (op.type === 'put') this.put(hex(op.key), op.value);
      else if (op.type === 'del') {
        this.remove(hex(op.key));
        if (op.key[0] === K.Kind.log) this.unlogged.delete(K.seqOfLogKey(op.key));
      } else ranges.push(op);
    }
    for (const r of ranges) this.clear(r); // the worker runs range deletes after the batch
  }

  private put(k: string, v: Buffer): void {
    const old = this.data.get(k);
    this.data.set(k, v);
    // a new key past every key of its stream appends to it (unknown while the keys are unsorted)
    let appended = false;
    if (old === undefined && this.sorted) {
      const at = this.lowerBound(k);
      const stream = batchStreamOf(k);
      appended = stream !== undefined && (at === this.sorted.length || !this.sorted[at].startsWith(stream));
      this.sorted.splice(at, 0, k);
    }
    this.changed(k, old, v, appended);
  }

  private remove(k: string): void {
    const old = this.data.get(k);
    if (old === undefined) return;
    this.data.delete(k);
    this.keyBytes.delete(k);
    this.changed(k, old, undefined);
    if (this.sorted) this.sorted.splice(this.lowerBound(k), 1);
  }

  /** keeps the log index, the digest's sum, the kind's version and the stream's edits in step with the data */
  private changed(k: string, old: Buffer | undefined, v: Buffer | undefined, appended = false): void {
    this.kindVersions[kindOfHex(k)]++;
    const stream = batchStreamOf(k);
    if (stream !== undefined) {
      let e = this.batchEdits.get(stream);
      if (!e) { e = { changes: 0, rewrittenAt: 0 }; this.batchEdits.set(stream, e); }
      e.changes++;
      if (!appended) e.rewrittenAt = e.changes;
    }
    if (isLogHex(k)) {
      if (v) this.logs.set(seqOfLogHex(k), v); else this.logs.delete(seqOfLogHex(k));
    }
    if (!inDigest(k)) return;
    if (old) {
      hashPair(k, old);
      this.digestA = (this.digestA - pairA) >>> 0;
      this.digestB = (this.digestB - pairB) >>> 0;
      this.digestCount--;
    }
    if (v) {
      hashPair(k, v);
      this.digestA = (this.digestA + pairA) >>> 0;
      this.digestB = (this.digestB + pairB) >>> 0;
      this.digestCount++;
    }
  }

  /** the first index in the sorted keys whose key is not below k */
  private lowerBound(k: string): number {
    const keys = this.keys();
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] < k) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  get(key: Uint8Array): Buffer | undefined { return this.data.get(hex(key)); }

  clear(range: { gte: Uint8Array; lt: Uint8Array }): void {
    const keys = this.keys();
    const lo = this.lowerBound(hex(range.gte));
    const hi = this.lowerBound(hex(range.lt));
    for (let i = lo; i < hi; i++) {
      const k = keys[i];
      const old = this.data.get(k)!;
      this.data.delete(k);
      this.keyBytes.delete(k);
      this.changed(k, old, undefined);
    }
    if (hi > lo) keys.splice(lo, hi - lo);
    for (const s of this.unlogged.keys()) {
      const k = K.logKey(s);
      if (Buffer.compare(k, range.gte) >= 0 && Buffer.compare(k, range.lt) < 0) this.unlogged.delete(s);
    }
  }

  private keys(): string[] {
    this.sorted ??= [...this.data.keys()].sort();
    return this.sorted;
  }

  /** [hexKey, value] pairs in key order within [gte, lt) */
  range(range: { gte: Uint8Array; lt: Uint8Array }): Array<[string, Buffer]> {
    const keys = this.keys();
    const lt = hex(range.lt);
    const out: Array<[string, Buffer]> = [];
    for (let i = this.lowerBound(hex(range.gte)); i < keys.length && keys[i] < lt; i++) out.push([keys[i], this.data.get(keys[i])!]);
    return out;
  }

  /** storage.ts Storage: what recovery and catch-up read (they never change the key bytes they get) */
  iterate(range: { gte: Uint8Array; lt: Uint8Array }): Generator<[Buffer, Buffer]> {
    return this.iterateAfter(range, undefined);
  }

  /** iterate() over the keys of the range past `after` (a hex key), or all of them */
  *iterateAfter(range: { gte: Uint8Array; lt: Uint8Array }, after: string | undefined): Generator<[Buffer, Buffer]> {
    // taken before the first yield, as a snapshot iterator sees the store: callers may write while they read
    for (const [, key, value] of this.entriesAfter(range, after)) yield [key, value];
  }

  /** the [hexKey, key, value] entries of the range past `after` (a hex key), or all of them, in key order */
  entriesAfter(range: { gte: Uint8Array; lt: Uint8Array }, after: string | undefined): Array<[string, Buffer, Buffer]> {
    const keys = this.keys();
    const lt = hex(range.lt);
    const gte = hex(range.gte);
    let i = this.lowerBound(after !== undefined && after > gte ? after : gte);
    if (after !== undefined && keys[i] === after) i++;
    const out: Array<[string, Buffer, Buffer]> = [];
    for (; i < keys.length && keys[i] < lt; i++) {
      const k = keys[i];
      let key = this.keyBytes.get(k);
      if (!key) { key = Buffer.from(k, 'hex'); this.keyBytes.set(k, key); }
      out.push([k, key, this.data.get(k)!]);
    }
    return out;
  }

  /** the edits to a stream's batch keys so far; `range` is its K.batchRange */
  batchEditsOf(range: { gte: Uint8Array }): BatchEdits {
    return { ...(this.batchEdits.get(hex(range.gte)) ?? { changes: 0, rewrittenAt: 0 }) };
  }

  /** A point-in-time copy (what a snapshot iterator sees). */
  copy(): Array<[string, Buffer]> { return this.range(K.snapshotRange); }

  replaceWith(entries: ReadonlyArray<[string, Buffer]>): void {
    this.sorted = undefined; // sorted once when next read, not kept up to date key by key
    for (const k of [...this.data.keys()]) this.remove(k);
    for (const [k, v] of entries) this.put(k, v);
  }

  /** how many changes keys of this kind (K.Kind) have seen: while it stays, so do their keys and values */
  kindVersion(kind: number): number { return this.kindVersions[kind]; }

  // ---- typed views used by the checker ----

  logEntry(s: number): Buffer | undefined { return this.logs.get(s) ?? this.unlogged.get(s); }

  /** the entries 1..seq this replica holds, from its log or the copy it installed */
  history(seq: number): Map<number, Buffer> {
    const h = new Map<number, Buffer>();
    for (let s = 1; s <= seq; s++) {
      const e = this.logEntry(s);
      if (e) h.set(s, e);
    }
    return h;
  }

  installHistory(h: ReadonlyMap<number, Buffer>): void { this.unlogged = new Map(h); }

  /** an entry applied here without a log entry (the one copy of a partition of N = 1) */
  recordUnlogged(seq: number, entry: Buffer): void { this.unlogged.set(seq, entry); }

  meta(): PartitionMeta | undefined {
    const b = this.get(K.metaKey);
    if (!b) return undefined;
    if (this.lastMeta?.[0] !== b) this.lastMeta = [b, diskCodec.decode<PartitionMeta>(b)];
    return this.lastMeta[1];
  }

  /** the meta last decoded, with the bytes it came from: the checker reads it after every event */
  private lastMeta: [Buffer, PartitionMeta] | undefined;

  /**
   * A digest of the state-machine keys (KV, expiry, batches, time index, groups, streams,
   * producers): equal stores give equal digests, different ones different digests unless 64 bits
   * of hashes collide (hashPair).
   */
  digest(): string {
    return `${this.digestCount.toString(16)}-${hex8(this.digestA)}${hex8(this.digestB)}`;
  }
}

export function decodeEntry(b: Buffer): Entry { return decodeReplicaEntry(b); }
