// The single node's coordinator: it leads every partition alone, and its catalog is local.
import type { NodeId } from '../runtime/ids.js';
import type { ReplicaView } from '../actors/replica.js';
import type { RetentionSpec, TopicSpec } from '../protocol/api.js';
import type { ClusterNodeInfo, Coordinator, RebalanceProgress, TopicCatalogApi, TopicMeta } from '../cluster/coordinator.js';
import type { Catalog } from './catalog.js';

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
  isrOf(p: number): NodeId[] { return this.views.has(p) ? [this.self] : []; }
  progress(): RebalanceProgress { return { moving: 0, catchingUp: [], completed: 0, etaSeconds: null }; }
  async handOff(): Promise<boolean> { return true; /* nothing to move to */ }
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
    setPartitions: async (n, count) => c.setPartitions(n, count),
  };
}
