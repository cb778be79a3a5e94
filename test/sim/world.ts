// A deterministic simulation of one partition replicated on 3–5 nodes (TigerBeetle's VOPR and
// FoundationDB's simulation are the models). The replicas run the real pure transition
// (src/actors/replica.ts → partition.ts `step`); this file plays every other part:
// - the worker (worker.ts): executes effects — writes to a durable in-memory store, sends to the
//   simulated network, drops; log catch-up, copies sent and installed, and recovery from the store
//   run the worker's own modules (src/actors/catch-up.ts, copy-send.ts, install.ts, recovery.ts),
//   and so do a leader's hand-off (handoff.ts) and anti-entropy (anti-entropy.ts), over this
//   file's store and clock;
// - the network: per-link delay, jitter, loss (in order per link, as TCP), partitions (one-way cuts
//   too); traffic on a cut link is dropped or held until the link heals, as a peer queue would;
// - the coordinator (etcd + cluster.ts): the partition record changes only by compare-and-swap on
//   its revision; failover (with its stand-ins), a leader shedding silent followers, in-sync
//   changes and the controller's round are decided by cluster.ts's own functions (src/cluster/
//   decide.ts, placement.ts controlRound) from each node's own (possibly wrong) perception and
//   applied later, so proposals race; views reach nodes late (in order per node); placement moves
//   redraw the partition's rendezvous ranks and its leader hands over through decide.ts
//   handOffTarget;
// - clients: puts, deletes, produces (some idempotent, some retried), group commits, acks all/one;
// - the nemesis: crashes (memory lost, store kept), restarts (state rebuilt from the store),
//   partitions, link degradation, a follower's store changed outside replication.
// With `single`, the partition has one copy (N = 1): its replica set is placement's (the
// controller's round with n = 1), so it moves between nodes ([A] → [B,A] → [B]) and gets a
// stand-in while its copy is silent; the copy held alone writes no log entry, so the log has gaps,
// and the checker takes those entries from the writes applied (MemStore.unlogged) instead of the log.
// Otherwise every node holds a copy, and the controller's round only reorders the set by rank;
// leadership moves by the leader's hand-off or by failover, never by the controller.
// After every event the checker runs (checker section below); a violation stops the run with the
// seed, the step and the trace of the last events.
//
// Findings this simulator made, all fixed in src/ and kept as regressions by the sweep:
// F1 an idempotent retry of an acks=all produce was answered with replicas=1 (now: it waits for
//    the original's confirmation); run with `retries`.
// F2 createReplica() adopted a newer epoch without writing it to disk (now: the view comes as a
//    message, whose effects persist it); checked with `strictRecovery`.
// F3 an abandoned install left the replica running over a wiped store (now: part 0 resets it to an
//    empty copy, and an abandoned copy leaves an empty, consistent store).
// F4 an ack sent before an install was counted after it (now: acks name the last copy installed,
//    and a leader ignores reports older than the copy it last started; acks vouch only for what
//    their message verified).
// F5 an abandoned install was never restarted (now: a stalled copy is abandoned and the follower
//    asks for a new one).
// F6 a new epoch adopted during an install re-put the meta without its `installing` flag, so a
//    crash then restarted over the partial copy at seq 0 and replaying the log met leftover streams
//    and producer windows (now: the marker is a key of its own; the checker requires seq 0 to be
//    empty). Seed 1001522 (seeds.ts `regressions`).
// F7 a leader's read lease was renewed by an ack that arrived late (held on a cut link) from a
//    follower that had since been elected in a newer epoch: two leaders answered reads, and the
//    old one showed entries the new one does not hold (now: the lease runs from when the leader
//    sent the append the ack answers). Invariant 6, seeds 3001909 and 3003007.
// F8 a follower that had decided to take over (its leader silent during a partition) answered the
//    appends the healed link then delivered, renewing the old leader's read lease, and was elected
//    alone in the in-sync set: both answered reads (now: a new leader answers none until
//    READ_LEASE_MS after it last answered a leader). Invariant 6, seeds 4000823 and 4002217.
// F9 (hinted handoff, before it landed) a retried produce was answered with the copies of the last
//    seq, counting a replica that held only that seq as a hint, not the original write (now: a
//    retry, and the count a leader sends with its watermark, use replicas whose log reaches the seq).
//    Invariant 4, seed 5000004 (and 20 more of 3,000).
// F10 (hinted handoff, before it landed) a follower deleted its hints when it adopted a newer epoch,
//    while its report of them was still on the way to the old leader, which then counted them (now:
//    hints stay on disk until the follower's log passes their seq). Invariant 4, seed 5002472.
// F11 (with hand-offs and anti-entropy) a leader whose hand-off was ready got a `diverged` nack
//    from its successor and started a copy to it; the copy wiped the successor just before the
//    record change made it leader, which then led from an empty store (now: a fenced leader sends
//    its successor no copy). Seed 216 of the CI range.
// F12 (one-copy mode, once the simulator ran the real controller round) the controller moved
//    leadership off a silent leader to the first-ranked in-sync replica, which was installing a
//    copy: it led from a partial store (now: the controller never moves leadership; failover elects
//    only a complete copy). Seeds 563 and 638 with `single`.
// F13 (one-copy mode) a replica whose views ran late got one from an older record that removed it
//    and dropped its copy, although its leader's record had added it back, it had caught up and was
//    in the in-sync set; later views handed it leadership and it led from an empty store (now:
//    views and appends carry the record's revision, and a replica ignores a view older than one it
//    has seen: replica.ts staleView). Invariant 6, seeds 532, 652 and 285 (3 nodes) with `single`.
import { createHash } from 'node:crypto';
import { AssertionError } from 'node:assert';
import { diskCodec } from '../../src/runtime/codec.js';
import { limits } from '../../src/runtime/limits.js';
import { epoch as toEpoch, nodeId, type NodeId } from '../../src/runtime/ids.js';
import { decodeBatch } from '../../src/protocol/batch.js';
import * as K from '../../src/storage/keys.js';
import { decodeKvValue, decodeStoredBatch, metaOp, type Command, type Op, type WireRecord } from '../../src/actors/partition.js';
import { asBatch, canServeReads, carriesBatch, createReplica, encodeLogEntry, failPending, handle, epochOf, hintRange, holdDuringCopy, needsPrior, rowOf, staleView, watermark, SNAPSHOT_ACK_TIMEOUT_MS, type Acks, type Effect, type Entry, type PeerMessage, type Replica, type ReplicaMessage, type ReplicaView } from '../../src/actors/replica.js';
import { failoverProposal, handOffTarget, inSyncChange, joiningChanges, recordSeq, sameView, seqAgo, shedProposal, HAND_OFF_FENCE_MS, HAND_OFF_WAIT_MS, ISR_LAG_MS, type LeaderPosition, type Perception } from '../../src/cluster/decide.js';
import { controlRound, plannedRecord, replicasFor, type PlacementInputs } from '../../src/cluster/placement.js';
import type { PartitionRecord as EtcdRecord } from '../../src/cluster/layout.js';
import { compareStep, digestChecks, digestSlices, shouldDigest, type CompareInput, type Comparison, type ReplicaSide } from '../../src/actors/anti-entropy.js';
import type { DigestCheck, DigestReply } from '../../src/actors/messages.js';
import { handOffStep, leaderSide, type HandOff, type HandOffInput, type LeaderSide } from '../../src/actors/handoff.js';
import { Prng } from './prng.js';
import { EventQueue } from './heap.js';
import { MemStore, decodeEntry } from './store.js';
import { loadState, restoreStoredHints } from '../../src/actors/recovery.js';
import { catchUp } from '../../src/actors/catch-up.js';
import type { Storage } from '../../src/actors/storage.js';
import { copyPartAcked, nextCopyPart, type OutgoingCopy } from '../../src/actors/copy-send.js';
import { abandonCopy, abandonStalledCopy, askForCopy, receivePart, type CopyHost, type Installing } from '../../src/actors/install.js';

const P = 7; // the partition id
/** worker.ts CLAIM_MS */
const CLAIM_MS = 2_000;
const TICK_MS = 50; // worker.ts TICK_MS
const CHECK_EVERY_MS = 100; // cluster.ts CHECK_EVERY_MS
const SUSPECT_AFTER_MS = 300; // cluster.ts SUSPECT_AFTER_MS
const WRITE_TIMEOUT_MS = 400; // the replication timeout the simulated worker passes with writes
const TOPIC = 1;
const EMPTY_DIGEST = new MemStore().digest();
/** the events a failure's trace shows by default */
const TRACE_KEEP = 80;
/** how often leaders send anti-entropy digests (the node's antiEntropyIntervalMs, shortened) */
const ANTI_ENTROPY_MS = 500;

export interface SimOptions {
  seed: number;
  /** events in the fault phase; quiescence follows */
  steps: number;
  /** 3..5; default: chosen by the seed */
  nodes?: number;
  /**
   * acks=all copies (N). Default: the replica count (every replica must hold an acks=all write).
   * 'mixed' lets the seed pick N=3 with 4–5 replicas, which is the shape of a view during a move.
   */
  copies?: number | 'mixed';
  /**
   * sim ms allowed for convergence after the faults stop. Default: twice SNAPSHOT_ACK_TIMEOUT_MS,
   * the time after which a leader presumes a copy lost on the way and sends a new one.
   */
  quiesceMs?: number;
  /** events kept for the failure trace */
  traceKeep?: number;
  /** keep every event (SIM_SEED replay) */
  fullTrace?: boolean;
  /** clients retry idempotent produces that got OUTCOME_UNKNOWN (F1) */
  retries?: boolean;
  /** check that the epoch in memory is also on disk, exactly (F2) */
  strictRecovery?: boolean;
  /**
   * A bug planted on purpose, to prove the checker catches it: `ack-early` answers acks=all writes
   * as soon as the leader wrote them; `read-applied` lets a leader's readers see what it applied
   * (unconfirmed writes, as Chicago did before its watermark); `join-early` feeds the in-sync
   * decisions (src/cluster/decide.ts) a leader that believes every follower has caught up;
   * `handoff-laggard` feeds the hand-off (decide.ts handOffTarget, src/actors/handoff.ts) a leader
   * that believes every replica is in sync and holds everything, so it may hand its leadership to
   * one that is not caught up; `digest-blind` has followers compare the leader's digests with
   * themselves, so a divergence is never repaired; `refuse-copied` has a replica that a full copy
   * replaces answer its pending writes NOT_LEADER, though the copy may hold them; `resend-gap`
   * feeds catch-up (src/actors/catch-up.ts) a log whose gaps it cannot see, so it resends across
   * one; `log-skip` has a leader of a partition of N = 1 write no log entry while it has followers
   * (a move), as if write() looked at N alone.
   */
  plant?: Plant;
  /**
   * Partitions of one copy (N = 1), placed on one node and moved between nodes by placement
   * (the controller's round with n = 1): [A] → [B,A] → [B]. Implies `copies` 1.
   */
  single?: boolean;
  /**
   * Placement moves (default on): the partition's preferred leader changes now and then, as
   * rebalancing changes rendezvous ranks, and the leader hands its leadership over. Off (with no
   * controller either, unless `single`) for the regression seeds, which replay the schedules that
   * found them.
   */
  moves?: boolean;
  /**
   * Anti-entropy (default on): leaders send digests, followers compare them (src/actors/anti-entropy.ts),
   * and now and then a follower's store is changed outside replication, which they must repair.
   * Off for the regression seeds, like `moves`.
   */
  antiEntropy?: boolean;
}

export const PLANTS = ['ack-early', 'read-applied', 'join-early', 'handoff-laggard', 'digest-blind', 'refuse-copied', 'resend-gap', 'log-skip'] as const;
export type Plant = typeof PLANTS[number];

export interface SimResult {
  seed: number;
  ok: boolean;
  violation?: string;
  step: number;
  simMs: number;
  /** fullTrace: every event's line; a failure: the last traceKeep lines before it (runSeed) */
  trace: string[];
  /** fullTrace (and a failure): FNV-1a over every trace line; equal seeds must give equal hashes */
  traceHash?: string;
  config: string;
  /** the command that replays this run with its full trace */
  replay: string;
  stats: Record<string, number>;
}

export class Violation extends Error {}

interface PartitionRecord { epoch: number; leader: NodeId; replicas: NodeId[]; isr: NodeId[]; rev: number }

interface SimNode {
  id: NodeId;
  up: boolean;
  /** bumped on each crash: views and ticks of a dead incarnation are void */
  inc: number;
  downAtMs: number;
  store: MemStore;
  replica?: Replica;
  /** snapshots being sent (worker: iterator opened at the effect), one part per tick */
  snapshots: Map<NodeId, OutgoingCopy & { partBytesMax: number; history: Map<number, Buffer>; tainted: boolean }>;
  /** a copy being received (worker.ts `installing`) */
  installing?: Installing;
  /** worker.ts `incomplete`: a copy started and none completed since (durable: the store's K.installingKey) */
  incomplete: boolean;
  /** worker.ts `claim`: its coordinator proposed it to lead `epoch` */
  claim?: { epoch: number; untilMs: number };
  /** what this node's heartbeats last told each peer: [seq, incomplete] */
  heardPos: Map<NodeId, [number, number]>;
  /** leader only (cluster.ts seqHistory): [time, seq] samples */
  seqHistory: Array<[number, number]>;
  /** leader only (cluster.ts joining): followers being added to the in-sync set, with the version of the first view counting them */
  joining: Map<NodeId, number>;
  /** the last view version handed to it (cluster.ts viewVersion) */
  viewVersion: number;
  /** when its last view is delivered: views reach a node in order */
  lastViewAt: number;
  /** last view the coordinator produced for it (cluster.ts refreshViews dedupe) */
  lastView?: ReplicaView;
  digest?: string;
  /** a leadership hand-off under way (worker.ts, through src/actors/handoff.ts), and the record change it is for */
  handOff?: HandOff;
  handOffFor?: { rev: number; next: Omit<PartitionRecord, 'rev'> };
  /** cluster.ts handOffFailedAt */
  handOffFailedAt?: number;
  /** worker.ts `comparison`: a leader's digests waiting for this replica to reach their seq */
  comparison: Comparison;
  /** checker: the highest epoch it held (invariant 2: across restarts too) */
  maxEpoch: number;
  /**
   * checker: its store was changed outside replication (or it installed a copy of one that was):
   * until a copy replaces it, it is not compared with the others at the same position
   */
  tainted: boolean;
  /** checker: the entries it held, logged or as hints, when a move dropped its copy (its acks and hint reports may still count) */
  dropped?: Map<number, Buffer>;
  /** checker: its topic's batches (by hex key) when a move dropped its copy: a retry's count of it may still include them */
  droppedBatches?: Map<string, Buffer>;
  /** its last anti-entropy digest and what it was of (Sim.digestNow) */
  digested?: { key: string; reply: DigestReply };
  /** its CopyHost (Sim.copyHost): reads and writes the node's fields, so it outlives crashes */
  host?: CopyHost;
  /** checker: the store's stream and batch versions and the streams in memory when its streams last checked gap-free */
  streamsChecked?: string;
  /**
   * checker: by stream, its keys, and where its last gap-free walk over the batches ended (after
   * the hex key `last`, at offset `at`), with what that check read: the stored stream value, the
   * stream in memory, the count of batch edits
   */
  batchWalks?: Map<string, BatchWalk>;
}

interface BatchWalk {
  streamKey: Buffer; range: { gte: Buffer; lt: Buffer };
  stored: Buffer | undefined; start: number; end: number; changes: number; at: number; last: string | undefined;
}

interface Link {
  cut: boolean; cutAtMs: number; loss: number; delayMs: number; jitterMs: number; lastDeliveryAt: number;
  /** frames that reached the link while it was cut: the sender's peer queue, delivered in order once it heals */
  held: Array<Extract<Ev, { k: Wire }>>;
}

type ClientOp =
  | { kind: 'kvPut'; key: string; value: string }
  | { kind: 'kvDel'; key: string }
  | { kind: 'produce'; tp: number; values: string[]; producerId?: string; sequence?: number }
  | { kind: 'commit'; tp: number; offset: number };

interface Request {
  id: number;
  op: ClientOp;
  acks: Acks;
  node: NodeId;
  sentAtMs: number;
  retryOf?: number;
  /** set when the leader applied it: the log entry it made (or would have made: MemStore.unlogged) */
  entry?: { seq: number; bytes: Buffer };
  /** applied by a leader alone in its in-sync set: confirmed at once, so as durable as acks=all */
  sole?: boolean;
  outcome?: { ok: boolean; code?: string; replicas?: number; res?: unknown; atMs: number };
}

type Ev =
  | { k: 'msg'; from: NodeId; to: NodeId; msg: PeerMessage }
  // history: checker-only (MemStore.unlogged), the log entries the copied state stands for
  | { k: 'snap'; from: NodeId; to: NodeId; epoch: number; copy: number; part: number; last: boolean; data: Array<[Buffer, Buffer]>; history: Map<number, Buffer>; tainted: boolean }
  /** messages.ts SnapshotAck: the follower wrote that part; its sender then sends the next */
  | { k: 'snapAck'; from: NodeId; to: NodeId; copy: number; part: number }
  /** messages.ts DigestCheck: a leader's digests, for a follower to compare */
  | { k: 'digest'; from: NodeId; to: NodeId; check: DigestCheck }
  /** leaders send digests; the nemesis may change a follower's store outside replication */
  | { k: 'ae' }
  | { k: 'view'; to: NodeId; inc: number; view: ReplicaView }
  | { k: 'req'; to: NodeId; id: number }
  | { k: 'tick'; node: NodeId; inc: number }
  | { k: 'coord' }
  | { k: 'cas'; by: NodeId; rev: number; next: Omit<PartitionRecord, 'rev'>; why: string; handOff?: boolean }
  /** placement: rebalancing changes the partition's rendezvous ranks, so its preferred leader */
  | { k: 'place' }
  | { k: 'fault' }
  | { k: 'client' }
  | { k: 'restart'; node: NodeId }
  /** a healed link delivers what it held, one frame per event */
  | { k: 'flush'; from: NodeId; to: NodeId }
  | { k: 'quiesce' };

const lk = (a: NodeId, b: NodeId) => `${a}>${b}`;
/** what travels on the peer links */
type Wire = 'msg' | 'snap' | 'snapAck' | 'digest';

export class Sim {
  readonly seed: number;
  private readonly replay: string;
  private readonly opts: Required<Omit<SimOptions, 'nodes' | 'copies' | 'plant' | 'traceKeep'>> & Pick<SimOptions, 'plant'>;
  private readonly rNet: Prng;
  private readonly rFault: Prng;
  private readonly rClient: Prng;
  private readonly rCoord: Prng;
  private readonly rPlace: Prng;
  /**
   * The key placement ranks this partition's nodes by (placement.ts rank): the simulator's
   * members never change, so a rebalance draws a new key, which reorders them as a changed member
   * set would.
   */
  private placeKey = 0;
  private readonly q = new EventQueue<Ev>();
  private now = 0;
  private step = 0;
  private phase: 'faults' | 'quiesce' = 'faults';
  private readonly ids: NodeId[];
  private readonly nodes = new Map<NodeId, SimNode>();
  /** the same nodes in their order, for the loops run after every event */
  private readonly nodeList: SimNode[] = [];
  private readonly links = new Map<string, Link>();
  /** the same links by sender, then receiver: found without making a key string */
  private readonly linksFrom = new Map<NodeId, Map<NodeId, Link>>();
  private rec: PartitionRecord;
  private readonly copies: number;
  private readonly requests = new Map<number, Request>();
  private nextReq = 1;
  private producerSeq = new Map<number, number>();
  private valueCounter = 0;
  /**
   * With fullTrace, every event's line and their hash; an untraced run formats none (the calls
   * are `this.log?.(…)`, so their arguments are not even evaluated), and runSeed replays a failing
   * seed traced for the events before its violation.
   */
  private readonly full: string[] | undefined;
  private readonly log: ((line: string) => void) | undefined;
  private hash = 0x811c9dc5;
  private touched = new Set<NodeId>();
  // checker state
  private readonly epochLeader = new Map<number, NodeId>();
  /** `${seq}/${epoch}` → the entry's bytes; the same (seq, epoch) must mean the same entry */
  private readonly entries = new Map<string, Buffer>();
  /** by seq: the distinct entry bytes checkLogEntry passed under that log key */
  private readonly passedEntries = new Map<number, Buffer[]>();
  /** seq → the entry's bytes as some leader let readers see them; null: its log no longer had it */
  private readonly shown = new Map<number, Buffer | null>();
  /** the highest seq any leader let readers see */
  private shownSeq = 0;
  readonly stats = { events: 0, messages: 0, dropped: 0, crashes: 0, restarts: 0, failovers: 0, isrChanges: 0, snapshots: 0, requests: 0, okAll: 0, okOne: 0, unknown: 0, errors: 0, casLost: 0, hinted: 0, handOffs: 0, divergences: 0, repairs: 0, refusedChecked: 0,
    /** single: replica-set changes placement made, returns of a dropped node's stale copy, resends that stopped at a gap in the log */
    moves: 0, staleReturns: 0, gapStops: 0,
    /** acks counted from a replica a move dropped after it acked */
    droppedCounted: 0 };

  constructor(opts: SimOptions) {
    this.seed = opts.seed;
    this.replay = replayCommand(opts);
    this.opts = {
      seed: opts.seed, steps: opts.steps, quiesceMs: opts.quiesceMs ?? 2 * SNAPSHOT_ACK_TIMEOUT_MS,
      fullTrace: opts.fullTrace ?? false, retries: opts.retries ?? false,
      strictRecovery: opts.strictRecovery ?? false, plant: opts.plant, moves: opts.moves ?? true, antiEntropy: opts.antiEntropy ?? true,
      single: opts.single ?? false,
    };
    const root = new Prng(opts.seed);
    const rConf = root.fork();
    this.rNet = root.fork();
    this.rFault = root.fork();
    this.rClient = root.fork();
    this.rCoord = root.fork();
    this.rPlace = root.fork(); // forked last: the other streams are those of runs without moves
    const n = opts.nodes ?? rConf.int(3, 5);
    this.ids = Array.from({ length: n }, (_, i) => nodeId(`n${i + 1}`));
    this.copies = this.opts.single ? 1 : opts.copies === 'mixed' ? (n > 3 && rConf.chance(0.5) ? 3 : n) : Math.min(opts.copies ?? n, n);
    if (this.opts.fullTrace) {
      const full: string[] = [];
      this.full = full;
      this.log = (line) => {
        const s = `${String(this.step).padStart(5)} t=${String(this.now).padStart(6)} ${line}`;
        for (let i = 0; i < s.length; i++) this.hash = Math.imul(this.hash ^ s.charCodeAt(i), 0x01000193);
        full.push(s);
      };
    }
    for (const a of this.ids) {
      const from = new Map<NodeId, Link>();
      this.linksFrom.set(a, from);
      for (const b of this.ids) {
        if (a === b) continue;
        const l = this.healthyLink(rConf);
        this.links.set(lk(a, b), l);
        from.set(b, l);
      }
    }
    const leader = rConf.pick(this.ids);
    const held = this.opts.single ? [leader] : this.ids;
    this.rec = { epoch: 1, leader, replicas: [...held], isr: [...held], rev: 1 };
    for (const id of this.ids) this.nodes.set(id, { id, up: true, inc: 0, downAtMs: 0, store: new MemStore(), incomplete: false, snapshots: new Map(), comparison: {}, tainted: false, maxEpoch: 0, heardPos: new Map(), seqHistory: [], joining: new Map(), viewVersion: 0, lastViewAt: 0 });
    this.nodeList.push(...this.nodes.values());
    for (const node of this.nodeList) this.open(node);
    this.q.push(CHECK_EVERY_MS, { k: 'coord' });
    this.q.push(rConf.int(50, 300), { k: 'fault' });
    this.q.push(rConf.int(1, 20), { k: 'client' });
    if (this.opts.moves) {
      this.placeKey = this.rPlace.int(0, 1 << 20);
      this.q.push(this.rPlace.int(300, 3000), { k: 'place' });
    }
    if (this.opts.antiEntropy) this.q.push(ANTI_ENTROPY_MS, { k: 'ae' });
  }

  config(): string {
    return `nodes=${this.ids.length} copies=${this.copies}${this.opts.single ? ' single' : ''} leader=${this.rec.leader} steps=${this.opts.steps}`;
  }

  private link(from: NodeId, to: NodeId): Link {
    return this.linksFrom.get(from)!.get(to)!;
  }

  private healthyLink(r: Prng): Link {
    return { cut: false, cutAtMs: 0, loss: 0, delayMs: r.int(1, 5), jitterMs: r.int(0, 10), lastDeliveryAt: 0, held: [] };
  }

  // ---- running ----

  run(): SimResult {
    let violation: string | undefined;
    try {
      this.loop();
      this.finalCheck();
    } catch (e) {
      if (e instanceof Violation) violation = e.message;
      else if (e instanceof AssertionError) violation = `assertion in the code under test: ${e.message}\n${e.stack ?? ''}`;
      else violation = `exception: ${(e as Error).stack ?? String(e)}`;
    }
    return {
      seed: this.seed, ok: violation === undefined, violation, step: this.step, simMs: this.now,
      trace: this.full ?? [], traceHash: this.full ? (this.hash >>> 0).toString(16) : undefined, config: this.config(), replay: this.replay, stats: { ...this.stats },
    };
  }

  private loop(): void {
    const deadline = () => this.phase === 'quiesce' && this.now > this.quiesceStart + this.opts.quiesceMs;
    for (;;) {
      const s = this.q.pop();
      if (!s) throw new Violation('event queue ran dry');
      this.now = s.at;
      this.step++;
      this.stats.events++;
      this.touched.clear();
      this.dispatch(s.ev);
      this.checkStep();
      if (this.phase === 'faults' && this.step >= this.opts.steps) this.startQuiesce();
      if (this.phase === 'quiesce' && s.ev.k === 'coord' && this.converged()) return;
      if (this.q.size > 200_000) throw new Violation(`runaway: ${this.q.size} events queued:\n${this.status()}`);
      if (deadline()) throw new Violation(`no convergence ${this.opts.quiesceMs} ms after the faults stopped:\n${this.status()}`);
    }
  }

  private quiesceStart = 0;

  private startQuiesce(): void {
    this.phase = 'quiesce';
    this.quiesceStart = this.now;
    this.log?.('== quiesce: faults stop, links heal, crashed nodes restart');
    for (const l of this.links.values()) l.loss = 0;
    this.healLinks();
    this.q.retain((ev) => ev.k !== 'fault' && ev.k !== 'client' && ev.k !== 'restart' && ev.k !== 'place');
    for (const n of this.nodeList) if (!n.up) this.q.push(this.now + this.rFault.int(1, 50), { k: 'restart', node: n.id });
  }

  private dispatch(ev: Ev): void {
    switch (ev.k) {
      case 'msg': return this.deliver(ev);
      case 'snap': return this.deliverSnap(ev);
      case 'snapAck': return this.deliverSnapAck(ev);
      case 'digest': return this.deliverDigest(ev);
      case 'ae':
        this.q.push(this.now + ANTI_ENTROPY_MS, ev);
        return this.antiEntropy();
      case 'view': {
        const n = this.nodes.get(ev.to)!;
        if (!n.up || n.inc !== ev.inc) return;
        const stale = staleView(n.replica!, ev.view) ? ` ignored: older than rev ${n.replica!.seenRev}` : '';
        this.log?.(`${ev.to} view e${ev.view.epoch} leader=${ev.view.leader} replicas=[${ev.view.replicas.join(',')}] live=[${ev.view.live.join(',')}] isr=[${ev.view.isr.join(',')}] rev=${ev.view.rev}${stale}`);
        this.run1(n, { type: 'view', view: ev.view });
        return;
      }
      case 'req': return this.arrive(ev.to, ev.id);
      case 'tick': {
        const n = this.nodes.get(ev.node)!;
        if (!n.up || n.inc !== ev.inc) return;
        this.q.push(this.now + TICK_MS, ev);
        this.workerTick(n);
        return;
      }
      case 'coord':
        this.q.push(this.now + CHECK_EVERY_MS, ev);
        return this.coordinate();
      case 'cas': return this.cas(ev);
      case 'place':
        this.q.push(this.now + this.rPlace.int(300, 3000), ev);
        this.placeKey = this.rPlace.int(0, 1 << 20);
        this.log?.(`placement: ranks redrawn, preferred leader ${this.planned().leader}`);
        return;
      case 'fault':
        this.q.push(this.now + this.rFault.int(40, 400), ev);
        return this.fault();
      case 'client':
        this.q.push(this.now + this.rClient.int(2, 40), ev);
        return this.client();
      case 'restart': return this.restart(this.nodes.get(ev.node)!);
      case 'flush': {
        const l = this.link(ev.from, ev.to);
        if (l.cut) return; // cut again: the next heal resumes
        const next = l.held.shift();
        if (!next) return;
        if (l.held.length > 0) this.q.push(this.now + 1, ev);
        return next.k === 'msg' ? this.deliver(next, true) : next.k === 'snap' ? this.deliverSnap(next, true) : next.k === 'digest' ? this.deliverDigest(next, true) : this.deliverSnapAck(next, true);
      }
      case 'quiesce': return;
    }
  }

  // ---- the worker's part ----

  /** worker.ts `open`: load from the store, build the replica with the view the node knows. */
  private open(n: SimNode): void {
    const state = loadState(n.store, P);
    n.incomplete = n.store.get(K.installingKey) !== undefined;
    const view = this.viewFor(n.id);
    n.lastView = view;
    view.version = ++n.viewVersion;
    n.replica = createReplica(n.id, state, view);
    restoreStoredHints(n.replica, n.store);
    n.snapshots = new Map();
    n.digest = undefined;
    this.touched.add(n.id);
    this.run1(n, { type: 'view', view });
    this.q.push(this.now + this.rNet.int(1, TICK_MS), { k: 'tick', node: n.id, inc: n.inc });
  }

  private run1(n: SimNode, m: ReplicaMessage): void {
    const r = n.replica!;
    const before = r.state.seq;
    const effects = handle(r, m, this.now);
    if (this.opts.plant === 'ack-early' && m.type === 'write' && m.acks === 'all' && r.state.seq > before && !effects.some((e) => e.kind === 'reply')) {
      const w = r.pending.pop()!; // planted bug: confirm before the copies exist
      effects.push({ kind: 'reply', id: w.id, reply: { ok: true, res: w.res }, replicas: r.view.copies });
    }
    if (m.type === 'write' && r.state.seq > before) {
      const req = this.requests.get(m.id);
      const w = effects.find((e) => e.kind === 'write') as Extract<Effect, { kind: 'write' }>;
      const isLogPut = (o: Op) => o.type === 'put' && o.key.equals(K.logKey(r.state.seq));
      // planted bug: the log entry skipped whenever N = 1, though a move gave the leader followers
      if (this.opts.plant === 'log-skip' && r.view.copies <= 1) w.ops = w.ops.filter((o) => !isLogPut(o));
      const logPut = w.ops.find(isLogPut) as Extract<Op, { type: 'put' }> | undefined;
      const entry = logPut?.value ?? this.unloggedEntry(n, m, w.ops);
      if (req) req.entry = { seq: r.state.seq, bytes: entry };
      if (req) req.sole = r.view.isr.every((x) => x === n.id);
    }
    this.execute(n, effects);
  }

  /**
   * invariant 3 (no silent gap): only the one copy of a partition of N = 1 may write no log entry
   * (a replica joining it finds the log short and gets a full copy); while it has followers, one
   * that misses an append must find the entry in the log. The checker keeps the entry the write
   * stands for, in its logged form, as the history of that replica (MemStore.unlogged).
   */
  private unloggedEntry(n: SimNode, m: Extract<ReplicaMessage, { type: 'write' }>, ops: Op[]): Buffer {
    const r = n.replica!;
    const seq = r.state.seq;
    if (r.view.replicas.length !== 1 || r.view.copies > 1) {
      throw new Violation(`invariant 3: ${n.id} wrote seq ${seq} with no log entry, with replicas [${r.view.replicas.join(',')}] and N=${r.view.copies}`);
    }
    const bytes = encodeLogEntry({ seq, epoch: r.state.epoch, now: this.now, cmd: asBatch(m.cmd, ops) });
    this.checkLogEntry(n.id, K.logKey(seq), bytes);
    n.store.recordUnlogged(seq, bytes);
    return bytes;
  }

  private execute(n: SimNode, effects: Effect[]): void {
    for (const e of effects) {
      switch (e.kind) {
        case 'write': this.write(n, e.ops); break;
        case 'reply': this.reply(n, e); break;
        case 'send': this.send(n.id, e.to, e.msg); break;
        case 'resend': this.resend(n, e.to, e.fromSeq, e.at); break;
        case 'snapshot':
          {
            // worker.ts: a new copy replaces one still being sent; it is fixed when the effect
            // runs, and its parts are cut by a byte cap chosen so it leaves in 1–3 parts
            const data = n.store.copy();
            const bytes = data.reduce((a, [k, v]) => a + k.length / 2 + v.length, 0);
            const partBytesMax = Math.max(1, Math.ceil(bytes / this.rNet.int(1, 3)));
            const entries = data.map(([k, v]): [Buffer, Buffer] => [Buffer.from(k, 'hex'), v])[Symbol.iterator]();
            n.snapshots.set(e.to, { copy: e.copy, part: 0, lastPartAtMs: 0, entries, partBytesMax, history: n.store.history(n.replica!.state.seq), tainted: n.tainted });
          }
          break;
        case 'drop': {
          // worker.ts: a copy still arriving is ignored, and the replica starts empty claiming no epoch
          n.dropped = this.heldEntries(n);
          n.droppedBatches = new Map(n.store.range({ gte: K.batchRange(TOPIC, 0).gte, lt: K.batchRange(TOPIC + 1, 0).gte }));
          n.installing = undefined;
          n.incomplete = false;
          n.store.clear(K.allRange);
          n.tainted = false;
          this.touched.add(n.id);
          n.digest = undefined;
          const fresh = loadState(new MemStore(), P);
          fresh.epoch = n.replica!.state.epoch;
          const { view, seenRev } = n.replica!;
          this.execute(n, failPending(n.replica!, 'the replica was replaced')); // worker.ts replaceReplica
          n.replica = createReplica(n.id, fresh, view);
          this.run1(n, { type: 'view', view });
          n.replica.seenRev = Math.max(n.replica.seenRev, seenRev);
          n.store.apply([metaOp(n.replica.state)]); // worker.ts: the epoch survives a restart
          this.log?.(`${n.id} drop: copy removed`);
          break;
        }
        case 'role':
          if (e.role !== 'leader') n.snapshots.clear();
          this.log?.(`${n.id} role ${e.role} e${n.replica!.state.epoch}`);
          break;
      }
    }
  }

  private write(n: SimNode, ops: Op[]): void {
    for (const op of ops) {
      if (op.type === 'put' && op.key[0] === K.Kind.log) this.checkLogEntry(n.id, op.key, op.value);
    }
    n.store.apply(ops);
    n.digest = undefined;
    this.touched.add(n.id);
  }

  /** worker.ts `resend`, through the same code (catch-up.ts). */
  private resend(n: SimNode, to: NodeId, fromSeq: number, at: number): void {
    const c = catchUp(n.replica!, n.id, fromSeq, at, this.opts.plant === 'resend-gap' ? gapBlind(n.store) : n.store);
    if (c.kind === 'logMissing') this.run1(n, { type: 'logMissing', to });
    else {
      const last = c.msg.entries.at(-1)?.seq;
      // entries resent up to a gap in the log (writes made while the copy was held alone)
      if (last !== undefined && last < n.replica!.state.seq && !n.store.get(K.logKey(last + 1))) this.stats.gapStops++;
      this.send(n.id, to, c.msg);
    }
  }

  /** worker.ts abandonInstall, through the same code (install.ts). */
  private abandonInstall(n: SimNode): void {
    const from = n.installing?.from;
    if (abandonCopy(this.copyHost(n))) this.log?.(`${n.id} abandons the copy from ${from}`);
  }

  /** The simulated partition as install.ts sees it (the worker's copyHost); one per node, built once. */
  private copyHost(n: SimNode): CopyHost {
    n.host ??= this.newCopyHost(n);
    return n.host;
  }

  private newCopyHost(n: SimNode): CopyHost {
    const sim = this;
    return {
      self: n.id,
      get replica() { return n.replica!; },
      get installing() { return n.installing; },
      set installing(v) { n.installing = v; },
      get incomplete() { return n.incomplete; },
      set incomplete(v) { n.incomplete = v; },
      get claim() { return n.claim; },
      nowMs: () => sim.now,
      flush: () => {}, // every write here is applied at once
      clear: (range) => {
        n.store.clear(range);
        if (n.tainted && range.gte[0] <= K.Kind.kv && range.lt[0] > K.Kind.kv) { n.tainted = false; sim.stats.repairs++; } // a copy starts from nothing
        n.digest = undefined;
        sim.touched.add(n.id);
      },
      apply: (ops) => sim.write(n, ops),
      replace: (state, view) => {
        const { hints, hintsOnDisk, pending, seenRev } = n.replica!;
        if (sim.opts.plant === 'refuse-copied') sim.execute(n, pending.splice(0).map((w): Effect => ({ kind: 'reply', id: w.id, reply: { ok: false, code: 'NOT_LEADER', args: [P, 'planted'] } })));
        n.replica = createReplica(n.id, state, view);
        Object.assign(n.replica, { hints, hintsOnDisk, pending }); // worker.ts replaceReplica: a copy leaves hints and pending writes in place
        sim.run1(n, { type: 'view', view });
        n.replica.seenRev = Math.max(n.replica.seenRev, seenRev);
      },
      load: () => loadState(n.store, P),
      send: (to, msg) => {
        if (msg.t === 'snapAck') sim.transmit(n.id, to, { k: 'snapAck', from: n.id, to, copy: msg.copy, part: msg.part });
        else sim.send(n.id, to, msg);
      },
    };
  }

  private workerTick(n: SimNode): void {
    const stalled = n.installing?.from;
    if (abandonStalledCopy(this.copyHost(n))) this.log?.(`${n.id} abandons the stalled copy from ${stalled}`);
    this.run1(n, { type: 'tick' });
    if (n.handOff) this.stepHandOff(n, { type: 'poll', nowMs: this.now, leader: this.leaderSide(n) });
    // worker.ts sendSnapshotChunk, through the same code (copy-send.ts): one part per follower per
    // tick, once the last one is acked (no part interval: the simulator has no foreground to yield to)
    for (const [to, snap] of n.snapshots) {
      const out = nextCopyPart(snap, this.now, 0, snap.partBytesMax);
      if (!out) continue;
      if (out.part === 0) this.stats.snapshots++;
      this.log?.(`${n.id} → ${to} snapshot e${n.replica!.state.epoch} part ${out.part}${out.last ? ' (last)' : ''} (${out.entries.length} keys)`);
      this.transmit(n.id, to, { k: 'snap', from: n.id, to, epoch: n.replica!.state.epoch, copy: snap.copy, part: out.part, last: out.last, data: out.entries, history: snap.history, tainted: snap.tainted });
      if (out.last) n.snapshots.delete(to);
    }
  }

  private deliverSnapAck(ev: Extract<Ev, { k: 'snapAck' }>, flushed = false): void {
    const n = this.nodes.get(ev.to)!;
    if (!n.up || !this.linkPasses(ev, flushed)) return;
    copyPartAcked(n.snapshots.get(ev.from), ev.copy, ev.part);
    this.run1(n, { type: 'copyProgress', to: ev.from, copy: ev.copy });
  }

  /** worker.ts installChunk, through the same code (install.ts). */
  private deliverSnap(ev: Extract<Ev, { k: 'snap' }>, flushed = false): void {
    const n = this.nodes.get(ev.to)!;
    if (!n.up) return;
    if (!this.linkPasses(ev, flushed)) return;
    const seqBefore = n.replica!.state.seq;
    const outcome = receivePart(this.copyHost(n), { epoch: ev.epoch, from: ev.from, copy: ev.copy, part: ev.part, last: ev.last, entries: ev.data });
    this.log?.(`${n.id} ← ${ev.from} snapshot e${ev.epoch} part ${ev.part}${ev.last ? ' (last)' : ''}: ${outcome}`);
    if (outcome !== 'installed') return;
    n.store.installHistory(ev.history); // checker only: the entries the installed state stands for
    n.tainted = ev.tainted;
    this.log?.(`${n.id} installed snapshot from ${ev.from}: seq ${seqBefore} → ${n.replica!.state.seq}`);
    if (n.comparison.check) this.compare(n, { type: 'progress', replica: this.replicaSide(n) });
  }

  // ---- anti-entropy (worker.ts sendDigests and compare, through anti-entropy.ts) ----

  private replicaSide(n: SimNode): ReplicaSide {
    const r = n.replica!;
    return { role: r.role, epoch: r.state.epoch, seq: r.state.seq, replicas: r.view.replicas, copy: r.copy, installing: n.installing !== undefined, digesting: false };
  }

  /**
   * The replica's digest (computed at once: the simulator has no foreground to yield to). It is a
   * function of the store's digested kinds and the replica's position, so while neither changed
   * (a quiet partition, every round of quiescence) the last one stands.
   */
  private digestNow(n: SimNode): DigestReply {
    const s = n.replica!.state;
    let key = `${s.id}/${s.seq}/${s.epoch}`;
    for (let kind: number = K.Kind.kv; kind <= K.digestKindLast; kind++) key += `/${n.store.kindVersion(kind)}`;
    if (n.digested?.key === key) return n.digested.reply;
    const reply = this.digestSlicesNow(n);
    n.digested = { key, reply };
    return reply;
  }

  private digestSlicesNow(n: SimNode): DigestReply {
    const s = n.replica!.state;
    const job = digestSlices(n.store, { partition: s.id, seq: s.seq, epoch: s.epoch });
    for (;;) {
      const r = job.next();
      if (r.done) return r.value;
    }
  }

  private antiEntropy(): void {
    for (const n of this.nodeList) {
      if (!n.up || !shouldDigest(this.replicaSide(n))) continue;
      const d = this.digestNow(n);
      for (const { to, msg } of digestChecks(this.replicaSide(n), n.id, d)) this.transmit(n.id, to, { k: 'digest', from: n.id, to, check: msg });
    }
    // the nemesis: a follower's store changes outside replication (a bit flip, an operator's mistake)
    if (this.phase !== 'faults' || !this.rPlace.chance(0.2)) return;
    const victims = this.ids.map((id) => this.nodes.get(id)!).filter((n) => n.up && !n.installing && !n.incomplete && n.replica!.role !== 'leader' && n.replica!.state.seq > 0);
    if (victims.length === 0) return;
    const v = this.rPlace.pick(victims);
    v.store.apply([{ type: 'put', key: K.kvKey('ks', Buffer.from(`stray${this.rPlace.int(0, 9)}`)), value: Buffer.from(`x${this.valueCounter}`) }]);
    v.tainted = true;
    v.digest = undefined;
    this.touched.add(v.id);
    this.log?.(`nemesis: ${v.id}'s store changed outside replication`);
  }

  private deliverDigest(ev: Extract<Ev, { k: 'digest' }>, flushed = false): void {
    const n = this.nodes.get(ev.to)!;
    if (!n.up || !this.linkPasses(ev, flushed)) return;
    this.log?.(`${n.id} ← ${ev.from} digest e${ev.check.epoch} seq=${ev.check.seq}`);
    this.compare(n, { type: 'check', check: ev.check, replica: this.replicaSide(n) });
  }

  private compare(n: SimNode, m: CompareInput): void {
    const { state, effects } = compareStep(n.comparison, m, n.id);
    n.comparison = state;
    for (const e of effects) {
      if (e.kind === 'digest') {
        const mine = this.digestNow(n);
        // planted: the follower compares the leader's digests with themselves
        const blind = this.opts.plant === 'digest-blind' && n.comparison.comparing;
        this.compare(n, { type: 'digested', mine: blind ? { ...mine, ranges: n.comparison.comparing!.check.ranges } : mine, replica: this.replicaSide(n) });
      } else if (e.kind === 'diverged') {
        this.stats.divergences++;
        this.log?.(`${n.id} diverged from its leader in ${e.ranges.join(',')}: asks for a copy`);
        this.send(n.id, e.nack.to, e.nack.msg);
      }
    }
  }

  // ---- network ----

  private send(from: NodeId, to: NodeId, msg: PeerMessage): void {
    if (from === to) throw new Violation(`${from} sends a message to itself: ${describe(msg)}`);
    this.transmit(from, to, { k: 'msg', from, to, msg });
  }

  /**
   * Peer links are WebSocket over TCP (src/cluster/peer.ts): one direction delivers in order and
   * never duplicates, but frames can be lost (a link that drops loses what was in flight; a full
   * queue drops). Jitter delays, and a later frame never overtakes an earlier one on its link;
   * frames on different links race freely.
   */
  private transmit(from: NodeId, to: NodeId, ev: Extract<Ev, { k: Wire }>): void {
    const l = this.link(from, to);
    this.stats.messages++;
    if (this.rNet.chance(l.loss)) { this.stats.dropped++; return; }
    const at = Math.max(this.now + l.delayMs + this.rNet.int(0, l.jitterMs), l.lastDeliveryAt);
    l.lastDeliveryAt = at;
    this.q.push(at, ev);
  }

  /**
   * A cut link loses what reaches it (in flight when the connection broke) or holds it in the
   * sender's peer queue; whatever arrives while frames are held waits behind them, so order holds.
   * `flushed`: a held frame being delivered by the healed link.
   */
  private linkPasses(ev: Extract<Ev, { k: Wire }>, flushed: boolean): boolean {
    const l = this.link(ev.from, ev.to);
    if (!l.cut && (flushed || l.held.length === 0)) return true;
    if (l.cut && this.rNet.chance(0.5)) { this.stats.dropped++; return false; }
    l.held.push(ev);
    return false;
  }

  /** peer.ts reconnects: each cut link heals and sends what its queue held, in order */
  private healLinks(): void {
    for (const [key, l] of this.links) {
      if (!l.cut) continue;
      l.cut = false;
      const [from, to] = key.split('>') as [NodeId, NodeId];
      if (l.held.length > 0) this.q.push(this.now + l.delayMs, { k: 'flush', from, to });
    }
  }

  private deliver(ev: Extract<Ev, { k: 'msg' }>, flushed = false): void {
    const n = this.nodes.get(ev.to)!;
    if (!n.up) return;
    if (!this.linkPasses(ev, flushed)) return;
    if (ev.msg.t === 'append') this.checkContiguous(ev.from, ev.to, ev.msg);
    if (n.incomplete && ev.msg.t === 'append') {
      // worker.ts onPeer: entries wait for the copy (kept as hints); with none under way, a probe asks for one
      this.log?.(`${ev.to} ${n.installing ? 'installing' : 'incomplete'}: holds back ${describe(ev.msg)}`);
      if (ev.msg.entries.length > 0) this.execute(n, holdDuringCopy(n.replica!, ev.msg));
      else if (!n.installing) askForCopy(this.copyHost(n), ev.msg.leader);
      return;
    }
    this.log?.(`${ev.to} ← ${ev.from} ${describe(ev.msg)}`);
    const r = n.replica!;
    const epochBefore = r.state.epoch;
    const seqBefore = r.state.seq;
    const storeBefore = n.store.size;
    this.run1(n, { type: 'peer', msg: ev.msg });
    if (n.handOff) this.stepHandOff(n, { type: 'poll', nowMs: this.now, leader: this.leaderSide(n) });
    if (n.comparison.check) this.compare(n, { type: 'progress', replica: this.replicaSide(n) });
    if (ev.msg.t === 'append' && ev.msg.epoch < epochBefore && (r.state.seq !== seqBefore || n.store.size !== storeBefore)) {
      throw new Violation(`invariant 2: ${n.id} at epoch ${epochBefore} accepted an append of epoch ${ev.msg.epoch}`);
    }
  }

  // ---- clients ----

  private client(): void {
    const r = this.rClient;
    const leaders = this.ids.filter((id) => { const n = this.nodes.get(id)!; return n.up && n.replica!.role === 'leader'; });
    const ups = this.ids.filter((id) => this.nodes.get(id)!.up);
    if (ups.length === 0) return;
    const to = leaders.length > 0 && r.chance(0.95) ? r.pick(leaders) : r.pick(ups);
    const acks: Acks = r.chance(0.7) ? 'all' : 'one';
    const roll = r.float();
    let op: ClientOp;
    let retryOf: number | undefined;
    const retryable = this.opts.retries ? [...this.requests.values()].filter((q) => q.op.kind === 'produce' && q.op.producerId && q.retryOf === undefined
      && (!q.outcome || q.outcome.code === 'OUTCOME_UNKNOWN') && this.now - q.sentAtMs > WRITE_TIMEOUT_MS) : [];
    if (roll < 0.08 && retryable.length > 0) {
      const orig = r.pick(retryable);
      op = orig.op;
      retryOf = orig.id;
    } else if (roll < 0.40) op = { kind: 'kvPut', key: `k${r.int(0, 4)}`, value: `v${++this.valueCounter}` };
    else if (roll < 0.50) op = { kind: 'kvDel', key: `k${r.int(0, 4)}` };
    else if (roll < 0.90) {
      const tp = r.int(0, 1);
      const count = r.int(1, 3);
      const values: string[] = [];
      for (let i = 0; i < count; i++) values.push(`r${++this.valueCounter}`);
      if (r.chance(0.5)) {
        const sq = (this.producerSeq.get(tp) ?? -1) + 1;
        this.producerSeq.set(tp, sq);
        op = { kind: 'produce', tp, values, producerId: 'p1', sequence: sq };
      } else op = { kind: 'produce', tp, values };
    } else {
      const st = this.nodes.get(to)!.replica!.state.streams.get(`${TOPIC}:0`);
      op = { kind: 'commit', tp: 0, offset: r.int(0, st?.end ?? 0) };
    }
    const req: Request = { id: this.nextReq++, op, acks: retryOf !== undefined ? this.requests.get(retryOf)!.acks : acks, node: to, sentAtMs: this.now, retryOf };
    this.requests.set(req.id, req);
    this.stats.requests++;
    this.q.push(this.now + r.int(1, 5), { k: 'req', to, id: req.id });
  }

  private arrive(to: NodeId, id: number): void {
    const n = this.nodes.get(to)!;
    const req = this.requests.get(id)!;
    if (!n.up) { this.log?.(`${to} down: request #${id} lost`); return; }
    let cmd: Command;
    const op = req.op;
    const utf8 = (s: string) => Buffer.from(s);
    switch (op.kind) {
      case 'kvPut': cmd = { op: 'kvPut', ks: 'ks', key: utf8(op.key), value: utf8(op.value) }; break;
      case 'kvDel': cmd = { op: 'kvDel', ks: 'ks', key: utf8(op.key), existed: n.store.get(K.kvKey('ks', utf8(op.key))) !== undefined }; break;
      case 'produce': cmd = { op: 'produce', topicId: TOPIC, tp: op.tp, records: op.values.map((v): WireRecord => [null, utf8(v), null]), producerId: op.producerId, sequence: op.sequence }; break;
      case 'commit': cmd = { op: 'commit', group: 'g', topicId: TOPIC, tp: op.tp, offset: op.offset }; break;
    }
    this.log?.(`${to} ← client #${id}${req.retryOf ? ` (retry of #${req.retryOf})` : ''} ${describeOp(op)} acks=${req.acks}`);
    // worker.ts: the row's bytes as readers see them, for its first unconfirmed write
    const row = rowOf(cmd);
    const prior = row && needsPrior(n.replica!, row) ? n.store.get(row) ?? null : undefined;
    this.run1(n, { type: 'write', id, cmd, acks: req.acks, timeoutMs: WRITE_TIMEOUT_MS, prior });
  }

  private reply(n: SimNode, e: Extract<Effect, { kind: 'reply' }>): void {
    const req = this.requests.get(e.id);
    if (!req) return;
    if (req.outcome) throw new Violation(`request #${e.id} answered twice: first ${JSON.stringify(req.outcome)}, then ${JSON.stringify(e.reply)} by ${n.id}`);
    req.outcome = e.reply.ok ? { ok: true, replicas: e.replicas, res: e.reply.res, atMs: this.now } : { ok: false, code: e.reply.code, atMs: this.now };
    this.log?.(`${n.id} → client #${e.id} ${e.reply.ok ? `ok replicas=${e.replicas} ${JSON.stringify(e.reply.res)}` : `${e.reply.code} ${JSON.stringify(e.reply.args)}`}`);
    if (e.reply.ok) {
      if (req.acks === 'all') this.stats.okAll++; else this.stats.okOne++;
      this.checkHonestAck(req);
    } else if (e.reply.code === 'OUTCOME_UNKNOWN') this.stats.unknown++;
    else this.stats.errors++;
  }

  // ---- the coordinator (etcd + cluster.ts) ----

  private viewFor(id: NodeId): ReplicaView {
    const rec = this.rec;
    // cluster.ts refreshViews: a leader also counts the followers it is adding to the in-sync set
    const joining = rec.leader === id ? [...this.nodes.get(id)!.joining.keys()].filter((n) => !rec.isr.includes(n)) : [];
    return { epoch: toEpoch(rec.epoch), leader: rec.leader, replicas: [...rec.replicas], live: rec.replicas.filter((x) => this.alive(id, x)), copies: this.copies, isr: [...rec.isr, ...joining], version: 0, rev: rec.rev };
  }

  /** x's failure detector on y: registered and heard within SUSPECT_AFTER_MS. */
  private alive(x: NodeId, y: NodeId): boolean {
    if (x === y) return true;
    const ny = this.nodes.get(y)!;
    const l = this.link(y, x);
    if (ny.up && !l.cut) return true;
    const since = Math.max(ny.up ? 0 : ny.downAtMs, l.cut ? l.cutAtMs : 0);
    return this.now - since < SUSPECT_AFTER_MS;
  }

  /** cluster.ts: every CHECK_EVERY_MS each node refreshes views, samples, fails over, keeps the isr. */
  private coordinate(): void {
    // heartbeats carry positions ([seq, incomplete]) to every peer that hears them
    for (const a of this.nodeList) {
      if (!a.up) continue;
      const pos: [number, number] = [a.replica!.state.seq, a.incomplete ? 1 : 0];
      for (const b of this.nodeList) if (b !== a && b.up && !this.link(a.id, b.id).cut) b.heardPos.set(a.id, pos);
    }
    for (const id of this.ids) {
      const n = this.nodes.get(id)!;
      if (!n.up) continue;
      // what n's failure detector says this check: the same for each of its duties
      const inputs = this.placementInputs(n);
      this.pushView(n);
      this.failover(n, inputs);
      this.maintainInSync(n);
      this.handOffLeadership(n, inputs);
      this.control(n, inputs);
    }
  }

  /** cluster.ts control, through the same round (placement.ts controlRound) over this one partition. */
  private control(x: SimNode, inputs: PlacementInputs): void {
    if (!this.opts.single && !this.opts.moves) return; // no placement activity: the regression seeds' schedules
    const rec = this.rec;
    for (const c of controlRound([{ partition: this.placeKey, record: this.record() }], inputs, this.placeCopies(), x.id)) {
      this.propose(x, rec.rev, c.next, `${c.reason}: replicas [${c.next.replicas.join(',')}]`);
    }
  }

  /** A CAS of the record from revision `rev`, which reaches etcd a little later. */
  private propose(x: SimNode, rev: number, next: EtcdRecord, why: string): void {
    this.q.push(this.now + this.rCoord.int(1, 30), { k: 'cas', by: x.id, rev, why, next: { epoch: next.epoch, leader: next.leader, replicas: [...next.replicas], isr: [...next.isr] } });
  }

  /** The record as etcd holds it (cluster.ts's PartitionRecord). */
  private record(rec: Omit<PartitionRecord, 'rev'> = this.rec): EtcdRecord {
    return { epoch: toEpoch(rec.epoch), leader: rec.leader, replicas: rec.replicas, isr: rec.isr };
  }

  /** cluster.ts placementInputs from x's failure detector: the simulator's members all hold their lease. */
  private placementInputs(x: SimNode): PlacementInputs {
    const silent = new Set(this.ids.filter((n) => !this.alive(x.id, n)));
    return { live: this.ids, leaving: [], silent, healthy: this.ids.filter((n) => !silent.has(n)) };
  }

  /** placement's replication factor: 1 (single), else every node holds a copy */
  private placeCopies(): number {
    return this.opts.single ? 1 : this.ids.length;
  }

  private positionOf(x: SimNode, of: NodeId): [number, number] | undefined {
    return of === x.id ? [x.replica!.state.seq, x.incomplete ? 1 : 0] : x.heardPos.get(of);
  }

  /** What node x perceives of the others: decide.ts's input, as cluster.ts builds it. */
  private perception(x: SimNode): Perception {
    return { alive: (n) => this.alive(x.id, n), positionOf: (n) => this.positionOf(x, n) };
  }

  /** cluster.ts failover, through the same decisions (decide.ts shedProposal, failoverProposal). */
  private failover(x: SimNode, inputs: PlacementInputs): void {
    const rec = this.rec;
    const record = this.record();
    const see = this.perception(x);
    const shed = shedProposal(this.placeKey, record, x.id, see, inputs, this.placeCopies());
    if (shed) return this.propose(x, rec.rev, shed.next, `in-sync: -${shed.shed.join(',')} (silent)`);
    const next = failoverProposal(this.placeKey, record, x.id, see, inputs, this.placeCopies());
    if (!next) return;
    x.claim = { epoch: next.epoch, untilMs: this.now + CLAIM_MS }; // cluster.ts: positions.claim
    this.propose(x, rec.rev, next, `${x.id}: leader ${rec.leader} silent`);
  }

  /** cluster.ts maintainInSync, through the same decisions (decide.ts joiningChanges, inSyncChange). */
  private maintainInSync(x: SimNode): void {
    const rec = this.rec;
    const r = x.replica!;
    if (r.role !== 'leader') { x.seqHistory = []; x.joining.clear(); return; }
    recordSeq(x.seqHistory, this.now, r.state.seq, ISR_LAG_MS);
    if (rec.leader !== x.id) return;
    const past = seqAgo(x.seqHistory, this.now, ISR_LAG_MS);
    const see = this.perception(x);
    const record = { ...rec, epoch: toEpoch(rec.epoch) };
    // planted: every follower looks caught up, in the newest view
    const early = this.opts.plant === 'join-early';
    const pos: LeaderPosition = early
      ? { seq: r.state.seq, matched: () => Number.MAX_SAFE_INTEGER, confirmedSeq: r.confirmedSeq, view: Number.MAX_SAFE_INTEGER }
      : { seq: r.state.seq, matched: (n) => r.matched.get(n) ?? -1, confirmedSeq: r.confirmedSeq, view: r.view.version };
    const { add, drop } = joiningChanges(record, pos, x.joining, past, see);
    for (const n of add) x.joining.set(n, Infinity);
    for (const n of drop) x.joining.delete(n);
    if (add.length > 0 || drop.length > 0) this.pushView(x);
    for (const n of add) x.joining.set(n, x.viewVersion);
    const change = inSyncChange(record, x.id, pos, x.joining, past, see);
    if (!change) return;
    this.propose(x, rec.rev, { ...record, isr: change.isr }, `in-sync: +${change.joined.join(',') || '-'} -${change.left.join(',') || '-'}`);
  }

  /** The record placement wants next (placement.ts plannedRecord over the simulator's members; by default, none silent). */
  private planned(record: Omit<PartitionRecord, 'rev'> = this.rec, inputs: PlacementInputs = { live: this.ids, leaving: [], silent: new Set(), healthy: this.ids }): EtcdRecord {
    return plannedRecord(this.placeKey, this.record(record), inputs, this.placeCopies());
  }

  /** What x's worker reads of its replica for a hand-off; the planted bug sees every replica caught up. */
  private leaderSide(x: SimNode): LeaderSide {
    const side = leaderSide(x.replica!);
    return this.opts.plant === 'handoff-laggard' ? { ...side, pending: 0, matched: () => Number.MAX_SAFE_INTEGER } : side;
  }

  /** cluster.ts handOffLeadership, through the same decision (decide.ts handOffTarget) and the worker's hand-off (handoff.ts). */
  private handOffLeadership(x: SimNode, inputs: PlacementInputs): void {
    const rec = this.rec;
    const r = x.replica!;
    if (!this.opts.moves || x.handOff || x.handOffFor || rec.leader !== x.id || r.role !== 'leader') return;
    // planted: the leader believes every replica is in sync and holds everything it has
    const laggard = this.opts.plant === 'handoff-laggard';
    const seen = laggard ? { ...rec, isr: [...rec.replicas] } : rec;
    const side = this.leaderSide(x);
    const next = handOffTarget(this.record(seen), this.planned(seen, inputs), x.id, {
      silent: (n) => inputs.silent.has(n), seq: side.seq, matched: side.matched, failedAtMs: x.handOffFailedAt, nowMs: this.now,
    });
    if (!next) return;
    this.log?.(`${x.id} hands leadership to ${next.leader}: fenced, waits for it to hold seq ${r.state.seq}`);
    x.handOffFor = { rev: rec.rev, next: { epoch: next.epoch, leader: next.leader, replicas: [...next.replicas], isr: [...next.isr] } };
    this.stepHandOff(x, { type: 'start', to: next.leader, nowMs: this.now, waitMs: HAND_OFF_WAIT_MS, fenceMs: HAND_OFF_FENCE_MS, leader: side });
  }

  /** worker.ts stepHandOff: runs handoff.ts and applies its effects. */
  private stepHandOff(x: SimNode, m: HandOffInput): void {
    const { state, effects } = handOffStep(x.handOff, m);
    x.handOff = state;
    for (const e of effects) {
      if (e.kind === 'fence') this.run1(x, { type: 'fence', to: e.to, untilMs: e.untilMs });
      else if (e.kind === 'unfence') this.run1(x, { type: 'unfence' });
      else if (e.kind === 'ready') {
        const f = x.handOffFor!;
        this.log?.(`${x.id} hand-off to ${f.next.leader} ready`);
        // cluster.ts: the record change only if the record is still the one the hand-off began from
        if (f.rev !== this.rec.rev) { this.releaseHandOff(x); continue; }
        this.q.push(this.now + this.rCoord.int(1, 30), { k: 'cas', by: x.id, rev: f.rev, why: `placement: leadership handed to ${f.next.leader}`, next: f.next, handOff: true });
      } else {
        this.log?.(`${x.id} hand-off to ${x.handOffFor?.next.leader} failed: ${e.why}`);
        if (e.why === 'timed-out') x.handOffFailedAt = this.now;
        x.handOffFor = undefined;
      }
    }
  }

  /** cluster.ts: the change a hand-off was for did not happen (positions.release) */
  private releaseHandOff(x: SimNode): void {
    x.handOffFor = undefined;
    this.stepHandOff(x, { type: 'release' });
  }

  private pushView(n: SimNode): void {
    const view = this.viewFor(n.id);
    if (n.lastView && sameView(n.lastView, view)) return; // cluster.ts refreshViews: a new record revision alone sends no new view
    n.lastView = view;
    view.version = ++n.viewVersion;
    const late = this.rCoord.chance(0.1);
    // A node's views can arrive late, but in order: the real coordinator posts them to the worker.
    const at = Math.max(this.now + (late ? this.rCoord.int(100, 800) : this.rCoord.int(1, 20)), n.lastViewAt);
    n.lastViewAt = at;
    this.q.push(at, { k: 'view', to: n.id, inc: n.inc, view });
  }

  private cas(ev: Extract<Ev, { k: 'cas' }>): void {
    const by = this.nodes.get(ev.by)!;
    if (!by.up || ev.rev !== this.rec.rev) {
      this.stats.casLost++;
      if (ev.handOff && by.up && by.handOffFor) this.releaseHandOff(by);
      return;
    }
    if (ev.handOff) by.handOffFor = undefined;
    const before = this.rec;
    this.rec = { ...ev.next, rev: before.rev + 1 };
    if (ev.handOff) this.stats.handOffs++;
    else if (before.replicas.join() !== this.rec.replicas.join()) this.stats.moves++;
    else if (before.epoch !== this.rec.epoch) this.stats.failovers++; else this.stats.isrChanges++;
    this.log?.(`coordinator: ${ev.why} → e${this.rec.epoch} leader=${this.rec.leader} isr=[${this.rec.isr.join(',')}]`);
    if (this.rec.epoch < before.epoch) throw new Violation('coordinator epoch went back');
    for (const n of this.nodeList) if (n.up) this.pushView(n);
  }

  // ---- the nemesis ----

  private fault(): void {
    const r = this.rFault;
    const roll = r.float();
    const up = this.ids.filter((id) => this.nodes.get(id)!.up);
    const down = this.ids.filter((id) => !this.nodes.get(id)!.up);
    if (roll < 0.20 && up.length > 1) {
      // single: often the replica a move is about to drop, so it comes back with a stale copy
      const target = this.opts.single ? replicasFor(this.placeKey, this.ids, 1) : this.ids;
      const leaving = this.rec.replicas.filter((x) => !target.includes(x) && this.nodes.get(x)!.up);
      const victim = leaving.length > 0 && r.chance(0.5) ? leaving[0] : r.chance(0.6) && this.nodes.get(this.rec.leader)!.up ? this.rec.leader : r.pick(up);
      this.crash(this.nodes.get(victim)!);
      this.q.push(this.now + r.int(100, 2000), { k: 'restart', node: victim });
    } else if (roll < 0.30 && down.length > 0) {
      this.restart(this.nodes.get(r.pick(down))!);
    } else if (roll < 0.45) {
      // a partition: one side against the other (both directions)
      const side = new Set(this.ids.filter(() => r.chance(0.5)));
      if (side.size === 0 || side.size === this.ids.length) return;
      for (const a of this.ids) for (const b of this.ids) if (a !== b && side.has(a) !== side.has(b)) this.cut(a, b);
      this.log?.(`nemesis: partition [${[...side].join(',')}] | [${this.ids.filter((x) => !side.has(x)).join(',')}]`);
    } else if (roll < 0.55) {
      const a = r.pick(this.ids);
      const b = r.pick(this.ids.filter((x) => x !== a));
      this.cut(a, b);
      if (r.chance(0.5)) this.cut(b, a);
      this.log?.(`nemesis: cut ${a}→${b}`);
    } else if (roll < 0.72) {
      this.healLinks();
      this.log?.('nemesis: links heal');
    } else if (roll < 0.90) {
      const a = r.pick(this.ids);
      const b = r.pick(this.ids.filter((x) => x !== a));
      const l = this.link(a, b);
      l.loss = r.pick([0, 0, 0.05, 0.2, 0.5]);
      l.delayMs = r.pick([1, 2, 5, 20, 80]);
      l.jitterMs = r.pick([0, 5, 30, 150]);
      this.log?.(`nemesis: link ${a}→${b} loss=${l.loss} delay=${l.delayMs}+${l.jitterMs}`);
    }
  }

  private cut(a: NodeId, b: NodeId): void {
    const l = this.link(a, b);
    if (!l.cut) { l.cut = true; l.cutAtMs = this.now; }
  }

  private crash(n: SimNode): void {
    this.stats.crashes++;
    n.up = false;
    n.inc++;
    n.downAtMs = this.now;
    n.replica = undefined;
    n.snapshots = new Map();
    n.installing = undefined;
    n.claim = undefined;
    n.comparison = {};
    n.handOff = undefined;
    n.handOffFor = undefined;
    n.lastView = undefined;
    n.seqHistory = [];
    for (const id of this.ids) if (id !== n.id) this.link(n.id, id).held = []; // its peer queues die with it
    this.log?.(`nemesis: crash ${n.id}`);
  }

  private restart(n: SimNode): void {
    if (n.up) return;
    this.stats.restarts++;
    n.up = true;
    this.open(n);
    if (!this.rec.replicas.includes(n.id) && n.replica!.state.seq > 0) this.stats.staleReturns++; // dropped while it was down
    this.log?.(`${n.id} restarts: seq ${n.replica!.state.seq} e${n.replica!.state.epoch} role ${n.replica!.role}`);
  }

  // ---- the checker ----

  /**
   * invariant 8 (no silent gap): an append's entries follow its prevSeq without a hole, so a
   * follower never takes a log with one (a leader whose log has a gap there sends a full copy)
   */
  private checkContiguous(from: NodeId, to: NodeId, m: Extract<PeerMessage, { t: 'append' }>): void {
    m.entries.forEach((e, i) => {
      if (e.seq !== m.prevSeq + 1 + i) throw new Violation(`invariant 8: ${from} sent ${to} an append after seq ${m.prevSeq} whose entry ${i} is seq ${e.seq}: a hole in the log it resends`);
    });
  }

  /** invariant 3 (log matching): one (seq, epoch) names one entry on every replica */
  private checkLogEntry(node: NodeId, key: Buffer, value: Buffer): void {
    // bytes that passed at this key pass again (`entries` only grows): most are the same entry on each replica
    const s = K.seqOfLogKey(key);
    const passed = this.passedEntries.get(s);
    if (passed?.some((b) => b.equals(value))) return;
    const e = decodeEntry(value);
    if (e.seq !== s) throw new Violation(`invariant 3: ${node} stores entry seq ${e.seq} under log key ${s}`);
    const id = `${s}/${e.epoch}`;
    const prev = this.entries.get(id);
    if (prev === undefined) this.entries.set(id, Buffer.from(value)); // a copy: the checker's record must not follow the store's buffer
    else if (!prev.equals(value)) throw new Violation(`invariant 3: ${node} holds a different entry at seq ${s} epoch ${e.epoch}: ${describeEntry(e)} vs ${describeEntry(decodeEntry(prev))}`);
    const kept = this.entries.get(id)!;
    if (passed) passed.push(kept); else this.passedEntries.set(s, [kept]);
  }

  private checkStep(): void {
    for (const n of this.nodeList) {
      if (!n.up) continue;
      const r = n.replica!;
      const e = r.state.epoch;
      // 1. one leader per epoch
      if (r.role === 'leader') {
        const prev = this.epochLeader.get(e);
        if (prev === undefined) this.epochLeader.set(e, n.id);
        else if (prev !== n.id) throw new Violation(`invariant 1: ${n.id} and ${prev} both lead epoch ${e}`);
      }
      // 2. epochs never decrease (across restarts too: the epoch is in the durable meta)
      if (e < n.maxEpoch) throw new Violation(`invariant 2: ${n.id}'s epoch went from ${n.maxEpoch} back to ${e}`);
      n.maxEpoch = e;
      const dirty = this.opts.plant === 'read-applied';
      if (canServeReads(dirty ? { ...r, readBarrier: 0 } : r, this.now)) this.checkShown(n, dirty ? r.state.seq : r.confirmedSeq);
    }
    for (const id of this.touched) {
      const n = this.nodes.get(id)!;
      if (n.up && !n.installing) this.checkReplica(n);
    }
    this.checkSameHistorySameState();
  }

  /**
   * invariant 6 (no dirty reads): what one leader let readers see (up to its watermark), every
   * later leader that answers reads holds, entry for entry.
   */
  private checkShown(n: SimNode, visibleSeq: number): void {
    const r = n.replica!;
    if (r.state.seq < this.shownSeq) {
      throw new Violation(`invariant 6: ${n.id} answers reads at seq ${r.state.seq}, but readers were shown seq ${this.shownSeq}`);
    }
    const top = this.shown.get(this.shownSeq);
    const now = top ? n.store.logEntry(this.shownSeq) : undefined;
    if (top && now && !now.equals(top)) {
      throw new Violation(`invariant 6: ${n.id} answers reads with a different entry at seq ${this.shownSeq} than readers were shown`);
    }
    for (let seq = this.shownSeq + 1; seq <= visibleSeq; seq++) {
      const e = n.store.logEntry(seq);
      this.shown.set(seq, e ? Buffer.from(e) : null);
    }
    this.shownSeq = Math.max(this.shownSeq, visibleSeq);
  }

  /** memory agrees with disk (a crash now restores the same replica), and streams are gap-free */
  private checkReplica(n: SimNode): void {
    const s = n.replica!.state;
    const meta = n.store.meta();
    if (meta && (meta.seq !== s.seq || (this.opts.strictRecovery ? meta.epoch !== s.epoch : meta.epoch > s.epoch))) {
      throw new Violation(`recovery: ${n.id} has seq ${s.seq} e${s.epoch} in memory but seq ${meta.seq} e${meta.epoch} on disk`);
    }
    if (!meta && s.seq !== 0) throw new Violation(`recovery: ${n.id} has seq ${s.seq} in memory and no meta on disk`);
    if (s.seq > 0 && !n.store.logEntry(s.seq)) throw new Violation(`invariant 3: ${n.id} at seq ${s.seq} has no log entry for it`);
    // seq 0 is the empty history: state kept beside it would sit under the entries replayed from seq 1
    if (s.seq === 0 && !n.tainted && (this.digestOf(n) !== EMPTY_DIGEST || s.streams.size > 0 || s.producers.size > 0)) {
      throw new Violation(`recovery: ${n.id} is at seq 0 but holds state (streams, producers or keys)`);
    }
    // the walk below reads the stream and batch keys and the streams in memory: unchanged, it passes again
    let streams = `${n.store.kindVersion(K.Kind.stream)}/${n.store.kindVersion(K.Kind.batch)}`;
    for (const st of s.streams.values()) streams += `/${st.topicId}:${st.tp}:${st.start}:${st.end}`;
    if (streams === n.streamsChecked) return;
    n.batchWalks ??= new Map();
    for (const st of s.streams.values()) {
      const skey = `${st.topicId}:${st.tp}`;
      let prev = n.batchWalks.get(skey);
      if (!prev) {
        prev = { streamKey: K.streamKey(st.topicId, st.tp), range: K.batchRange(st.topicId, st.tp), stored: undefined, end: -1, changes: -1, start: -1, at: 0, last: undefined };
        n.batchWalks.set(skey, prev);
      }
      const stored = n.store.get(prev.streamKey);
      const edits = n.store.batchEditsOf(prev.range);
      // what this stream's check reads is unchanged since it passed (values are never changed in place): it passes again
      if (stored !== undefined && stored === prev.stored && edits.changes === prev.changes && st.start === prev.start && st.end === prev.end) continue;
      const disk = stored ? diskCodec.decode<{ start: number; end: number }>(stored) : undefined;
      if (!disk || disk.start !== st.start || disk.end !== st.end) throw new Violation(`recovery: ${n.id} stream ${st.topicId}:${st.tp} is [${st.start},${st.end}) in memory, ${JSON.stringify(disk)} on disk`);
      // a walk that found no gap goes on from where it ended while the batches were only appended to
      const resume = prev.start === st.start && edits.rewrittenAt <= prev.changes;
      let at = resume ? prev.at : st.start;
      let last = resume ? prev.last : undefined;
      for (const [hexKey, k, v] of n.store.entriesAfter(prev.range, last)) {
        const base = K.baseOffsetOfBatchKey(k);
        if (base !== at) throw new Violation(`invariant 3: ${n.id} stream ${st.topicId}:${st.tp} has a gap or overlap: batch at ${base}, expected ${at}`);
        at += this.recordsIn(v);
        last = hexKey;
      }
      if (at !== st.end) throw new Violation(`invariant 3: ${n.id} stream ${st.topicId}:${st.tp} batches end at ${at}, stream end ${st.end}`);
      Object.assign(prev, { stored, end: st.end, changes: edits.changes, start: st.start, at, last });
    }
    n.streamsChecked = streams;
  }

  /**
   * A stored batch's record count, decoded once per stored value (the checker walks every batch
   * often). Kept by the run, not in a WeakMap: ephemeron tables made the garbage collector work
   * on every batch of every seed.
   */
  private recordsIn(v: Buffer): number {
    let n = this.batchRecords.get(v);
    if (n === undefined) { n = decodeStoredBatch(v).r.length; this.batchRecords.set(v, n); }
    return n;
  }

  private readonly batchRecords = new Map<Buffer, number>();

  private digestOf(n: SimNode): string {
    n.digest ??= n.store.digest();
    return n.digest;
  }

  /** invariant 3: replicas at the same position of the same history hold the same state */
  private checkSameHistorySameState(): void {
    if (this.touched.size === 0) return;
    // a position: a seq and the bytes of its log entry (null: none, or seq 0)
    const byPos: Array<{ seq: number; last: Buffer | null; nodes: SimNode[] }> = [];
    for (const n of this.nodeList) {
      if (!n.up || n.installing || n.tainted) continue;
      const seq = n.replica!.state.seq;
      const last = seq > 0 ? n.store.logEntry(seq) ?? null : null;
      const g = byPos.find((p) => p.seq === seq && (p.last === null ? last === null : last !== null && p.last.equals(last)));
      if (g) g.nodes.push(n); else byPos.push({ seq, last, nodes: [n] });
    }
    for (const { nodes: g } of byPos) {
      if (g.length < 2 || !g.some((n) => this.touched.has(n.id))) continue;
      const d0 = this.digestOf(g[0]);
      for (const n of g.slice(1)) {
        if (this.digestOf(n) !== d0) throw new Violation(`invariant 3: ${g[0].id} and ${n.id} are both at seq ${g[0].replica!.state.seq} of the same history but their state differs`);
      }
    }
  }

  /**
   * nodes whose store holds exactly this log entry, in its log or among its hinted entries
   * (crashed nodes count: their store is durable), and nodes that held it when a move dropped
   * their copy: an ack they sent before is counted by a leader whose view still lists them
   */
  private holdersOfEntry(seq: number, bytes: Buffer): NodeId[] {
    return this.ids.filter((id) => {
      const n = this.nodes.get(id)!;
      if (n.store.logEntry(seq)?.equals(bytes) || asLogged(n.store.get(K.hintKey(seq)))?.equals(bytes)) return true;
      // a leader whose view still has this replica counts what it acked or held as hints before
      // a move dropped its copy; once the record has it back, only its new copy counts
      const gone = !this.rec.replicas.includes(id) && n.dropped?.get(seq)?.equals(bytes) === true;
      if (gone) this.stats.droppedCounted++;
      return gone;
    });
  }

  /** the entries n holds, logged or as hints, in their logged form: what its acks and hint reports vouched for */
  private heldEntries(n: SimNode): Map<number, Buffer> {
    const held = n.store.history(n.replica!.state.seq);
    for (const [k, v] of n.store.range(K.hintEntriesRange)) held.set(K.seqOfLogKey(Buffer.from(k, 'hex')), asLogged(v)!); // same key layout as the log's
    return held;
  }

  private holdersOfBatch(tp: number, base: number, values: string[]): NodeId[] {
    return this.ids.filter((id) => {
      const n = this.nodes.get(id)!;
      if (this.holdsBatch(n.store.get(K.batchKey(TOPIC, tp, base)), values)) return true;
      // as holdersOfEntry: a leader whose view still has a replica a move dropped counts what it held
      const gone = !this.rec.replicas.includes(id) && this.holdsBatch(n.droppedBatches?.get(K.batchKey(TOPIC, tp, base).toString('hex')), values);
      if (gone) this.stats.droppedCounted++;
      return gone;
    });
  }

  private holdsBatch(b: Buffer | undefined, values: string[]): boolean {
    if (!b) return false;
    const got = decodeStoredBatch(b).r.map((x) => Buffer.from(x[1]).toString());
    return got.length === values.length && got.every((v, i) => v === values[i]);
  }

  /** invariant 4, at answer time: the replica count is honest and acks=all has its copies */
  private checkHonestAck(req: Request): void {
    const o = req.outcome!;
    const claimed = o.replicas ?? 0;
    if (req.acks === 'all' && claimed < this.copies) {
      throw new Violation(`invariant 4: #${req.id} ${describeOp(req.op)} acks=all answered ok with replicas=${claimed} < N=${this.copies}${req.retryOf ? ` (a retry of #${req.retryOf})` : ''}`);
    }
    let holders: NodeId[] | undefined;
    if (req.entry) holders = this.holdersOfEntry(req.entry.seq, req.entry.bytes);
    else if (req.op.kind === 'produce') {
      const res = o.res as { base: number; count: number };
      if (res.count > 0) holders = this.holdersOfBatch(req.op.tp, res.base, req.op.values);
    }
    if (holders && holders.length < claimed) {
      throw new Violation(`invariant 4: #${req.id} ${describeOp(req.op)} answered ok replicas=${claimed} but only [${holders.join(',')}] hold it`);
    }
    if (req.entry && this.ids.some((id) => asLogged(this.nodes.get(id)!.store.get(K.hintKey(req.entry!.seq)))?.equals(req.entry!.bytes))) this.stats.hinted++;
  }

  // ---- quiescence ----

  /** the nodes that hold the partition (single: a dropped node's stale copy is no copy of it) */
  private holding(): SimNode[] {
    return this.nodeList.filter((n) => !this.opts.single || this.rec.replicas.includes(n.id));
  }

  private converged(): boolean {
    if (!this.nodeList.every((n) => n.up && n.snapshots.size === 0)) return false;
    const ns = this.holding();
    if (!ns.every((n) => !n.incomplete)) return false;
    if (this.rec.isr.length !== this.rec.replicas.length) return false;
    if (this.opts.single) {
      const p = this.planned();
      if (p.leader !== this.rec.leader || p.replicas.join() !== this.rec.replicas.join()) return false; // the move ends
    }
    const leader = this.nodes.get(this.rec.leader)!;
    if (leader.replica!.role !== 'leader' || leader.replica!.state.epoch !== this.rec.epoch) return false;
    const s0 = leader.replica!.state.seq;
    if (!ns.every((n) => n.replica!.state.seq === s0 && n.replica!.state.epoch === this.rec.epoch)) return false;
    const d0 = this.digestOf(leader);
    return ns.every((n) => this.digestOf(n) === d0);
  }

  /** invariants 4 and 5 after quiescence */
  private finalCheck(): void {
    const ns = this.holding();
    const leader = this.nodes.get(this.rec.leader)!;
    // 5. identical seq, state-machine keys and in-memory state
    // map order is not state (streams), and producer LRU order differs after a reload (note N1)
    const mem = (n: SimNode) => JSON.stringify({ seq: n.replica!.state.seq, streams: [...n.replica!.state.streams].sort(), producers: [...n.replica!.state.producers].sort() });
    const leaderMem = mem(leader);
    for (const n of ns) {
      if (this.digestOf(n) !== this.digestOf(leader)) throw new Violation(`invariant 5: ${n.id} digest differs from leader ${leader.id}`);
      if (mem(n) !== leaderMem) throw new Violation(`invariant 5: ${n.id} in-memory state differs from leader ${leader.id}: ${mem(n)} vs ${leaderMem}`);
      for (let s = 1; s <= n.replica!.state.seq; s++) {
        const a = n.store.logEntry(s);
        const b = leader.store.logEntry(s);
        if (!a || !b || !a.equals(b)) throw new Violation(`invariant 3: after quiescence ${n.id} and ${leader.id} differ at seq ${s}`);
      }
    }
    // 4. no acks=all write is lost, nor one its leader confirmed alone (N = 1: a move must keep them)
    for (const req of this.requests.values()) {
      const o = req.outcome;
      if (!o?.ok || (req.acks !== 'all' && !req.sole)) continue;
      for (const n of ns) this.checkDurable(req, n);
    }
    this.checkOnce(leader);
    // 7. a write refused outright (an error other than OUTCOME_UNKNOWN, which a client retries as
    // not done) left no entry in the history
    for (const req of this.requests.values()) {
      const o = req.outcome;
      if (!o || o.ok || o.code === 'OUTCOME_UNKNOWN' || !req.entry) continue;
      this.stats.refusedChecked++; // refused writes with an entry, checked against the history
      if (leader.store.logEntry(req.entry.seq)?.equals(req.entry.bytes)) {
        throw new Violation(`invariant 7: #${req.id} ${describeOp(req.op)} was answered ${o.code} at ${o.atMs} ms, but its entry seq ${req.entry.seq} epoch ${decodeEntry(req.entry.bytes).epoch} is in the history`);
      }
    }
  }

  /**
   * invariant 9 (no write twice): every value a client writes is unique, so the history holds each
   * put's at most once and the streams each produced record at most once (a retry deduplicated,
   * an entry never applied twice across a move or a catch-up)
   */
  private checkOnce(leader: SimNode): void {
    const seen = new Map<string, string>();
    const once = (v: string, where: string) => {
      const prev = seen.get(v);
      if (prev !== undefined) throw new Violation(`invariant 9: ${leader.id} holds ${v} twice: ${prev} and ${where}`);
      seen.set(v, where);
    };
    for (const e of this.finalLog(leader)) if (e.cmd.op === 'kvPut') once(Buffer.from(e.cmd.value).toString(), `seq ${e.seq}`);
    for (const st of leader.replica!.state.streams.values()) {
      for (const [k, b] of leader.store.range(K.batchRange(st.topicId, st.tp))) {
        for (const x of decodeStoredBatch(b).r) once(Buffer.from(x[1]).toString(), `stream ${st.topicId}:${st.tp} batch ${k.slice(-16)}`);
      }
    }
  }

  private checkDurable(req: Request, n: SimNode): void {
    const lost = (why: string) => new Violation(`invariant 4: acked write #${req.id} ${describeOp(req.op)} (acks=${req.acks}, ok replicas=${req.outcome!.replicas} at ${req.outcome!.atMs} ms) is lost on ${n.id}: ${why}`);
    if (req.entry) {
      const got = n.store.logEntry(req.entry.seq);
      if (!got?.equals(req.entry.bytes)) throw lost(`seq ${req.entry.seq} holds ${got ? describeEntry(decodeEntry(got)) : 'nothing'}`);
    }
    const op = req.op;
    if (op.kind === 'kvPut') {
      const version = (req.outcome!.res as { version: number }).version;
      const cur = n.store.get(K.kvKey('ks', Buffer.from(op.key)));
      if (cur) {
        const v = decodeKvValue(cur);
        if (v.version < version) throw lost(`key ${op.key} is at version ${v.version} < ${version}`);
        if (v.version === version && v.value.toString() !== op.value) throw lost(`key ${op.key} version ${version} holds ${v.value.toString()}`);
      } else {
        const laterDel = this.finalLog(n).some((e) => e.seq > version && e.cmd.op === 'kvDel' && Buffer.from(e.cmd.key).toString() === op.key);
        if (!laterDel) throw lost(`key ${op.key} is absent and no later delete explains it`);
      }
    } else if (op.kind === 'produce') {
      const res = req.outcome!.res as { base: number; count: number };
      if (res.count > 0 && !this.holdsBatch(n.store.get(K.batchKey(TOPIC, op.tp, res.base)), op.values)) throw lost(`no batch [${op.values}] at offset ${res.base}`);
    }
  }

  /** the entries a node's history holds, decoded once: after quiescence nothing changes them */
  private finalLog(n: SimNode): Entry[] {
    let log = this.finalLogs.get(n);
    if (!log) {
      log = [...n.store.history(n.replica!.state.seq).values()].map((v) => decodeEntry(v));
      this.finalLogs.set(n, log);
    }
    return log;
  }

  private readonly finalLogs = new Map<SimNode, Entry[]>();

  // ---- tracing ----

  status(): string {
    const lines = [`coordinator: e${this.rec.epoch} leader=${this.rec.leader} isr=[${this.rec.isr.join(',')}] rev=${this.rec.rev}`];
    for (const n of this.nodeList) {
      const r = n.replica;
      lines.push(`  ${n.id}: ${n.up ? `${r!.role} e${r!.state.epoch} seq=${r!.state.seq} view e${r!.view.epoch}/${r!.view.leader} epochs=${JSON.stringify(r!.state.epochs)} isr=[${r!.view.isr.join(",")}] joining=[${[...n.joining.keys()].join(",")}] confirmed=${r!.confirmedSeq} matched=${JSON.stringify([...r!.matched])} pending=${r!.pending.length} digest=${this.digestOf(n).slice(0, 8)}` : 'down'}`);
    }
    return lines.join('\n');
  }
}

function describeOp(op: ClientOp): string {
  switch (op.kind) {
    case 'kvPut': return `put ${op.key}=${op.value}`;
    case 'kvDel': return `del ${op.key}`;
    case 'produce': return `produce tp${op.tp} [${op.values.join(',')}]${op.producerId ? ` ${op.producerId}#${op.sequence}` : ''}`;
    case 'commit': return `commit tp${op.tp}@${op.offset}`;
  }
}


/** A hinted entry as the log stores it once applied: a produce's batch named, not carried. */
function asLogged(hint: Buffer | undefined): Buffer | undefined {
  return hint && carriesBatch(hint) ? encodeLogEntry(decodeEntry(hint)) : hint;
}

/** an entry's trace text, made once per entry object: a leader sends the same entry to each follower */
const described = new WeakMap<Entry, string>();

function describeEntry(e: Entry): string {
  let d = described.get(e);
  if (d === undefined) { d = describeEntryNow(e); described.set(e, d); }
  return d;
}

function describeEntryNow(e: Entry): string {
  const c = e.cmd;
  const body = c.op === 'kvPut' ? `put ${Buffer.from(c.key).toString()}=${Buffer.from(c.value).toString()}`
    : c.op === 'kvDel' ? `del ${Buffer.from(c.key).toString()}`
      : c.op === 'produce' ? `produce tp${c.tp} [${c.records || c.batch ? (c.records ?? decodeBatch(c.batch!).records).map((x) => Buffer.from(x[1]).toString()).join(',') : 'its stored batch'}]`
        : c.op === 'commit' ? `commit tp${c.tp}@${c.offset}` : c.op;
  return `${e.seq}@e${e.epoch} ${body}`;
}

function describe(m: PeerMessage): string {
  switch (m.t) {
    case 'append': return `append e${m.epoch} from ${m.leader} prev=${m.prevSeq}@e${m.prevEpoch} [${m.entries.map(describeEntry).join('; ')}]`;
    case 'ack': return `ack e${m.epoch} from ${m.from} seq=${m.seq}`;
    case 'nack': return `nack e${m.epoch} from ${m.from} seq=${m.seq} ${m.reason}`;
  }
}

/** Every option that changes a run, as the environment test/sim.test.ts replays a seed from. */
function replayCommand(o: SimOptions): string {
  const env = [`SIM_SEED=${o.seed}`, `SIM_STEPS=${o.steps}`];
  if (o.nodes !== undefined) env.push(`SIM_NODES=${o.nodes}`);
  if (o.copies !== undefined) env.push(`SIM_COPIES=${o.copies}`);
  if (o.retries) env.push('SIM_RETRIES=1');
  if (o.strictRecovery) env.push('SIM_STRICT=1');
  if (o.quiesceMs !== undefined) env.push(`SIM_QUIESCE_MS=${o.quiesceMs}`);
  if (o.plant) env.push(`SIM_PLANT=${o.plant}`);
  if (o.single) env.push('SIM_SINGLE=1');
  if (o.moves === false) env.push('SIM_MOVES=0');
  if (o.antiEntropy === false) env.push('SIM_ANTI_ENTROPY=0');
  return `${env.join(' ')} npx vitest run test/sim.test.ts`;
}

export function runSeed(opts: SimOptions): SimResult {
  const r = new Sim(opts).run();
  if (r.ok || opts.fullTrace) return r;
  // an untraced run formats no trace (most of a run's time went there): the seed replays, traced,
  // for the events before its violation
  const traced = new Sim({ ...opts, fullTrace: true }).run();
  const keep = opts.traceKeep ?? TRACE_KEEP;
  const same = traced.violation === r.violation && traced.step === r.step;
  const trace = [...(same ? [] : [`(the traced replay ended otherwise, at step ${traced.step}: ${traced.violation ?? 'ok'})`]), ...traced.trace.slice(-keep)];
  return { ...r, trace, traceHash: traced.traceHash };
}

export function formatFailure(r: SimResult): string {
  return [
    `seed ${r.seed} FAILED at step ${r.step} (sim ${r.simMs} ms) [${r.config}]`,
    r.violation ?? '',
    `replay: ${r.replay}`,
    `--- last ${r.trace.length} events ---`,
    ...r.trace,
  ].join('\n');
}

export function hashOf(s: string): string { return createHash('sha1').update(s).digest('hex').slice(0, 12); }

/**
 * A store whose log looks gap-free to catch-up after its first entry (planted bug `resend-gap`):
 * catch-up then checks only that the log starts where the follower is, and resends across a gap
 * further on.
 */
function gapBlind(store: MemStore): Storage {
  return {
    get: (key) => store.get(key),
    clear: (range) => store.clear(range),
    *iterate(range) {
      if (range.gte[0] !== K.Kind.log) { yield* store.iterate(range); return; }
      let seq: number | undefined;
      for (const [k, v] of store.iterate(range)) {
        seq = seq === undefined ? K.seqOfLogKey(k) : seq + 1;
        yield [K.logKey(seq), v];
      }
    },
  };
}
