// The durable side of a simulated node: a sorted in-memory column family that applies ops the way
// the worker does (puts and dels, then range deletes). It is a Storage (src/actors/storage.ts), so
// the simulator recovers and catches up with the worker's own code (recovery.ts, catch-up.ts).
import { createHash } from 'node:crypto';
import { diskCodec } from '../../src/runtime/codec.js';
import { limits } from '../../src/runtime/limits.js';
import { epoch, partitionId, seq } from '../../src/runtime/ids.js';
import * as K from '../../src/storage/keys.js';
import { emptyStream, initialState, streamKeyOf, type CopyLedger, type Op, type PartitionMeta, type PartitionState, type ProducerWindow } from '../../src/actors/partition.js';
import { decodeEntry as decodeReplicaEntry, restoreHints, type Entry, type Replica } from '../../src/actors/replica.js';

/** Keys are stored as lowercase hex: string order is byte order. */
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

export class MemStore {
  private readonly data = new Map<string, Buffer>();
  private sorted: string[] | undefined;
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
      if (op.type === 'put') {
        const k = hex(op.key);
        if (!this.data.has(k)) this.sorted = undefined;
        this.data.set(k, op.value);
      } else if (op.type === 'del') {
        if (this.data.delete(hex(op.key))) this.sorted = undefined;
        if (op.key[0] === K.Kind.log) this.unlogged.delete(K.seqOfLogKey(op.key));
      } else ranges.push(op);
    }
    for (const r of ranges) this.clear(r); // the worker runs range deletes after the batch
  }

  get(key: Uint8Array): Buffer | undefined { return this.data.get(hex(key)); }

  clear(range: { gte: Uint8Array; lt: Uint8Array }): void {
    for (const [k] of this.range(range)) this.data.delete(k);
    this.sorted = undefined;
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
    const gte = hex(range.gte);
    const lt = hex(range.lt);
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] < gte) lo = mid + 1; else hi = mid;
    }
    const out: Array<[string, Buffer]> = [];
    for (let i = lo; i < keys.length && keys[i] < lt; i++) out.push([keys[i], this.data.get(keys[i])!]);
    return out;
  }

  /** storage.ts Storage: what recovery and catch-up read */
  *iterate(range: { gte: Uint8Array; lt: Uint8Array }): Generator<[Buffer, Buffer]> {
    for (const [k, v] of this.range(range)) yield [Buffer.from(k, 'hex'), v];
  }

  /** A point-in-time copy (what a snapshot iterator sees). */
  copy(): Array<[string, Buffer]> { return this.range(K.snapshotRange); }

  replaceWith(entries: ReadonlyArray<[string, Buffer]>): void {
    this.data.clear();
    for (const [k, v] of entries) this.data.set(k, v);
    this.sorted = undefined;
  }

  // ---- typed views used by the checker ----

  logEntry(s: number): Buffer | undefined { return this.data.get(hex(K.logKey(s))) ?? this.unlogged.get(s); }

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
    return b ? diskCodec.decode<PartitionMeta>(b) : undefined;
  }

  /** sha1 over the state-machine keys (KV, expiry, batches, time index, groups, streams, producers) */
  digest(): string {
    const h = createHash('sha1');
    for (const [k, v] of this.range({ gte: Buffer.from([K.Kind.kv]), lt: Buffer.from([K.Kind.producer + 1]) })) {
      h.update(k); h.update(':'); h.update(v); h.update('\n');
    }
    return h.digest('hex');
  }
}

export function decodeEntry(b: Buffer): Entry { return decodeReplicaEntry(b); }
