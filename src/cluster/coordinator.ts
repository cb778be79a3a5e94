// Who leads which partition, which replicas it has, and the topic catalog: answered locally for
// a single node (src/node/coordinator.ts), and by etcd for a cluster (cluster.ts). The node routes every
// request by it and passes every change of a partition's view to the replica that hosts it.
import type { NodeId } from '../runtime/ids.js';
import type { ReplicaView } from '../actors/replica.js';
import type { RetentionSpec, TopicSpec } from '../protocol/api.js';

/** a topic as the catalog holds it: its spec plus the id its partitions' keys carry */
export interface TopicMeta extends TopicSpec { id: number; createdAtMs: number }

export interface TopicCatalogApi {
  get(name: string): TopicMeta;
  find(name: string): TopicMeta | undefined;
  byId(id: number): TopicMeta | undefined;
  list(): TopicMeta[];
  create(spec: TopicSpec, nowMs: number): Promise<TopicMeta>;
  remove(name: string): Promise<TopicMeta>;
  retention(): Array<{ topicId: number; retention: RetentionSpec }>;
  /** replaces the topic's retention; returns the topic as it now is */
  setRetention(name: string, retention: RetentionSpec): Promise<TopicMeta>;
  /** raises the partition count; fewer is INVALID_ARGUMENT */
  setPartitions(name: string, partitions: number): Promise<TopicMeta>;
}

export interface ClusterNodeInfo { id: string; url: string; state: string }

/** partition moves as this node sees them */
export interface RebalanceProgress { moving: number; catchingUp: Array<{ partition: number; nodes: NodeId[] }>; completed: number; etaSeconds: number | null }

export interface Coordinator {
  readonly self: NodeId;
  readonly clustered: boolean;
  /** the partitions this node hosts a replica of, with their current views */
  hosted(): Map<number, ReplicaView>;
  view(p: number): ReplicaView | undefined;
  /** a partition's view changed, or this node gained (or lost) a replica of it */
  onChange(listener: (p: number, view: ReplicaView | undefined) => void): void;
  /** the topic catalog changed (create, delete, retention) */
  onCatalogChange(listener: () => void): void;
  nodes(): ClusterNodeInfo[];
  urlOf(node: NodeId): string | undefined;
  /** the in-sync replicas of a partition this node knows of */
  isrOf(p: number): NodeId[];
  progress(): RebalanceProgress;
  /** a graceful leave: move every replica here to other nodes first; true when all moved */
  handOff(deadlineMs: number): Promise<boolean>;
  stop(): Promise<void>;
}

/** A cluster of one: this node leads every partition, alone, in epoch 1. */
