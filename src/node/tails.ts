// Live tails and long-poll waiters of the topic partitions, on the gateway thread. A fresh append
// reaches a subscriber that is caught up straight from the producer's request (no read); one that
// is behind reads from its partition worker, as much as its credit allows. Appends arrive only at
// the partition's leader, so a caught-up tail on another node long-polls the leader instead.
import { ChicagoError, asChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { offset as toOffset } from '../runtime/ids.js';
import type { StoredRecord, Tail, TailSink } from '../protocol/api.js';
import type { FetchReply } from '../actors/messages.js';
import type { WireRecord } from '../actors/partition.js';
import { recordBytes } from '../actors/partition.js';

export interface StreamSource {
  /**
   * reads at the partition's leader; waitMs > 0 holds an empty read there until an append;
   * `batches`: the stored batches (FetchReply.batches), within maxBytes of batch bytes
   */
  read(offset: number, maxRecords: number, maxBytes: number, waitMs: number, batches?: boolean): Promise<FetchReply>;
  /** true while this node leads the partition, so its appends reach the tail here */
  appendsArriveHere(): boolean;
}

interface Waiter { after: number; wake(): void }

class Watched {
  /** the end readers may see, as far as this node knows */
  end = -1;
  readonly tails = new Set<LiveTail>();
  readonly waiters = new Set<Waiter>();
  /** appends answered before they were confirmed, oldest first: pushed once they are */
  held: Array<Append & { epoch: number }> = [];
}

/**
 * An append acknowledged by its partition: `count` records at `base`. Its records, and the bytes the
 * partition stored for it (for tails of stored batches), are made when a tail first asks for them:
 * a batch produced and tailed as batches is never decoded here.
 */
/** An append for live tails; without `records` and `batch` its bytes are not at hand (given to the partition worker): tails read it. */
export interface Append { base: number; ts: number; count: number; records?(): WireRecord[]; batch?(): Uint8Array }

/** An append whose records are at hand. */
export function appendOf(base: number, ts: number, records: WireRecord[]): Append {
  return { base, ts, count: records.length, records: () => records };
}

export function toStored(tp: number, r: FetchReply['records'][number]): StoredRecord {
  return {
    partition: tp, offset: toOffset(r[0]), timestampMs: r[1],
    key: r[2] ?? undefined, value: r[3], headers: r[4] ?? {},
  };
}

class LiveTail implements Tail {
  private reading = false;
  private closed = false;

  constructor(
    private readonly streams: StreamWatchers,
    private readonly skey: string,
    private readonly tp: number,
    private position: number,
    private credit: number,
    private readonly source: StreamSource,
    private readonly sink: TailSink,
  ) {}

  grant(bytes: number): void {
    if (this.closed) return;
    this.credit = Math.min(this.credit + Math.max(0, bytes), limits.subscriberCreditBytesMax);
    this.pump();
  }

  cancel(): void { this.end(); }

  end(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.streams.detach(this.skey, this);
    this.sink.close(err);
  }

  /**
   * An append: deliver it from memory when caught up, else read. A tail of stored batches without
   * the append's batch reads it.
   */
  appended(a: Append): void {
    if (this.closed) return;
    const { base, ts } = a;
    if (this.sink.pushBatches) {
      if (!a.batch || this.reading || this.credit <= 0 || this.position !== base) { this.pump(); return; }
      const bytes = a.batch();
      this.credit -= bytes.length;
      this.position = base + a.count;
      this.sink.pushBatches(base, [bytes], bytes.length);
      return;
    }
    if (!a.records || this.reading || this.credit <= 0 || this.position !== base) { this.pump(); return; }
    const records = a.records();
    const out: StoredRecord[] = [];
    let i = 0;
    // At least one record per push even past the credit, so a large record cannot stall the tail.
    for (; i < records.length && i < limits.pushRecordsMax && (out.length === 0 || this.credit > 0); i++) {
      const r = records[i];
      out.push({ partition: this.tp, offset: toOffset(base + i), timestampMs: ts, key: r[0] ?? undefined, value: r[1], headers: r[2] ?? {} });
      this.credit -= recordBytes(r);
    }
    this.position = base + i;
    this.sink.push(out);
    if (i < records.length) this.pump();
  }

  pump(): void {
    if (this.closed || this.reading || this.credit <= 0) return;
    const end = this.streams.knownEnd(this.skey);
    const caughtUp = end >= 0 && this.position >= end;
    if (caughtUp && this.source.appendsArriveHere()) return; // the next append wakes us
    this.reading = true;
    const raw = this.sink.pushBatches !== undefined;
    this.source.read(this.position, limits.pushRecordsMax, Math.min(this.credit, limits.fetchBytesMax), caughtUp ? limits.remoteTailWaitMs : 0, raw).then(
      (reply) => {
        this.reading = false;
        if (this.closed) return;
        this.streams.observeEnd(this.skey, reply.end);
        if (reply.batches && reply.batches.length > 0) {
          let bytes = 0;
          for (const b of reply.batches) bytes += b.length;
          this.credit -= bytes;
          this.position = reply.next;
          this.sink.pushBatches!(reply.first ?? reply.next, reply.batches, bytes);
        } else if (reply.records.length > 0) {
          for (const r of reply.records) this.credit -= recordBytes([r[2], r[3], r[4]]);
          this.position = reply.next;
          this.sink.push(reply.records.map((r) => toStored(this.tp, r)));
        }
        // knownEnd, not reply.end: an append acknowledged while this read was in flight found the
        // tail busy and left it to this read, whose reply may predate it
        const got = reply.records.length > 0 || (reply.batches?.length ?? 0) > 0;
        if (got || this.position < this.streams.knownEnd(this.skey) || !this.source.appendsArriveHere()) this.pump();
      },
      (e) => {
        this.reading = false;
        const err = asChicagoError(e);
        // Retention removed what we were about to read: continue from what is left, as Kafka's
        // auto.offset.reset=earliest would; the subscriber sees the jump in the offsets.
        if (err.code === 'OFFSET_OUT_OF_RANGE' && !this.closed) {
          this.recoverFromTrim();
          return;
        }
        this.end(err);
      },
    );
  }

  private recoverFromTrim(): void {
    this.reading = true;
    this.streams.startOf(this.skey).then((start) => {
      this.reading = false;
      if (start > this.position) this.position = start;
      else return this.end(new ChicagoError('OFFSET_OUT_OF_RANGE', this.position, start, this.streams.knownEnd(this.skey)));
      this.pump();
    }, (e) => { this.reading = false; this.end(asChicagoError(e)); });
  }
}

export class StreamWatchers {
  private readonly watched = new Map<string, Watched>();

  constructor(private readonly startOfStream: (skey: string) => Promise<number>) {}

  private get(skey: string): Watched {
    let w = this.watched.get(skey);
    if (!w) { w = new Watched(); this.watched.set(skey, w); }
    return w;
  }

  knownEnd(skey: string): number { return this.watched.get(skey)?.end ?? -1; }
  startOf(skey: string): Promise<number> { return this.startOfStream(skey); }

  /** is anything on this node watching the stream (a tail or a long poll)? */
  watches(skey: string): boolean { return this.watched.has(skey); }

  observeEnd(skey: string, end: number): void {
    const w = this.watched.get(skey);
    if (w && end > w.end) w.end = end;
  }

  /**
   * Called after an append is acknowledged by its partition's leader. One that readers may not see
   * yet (`hiddenIn` the leader's epoch: a failover could still lose it) waits here until confirmed.
   */
  appended(skey: string, a: Append, hiddenIn?: number): void {
    const w = this.watched.get(skey);
    if (!w) return;
    if (hiddenIn !== undefined && a.base + a.count > w.end) {
      if (w.held.length >= limits.heldAppendsPerStreamMax) w.held.shift();
      w.held.push({ ...a, epoch: hiddenIn });
      return;
    }
    this.deliver(w, a);
  }

  /**
   * The partition worker leading in `epoch` says readers may now see these streams up to `end`.
   * What it held back in that epoch is confirmed up to there; what an older epoch held back may
   * have been lost in a failover, and is dropped (tails read what is there instead).
   */
  confirmed(streams: Array<[skey: string, end: number, epoch: number]>): void {
    for (const [skey, end, epoch] of streams) {
      const w = this.watched.get(skey);
      if (!w) continue;
      if (w.held.length > 0 && w.held[0].epoch < epoch) w.held = w.held.filter((a) => a.epoch >= epoch);
      let i = 0;
      for (; i < w.held.length && w.held[i].epoch === epoch && w.held[i].base + w.held[i].count <= end; i++) {
        this.deliver(w, w.held[i]);
      }
      w.held.splice(0, i);
      if (end <= w.end) continue;
      w.end = end;
      for (const waiter of w.waiters) if (end > waiter.after) waiter.wake();
      // Tails read what no push brings them (dropped from `held`); after this turn, so that the
      // answers in this worker message push theirs first.
      const tails = [...w.tails];
      setImmediate(() => { for (const t of tails) t.pump(); });
    }
  }

  private deliver(w: Watched, a: Append): void {
    w.end = Math.max(w.end, a.base + a.count);
    for (const t of w.tails) t.appended(a);
    for (const waiter of w.waiters) if (w.end > waiter.after) waiter.wake();
  }

  openTail(skey: string, tp: number, position: number, credit: number, source: StreamSource, sink: TailSink): Tail {
    const w = this.get(skey);
    const t = new LiveTail(this, skey, tp, position, credit, source, sink);
    w.tails.add(t);
    t.pump();
    return t;
  }

  /** Leadership moved: every tail re-decides whether it waits for appends here or polls the leader. */
  pumpAll(): void {
    for (const w of this.watched.values()) for (const t of w.tails) t.pump();
  }

  detach(skey: string, t: LiveTail): void {
    const w = this.watched.get(skey);
    if (!w) return;
    w.tails.delete(t);
    this.forgetIfIdle(skey, w);
  }

  /** Resolves when the stream's end passes `after`, or after `waitMs`. */
  waitForAppend(skey: string, after: number, waitMs: number): Promise<void> {
    const w = this.get(skey);
    if (w.waiters.size >= limits.waitersPerPartitionMax) {
      return Promise.reject(new ChicagoError('OVERLOADED', `long-poll waiters of ${skey}`, `${w.waiters.size}`));
    }
    if (w.end > after) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: Waiter = {
        after,
        wake: () => {
          clearTimeout(timer);
          w.waiters.delete(waiter);
          this.forgetIfIdle(skey, w);
          resolve();
        },
      };
      const timer = setTimeout(waiter.wake, waitMs);
      w.waiters.add(waiter);
    });
  }

  /** The stream is gone (topic deleted, node stopping): end every tail and wake every waiter. */
  closeStream(skey: string, err: Error): void {
    const w = this.watched.get(skey);
    if (!w) return;
    for (const t of [...w.tails]) t.end(err);
    for (const waiter of [...w.waiters]) waiter.wake();
    this.watched.delete(skey);
  }

  /** End the tails of streams whose topic is gone (deleted here or on another node). */
  retain(keep: (topicId: number) => boolean, why: (topicId: number) => Error): void {
    for (const skey of [...this.watched.keys()]) {
      const topicId = Number(skey.split(':')[0]);
      if (!keep(topicId)) this.closeStream(skey, why(topicId));
    }
  }

  closeAll(err: Error): void {
    for (const skey of [...this.watched.keys()]) this.closeStream(skey, err);
  }

  private forgetIfIdle(skey: string, w: Watched): void {
    if (w.tails.size === 0 && w.waiters.size === 0) this.watched.delete(skey);
  }
}
