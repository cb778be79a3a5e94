// A worker thread hosting partition replicas. It owns their column families, feeds every message
// through the pure replication transition (`handle`, which runs the partition `step`), writes the
// resulting ops in one RocksDB batch per event-loop turn (group commit), honours the sync policy,
// and only then releases answers and replication traffic. Reads run here too, after the writes
// queued before them, at a leader's high watermark (replica.ts): a read sees every write confirmed
// before it, and nothing a failover could still lose.
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import assert from 'node:assert/strict';
import type * as ComlinkTypes from 'comlink';
import type { RocksLevel } from '@nxtedition/rocksdb';
import { attachDatabase, BatchWriter, type ColumnStore, partitionStore } from '../storage/rocks.js';
import { threadCodec, replicationFrame } from '../runtime/codec.js';
import type { WorkerLinks } from '../net/worker-links.js';
import { systemClock } from '../runtime/clock.js';
import { createLogger, type Logger } from '../runtime/log.js';
import { LoopDelay } from '../runtime/loop-delay.js';
import { AlignedInterval } from '../runtime/aligned-timer.js';
import { asChicagoError, ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { requireCjs } from '../runtime/require.js';
import { PACE } from './threads.js';
import { epoch, nodeId, seq, type NodeId } from '../runtime/ids.js';
import * as K from '../storage/keys.js';
import { encodeKvValue, initialState, metaOp, type Command, type Op, type PartitionState } from './partition.js';
import { canServeReads, coalescePeer, createReplica, failPending, handle, hiddenRows, hintRange, holdDuringCopy, needsPrior, rowOf, visibleEnd, visibleRow, wantsQuickTicks, HEARTBEAT_MS, type Acks, type Effect, type Replica, type ReplicaMessage, type ReplicaView } from './replica.js';
import { PartitionReader, type ReadView } from './reads.js';
import { catchUp } from './catch-up.js';
import { compareStep, digestChecks, shouldDigest, type CompareInput, type Comparison, type ReplicaSide } from './anti-entropy.js';
import { handOffStep, leaderSide, type HandOff, type HandOffInput } from './handoff.js';
import { copyPartAcked, nextCopyPart, type OutgoingCopy } from './copy-send.js';
import { abandonCopy, abandonStalledCopy, askForCopy, receivePart, type CopyHost, type Installing } from './install.js';
import { compactLog, loadState, restoreStoredHints } from './recovery.js';
import { expiryCommands, logTrimRange, retentionCommands } from './maintenance.js';
import { MUTATIONS, type DigestReply, type ReplicationMessage, type Request, type Response, type SnapshotAck, type SnapshotChunk, type TopicRetention, type WorkerControl, type WorkerOutput, type WorkerStats } from './messages.js';
import type { RetentionSpec } from '../protocol/api.js';
import { isNoSpace } from '../storage/disk-guard.js';
import { BoardWriter, type BoardPosition } from './positions-board.js';
import { HopTimes, nowUs } from '../runtime/hop-times.js';
import { threadId } from 'node:worker_threads';

const Comlink = requireCjs('comlink') as typeof ComlinkTypes;
const nodeEndpoint = requireCjs('comlink/dist/umd/node-adapter.js') as typeof import('comlink/dist/umd/node-adapter.js').default;

/** How often replicas check deadlines, probe lagging followers and send snapshot chunks. */
const TICK_MS = 50;
/**
 * The tick's period while no replica here wantsQuickTicks and no copy is sent or received: the
 * ticks then only send heartbeats (replica.ts HEARTBEAT_MS apart), and an idle worker wakes half
 * as often. A multiple of TICK_MS, so ticks stay on the moments the node's other threads share.
 */
const QUIET_TICK_MS = HEARTBEAT_MS;
/** how long a replica whose node proposes it as leader refuses older copies: past the CAS and its view */
const CLAIM_MS = 2_000;

interface Hosted {
  replica: Replica;
  readonly store: ColumnStore;
  readonly reader: PartitionReader;
  /** a full copy being received: the next part expected, and its position (meta), held to the end */
  installing?: Installing;
  /**
   * A copy was started here and none has completed since: the store holds nothing this replica may
   * claim. Durable (K.installingKey), so it outlives a restart or an abandoned copy: such a replica
   * is never electable (positions say incomplete) and asks its leader for a copy.
   */
  incomplete: boolean;
  /** this node proposes the replica to lead `epoch` (WorkerControl.claim) */
  claim?: { epoch: number; untilMs: number };
  /** anti-entropy: the leader's digests, compared when this replica reaches their seq (anti-entropy.ts) */
  comparison: Comparison;
  /** anti-entropy: this replica's digest being computed, a slice per event-loop turn */
  digesting?: Generator<void, DigestReply>;
  /** full copies being sent, one per follower */
  snapshots: Map<NodeId, OutgoingCopy>;
  /** a leadership hand-off under way (handoff.ts) */
  handOff?: HandOff;
}

interface Outbox { replies: Response[]; peer: Array<{ to: NodeId; msg: ReplicationMessage }>; visible: NonNullable<WorkerOutput['visible']> }

const emptyOutbox = (): Outbox => ({ replies: [], peer: [], visible: [] });

/** A full copy being sent: an open RocksDB iterator (a point-in-time view), a part at a time. */
/** anti-entropy digests pause this many times as long as each slice took (at most 1/10 of the thread) */
const DIGEST_PAUSE_PER_BUSY = 9;


class PartitionWorker {
  private readonly codec = threadCodec();
  private readonly hosted = new Map<number, Hosted>();
  private self = '' as NodeId;
  private inbox: Request[] = [];
  private drainScheduled = false;
  /** the open group-commit batch (one native batch, reused) */
  private readonly writer: BatchWriter;
  /** delete-ranges of the open batch, run after it is written */
  private deferredRanges: Array<{ store: ColumnStore; gte: Buffer; lt: Buffer }> = [];
  private batchPartitions = new Set<number>();
  /**
   * The last partition-meta value each partition's ops put in the open batch. Every mutation
   * re-puts the meta; the batch is atomic, so only the last one can ever be read: it is put once,
   * at the end of the batch, and the stored bytes are the same as if each had been written. The op
   * is kept, not its value: a meta op encodes its value when read (partition.ts metaOp).
   */
  private batchMeta = new Map<ColumnStore, Extract<Op, { type: 'put' }>>();
  /** answers and replication traffic released once the open batch is durable per the sync policy */
  private out: Outbox = emptyOutbox();
  /** written but waiting for the next group fsync */
  private awaitingSync: Outbox = emptyOutbox();
  private syncTimer: NodeJS.Timeout | undefined;
  /** the group's fsync at the end of this turn, when none ran within the group interval */
  private syncSoon: NodeJS.Immediate | undefined;
  private lastSyncMs = 0;
  private syncPolicy = 'none';
  private groupIntervalMs = 2;
  private replicationTimeoutMs: number = limits.replicationTimeoutMs;
  private retention = new Map<number, RetentionSpec>();
  private timers: NodeJS.Timeout[] = [];
  private readonly loopDelay = new LoopDelay();
  private counters = { expiredKeys: 0, trimmedBatches: 0, fsyncs: 0, digestChecks: 0, divergences: 0, snapshotBytesSent: 0, snapshotBytesReceived: 0, snapshotsInstalled: 0, framesDirect: 0, framesNoLink: 0, backlogDrops: 0 };
  private draining = false;
  private tickTimer: AlignedInterval | undefined;
  private log: Logger = createLogger('info');
  /** direct links to other nodes' workers (in a cluster) */
  private links: WorkerLinks | undefined;

  /** messages received so far; published to the gateway thread (drained) after each drain */
  private received = 0;

  /** batches given away by the gateway, by request id, until their writes are answered (holdGiven) */
  private readonly givenBatches = new Map<number, Buffer>();

  /** write-path timings (CHICAGO_HOP_TIMES), and when each replication frame arrived while they are on */
  private readonly hops = new HopTimes();
  private readonly frameInUs = new WeakMap<Uint8Array, number>();

  /** where the node's coordinator samples this worker's positions (published on each tick) */
  private readonly board: BoardWriter;

  constructor(private readonly db: RocksLevel, private readonly port: MessagePort, private readonly drained: Int32Array, private readonly pace: Int32Array, board: SharedArrayBuffer) {
    this.writer = new BatchWriter(db);
    this.board = new BoardWriter(board);
    port.on('message', (msg: Uint8Array | [Uint8Array, ...ArrayBuffer[]]) => {
      this.received++;
      if (msg instanceof Uint8Array) {
        for (const r of this.codec.decode<Request[]>(msg)) {
          if (HopTimes.enabled && r.id && MUTATIONS.has(r.op)) this.hops.note('wRecv', r.id);
          this.inbox.push(inlineBatchAsBuffer(r));
        }
      } else {
        // record batches travel beside the message, transferred (threads.ts flush)
        for (const r of this.codec.decode<Request[]>(msg[0] as Uint8Array)) {
          if (r.op === 'produce' && r.batchAt !== undefined) {
            const { batchAt, batchGiven, ...rest } = r;
            const batch = Buffer.from(msg[batchAt + 1] as ArrayBuffer);
            if (batchGiven) this.holdGiven(r.id, batch);
            this.inbox.push({ ...rest, batch });
          } else this.inbox.push(inlineBatchAsBuffer(r));
        }
      }
      this.scheduleDrain();
    });
  }

  // ---- control plane ----

  readonly control: WorkerControl = {
    open: async (spec) => {
      this.self = spec.self;
      this.hops.start(spec.self, `worker-${threadId}`);
      this.log = createLogger(spec.logLevel, { node: spec.self, thread: 'partition-worker' });
      this.syncPolicy = spec.syncPolicy;
      this.groupIntervalMs = spec.groupIntervalMs;
      this.replicationTimeoutMs = spec.replicationTimeoutMs;
      for (let { p, view } of spec.partitions) {
        const store = partitionStore(this.db, p);
        if (spec.compactLog) this.shedLogCopies(store, p);
        const state = loadState(store, p);
        // A partition this node holds alone has no coordinator remembering its term: continue it.
        const alone = view.leader === this.self && view.replicas.length === 1;
        if (alone && view.epoch < state.epoch) view = { ...view, epoch: state.epoch };
        const h: Hosted = { replica: createReplica(this.self, state, view), store, reader: undefined as never, snapshots: new Map(), comparison: {}, incomplete: store.get(K.installingKey) !== undefined };
        restoreStoredHints(h.replica, store);
        const readView: ReadView = { row: (row) => visibleRow(h.replica, row), hiddenRows: () => hiddenRows(h.replica), streamEnd: (skey) => visibleEnd(h.replica, skey) };
        (h as { reader: PartitionReader }).reader = new PartitionReader(() => h.replica.state, store, readView);
        this.hosted.set(p, h);
        this.run(h, { type: 'view', view });
      }
      this.flush();
      this.ensureTicking();
      if (spec.linkHost) {
        if (!spec.linkKey) throw new Error('a worker listening for links needs the node\'s link key');
        // ws (and the native probes it makes) loads only in the workers of a cluster node
        const { WorkerLinks } = await import('../net/worker-links.js');
        this.links = await WorkerLinks.listen(spec.linkHost, spec.linkKey, (frame) => this.onDirectFrame(frame), (err) => this.log.warn({ err: err.message }, 'worker link listener error'), spec.linkTls);
      }
      const maintenance = setInterval(() => { void this.hops.task('maintain', () => this.control.maintain()); }, spec.maintenanceIntervalMs);
      const antiEntropy = setInterval(() => this.hops.task('digests', () => this.sendDigests()), spec.antiEntropyIntervalMs);
      for (const t of [maintenance, antiEntropy]) t.unref();
      this.timers.push(maintenance, antiEntropy);
      return { linkUrl: this.links?.url };
    },
    setPeerLinks: (node, urls, key) => { this.links?.setPeer(nodeId(node), urls, key); },
    setRetention: (topics: TopicRetention[]) => {
      this.retention = new Map(topics.map((t) => [t.topicId, t.retention]));
    },
    maintain: async () => {
      let expired = 0;
      let trimmedBatches = 0;
      const now = systemClock.nowMs();
      for (const h of this.hosted.values()) {
        const trim = logTrimRange(h.replica.state);
        // log entries no follower needs any more: one a failure leaves is trimmed by the next pass
        if (trim) h.store.clear(trim).catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'log trim failed'));
        if (h.replica.role !== 'leader') continue; // followers remove what their leader's commands say
        for (const cmd of [...expiryCommands(h.store, now), ...retentionCommands(h.replica.state, h.store, h.reader, this.retention, now)]) {
          if (cmd.op === 'kvExpire' && cmd.stillCurrent) expired++;
          if (cmd.op === 'trim') trimmedBatches += cmd.removed.length;
          this.write(h, 0, cmd, 'one');
        }
      }
      this.flush();
      this.counters.expiredKeys += expired;
      this.counters.trimmedBatches += trimmedBatches;
      return { expired, trimmedBatches };
    },
    stats: (take: boolean): WorkerStats => this.hops.task('stats', () => {
      const s: WorkerStats = {
        eventLoopDelayMs: take ? this.loopDelay.take() : this.loopDelay.peek(),
        partitions: this.control.positions(),
        ...this.counters,
        linkDrops: this.links?.dropped ?? 0,
      };
      return s;
    }),
    positions: () => [...this.hosted.values()].map(({ replica: r, incomplete }) => ({
      id: r.state.id, epoch: r.state.epoch, seq: r.state.seq, role: r.role, leader: r.view.leader, replicas: r.view.replicas,
      incomplete,
      isr: r.view.isr,
      view: r.view.version,
      confirmedSeq: r.confirmedSeq,
      matched: Object.fromEntries(r.matched),
      streams: [...r.state.streams.values()].map((st) => ({ topicId: st.topicId, tp: st.tp, start: st.start, end: st.end, bytes: st.bytes })),
    })),
    claim: (p, epoch) => {
      const h = this.hosted.get(p);
      if (!h || h.incomplete) return false;
      h.claim = { epoch, untilMs: performance.now() + CLAIM_MS };
      return true;
    },
    handOff: async (p, to, waitMs, fenceMs) => {
      const h = this.hosted.get(p);
      if (!h) return false;
      // Its acks arrive between these polls (each yields to them). Once `to` holds everything and
      // every write taken here is answered, the fence stays up until the record change lands (the
      // view makes this replica a follower) or its node releases it: a write taken in between
      // would be one its successor lacks.
      let outcome = this.stepHandOff(h, { type: 'start', to: nodeId(to), nowMs: systemClock.nowMs(), waitMs, fenceMs, leader: leaderSide(h.replica) });
      while (outcome === undefined) {
        await new Promise((r) => setTimeout(r, 2));
        outcome = this.stepHandOff(h, { type: 'poll', nowMs: systemClock.nowMs(), leader: leaderSide(h.replica) });
      }
      return outcome;
    },
    release: async (p) => {
      const h = this.hosted.get(p);
      if (h) this.stepHandOff(h, { type: 'release' });
    },
    drain: async () => {
      this.draining = true;
      for (const t of this.timers) clearInterval(t);
      this.tickTimer?.stop();
      for (const h of this.hosted.values()) {
        // closes the digest's RocksDB iterator before the database goes
        h.digesting?.return(undefined as never);
        h.digesting = undefined;
      }
      this.drain();
      this.fsyncNow();
      this.links?.close();
      this.links = undefined;
      this.hops.dump(); // the rows since the last periodic dump (CHICAGO_HOP_TIMES)
    },
  };

  // ---- data plane ----

  /** Runs handoff.ts and applies its effects: true once ready, false once failed, undefined while waiting. */
  private stepHandOff(h: Hosted, m: HandOffInput): boolean | undefined {
    const { state, effects } = handOffStep(h.handOff, m);
    h.handOff = state;
    let outcome: boolean | undefined;
    for (const e of effects) {
      if (e.kind === 'fence') this.run(h, { type: 'fence', to: e.to, untilMs: e.untilMs });
      else if (e.kind === 'unfence') this.run(h, { type: 'unfence' });
      else outcome = e.kind === 'ready';
    }
    return outcome;
  }

  /** A frame from another node's worker, queued for the replica it is for. */
  private onDirectFrame(frame: Buffer): void {
    const p = replicationFrame.partitionOf(frame);
    if (p === undefined || this.draining) return;
    // Full policy: past the backlog bound replication traffic is dropped and counted (leaders resend).
    if (this.inbox.length >= limits.workerBacklogMessagesMax) { this.counters.backlogDrops++; return; }
    if (HopTimes.enabled) this.frameInUs.set(frame, nowUs());
    this.inbox.push({ id: 0, p, op: 'peer', frame });
    this.scheduleDrain();
  }

  private scheduleDrain(): void {
    if (!this.drainScheduled) {
      this.drainScheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.drainScheduled = false;
    Atomics.store(this.drained, 0, this.received);
    const reqs = this.inbox;
    this.inbox = [];
    for (const req of reqs) {
      const h = this.hosted.get(req.p);
      if (!h) {
        if (req.id) this.out.replies.push({ id: req.id, ok: false, err: { code: 'INTERNAL', args: [`partition ${req.p} is not on this worker`] } });
        continue;
      }
      try {
        if (req.op === 'peer') this.onPeerFrame(h, req.frame);
        else if (req.op === 'view') {
          this.flush();
          this.run(h, { type: 'view', view: req.view });
          this.ensureTicking();
        }
        else if (MUTATIONS.has(req.op)) {
          if (this.draining) throw new ChicagoError('SHUTTING_DOWN');
          const { cmd, acks } = this.toCommand(h, req);
          this.write(h, req.id, cmd, acks);
          if (HopTimes.enabled) this.hops.note('wSeq', req.id, req.p, h.replica.state.seq);
        } else {
          // Only a leader holding its read lease answers: a stale leader or a follower still
          // catching up could miss acknowledged writes. The router retries elsewhere.
          if (req.op === 'plantDivergence') {
            this.apply(h, [{ type: 'put', key: K.kvKey(req.ks, req.key), value: encodeKvValue(1, req.value) }]);
            this.out.replies.push({ id: req.id, ok: true, res: null });
            continue;
          }
          if (req.op !== 'digest' && !canServeReads(h.replica, systemClock.nowMs())) {
            throw new ChicagoError('NOT_LEADER', req.p, h.replica.view.leader ?? 'unknown');
          }
          this.flush(); // reads see every write queued before them
          this.out.replies.push({ id: req.id, ok: true, res: this.read(h, req) });
        }
      } catch (e) {
        const err = asChicagoError(e);
        if (req.id) this.out.replies.push({ id: req.id, ok: false, err: { code: err.code, args: [err.message] } });
      }
    }
    this.flush();
  }

  private toCommand(h: Hosted, req: Request): { cmd: Command; acks: 'none' | 'one' | 'all' } {
    switch (req.op) {
      case 'kvPut': return { cmd: { op: 'kvPut', ks: req.ks, key: req.key, value: req.value, ttlMs: req.ttlMs }, acks: req.acks };
      case 'kvDel': {
        this.flush(); // the existence check must see queued writes
        return { cmd: { op: 'kvDel', ks: req.ks, key: req.key, existed: h.reader.liveKv(req.ks, req.key, systemClock.nowMs()) !== undefined }, acks: req.acks };
      }
      case 'produce': return { cmd: { op: 'produce', topicId: req.topicId, tp: req.tp, ...(req.batch ? { batch: req.batch, batchBytes: req.batchBytes } : { records: req.records }), producerId: req.producerId, sequence: req.sequence, previousSequence: req.previousSequence }, acks: req.acks };
      case 'commit': return { cmd: { op: 'commit', group: req.group, topicId: req.topicId, tp: req.tp, offset: req.offset }, acks: req.acks };
      case 'uncommit': return { cmd: { op: 'uncommit', group: req.group, topicId: req.topicId, tp: req.tp }, acks: req.acks };
      case 'dropStream': return { cmd: { op: 'dropStream', topicId: req.topicId, tp: req.tp }, acks: req.acks };
      default: throw new ChicagoError('UNKNOWN_OP', req.op);
    }
  }

  /** An older data dir's log, rewritten to name its batches rather than repeat them; synced, in slices. */
  private shedLogCopies(store: ColumnStore, p: number): void {
    const n = compactLog(store, (k, v) => {
      this.writer.put(store, k, v);
      if (this.writer.ops >= limits.compactLogSliceEntriesMax) this.writer.write(true);
    });
    this.writer.write(true);
    if (n > 0) this.log.info({ partition: p, entries: n }, 'log entries no longer repeat their batches');
  }

  /**
   * A write at this replica. Readers keep seeing the row it changes as last confirmed until it is
   * confirmed: the replica needs those bytes when it first hides the row. Every earlier write of
   * a row that is not hidden is confirmed, hence already flushed (a view, which may end a
   * leader's solitude, flushes first).
   */
  private write(h: Hosted, id: number, cmd: Command, acks: Acks): void {
    const row = rowOf(cmd);
    const prior = row && needsPrior(h.replica, row) ? h.store.get(row) ?? null : undefined;
    this.run(h, { type: 'write', id, cmd, acks, timeoutMs: this.replicationTimeoutMs, prior });
  }

  /** Feed one message to a replica and carry out what it decides. */
  private run(h: Hosted, m: ReplicaMessage): void {
    this.execute(h, handle(h.replica, m, systemClock.nowMs()));
    // work that ticks move along starts between ticks: from now on they come at the short period
    if (this.tickTimer && this.tickTimer.period !== TICK_MS && this.wantsQuickTicks(h)) this.tickTimer.setPeriod(TICK_MS);
  }

  private wantsQuickTicks(h: Hosted): boolean {
    return h.installing !== undefined || h.snapshots.size > 0 || wantsQuickTicks(h.replica);
  }

  private execute(h: Hosted, effects: Effect[]): void {
    for (const e of effects) {
      switch (e.kind) {
        case 'write': this.apply(h, e.ops); break;
        case 'reply':
          if (e.id === 0) break; // internal commands (maintenance) have no caller
          this.out.replies.push(e.reply.ok
            ? { id: e.id, ok: true, res: e.reply.res, replicas: e.replicas }
            : { id: e.id, ok: false, err: { code: e.reply.code, args: e.reply.args } });
          break;
        case 'send': this.out.peer.push({ to: e.to, msg: e.msg }); break;
        case 'resend': this.resend(h, e.to, e.fromSeq, e.at); break;
        case 'snapshot': {
          // A new copy replaces one still being sent: the follower starts over at its part 0.
          h.snapshots.get(e.to)?.entries.return?.(undefined);
          this.flush(); // the copy starts from everything written so far
          h.snapshots.set(e.to, { copy: e.copy, part: 0, lastPartAtMs: 0, entries: h.store.iterate(K.snapshotRange, 1024) });
          break;
        }
        case 'drop': {
          h.installing = undefined; // its remaining parts would land on the emptied store: ignore them
          h.incomplete = false;
          this.flush();
          this.clearOrStop(h.store, K.allRange);
          this.replaceReplica(h, initialState(h.replica.state.id, h.replica.state.epoch, seq(0)));
          this.apply(h, [metaOp(h.replica.state)]); // the epoch survives a restart
          break;
        }
        case 'visible': this.out.visible.push(...e.streams); break;
        case 'role':
          if (e.role !== 'leader') for (const s of h.snapshots.values()) s.entries.return?.(undefined);
          if (e.role !== 'leader') h.snapshots.clear();
          break;
      }
    }
  }

  private snapshotAcked(h: Hosted, ack: SnapshotAck): void {
    copyPartAcked(h.snapshots.get(ack.from), ack.copy, ack.part);
    this.run(h, { type: 'copyProgress', to: ack.from, copy: ack.copy });
  }

  /**
   * Fill a follower's gap from the log; a gap older than the log, or longer than
   * limits.logCatchUpEntriesMax, needs a full copy.
   */
  private resend(h: Hosted, to: NodeId, fromSeq: number, at: number): void {
    this.flush();
    const c = catchUp(h.replica, this.self, fromSeq, at, h.store);
    if (c.kind === 'logMissing') this.run(h, { type: 'logMissing', to });
    else this.out.peer.push({ to, msg: c.msg });
  }

  private onPeerFrame(h: Hosted, frame: Uint8Array): void {
    let msg: ReplicationMessage;
    try {
      msg = replicationFrame.decode<ReplicationMessage>(frame);
    } catch (e) {
      this.log.warn({ partition: h.replica.state.id, err: (e as Error).message }, 'undecodable replication frame');
      return;
    }
    if (msg.p !== h.replica.state.id) {
      this.log.warn({ partition: h.replica.state.id, claimed: msg.p }, 'replication frame for another partition');
      return;
    }
    if (HopTimes.enabled) {
      const inUs = this.frameInUs.get(frame as Buffer) ?? 0;
      if (msg.t === 'ack') this.hops.note('wAck', msg.p, msg.from, msg.seq, inUs);
      else if (msg.t === 'append' && msg.entries.length > 0) this.hops.note('fAppend', msg.p, msg.entries.at(-1)!.seq, inUs);
    }
    this.onPeer(h, msg);
  }

  private onPeer(h: Hosted, msg: ReplicationMessage): void {
    if (msg.t === 'snap') { this.installChunk(h, msg); return; }
    if (msg.t === 'snapAck') { this.snapshotAcked(h, msg); return; }
    if (msg.t === 'digest') { this.compare(h, { type: 'check', check: msg, replica: this.replicaSide(h) }); return; }
    if (h.incomplete && msg.t === 'append') {
      // Entries wait for the copy (kept as hints meanwhile); with none under way, a probe is
      // answered by asking for one.
      if (msg.entries.length > 0) this.execute(h, holdDuringCopy(h.replica, msg));
      else if (!h.installing) this.askForCopy(h, msg.leader);
      return;
    }
    this.run(h, { type: 'peer', msg });
    if (h.comparison.check) this.compare(h, { type: 'progress', replica: this.replicaSide(h) });
  }

  /** Anti-entropy, leader side: digests of every led partition go to its followers. */
  private sendDigests(): void {
    for (const h of this.hosted.values()) {
      if (!shouldDigest(this.replicaSide(h))) continue;
      this.digestInSlices(h, (d) => {
        for (const { to, msg } of digestChecks(this.replicaSide(h), this.self, d)) this.out.peer.push({ to, msg });
      });
    }
  }

  private replicaSide(h: Hosted): ReplicaSide {
    const r = h.replica;
    return { role: r.role, epoch: r.state.epoch, seq: r.state.seq, replicas: r.view.replicas, copy: r.copy, installing: h.installing !== undefined, digesting: h.digesting !== undefined };
  }

  /** Anti-entropy, follower side (anti-entropy.ts): compare once this replica is at the leader's seq. */
  private compare(h: Hosted, m: CompareInput): void {
    const { state, effects } = compareStep(h.comparison, m, this.self);
    h.comparison = state;
    for (const e of effects) {
      if (e.kind === 'digest') this.digestInSlices(h, (mine) => this.compare(h, { type: 'digested', mine, replica: this.replicaSide(h) }));
      else if (e.kind === 'matched') this.counters.digestChecks++;
      else {
        this.counters.digestChecks++;
        this.counters.divergences++;
        this.log.warn({ partition: h.replica.state.id, seq: e.nack.msg.seq, ranges: e.ranges }, 'replica diverged from its leader; asking for a fresh copy');
        this.out.peer.push(e.nack);
      }
    }
  }

  /**
   * A digest of the replica as it is now, computed a slice at a time, each followed by a pause nine
   * times as long as it took: anti-entropy takes at most a tenth of the worker's thread, rather
   * than all of it for the seconds a large partition takes; `done` may queue messages.
   */
  private digestInSlices(h: Hosted, done: (d: DigestReply) => void): void {
    if (h.digesting) return;
    this.flush(); // the digest covers exactly the state at the replica's seq
    const job = h.reader.digestSlices();
    h.digesting = job;
    const slice = () => {
      if (h.digesting !== job) return; // stopped: the worker is draining
      const t0 = performance.now();
      const r = this.hops.task('digestSlice', () => job.next());
      if (!r.done) { setTimeout(slice, (performance.now() - t0) * DIGEST_PAUSE_PER_BUSY); return; }
      h.digesting = undefined;
      done(r.value);
      this.flush();
    };
    slice();
  }

  /** Receive a full copy: drop everything, write the parts in order, then reload from disk. */
  private installChunk(h: Hosted, c: SnapshotChunk): void {
    const outcome = receivePart(this.copyHost(h), { epoch: c.epoch, from: c.leader, copy: c.copy, part: c.part, last: c.last, entries: c.entries });
    if (outcome === 'accepted' || outcome === 'installed') for (const [k, v] of c.entries) this.counters.snapshotBytesReceived += k.length + v.length;
    if (outcome === 'installed') this.counters.snapshotsInstalled++;
  }

  private abandonInstall(h: Hosted): void { abandonCopy(this.copyHost(h)); }

  private askForCopy(h: Hosted, to: NodeId): void { askForCopy(this.copyHost(h), to); }

  /** The partition as install.ts sees it. */
  private copyHost(h: Hosted): CopyHost {
    const w = this;
    return {
      self: this.self,
      get replica() { return h.replica; },
      get installing() { return h.installing; },
      set installing(v) { h.installing = v; },
      get incomplete() { return h.incomplete; },
      set incomplete(v) { h.incomplete = v; },
      get claim() { return h.claim; },
      nowMs: () => performance.now(),
      flush: () => w.flush(),
      clear: (range) => { w.clearOrStop(h.store, range); }, // a RocksDB range delete: applied before it returns
      apply: (ops) => w.apply(h, ops),
      replace: (state, view) => w.replaceReplica(h, state, view, h.replica),
      load: () => loadState(h.store, h.replica.state.id),
      send: (to, msg) => { w.out.peer.push({ to, msg }); },
    };
  }

  /**
   * Swap in a replica of `state`, then give it its view as a message, so a newer epoch is persisted.
   * A copy (`copyOf`: the replica it replaces) leaves its hinted entries in place and keeps its
   * pending writes: the leader's appends after the copy tell their outcome (replica.ts
   * settleFromSuccessor). Any other replacement (a drop, a reload after a failed write) answers
   * them OUTCOME_UNKNOWN.
   */
  private replaceReplica(h: Hosted, state: PartitionState, view: ReplicaView = h.replica.view, copyOf?: Replica): void {
    if (!copyOf) this.execute(h, failPending(h.replica, 'the replica was replaced'));
    const { seenRev } = h.replica;
    h.replica = createReplica(this.self, state, view);
    if (copyOf) Object.assign(h.replica, { hints: copyOf.hints, hintsOnDisk: copyOf.hintsOnDisk, pending: copyOf.pending });
    this.run(h, { type: 'view', view });
    // It takes the view its predecessor held, and goes on ignoring the older records that one had.
    h.replica.seenRev = Math.max(h.replica.seenRev, seenRev);
  }

  /**
   * Replicas with peers need the tick (probes, deadlines, copies); a partition held alone by this
   * node does not, so a single node sleeps when idle. Started once any replica has peers.
   */
  private ensureTicking(): void {
    if (this.tickTimer) return;
    const alone = (h: Hosted) => h.replica.view.leader === this.self && h.replica.view.replicas.length === 1;
    if ([...this.hosted.values()].every(alone)) return;
    // On the wall clock's multiples of TICK_MS, as every worker's tick: probes between workers of
    // different nodes arrive as their receivers wake for their own ticks. The tick's lateness is
    // the thread's loop delay: no monitor timer of its own wakes the thread as well.
    this.loopDelay.fedBy();
    const timer: AlignedInterval = new AlignedInterval(TICK_MS, () => {
      this.loopDelay.late(timer.lateMs());
      this.hops.task('tick', () => this.tick());
    });
    this.tickTimer = timer;
  }

  private tick(): void {
    let copiesOpen = 0;
    let quick = false;
    for (const h of this.hosted.values()) {
      if (h.installing) abandonStalledCopy(this.copyHost(h)); // the host view only while a copy arrives
      this.run(h, { type: 'tick' });
      for (const [to, snap] of h.snapshots) this.sendSnapshotChunk(h, to, snap);
      copiesOpen += h.snapshots.size;
      quick ||= this.wantsQuickTicks(h);
    }
    this.tickTimer?.setPeriod(quick ? TICK_MS : QUIET_TICK_MS);
    Atomics.store(this.pace, PACE.copiesOpen, copiesOpen);
    this.flush();
    this.board.publish(this.boardPositions());
  }

  private *boardPositions(): Iterable<BoardPosition> {
    for (const { replica: r, incomplete } of this.hosted.values()) {
      yield { id: r.state.id, seq: r.state.seq, role: r.role, incomplete, matched: Object.fromEntries(r.matched), isr: r.view.isr, view: r.view.version, confirmedSeq: r.confirmedSeq };
    }
  }

  /**
   * At most one chunk per follower per tick and per the part interval its node's pacer sets, and
   * only once the previous one is acked: a copy never floods the node, its peer links or the
   * follower, and slows down while the node's foreground writes are slow.
   */
  private sendSnapshotChunk(h: Hosted, to: NodeId, snap: OutgoingCopy): void {
    const out = nextCopyPart(snap, performance.now(), Atomics.load(this.pace, PACE.partIntervalMs), limits.snapshotChunkBytesMax);
    if (!out) return;
    Atomics.add(this.pace, PACE.partsSent, 1);
    const s = h.replica.state;
    this.counters.snapshotBytesSent += out.bytes;
    this.out.peer.push({ to, msg: { t: 'snap', p: s.id, epoch: s.epoch, leader: this.self, copy: snap.copy, part: out.part, entries: out.entries, last: out.last } });
    if (out.last) h.snapshots.delete(to);
  }

  private apply(h: Hosted, ops: Op[]): void {
    if (ops.length === 0) return;
    this.batchPartitions.add(h.replica.state.id);
    const w = this.writer;
    for (const op of ops) {
      if (op.type === 'put' && isMetaKey(op.key)) this.batchMeta.set(h.store, op);
      else if (op.type === 'put') w.put(h.store, op.key, op.value);
      else if (op.type === 'del') w.del(h.store, op.key);
      else this.deferredRanges.push({ store: h.store, gte: op.gte, lt: op.lt });
    }
  }

  /**
   * A range delete that must happen (a drop, a copy's clear, a replicated delete): if the store
   * fails it, the thread ends — what it leaves behind would be served as data — and the node stops
   * to restart from disk, as for any worker fault.
   */
  clearOrStop(store: ColumnStore, range: { gte: Uint8Array; lt: Uint8Array }): void {
    store.clear(range).catch((err: unknown) => {
      this.log.fatal({ err: (err as Error).message }, 'range delete failed; ending the partition worker');
      throw err;
    });
  }

  /** Write the open batch; release what waited on it as the sync policy allows. */
  private flush(): void {
    const out = this.out;
    this.out = emptyOutbox();
    // An apply that only deferred range deletes still counts as a write (as the lazy batch did).
    const batch = this.batchPartitions.size > 0;
    const touched = this.batchPartitions;
    if (batch) this.batchPartitions = new Set();
    if (batch) {
      const metas = this.batchMeta;
      if (metas.size > 0) this.batchMeta = new Map();
      try {
        for (const [store, op] of metas) this.writer.put(store, K.metaKey, op.value);
        this.writer.write(this.syncPolicy === 'always');
        if (this.syncPolicy === 'always') this.counters.fsyncs++;
        if (HopTimes.enabled) this.hops.note('wWritten');
      } catch (e) {
        // The batch is atomic and did not apply: memory ran ahead of disk. Nothing it produced may
        // leave; its writes fail (retryable) and the touched partitions reload from disk.
        this.deferredRanges = [];
        const msg = (e as Error).message;
        const code = isNoSpace(e) ? 'STORAGE_FULL' : 'STORAGE';
        const failed = out.replies.map((r): Response => ({ id: r.id, ok: false, err: { code, args: [msg] } }));
        this.post({ replies: failed });
        for (const p of touched) this.reload(p);
        return;
      }
      for (const r of this.deferredRanges) this.clearOrStop(r.store, { gte: r.gte, lt: r.lt });
      this.deferredRanges = [];
    }
    if (outboxEmpty(out)) return;
    if (this.syncPolicy === 'group' && batch) {
      appendOutbox(this.awaitingSync, out);
      this.scheduleGroupSync();
    } else if (this.syncPolicy === 'group' && !outboxEmpty(this.awaitingSync)) {
      // Nothing new was written, but earlier writes still wait for their fsync: keep order.
      appendOutbox(this.awaitingSync, out);
    } else {
      this.post(out);
    }
  }

  private reload(p: number): void {
    const h = this.hosted.get(p)!;
    this.replaceReplica(h, loadState(h.store, p));
    restoreStoredHints(h.replica, h.store);
  }

  private scheduleGroupSync(): void {
    if (this.syncTimer || this.syncSoon) return;
    const wait = this.lastSyncMs + this.groupIntervalMs - performance.now();
    if (wait <= 0) {
      // No fsync within the group interval: the writes of this turn are the group. The fsync runs
      // once the turn's ready I/O is handled, not after a timer's 1 ms minimum and a wake-up of its own.
      this.syncSoon = setImmediate(() => {
        this.syncSoon = undefined;
        this.fsyncNow();
      });
      return;
    }
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      this.fsyncNow();
    }, wait);
  }

  /** One fsynced write makes every earlier WAL write of the database durable. */
  private fsyncNow(): void {
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    clearImmediate(this.syncSoon);
    this.syncSoon = undefined;
    const waiting = this.awaitingSync;
    this.awaitingSync = emptyOutbox();
    const any = this.hosted.values().next().value;
    if (!any || (outboxEmpty(waiting) && this.syncPolicy !== 'group')) {
      this.post(waiting);
      return;
    }
    const b = this.db.batch();
    b.put(K.syncMarkerKey, Buffer.alloc(0), { column: any.store.column });
    try {
      b._writeSync({ sync: true });
      this.counters.fsyncs++;
      if (HopTimes.enabled) this.hops.note('wSynced');
      this.lastSyncMs = performance.now();
      this.post(waiting);
    } catch (e) {
      // Written but not known durable: the honest answer is "unknown", and no replica may count it.
      this.post({ replies: waiting.replies.map((r): Response => ({ id: r.id, ok: false, err: { code: 'OUTCOME_UNKNOWN', args: [`fsync failed: ${(e as Error).message}`] } })) });
    } finally {
      void b.close();
    }
  }

  /**
   * A batch the gateway gave away (threads.ts giveBatch) is held until its write is answered: a
   * NOT_LEADER answer hands it back, as the router sends the write again. Full policy: past the
   * gateway's own in-flight bound the oldest is dropped; its write, if it comes back NOT_LEADER,
   * is then answered so rather than sent again.
   */
  private holdGiven(id: number, batch: Buffer): void {
    this.givenBatches.set(id, batch);
    if (this.givenBatches.size > limits.workerInFlightMax) this.givenBatches.delete(this.givenBatches.keys().next().value as number);
  }

  /** Answers first (an acks=one write need not wait for socket writes), then replication traffic. */
  private post(out: Partial<Outbox>): void {
    if (out.replies && this.givenBatches.size > 0) {
      for (const r of out.replies) {
        const batch = this.givenBatches.get(r.id);
        if (!batch) continue;
        this.givenBatches.delete(r.id);
        if (!r.ok && r.err.code === 'NOT_LEADER') r.batch = batch;
      }
    }
    const replies = out.replies?.length ? out.replies : undefined;
    const visible = out.visible?.length ? out.visible : undefined;
    if (replies || visible) this.codec.post(this.port, { replies, visible } satisfies WorkerOutput);
    if (HopTimes.enabled) for (const r of replies ?? []) this.hops.note('wReply', r.id);
    if (out.peer?.length) this.sendDirect(coalescePeer(out.peer));
  }

  /**
   * Replication traffic goes only on the direct links to other nodes' workers. A frame for a link
   * still connecting waits for it (bounded, src/net/worker-links.ts); one for a peer whose link is
   * down (or whose new links after a restart are not known yet) is dropped and counted: the protocol
   * recovers from loss (leaders probe and resend).
   */
  private sendDirect(out: Outbox['peer']): void {
    let last: ReplicationMessage | undefined;
    let lastFrame: Uint8Array | undefined;
    for (const { to, msg } of out) {
      // a leader's append goes to each follower as one message: encoded once (frames are never changed)
      const frame = msg === last && lastFrame ? lastFrame : replicationFrame.encode(msg.p, msg);
      last = msg;
      lastFrame = frame;
      if (this.links?.send(to, msg.p, frame)) this.counters.framesDirect++;
      else this.counters.framesNoLink++;
      if (HopTimes.enabled) {
        if (msg.t === 'append' && msg.entries.length > 0) this.hops.note('wSend', msg.p, to, msg.entries.at(-1)!.seq);
        else if (msg.t === 'ack') this.hops.note('fAckSent', msg.p, msg.seq);
      }
    }
  }

  // ---- reads ----

  private read(h: Hosted, req: Request): unknown {
    const now = systemClock.nowMs();
    switch (req.op) {
      case 'kvGet': return h.reader.kvGet(req.ks, req.key, now);
      case 'kvScan': return h.reader.scan(req.ks, req.prefix, req.after, req.limit, now, req.bytesMax);
      case 'fetch': return req.batches ? h.reader.fetchBatches(req.topicId, req.tp, req.from, req.maxRecords, req.maxBytes) : h.reader.fetch(req.topicId, req.tp, req.from, req.maxRecords, req.maxBytes);
      case 'streamInfo': return h.reader.streamInfo(req.topicId, req.tp);
      case 'groupOffsets': return h.reader.groupOffsets(req.group);
      case 'groupNames': return h.reader.groupNames(req.limit);
      case 'digest': return h.reader.digest();
      default: throw new ChicagoError('UNKNOWN_OP', req.op);
    }
  }
}

function isMetaKey(key: Uint8Array): boolean {
  return key === K.metaKey || (key.length === 2 && key[0] === K.metaKey[0] && key[1] === K.metaKey[1]);
}

/** A batch packed into the message (threads.ts flush) arrives as a plain view: the rest of the worker takes Buffers. */
function inlineBatchAsBuffer(r: Request): Request {
  if (r.op === 'produce' && r.batch && !Buffer.isBuffer(r.batch)) r.batch = Buffer.from(r.batch.buffer, r.batch.byteOffset, r.batch.byteLength);
  return r;
}

function outboxEmpty(o: Outbox): boolean {
  return o.replies.length === 0 && o.peer.length === 0 && o.visible.length === 0;
}

function appendOutbox(to: Outbox, from: Outbox): void {
  to.replies.push(...from.replies);
  to.peer.push(...from.peer);
  to.visible.push(...from.visible);
}

const { handle: dbHandle, dataPort, controlPort, drained, pace, board } = workerData as { handle: bigint; dataPort: MessagePort; controlPort: MessagePort; drained: Int32Array; pace: Int32Array; board: SharedArrayBuffer };
assert.ok(parentPort, 'partition worker must run in a worker thread');
const db = await attachDatabase(dbHandle);
const worker = new PartitionWorker(db, dataPort, drained, pace, board);
Comlink.expose(worker.control, nodeEndpoint(controlPort));
