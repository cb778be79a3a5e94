// A worker thread hosting partition actors. It owns their column families, feeds each request
// through the pure `step`, writes the resulting ops in one RocksDB batch per event-loop turn
// (group commit), honours the sync policy, and answers. Reads run here too, after the writes
// they follow, so a read always sees every write acknowledged before it.
import { parentPort, workerData } from 'node:worker_threads';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import assert from 'node:assert/strict';
import * as Comlink from 'comlink';
import nodeEndpointModule from 'comlink/dist/umd/node-adapter.js';
import type { ChainedBatch, RocksLevel } from '@nxtedition/rocksdb';
import { attachDatabase, columnName, ColumnStore } from '../storage/rocks.js';
import { threadCodec, diskCodec } from '../runtime/codec.js';
import { systemClock } from '../runtime/clock.js';
import { asChicagoError, ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { epoch, partitionId, seq } from '../runtime/ids.js';
import * as K from '../storage/keys.js';
import {
  decodeKvValue, emptyStream, initialState, step, streamKeyOf, recordBytes,
  type Command, type Op, type PartitionState, type StoredBatch, type ProducerWindow,
} from './partition.js';
import type {
  FetchReply, FetchedRecord, GroupOffsetReply, KvGetReply, Request, Response, StreamInfoReply,
  TopicRetention, WorkerControl, WorkerStats,
} from './messages.js';
import type { RetentionSpec, StartPosition } from '../node/api.js';

const nodeEndpoint = nodeEndpointModule as unknown as typeof nodeEndpointModule.default;

interface Hosted { state: PartitionState; store: ColumnStore }
interface PendingReply { id: number; reply: Response }

const MUTATIONS = new Set<Request['op']>(['kvPut', 'kvDel', 'produce', 'commit', 'dropStream']);

class PartitionWorker {
  private readonly codec = threadCodec();
  private readonly hosted = new Map<number, Hosted>();
  private inbox: Request[] = [];
  private drainScheduled = false;
  private batch: ChainedBatch | undefined;
  /** delete-ranges of the open batch, run after it is written */
  private deferredRanges: Array<{ store: ColumnStore; gte: Buffer; lt: Buffer }> = [];
  /** mutations of the open batch, answered once it is durable per the sync policy */
  private batchReplies: PendingReply[] = [];
  private batchPartitions = new Set<number>();
  /** written but waiting for the next group fsync */
  private awaitingSync: PendingReply[] = [];
  private syncTimer: NodeJS.Timeout | undefined;
  private lastSyncMs = 0;
  private syncPolicy = 'none';
  private groupIntervalMs = 2;
  private retention = new Map<number, RetentionSpec>();
  private maintenanceTimer: NodeJS.Timeout | undefined;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 100 });
  private counters = { expiredKeys: 0, trimmedBatches: 0, fsyncs: 0 };
  private draining = false;

  constructor(private readonly db: RocksLevel, private readonly port: import('node:worker_threads').MessagePort) {
    this.loopDelay.enable();
    port.on('message', (buf: Uint8Array) => {
      const reqs = this.codec.decode<Request[]>(buf);
      for (const r of reqs) this.inbox.push(r);
      if (!this.drainScheduled) {
        this.drainScheduled = true;
        setImmediate(() => this.drain());
      }
    });
  }

  // ---- control plane ----

  readonly control: WorkerControl = {
    open: async (spec) => {
      this.syncPolicy = spec.syncPolicy;
      this.groupIntervalMs = spec.groupIntervalMs;
      for (const p of spec.partitions) await this.load(p);
      this.maintenanceTimer = setInterval(() => { void this.control.maintain(); }, spec.maintenanceIntervalMs);
      this.maintenanceTimer.unref();
    },
    setRetention: (topics: TopicRetention[]) => {
      this.retention = new Map(topics.map((t) => [t.topicId, t.retention]));
    },
    maintain: async () => {
      let expired = 0;
      let trimmedBatches = 0;
      for (const h of this.hosted.values()) {
        expired += this.sweepExpired(h);
        trimmedBatches += this.applyRetention(h);
      }
      this.flush();
      this.counters.expiredKeys += expired;
      this.counters.trimmedBatches += trimmedBatches;
      return { expired, trimmedBatches };
    },
    stats: (): WorkerStats => {
      const ms = (ns: number) => (Number.isFinite(ns) ? ns / 1e6 : 0);
      const s: WorkerStats = {
        eventLoopDelayMs: { p50: ms(this.loopDelay.percentile(50)), p99: ms(this.loopDelay.percentile(99)), max: ms(this.loopDelay.max) },
        partitions: [...this.hosted.values()].map(({ state }) => ({
          id: state.id, epoch: state.epoch, seq: state.seq,
          streams: [...state.streams.values()].map((st) => ({ topicId: st.topicId, tp: st.tp, start: st.start, end: st.end, bytes: st.bytes })),
        })),
        ...this.counters,
      };
      this.loopDelay.reset();
      return s;
    },
    drain: async () => {
      this.draining = true;
      clearInterval(this.maintenanceTimer);
      this.drain();
      this.fsyncNow();
    },
  };

  /** Rebuild a partition's in-memory state from its column family. */
  private async load(p: number): Promise<void> {
    const store = new ColumnStore(this.db, this.db.columns[columnName(p)]);
    const metaBuf = store.get(K.metaKey);
    const meta = metaBuf ? diskCodec.decode<{ seq: number; epoch: number }>(metaBuf) : { seq: 0, epoch: 1 };
    const state = initialState(partitionId(p), epoch(meta.epoch), seq(meta.seq));
    for (const [k, v] of store.iterate(K.streamRange)) {
      const topicId = k.readUInt32BE(1);
      const tp = k.readUInt32BE(5);
      const st = Object.assign(emptyStream(topicId, tp), diskCodec.decode<object>(v));
      state.streams.set(streamKeyOf(topicId, tp), st);
      // A trim records its new start before its range delete runs; finish any that a crash cut short.
      if (st.start > 0) await store.clear({ gte: K.batchKey(topicId, tp, 0), lt: K.batchKey(topicId, tp, st.start) });
    }
    const producers: Array<[string, ProducerWindow]> = [];
    for (const [k, v] of store.iterate(K.producerRange)) {
      const sep = k.indexOf(0, 1);
      const producerId = k.subarray(1, sep).toString('utf8');
      producers.push([`${producerId}\0${k.readUInt32BE(sep + 1)}:${k.readUInt32BE(sep + 5)}`, diskCodec.decode<ProducerWindow>(v)]);
    }
    producers.sort((a, b) => a[1].usedAtMs - b[1].usedAtMs);
    for (const [key, w] of producers.slice(-limits.producersPerPartitionMax)) state.producers.set(key, w);
    this.hosted.set(p, { state, store });
  }

  // ---- data plane ----

  private drain(): void {
    this.drainScheduled = false;
    const reqs = this.inbox;
    this.inbox = [];
    const replies: Response[] = [];
    for (const req of reqs) {
      if (this.draining && MUTATIONS.has(req.op)) {
        replies.push({ id: req.id, ok: false, err: { code: 'SHUTTING_DOWN', args: [] } });
        continue;
      }
      const h = this.hosted.get(req.p);
      if (!h) {
        replies.push({ id: req.id, ok: false, err: { code: 'INTERNAL', args: [`partition ${req.p} is not on this worker`] } });
        continue;
      }
      try {
        if (MUTATIONS.has(req.op)) this.mutate(h, req);
        else {
          this.flush(); // reads see every write queued before them
          replies.push({ id: req.id, ok: true, res: this.read(h, req) });
        }
      } catch (e) {
        const err = asChicagoError(e);
        replies.push({ id: req.id, ok: false, err: { code: err.code, args: [err.message] } });
      }
    }
    this.flush();
    this.send(replies);
  }

  private mutate(h: Hosted, req: Request): void {
    const cmd = this.toCommand(h, req);
    const { ops, reply } = step(h.state, cmd, systemClock.nowMs());
    this.apply(h, ops);
    this.batchReplies.push({ id: req.id, reply: reply.ok ? { id: req.id, ok: true, res: reply.res } : { id: req.id, ok: false, err: { code: reply.code, args: reply.args } } });
  }

  private toCommand(h: Hosted, req: Request): Command {
    switch (req.op) {
      case 'kvPut': return { op: 'kvPut', ks: req.ks, key: req.key, value: req.value, ttlMs: req.ttlMs };
      case 'kvDel': {
        this.flush(); // the existence check must see queued writes
        return { op: 'kvDel', ks: req.ks, key: req.key, existed: this.liveKv(h, req.ks, req.key) !== undefined };
      }
      case 'produce': return { op: 'produce', topicId: req.topicId, tp: req.tp, records: req.records, producerId: req.producerId, sequence: req.sequence };
      case 'commit': return { op: 'commit', group: req.group, topicId: req.topicId, tp: req.tp, offset: req.offset };
      case 'dropStream': return { op: 'dropStream', topicId: req.topicId, tp: req.tp };
      default: throw new ChicagoError('UNKNOWN_OP', req.op);
    }
  }

  private apply(h: Hosted, ops: Op[]): void {
    if (ops.length === 0) return;
    this.batch ??= this.db.batch();
    this.batchPartitions.add(h.state.id);
    for (const op of ops) {
      if (op.type === 'put') this.batch.put(op.key, op.value, { column: h.store.column });
      else if (op.type === 'del') this.batch.del(op.key, { column: h.store.column });
      else this.deferredRanges.push({ store: h.store, gte: op.gte, lt: op.lt });
    }
  }

  /** Write the open batch; answer its mutations as the sync policy allows. */
  private flush(): void {
    const replies = this.batchReplies;
    const batch = this.batch;
    this.batchReplies = [];
    this.batch = undefined;
    const touched = this.batchPartitions;
    this.batchPartitions = new Set();
    if (batch) {
      try {
        batch._writeSync({ sync: this.syncPolicy === 'always' });
        if (this.syncPolicy === 'always') this.counters.fsyncs++;
      } catch (e) {
        // The batch is atomic and did not apply: fail its writes and rebuild memory from disk.
        this.deferredRanges = [];
        const msg = (e as Error).message;
        for (const r of replies) r.reply = { id: r.id, ok: false, err: { code: 'STORAGE', args: [msg] } };
        this.send(replies.map((r) => r.reply));
        for (const p of touched) void this.load(p);
        return;
      } finally {
        void batch.close();
      }
      for (const r of this.deferredRanges) void r.store.clear({ gte: r.gte, lt: r.lt });
      this.deferredRanges = [];
    }
    if (replies.length === 0) return;
    if (this.syncPolicy === 'group') {
      for (const r of replies) this.awaitingSync.push(r);
      this.scheduleGroupSync();
    } else {
      this.send(replies.map((r) => r.reply));
    }
  }

  private scheduleGroupSync(): void {
    if (this.syncTimer) return;
    const wait = Math.max(0, this.lastSyncMs + this.groupIntervalMs - performance.now());
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.fsyncNow();
    }, wait);
  }

  /** One fsynced write makes every earlier WAL write of the database durable. */
  private fsyncNow(): void {
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    const waiting = this.awaitingSync;
    this.awaitingSync = [];
    const any = this.hosted.values().next().value;
    if (!any) return;
    const b = this.db.batch();
    b.put(K.syncMarkerKey, Buffer.alloc(0), { column: any.store.column });
    try {
      b._writeSync({ sync: true });
      this.counters.fsyncs++;
      this.lastSyncMs = performance.now();
      this.send(waiting.map((r) => r.reply));
    } catch (e) {
      // Written but not known durable: the honest answer is "unknown".
      this.send(waiting.map((r) => ({ id: r.id, ok: false, err: { code: 'OUTCOME_UNKNOWN', args: [`fsync failed: ${(e as Error).message}`] } }) as Response));
    } finally {
      void b.close();
    }
  }

  private send(replies: Response[]): void {
    if (replies.length > 0) this.port.postMessage(this.codec.encode(replies));
  }

  // ---- reads ----

  private read(h: Hosted, req: Request): unknown {
    switch (req.op) {
      case 'kvGet': {
        const live = this.liveKv(h, req.ks, req.key);
        return live ? ({ value: live.value, version: live.version, expiresAtMs: live.expiresAtMs } satisfies KvGetReply) : null;
      }
      case 'kvScan': return this.scan(h, req);
      case 'fetch': return this.fetch(h, req.topicId, req.tp, req.from, req.maxRecords, req.maxBytes);
      case 'streamInfo': {
        const st = h.state.streams.get(streamKeyOf(req.topicId, req.tp)) ?? emptyStream(req.topicId, req.tp);
        return { start: st.start, end: st.end, bytes: st.bytes, lastTs: st.lastTs } satisfies StreamInfoReply;
      }
      case 'groupOffsets': return this.groupOffsets(h, req.group);
      default: throw new ChicagoError('UNKNOWN_OP', req.op);
    }
  }

  /** The current, unexpired value of a key. Expired keys are invisible before the sweep removes them. */
  private liveKv(h: Hosted, ks: string, key: Uint8Array) {
    const buf = h.store.get(K.kvKey(ks, key));
    if (!buf) return undefined;
    const v = decodeKvValue(buf);
    if (v.expiresAtMs !== undefined && v.expiresAtMs <= systemClock.nowMs()) return undefined;
    return v;
  }

  private scan(h: Hosted, req: Extract<Request, { op: 'kvScan' }>) {
    const prefix = K.kvPrefix(req.ks, req.prefix);
    const gte = req.after ? Buffer.concat([K.kvKey(req.ks, req.after), Buffer.from([0])]) : prefix;
    const now = systemClock.nowMs();
    const items: Array<{ key: Buffer; value: Buffer; version: number }> = [];
    for (const [k, v] of h.store.iterate({ gte, lt: K.prefixEnd(prefix) })) {
      const d = decodeKvValue(v);
      if (d.expiresAtMs !== undefined && d.expiresAtMs <= now) continue;
      items.push({ key: K.userKeyOf(k, req.ks), value: Buffer.from(d.value), version: d.version });
      if (items.length >= req.limit) break;
    }
    return items;
  }

  private resolveStart(h: Hosted, topicId: number, tp: number, from: StartPosition, start: number, end: number): number {
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
        const first = h.store.range({ gte: K.timeIndexFrom(topicId, tp, Math.max(0, from.timestampMs)), lt: r.lt }, 1)[0];
        return first ? Math.max(start, K.parseTimeIndexKey(first[0]).baseOffset) : end;
      }
      case 'bytes': {
        // Newest whole batches that fit; at least the last batch, so a tail always shows something.
        let total = 0;
        let at = end;
        for (const [k, v] of h.store.iterate({ ...K.timeIndexRange(topicId, tp), reverse: true })) {
          const [, bytes] = diskCodec.decode<[number, number]>(v);
          const base = K.parseTimeIndexKey(k).baseOffset;
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

  private fetch(h: Hosted, topicId: number, tp: number, from: StartPosition, maxRecords: number, maxBytes: number): FetchReply {
    const st = h.state.streams.get(streamKeyOf(topicId, tp)) ?? emptyStream(topicId, tp);
    const first = this.resolveStart(h, topicId, tp, from, st.start, st.end);
    const records: FetchedRecord[] = [];
    let next = first;
    if (first < st.end) {
      const range = K.batchRange(topicId, tp);
      // The batch holding `first` is the last one whose base is ≤ first.
      const holder = h.store.range({ gte: range.gte, lt: K.batchKey(topicId, tp, first + 1), reverse: true }, 1)[0];
      const gte = holder ? holder[0] : K.batchKey(topicId, tp, first);
      let bytes = 0;
      outer: for (const [k, v] of h.store.iterate({ gte, lt: range.lt }, 16)) {
        const base = K.baseOffsetOfBatchKey(k);
        const batch = diskCodec.decode<StoredBatch>(v);
        for (let i = 0; i < batch.r.length; i++) {
          const offset = base + i;
          if (offset < next) continue;
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
    return { records, next, start: st.start, end: st.end };
  }

  private groupOffsets(h: Hosted, group: string): GroupOffsetReply[] {
    const out: GroupOffsetReply[] = [];
    for (const [k, v] of h.store.iterate(K.groupRange(group))) {
      const { topicId, tp } = K.parseGroupKey(k);
      const { offset, at } = diskCodec.decode<{ offset: number; at: number }>(v);
      const st = h.state.streams.get(streamKeyOf(topicId, tp)) ?? emptyStream(topicId, tp);
      let oldestUncommittedTs: number | null = null;
      if (offset < st.end) {
        const from = Math.max(offset, st.start);
        const rec = this.fetch(h, topicId, tp, { kind: 'offset', offset: from }, 1, 1).records[0];
        oldestUncommittedTs = rec ? rec[1] : null;
      }
      out.push({ topicId, tp, offset, at, end: st.end, oldestUncommittedTs });
    }
    return out;
  }

  // ---- maintenance: TTL sweep and retention, as commands through the same transition ----

  private sweepExpired(h: Hosted): number {
    const now = systemClock.nowMs();
    let n = 0;
    for (const [k] of h.store.range(K.expiryUpTo(now), limits.ttlSweepKeysMax)) {
      const e = K.parseExpiryKey(k);
      const cur = h.store.get(K.kvKey(e.keyspace, e.key));
      const stillCurrent = cur !== undefined && decodeKvValue(cur).expiresAtMs === e.expiresAtMs;
      const { ops } = step(h.state, { op: 'kvExpire', ks: e.keyspace, key: e.key, expiresAtMs: e.expiresAtMs, stillCurrent }, now);
      this.apply(h, ops);
      if (stillCurrent) n++;
    }
    return n;
  }

  private applyRetention(h: Hosted): number {
    const now = systemClock.nowMs();
    let trimmed = 0;
    for (const st of h.state.streams.values()) {
      const spec = this.retention.get(st.topicId);
      if (!spec || st.start === st.end) continue;
      const committed = spec.untilGroup ? this.committedOffset(h, spec.untilGroup, st.topicId, st.tp) : undefined;
      const removed: Array<{ lastTs: number; base: number }> = [];
      let newStart = st.start;
      let bytesRemoved = 0;
      for (const [k, v] of h.store.iterate(K.timeIndexRange(st.topicId, st.tp))) {
        const { lastTimestampMs, baseOffset } = K.parseTimeIndexKey(k);
        if (baseOffset < st.start) continue;
        const [count, bytes] = diskCodec.decode<[number, number]>(v);
        const batchEnd = baseOffset + count;
        const expired = spec.ms !== undefined && lastTimestampMs < now - spec.ms;
        const oversize = spec.bytes !== undefined && st.bytes - bytesRemoved > spec.bytes;
        const delivered = committed !== undefined && batchEnd <= committed;
        if (!(expired || oversize || delivered) || removed.length >= limits.ttlSweepKeysMax) break;
        removed.push({ lastTs: lastTimestampMs, base: baseOffset });
        newStart = batchEnd;
        bytesRemoved += bytes;
      }
      if (removed.length === 0) continue;
      const { ops } = step(h.state, { op: 'trim', topicId: st.topicId, tp: st.tp, newStart, bytesRemoved, removed }, now);
      this.apply(h, ops);
      trimmed += removed.length;
    }
    return trimmed;
  }

  private committedOffset(h: Hosted, group: string, topicId: number, tp: number): number | undefined {
    const buf = h.store.get(K.groupKey(group, topicId, tp));
    return buf ? diskCodec.decode<{ offset: number }>(buf).offset : undefined;
  }
}

const { handle, dataPort, controlPort } = workerData as {
  handle: bigint;
  dataPort: import('node:worker_threads').MessagePort;
  controlPort: import('node:worker_threads').MessagePort;
};
assert.ok(parentPort, 'partition worker must run in a worker thread');
const db = await attachDatabase(handle);
const worker = new PartitionWorker(db, dataPort);
Comlink.expose(worker.control, nodeEndpoint(controlPort));
