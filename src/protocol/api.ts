// What the gateway (HTTP and WebSocket) may ask of a node. Both edges call only this.
import type { Offset, Seq } from '../runtime/ids.js';
import type { CheckedBatch } from './batch.js';

export type Acks = 'none' | 'one' | 'all';

export interface KvWriteOptions { acks: Acks; ttlSeconds?: number }
export interface KvWriteResult {
  /** the partition sequence of the write; 0 when acks=none (not known yet) */
  version: Seq;
  /** copies known to hold the write when the ack was sent (0 for acks=none) */
  replicas: number;
}
export interface KvDeleteResult extends KvWriteResult { existed: boolean }
export interface KvEntry { key: Uint8Array; value: Uint8Array; version: Seq; expiresAtMs?: number }
export interface KvScanOptions { prefix?: Uint8Array; after?: Uint8Array; limit: number }
export interface KvScanResult { items: KvEntry[]; /** pass as `after` for the next page */ next?: Uint8Array }

export interface RetentionSpec {
  ms?: number;
  bytes?: number;
  /** records this group has committed may be removed ("retain until pushed to Kafka") */
  untilGroup?: string;
}
/** A retention change: a value sets the rule, null removes it, an absent key leaves it as it is. */
export type RetentionChange = { [K in keyof RetentionSpec]?: RetentionSpec[K] | null };
/** what an alter changes: retention rules, and/or a higher partition count (never lower) */
export interface TopicChange { retention?: RetentionChange; partitions?: number }

export interface TopicSpec { name: string; partitions: number; replicas: number; retention: RetentionSpec }
export interface PartitionInfo {
  partition: number;
  startOffset: Offset;
  endOffset: Offset;
  bytes: number;
  /** null while its partition elects a leader */
  leader: string | null;
  replicas: string[];
}
export interface TopicInfo extends TopicSpec { createdAtMs: number; partitionsInfo?: PartitionInfo[] }

export interface ProduceRecord {
  key?: Uint8Array;
  value: Uint8Array;
  headers?: Record<string, string>;
}
export interface ProduceOptions {
  acks: Acks;
  /** explicit target partition; otherwise keyed → hash(key), and the unkeyed records of one update
   *  go together to the next partition in turn (Kafka's sticky partitioner) */
  partition?: number;
  /** idempotence: a retry of (producerId, sequence) never appends twice */
  producerId?: string;
  sequence?: number;
  /** pipelining: the sequence of this producer's batch sent just before this one to the same
   *  partition; the node refuses with SEQUENCE_GAP (retryable) until it holds that batch */
  previousSequence?: number;
  /** answer with `ranges` instead of one entry per record (the compact produce answer) */
  ranges?: boolean;
}
/**
 * The HTTP produce's Accept value that asks for the compact answer: `{"ranges":[{"partition","offset","count"}],
 * "replicas","duplicate"?}` instead of one `{"partition","offset"}` per record. A node that predates it
 * ignores it and answers `records`.
 */
export const PRODUCE_RANGES_TYPE = 'application/vnd.chicago.produce-ranges+json';
/** Input records `[i, i + count)` in order landed at `offset, offset + 1, …` of `partition`. */
export interface ProduceRange { partition: number; offset: Offset; count: number }
/** Records in input order as runs on one partition at consecutive offsets (keyed records spread over partitions make more runs). */
export function rangesOf(records: ProduceResult['records']): ProduceRange[] {
  const out: ProduceRange[] = [];
  let last: ProduceRange | undefined;
  for (const r of records) {
    if (last && r.partition === last.partition && r.offset === last.offset + last.count) last.count++;
    else out.push((last = { partition: r.partition, offset: r.offset, count: 1 }));
  }
  return out;
}
/** The compact produce answer (acks=none: no ranges). */
export function compactAnswer(r: ProduceResult): { ranges: ProduceRange[]; replicas: number; duplicate?: true } {
  return { ranges: r.ranges ?? rangesOf(r.records), replicas: r.replicas, ...(r.duplicate ? { duplicate: true as const } : {}) };
}

export interface ProduceResult {
  /** one per input record, in input order; empty for acks=none, and when `ranges` holds them */
  records: Array<{ partition: number; offset: Offset }>;
  /** asked for (ProduceOptions.ranges): the records as runs in input order, one per batch appended to one partition */
  ranges?: ProduceRange[];
  replicas: number;
  /** true when this was a retry the node had already appended */
  duplicate?: boolean;
}

export interface StoredRecord {
  partition: number;
  offset: Offset;
  timestampMs: number;
  key?: Uint8Array;
  value: Uint8Array;
  headers: Record<string, string>;
}
export type StartPosition =
  | { kind: 'offset'; offset: number }
  | { kind: 'timestamp'; timestampMs: number }
  | { kind: 'earliest' }
  | { kind: 'latest' }
  /** the newest records that fit in this many bytes ("tail -c") */
  | { kind: 'bytes'; bytes: number };
/** `batches`: answer the stored record batches as they are (FetchResult.batches), not records */
export interface FetchOptions { from: StartPosition; maxRecords: number; maxBytes: number; waitMs: number; batches?: boolean }
/**
 * With FetchOptions.batches, `records` is empty and `batches` holds the stored record batches
 * (src/protocol/batch.ts) with the offsets from `firstOffset` to `nextOffset`, whole: the first
 * may begin before `firstOffset`.
 */
export interface FetchResult { records: StoredRecord[]; nextOffset: Offset; startOffset: Offset; endOffset: Offset; batches?: Uint8Array[]; firstOffset?: Offset }

export interface GroupOffset {
  topic: string;
  partition: number;
  offset: Offset;
  committedAtMs: number;
  endOffset: Offset;
  lagRecords: number;
  /** age of the oldest record not yet committed; 0 when caught up */
  lagSeconds: number;
}

export interface CommitFence { member: string; generation: number }
export interface GroupJoinOptions { topics: string[]; /** rejoin under this id */ member?: string; sessionTimeoutMs?: number }
export interface GroupMembership {
  member: string;
  generation: number;
  /** the partitions this member reads now */
  assigned: Array<{ topic: string; partition: number }>;
  /** false: the generation sent was stale; act on `assigned`, then heartbeat with `generation` */
  renewed: boolean;
}
export interface GroupDescription {
  group: string;
  generation: number;
  topics: string[];
  members: Array<{ member: string; sessionTimeoutMs: number; lastSeenMsAgo: number; assigned: Array<{ topic: string; partition: number }>; revoking: Array<{ topic: string; partition: number }> }>;
  /** partitions without an owner (being moved, or held after a coordinator change) */
  unassigned: Array<{ topic: string; partition: number }>;
}

/** A live tail: the node calls `push` with records in offset order, never more than granted. */
export interface TailSink {
  push(records: StoredRecord[]): void;
  /**
   * When present, the tail pushes its records this way instead, as the stored record batches
   * holding the offsets from `first` on, whole (FetchResult.batches); their length is what they
   * use of the credit. `push` still gets records a leader of an older build answers as records.
   */
  pushBatches?(first: number, batches: Uint8Array[], bytes: number): void;
  /** the subscription ended on the node's side (topic deleted, node stopping, error) */
  close(err?: Error): void;
}
export interface Tail {
  /** allow `bytes` more record bytes to be pushed */
  grant(bytes: number): void;
  cancel(): void;
}

export interface NodeApi {
  kvPut(keyspace: string, key: Uint8Array, value: Uint8Array, opts: KvWriteOptions): Promise<KvWriteResult>;
  kvGet(keyspace: string, key: Uint8Array): Promise<KvEntry | undefined>;
  kvDelete(keyspace: string, key: Uint8Array, opts: { acks: Acks }): Promise<KvDeleteResult>;
  kvScan(keyspace: string, opts: KvScanOptions): Promise<KvScanResult>;

  createTopic(spec: TopicSpec): Promise<TopicInfo>;
  listTopics(): Promise<TopicInfo[]>;
  describeTopic(name: string): Promise<TopicInfo>;
  deleteTopic(name: string): Promise<void>;
  /** changes a topic's retention: a number sets a rule, null removes it, an absent key keeps it */
  alterTopic(name: string, change: TopicChange): Promise<TopicInfo>;

  produce(topic: string, records: ProduceRecord[], opts: ProduceOptions): Promise<ProduceResult>;
  /** the same, from one record batch (src/protocol/batch.ts): raw bytes are validated, a CheckedBatch is trusted */
  produceBatch(topic: string, batch: Uint8Array | CheckedBatch, opts: ProduceOptions): Promise<ProduceResult>;
  fetch(topic: string, partition: number, opts: FetchOptions): Promise<FetchResult>;
  /** starts pushing from `from`; `creditBytes` is the initial grant */
  tail(topic: string, partition: number, from: StartPosition, creditBytes: number, sink: TailSink): Promise<Tail>;

  /** with `fence`, the group coordinator refuses (FENCED) a member that does not own the partition at that generation */
  commitOffset(group: string, topic: string, partition: number, offset: number, fence?: CommitFence): Promise<void>;
  groupOffsets(group: string, topic?: string): Promise<GroupOffset[]>;
  groupJoin(group: string, opts: GroupJoinOptions): Promise<GroupMembership>;
  groupHeartbeat(group: string, member: string, generation: number): Promise<GroupMembership>;
  groupLeave(group: string, member: string): Promise<void>;
  groupMembers(group: string): Promise<GroupDescription>;
  /** removes the group's committed offsets: GROUP_NOT_EMPTY while it has live members, NOT_FOUND when it has neither */
  groupDelete(group: string): Promise<{ removed: number }>;

  status(): Promise<NodeStatus>;
}

export interface NodeStatus {
  nodeId: string;
  state: 'starting' | 'up' | 'stopping';
  version: string;
  /** every partition: the coordinator's view, and this node's replica of it */
  partitions: Array<{
    id: number; epoch: number; leader: string | null; replicas: string[]; isr: string[];
    /** this node's replica: its role, applied seq and the worker thread hosting it */
    role: string; seq: number; worker: number;
  }>;
  nodes: Array<{ id: string; url: string; state: string }>;
  clustered: boolean;
  /** cluster only: partitions whose new replicas are still catching up */
  rebalance?: { moving: number; catchingUp: Array<{ partition: number; nodes: string[] }>; completed: number; etaSeconds: number | null; snapshotBytesSent: number; bytesLeftEstimate: number | null };
  workers: number;
  syncPolicy: string;
}
