// Data-plane messages between the gateway thread and a partition worker (msgpack over a MessagePort).
import type { WireRecord } from './partition.js';
import type { Acks, PeerMessage, ReplicaView } from './replica.js';
import type { NodeId } from '../runtime/ids.js';
import type { LoopDelayMs } from '../runtime/loop-delay.js';
import type { ErrorCode } from '../runtime/errors.js';
import type { RetentionSpec, StartPosition } from '../protocol/api.js';

export type Request =
  | { id: number; p: number; op: 'kvPut'; ks: string; key: Uint8Array; value: Uint8Array; ttlMs?: number; acks: Acks }
  | { id: number; p: number; op: 'kvDel'; ks: string; key: Uint8Array; acks: Acks }
  | { id: number; p: number; op: 'kvGet'; ks: string; key: Uint8Array }
  | { id: number; p: number; op: 'kvScan'; ks: string; prefix?: Uint8Array; after?: Uint8Array; limit: number; /** the page's byte budget (default scanBytesMax) */ bytesMax?: number }
  | { id: number; p: number; op: 'produce'; topicId: number; tp: number; records?: WireRecord[]; batch?: Uint8Array; batchBytes?: number; /** set between threads: the batch travels beside the message, at this index */ batchAt?: number; /** set between threads: that buffer is the caller's own, given away (the worker hands it back with a NOT_LEADER answer) */ batchGiven?: true; producerId?: string; sequence?: number; previousSequence?: number; acks: Acks }
  | { id: number; p: number; op: 'commit'; group: string; topicId: number; tp: number; offset: number; acks: Acks }
  /** removes a group's committed offset of one stream (group delete) */
  | { id: number; p: number; op: 'uncommit'; group: string; topicId: number; tp: number; acks: Acks }
  // waitMs: a long poll, held by the leader's node (not the worker) until an append or waitMs
  | { id: number; p: number; op: 'fetch'; topicId: number; tp: number; from: StartPosition; maxRecords: number; maxBytes: number; waitMs?: number; batches?: boolean }
  | { id: number; p: number; op: 'streamInfo'; topicId: number; tp: number }
  | { id: number; p: number; op: 'groupOffsets'; group: string }
  | { id: number; p: number; op: 'groupNames'; limit: number }
  | { id: number; p: number; op: 'dropStream'; topicId: number; tp: number; acks: Acks }
  /** a digest of the partition's content, to compare replicas */
  | { id: number; p: number; op: 'digest' }
  /** tests only: a KV value written to this replica alone, outside replication */
  | { id: number; p: number; op: 'plantDivergence'; ks: string; key: Uint8Array; value: Uint8Array }
  /** replication traffic from another node (no answer): a replicationFrame (runtime/codec.ts) */
  | { id: number; p: number; op: 'peer'; frame: Uint8Array }
  /** the coordinator's current epoch, leader and replica set for the partition (no answer) */
  | { id: number; p: number; op: 'view'; view: ReplicaView }
  /** consumer group coordination: answered by the node leading the group's home partition, never by a worker */
  | ({ id: number; p: number } & GroupRequest);

/** What a replica sends to another node's replica of its partition. */
export type ReplicationMessage = PeerMessage | SnapshotChunk | SnapshotAck | DigestCheck;

export type RequestOp = Request['op'];
/** A request as the caller hands it over: the handle assigns the id. */
export type RequestBody = Request extends infer R ? (R extends { id: number } ? Omit<R, 'id'> : never) : never;

/** the requests that change a partition (their outcome may be unknown; the rest only read) */
export const MUTATIONS: ReadonlySet<RequestOp> = new Set<RequestOp>(['kvPut', 'kvDel', 'produce', 'commit', 'uncommit', 'dropStream']);

export type Response =
  /** `replicas`: copies known to hold a write when it was answered */
  | { id: number; ok: true; res: unknown; replicas?: number }
  /** `batch`: a produce's batch the gateway gave away, handed back with NOT_LEADER (the write did not run; the router sends it again) */
  | { id: number; ok: false; err: { code: ErrorCode; args: unknown[] }; batch?: Uint8Array };

/** Everything a worker sends to the gateway thread in one message. */
export interface WorkerOutput {
  replies?: Response[];
  /** streams (streamKeyOf) whose end readers may see moved, a leader's appends being confirmed in `epoch` */
  visible?: Array<[skey: string, end: number, epoch: number]>;
}

/**
 * One piece of a full copy of a partition, sent when a follower's history diverged or is older
 * than the leader's log. Part 0 tells the follower to drop what it has; the last part carries
 * the position the copy represents.
 */
export interface SnapshotChunk {
  t: 'snap';
  p: number;
  epoch: number;
  leader: NodeId;
  /** which copy this is part of (ids grow across leaders); the follower reports it once installed */
  copy: number;
  part: number;
  entries: Array<[Uint8Array, Uint8Array]>;
  last: boolean;
}
/**
 * The follower has written part `part` of copy `copy`. Its sender waits for this before the next
 * part, so a copy goes at the pace the follower absorbs and never piles up in the link, where
 * heartbeats and appends would wait behind it.
 */
export interface SnapshotAck { t: 'snapAck'; p: number; from: NodeId; copy: number; part: number }
export interface DigestReply { partition: number; seq: number; epoch: number; digest: string; ranges: Record<string, string>; keys: number }

/**
 * Anti-entropy: a leader's digests at `seq`. A follower compares its own when it reaches that seq;
 * a range that differs means its copy diverged, and it asks its leader for a fresh one.
 */
export interface DigestCheck { t: 'digest'; p: number; epoch: number; leader: NodeId; seq: number; ranges: Record<string, string> }

/** [offset, timestampMs, key, value, headers] */
export type FetchedRecord = [offset: number, ts: number, key: Uint8Array | null, value: Uint8Array, headers: Record<string, string> | null];
/**
 * `batches` (asked with `batches: true`, and then `records` is empty): the stored record batches
 * that hold the offsets from `first` to `next`, whole and as stored; the first may start before
 * `first` (a reader skips those records).
 */
export interface FetchReply { records: FetchedRecord[]; next: number; start: number; end: number; batches?: Uint8Array[]; first?: number }
export interface StreamInfoReply { start: number; end: number; bytes: number; lastTs: number }
export interface KvGetReply { value: Uint8Array; version: number; expiresAtMs?: number }
export interface GroupOffsetReply { topicId: number; tp: number; offset: number; at: number; end: number; oldestUncommittedTs: number | null }

export interface TopicRetention { topicId: number; retention: RetentionSpec }

/** Control-plane calls into a worker (comlink). */
export interface WorkerControl {
  open(spec: {
    self: NodeId;
    logLevel: string;
    partitions: Array<{ p: number; view: ReplicaView }>;
    syncPolicy: string;
    groupIntervalMs: number;
    maintenanceIntervalMs: number;
    antiEntropyIntervalMs: number;
    replicationTimeoutMs: number;
    /** the data dir was of an older format: rewrite log entries that repeat their batch (recovery.ts compactLog) */
    compactLog?: boolean;
    /** in a cluster: the node's address, where the worker listens for its peers' workers (net/worker-links.ts) */
    linkHost?: string;
    /** what a peer's worker must present to link to this one (the node's link key) */
    linkKey?: string;
    /** with TLS configured: certificate, key and cluster CA (PEM) for the links */
    linkTls?: { cert: string; key: string; ca?: string };
  }): Promise<{ linkUrl?: string }>;
  /** a peer node's workers' link URLs, in worker order, and its link key (from its hello); [] when it left */
  setPeerLinks(node: string, urls: string[], key: string): void;
  setRetention(topics: TopicRetention[]): void;
  /** run TTL sweep and retention now (tests and shutdown use it) */
  maintain(): Promise<{ expired: number; trimmedBatches: number }>;
  /** counters and positions; `take` (the metrics scrape) also starts a new loop-delay window */
  stats(take: boolean): WorkerStats;
  /** the hosted replicas' positions alone (the positions board's fallback: no counters) */
  positions(): WorkerStats['partitions'];
  /**
   * This node is about to propose itself to lead partition `p` in `epoch`: for a while its replica
   * refuses copies from older epochs (one would wipe what it is being elected for). False when its
   * copy is incomplete: it must not propose itself.
   */
  claim(p: number, epoch: number): boolean;
  /**
   * This node is about to hand the leadership of `p` to `to`: its replica refuses writes
   * (NOT_LEADER: they did not run, and routers retry at the next leader) until it follows the new
   * leader, release(p), or `fenceMs` passes. True once `to` holds every entry it has and no write
   * is pending (handoff.ts successorReady), within `waitMs`; false if that takes longer (it takes
   * writes again at once).
   */
  handOff(p: number, to: string, waitMs: number, fenceMs: number): Promise<boolean>;
  /** the record change a hand-off was for did not happen: `p` takes writes again */
  release(p: number): Promise<void>;
  /** stop accepting work, finish what is queued and fsync; the main thread closes the database */
  drain(): Promise<void>;
}

export interface WorkerStats {
  eventLoopDelayMs: LoopDelayMs;
  partitions: Array<{
    id: number; epoch: number; seq: number; role: string; leader: string | null; replicas: string[];
    /** the copy is incomplete (a snapshot is being received, or it was just dropped): never electable */
    incomplete: boolean;
    /** the in-sync set this replica counts, and (leaders) the highest seq confirmed to acks=all writers */
    isr: string[];
    /** the version of the view the replica holds (ReplicaView.version) */
    view: number;
    confirmedSeq: number;
    matched: Record<string, number>;
    streams: Array<{ topicId: number; tp: number; start: number; end: number; bytes: number }>;
  }>;
  expiredKeys: number;
  trimmedBatches: number;
  fsyncs: number;
  /** anti-entropy: digest comparisons made, and divergences found (each repaired by a fresh copy) */
  digestChecks: number;
  divergences: number;
  snapshotBytesSent: number;
  snapshotBytesReceived: number;
  snapshotsInstalled: number;
  /** replication frames dropped because a direct link to another node's worker was backed up */
  linkDrops: number;
  /** replication frames sent to another node's worker (the one way they travel) */
  framesDirect: number;
  /** replication frames dropped because no direct link to their node's worker was up (leaders resend) */
  framesNoLink: number;
  /** replication frames from other nodes dropped because this worker was workerBacklogMessagesMax behind */
  backlogDrops: number;
}

/** group requests, forwarded to the node that coordinates the group */
export type GroupRequest =
  | { op: 'groupJoin'; group: string; topics: string[]; member?: string; sessionTimeoutMs: number }
  | { op: 'groupHeartbeat'; group: string; member: string; generation: number }
  | { op: 'groupLeave'; group: string; member: string }
  | { op: 'groupDescribe'; group: string }
  | { op: 'groupCommit'; group: string; member: string; generation: number; topic: string; partition: number; offset: number }
  | { op: 'groupDelete'; group: string };
