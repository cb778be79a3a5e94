// The partition actor as a pure transition: step(state, command, now) → { state, ops, reply }.
// No I/O here: the worker runtime executes `ops` on RocksDB and sends `reply`; a simulator can run
// the same function with an in-memory store. Every mutation takes the next partition sequence.
import assert from 'node:assert/strict';
import type { Epoch, PartitionId, Seq } from '../runtime/ids.js';
import type { ErrorCode } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { diskCodec } from '../runtime/codec.js';
import * as K from '../storage/keys.js';
import { batchCount, decodeBatch, encodeBatch, isRecordBatch, stampBatch } from '../protocol/batch.js';

export type Op =
  | { type: 'put'; key: Buffer; value: Buffer }
  | { type: 'del'; key: Buffer }
  /** applied after the batch it belongs to; must be idempotent (it is re-run at load) */
  | { type: 'delRange'; gte: Buffer; lt: Buffer };

/** A record as it travels to the actor and as it is stored inside a batch. */
export type WireRecord = [key: Uint8Array | null, value: Uint8Array, headers: Record<string, string> | null];

export interface StoredBatch { ts: number; r: WireRecord[] }

/**
 * A stored stream value as records. New appends store a record batch (src/protocol/batch.ts) with
 * its base offset and append time stamped in; values written before that are a msgpack map
 * {ts, r}, told apart by their first byte (docs/protocol.md, "Record batches").
 */
export function decodeStoredBatch(v: Uint8Array): StoredBatch {
  if (isRecordBatch(v)) {
    const d = decodeBatch(v);
    return { ts: d.ts, r: d.records };
  }
  return diskCodec.decode<StoredBatch>(v);
}

/**
 * A time-index entry's value: the batch's record count, its record bytes, and the seq that
 * appended it (absent in data dirs of format 2 and older).
 */
export type TimeIndexValue = [count: number, bytes: number, seq?: number];

export interface StreamState {
  readonly topicId: number;
  readonly tp: number;
  /** first offset still stored */
  start: number;
  /** next offset to assign */
  end: number;
  /** bytes of the records between start and end */
  bytes: number;
  /** timestamp of the newest batch; append timestamps never go back */
  lastTs: number;
}

export interface ProducerWindow {
  lastSeq: number;
  /** the most recent accepted sequences and where they landed, for answering retries */
  recent: Array<[sequence: number, base: number, count: number]>;
  usedAtMs: number;
}

export interface PartitionState {
  readonly id: PartitionId;
  /** the highest epoch this replica has accepted; fences out older leaders */
  epoch: Epoch;
  seq: Seq;
  /** [epoch, first seq written in it], oldest first: tells which epoch wrote any seq */
  epochs: Array<[epoch: number, firstSeq: number]>;
  streams: Map<string, StreamState>;
  /** key: producerId \0 topicId:tp; insertion order is least-recently-used first */
  producers: Map<string, ProducerWindow>;
  /** leader bookkeeping that outlives a restart within its epoch (replica.ts copyTo) */
  copies: CopyLedger;
}

/**
 * The full copies a leader started in `epoch`: the last id it gave one, and the last copy sent to
 * each follower. On disk, so that a leader restarted within its epoch neither reuses an id nor
 * counts what a follower said before taking a copy sent by its previous run.
 */
export interface CopyLedger { epoch: number; last: number; to: Array<[node: string, copy: number]> }

export type Command =
  | { op: 'kvPut'; ks: string; key: Uint8Array; value: Uint8Array; ttlMs?: number }
  /** `existed` is read by the runtime in the same tick, before the step */
  | { op: 'kvDel'; ks: string; key: Uint8Array; existed: boolean }
  /** TTL sweep of a key the runtime found expired in the same tick */
  | { op: 'kvExpire'; ks: string; key: Uint8Array; expiresAtMs: number; stillCurrent: boolean }
  /**
   * `previousSequence`: the producer's batch sent just before this one to this partition (pipelining).
   * Either `batch`, a record batch validated at the edge with its record bytes in `batchBytes`
   * (stored as it is, once stamped), or `records`, encoded into one here.
   */
  | { op: 'produce'; topicId: number; tp: number; records?: WireRecord[]; batch?: Uint8Array; batchBytes?: number; producerId?: string; sequence?: number; previousSequence?: number }
  | { op: 'commit'; group: string; topicId: number; tp: number; offset: number }
  | { op: 'uncommit'; group: string; topicId: number; tp: number }
  /**
   * retention: remove whole batches below `newStart`; `removed` lists their time-index entries.
   * `logThrough`: the seq that appended the last of them; the replication log goes up to there
   * with them (its produce entries name those batches, and the rest is as old).
   */
  | { op: 'trim'; topicId: number; tp: number; newStart: number; bytesRemoved: number; removed: Array<{ lastTs: number; base: number }>; logThrough?: number }
  | { op: 'dropStream'; topicId: number; tp: number };

export type Reply =
  | { ok: true; res: unknown }
  | { ok: false; code: ErrorCode; args: unknown[] };

export interface Step { state: PartitionState; ops: Op[]; reply: Reply }

export interface KvResult { version: number; existed?: boolean }
export interface ProduceResult {
  base: number; count: number; ts: number; end: number; duplicate: boolean;
  /** set by a leader answering before readers may see the append (acks one/none): its epoch */
  hiddenIn?: number;
}

const PRODUCER_RECENT_MAX = limits.producerRecentBatchesMax;

export function streamKeyOf(topicId: number, tp: number): string { return `${topicId}:${tp}`; }

export function initialState(id: PartitionId, epoch: Epoch, seq: Seq): PartitionState {
  // No entry written yet, so no epoch wrote any: a leader records its term when it takes office,
  // a follower when it applies the first entry of a term.
  return { id, epoch, seq, epochs: [], streams: new Map(), producers: new Map(), copies: { epoch: 0, last: 0, to: [] } };
}

export function emptyStream(topicId: number, tp: number): StreamState {
  return { topicId, tp, start: 0, end: 0, bytes: 0, lastTs: 0 };
}

export function recordBytes(r: WireRecord): number {
  let n = r[1].length + (r[0]?.length ?? 0);
  if (r[2]) for (const k in r[2]) n += Buffer.byteLength(k) + Buffer.byteLength(r[2][k]);
  return n;
}

// KV values on disk: flags(1) version(8) [expiresAt(8)] value.
const HAS_TTL = 1;
export function encodeKvValue(version: number, value: Uint8Array, expiresAtMs?: number): Buffer {
  const head = expiresAtMs === undefined ? 9 : 17;
  const out = Buffer.allocUnsafe(head + value.length);
  out[0] = expiresAtMs === undefined ? 0 : HAS_TTL;
  out.writeUIntBE(0, 1, 2); // versions fit in 48 bits: the top two bytes stay zero
  out.writeUIntBE(version, 3, 6);
  if (expiresAtMs !== undefined) {
    out.writeUIntBE(0, 9, 2);
    out.writeUIntBE(expiresAtMs, 11, 6);
  }
  out.set(value, head);
  return out;
}
export function decodeKvValue(buf: Buffer): { version: number; value: Buffer; expiresAtMs?: number } {
  const version = buf.readUIntBE(3, 6);
  if (buf[0] & HAS_TTL) return { version, expiresAtMs: buf.readUIntBE(11, 6), value: buf.subarray(17) };
  return { version, value: buf.subarray(9) };
}

export interface PartitionMeta { seq: number; epoch: number; epochs: Array<[number, number]> }

/**
 * The meta as of now, encoded when its value is first read: every mutation puts one, and a batch
 * writes only the last of each partition's (worker.ts batchMeta), so the others are never encoded.
 */
export function metaOp(s: PartitionState): Op {
  return new MetaPut({ seq: s.seq, epoch: s.epoch, epochs: s.epochs.slice() });
}

/** A meta put whose value is encoded on first read; its getter is the class's, not a closure per put. */
class MetaPut {
  readonly type = 'put';
  readonly key = K.metaKey;
  private encoded: Buffer | undefined;
  constructor(private readonly meta: PartitionMeta) {}
  get value(): Buffer { return (this.encoded ??= diskCodec.encode(this.meta)); }
}
export function copiesOp(s: PartitionState): Op {
  return { type: 'put', key: K.copiesKey, value: diskCodec.encode(s.copies) };
}
function streamOp(st: StreamState): Op {
  return { type: 'put', key: K.streamKey(st.topicId, st.tp), value: diskCodec.encode({ start: st.start, end: st.end, bytes: st.bytes, lastTs: st.lastTs }) };
}
function producerOp(producerId: string, topicId: number, tp: number, w: ProducerWindow): Op {
  return { type: 'put', key: K.producerKey(producerId, topicId, tp), value: diskCodec.encode(w) };
}
function producerDelOp(key: string): Op {
  const [producerId, ids] = key.split('\0');
  const [topicId, tp] = ids.split(':').map(Number);
  return { type: 'del', key: K.producerKey(producerId, topicId, tp) };
}

const reject = (s: PartitionState, code: ErrorCode, ...args: unknown[]): Step => ({ state: s, ops: [], reply: { ok: false, code, args } });

/** Advance the sequence; every mutation is numbered, gap-free, never reused. */
function nextSeq(s: PartitionState): Seq {
  const next = (s.seq + 1) as Seq;
  assert.ok(next > s.seq, 'sequence must grow');
  s.seq = next;
  return next;
}

export function step(s: PartitionState, cmd: Command, nowMs: number): Step {
  switch (cmd.op) {
    case 'kvPut': {
      const version = nextSeq(s);
      const expiresAtMs = cmd.ttlMs === undefined ? undefined : nowMs + cmd.ttlMs;
      const ops: Op[] = [{ type: 'put', key: K.kvKey(cmd.ks, cmd.key), value: encodeKvValue(version, cmd.value, expiresAtMs) }];
      if (expiresAtMs !== undefined) ops.push({ type: 'put', key: K.expiryKey(expiresAtMs, cmd.ks, cmd.key), value: Buffer.alloc(0) });
      ops.push(metaOp(s));
      return { state: s, ops, reply: { ok: true, res: { version } satisfies KvResult } };
    }
    case 'kvDel': {
      const version = nextSeq(s);
      return {
        state: s,
        ops: [{ type: 'del', key: K.kvKey(cmd.ks, cmd.key) }, metaOp(s)],
        reply: { ok: true, res: { version, existed: cmd.existed } satisfies KvResult },
      };
    }
    case 'kvExpire': {
      const ops: Op[] = [{ type: 'del', key: K.expiryKey(cmd.expiresAtMs, cmd.ks, cmd.key) }];
      if (cmd.stillCurrent) {
        assert.ok(cmd.expiresAtMs <= nowMs, 'only expired keys are swept');
        nextSeq(s);
        ops.push({ type: 'del', key: K.kvKey(cmd.ks, cmd.key) }, metaOp(s));
      }
      return { state: s, ops, reply: { ok: true, res: null } };
    }
    case 'produce': return produce(s, cmd, nowMs);
    case 'commit': {
      const st = s.streams.get(streamKeyOf(cmd.topicId, cmd.tp)) ?? emptyStream(cmd.topicId, cmd.tp);
      if (!Number.isSafeInteger(cmd.offset) || cmd.offset < 0 || cmd.offset > st.end) {
        return reject(s, 'OFFSET_OUT_OF_RANGE', cmd.offset, 0, st.end);
      }
      nextSeq(s);
      return {
        state: s,
        ops: [{ type: 'put', key: K.groupKey(cmd.group, cmd.topicId, cmd.tp), value: diskCodec.encode({ offset: cmd.offset, at: nowMs }) }, metaOp(s)],
        reply: { ok: true, res: null },
      };
    }
    case 'uncommit':
      nextSeq(s);
      return { state: s, ops: [{ type: 'del', key: K.groupKey(cmd.group, cmd.topicId, cmd.tp) }, metaOp(s)], reply: { ok: true, res: null } };
    case 'trim': {
      const st = s.streams.get(streamKeyOf(cmd.topicId, cmd.tp));
      if (!st || cmd.newStart <= st.start) return { state: s, ops: [], reply: { ok: true, res: null } };
      assert.ok(cmd.newStart <= st.end, 'retention never removes unwritten offsets');
      assert.ok(cmd.bytesRemoved <= st.bytes, 'retention cannot remove more bytes than stored');
      const oldStart = st.start;
      st.start = cmd.newStart;
      st.bytes -= cmd.bytesRemoved;
      nextSeq(s);
      const ops: Op[] = cmd.removed.map((e) => ({ type: 'del', key: K.timeIndexKey(cmd.topicId, cmd.tp, e.lastTs, e.base) }) as Op);
      ops.push(streamOp(st), metaOp(s));
      ops.push({ type: 'delRange', gte: K.batchKey(cmd.topicId, cmd.tp, oldStart), lt: K.batchKey(cmd.topicId, cmd.tp, cmd.newStart) });
      if (cmd.logThrough !== undefined) ops.push({ type: 'delRange', gte: K.logRange.gte, lt: K.logKey(cmd.logThrough + 1) });
      return { state: s, ops, reply: { ok: true, res: { start: st.start } } };
    }
    case 'dropStream': {
      const key = streamKeyOf(cmd.topicId, cmd.tp);
      s.streams.delete(key);
      for (const pk of [...s.producers.keys()]) if (pk.endsWith('\0' + key)) s.producers.delete(pk);
      nextSeq(s);
      const batches = K.batchRange(cmd.topicId, cmd.tp);
      const index = K.timeIndexRange(cmd.topicId, cmd.tp);
      return {
        state: s,
        ops: [
          { type: 'del', key: K.streamKey(cmd.topicId, cmd.tp) },
          metaOp(s),
          { type: 'delRange', gte: batches.gte, lt: batches.lt },
          { type: 'delRange', gte: index.gte, lt: index.lt },
        ],
        reply: { ok: true, res: null },
      };
    }
  }
}

function produce(s: PartitionState, cmd: Extract<Command, { op: 'produce' }>, nowMs: number): Step {
  const skey = streamKeyOf(cmd.topicId, cmd.tp);
  const st = s.streams.get(skey) ?? emptyStream(cmd.topicId, cmd.tp);
  const count = cmd.batch ? batchCount(cmd.batch) : cmd.records?.length ?? 0;
  if (count === 0) return { state: s, ops: [], reply: { ok: true, res: { base: st.end, count: 0, ts: st.lastTs, end: st.end, duplicate: false } } };
  if (st.end + count > limits.offsetMax) return reject(s, 'INVALID_OFFSET', st.end + count);

  const ops: Op[] = [];
  let pkey: string | undefined;
  if (cmd.producerId !== undefined && cmd.sequence !== undefined) {
    pkey = `${cmd.producerId}\0${skey}`;
    const w = s.producers.get(pkey);
    if (w && cmd.sequence <= w.lastSeq) {
      const seen = w.recent.find(([q]) => q === cmd.sequence);
      if (!seen) return reject(s, 'OUT_OF_ORDER_SEQUENCE', cmd.producerId, cmd.sequence, w.lastSeq + 1);
      return { state: s, ops: [], reply: { ok: true, res: { base: seen[1], count: seen[2], ts: st.lastTs, end: st.end, duplicate: true } } };
    }
    // A pipelined batch whose predecessor is not here yet (it failed, or is behind it) waits its
    // turn: appending it would leave a hole the predecessor could never fill.
    if (cmd.previousSequence !== undefined && (w?.lastSeq ?? -1) !== cmd.previousSequence) {
      return reject(s, 'SEQUENCE_GAP', cmd.producerId, cmd.sequence, cmd.previousSequence, w ? w.lastSeq : 'nothing');
    }
  }

  let bytes = cmd.batchBytes ?? 0;
  if (!cmd.batch) for (const r of cmd.records!) bytes += recordBytes(r);
  const base = st.end;
  // Append time, clamped so a partition's timestamps never go back (the time index relies on it).
  const ts = Math.max(nowMs, st.lastTs);
  st.end = base + count;
  st.bytes += bytes;
  st.lastTs = ts;
  s.streams.set(skey, st);
  nextSeq(s);
  const batch = cmd.batch ?? encodeBatch(cmd.records!.map(([key, value, headers]) => ({ key, value, headers })), ts);
  stampBatch(batch, base, ts);
  ops.push(
    { type: 'put', key: K.batchKey(cmd.topicId, cmd.tp, base), value: Buffer.from(batch.buffer, batch.byteOffset, batch.byteLength) },
    { type: 'put', key: K.timeIndexKey(cmd.topicId, cmd.tp, ts, base), value: diskCodec.encode([count, bytes, s.seq] satisfies TimeIndexValue) },
    streamOp(st),
    metaOp(s),
  );

  if (pkey !== undefined) {
    const w = s.producers.get(pkey) ?? { lastSeq: -1, recent: [], usedAtMs: nowMs };
    w.lastSeq = cmd.sequence!;
    w.usedAtMs = nowMs;
    w.recent.push([cmd.sequence!, base, count]);
    if (w.recent.length > PRODUCER_RECENT_MAX) w.recent.shift();
    s.producers.delete(pkey); // re-insert: most recently used last
    s.producers.set(pkey, w);
    ops.push(producerOp(cmd.producerId!, cmd.topicId, cmd.tp, w));
    while (s.producers.size > limits.producersPerPartitionMax) {
      const oldest = s.producers.keys().next().value as string;
      s.producers.delete(oldest);
      ops.push(producerDelOp(oldest));
    }
  }
  return { state: s, ops, reply: { ok: true, res: { base, count, ts, end: st.end, duplicate: false } satisfies ProduceResult } };
}
