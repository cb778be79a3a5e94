// A node's part in the cluster: it registers in etcd, mirrors the partition table and the topic
// catalog, turns them into the views its replicas follow, and takes the actions the design
// assigns (docs/cluster.md):
// - failover: an in-sync follower whose leader went silent proposes itself with epoch + 1 (CAS);
// - in-sync sets: a leader adds followers that caught up;
// - placement: the controller (the lowest live node id) moves replica sets toward rendezvous
//   placement over the live nodes, a few partitions at a time.
// A pause shorter than the lease only moves leadership, never data.
import type { RocksLevel } from '@nxtedition/rocksdb';
import type { Config } from '../runtime/config.js';
import type { Logger } from '../runtime/log.js';
import { ChicagoError } from '../runtime/errors.js';
import { epoch as toEpoch, nodeId as toNodeId, type NodeId } from '../runtime/ids.js';
import { READ_LEASE_MS, type ReplicaView } from '../actors/replica.js';
import type { ClusterNodeInfo, Coordinator, RebalanceProgress, TopicCatalogApi } from './coordinator.js';
import { Coordination } from './etcd.js';
import { Membership, nodesIn, type MembershipView } from './membership.js';
import { PartitionTable, type PartitionEntry } from './partition-table.js';
import { controlRound, plannedRecord, type PlacementInputs } from './placement.js';
import { TopicCatalog } from './topic-catalog.js';
import type { PartitionRecord } from './layout.js';
import { failoverProposal, handOffTarget, inSyncChange, joiningChanges, recordSeq, sameView, seqAgo, shedProposal, HAND_OFF_FENCE_MS, HAND_OFF_WAIT_MS, ISR_LAG_MS, type LeaderPosition, type Perception } from './decide.js';
import type { ClusterConnection } from './hooks.js';
import { HEARTBEAT_MS, type PeerNetwork } from './peer.js';
import { gatewayHops } from '../actors/threads.js';
import { AlignedInterval } from '../runtime/aligned-timer.js';
import type { LoopDelay } from '../runtime/loop-delay.js';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../runtime/config.js';
import { limits } from '../runtime/limits.js';

/** A peer silent for this long is suspected; its partitions fail over. */
export const SUSPECT_AFTER_MS = 300;
/**
 * A silent peer whose address refuses connections (its process is gone, as after kill -9) is
 * suspected sooner: once the read lease of a leader it may have been (READ_LEASE_MS, which the
 * silence also ends) has surely run out, so no stale read can overlap the failover even where a
 * firewall rejects rather than drops.
 */
export const GONE_SUSPECT_AFTER_MS = READ_LEASE_MS + 25;
// A suspected replica gets a stand-in (sloppy quorum): acks=all writes keep N copies within the
// failover budget. A stand-in is a temporary extra copy, never a change of the partition's home:
// the silent replica keeps its data and place, and the stand-in leaves once it is back in sync.
// So a pause costs one copy per partition, throttled, not a rebalance.
/** the checks send this node's heartbeat too (peer.ts HEARTBEAT_MS) */
const CHECK_EVERY_MS = HEARTBEAT_MS;
/**
 * a silent leader is noticed within SUSPECT_AFTER_MS + this: failover runs on every check, and
 * between checks at the moment a member's silence could make it suspected, then this often while
 * one is silent that long (an idle cluster whose members all speak wakes for no extra check)
 */
const FAILOVER_CHECK_MS = 25;
/**
 * Checks that run this much later than due mean this node itself stalled (a busy machine, a long
 * GC): what its peers sent meanwhile waits unread in its sockets, since timers run before I/O is
 * read. Their silence is then counted only from when it can listen again. Checks come at least
 * every CHECK_EVERY_MS, so a stall that could pass for a peer's silence (SUSPECT_AFTER_MS less a
 * heartbeat) makes some check this late.
 */
const SELF_STALL_MS = 100;
/** how long a starting node keeps trying to reach etcd */
const STARTUP_RETRY_MS = 30_000;
/**
 * Timers run by the event loop's clock, silence is measured by Date.now(): a timer set for the
 * moment a silence reaches its bar can run a millisecond short of it, and would look again only a
 * FAILOVER_CHECK_MS later.
 */
const CLOCK_SLACK_MS = 2;
/** a multiple of CHECK_EVERY_MS */
const CONTROLLER_EVERY_MS = 200;
export interface ReplicaPosition {
  seq: number; role: string; incomplete: boolean; matched: Record<string, number>;
  /** the in-sync set the replica counts now, and the highest seq it confirmed to acks=all writers */
  isr: string[]; confirmedSeq: number;
  /** the version of the view it holds: every decision in a view up to this one has reached it */
  view: number;
}
export interface ReplicaPositions {
  /** every replica this node hosts: its seq, role, whether its copy is incomplete, and (leaders) each follower's acked seq */
  get(): Promise<Map<number, ReplicaPosition>>;
  /**
   * This node is about to propose its replica of `p` to lead `epoch`: the replica refuses copies
   * from older epochs meanwhile (one would wipe it between this check and its new view). False if
   * its copy is incomplete: not electable.
   */
  claim(p: number, epoch: number): Promise<boolean>;
  /** WorkerControl.handOff: refuse writes to `p` until `to` holds all of them and none is pending (true, within `waitMs`) and the record changes */
  handOff(p: number, to: NodeId, waitMs: number, fenceMs: number): Promise<boolean>;
  /** WorkerControl.release: the change a hand-off was for did not happen */
  release(p: number): Promise<void>;
}


export async function connectCluster(config: Config, log: Logger): Promise<ClusterConnection> {
  const coord = new Coordination({ endpoints: config.etcd, tls: etcdTls(config) });
  const table = new PartitionTable(coord);
  const meta = await untilReachable(log, 'cluster metadata', () => table.ensureMeta(config.partitions));
  const topics = new TopicCatalog(coord);
  await untilReachable(log, 'topic catalog', () => topics.start());
  const catalog: TopicCatalogApi = topics;
  log.info({ etcd: config.etcd, partitions: meta.partitions }, 'joined cluster metadata');
  return {
    partitions: meta.partitions,
    catalog,
    coordinator: async (_db: RocksLevel) => {
      const c = new ClusterCoordinator(config, log, coord, table, topics, meta.partitions);
      await c.load();
      return c;
    },
  };
}

/** At start etcd may be slow or still coming up: retry what is retryable, for a bounded time. */
async function untilReachable<T>(log: Logger, what: string, op: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + STARTUP_RETRY_MS;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof ChicagoError) || !err.retryable || Date.now() + delay > deadline) throw err;
      log.warn({ what, err: err.message, retryInMs: delay }, 'etcd not reachable yet');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export class ClusterCoordinator implements Coordinator {
  readonly clustered = true;
  readonly self: NodeId;
  private readonly membership: Membership;
  private members: MembershipView | undefined;
  /** rebalance progress: when each moving partition started, and when moves completed (last minute) */
  private readonly movingSince = new Map<number, number>();
  private readonly completedAt: number[] = [];
  /** when each member appeared in membership (ms): the baseline for silence */
  private readonly firstSeen = new Map<NodeId, number>();
  /** since when this node has been listening without a stall of its own */
  private listeningSince = 0;
  private checks = 0;
  /** the failover timer between checks (the check's own dueAt is when the next check runs), and when it is due */
  private failoverTimer: NodeJS.Timeout | undefined;
  private failoverDueAt = 0;
  private readonly views = new Map<number, ReplicaView>();
  /** the last ReplicaView.version handed out */
  private viewVersion = 0;
  private readonly listeners: Array<(p: number, view: ReplicaView | undefined) => void> = [];
  private readonly catalogListeners: Array<() => void> = [];
  private peers: PeerNetwork | undefined;
  private positions: ReplicaPositions | undefined;
  /** this node's replicas as last sampled (every check) */
  private local = new Map<number, ReplicaPosition>();
  /**
   * Followers about to join a led partition's in-sync set, each with the version of the first view
   * that carries it. The leader counts them first (once it holds that view), and the set in etcd
   * grows only once they hold everything it confirmed: a write confirmed meanwhile without them
   * could otherwise be missing from a later leader.
   */
  private readonly joining = new Map<number, Map<NodeId, number>>();
  /** led partitions: recent [time, seq] samples, to tell a slow follower from one just behind */
  private readonly seqHistory = new Map<number, Array<[number, number]>>();
  private timers: NodeJS.Timeout[] = [];
  /** the periodic check (with the heartbeat) */
  private check: AlignedInterval | undefined;
  /** partitions with a CAS in flight from this node: one at a time each */
  private readonly busy = new Set<number>();
  /** partitions whose last leadership hand-off timed out, and when */
  private readonly handOffFailedAt = new Map<number, number>();
  private stopping = false;
  private readonly copies: number;

  constructor(
    config: Config,
    private readonly log: Logger,
    private readonly coord: Coordination,
    private readonly table: PartitionTable,
    private readonly topics: TopicCatalog,
    private readonly partitions: number,
  ) {
    this.self = toNodeId(config.nodeId);
    this.copies = config.defaults.replicas;
    this.membership = new Membership(coord);
    this.membership.on('warning', (err) => log.warn({ err: err.message }, 'membership'));
    this.membership.on('leaseLost', (why) => log.warn({ why }, 'etcd lease lost; re-registering'));
    this.table.on('warning', (err) => log.warn({ err: err.message }, 'partition table'));
    this.table.on('updates', () => { this.refreshViews(); this.failoverSoon(); });
    this.topics.on('changes', () => { for (const l of this.catalogListeners) l(); });
  }

  async load(): Promise<void> {
    await untilReachable(this.log, 'partition table', () => this.table.watch());
    await untilReachable(this.log, 'membership', () => this.membership.watch((view) => {
      this.members = view;
      for (const id of view.nodes.keys()) if (!this.firstSeen.has(id)) this.firstSeen.set(id, Date.now());
      for (const id of this.firstSeen.keys()) if (!view.nodes.has(id)) this.firstSeen.delete(id);
      this.peers?.setPeers(new Map([...view.nodes.values()].map((n) => [n.id, n.url])));
      this.refreshViews();
      this.failoverSoon(); // a leader whose lease ended is no longer alive
    }));
    this.refreshViews();
  }

  /** Register once the gateway listens; start the failure detector and the controller. */
  async join(url: string, peers: PeerNetwork, positions: ReplicaPositions, loopDelay?: LoopDelay): Promise<void> {
    this.peers = peers;
    this.positions = positions;
    peers.reportPositions(() => {
      const out: Record<number, [number, number]> = {};
      for (const [p, pos] of this.local) out[p] = [pos.seq, pos.incomplete ? 1 : 0];
      return out;
    });
    await untilReachable(this.log, 'registration', () => this.membership.register({ id: this.self, url, state: 'up' }));
    const live = this.liveMembers();
    if (!live.includes(this.self)) live.push(this.self);
    await untilReachable(this.log, 'partition records', () => this.table.initialize(this.partitions, live.sort(), this.copies));
    if (this.members) peers.setPeers(new Map([...this.members.nodes.values()].map((n) => [n.id, n.url])));
    // On the wall clock's multiples of CHECK_EVERY_MS, as every node's check: the heartbeat it
    // sends reaches its peers as they wake for their own checks, not at a moment of its own.
    loopDelay?.fedBy();
    const check: AlignedInterval = new AlignedInterval(CHECK_EVERY_MS, () => gatewayHops.task('check', () => {
      loopDelay?.late(check.lateMs());
      this.noteCheck(check.dueAt);
      gatewayHops.task('c.views', () => this.refreshViews());
      gatewayHops.task('c.sample', () => this.background('positions', () => this.sample()));
      gatewayHops.task('c.insync', () => this.background('in-sync', () => this.maintainInSync()));
      gatewayHops.task('c.handoff', () => this.background('hand-off', () => this.handOffLeadership()));
      gatewayHops.task('c.failover', () => this.runFailover());
      gatewayHops.task('c.beat', () => this.peers?.beat());
      // the controller's round rides every few checks rather than waking the node itself
      if (++this.checks % (CONTROLLER_EVERY_MS / CHECK_EVERY_MS) === 0) gatewayHops.task('c.placement', () => this.background('placement', () => this.control()));
    }));
    this.check = check;
    this.timers.push(
      setInterval(() => {
        const p = this.progress();
        if (p.moving > 0) this.log.info({ moving: p.moving, etaSeconds: p.etaSeconds, catchingUp: p.catchingUp.slice(0, 8) }, 'rebalance progress');
      }, 5_000),
    );
    for (const t of this.timers) t.unref();
    peers.driveHeartbeats();
    this.log.info({ url, live: this.liveMembers() }, 'registered in the cluster');
  }

  // ---- views ----

  hosted(): Map<number, ReplicaView> { return this.views; }
  view(p: number): ReplicaView | undefined { return this.views.get(p); }
  onChange(listener: (p: number, view: ReplicaView | undefined) => void): void { this.listeners.push(listener); }
  onCatalogChange(listener: () => void): void { this.catalogListeners.push(listener); }

  nodes(): ClusterNodeInfo[] {
    return [...(this.members?.nodes.values() ?? [])].map((n) => ({ id: n.id, url: n.url, state: this.alive(n.id) ? n.state : 'suspected' }));
  }
  urlOf(node: NodeId): string | undefined { return this.members?.nodes.get(node)?.url; }

  /** Registered in etcd (lease alive) and, for others, heard from recently. */
  private alive(node: NodeId): boolean {
    if (!this.members?.nodes.has(node)) return false;
    return !this.suspected(node);
  }

  /** Silent past SUSPECT_AFTER_MS, or past GONE_SUSPECT_AFTER_MS with nothing listening at its address. */
  private suspected(node: NodeId): boolean {
    return this.silentFor(node) >= (this.peers?.gone(node) ? GONE_SUSPECT_AFTER_MS : SUSPECT_AFTER_MS);
  }

  /**
   * How long a member has been silent: since its last frame, or since it appeared in membership
   * (a node that just joined has had no chance to speak yet).
   */
  private silentFor(node: NodeId): number {
    if (node === this.self || !this.peers) return 0;
    return Date.now() - Math.max(this.peers.heardAt(node), this.firstSeen.get(node) ?? 0, this.listeningSince);
  }

  /** Called first by every timed check, with when it was due: running far past that is a stall of this node's own. */
  private noteCheck(dueAt: number): void {
    const now = Date.now();
    if (now - dueAt > SELF_STALL_MS) {
      this.listeningSince = now;
      this.log.debug({ lateMs: now - dueAt }, 'this node stalled: peers\' silence counts from now');
    }
  }

  /** Fail over what needs it now, and time the next look for the moment a member may turn suspected. */
  private runFailover(): void {
    // after the I/O this turn has ready: heartbeats that waited in the sockets through a stall of
    // this node's own (timers run before sockets are read) count before anyone is judged silent
    setImmediate(() => {
      if (this.stopping) return;
      this.background('failover', () => this.failover());
      this.armFailover();
    });
  }

  /**
   * Between checks, failover runs when a member's silence reaches GONE_SUSPECT_AFTER_MS (the
   * shorter bar, as its address may start refusing at any time), then every FAILOVER_CHECK_MS
   * while it stays silent: never later than a FAILOVER_CHECK_MS poll noticed it.
   */
  private armFailover(): void {
    if (this.stopping || !this.peers || !this.members) return;
    const now = Date.now();
    let due = Infinity;
    for (const id of this.members.nodes.keys()) {
      if (id === this.self) continue;
      due = Math.min(due, now - this.silentFor(id) + GONE_SUSPECT_AFTER_MS + CLOCK_SLACK_MS);
    }
    due = Math.max(due, now + FAILOVER_CHECK_MS);
    if (due >= (this.check?.dueAt ?? 0)) { this.disarmFailover(); return; } // the next check looks anyway
    if (this.failoverTimer && this.failoverDueAt <= due) return;
    this.disarmFailover();
    this.setFailoverTimer(due, now);
  }

  /** Failover at once (the next turn) rather than at the next check: membership or a record changed. */
  private failoverSoon(): void {
    if (this.stopping || !this.peers) return;
    const now = Date.now();
    if (this.failoverTimer && this.failoverDueAt <= now) return;
    this.disarmFailover();
    this.setFailoverTimer(now, now);
  }

  private setFailoverTimer(due: number, now: number): void {
    this.failoverDueAt = due;
    this.failoverTimer = setTimeout(() => {
      this.failoverTimer = undefined;
      this.noteCheck(due);
      this.runFailover();
    }, due - now);
    this.failoverTimer.unref();
  }

  private disarmFailover(): void {
    clearTimeout(this.failoverTimer);
    this.failoverTimer = undefined;
  }

  private liveMembers(): NodeId[] {
    return this.members ? nodesIn(this.members, 'joining', 'up') : [];
  }

  private refreshViews(): void {
    // liveness once per refresh: every partition's view sees the same one
    const members = this.liveMembers();
    const alive = new Map<NodeId, boolean>();
    const isAlive = (n: NodeId): boolean => {
      let a = alive.get(n);
      if (a === undefined) alive.set(n, a = this.alive(n));
      return a;
    };
    for (let p = 0; p < this.partitions; p++) {
      const e = this.table.get(p);
      const next: Omit<ReplicaView, 'version'> | undefined = e && {
        epoch: e.record.epoch,
        leader: e.record.leader,
        replicas: e.record.replicas,
        live: e.record.replicas.filter(isAlive),
        spares: members.filter((n) => !e.record.replicas.includes(n) && isAlive(n)).length,
        copies: this.copies,
        isr: [...e.record.isr, ...[...(this.joining.get(p)?.keys() ?? [])].filter((n) => e.record.leader === this.self && !e.record.isr.includes(n))],
        rev: e.modRevision,
      };
      const prev = this.views.get(p);
      if (prev === next || (prev && next && sameView(prev, next))) continue;
      const view = next && { ...next, version: ++this.viewVersion };
      if (view) this.views.set(p, view);
      else this.views.delete(p);
      for (const l of this.listeners) {
        try { l(p, view); } catch (err) { this.log.error({ err, partition: p }, 'view listener failed'); }
      }
    }
  }

  // ---- actions ----

  /** One run of a periodic duty at a time; a failure is logged and the next tick tries again. */
  private readonly running = new Set<string>();
  private background(name: string, duty: () => Promise<void>): void {
    if (this.running.has(name) || this.stopping) return;
    this.running.add(name);
    duty().catch((err) => this.log.warn({ duty: name, err: (err as Error).message }, 'cluster duty failed'))
      .finally(() => this.running.delete(name));
  }

  /** Change a partition's record if it is still `current`; true if this changed it. */
  private async cas(p: number, current: PartitionEntry, next: PartitionRecord, why: string): Promise<boolean> {
    if (this.busy.has(p) || this.stopping) return false;
    this.busy.add(p);
    try {
      const r = await this.table.casUpdate(p, current.modRevision, next);
      if (r.ok) this.log.info({ partition: p, why, from: current.record, to: next }, 'partition record changed');
      return r.ok;
    } catch (err) {
      this.log.warn({ partition: p, why, err: (err as Error).message }, 'partition record change failed');
      return false;
    } finally {
      this.busy.delete(p);
    }
  }

  /** Sample this node's replicas: heartbeats report them, failover and in-sync decisions use them. */
  private async sample(): Promise<void> {
    if (!this.positions) return;
    this.local = await this.positions.get();
    const now = Date.now();
    for (const [p, pos] of this.local) {
      if (pos.role !== 'leader') { this.seqHistory.delete(p); continue; }
      const h = this.seqHistory.get(p) ?? [];
      recordSeq(h, now, pos.seq, ISR_LAG_MS);
      this.seqHistory.set(p, h);
    }
  }

  /** What this node perceives of the others for partition p: decide.ts's input. */
  private perception(p: number): Perception {
    return { alive: (n) => this.alive(n), positionOf: (n) => this.positionOf(n, p) };
  }

  /** A replica's [seq, incomplete] as last known: sampled here, or from its node's heartbeat. */
  private positionOf(node: NodeId, p: number): [number, number] | undefined {
    if (node === this.self) {
      const pos = this.local.get(p);
      return pos && [pos.seq, pos.incomplete ? 1 : 0];
    }
    return this.peers?.positionOf(node, p);
  }

  /**
   * Fast failover: the leader is silent or gone. Among the live in-sync replicas with a complete
   * copy, the one furthest ahead (then the first in the set) takes over with a new epoch; the
   * silent leader leaves the in-sync set and catches up as a follower when it returns. Every
   * in-sync replica holds every confirmed write, so any of them keeps them all.
   */
  private async failover(): Promise<void> {
    // liveness as of the last I/O: read again after each await
    let inputs: PlacementInputs | undefined;
    for (let p = 0; p < this.partitions; p++) {
      const e = this.table.get(p);
      if (!e) continue;
      inputs ??= this.placementInputs();
      if (e.record.leader === this.self) {
        // a leader sheds silent followers from the in-sync set, with their stand-ins (decide.ts)
        const shed = shedProposal(p, e.record, this.self, this.perception(p), inputs, this.copies);
        if (!shed) continue;
        inputs = undefined;
        await this.cas(p, e, shed.next, `in-sync: -${shed.shed.join(',')} (silent)`);
        continue;
      }
      const next = failoverProposal(p, e.record, this.self, this.perception(p), inputs, this.copies);
      if (!next) continue;
      inputs = undefined;
      if (!this.positions || !(await this.positions.claim(p, next.epoch))) continue; // its sampled position may be old
      await this.cas(p, e, next, `leader ${e.record.leader} ${this.peers?.gone(e.record.leader) ? 'gone' : 'silent'}`);
    }
  }

  /**
   * A leader keeps the in-sync set honest: followers that hold everything it has join it; silent
   * ones, ones with an incomplete copy, and ones that have not reached where the leader was
   * ISR_LAG_MS ago leave it. Failover can then only pick a replica holding every confirmed write.
   */
  private async maintainInSync(): Promise<void> {
    const now = Date.now();
    for (const [p, pos] of this.local) {
      const e = this.table.get(p);
      if (pos.role !== 'leader' || !e || e.record.leader !== this.self) { this.joining.delete(p); continue; }
      const past = seqAgo(this.seqHistory.get(p) ?? [], now, ISR_LAG_MS);
      const see = this.perception(p);
      const leader: LeaderPosition = { seq: pos.seq, matched: (n) => pos.matched[n] ?? -1, confirmedSeq: pos.confirmedSeq, view: pos.view };
      const pending = this.joining.get(p) ?? new Map<NodeId, number>();
      this.joining.set(p, pending);
      const { add, drop } = joiningChanges(e.record, leader, pending, past, see);
      // counted once its view is out (Infinity until then); a dropped joiner no longer holds confirmations up
      for (const n of add) pending.set(n, Infinity);
      for (const n of drop) pending.delete(n);
      if (add.length > 0 || drop.length > 0) this.refreshViews();
      for (const n of add) pending.set(n, this.views.get(p)!.version);
      const change = inSyncChange(e.record, this.self, leader, pending, past, see);
      if (!change) continue;
      const { isr, joined, left } = change;
      await this.cas(p, e, { ...e.record, isr }, `in-sync: +${joined.join(',') || '-'} -${left.join(',') || '-'}`);
    }
  }

  /**
   * The controller moves replica sets toward rendezvous placement over the leased nodes, and
   * gives a partition a stand-in for each suspected replica: placement.ts controlRound decides
   * (only the lowest healthy node id acts), this applies its changes by CAS.
   */
  private async control(): Promise<void> {
    const entries = new Map<number, PartitionEntry>();
    for (let p = 0; p < this.partitions; p++) {
      const e = this.table.get(p);
      if (e) entries.set(p, e);
    }
    const records = [...entries].map(([partition, e]) => ({ partition, record: e.record }));
    // decided on one reading of the table; a record changed meanwhile fails its CAS and is planned again next round
    for (const { partition, next, reason } of controlRound(records, this.placementInputs(), this.copies, this.self)) {
      await this.cas(partition, entries.get(partition)!, next, reason);
    }
  }

  private placementInputs(): PlacementInputs {
    const live = this.liveMembers();
    const leaving = this.members ? nodesIn(this.members, 'leaving') : [];
    const silent = new Set(live.filter((n) => this.suspected(n)));
    return { live, leaving, silent, healthy: live.filter((n) => !silent.has(n)) };
  }

  /**
   * Placement moves leadership off a live leader (a move ends, the leader is leaving): the leader
   * hands it over itself. It refuses writes until its successor holds every entry it has and every
   * write it took is answered, then changes the record: nothing it wrote is missing from its
   * successor, so it keeps its copy (no full copy of a history its successor never wrote), and no
   * write of its is left to end OUTCOME_UNKNOWN when the move drops its copy.
   */
  private async handOffLeadership(): Promise<void> {
    const inputs = this.placementInputs();
    const { live, leaving, silent } = inputs;
    if (!this.positions || (!live.includes(this.self) && !leaving.includes(this.self))) return; // a leaving leader hands over too
    for (let p = 0; p < this.partitions; p++) {
      const e = this.table.get(p);
      if (!e || e.record.leader !== this.self || this.busy.has(p)) continue;
      const pos = this.local.get(p);
      if (!pos) continue;
      const next = handOffTarget(e.record, plannedRecord(p, e.record, inputs, this.copies), this.self, {
        silent: (n) => silent.has(n), seq: pos.seq, matched: (n) => pos.matched[n] ?? -1, failedAtMs: this.handOffFailedAt.get(p), nowMs: Date.now(),
      });
      if (!next) continue;
      if (!(await this.positions.handOff(p, next.leader, HAND_OFF_WAIT_MS, HAND_OFF_FENCE_MS))) {
        this.handOffFailedAt.set(p, Date.now());
        this.log.info({ partition: p, to: next.leader }, 'leadership hand-off timed out: the successor did not catch up; retried later');
        continue;
      }
      const now = this.table.get(p);
      const landed = now?.modRevision === e.modRevision && await this.cas(p, e, next, `placement: leadership handed to ${next.leader}`);
      if (!landed) await this.positions.release(p);
    }
  }

  isrOf(p: number): NodeId[] { return this.table.get(p)?.record.isr ?? []; }

  /**
   * Rebalance progress: partitions with replicas still catching up, and an ETA from the pace at
   * which moves completed recently.
   */
  progress(): RebalanceProgress {
    const catchingUp: Array<{ partition: number; nodes: NodeId[] }> = [];
    for (let p = 0; p < this.partitions; p++) {
      const r = this.table.get(p)?.record;
      if (!r) continue;
      const nodes = r.replicas.filter((n) => !r.isr.includes(n));
      if (nodes.length > 0) catchingUp.push({ partition: p, nodes });
    }
    const now = Date.now();
    for (const p of this.movingSince.keys()) {
      if (!catchingUp.some((c) => c.partition === p)) { this.completedAt.push(now); this.movingSince.delete(p); }
    }
    for (const c of catchingUp) if (!this.movingSince.has(c.partition)) this.movingSince.set(c.partition, now);
    while (this.completedAt.length > 0 && now - this.completedAt[0] > 60_000) this.completedAt.shift();
    const perSecond = this.completedAt.length / 60;
    return {
      moving: catchingUp.length,
      catchingUp,
      completed: this.completedAt.length,
      etaSeconds: catchingUp.length === 0 ? 0 : perSecond > 0 ? Math.round(catchingUp.length / perSecond) : null,
    };
  }

  /**
   * A graceful leave: announce `leaving`, keep serving while the controller moves every replica
   * held here to other nodes, and return once none is left here (or the deadline passes: then the
   * others treat this like a failure).
   */
  async handOff(deadlineMs: number): Promise<boolean> {
    const staying = () => (this.members ? nodesIn(this.members, 'joining', 'up').filter((n) => n !== this.self).length : 0);
    if (staying() === 0) return false;
    await this.membership.setState('leaving');
    const deadline = Date.now() + deadlineMs;
    let aloneSince: number | undefined;
    while (Date.now() < deadline) {
      let held = 0;
      for (let p = 0; p < this.partitions; p++) if (this.table.get(p)?.record.replicas.includes(this.self)) held++;
      if (held === 0) return true;
      // Every other node leaving too (a whole cluster stopped at once) leaves placement nowhere to
      // move these. Only when that lasts: a node whose lease lapsed in a stall re-registers within
      // about a second, and stopping then would take the only in-sync copy away mid hand-off.
      if (staying() > 0) aloneSince = undefined;
      else if ((aloneSince ??= Date.now()) <= Date.now() - limits.handOffAloneMs) {
        this.log.warn({ held, aloneMs: limits.handOffAloneMs }, 'every other node is leaving or gone: stopping without handing these replicas off');
        return false;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    this.log.warn({ deadlineMs }, 'leaving before every replica here was moved');
    return false;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.check?.stop();
    this.peers?.driveHeartbeats(false); // heard from until the links close
    this.disarmFailover();
    try {
      await this.membership.leave();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'leaving the cluster');
    }
    await Promise.allSettled([this.membership.close(), this.table.close(), this.topics.close()]);
    this.coord.close();
  }
}

/** TLS to etcd when its endpoints are https://: the etcd CA (or the cluster CA) and the node's certificate. */
function etcdTls(config: Config): { ca: string; cert: string; key: string } | undefined {
  if (!config.etcd.some((e) => e.startsWith('https://'))) return undefined;
  const tls = config.tls;
  const caFile = tls?.etcdCaFile ?? tls?.caFile;
  if (!tls || !caFile) throw new ConfigError('https:// etcd endpoints need tls.certFile, tls.keyFile and tls.etcdCaFile (or tls.caFile)');
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`tls: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  return { ca: read(caFile), cert: read(tls.certFile), key: read(tls.keyFile) };
}
