// A live tail of one topic partition as an async iterator. Credit is granted back as the consumer
// takes records, so at most `creditBytes` wait in memory; after a reconnect it resumes right after
// the last record it handed out; with a group it commits what the consumer has finished.
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import type { GroupOffset, StoredRecord } from '../protocol/api.js';
import { checkName, fromRecordTuple, storedRecordBytes, type ServerFrame, type WireStartPosition } from '../protocol/frames.js';
import { decodeStoredBatches } from '../protocol/batch.js';
import type { Router } from './router.js';
import type { Session, SubscriptionHandler } from './session.js';

export type TailFrom =
  | 'earliest'
  | 'latest'
  | { offset: number }
  | { timestamp: number | Date }
  /** the newest records that fit in this many bytes */
  | { bytes: number };

export interface TailOptions {
  /** where to start when the group has no committed offset (or there is no group); default 'latest' */
  from?: TailFrom;
  /** commit consumed offsets for this group, and start from its committed offset */
  group?: string;
  /** bytes the server may push ahead of the consumer; default 1 MiB */
  creditBytes?: number;
  /** how often consumed offsets are committed; default 1000 */
  commitIntervalMs?: number;
}

export interface TailRecord extends StoredRecord { key?: Buffer; value: Buffer }

type WireFrom = WireStartPosition;

const RESUBSCRIBE_BACKOFF_MIN_MS = 100;
const RESUBSCRIBE_BACKOFF_MAX_MS = 2_000;

export class TailStream implements AsyncIterableIterator<TailRecord> {
  private readonly creditBytes: number;
  private readonly from: WireFrom;
  private readonly queue: Array<{ record: TailRecord; bytes: number }> = [];
  private queuedBytes = 0;
  private waiter: { resolve(r: IteratorResult<TailRecord>): void; reject(e: unknown): void } | undefined;
  /** offset after the last record handed to the consumer: where a resubscription starts */
  private nextOffset: number | undefined;
  /** offset after the last record received on the current subscription: older ones are duplicates */
  private receivedUpTo: number | undefined;
  /** offset after the last record the consumer has finished (asked for the next one after) */
  private processedUpTo: number | undefined;
  private committedUpTo: number | undefined;
  private handedOut: number | undefined;
  private subId = 0;
  private opening = false;
  private consumedBytes = 0;
  private done = false;
  private failure: ChicagoError | undefined;
  private backoffMs = RESUBSCRIBE_BACKOFF_MIN_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private commitTimer: NodeJS.Timeout | undefined;
  private commitInFlight: Promise<void> | undefined;
  private readonly offUp: () => void;
  /** the session of the current subscription: the partition leader's when a router knows it */
  private sub: Session;

  constructor(
    private readonly session: Session, readonly topic: string, readonly partition: number,
    private readonly opts: TailOptions = {}, private readonly router?: Router,
  ) {
    this.sub = session;
    checkName('topic', topic);
    if (opts.group !== undefined) checkName('group', opts.group);
    if (!Number.isInteger(partition) || partition < 0) throw new ChicagoError('INVALID_ARGUMENT', 'partition', partition);
    this.creditBytes = opts.creditBytes ?? 1024 * 1024;
    if (!(this.creditBytes > 0 && this.creditBytes <= limits.subscriberCreditBytesMax)) {
      throw new ChicagoError('INVALID_ARGUMENT', 'creditBytes', `${this.creditBytes} is not in [1, ${limits.subscriberCreditBytesMax}]`);
    }
    this.from = wireFrom(opts.from ?? 'latest');
    this.offUp = session.onUp(() => this.open());
    if (opts.group !== undefined) {
      this.commitTimer = setInterval(() => void this.commit(), opts.commitIntervalMs ?? 1000);
      this.commitTimer.unref();
    }
    if (session.isUp) this.open();
  }

  [Symbol.asyncIterator](): this { return this; }

  next(): Promise<IteratorResult<TailRecord>> {
    // Asking for the next record means the consumer is done with the previous one.
    if (this.handedOut !== undefined) this.processedUpTo = this.handedOut;
    if (this.waiter) return Promise.reject(new ChicagoError('BAD_REQUEST', 'next() called while another next() is pending'));
    const item = this.queue.shift();
    if (item) return Promise.resolve(this.deliver(item));
    if (this.failure) return Promise.reject(this.failure);
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
  }

  async return(): Promise<IteratorResult<TailRecord>> {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Where the tail would resume: the offset after the last record handed out. */
  position(): number | undefined { return this.nextOffset; }

  /**
   * Stop the subscription and, with a group, commit what was consumed. Ending the loop (break,
   * return) calls this: the record in hand counts as consumed, as with a Kafka consumer's close.
   */
  async close(): Promise<void> {
    if (this.handedOut !== undefined) this.processedUpTo = this.handedOut;
    if (this.done && !this.commitTimer) return;
    this.finish();
    clearInterval(this.commitTimer);
    this.commitTimer = undefined;
    await this.commit();
  }

  /** Commit the consumed position now (no-op without a group or progress). Errors are reported. */
  async commit(): Promise<void> {
    const group = this.opts.group;
    if (group === undefined || this.commitInFlight) return this.commitInFlight;
    const upTo = this.processedUpTo;
    if (upTo === undefined || upTo === this.committedUpTo || this.session.isClosed) return;
    this.commitInFlight = this.session
      .request({ op: 'commit', group, topic: this.topic, partition: this.partition, offset: upTo }, 'write')
      .then(() => { this.committedUpTo = upTo; })
      .finally(() => { this.commitInFlight = undefined; });
    return this.commitInFlight.catch((err) => {
      // The next interval tries again; only an explicit commit() or close() sees the error.
      if (this.commitTimer === undefined) throw err;
    });
  }

  // ---- internals -----------------------------------------------------------------------------

  private deliver(item: { record: TailRecord; bytes: number }): IteratorResult<TailRecord> {
    this.queuedBytes -= item.bytes;
    this.nextOffset = item.record.offset + 1;
    this.handedOut = this.nextOffset;
    this.grantBack(item.bytes);
    return { value: item.record, done: false };
  }

  /** Credit goes back in batches of half the window, not per record. */
  private grantBack(bytes: number): void {
    this.consumedBytes += bytes;
    if (this.subId !== 0 && this.consumedBytes >= this.creditBytes / 2) {
      this.sub.credit(this.subId, this.consumedBytes);
      this.consumedBytes = 0;
    }
  }

  private async open(): Promise<void> {
    if (this.done || this.subId !== 0 || this.opening || !this.session.isUp) return;
    this.opening = true;
    let session: Session;
    try {
      if (this.nextOffset === undefined && this.opts.group !== undefined) this.nextOffset = await this.committedOffset(this.opts.group);
      // Live appends are pushed by the leader; any other node would relay them one hop later.
      session = this.router ? await this.router.stream(this.topic, this.partition) : this.session;
    } catch (err) {
      this.opening = false;
      return this.retry(err);
    }
    this.opening = false;
    if (this.done || this.subId !== 0 || !session.isUp) return;
    this.sub = session;
    const from: WireFrom = this.nextOffset !== undefined ? { offset: this.nextOffset } : this.from;
    // Undelivered records of a previous subscription were dropped; they come again from nextOffset.
    this.receivedUpTo = this.nextOffset;
    this.consumedBytes = 0;
    const handler: SubscriptionHandler = {
      records: (f) => this.onRecords(id, f.records),
      batches: (f) => this.onBatches(id, f),
      end: (f) => {
        if (this.subId !== id) return;
        this.subId = 0;
        if (f.code === undefined) return this.finish();
        this.dropQueue();
        this.retry(ChicagoError.fromWire({ code: f.code, message: f.message ?? '', retryable: f.retryable ?? false }));
      },
      lost: () => {
        if (this.subId !== id) return;
        this.subId = 0;
        this.dropQueue();
        // The seed's session re-opens us through onUp; a leader's session may never come back.
        if (session !== this.session) this.reopenSoon();
      },
    };
    const { id, ready } = session.subscribe(
      { op: 'subscribe', topic: this.topic, partition: this.partition, from, credit: this.creditBytes }, handler);
    this.subId = id;
    ready.then(
      () => { this.backoffMs = RESUBSCRIBE_BACKOFF_MIN_MS; },
      (err) => {
        if (this.subId !== id) return;
        this.subId = 0;
        this.retry(err);
      },
    );
  }

  private async committedOffset(group: string): Promise<number | undefined> {
    const reply = await this.session.request({ op: 'offsets', group, topic: this.topic }, 'read');
    const offsets = (reply.offsets ?? []) as GroupOffset[];
    const mine = offsets.find((o) => o.topic === this.topic && o.partition === this.partition);
    if (mine) this.committedUpTo = mine.offset;
    return mine?.offset;
  }

  private onRecords(id: number, tuples: Parameters<typeof fromRecordTuple>[1][]): void {
    if (this.subId !== id) return;
    let duplicateBytes = 0;
    for (const t of tuples) {
      const record = fromRecordTuple(this.partition, t) as TailRecord;
      duplicateBytes += this.take(record, storedRecordBytes(record));
    }
    this.settle(duplicateBytes);
  }

  /** Queues a pushed record; a duplicate (before what was received) is dropped: its bytes are returned. */
  private take(record: TailRecord, bytes: number): number {
    if (this.receivedUpTo !== undefined && record.offset < this.receivedUpTo) return bytes;
    this.receivedUpTo = record.offset + 1;
    this.queue.push({ record, bytes });
    this.queuedBytes += bytes;
    return 0;
  }

  /** After a push is taken: the duplicates' credit goes back, and the consumer wakes. */
  private settle(duplicateBytes: number): void {
    if (duplicateBytes > 0) this.grantBack(duplicateBytes);
    // The server never sends more than the credit (plus one oversized record); more is a broken peer.
    if (this.queuedBytes > 2 * this.creditBytes + limits.recordBytesMax) {
      this.fail(new ChicagoError('INTERNAL', `server pushed ${this.queuedBytes} bytes against ${this.creditBytes} of credit`));
      return;
    }
    this.wake();
  }

  /**
   * Stored batches, decoded here: their records from `first` on go as pushed records, and what
   * the frame used of the credit beyond their record bytes (batch framing, records before `first`)
   * goes back at once.
   */
  private onBatches(id: number, f: Extract<ServerFrame, { op: 'batches' }>): void {
    if (this.subId !== id) return;
    let decoded;
    try {
      decoded = f.batches.map((b) => decodeStoredBatches(b, f.first));
    } catch (err) {
      return this.fail(new ChicagoError('INTERNAL', `undecodable batch pushed: ${(err as Error).message}`));
    }
    let recordBytes = 0;
    let duplicateBytes = 0;
    for (const rs of decoded) {
      for (const r of rs) {
        const record = { partition: this.partition, offset: r.offset, timestampMs: r.timestampMs, value: r.value, key: r.key ?? undefined, headers: r.headers ?? {} } as TailRecord;
        const bytes = storedRecordBytes(record);
        recordBytes += bytes;
        duplicateBytes += this.take(record, bytes);
      }
    }
    if (f.bytes > recordBytes) this.grantBack(f.bytes - recordBytes);
    this.settle(duplicateBytes);
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    const item = this.queue.shift();
    if (item) {
      this.waiter = undefined;
      w.resolve(this.deliver(item));
    } else if (this.failure) {
      this.waiter = undefined;
      w.reject(this.failure);
    } else if (this.done) {
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
  }

  private retry(err: unknown): void {
    const e = err instanceof ChicagoError ? err : new ChicagoError('INTERNAL', String(err));
    if (!e.retryable) return this.fail(e);
    this.reopenSoon();
  }

  private reopenSoon(): void {
    if (this.done) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.open(), this.backoffMs);
    this.backoffMs = Math.min(RESUBSCRIBE_BACKOFF_MAX_MS, this.backoffMs * 2);
  }

  private dropQueue(): void {
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private fail(err: ChicagoError): void {
    this.failure ??= err;
    this.finish();
  }

  private finish(): void {
    if (!this.done) {
      this.done = true;
      clearTimeout(this.retryTimer);
      this.offUp();
      if (this.subId !== 0) this.sub.unsubscribe(this.subId);
      this.subId = 0;
    }
    this.wake();
  }
}

function wireFrom(from: TailFrom): WireFrom {
  if (typeof from === 'string' || !('timestamp' in from)) return from;
  return { timestamp: from.timestamp instanceof Date ? from.timestamp.getTime() : from.timestamp };
}
