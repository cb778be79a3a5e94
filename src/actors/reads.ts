// Reads of one partition replica: its in-memory state plus its column family, as its ReadView lets
// readers see them. They run on the worker after the writes queued before them.
import assert from 'node:assert/strict';
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { diskCodec } from '../runtime/codec.js';
import type { ColumnStore } from '../storage/rocks.js';
import * as K from '../storage/keys.js';
import type { StartPosition } from '../protocol/api.js';
import { batchCount, encodeBatch, isRecordBatch, stampBatch } from '../protocol/batch.js';
import { decodeKvValue, decodeStoredBatch, emptyStream, recordBytes, streamKeyOf, type PartitionState } from './partition.js';
import { digestSlices, DIGEST_SLICE_ENTRIES } from './anti-entropy.js';
import type { DigestReply, FetchReply, FetchedRecord, GroupOffsetReply, KvGetReply, StreamInfoReply } from './messages.js';


/**
 * What readers may see of a replica that is ahead of its confirmations (a leader): rows (KV keys,
 * group offsets) as last confirmed, streams up to their confirmed end. Writes a failover could
 * still lose are never shown.
 */
export interface ReadView {
  /** the confirmed bytes of a row with unconfirmed writes (null: absent); undefined: as stored */
  row(row: Buffer): Buffer | null | undefined;
  /** every row with unconfirmed writes, with its confirmed bytes */
  hiddenRows(): Iterable<[row: Buffer, confirmed: Buffer | null]>;
  /** the end of a stream readers may see */
  streamEnd(skey: string, end: number): number;
}

/** Everything stored is confirmed (a replica alone, or in tests). */
export const ALL_VISIBLE: ReadView = { row: () => undefined, hiddenRows: () => [], streamEnd: (_skey, end) => end };

export class PartitionReader {
  constructor(private readonly state: () => PartitionState, private readonly store: ColumnStore, private readonly view: ReadView = ALL_VISIBLE) {}

  /** The current, unexpired value of a key, confirmed or not (for the leader's own writes). */
  liveKv(ks: string, key: Uint8Array, nowMs: number) {
    return unexpired(this.store.get(K.kvKey(ks, key)), nowMs);
  }

  /** A stored row as readers may see it. */
  private visibleRow(row: Buffer): Buffer | undefined {
    return this.shown(row, this.store.get(row)) ?? undefined;
  }

  /** What readers see of a row stored as `stored`: its confirmed bytes when it has unconfirmed writes (null: absent). */
  private shown(row: Buffer, stored: Buffer | undefined): Buffer | null | undefined {
    const confirmed = this.view.row(row);
    return confirmed === undefined ? stored : confirmed;
  }

  kvGet(ks: string, key: Uint8Array, nowMs: number): KvGetReply | null {
    const live = unexpired(this.visibleRow(K.kvKey(ks, key)), nowMs);
    return live ? { value: live.value, version: live.version, expiresAtMs: live.expiresAtMs } : null;
  }

  scan(ks: string, prefixBytes: Uint8Array | undefined, after: Uint8Array | undefined, limit: number, nowMs: number, bytesMax = limits.scanBytesMax) {
    const prefix = K.kvPrefix(ks, prefixBytes);
    const gte = after ? Buffer.concat([K.kvKey(ks, after), Buffer.from([0])]) : prefix;
    const lt = K.prefixEnd(prefix);
    const items: Array<{ key: Buffer; value: Buffer; version: number }> = [];
    // bytes of the entries kept: an expired or hidden key read adds nothing, so a page stopped by
    // bytes always holds bytesMax of them (the node takes a page that does as cut there)
    let bytes = 0;
    const add = (k: Buffer, v: Buffer | null | undefined) => {
      const d = unexpired(v ?? undefined, nowMs);
      if (!d) return;
      const e = { key: K.userKeyOf(k, ks), value: Buffer.from(d.value), version: d.version };
      items.push(e);
      bytes += e.key.length + e.value.length;
    };
    for (const [k, v] of this.store.iterate({ gte, lt })) {
      add(k, this.shown(k, v));
      if (items.length >= limit || bytes >= bytesMax) break;
    }
    // Keys whose unconfirmed write removed them are still there for readers.
    let extra = false;
    for (const [k, confirmed] of this.view.hiddenRows()) {
      if (confirmed === null || Buffer.compare(k, gte) < 0 || Buffer.compare(k, lt) >= 0 || this.store.get(k) !== undefined) continue;
      add(k, confirmed);
      extra = true;
    }
    if (extra) items.sort((a, b) => Buffer.compare(a.key, b.key)).splice(limit);
    // Every key below the last one kept is in the page: the iteration stopped past the budget at its
    // last key, and a hidden key beyond it comes after that key's bytes.
    items.splice(scanPageLength(items, bytesMax));
    return items;
  }

  streamInfo(topicId: number, tp: number): StreamInfoReply {
    const skey = streamKeyOf(topicId, tp);
    const st = this.state().streams.get(skey) ?? emptyStream(topicId, tp);
    return { start: st.start, end: this.view.streamEnd(skey, st.end), bytes: st.bytes, lastTs: st.lastTs };
  }

  private resolveStart(topicId: number, tp: number, from: StartPosition, start: number, end: number): number {
    switch (from.kind) {
      case 'earliest': return start;
      case 'latest': return end;
      case 'offset':
        if (!Number.isSafeInteger(from.offset) || from.offset < start || from.offset > end) {
          throw new ChicagoError('OFFSET_OUT_OF_RANGE', from.offset, start, end);
        }
        return from.offset;
      case 'timestamp': {
        const r = K.timeIndexRange(topicId, tp);
        const first = this.store.range({ gte: K.timeIndexFrom(topicId, tp, Math.max(0, from.timestampMs)), lt: r.lt }, 1)[0];
        return first ? Math.min(end, Math.max(start, K.parseTimeIndexKey(first[0]).baseOffset)) : end;
      }
      case 'bytes': {
        // Newest whole batches that fit; at least the last batch, so a tail always shows something.
        let total = 0;
        let at = end;
        for (const [k, v] of this.store.iterate({ ...K.timeIndexRange(topicId, tp), reverse: true })) {
          const [, bytes] = diskCodec.decode<[number, number]>(v);
          const base = K.parseTimeIndexKey(k).baseOffset;
          if (base >= end) continue; // not confirmed yet
          if (base < start) break;
          if (total + bytes > from.bytes && at !== end) break;
          total += bytes;
          at = base;
          if (total >= from.bytes) break;
        }
        return at;
      }
    }
  }

  /** Where a read of a stream starts, what readers may see of it, and its stored batches from there. */
  private readFrom(topicId: number, tp: number, from: StartPosition): { start: number; end: number; first: number; batches: () => Iterable<[Buffer, Buffer]> } {
    const skey = streamKeyOf(topicId, tp);
    const st = this.state().streams.get(skey) ?? emptyStream(topicId, tp);
    const end = this.view.streamEnd(skey, st.end);
    const first = this.resolveStart(topicId, tp, from, st.start, end);
    const batches = () => {
      const range = K.batchRange(topicId, tp);
      // The batch holding `first` is the last one whose base is ≤ first.
      const holder = this.store.range({ gte: range.gte, lt: K.batchKey(topicId, tp, first + 1), reverse: true }, 1)[0];
      const gte = holder ? holder[0] : K.batchKey(topicId, tp, first);
      return this.store.iterate({ gte, lt: range.lt }, 16);
    };
    return { start: st.start, end, first, batches };
  }

  fetch(topicId: number, tp: number, from: StartPosition, maxRecords: number, maxBytes: number): FetchReply {
    const { start, end, first, batches } = this.readFrom(topicId, tp, from);
    const records: FetchedRecord[] = [];
    let next = first;
    if (first < end) {
      let bytes = 0;
      outer: for (const [k, v] of batches()) {
        const base = K.baseOffsetOfBatchKey(k);
        const batch = decodeStoredBatch(v);
        for (let i = 0; i < batch.r.length; i++) {
          const offset = base + i;
          if (offset < next) continue;
          if (offset >= end) break outer;
          const r = batch.r[i];
          const size = recordBytes(r);
          // Always return at least one record, so a consumer never stalls on a large one.
          if (records.length > 0 && (records.length >= maxRecords || bytes + size > maxBytes)) break outer;
          assert.equal(offset, next, 'fetched offsets are contiguous');
          records.push([offset, batch.ts, r[0], r[1], r[2]]);
          bytes += size;
          next = offset + 1;
        }
      }
    }
    return { records, next, start, end };
  }

  /**
   * The stored batches holding the offsets from `from` on, whole and without decoding them: up to
   * maxRecords records (counting a batch's records from `from`) and maxBytes of batch bytes, at
   * least one batch. A batch stored before record batches (a msgpack map) is encoded as one.
   */
  fetchBatches(topicId: number, tp: number, from: StartPosition, maxRecords: number, maxBytes: number): FetchReply {
    const { start, end, first, batches: stored } = this.readFrom(topicId, tp, from);
    const batches: Uint8Array[] = [];
    let next = first;
    if (first < end) {
      let bytes = 0;
      let records = 0;
      for (const [k, v] of stored()) {
        const base = K.baseOffsetOfBatchKey(k);
        if (base >= end) break; // confirmed appends end at a batch boundary
        const batch = isRecordBatch(v) ? v : legacyAsBatch(v, base);
        const count = batchCount(batch);
        if (base + count <= next) continue;
        if (batches.length > 0 && (records >= maxRecords || bytes + batch.length > maxBytes)) break;
        batches.push(batch);
        bytes += batch.length;
        records += base + count - next;
        next = base + count;
      }
    }
    return { records: [], batches, first, next, start, end };
  }

  committedOffset(group: string, topicId: number, tp: number): number | undefined {
    const buf = this.visibleRow(K.groupKey(group, topicId, tp));
    return buf ? diskCodec.decode<{ offset: number }>(buf).offset : undefined;
  }

  /** The names of the groups with commits in this partition, in order, at most `limit`: one seek per group. */
  groupNames(limit: number): string[] {
    const out: string[] = [];
    let gte: Buffer = K.allGroupsRange.gte;
    while (out.length < limit) {
      const first = this.store.range({ gte, lt: K.allGroupsRange.lt }, 1)[0];
      if (!first) break;
      const { group } = K.parseGroupKey(first[0]);
      out.push(group);
      gte = K.groupRange(group).lt;
    }
    return out;
  }

  groupOffsets(group: string): GroupOffsetReply[] {
    const out: GroupOffsetReply[] = [];
    const streams = this.state().streams;
    for (const [k, stored] of this.store.iterate(K.groupRange(group))) {
      const v = this.shown(k, stored);
      if (!v) continue; // its first commit is not confirmed yet
      const { topicId, tp } = K.parseGroupKey(k);
      const { offset, at } = diskCodec.decode<{ offset: number; at: number }>(v);
      const skey = streamKeyOf(topicId, tp);
      const st = streams.get(skey) ?? emptyStream(topicId, tp);
      const end = this.view.streamEnd(skey, st.end);
      let oldestUncommittedTs: number | null = null;
      if (offset < end) {
        const rec = this.fetch(topicId, tp, { kind: 'offset', offset: Math.max(offset, st.start) }, 1, 1).records[0];
        oldestUncommittedTs = rec ? rec[1] : null;
      }
      out.push({ topicId, tp, offset, at, end, oldestUncommittedTs });
    }
    return out;
  }

  /**
   * Digests of everything the partition's state machine owns (not the replica-local log and meta),
   * one per kind of key, so replicas at the same seq must match range by range.
   */
  digest(): DigestReply {
    const slices = this.digestSlices();
    for (;;) {
      const r = slices.next();
      if (r.done) return r.value;
    }
  }

  /**
   * The digest of the state as it is now, one slice of entries per next(): the caller yields to
   * other work between slices (a whole partition can take seconds). Its one RocksDB iterator pins
   * the state it started at, so writes in between do not change the answer.
   */
  *digestSlices(sliceEntries = DIGEST_SLICE_ENTRIES): Generator<void, DigestReply> {
    const s = this.state();
    const store = this.store;
    // a digest reads every key: 1,024 of them per iterator round trip
    return yield* digestSlices({ iterate: (range) => store.iterate(range, 1024) }, { partition: s.id, seq: s.seq, epoch: s.epoch }, sliceEntries);
  }
}

/** A batch stored as a msgpack map (data dirs of format 1), as the record batch it would be now. */
function legacyAsBatch(v: Uint8Array, base: number): Buffer {
  const d = decodeStoredBatch(v);
  const batch = encodeBatch(d.r.map(([key, value, headers]) => ({ key, value, headers })), d.ts);
  stampBatch(batch, base, d.ts);
  return batch;
}

function unexpired(buf: Buffer | undefined, nowMs: number) {
  if (!buf) return undefined;
  const v = decodeKvValue(buf);
  return v.expiresAtMs !== undefined && v.expiresAtMs <= nowMs ? undefined : v;
}

/**
 * How many entries of a page in key order fit `maxBytes` of keys and values: up to and including the
 * one that reaches it, and at least one. Scans are cut there so a page of large values stays bounded;
 * the next page starts after the last entry kept.
 */
export function scanPageLength(items: ReadonlyArray<{ key: Uint8Array; value: Uint8Array }>, maxBytes: number): number {
  let bytes = 0;
  for (let i = 0; i < items.length; i++) {
    bytes += items[i].key.length + items[i].value.length;
    if (bytes >= maxBytes) return i + 1;
  }
  return items.length;
}
