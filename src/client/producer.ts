// Batching producer. Records for one (topic, partition) stream are batched by linger time and
// bytes. An idempotent stream pinned to a partition keeps up to maxInFlight batches in flight,
// each naming the one sent before it (previousSequence), so the node never appends a batch ahead
// of an earlier one that failed; on a retryable failure the producer waits until none of the
// stream's batches is on its way, then resends the unacknowledged ones in sequence order. Other
// streams (the node picks the partition per batch) keep one batch in flight. While the window is
// full, new records keep joining the open batch (up to the byte limit) even once their linger has
// passed: it goes out the moment a slot frees, so with lingerMs 0 one round trip carries
// everything that arrived during the previous one instead of one record each. With lingerMs 0 a
// batch still waits for the end of the current task, so records sent in one loop travel together
// (as Kafka's linger.ms=0 batches what a tight loop appends).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import type { Acks } from '../protocol/api.js';
import { checkName, headerBytes, type Headers, type ProduceTuple } from '../protocol/frames.js';
import type { Router } from './router.js';
import type { Session } from './session.js';
import { toBytes } from './bytes.js';
import { encodeBatch } from '../protocol/batch.js';

export type ProducerMode = 'acked' | 'best-effort';
/** acked: the record's position once the node has it; best-effort: nothing, at once */
export type SendResult<M extends ProducerMode> = M extends 'acked' ? Promise<RecordPosition> : void;

export interface ProducerOptions<M extends ProducerMode = ProducerMode> {
  /** default 'all' */
  acks?: Acks;
  /** how long a batch waits for more records before it is sent (0: to the end of the current task); default 2 */
  lingerMs?: number;
  /** a batch is sent once it holds this many record bytes; default 1 MiB */
  batchBytesMax?: number;
  /** record bytes buffered or in flight; default 32 MiB. Full: acked mode rejects with OVERLOADED, best-effort drops */
  bufferBytesMax?: number;
  /** random producerId + per-batch sequence, so retries never duplicate; default true */
  idempotent?: boolean;
  /** 'acked': send() returns the record's position; 'best-effort': send() returns nothing and never blocks */
  mode?: M;
  /** give up on a batch (and reject its records) this long after it was first sent; default 30 s */
  deliveryTimeoutMs?: number;
  /**
   * batches in flight per idempotent stream pinned to a partition (`partition` given); default 5,
   * at most limits.producerRecentBatchesMax; 1 waits for each batch's answer before the next
   */
  maxInFlight?: number;
}

export interface OutRecord {
  key?: string | Uint8Array;
  value: string | Uint8Array;
  headers?: Headers;
  partition?: number;
}

export interface RecordPosition { partition: number; offset: number }

export interface ProducerStats {
  /** records written to the socket (first attempt) */
  sent: number;
  /** records the node acknowledged */
  acked: number;
  /** records sent again after their batch failed retryably (once per resend) */
  retried: number;
  /** records refused because the buffer was full or the producer closed (best-effort) */
  dropped: number;
  /** records whose batch failed for good */
  errors: number;
  bufferedBytes: number;
  /** batches sent and not yet answered for good, over all streams */
  inFlightBatches: number;
  /** the most batches one stream had in flight at once */
  inFlightBatchesPeak: number;
}

interface Waiter { resolve(p: RecordPosition): void; reject(e: ChicagoError): void }

/** The records of one sendMany call: one promise for all of them, no object per record. */
interface Group {
  readonly positions: RecordPosition[];
  /** records enqueued, then records still unanswered */
  enqueued: number;
  remaining: number;
  /** every record is enqueued: the promise may settle */
  sealed: boolean;
  done: boolean;
  resolve(p: RecordPosition[]): void;
  reject(e: unknown): void;
}

/** A run of a group's records in one batch: records from..from+count-1 of the batch are the group's at..at+count-1. */
interface GroupRun { readonly group: Group; readonly from: number; readonly at: number; count: number }

interface Batch {
  readonly records: ProduceTuple[];
  bytes: number;
  /** the records as one record batch, encoded at the first attempt that sends it that way and kept for retries */
  encoded?: Buffer;
  /** per record, acked mode only; undefined for the records of a sendMany (their group is in `runs`) */
  readonly waiters: Array<Waiter | undefined>;
  /** the sendMany groups whose records are in this batch */
  runs?: GroupRun[];
  sequence?: number;
  producerId?: string;
  /** pipelined streams: the sequence of the batch sent just before it (none for the first) */
  previous?: number;
  deadline?: number;
  attempts: number;
  sentOnce: boolean;
  /** its linger has passed (or is 0): sent as soon as its stream has a free slot */
  due?: boolean;
  /** an attempt is on its way */
  sending: boolean;
  /** the last attempt failed with this retryable error: resent in order once none is on its way */
  failure?: ChicagoError;
  /** answered for good (acknowledged or rejected): later answers to stale attempts are ignored */
  settled: boolean;
}

interface Stream {
  readonly topic: string;
  readonly partition?: number;
  producerId?: string;
  nextSequence: number;
  open?: Batch;
  readonly sealed: Batch[];
  /** sent and not answered for good, in sequence order; at most the stream's window */
  window: Batch[];
  /** rejected batches whose attempt is still on its way: a fresh producerId waits for them */
  orphans: number;
  linger?: NodeJS.Timeout;
  /** lingerMs 0: a microtask will mark the open batch due */
  dueQueued?: boolean;
  /** resending the failed batches of the window after a backoff */
  resend?: NodeJS.Timeout;
  /** the sequence of the last batch sent under the current producerId */
  lastSequence?: number;
}

const RETRY_BACKOFF_MIN_MS = 20;
const RETRY_BACKOFF_MAX_MS = 1000;
// Without idempotence only these are known not to have been applied, so only these are retried.
const SAFE_TO_RETRY = new Set(['OVERLOADED', 'NOT_READY', 'TOO_MANY_SUBSCRIPTIONS']);

export class Producer<M extends ProducerMode = 'acked'> {
  private readonly acks: Acks;
  private readonly lingerMs: number;
  private readonly batchBytesMax: number;
  private readonly bufferBytesMax: number;
  private readonly idempotent: boolean;
  private readonly mode: ProducerMode;
  private readonly deliveryTimeoutMs: number;
  private readonly maxInFlight: number;
  private readonly streams = new Map<string, Stream>();
  /** the stream of the previous send, and its topic checked once: records of one batch arrive in a row */
  private lastStream?: Stream;
  private readonly counters = { sent: 0, acked: 0, retried: 0, dropped: 0, errors: 0, inFlightBatchesPeak: 0 };
  private bufferedBytes = 0;
  /** the refusal shared while the buffer stays full */
  private bufferFull?: ChicagoError;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private readonly offUp: () => void;

  /** `router` sends the batches of a pinned partition straight to its leader; others go through `session` */
  constructor(private readonly session: Session, opts: ProducerOptions<M> = {}, private readonly router?: Router) {
    this.acks = opts.acks ?? 'all';
    this.lingerMs = opts.lingerMs ?? 2;
    this.batchBytesMax = Math.min(opts.batchBytesMax ?? 1024 * 1024, limits.batchBytesMax);
    this.bufferBytesMax = opts.bufferBytesMax ?? 32 * 1024 * 1024;
    this.mode = opts.mode ?? 'acked';
    // Sequences only mean something when the node answers.
    this.idempotent = (opts.idempotent ?? true) && this.acks !== 'none';
    this.deliveryTimeoutMs = opts.deliveryTimeoutMs ?? 30_000;
    this.maxInFlight = opts.maxInFlight ?? 5;
    if (this.mode === 'acked' && this.acks === 'none') {
      throw new ChicagoError('INVALID_ARGUMENT', 'producer', "acks=none has nothing to wait for: use mode 'best-effort'");
    }
    if (!(this.lingerMs >= 0 && this.batchBytesMax > 0 && this.bufferBytesMax >= this.batchBytesMax)) {
      throw new ChicagoError('INVALID_ARGUMENT', 'producer', 'need lingerMs >= 0 and bufferBytesMax >= batchBytesMax > 0');
    }
    // A retry must find its batch among those the partition remembers.
    if (!(Number.isInteger(this.maxInFlight) && this.maxInFlight >= 1 && this.maxInFlight <= limits.producerRecentBatchesMax)) {
      throw new ChicagoError('INVALID_ARGUMENT', 'producer', `maxInFlight must be an integer from 1 to ${limits.producerRecentBatchesMax}`);
    }
    // Batches held while disconnected go out as soon as the session is back.
    this.offUp = session.onUp(() => { for (const s of this.streams.values()) this.pump(s); });
  }

  send(topic: string, record: OutRecord): SendResult<M> {
    return this.enqueue(topic, record) as SendResult<M>;
  }

  /**
   * Acked mode: sends each record as send() would and resolves once all are acknowledged, with
   * their positions in order; it rejects with the first error of any of them (a record refused up
   * front stops the rest from being enqueued; those enqueued before it are still sent). One
   * promise for the call instead of one per record: what an application producing a batch at a
   * time needs, at a fraction of the garbage.
   */
  sendMany(topic: string, records: readonly OutRecord[]): Promise<RecordPosition[]> {
    if (this.mode !== 'acked') return Promise.reject(new ChicagoError('BAD_REQUEST', "sendMany needs mode 'acked'"));
    if (records.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const group: Group = { positions: new Array<RecordPosition>(records.length), enqueued: 0, remaining: records.length, sealed: false, done: false, resolve, reject };
      for (const r of records) {
        const refused = this.enqueue(topic, r, group);
        if (refused) {
          this.failGroup(group, refused);
          break;
        }
      }
      group.sealed = true;
      if (!group.done && group.remaining === 0) this.settleGroup(group);
    });
  }

  private failGroup(g: Group, err: unknown): void {
    if (g.done) return;
    g.done = true;
    g.reject(err);
  }

  private settleGroup(g: Group): void {
    if (g.done) return;
    g.done = true;
    g.resolve(g.positions);
  }

  private enqueue(topic: string, record: OutRecord): Promise<RecordPosition> | undefined;
  private enqueue(topic: string, record: OutRecord, group: Group): unknown;
  /** One record into its stream's open batch. With `group`: returns the error that refused it, or undefined. */
  private enqueue(topic: string, record: OutRecord, group?: Group): unknown {
    const refuse = (err: ChicagoError): Promise<RecordPosition> | ChicagoError | undefined => {
      if (group) return err;
      if (this.mode === 'acked') return Promise.reject(err);
      this.counters.dropped++;
      return undefined;
    };
    if (this.closed) return refuse(new ChicagoError('BAD_REQUEST', 'producer is closed'));
    let tuple: ProduceTuple;
    let size: number;
    try {
      if (topic !== this.lastStream?.topic) checkName('topic', topic);
      const value = toBytes(record.value);
      const key = record.key === undefined ? undefined : toBytes(record.key);
      size = value.length + (key?.length ?? 0) + headerBytes(record.headers);
      if (size > limits.recordBytesMax) throw new ChicagoError('VALUE_TOO_LARGE', size, limits.recordBytesMax);
      tuple = record.headers ? [value, key ?? null, record.headers] : key ? [value, key] : [value];
    } catch (err) {
      if (group) return err;
      if (this.mode === 'acked') return Promise.reject(err);
      this.counters.errors++;
      return undefined;
    }
    if (this.bufferedBytes + size > this.bufferBytesMax) {
      // One error for every record refused until the buffer drains: an application that keeps
      // sending into a full buffer must not spend more on building errors than sending cost.
      this.bufferFull ??= new ChicagoError('OVERLOADED', 'producer buffer', `${this.bufferedBytes} of ${this.bufferBytesMax} bytes`);
      return refuse(this.bufferFull);
    }
    this.bufferedBytes += size;
    const stream = this.stream(topic, record.partition);
    if (stream.open && (stream.open.bytes + size > this.batchBytesMax || stream.open.records.length >= limits.batchRecordsMax)) {
      this.seal(stream);
    }
    const batch = stream.open ??= { records: [], bytes: 0, waiters: [], attempts: 0, sentOnce: false, sending: false, settled: false };
    batch.records.push(tuple);
    batch.bytes += size;
    let result: Promise<RecordPosition> | undefined;
    if (group) {
      batch.waiters.push(undefined);
      const runs = batch.runs ??= [];
      const last = runs[runs.length - 1];
      if (last?.group === group) last.count++;
      else runs.push({ group, from: batch.records.length - 1, at: group.enqueued, count: 1 });
      group.enqueued++;
    } else if (this.mode === 'acked') result = new Promise((resolve, reject) => batch.waiters.push({ resolve, reject }));
    if (batch.bytes >= this.batchBytesMax) this.seal(stream);
    else if (this.lingerMs === 0) {
      if (!stream.dueQueued) {
        stream.dueQueued = true;
        queueMicrotask(() => { stream.dueQueued = false; this.due(stream); });
      }
    }
    else stream.linger ??= setTimeout(() => this.due(stream), this.lingerMs);
    return result;
  }

  /** Send everything buffered now and wait until each batch is acked or has failed. */
  flush(timeoutMs = this.deliveryTimeoutMs + 5_000): Promise<void> {
    for (const s of this.streams.values()) this.seal(s);
    if (this.idle()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        reject(new ChicagoError('TIMEOUT', 'producer flush', timeoutMs));
      }, timeoutMs);
      const done = () => { clearTimeout(timer); resolve(); };
      this.idleWaiters.push(done);
    });
  }

  /** Flush, then refuse further sends. */
  async close(timeoutMs?: number): Promise<void> {
    this.closed = true;
    try {
      await this.flush(timeoutMs);
    } finally {
      this.offUp();
    }
  }

  stats(): ProducerStats {
    let inFlightBatches = 0;
    for (const s of this.streams.values()) inFlightBatches += s.window.length;
    return { ...this.counters, bufferedBytes: this.bufferedBytes, inFlightBatches };
  }

  // ---- internals -----------------------------------------------------------------------------

  private stream(topic: string, partition: number | undefined): Stream {
    const last = this.lastStream;
    if (last !== undefined && last.topic === topic && last.partition === partition) return last;
    const k = partition === undefined ? topic : `${topic}\u0000${partition}`;
    let s = this.streams.get(k);
    if (!s) {
      s = { topic, partition, nextSequence: 0, sealed: [], window: [], orphans: 0, producerId: this.idempotent ? randomUUID() : undefined };
      this.streams.set(k, s);
    }
    this.lastStream = s;
    return s;
  }

  /**
   * How many batches the stream may have in flight. previousSequence orders batches within one
   * partition, so only a stream pinned to one pipelines; the node spreads the others.
   */
  private windowOf(s: Stream): number {
    return this.idempotent && s.partition !== undefined ? this.maxInFlight : 1;
  }

  private seal(s: Stream): void {
    clearTimeout(s.linger);
    s.linger = undefined;
    if (s.open) {
      s.sealed.push(s.open);
      s.open = undefined;
    }
    this.pump(s);
  }

  /** The open batch has lingered long enough: send it now, or as soon as its stream may. */
  private due(s: Stream): void {
    clearTimeout(s.linger);
    s.linger = undefined;
    if (s.open) s.open.due = true;
    this.pump(s);
  }

  /** Batches of a pinned partition go to its leader; the node picks the partition of the others. */
  private sessionOf(s: Stream): Session {
    return s.partition !== undefined && this.router ? this.router.streamNow(s.topic, s.partition) : this.session;
  }

  /** Send new batches while the stream has free slots and nothing waits to be resent. */
  private pump(s: Stream): void {
    // A fresh producerId starts only once the old one has nothing left on its way.
    if (s.window.length > 0 && s.window[0].producerId !== s.producerId) return;
    if (s.orphans > 0 || s.resend || s.window.some((b) => b.failure)) return;
    while (s.window.length < this.windowOf(s) && this.sessionOf(s).isUp) {
      if (s.sealed.length === 0) {
        if (!s.open?.due) return;
        s.sealed.push(s.open);
        s.open = undefined;
      }
      const b = s.sealed.shift()!;
      if (s.producerId !== undefined) {
        b.producerId = s.producerId;
        b.sequence = s.nextSequence++;
        // previousSequence asks the node to keep this batch behind the one before it
        if (this.windowOf(s) > 1 && s.lastSequence !== undefined) b.previous = s.lastSequence;
        s.lastSequence = b.sequence;
      }
      b.deadline = Date.now() + this.deliveryTimeoutMs;
      s.window.push(b);
      this.counters.inFlightBatchesPeak = Math.max(this.counters.inFlightBatchesPeak, s.window.length);
      this.transmit(s, b);
    }
  }

  private transmit(s: Stream, b: Batch): void {
    assert.ok(!b.sending && !b.settled, 'one attempt at a time, never after the answer');
    b.attempts++;
    b.sending = true;
    b.failure = undefined;
    if (!b.sentOnce) {
      b.sentOnce = true;
      this.counters.sent += b.records.length;
    } else this.counters.retried += b.records.length;
    // Picked per attempt: a retry after a failover goes where the partition is led now.
    const session = this.sessionOf(s);
    // One record batch, encoded once, to a node that takes it; tuples to one that does not.
    const payload = session.serverFeatures?.includes('batch')
      ? { batch: b.encoded ??= encodeBatch(b.records.map(([value, key, headers]) => ({ value, key, headers }))) }
      : { records: b.records };
    const body = {
      op: 'produce' as const, topic: s.topic, acks: this.acks, partition: s.partition,
      producerId: b.producerId, sequence: b.sequence, ...payload,
      ...(b.previous !== undefined ? { previousSequence: b.previous } : {}),
    };
    if (this.acks === 'none') {
      const n = b.records.length;
      session.fire(body, () => { this.counters.errors += n; }).then(
        () => this.acked(s, b),
        (err: ChicagoError) => this.failed(s, b, err),
      );
      return;
    }
    const remaining = Math.max(1, b.deadline! - Date.now());
    session.request(body, 'write', remaining).then(
      (reply) => {
        const placed = placesOf(reply, b.records.length);
        if (typeof placed === 'string') return this.failed(s, b, new ChicagoError('INTERNAL', placed));
        if (b.settled) return this.orphanDone(s);
        this.counters.acked += b.records.length;
        b.waiters.forEach((w, i) => w?.resolve(placed(i)));
        for (const run of b.runs ?? []) {
          const g = run.group;
          for (let k = 0; k < run.count; k++) g.positions[run.at + k] = placed(run.from + k);
          g.remaining -= run.count;
          if (g.sealed && g.remaining === 0) this.settleGroup(g);
        }
        this.acked(s, b);
      },
      (err: ChicagoError) => this.failed(s, b, err),
    );
  }

  private acked(s: Stream, b: Batch): void {
    b.sending = false;
    if (b.settled) return this.orphanDone(s);
    const i = s.window.indexOf(b);
    assert.ok(i >= 0, 'an unsettled batch is in its window');
    s.window.splice(i, 1);
    this.release(s, [b]);
  }

  private failed(s: Stream, b: Batch, err: ChicagoError): void {
    b.sending = false;
    if (b.settled) return this.orphanDone(s);
    if (err.code === 'NOT_LEADER') this.router?.stale();
    const retry = this.idempotent ? err.retryable : SAFE_TO_RETRY.has(err.code);
    const backoff = this.backoffOf(b, err);
    if (!retry || this.closedHard() || Date.now() + backoff >= b.deadline!) return this.giveUp(s, b, err);
    // Refused for a gap although everything before it was acknowledged: the partition forgot this
    // producer (or lost an acknowledged batch in a failover). It goes again without the link.
    if (err.code === 'SEQUENCE_GAP' && s.window[0] === b) b.previous = undefined;
    b.failure = err;
    this.scheduleResend(s);
  }

  /** A gap clears as soon as the batch before it is in; other failures back off. */
  private backoffOf(b: Batch, err: ChicagoError): number {
    if (err.code === 'SEQUENCE_GAP') return 0;
    return Math.min(RETRY_BACKOFF_MAX_MS, RETRY_BACKOFF_MIN_MS * 2 ** (b.attempts - 1));
  }

  /**
   * Once none of the stream's batches is on its way, resend the failed ones in sequence order
   * (after the head's backoff): each follows the one before it on the same session, so the node
   * sees them in order, and the acknowledged ones are out of the window already.
   */
  private scheduleResend(s: Stream): void {
    if (s.resend || s.window.some((b) => b.sending) || !s.window.some((b) => b.failure)) return;
    const first = s.window.find((b) => b.failure)!;
    s.resend = setTimeout(() => {
      s.resend = undefined;
      for (const b of [...s.window]) {
        if (b.settled || !b.failure) continue;
        if (this.closedHard() || Date.now() >= b.deadline!) {
          this.giveUp(s, b, b.failure);
          break;
        }
        this.transmit(s, b);
      }
      this.pump(s);
    }, this.backoffOf(first, first.failure!));
  }

  /**
   * Batch b failed for good: it and the batches behind it in flight are rejected with its error
   * (they name it as their predecessor, so the node would never append them). The stream moves to
   * a fresh producerId once the batches ahead of b are answered.
   */
  private giveUp(s: Stream, b: Batch, err: ChicagoError): void {
    const i = s.window.indexOf(b);
    assert.ok(i >= 0, 'a failing batch is in its window');
    const rejected = s.window.splice(i);
    for (const r of rejected) {
      r.settled = true;
      if (r.sending) s.orphans++;
      this.counters.errors += r.records.length;
      for (const w of r.waiters) w?.reject(err);
      for (const run of r.runs ?? []) this.failGroup(run.group, err);
    }
    if (s.producerId !== undefined && s.producerId === b.producerId) {
      // The node may or may not hold this sequence; a fresh id avoids a permanent sequence gap.
      s.producerId = randomUUID();
      s.nextSequence = 0;
      s.lastSequence = undefined;
    }
    this.release(s, rejected);
  }

  private orphanDone(s: Stream): void {
    s.orphans--;
    assert.ok(s.orphans >= 0, 'orphan count never goes below zero');
    this.pump(s);
    this.notifyIdle();
  }

  private closedHard(): boolean { return this.session.isClosed; }

  /** Batches answered for good: their bytes leave the buffer; the stream may go on. */
  private release(s: Stream, done: Batch[]): void {
    for (const b of done) {
      b.settled = true;
      this.bufferedBytes -= b.bytes;
      this.bufferFull = undefined;
    }
    this.scheduleResend(s);
    this.pump(s);
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (!this.idle()) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private idle(): boolean {
    for (const s of this.streams.values()) if (s.open || s.sealed.length > 0 || s.window.length > 0 || s.orphans > 0) return false;
    return true;
  }
}

/**
 * Where record i of a produce went, from either answer: `ranges` (asked for in the hello, see
 * ACCEPT_RANGES) or one entry per record (`partitions`, `offsets`). A string: the answer does not
 * account for `n` records.
 */
export function placesOf(reply: Record<string, unknown>, n: number): string | ((i: number) => { partition: number; offset: number }) {
  const ranges = reply.ranges as Array<{ partition: number; offset: number; count: number }> | undefined;
  if (Array.isArray(ranges)) {
    let total = 0;
    for (const r of ranges) {
      if (!Number.isSafeInteger(r?.count) || r.count < 1 || !Number.isSafeInteger(r.offset) || !Number.isInteger(r.partition)) return 'produce reply has a malformed range';
      total += r.count;
    }
    if (total !== n) return `produce reply has ranges for ${total} records, not ${n}`;
    // records are resolved in order: the range of record i is found by walking on from the last one
    let k = 0;
    let first = 0;
    return (i) => {
      if (i < first) { k = 0; first = 0; }
      while (i >= first + ranges[k].count) first += ranges[k++].count;
      return { partition: ranges[k].partition, offset: ranges[k].offset + (i - first) };
    };
  }
  const partitions = reply.partitions as number[] | undefined;
  const offsets = reply.offsets as number[] | undefined;
  if (!Array.isArray(partitions) || !Array.isArray(offsets) || offsets.length !== n) return `produce reply has ${offsets?.length} offsets for ${n} records`;
  return (i) => ({ partition: partitions[i], offset: offsets[i] });
}
