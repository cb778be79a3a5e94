// Who leads which partition, which replicas it has, and the topic catalog: answered locally for
// a single node, and by etcd for a cluster (src/cluster/coordinator.ts). The node routes every
// request by it and passes every change of a partition's view to the replica that hosts it.
import type { NodeId } from '../runtime/ids.js';
import type { ReplicaView } from '../actors/replica.js';
import type { RetentionSpec, TopicSpec } from './api.js';
import type { Catalog, TopicMeta } from './catalog.js';

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
}

export interface ClusterNodeInfo { id: string; url: string; state: string }

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
  stop(): Promise<void>;
}

/** A cluster of one: this node leads every partition, alone, in epoch 1. */
export class LocalCoordinator implements Coordinator {
  readonly clustered = false;
  private readonly views = new Map<number, ReplicaView>();
  constructor(readonly self: NodeId, partitions: number, private readonly url: () => string) {
    for (let p = 0; p < partitions; p++) this.views.set(p, { epoch: 1 as ReplicaView['epoch'], leader: self, replicas: [self], live: [self], copies: 1, isr: [self], version: 1 });
  }
  hosted() { return this.views; }
  view(p: number) { return this.views.get(p); }
  onChange(): void { /* a single node's views never change */ }
  onCatalogChange(): void { /* the local catalog is changed only through this node */ }
  nodes(): ClusterNodeInfo[] { return [{ id: this.self, url: this.url(), state: 'up' }]; }
  urlOf(node: NodeId) { return node === this.self ? this.url() : undefined; }
  async stop(): Promise<void> { /* nothing held */ }
}

/** The single node's catalog behind the async catalog interface the cluster needs. */
export function localCatalog(c: Catalog): TopicCatalogApi {
  return {
    get: (n) => c.get(n),
    find: (n) => c.find(n),
    byId: (id) => c.byId(id),
    list: () => c.list(),
    create: async (spec, now) => c.create(spec, now),
    remove: async (n) => c.remove(n),
    retention: () => c.retention(),
    setRetention: async (n, r) => c.setRetention(n, r),
  };
}
