// One Chicago node: the gateway thread's side of the partition actors. It owns the database
// (open/close), the topic catalog, the routing of every request to the worker hosting its
// partition, and the live tails. Public methods validate; workers do the work.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { RocksLevel } from '@nxtedition/rocksdb';
import type { Config } from '../runtime/config.js';
import type { Logger } from '../runtime/log.js';
import { ChicagoError, asChicagoError } from '../runtime/errors.js';
import { checkLimits, limits } from '../runtime/limits.js';
import { offset as toOffset, seq as toSeq } from '../runtime/ids.js';
import { groupPartition, kvPartition, murmur3, recordPartition, streamPartition } from '../runtime/hash.js';
import { checkHeaders, checkInt, checkKey, checkName, checkOffset, checkValue } from '../runtime/validate.js';
import { PACE, WorkerHandle, gatewayHops, giveBatch, withDeadline } from '../actors/threads.js';
import { CopyPacer } from '../runtime/copy-pacer.js';
import { MemoryBudget } from '../runtime/memory-budget.js';
import { createMetrics, type Metrics } from '../runtime/metrics.js';
import { openDatabase } from '../storage/rocks.js';
import { lockDataDir } from '../storage/dir-lock.js';
import { writeFileDurably } from '../storage/durable-file.js';
import { DiskFullError, DiskGuard, isNoSpace } from '../storage/disk-guard.js';
import type { LinkTls } from '../net/worker-links.js';
import { ConfigError, type TlsConfig } from '../runtime/config.js';
import { Catalog, type TopicMeta } from './catalog.js';
import type { ClusterCoordinatorApi, PeerLink } from '../cluster/hooks.js';
import type { PeerNetwork } from '../cluster/peer.js';
import type { ReplicaPosition } from '../cluster/cluster.js';
import { LocalCoordinator, localCatalog } from './coordinator.js';
import type { Coordinator, TopicCatalogApi } from '../cluster/coordinator.js';
import type { ReplicaView } from '../actors/replica.js';
import { nodeId as toNodeId, type NodeId } from '../runtime/ids.js';
import type { WriteResult } from '../actors/threads.js';
import type { DigestReply, WorkerOutput } from '../actors/messages.js';
import { scanPageLength } from '../actors/reads.js';
import { StreamWatchers, toStored, type Append } from './tails.js';
import { GroupCoordinator } from './group-coordinator.js';
import { decodeBatch, encodeBatch, stampBatch, validateBatch, type CheckedBatch } from '../protocol/batch.js';
import { recordBytes, streamKeyOf, type ProduceResult as ActorProduceResult, type WireRecord } from '../actors/partition.js';
import type { FetchReply, GroupOffsetReply, GroupRequest, KvGetReply, RequestBody, StreamInfoReply, WorkerStats } from '../actors/messages.js';
import { LoopDelay, type LoopDelayMs } from '../runtime/loop-delay.js';
import { AlignedInterval } from '../runtime/aligned-timer.js';
import type {
  Acks, FetchOptions, FetchResult, GroupOffset, KvDeleteResult, KvEntry, KvScanOptions, KvScanResult,
  KvWriteOptions, KvWriteResult, NodeApi, NodeStatus, PartitionInfo, ProduceOptions, ProduceRecord,
  ProduceResult, StartPosition, Tail, TailSink, TopicInfo, TopicSpec, GroupMembership, GroupJoinOptions, CommitFence,
  RetentionChange, RetentionSpec, TopicChange, GroupDescription,
} from '../protocol/api.js';
import { rangesOf } from '../protocol/api.js';

const VERSION = '0.1.0';
/**
 * The data dir's format, in chicago.json. 2 stores stream batches as record batches
 * (src/protocol/batch.ts); a format 1 dir (msgpack batches) still reads, and is marked current at start,
 * so a build that reads only 1 refuses it rather than misread the newer batches. 3 logs a produce
 * by naming its stream batch rather than carrying a copy (actors/replica.ts encodeLogEntry); an
 * older dir is marked 3 before any such entry is written, so a build that reads only 1 and 2
 * refuses it rather than replay entries without their batches. 4 keeps each partition's stream
 * batches in a column family of their own (storage/rocks.ts batchColumnName); an older dir is
 * marked 4 before its batches move there at open, so a build that reads only 1–3 refuses it rather
 * than miss them.
 */
const DATA_FORMAT = 4;
const DATA_FORMATS_READ: readonly number[] = [1, 2, 3, 4];
/** formats whose log entries carry a second copy of each produced batch (recovery.ts compactLog) */
const LOG_COPIES_BATCHES_BEFORE = 3;
const WORKER_SCRIPT = new URL('../actors/worker.js', import.meta.url);

type NodeState = 'starting' | 'up' | 'stopping' | 'stopped';

/** how often the copy pacer looks at the foreground writes and sets the gap between copy parts */
const PACER_WINDOW_MS = 1_000;

export class ChicagoNode implements NodeApi {
  readonly metrics: Metrics = createMetrics();
  /** the node-wide cap on buffered bytes (memory.maxBytes), shared by the workers' queues and the gateway */
  readonly memory: MemoryBudget;
  private state: NodeState = 'starting';
  private groups: GroupCoordinator | undefined;
  private readonly workers: WorkerHandle[] = [];
  private readonly watchers: StreamWatchers;
  /** the gateway thread's event-loop delay, reported with the workers' on /metrics */
  private readonly loopDelay = new LoopDelay();
  private catalog!: TopicCatalogApi;
  private coordinator!: Coordinator;
  /** set when the node runs in a cluster */
  private clusterCoordinator?: ClusterCoordinatorApi;
  /** sends replication traffic and forwarded requests to other nodes (cluster mode) */
  private peers: PeerLink | undefined;
  private url = '';
  private db!: RocksLevel;
  private partitions = 0;
  /** the data dir's format when this node opened it */
  private formatFound = DATA_FORMAT;
  private readonly roundRobin = new Map<string, number>();
  private readonly knownGroups = new Set<string>();
  /** paces the full copies this node sends (rebalancing) by how its foreground writes fare */
  private readonly pacer = new CopyPacer();
  /** where this node's workers take replication traffic from other nodes' workers, in worker order */
  workerLinks: string[] = [];
  /**
   * What other nodes' workers present to link to this node's workers: random per process, told only
   * to peers that authenticated on /v1/peer (in this node's hello)
   */
  readonly linkKey = randomBytes(32).toString('base64url');
  /** PEM texts for TLS on links to other nodes (config.tls), read once at start */
  readonly linkTls: LinkTls | undefined;
  private pacerTimer: AlignedInterval | undefined;
  private unlockDir: (() => void) | undefined;
  private disk!: DiskGuard;

  private constructor(readonly config: Config, private readonly log: Logger) {
    this.linkTls = config.tls ? readLinkTls(config.tls) : undefined;
    this.memory = new MemoryBudget(config.memory.maxBytes);
    this.watchers = new StreamWatchers(async (skey) => {
      const [topicId, tp] = skey.split(':').map(Number);
      const t = this.catalog.byId(topicId);
      if (!t) throw new ChicagoError('TOPIC_NOT_FOUND', `#${topicId}`);
      return (await this.streamInfo(t, tp)).start;
    });
  }

  static async start(config: Config, log: Logger): Promise<ChicagoNode> {
    checkLimits();
    const node = new ChicagoNode(config, log);
    await node.open();
    return node;
  }

  private async open(): Promise<void> {
    const dir = path.resolve(this.config.dataDir);
    await mkdir(dir, { recursive: true });
    // before anything touches the dir: a second node on it stops here, saying which process holds it
    this.unlockDir = lockDataDir(dir, 'data dir', undefined, (held) => this.log.warn({ host: held.host, pid: held.pid }, 'took over the data dir lock written on another host (a re-created container, or two hosts sharing the dir: then stop one)'));
    // before RocksDB opens: on a full disk this releases the reserve, so it has room to start
    this.disk = new DiskGuard(dir, this.config.storage, (s) => {
      this.metrics.diskFull.set(s.full ? 1 : 0);
      if (s.full) this.log.warn({ availBytes: s.availBytes }, `disk full: writes refused until there is room (${this.disk.reason()})`);
      else this.log.info({ availBytes: s.availBytes }, 'disk has room again: writes resume');
    });
    this.disk.start(limits.diskCheckIntervalMs);
    if (this.disk.full) this.log.warn(`starting on a full disk: serving reads and deletes only (${this.disk.reason()})`);
    const self = toNodeId(this.config.nodeId);
    // The cluster layer (etcd, peer links) loads only when asked for.
    const cluster = this.config.etcd.length > 0 ? await (await import('../cluster/cluster.js')).connectCluster(this.config, this.log) : undefined;
    this.partitions = await this.partitionCount(dir, cluster?.partitions);
    try {
      this.db = await openDatabase(path.join(dir, 'rocksdb'), this.partitions, this.config.memory.maxBytes);
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      if (isNoSpace(err) || isNoSpace(cause)) throw new DiskFullError(dir, this.disk.availBytes);
      throw err;
    }
    this.clusterCoordinator = cluster ? await cluster.coordinator(this.db) : undefined;
    this.coordinator = this.clusterCoordinator ?? new LocalCoordinator(self, this.partitions, () => this.url);
    this.catalog = cluster ? cluster.catalog : localCatalog(new Catalog(this.db));
    const count = Math.min(this.config.workers, this.partitions);
    gatewayHops.start(self, 'main');
    for (let w = 0; w < count; w++) {
      this.workers.push(new WorkerHandle(w, WORKER_SCRIPT, this.db.handle, (err) => this.onWorkerFault(w, err), (streams) => this.watchers.confirmed(streams), cluster ? (ms) => this.pacer.record(ms) : undefined));
      this.workers[w].budget = this.memory;
    }
    const idle: ReplicaView = { epoch: 0 as ReplicaView['epoch'], leader: null, replicas: [], live: [], copies: 0, isr: [], version: 0 };
    const opened = await Promise.all(this.workers.map((w, i) => withDeadline(w.control.open({
      self,
      logLevel: this.config.logLevel,
      partitions: this.partitionsOf(i).map((p) => ({ p, view: this.coordinator.view(p) ?? idle })),
      syncPolicy: this.config.sync.policy,
      groupIntervalMs: this.config.sync.groupIntervalMs,
      maintenanceIntervalMs: this.config.maintenanceIntervalMs,
      antiEntropyIntervalMs: this.config.antiEntropyIntervalMs,
      replicationTimeoutMs: limits.replicationTimeoutMs,
      ...(this.formatFound < LOG_COPIES_BATCHES_BEFORE ? { compactLog: true } : {}),
      ...(cluster ? { linkHost: this.config.host, linkKey: this.linkKey, ...(this.linkTls ? { linkTls: this.linkTls } : {}) } : {}),
    }), limits.workerCallTimeoutMs, `worker ${i} start`)));
    this.workerLinks = opened.flatMap((o) => o.linkUrl ?? []);
    this.groups = new GroupCoordinator({
      log: this.log,
      now: () => Date.now(),
      leadership: (p) => {
        const v = this.coordinator.view(p);
        return { leads: this.state === 'up' && v?.leader === self, epoch: v?.epoch ?? 0 };
      },
      partitionsOf: (topic) => this.catalog.get(topic).partitions,
      commit: (group, topic, partition, offset) => this.commitOffset(group, topic, partition, offset),
      deleteOffsets: (group) => this.deleteGroupOffsets(group),
    }, Date.now());
    this.coordinator.onChange((p, view) => {
      this.workerOf(p).tell({ p, op: 'view', view: view ?? idle });
      this.groups?.observeLeadership(p, view?.leader === self, view?.epoch ?? 0);
      // A caught-up tail waits for local appends only while this node leads: re-decide.
      this.watchers.pumpAll();
    });
    this.coordinator.onCatalogChange(() => { void this.pushRetention(); this.closeDeletedTails(); });
    await this.pushRetention();
    if (this.coordinator.clustered) {
      this.pacerTimer = new AlignedInterval(PACER_WINDOW_MS, () => this.paceCopies());
    }
    this.state = 'up';
    this.log.info({ partitions: this.partitions, workers: count, dataDir: dir, clustered: this.coordinator.clustered }, 'node up');
  }

  /**
   * Close the pacer's window: the workers' copy parts go at the interval it sets for the next one.
   * It learns what the foreground is like only while no partition moves anywhere: a move elsewhere
   * slows this node's writes too, and would inflate the baseline its own copies are held to.
   */
  private paceCopies(): void {
    let sent = 0;
    let open = 0;
    for (const w of this.workers) {
      sent += Atomics.exchange(w.pace, PACE.partsSent, 0);
      open += Atomics.load(w.pace, PACE.copiesOpen);
    }
    const copying = sent > 0 || open > 0;
    const quiet = !copying && this.coordinator.progress().moving === 0;
    const before = this.pacer.intervalMs;
    const win = this.pacer.closeWindow(copying, quiet);
    for (const w of this.workers) Atomics.store(w.pace, PACE.partIntervalMs, win.intervalMs);
    this.metrics.copyPartInterval.set(win.intervalMs / 1000);
    // Logged when copies start or stop yielding to the foreground; each step only at debug.
    const min = limits.copyPartIntervalMsMin;
    if ((before === min) !== (win.intervalMs === min)) this.log.info({ ...win, partsSent: sent }, win.intervalMs === min ? 'copies back at full pace' : 'copies slowed for the foreground');
    else if (win.intervalMs !== before) this.log.debug({ ...win, partsSent: sent }, 'copy pace changed');
  }

  /** Set once the gateway listens: the URL other nodes and clients reach this node at. */
  serveAt(url: string, peers?: PeerLink): void {
    this.url = url;
    this.peers = peers;
  }

  /** Register in the cluster once reachable; the coordinator then routes, fails over and rebalances. */
  async joinCluster(url: string, peers: PeerNetwork): Promise<void> {
    const c = this.clusterCoordinator;
    if (!c) throw new Error('joinCluster on a single node');
    await c.join(url, peers, {
      get: async () => {
        const out = new Map<number, ReplicaPosition>();
        // the board each worker publishes on its tick; asked by message only before its first, or when they did not fit
        const all = await Promise.all(this.workers.map((w) => w.positions.read() ?? withDeadline(w.control.positions(), 2000, `worker ${w.index} positions`)));
        for (const p of all.flat()) out.set(p.id, { seq: p.seq, role: p.role, incomplete: p.incomplete, matched: p.matched, isr: p.isr, view: p.view, confirmedSeq: p.confirmedSeq });
        return out;
      },
      claim: (p, epoch) => withDeadline(this.workerOf(p).control.claim(p, epoch), 2000, `worker ${this.workerOf(p).index} claim`),
      handOff: (p, to, waitMs, fenceMs) => withDeadline(this.workerOf(p).control.handOff(p, to, waitMs, fenceMs), waitMs + 2000, `worker ${this.workerOf(p).index} hand-off`),
      release: (p) => withDeadline(this.workerOf(p).control.release(p), 2000, `worker ${this.workerOf(p).index} release`),
    }, this.loopDelay);
  }

  get self(): NodeId { return this.coordinator.self; }
  get cluster(): Coordinator { return this.coordinator; }

  /** A peer node's worker links and link key (its hello), or [] once it is gone: its workers are reached directly. */
  setPeerLinks(node: NodeId, urls: string[], key: string): void {
    for (const w of this.workers) {
      // without them nothing replicates to that node: leaders resend once they are set
      w.control.setPeerLinks(node, urls, key).catch((err: unknown) => this.log.warn({ err, peer: node }, 'worker links not set'));
    }
  }

  private closeDeletedTails(): void {
    this.watchers.retain((topicId) => this.catalog.byId(topicId) !== undefined, (topicId) => new ChicagoError('TOPIC_NOT_FOUND', `#${topicId}`));
  }

  /** Partitions are fixed when a data dir (or cluster) is created; a later config cannot reshuffle keys. */
  private async partitionCount(dir: string, clusterPartitions?: number): Promise<number> {
    const file = path.join(dir, 'chicago.json');
    try {
      const meta = JSON.parse(await readFile(file, 'utf8')) as { format: number; partitions: number; cluster?: boolean };
      if (!DATA_FORMATS_READ.includes(meta.format)) throw new Error(`data dir ${dir} has format ${meta.format}, this build reads ${DATA_FORMATS_READ.join(', ')}`);
      // A single node's dir holds every partition as its only copy; a cluster node's holds the replicas
      // placed on it. Either read as the other would lose data (a single node's replicas taken for
      // empty ones and replaced by a copy, a cluster node's partial partitions served as whole).
      // Dirs made before the field was written say neither.
      if (meta.cluster !== undefined && meta.cluster !== (clusterPartitions !== undefined)) {
        throw new Error(`data dir ${dir} was made by ${meta.cluster ? 'a cluster node' : 'a single node'}; a ${clusterPartitions !== undefined ? 'cluster node' : 'single node'} needs a data dir of its own`);
      }
      this.formatFound = meta.format;
      if (meta.format !== DATA_FORMAT) {
        await writeFileDurably(file, JSON.stringify({ ...meta, format: DATA_FORMAT }, null, 2) + '\n');
        this.log.info({ dir, from: meta.format, to: DATA_FORMAT }, 'data dir format upgraded (older batches still read and move to their own column family; log entries shed their batch copies)');
      }
      if (clusterPartitions !== undefined && meta.partitions !== clusterPartitions) {
        throw new Error(`data dir ${dir} was made with ${meta.partitions} partitions, the cluster has ${clusterPartitions}`);
      }
      if (meta.partitions !== this.config.partitions && clusterPartitions === undefined) {
        this.log.warn({ configured: this.config.partitions, stored: meta.partitions }, 'partitions are fixed at creation; using the stored count');
      }
      return meta.partitions;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const meta = { format: DATA_FORMAT, partitions: clusterPartitions ?? this.config.partitions, cluster: clusterPartitions !== undefined, createdAtMs: Date.now(), nodeId: this.config.nodeId };
      await writeFileDurably(file, JSON.stringify(meta, null, 2) + '\n');
      return meta.partitions;
    }
  }

  private partitionsOf(worker: number): number[] {
    const out: number[] = [];
    for (let p = worker; p < this.partitions; p += this.workers.length) out.push(p);
    return out;
  }

  private workerOf(p: number): WorkerHandle { return this.workers[p % this.workers.length]; }

  private onWorkerFault(index: number, err: Error): void {
    // A partition worker that dies takes its partitions' in-memory state with it; the node
    // cannot serve them honestly any more. Exit and let the supervisor restart from disk.
    this.log.fatal({ worker: index, err }, 'partition worker failed; stopping the node');
    void this.stop().finally(() => process.exit(70));
  }

  /** A read, sent to the partition's leader: here, or forwarded to the node that leads it. */
  private call<T>(p: number, body: RequestBody, bytes = 0): Promise<T> {
    return this.route<T>(p, body, bytes, false).then((r) => r.res);
  }

  /** A write, sent to the partition's leader; resolves with how many replicas held it. */
  private write<T>(p: number, body: RequestBody, bytes = 0): Promise<WriteResult<T>> {
    return this.route<T>(p, body, bytes, true);
  }

  /**
   * Sends to the leader. While a partition fails over (no leader, an unreachable one, or one that
   * says it no longer leads), waits for the new view and tries again, up to failoverWaitMs: a
   * NOT_LEADER answer means the request did not run, so trying again is safe.
   */
  private async route<T>(p: number, body: RequestBody, bytes: number, write: boolean): Promise<WriteResult<T>> {
    const deadline = Date.now() + limits.failoverWaitMs;
    for (;;) {
      if (this.state !== 'up') throw new ChicagoError(this.state === 'starting' ? 'NOT_READY' : 'SHUTTING_DOWN', this.state);
      const leader = this.coordinator.view(p)?.leader;
      try {
        if (leader === this.self) return await this.local<T>(p, body, bytes, write);
        if (!leader || !this.peers) throw new ChicagoError('NOT_LEADER', p, 'unknown (election in progress)');
        return await this.peers.forward<T>(leader, p, body, write);
      } catch (e) {
        if (!(e instanceof ChicagoError) || e.code !== 'NOT_LEADER' || Date.now() >= deadline) throw e;
        // a batch given to a worker that did not hand it back (threads.ts giveBatch): nothing to send again
        if (body.op === 'produce' && body.batch?.byteLength === 0) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** Execute on the replica hosted here (also for requests other nodes forward to this leader). */
  local<T>(p: number, body: RequestBody, bytes: number, write: boolean): Promise<WriteResult<T>> {
    if (this.state !== 'up') return Promise.reject(new ChicagoError(this.state === 'starting' ? 'NOT_READY' : 'SHUTTING_DOWN', this.state));
    if (isGroupRequest(body)) {
      const { p: _p, ...req } = body;
      return this.groups!.handle(p, req).then((res) => ({ res: res as T, replicas: 0 }));
    }
    const w = this.workerOf(p);
    if (!write) {
      const read = body.op === 'fetch' && body.waitMs ? this.longPoll(p, body) : w.call<T>(body, bytes);
      return read.then((res) => ({ res: res as T, replicas: 0 }));
    }
    // deletions still run on a full disk (they are how room is made); other writes wait for room
    if (body.op !== 'kvDel' && body.op !== 'dropStream' && body.op !== 'uncommit' && !this.disk.admit(bytes)) return Promise.reject(new ChicagoError('STORAGE_FULL', this.disk.reason()));
    const sent = w.write<T>(body, bytes).catch((e: unknown) => {
      if (e instanceof ChicagoError && e.code === 'STORAGE_FULL') this.disk.tripped();
      throw e;
    });
    if (body.op !== 'produce') return sent;
    // Live tails on this node get a fresh append straight from the request, without a read.
    return sent.then((r) => {
      const res = r.res as unknown as ActorProduceResult;
      const skey = streamKeyOf(body.topicId, body.tp);
      if (!res.duplicate && this.watchers.watches(skey)) this.watchers.appended(skey, producedAppend(body, res), res.hiddenIn);
      return r;
    });
  }

  /** A fetch held here, at the leader (whose appends wake it), until an append or waitMs. */
  private async longPoll(p: number, body: Extract<RequestBody, { op: 'fetch' }>): Promise<FetchReply> {
    const { waitMs = 0, ...read } = body;
    const w = this.workerOf(p);
    const reply = await w.call<FetchReply>(read);
    if (reply.records.length > 0 || (reply.batches?.length ?? 0) > 0) return reply;
    const skey = streamKeyOf(body.topicId, body.tp);
    this.watchers.observeEnd(skey, reply.end);
    await this.watchers.waitForAppend(skey, reply.next - 1, waitMs);
    // Re-read from where the empty answer left off, not from a moving "latest".
    return w.call<FetchReply>({ ...read, from: { kind: 'offset', offset: reply.next } });
  }

  // ---- key-value ----

  async kvPut(keyspace: string, key: Uint8Array, value: Uint8Array, opts: KvWriteOptions): Promise<KvWriteResult> {
    checkName('keyspace', keyspace);
    checkKey(key);
    checkValue(value);
    const ttlMs = opts.ttlSeconds === undefined ? undefined : checkInt('ttl', opts.ttlSeconds, 1, limits.ttlSecondsMax) * 1000;
    const p = kvPartition(keyspace, key, this.partitions);
    if (opts.acks === 'none' && this.shed(p)) return { version: toSeq(0), replicas: 0 };
    const sent = this.write<{ version: number }>(p, { p, op: 'kvPut', ks: keyspace, key, value, ttlMs, acks: opts.acks }, key.length + value.length);
    if (opts.acks === 'none') return this.fireAndForget(sent, { version: toSeq(0), replicas: 0 });
    const { res, replicas } = await sent;
    return { version: toSeq(res.version), replicas };
  }

  async kvGet(keyspace: string, key: Uint8Array): Promise<KvEntry | undefined> {
    checkName('keyspace', keyspace);
    checkKey(key);
    const p = kvPartition(keyspace, key, this.partitions);
    const r = await this.call<KvGetReply | null>(p, { p, op: 'kvGet', ks: keyspace, key });
    return r ? { key, value: r.value, version: toSeq(r.version), expiresAtMs: r.expiresAtMs } : undefined;
  }

  async kvDelete(keyspace: string, key: Uint8Array, opts: { acks: Acks }): Promise<KvDeleteResult> {
    checkName('keyspace', keyspace);
    checkKey(key);
    const p = kvPartition(keyspace, key, this.partitions);
    if (opts.acks === 'none' && this.shed(p)) return { version: toSeq(0), replicas: 0, existed: false };
    const sent = this.write<{ version: number; existed: boolean }>(p, { p, op: 'kvDel', ks: keyspace, key, acks: opts.acks });
    if (opts.acks === 'none') return this.fireAndForget(sent, { version: toSeq(0), replicas: 0, existed: false });
    const { res, replicas } = await sent;
    return { version: toSeq(res.version), replicas, existed: res.existed };
  }

  /** Merges every partition's sorted page into one page in key order. */
  async kvScan(keyspace: string, opts: KvScanOptions): Promise<KvScanResult> {
    checkName('keyspace', keyspace);
    const limit = checkInt('limit', opts.limit, 1, limits.scanLimitMax);
    if (opts.prefix && opts.prefix.length > limits.keyBytesMax) throw new ChicagoError('INVALID_KEY', 'prefix too long');
    if (opts.after) checkKey(opts.after);
    // Each partition reads its share of the page's bytes (at least one entry), so a scan holds about
    // one page, plus one entry per partition, however many partitions it reads.
    const bytesMax = Math.ceil(limits.scanBytesMax / this.partitions);
    const pages = await Promise.all(Array.from({ length: this.partitions }, (_, p) =>
      this.call<Array<{ key: Uint8Array; value: Uint8Array; version: number }>>(p, { p, op: 'kvScan', ks: keyspace, prefix: opts.prefix, after: opts.after, limit: limit + 1, bytesMax })));
    // A partition's page cut by bytes holds its keys only up to its last one: the merged page stops there too.
    let bound: Uint8Array | undefined;
    for (const page of pages) {
      const last = page[page.length - 1];
      if (last === undefined || page.reduce((n, e) => n + e.key.length + e.value.length, 0) < bytesMax) continue;
      if (bound === undefined || Buffer.compare(last.key, bound) < 0) bound = last.key;
    }
    const all = pages.flat().sort((a, b) => Buffer.compare(a.key, b.key));
    const within = bound === undefined ? all : all.filter((e) => Buffer.compare(e.key, bound!) <= 0);
    const kept = within.slice(0, limit);
    kept.splice(scanPageLength(kept, limits.scanBytesMax));
    assert(kept.length > 0 || all.length === 0, 'a scan page with entries keeps at least one');
    const items = kept.map((e) => ({ key: e.key, value: e.value, version: toSeq(e.version) }));
    // a page cut by bytes may have more after it, even when every entry read was kept
    const more = all.length > items.length || bound !== undefined;
    return { items, next: more && items.length > 0 ? items[items.length - 1].key : undefined };
  }

  // ---- topics ----

  async createTopic(spec: TopicSpec): Promise<TopicInfo> {
    this.assertUp();
    checkName('topic', spec.name);
    if (this.disk.full) throw new ChicagoError('STORAGE_FULL', this.disk.reason());
    const partitions = checkInt('partitions', spec.partitions ?? this.config.defaults.topicPartitions, 1, limits.topicPartitionsMax);
    // A single node is a cluster of one: without an explicit count its topics get one replica.
    const replicas = checkInt('replicas', spec.replicas ?? Math.min(this.config.defaults.replicas, this.coordinator.nodes().length), 1, 15);
    if (replicas > this.coordinator.nodes().length) this.log.warn({ topic: spec.name, replicas, nodes: this.coordinator.nodes().length }, 'topic wants more replicas than the cluster has nodes; it is under-replicated');
    const r = spec.retention ?? {};
    const retention = {
      ...(r.ms !== undefined ? { ms: checkInt('retention.ms', r.ms, 1, Number.MAX_SAFE_INTEGER) } : {}),
      ...(r.bytes !== undefined ? { bytes: checkInt('retention.bytes', r.bytes, 1, Number.MAX_SAFE_INTEGER) } : {}),
      ...(r.untilGroup !== undefined ? { untilGroup: checkName('group', r.untilGroup) } : {}),
    };
    const meta = await this.catalog.create({ name: spec.name, partitions, replicas, retention }, Date.now());
    await this.pushRetention();
    this.log.info({ topic: meta.name, id: meta.id, partitions, retention }, 'topic created');
    return this.topicInfo(meta, false);
  }

  async alterTopic(name: string, change: TopicChange): Promise<TopicInfo> {
    this.assertUp();
    checkName('topic', name);
    if (change.retention === undefined && change.partitions === undefined) throw new ChicagoError('INVALID_ARGUMENT', 'change', 'name retention or partitions');
    let meta = this.catalog.get(name);
    // Everything is checked before anything is written: a refused change changes nothing.
    const retention = change.retention === undefined ? undefined : retentionAfter(meta.retention, change.retention);
    const partitions = change.partitions === undefined ? undefined : checkInt('partitions', change.partitions, 1, limits.topicPartitionsMax);
    if (partitions !== undefined) {
      const before = meta.partitions;
      meta = await this.catalog.setPartitions(name, partitions);
      if (meta.partitions !== before) this.log.info({ topic: name, from: before, to: meta.partitions }, 'topic partitions added');
    }
    if (retention !== undefined) {
      meta = await this.catalog.setRetention(name, retention);
      await this.pushRetention();
      this.log.info({ topic: name, retention }, 'topic retention changed');
    }
    return this.topicInfo(meta, false);
  }

  async listTopics(): Promise<TopicInfo[]> {
    this.assertUp();
    return this.catalog.list().map((t) => this.topicInfoSync(t));
  }

  async describeTopic(name: string): Promise<TopicInfo> {
    this.assertUp();
    checkName('topic', name);
    return this.topicInfo(this.catalog.get(name), true);
  }

  async deleteTopic(name: string): Promise<void> {
    this.assertUp();
    checkName('topic', name);
    const t = await this.catalog.remove(name);
    await this.pushRetention();
    const gone = new ChicagoError('TOPIC_NOT_FOUND', name);
    await Promise.all(Array.from({ length: t.partitions }, (_, tp) => {
      this.watchers.closeStream(streamKeyOf(t.id, tp), gone);
      const p = streamPartition(t.name, tp, this.partitions);
      return this.write(p, { p, op: 'dropStream', topicId: t.id, tp, acks: 'all' });
    }));
    this.log.info({ topic: name, id: t.id }, 'topic deleted');
  }

  private topicInfoSync(t: TopicMeta): TopicInfo {
    return { name: t.name, partitions: t.partitions, replicas: t.replicas, retention: t.retention, createdAtMs: t.createdAtMs };
  }

  private async topicInfo(t: TopicMeta, withPartitions: boolean): Promise<TopicInfo> {
    const info = this.topicInfoSync(t);
    if (!withPartitions) return info;
    info.partitionsInfo = await Promise.all(Array.from({ length: t.partitions }, async (_, tp): Promise<PartitionInfo> => {
      const s = await this.streamInfo(t, tp);
      const view = this.coordinator.view(streamPartition(t.name, tp, this.partitions));
      return { partition: tp, startOffset: toOffset(s.start), endOffset: toOffset(s.end), bytes: s.bytes, leader: view?.leader ?? null, replicas: view?.replicas ?? [] };
    }));
    return info;
  }

  private streamInfo(t: TopicMeta, tp: number): Promise<StreamInfoReply> {
    const p = streamPartition(t.name, tp, this.partitions);
    return this.call<StreamInfoReply>(p, { p, op: 'streamInfo', topicId: t.id, tp });
  }

  private async pushRetention(): Promise<void> {
    const topics = this.catalog.retention();
    await Promise.all(this.workers.map((w) => w.control.setRetention(topics)));
  }

  // ---- streams ----

  /** The checks every produce makes, and the partition an update goes to when one is named or none is keyed. */
  private produceTarget(topic: string, opts: ProduceOptions): { t: TopicMeta; idempotent: boolean; fixed: number | undefined; sticky: () => number } {
    checkName('topic', topic);
    const t = this.catalog.get(topic);
    const idempotent = opts.producerId !== undefined;
    if (idempotent) {
      checkName('producer', opts.producerId);
      checkInt('sequence', opts.sequence, 0, Number.MAX_SAFE_INTEGER);
    }
    const fixed = opts.partition === undefined ? undefined : checkInt('partition', opts.partition, 0, limits.topicPartitionsMax - 1);
    // the code a read, a subscribe or a commit gives for a partition the topic does not have
    if (fixed !== undefined && fixed >= t.partitions) throw new ChicagoError('PARTITION_NOT_FOUND', t.name, fixed);
    if (opts.previousSequence !== undefined) {
      // the order it asks for is per partition: the update must land in one
      if (!idempotent) throw new ChicagoError('BAD_REQUEST', `'previousSequence' needs 'producerId' and 'sequence'`);
      checkInt('previousSequence', opts.previousSequence, 0, opts.sequence! - 1);
      if (fixed === undefined && t.partitions > 1) throw new ChicagoError('INVALID_ARGUMENT', 'previousSequence', `topic ${topic} has ${t.partitions} partitions: name the 'partition'`);
    }
    // Unkeyed records of one update stay together (Kafka's sticky partitioner); an idempotent
    // update lands where its retry will, so the retry is recognised.
    const sticky = () => fixed ?? (idempotent ? murmur3(Buffer.from(`${opts.producerId}:${opts.sequence}`)) % t.partitions : this.nextRoundRobin(t));
    return { t, idempotent, fixed, sticky };
  }

  /**
   * One record batch (src/protocol/batch.ts), validated here unless the gateway already did. It
   * goes to its partition as it is; only a keyed batch that a topic of several partitions must
   * split by key is decoded and its records produced one by one (the partition re-encodes them).
   */
  async produceBatch(topic: string, batch: Uint8Array | CheckedBatch, opts: ProduceOptions): Promise<ProduceResult> {
    const { bytes, info, given } = batch instanceof Uint8Array ? { bytes: batch, info: validateBatch(batch), given: false } : batch;
    const { t, idempotent, fixed, sticky } = this.produceTarget(topic, opts);
    if (fixed === undefined && info.keyed && t.partitions > 1) {
      return this.produce(topic, decodeBatch(bytes).records.map(([key, value, headers]) => ({ key: key ?? undefined, value, headers: headers ?? undefined })), opts);
    }
    const tp = fixed ?? sticky();
    const p = streamPartition(t.name, tp, this.partitions);
    if (opts.acks === 'none' && this.shed(p)) return { records: [], replicas: 0 };
    // live tails of this stream take a fresh append from the request's bytes (producedAppend): kept then
    if (given && !this.watchers.watches(streamKeyOf(t.id, tp))) giveBatch(bytes);
    const req = this.write<ActorProduceResult>(p, {
      p, op: 'produce', topicId: t.id, tp, batch: bytes, batchBytes: info.recordBytes, acks: opts.acks,
      ...(idempotent ? { producerId: opts.producerId, sequence: opts.sequence } : {}),
      ...(opts.previousSequence !== undefined ? { previousSequence: opts.previousSequence } : {}),
    }, info.recordBytes).then(({ res, replicas }) => {
      this.metrics.produced.inc({ topic }, res.duplicate ? 0 : res.count);
      return { res, replicas };
    });
    if (opts.acks === 'none') return this.fireAndForget(req, { records: [], replicas: 0 });
    const { res, replicas } = await req;
    // a batch goes to one partition, appended contiguously: one range says where every record went
    if (opts.ranges) return { records: [], ranges: [{ partition: tp, offset: toOffset(res.base), count: info.count }], replicas, ...(res.duplicate ? { duplicate: true } : {}) };
    const out: ProduceResult['records'] = new Array(info.count);
    for (let j = 0; j < info.count; j++) out[j] = { partition: tp, offset: toOffset(res.base + j) };
    return { records: out, replicas, ...(res.duplicate ? { duplicate: true } : {}) };
  }

  async produce(topic: string, records: ProduceRecord[], opts: ProduceOptions): Promise<ProduceResult> {
    const { t, idempotent, fixed, sticky: stickyOf } = this.produceTarget(topic, opts);
    if (records.length === 0) return { records: [], replicas: 0 };
    if (records.length > limits.batchRecordsMax) throw new ChicagoError('TOO_MANY_RECORDS', records.length, limits.batchRecordsMax);
    const sticky = stickyOf();
    const groups = new Map<number, { wire: WireRecord[]; index: number[] }>();
    let bytes = 0;
    for (let i = 0; i < records.length; i++) {
      const r = records[i];
      if (r.key) checkKey(r.key);
      const wire: WireRecord = [r.key ?? null, r.value, checkHeaders(r.headers) ?? null];
      const size = recordBytes(wire);
      if (size > limits.recordBytesMax) throw new ChicagoError('VALUE_TOO_LARGE', size, limits.recordBytesMax);
      bytes += size;
      const tp = fixed ?? (r.key ? recordPartition(r.key, t.partitions) : sticky);
      let g = groups.get(tp);
      if (!g) { g = { wire: [], index: [] }; groups.set(tp, g); }
      g.wire.push(wire);
      g.index.push(i);
    }
    if (bytes > limits.batchBytesMax) throw new ChicagoError('BATCH_TOO_LARGE', bytes, limits.batchBytesMax);
    if (opts.acks === 'none' && [...groups.keys()].some((tp) => this.shed(streamPartition(t.name, tp, this.partitions)))) {
      return { records: [], replicas: 0 };
    }

    const sends = [...groups].map(([tp, g]) => {
      const p = streamPartition(t.name, tp, this.partitions);
      const req = this.write<ActorProduceResult>(p, {
        p, op: 'produce', topicId: t.id, tp, records: g.wire, acks: opts.acks,
        ...(idempotent ? { producerId: opts.producerId, sequence: opts.sequence } : {}),
        ...(opts.previousSequence !== undefined ? { previousSequence: opts.previousSequence } : {}),
      }, bytes);
      return req.then(({ res, replicas }) => {
        this.metrics.produced.inc({ topic }, res.duplicate ? 0 : res.count);
        return { tp, g, res, replicas };
      });
    });
    if (opts.acks === 'none') {
      return this.fireAndForget(Promise.all(sends), { records: [], replicas: 0 });
    }
    const done = await Promise.all(sends);
    const out: ProduceResult['records'] = new Array(records.length);
    let duplicate = false;
    // An update spread over partitions is held as many times as its least-copied part.
    let replicas = Infinity;
    for (const { tp, g, res, replicas: n } of done) {
      duplicate ||= res.duplicate;
      replicas = Math.min(replicas, n);
      g.index.forEach((i, j) => { out[i] = { partition: tp, offset: toOffset(res.base + j) }; });
    }
    if (opts.ranges) return { records: [], ranges: rangesOf(out), replicas, ...(duplicate ? { duplicate } : {}) };
    return { records: out, replicas, ...(duplicate ? { duplicate } : {}) };
  }

  private nextRoundRobin(t: TopicMeta): number {
    const n = ((this.roundRobin.get(t.name) ?? -1) + 1) % t.partitions;
    this.roundRobin.set(t.name, n);
    return n;
  }

  /**
   * acks=none: answer at once. Still bounded: past the fire-and-forget allowance the update is
   * dropped and counted, never queued without limit.
   */
  private fireAndForget<T>(sent: Promise<unknown>, answer: T): T {
    sent.catch((e) => this.metrics.dropped.inc({ reason: asChicagoError(e).code }));
    return answer;
  }

  /** acks=none past the allowance: the update is not sent at all, only counted. */
  private shed(p: number): boolean {
    if (this.workerOf(p).inFlight < limits.fireAndForgetQueuedMax) return false;
    this.metrics.dropped.inc({ reason: 'queue_full' });
    return true;
  }

  async fetch(topic: string, partition: number, opts: FetchOptions): Promise<FetchResult> {
    checkName('topic', topic);
    const t = this.catalog.get(topic);
    const tp = this.checkPartition(t, partition);
    const maxRecords = checkInt('maxRecords', opts.maxRecords, 1, limits.fetchRecordsMax);
    const maxBytes = checkInt('maxBytes', opts.maxBytes, 1, limits.fetchBytesMax);
    const waitMs = checkInt('waitMs', opts.waitMs, 0, limits.fetchWaitMsMax);
    const from = checkStart(opts.from);
    const p = streamPartition(t.name, tp, this.partitions);
    // A long poll waits at the leader: only there do appends arrive.
    const reply = await this.call<FetchReply>(p, { p, op: 'fetch', topicId: t.id, tp, from, maxRecords, maxBytes, ...(waitMs > 0 ? { waitMs } : {}), ...(opts.batches ? { batches: true } : {}) });
    if (waitMs > 0 && this.catalog.find(topic)?.id !== t.id) throw new ChicagoError('TOPIC_NOT_FOUND', topic);
    const ends = { nextOffset: toOffset(reply.next), startOffset: toOffset(reply.start), endOffset: toOffset(reply.end) };
    // a node of an older build leading the partition answers records: they go as records
    if (opts.batches && reply.batches) return { records: [], batches: reply.batches, firstOffset: toOffset(reply.first ?? reply.next), ...ends };
    return { records: reply.records.map((r) => toStored(tp, r)), ...ends };
  }

  async tail(topic: string, partition: number, from: StartPosition, creditBytes: number, sink: TailSink): Promise<Tail> {
    checkName('topic', topic);
    const t = this.catalog.get(topic);
    const tp = this.checkPartition(t, partition);
    const start = checkStart(from);
    const p = streamPartition(t.name, tp, this.partitions);
    // Resolve the start position to an offset once; the tail then follows offsets.
    const first = await this.call<FetchReply>(p, { p, op: 'fetch', topicId: t.id, tp, from: start, maxRecords: 1, maxBytes: 1 });
    const position = first.records.length > 0 ? first.records[0][0] : first.next;
    const skey = streamKeyOf(t.id, tp);
    this.watchers.observeEnd(skey, first.end);
    return this.watchers.openTail(skey, tp, position, Math.min(creditBytes, limits.subscriberCreditBytesMax), {
      read: (offset, maxRecords, maxBytes, waitMs, batches) =>
        this.call<FetchReply>(p, { p, op: 'fetch', topicId: t.id, tp, from: { kind: 'offset', offset }, maxRecords, maxBytes, ...(waitMs > 0 ? { waitMs } : {}), ...(batches ? { batches } : {}) }),
      appendsArriveHere: () => this.coordinator.view(p)?.leader === this.self,
    }, sink);
  }

  private checkPartition(t: TopicMeta, partition: number): number {
    const tp = Number(partition);
    if (!Number.isSafeInteger(tp) || tp < 0 || tp >= t.partitions) throw new ChicagoError('PARTITION_NOT_FOUND', t.name, partition);
    return tp;
  }

  // ---- consumer groups ----

  async commitOffset(group: string, topic: string, partition: number, offset: number, fence?: CommitFence): Promise<void> {
    checkName('group', group);
    if (fence) {
      // through the group coordinator: it refuses a member that does not own the partition at this generation
      checkName('member', fence.member);
      checkName('topic', topic);
      await this.groupCall(group, { op: 'groupCommit', group, member: fence.member, generation: checkInt('generation', fence.generation, 0, limits.offsetMax), topic, partition, offset });
      return;
    }
    checkName('topic', topic);
    const t = this.catalog.get(topic);
    const tp = this.checkPartition(t, partition);
    const off = checkOffset(offset);
    const p = streamPartition(t.name, tp, this.partitions);
    await this.write(p, { p, op: 'commit', group, topicId: t.id, tp, offset: off, acks: 'all' });
    // Groups whose lag /metrics reports: bounded; groups past the bound still work, unreported.
    if (this.knownGroups.size < limits.lagReportedGroupsMax) this.knownGroups.add(group);
  }

  /** the groups with committed offsets, in name order, at most `limit` (every partition asked) */
  async groupNames(limit: number): Promise<string[]> {
    checkInt('limit', limit, 1, limits.groupNamesMax);
    const perPartition = await Promise.all(Array.from({ length: this.partitions }, (_, p) =>
      this.call<string[]>(p, { p, op: 'groupNames', limit })));
    return [...new Set(perPartition.flat())].sort().slice(0, limit);
  }

  async groupOffsets(group: string, topic?: string): Promise<GroupOffset[]> {
    checkName('group', group);
    const only = topic === undefined ? undefined : this.catalog.get(checkName('topic', topic));
    const perPartition = await Promise.all(Array.from({ length: this.partitions }, (_, p) =>
      this.call<GroupOffsetReply[]>(p, { p, op: 'groupOffsets', group })));
    const now = Date.now();
    const out: GroupOffset[] = [];
    for (const r of perPartition.flat()) {
      const t = this.catalog.byId(r.topicId);
      if (!t || (only && only.id !== t.id)) continue; // offsets of a deleted topic incarnation
      out.push({
        topic: t.name, partition: r.tp, offset: toOffset(r.offset), committedAtMs: r.at, endOffset: toOffset(r.end),
        lagRecords: Math.max(0, r.end - r.offset),
        lagSeconds: r.oldestUncommittedTs === null ? 0 : Math.max(0, (now - r.oldestUncommittedTs) / 1000),
      });
    }
    return out.sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
  }

  /** Refused (GROUP_NOT_EMPTY) while the group has live members; NOT_FOUND when it has neither members nor offsets. */
  async groupDelete(group: string): Promise<{ removed: number }> {
    checkName('group', group);
    return this.groupCall<{ removed: number }>(group, { op: 'groupDelete', group });
  }

  /** Every committed offset of the group, in every partition (deleted topics' included), removed; how many. */
  private async deleteGroupOffsets(group: string): Promise<number> {
    const perPartition = await Promise.all(Array.from({ length: this.partitions }, (_, p) =>
      this.call<GroupOffsetReply[]>(p, { p, op: 'groupOffsets', group })));
    this.knownGroups.delete(group);
    // one write at a time per partition: at most one per partition in flight
    const removed = await Promise.all(perPartition.map(async (rows, p) => {
      for (const r of rows) await this.write(p, { p, op: 'uncommit', group, topicId: r.topicId, tp: r.tp, acks: 'all' });
      return rows.length;
    }));
    return removed.reduce((a, b) => a + b, 0);
  }

  // ---- group membership (docs/protocol.md "Consumer groups"): coordinated by the leader of the group's home partition ----

  async groupJoin(group: string, opts: GroupJoinOptions): Promise<GroupMembership> {
    checkName('group', group);
    if (!Array.isArray(opts.topics) || opts.topics.length === 0) throw new ChicagoError('INVALID_ARGUMENT', 'topics', 'at least one topic');
    const topics = opts.topics.map((t) => this.catalog.get(checkName('topic', t)).name);
    const sessionTimeoutMs = checkInt('sessionTimeoutMs', opts.sessionTimeoutMs ?? limits.groupSessionTimeoutMsDefault, limits.groupSessionTimeoutMsMin, limits.groupSessionTimeoutMsMax);
    if (opts.member !== undefined) checkName('member', opts.member);
    return this.groupCall<GroupMembership>(group, { op: 'groupJoin', group, topics, sessionTimeoutMs, ...(opts.member !== undefined ? { member: opts.member } : {}) });
  }

  async groupHeartbeat(group: string, member: string, generation: number): Promise<GroupMembership> {
    checkName('group', group);
    checkName('member', member);
    return this.groupCall<GroupMembership>(group, { op: 'groupHeartbeat', group, member, generation: checkInt('generation', generation, 0, limits.offsetMax) });
  }

  async groupLeave(group: string, member: string): Promise<void> {
    checkName('group', group);
    checkName('member', member);
    await this.groupCall(group, { op: 'groupLeave', group, member });
  }

  async groupMembers(group: string): Promise<GroupDescription> {
    checkName('group', group);
    return this.groupCall<GroupDescription>(group, { op: 'groupDescribe', group });
  }

  private groupCall<T>(group: string, req: GroupRequest): Promise<T> {
    const p = groupPartition(group, this.partitions);
    // a write: a forwarded join or commit whose answer is lost has an unknown outcome
    return this.write<T>(p, { p, ...req } as RequestBody).then((r) => r.res);
  }

  // ---- status, metrics, lifecycle ----

  private assertUp(): void {
    if (this.state !== 'up') throw new ChicagoError(this.state === 'starting' ? 'NOT_READY' : 'SHUTTING_DOWN', this.state);
  }

  get serving(): boolean { return this.state === 'up'; }

  /** GET /v1/health: ok, degraded (serving, with reasons), or unavailable */
  health(): { status: 'ok' | 'degraded' | 'unavailable'; reasons?: string[] } {
    if (this.state !== 'up') return { status: 'unavailable', reasons: [`node is ${this.state}`] };
    const reasons: string[] = [];
    if (this.disk.full) reasons.push(`disk full: ${this.disk.reason()}; writes are refused, reads and deletes work`);
    return reasons.length > 0 ? { status: 'degraded', reasons } : { status: 'ok' };
  }

  /** `take`: the metrics scrape, which ends each worker's loop-delay window; other readers leave it open */
  async workerStats(take: boolean): Promise<WorkerStats[]> {
    return Promise.all(this.workers.map((w) => withDeadline(w.control.stats(take), 5000, `worker ${w.index} stats`)));
  }

  async status(): Promise<NodeStatus> {
    const stats = this.state === 'up' ? await this.workerStats(false) : [];
    const local = new Map(stats.flatMap((s, worker) => s.partitions.map((p) => [p.id, { ...p, worker }] as const)));
    const isrOf = (p: number) => this.coordinator.isrOf(p);
    return {
      ...Object.fromEntries([...this.statusFields].map(([k, f]) => [k, f()])),
      nodeId: this.config.nodeId,
      state: this.state === 'stopped' ? 'stopping' : this.state,
      version: VERSION,
      clustered: this.coordinator.clustered,
      workers: this.workers.length,
      syncPolicy: this.config.sync.policy,
      nodes: this.coordinator.nodes(),
      ...(this.coordinator.clustered ? {
        rebalance: this.rebalanceStatus(stats),
      } : {}),
      partitions: [...this.coordinator.hosted()].map(([id, v]) => {
        const mine = local.get(id);
        return { id, epoch: v.epoch, leader: v.leader, replicas: v.replicas, isr: isrOf(id), role: mine?.role ?? 'none', seq: mine?.seq ?? 0, worker: mine?.worker ?? -1 };
      }).sort((a, b) => a.id - b.id),
    };
  }

  /** Components running inside the node (the Kafka bridge) add a status field and metrics. */
  private readonly statusFields = new Map<string, () => unknown>();
  private readonly metricsSources: Array<() => Promise<string>> = [];
  addStatusField(name: string, value: () => unknown): void { this.statusFields.set(name, value); }
  addMetricsSource(render: () => Promise<string>): void { this.metricsSources.push(render); }

  /**
   * Where requests should go: each partition's leader and every node's URL. Clients route by it
   * (src/runtime/hash.ts gives a key's partition) and fetch it again when told NOT_LEADER.
   */
  placement(): { clustered: boolean; partitions: number; nodes: Array<{ id: string; url: string; state: string }>; leaders: Array<string | null>; epochs: number[] } {
    const leaders: Array<string | null> = [];
    const epochs: number[] = [];
    for (let p = 0; p < this.partitions; p++) {
      const v = this.coordinator.view(p);
      leaders.push(v?.leader ?? null);
      epochs.push(v?.epoch ?? 0);
    }
    return { clustered: this.coordinator.clustered, partitions: this.partitions, nodes: this.coordinator.nodes(), leaders, epochs };
  }

  /**
   * Rebalance progress as this node sees it; bytes left are estimated from the copies this node
   * has received so far (bytes per completed copy × moves left), as partition sizes are not tracked.
   */
  private rebalanceStatus(stats: WorkerStats[]): NonNullable<NodeStatus['rebalance']> {
    const progress = this.coordinator.progress();
    const snapshotBytesSent = stats.reduce((n, s) => n + s.snapshotBytesSent, 0);
    const installed = stats.reduce((n, s) => n + s.snapshotsInstalled, 0);
    const received = stats.reduce((n, s) => n + s.snapshotBytesReceived, 0);
    const perMove = installed > 0 ? received / installed : undefined;
    return { ...progress, snapshotBytesSent, bytesLeftEstimate: perMove === undefined ? null : Math.round(perMove * progress.moving) };
  }

  /** A digest of this node's own copy of a partition, to compare replicas. */
  async digest(p: number): Promise<DigestReply> {
    checkInt('partition', p, 0, this.partitions - 1);
    return this.local<DigestReply>(p, { p, op: 'digest' }, 0, false).then((r) => r.res);
  }

  /** Tests only: a KV value written to this replica alone, outside replication (see http.ts). */
  async plantDivergence(p: number, ks: string, key: Uint8Array, value: Uint8Array): Promise<void> {
    checkInt('partition', p, 0, this.partitions - 1);
    checkName('keyspace', ks);
    checkKey(key);
    checkValue(value);
    await this.local(p, { p, op: 'plantDivergence', ks, key, value }, 0, false);
  }

  /** Refresh the gauges that are read from the workers, then render. */
  async renderMetrics(): Promise<string> {
    if (this.state === 'up') {
      const m = this.metrics;
      m.diskFree.set(this.disk.availBytes);
      m.memoryBuffered.set(this.memory.used);
      m.memoryRefused.set(this.memory.refused);
      const stats = await this.workerStats(true);
      let expired = 0, trimmed = 0, fsyncs = 0, checks = 0, divergences = 0, snapshotBytes = 0;
      const delay = (thread: string, d: LoopDelayMs) => {
        m.eventLoopDelay.set({ thread, quantile: '0.5' }, d.p50 / 1000);
        m.eventLoopDelay.set({ thread, quantile: '0.99' }, d.p99 / 1000);
        m.eventLoopDelay.set({ thread, quantile: '1' }, d.max / 1000);
      };
      delay('main', this.loopDelay.take());
      stats.forEach((s, i) => {
        delay(`worker-${i}`, s.eventLoopDelayMs);
        expired += s.expiredKeys; trimmed += s.trimmedBatches; fsyncs += s.fsyncs;
        checks += s.digestChecks; divergences += s.divergences; snapshotBytes += s.snapshotBytesSent;
        for (const p of s.partitions) {
          m.partitionSeq.set({ partition: String(p.id) }, p.seq);
          for (const st of p.streams) {
            const t = this.catalog.byId(st.topicId);
            if (!t) continue;
            const labels = { topic: t.name, partition: String(st.tp) };
            m.streamStart.set(labels, st.start);
            m.streamEnd.set(labels, st.end);
            m.streamBytes.set(labels, st.bytes);
          }
        }
      });
      m.expiredKeys.set(expired);
      m.trimmedBatches.set(trimmed);
      m.fsyncs.set(fsyncs);
      m.digestChecks.set(checks);
      m.divergences.set(divergences);
      m.snapshotBytes.set(snapshotBytes);
      m.replicationFrames.set({ link: 'direct' }, stats.reduce((n, s) => n + s.framesDirect, 0));
      m.replicationDropped.set(stats.reduce((n, s) => n + s.linkDrops + s.framesNoLink + s.backlogDrops, 0));
      if (this.coordinator.clustered) {
        const progress = this.coordinator.progress();
        m.rebalanceMoving.set(progress.moving);
        m.rebalanceEta.set(progress.etaSeconds ?? -1);
      }
      for (const g of this.knownGroups) {
        for (const o of await this.groupOffsets(g)) {
          const labels = { group: g, topic: o.topic, partition: String(o.partition) };
          m.groupLagRecords.set(labels, o.lagRecords);
          m.groupLagSeconds.set(labels, o.lagSeconds);
        }
      }
    }
    const own = await this.metrics.registry.metrics();
    const extra = await Promise.all(this.metricsSources.map((f) => f()));
    return [own, ...extra].map((t) => (t.endsWith('\n') ? t : `${t}\n`)).join('');
  }

  /** Run TTL expiry and retention on every worker now. */
  async maintain(): Promise<{ expired: number; trimmedBatches: number }> {
    const r = await Promise.all(this.workers.map((w) => w.control.maintain()));
    return r.reduce((a, b) => ({ expired: a.expired + b.expired, trimmedBatches: a.trimmedBatches + b.trimmedBatches }), { expired: 0, trimmedBatches: 0 });
  }

  /** A graceful leave hands every replica here to other nodes first, serving meanwhile. */
  async handOff(): Promise<void> {
    if (!this.coordinator?.clustered || this.state !== 'up') return;
    const moved = await this.coordinator.handOff(limits.leaveHandOffMs).catch(() => false);
    this.log.info({ moved }, moved ? 'replicas handed off' : 'left without handing off every replica');
  }

  /** Drain in-flight work, stop the workers, then close the database: the only safe order. */
  async stop(): Promise<void> {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'stopping';
    this.pacerTimer?.stop();
    this.groups?.stop();
    this.watchers.closeAll(new ChicagoError('SHUTTING_DOWN'));
    // Leave the cluster first, so the others fail over at once instead of waiting for silence.
    await this.coordinator?.stop().catch((err) => this.log.warn({ err }, 'leaving the cluster'));
    await Promise.allSettled(this.workers.map((w) => w.stop()));
    gatewayHops.dump(); // the rows since the last periodic dump (CHICAGO_HOP_TIMES)
    if (this.db) await this.db.close();
    this.disk?.stop();
    this.unlockDir?.();
    this.state = 'stopped';
    this.log.info('node stopped');
  }
}

function checkStart(from: StartPosition): StartPosition {
  switch (from?.kind) {
    case 'earliest': case 'latest': return from;
    case 'offset': return { kind: 'offset', offset: checkOffset(from.offset) };
    case 'timestamp': return { kind: 'timestamp', timestampMs: checkInt('since', from.timestampMs, 0, Number.MAX_SAFE_INTEGER) };
    case 'bytes': return { kind: 'bytes', bytes: checkInt('bytes', from.bytes, 1, Number.MAX_SAFE_INTEGER) };
    default: throw new ChicagoError('INVALID_ARGUMENT', 'start position', JSON.stringify(from));
  }
}


/** The TLS files of the config as PEM texts; an unreadable one is a configuration error. */
function readLinkTls(tls: TlsConfig): LinkTls {
  const read = (what: string, file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`tls.${what}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  };
  return { cert: read('certFile', tls.certFile), key: read('keyFile', tls.keyFile), ...(tls.caFile ? { ca: read('caFile', tls.caFile) } : {}) };
}

const GROUP_OPS: ReadonlySet<string> = new Set(['groupJoin', 'groupHeartbeat', 'groupLeave', 'groupDescribe', 'groupCommit', 'groupDelete']);
function isGroupRequest(b: RequestBody): b is Extract<RequestBody, GroupRequest> {
  return GROUP_OPS.has(b.op);
}

/** The retention rules after `c` (null removes a rule), checked. */
function retentionAfter(now: RetentionSpec, c: RetentionChange): RetentionSpec {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new ChicagoError('INVALID_ARGUMENT', 'retention', 'an object of ms, bytes, untilGroup (null removes one)');
  for (const k of Object.keys(c)) if (k !== 'ms' && k !== 'bytes' && k !== 'untilGroup') throw new ChicagoError('INVALID_ARGUMENT', 'retention', `unknown rule ${k.slice(0, 40)}`);
  const next: RetentionSpec = { ...now };
  if (c.ms !== undefined) { if (c.ms === null) delete next.ms; else next.ms = checkInt('retention.ms', c.ms, 1, Number.MAX_SAFE_INTEGER); }
  if (c.bytes !== undefined) { if (c.bytes === null) delete next.bytes; else next.bytes = checkInt('retention.bytes', c.bytes, 1, Number.MAX_SAFE_INTEGER); }
  if (c.untilGroup !== undefined) { if (c.untilGroup === null) delete next.untilGroup; else next.untilGroup = checkName('group', c.untilGroup); }
  return next;
}

/**
 * A produce as live tails on this node get it. Its batch is decoded only when a tail of records
 * asks, and the bytes the partition stored are made only when a tail of batches asks (each once):
 * the partition stamps the same bytes in the same way (partition.ts produce).
 */
function producedAppend(body: { batch?: Uint8Array; records?: WireRecord[] }, res: ActorProduceResult): Append {
  // a batch given to the partition worker (giveBatch) is gone from here: live tails read it
  if (body.batch && body.batch.byteLength === 0) return { base: res.base, ts: res.ts, count: res.count };
  let records: WireRecord[] | undefined;
  let stored: Uint8Array | undefined;
  return {
    base: res.base, ts: res.ts, count: res.count,
    records: () => (records ??= body.records ?? decodeBatch(body.batch!).records),
    batch: () => {
      if (stored) return stored;
      const b = body.batch ? Buffer.from(body.batch) : encodeBatch(body.records!.map(([key, value, headers]) => ({ key, value, headers })), res.ts);
      stampBatch(b, res.base, res.ts);
      return (stored = b);
    },
  };
}
