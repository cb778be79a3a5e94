// A consumer group member (docs/protocol.md "Group membership"): joins, heartbeats, reads the
// partitions the coordinator assigns it from their committed offsets, commits what the consumer
// has finished with its generation (fenced), and hands partitions back on a rebalance: stop
// reading, commit, then acknowledge with the new generation. It stops reading everything when its
// session has not been renewed for sessionTimeoutMs, before the coordinator can give its
// partitions to another member.
import { ChicagoError } from '../runtime/errors.js';
import type { GroupOffset } from '../protocol/api.js';
import { checkName } from '../protocol/frames.js';
import type { Router } from './router.js';
import type { Session } from './session.js';
import { TailStream, type TailFrom, type TailRecord } from './tail.js';

export interface GroupPartitionRef { topic: string; partition: number }
export interface GroupRecord extends TailRecord { topic: string }

export interface SubscribeOptions {
  /** the coordinator removes this member after this long without a heartbeat; default 1000 (200..3000) */
  sessionTimeoutMs?: number;
  /** default a quarter of the session timeout */
  heartbeatIntervalMs?: number;
  /** how often finished records are committed; default 1000 */
  commitIntervalMs?: number;
  /** where a partition without a committed offset starts (one value, or per partition); default 'earliest' */
  from?: TailFrom | ((partition: GroupPartitionRef) => TailFrom);
  /** per partition: bytes the server may push ahead of the consumer; default 256 KiB */
  creditBytes?: number;
  /** called with partitions this member starts reading */
  onAssign?(partitions: GroupPartitionRef[]): void | Promise<void>;
  /** called once reading of these partitions stopped and their progress is committed */
  onRevoke?(partitions: GroupPartitionRef[]): void | Promise<void>;
}

interface Owned {
  readonly key: string;
  readonly topic: string;
  readonly partition: number;
  readonly tail: TailStream;
  stopped: boolean;
  processedUpTo: number | undefined;
  committedUpTo: number | undefined;
  /** commits of one partition go one at a time, so a committed offset never goes back */
  chain: Promise<void>;
}

interface Offered { owned: Owned; record: TailRecord; taken(): void }

/** the iterator lets the event loop run at least this often */
const YIELD_EVERY_MS = 10;

const keyOf = (topic: string, partition: number) => `${topic}/${partition}`;

export class GroupConsumer implements AsyncIterableIterator<GroupRecord> {
  /** the member id the coordinator gave; undefined until joined */
  member: string | undefined;
  generation = 0;
  /** how often the session lapsed here (all partitions stopped), a rebalance was seen, a commit was fenced */
  readonly stats = { lapses: 0, rebalances: 0, fencedCommits: 0 };
  private readonly owned = new Map<string, Owned>();
  private readonly queue: Offered[] = [];
  private waiter: { resolve(r: IteratorResult<GroupRecord>): void; reject(e: unknown): void } | undefined;
  private inHand: { owned: Owned; next: number } | undefined;
  private inHandDone: Array<() => void> = [];
  private validUntilMs = 0;
  private yieldedAtMs = 0;
  private closed = false;
  private failure: Error | undefined;
  private beatTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private commitTimer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private readonly sessionTimeoutMs: number;
  private readonly heartbeatIntervalMs: number;

  constructor(
    private readonly session: Session, readonly group: string, readonly topics: string[],
    private readonly opts: SubscribeOptions = {}, private readonly router?: Router,
  ) {
    checkName('group', group);
    if (topics.length === 0) throw new ChicagoError('INVALID_ARGUMENT', 'topics', 'at least one topic');
    topics.forEach((t) => checkName('topic', t));
    this.sessionTimeoutMs = opts.sessionTimeoutMs ?? 1000;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? Math.max(20, Math.floor(this.sessionTimeoutMs / 4));
    this.commitTimer = setInterval(() => void this.commitAll().catch(() => { /* the next interval tries again */ }), opts.commitIntervalMs ?? 1000);
    this.commitTimer.unref();
    this.schedule(0);
  }

  [Symbol.asyncIterator](): this { return this; }

  /** The partitions this member reads now. */
  assignment(): GroupPartitionRef[] {
    return [...this.owned.values()].filter((o) => !o.stopped).map((o) => ({ topic: o.topic, partition: o.partition }));
  }

  next(): Promise<IteratorResult<GroupRecord>> {
    // Asking for the next record means the consumer is done with the previous one.
    this.finishInHand();
    // A consumer whose records are all at hand never leaves the microtask queue; let timers and
    // sockets (the heartbeat) run now and then.
    if (Date.now() - this.yieldedAtMs >= YIELD_EVERY_MS) {
      return new Promise<void>((r) => setImmediate(r)).then(() => {
        this.yieldedAtMs = Date.now();
        return this.next();
      });
    }
    if (this.waiter) return Promise.reject(new ChicagoError('BAD_REQUEST', 'next() called while another next() is pending'));
    const item = this.takeQueued();
    if (item) return Promise.resolve(this.deliver(item));
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => { this.waiter = { resolve, reject }; });
  }

  async return(): Promise<IteratorResult<GroupRecord>> {
    await this.close();
    return { value: undefined, done: true };
  }

  /** Stop reading, commit what was finished (the record in hand counts as finished), and leave the group. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.finishInHand();
    this.closed = true;
    clearTimeout(this.beatTimer);
    clearTimeout(this.expiryTimer);
    clearInterval(this.commitTimer);
    await this.beating?.catch(() => undefined);
    const all = [...this.owned.values()];
    await this.revoke(all, true).catch(() => undefined);
    if (this.member !== undefined && this.session.isUp) {
      await this.session.request({ op: 'leave', group: this.group, member: this.member }, 'write').catch(() => undefined);
    }
    this.wake({ value: undefined, done: true });
  }

  /** Commit every owned partition's finished records now. */
  async commitAll(): Promise<void> {
    await Promise.all([...this.owned.values()].map((o) => this.commit(o)));
  }

  // ---- membership ------------------------------------------------------------------------------

  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.beatTimer);
    this.beatTimer = setTimeout(() => {
      if (this.beating) return;
      this.beating = this.beat().finally(() => {
        this.beating = undefined;
        this.schedule(this.heartbeatIntervalMs);
      });
    }, ms);
  }

  private async beat(): Promise<void> {
    try {
      const sentAt = Date.now();
      const r = this.member === undefined
        ? await this.session.request({ op: 'join', group: this.group, topics: this.topics, sessionTimeoutMs: this.sessionTimeoutMs }, 'write')
        : await this.session.request({ op: 'heartbeat', group: this.group, member: this.member, generation: this.generation }, 'write');
      if (this.closed) return;
      if (r.renewed === true) this.renew(sentAt + this.sessionTimeoutMs);
      this.member = String(r.member);
      this.generation = Number(r.generation);
      await this.reconcile((r.assigned ?? []) as GroupPartitionRef[]);
      // a stale generation: what it asked is done; acknowledge at once
      if (r.renewed !== true && !this.closed) {
        this.stats.rebalances++;
        return await this.beat();
      }
    } catch (err) {
      if (err instanceof ChicagoError && err.code === 'UNKNOWN_MEMBER') {
        await this.revoke([...this.owned.values()], false);
        this.member = undefined;
      } else if (err instanceof ChicagoError && !err.retryable && err.code !== 'OUTCOME_UNKNOWN') {
        this.fail(err);
      }
    } finally {
      // Not renewed in time: the coordinator may give these partitions away; stop first.
      if (Date.now() >= this.validUntilMs && this.owned.size > 0) await this.lapse();
    }
  }

  /** The session holds until `untilMs` (measured from when the renewing request was sent); then everything stops. */
  private renew(untilMs: number): void {
    this.validUntilMs = Math.max(this.validUntilMs, untilMs);
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => {
      // a running beat lapses when it ends; records are held back meanwhile (offer, takeQueued)
      if (Date.now() >= this.validUntilMs && this.owned.size > 0 && !this.beating) void this.lapse();
    }, Math.max(0, this.validUntilMs - Date.now()));
    this.expiryTimer.unref();
    // records held back while the session was in doubt go out now
    if (this.waiter && !this.expired) {
      const item = this.takeQueued();
      if (item) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(this.deliver(item));
      }
    }
  }

  /** The session was not renewed in time: stop everything; the commits are fenced if the coordinator already moved on. */
  private lapse(): Promise<void> {
    this.stats.lapses++;
    return this.revoke([...this.owned.values()], true);
  }

  private get expired(): boolean { return Date.now() >= this.validUntilMs; }

  private async reconcile(assigned: GroupPartitionRef[]): Promise<void> {
    const want = new Map(assigned.map((a) => [keyOf(a.topic, a.partition), a]));
    const gone = [...this.owned.values()].filter((o) => !want.has(o.key));
    if (gone.length > 0) await this.revoke(gone, true);
    const added = [...want].filter(([k]) => !this.owned.has(k)).map(([, a]) => a);
    if (added.length === 0 || this.closed) return;
    const committed = new Map<string, number>();
    for (const topic of new Set(added.map((a) => a.topic))) {
      const r = await this.session.request({ op: 'offsets', group: this.group, topic }, 'read');
      for (const o of (r.offsets ?? []) as GroupOffset[]) committed.set(keyOf(o.topic, o.partition), o.offset);
    }
    if (this.closed) return;
    for (const a of added) {
      const key = keyOf(a.topic, a.partition);
      const at = committed.get(key);
      const tail = new TailStream(this.session, a.topic, a.partition, {
        from: at !== undefined ? { offset: at } : this.startOf(a), creditBytes: this.opts.creditBytes ?? 256 * 1024,
      }, this.router);
      const o: Owned = { key, topic: a.topic, partition: a.partition, tail, stopped: false, processedUpTo: at, committedUpTo: at, chain: Promise.resolve() };
      this.owned.set(key, o);
      void this.pump(o);
    }
    await this.opts.onAssign?.(added);
  }

  private startOf(p: GroupPartitionRef): TailFrom {
    const from = this.opts.from ?? 'earliest';
    return typeof from === 'function' ? from(p) : from;
  }

  /** Stop reading `list`, wait for the record in hand of each, and with `commit` commit their progress. */
  private async revoke(list: Owned[], commit: boolean): Promise<void> {
    if (list.length === 0) return;
    for (const o of list) {
      o.stopped = true;
      void o.tail.close();
    }
    // queued, not handed out: dropped (the next owner reads them from the committed offset)
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i].owned.stopped) this.queue.splice(i, 1)[0].taken();
    }
    while (this.inHand && this.inHand.owned.stopped) await new Promise<void>((r) => this.inHandDone.push(r));
    if (commit) await Promise.all(list.map((o) => this.commit(o).catch(() => undefined)));
    for (const o of list) this.owned.delete(o.key);
    await this.opts.onRevoke?.(list.map((o) => ({ topic: o.topic, partition: o.partition })));
  }

  private commit(o: Owned): Promise<void> {
    o.chain = o.chain.catch(() => undefined).then(async () => {
      const upTo = o.processedUpTo;
      const member = this.member;
      if (upTo === undefined || upTo === o.committedUpTo || member === undefined || !this.session.isUp) return;
      try {
        await this.session.request({ op: 'commit', group: this.group, topic: o.topic, partition: o.partition, offset: upTo, member, generation: this.generation }, 'write');
        o.committedUpTo = upTo;
      } catch (err) {
        // a newer generation or a lost partition: the heartbeat says which
        if (err instanceof ChicagoError && (err.code === 'FENCED' || err.code === 'UNKNOWN_MEMBER')) {
          this.stats.fencedCommits++;
          this.schedule(0);
        }
        throw err;
      }
    });
    return o.chain;
  }

  // ---- records ---------------------------------------------------------------------------------

  private async pump(o: Owned): Promise<void> {
    try {
      while (!o.stopped) {
        const r = await o.tail.next();
        if (r.done || o.stopped) return;
        if (o.processedUpTo === undefined) {
          // No committed offset: reading started at `from`. Commit where it did start, at once, so a
          // next owner resumes here and not at `from` again ('latest' would skip what was never finished).
          o.processedUpTo = r.value.offset;
          void this.commit(o).catch(() => undefined);
        }
        await new Promise<void>((taken) => this.offer({ owned: o, record: r.value, taken }));
      }
    } catch (err) {
      if (!o.stopped) this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private offer(item: Offered): void {
    if (item.owned.stopped || this.closed) return item.taken();
    if (this.expired) {
      // the session may be over at the coordinator: hand nothing out; the expiry stops the pumps
      this.queue.push(item);
      return;
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      return w.resolve(this.deliver(item));
    }
    this.queue.push(item);
  }

  private takeQueued(): Offered | undefined {
    if (this.expired) return undefined;
    for (;;) {
      const item = this.queue.shift();
      if (!item || !item.owned.stopped) return item;
      item.taken();
    }
  }

  private deliver(item: Offered): IteratorResult<GroupRecord> {
    this.inHand = { owned: item.owned, next: item.record.offset + 1 };
    item.taken();
    return { value: { ...item.record, topic: item.owned.topic }, done: false };
  }

  private finishInHand(): void {
    if (!this.inHand) return;
    this.inHand.owned.processedUpTo = this.inHand.next;
    this.inHand = undefined;
    const done = this.inHandDone;
    this.inHandDone = [];
    done.forEach((r) => r());
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(err);
    }
  }

  private wake(r: IteratorResult<GroupRecord>): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.resolve(r);
  }
}
