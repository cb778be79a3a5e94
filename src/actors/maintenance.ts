// Background work a partition's leader turns into ordinary replicated commands: TTL expiry and
// topic retention. Reading what is due is I/O; deciding to remove it goes through `step`, so
// followers remove exactly the same things.
import { diskCodec } from '../runtime/codec.js';
import { limits } from '../runtime/limits.js';
import type { ColumnStore } from '../storage/rocks.js';
import * as K from '../storage/keys.js';
import type { RetentionSpec } from '../protocol/api.js';
import { decodeKvValue, type Command, type PartitionState, type TimeIndexValue } from './partition.js';
import type { PartitionReader } from './reads.js';

/** Expired keys due for removal (and stale index entries of keys rewritten since). */
export function expiryCommands(store: ColumnStore, nowMs: number): Command[] {
  const out: Command[] = [];
  for (const [k] of store.range(K.expiryUpTo(nowMs), limits.ttlSweepKeysMax)) {
    const e = K.parseExpiryKey(k);
    const cur = store.get(K.kvKey(e.keyspace, e.key));
    const stillCurrent = cur !== undefined && decodeKvValue(cur).expiresAtMs === e.expiresAtMs;
    out.push({ op: 'kvExpire', ks: e.keyspace, key: e.key, expiresAtMs: e.expiresAtMs, stillCurrent });
  }
  return out;
}

/**
 * Whole batches from the start of each stream that a retention rule allows to go: older than
 * `ms`, beyond `bytes`, or committed by `untilGroup`. Any one rule is enough.
 */
export function retentionCommands(state: PartitionState, store: ColumnStore, reader: PartitionReader, retention: Map<number, RetentionSpec>, nowMs: number): Command[] {
  const out: Command[] = [];
  for (const st of state.streams.values()) {
    const spec = retention.get(st.topicId);
    if (!spec || st.start === st.end) continue;
    const committed = spec.untilGroup ? reader.committedOffset(spec.untilGroup, st.topicId, st.tp) : undefined;
    const removed: Array<{ lastTs: number; base: number }> = [];
    let newStart = st.start;
    let bytesRemoved = 0;
    let logThrough: number | undefined;
    for (const [k, v] of store.iterate(K.timeIndexRange(st.topicId, st.tp))) {
      const { lastTimestampMs, baseOffset } = K.parseTimeIndexKey(k);
      if (baseOffset < st.start) continue;
      const [count, bytes, seq] = diskCodec.decode<TimeIndexValue>(v);
      const batchEnd = baseOffset + count;
      const expired = spec.ms !== undefined && lastTimestampMs < nowMs - spec.ms;
      const oversize = spec.bytes !== undefined && st.bytes - bytesRemoved > spec.bytes;
      const delivered = committed !== undefined && batchEnd <= committed;
      if (!(expired || oversize || delivered) || removed.length >= limits.ttlSweepKeysMax) break;
      removed.push({ lastTs: lastTimestampMs, base: baseOffset });
      newStart = batchEnd;
      bytesRemoved += bytes;
      if (seq !== undefined) logThrough = Math.max(logThrough ?? 0, seq);
    }
    if (removed.length > 0) out.push({ op: 'trim', topicId: st.topicId, tp: st.tp, newStart, bytesRemoved, removed, ...(logThrough !== undefined ? { logThrough } : {}) });
  }
  return out;
}

/**
 * Replica-local: the replication log keeps the newest entries only; older followers get a snapshot.
 * Retention trims it too (the trim command's logThrough): this cap bounds a log that no stream's
 * retention reaches, such as one of KV writes only.
 */
export function logTrimRange(state: PartitionState): { gte: Buffer; lt: Buffer } | undefined {
  const keepFrom = state.seq - limits.replicationLogEntriesMax;
  return keepFrom > 0 ? { gte: K.logRange.gte, lt: K.logKey(keepFrom) } : undefined;
}
