// What the node needs from the cluster layer, so src/node depends on these types only and the
// cluster code (etcd, peers) loads only when `--etcd` is given.
import type { RocksLevel } from '@nxtedition/rocksdb';
import type { NodeId } from '../runtime/ids.js';
import type { WriteResult } from '../actors/threads.js';
import type { RequestBody } from '../actors/messages.js';
import type { Coordinator, TopicCatalogApi } from './coordinator.js';
import type { PeerNetwork } from './peer.js';
import type { ReplicaPositions } from './cluster.js';
import type { LoopDelay } from '../runtime/loop-delay.js';

/** Node-to-node links: forwarded requests with answers (replication goes on worker links, net/worker-links.ts). */
export interface PeerLink {
  forward<T>(to: NodeId, p: number, body: RequestBody, write: boolean): Promise<WriteResult<T>>;
}

export interface ClusterConnection {
  /** the cluster's partition count, fixed when the cluster was created */
  partitions: number;
  catalog: TopicCatalogApi;
  coordinator(db: RocksLevel): Promise<ClusterCoordinatorApi>;
}

/** A cluster's coordinator: registers once the node's gateway listens. */
export interface ClusterCoordinatorApi extends Coordinator {
  /** `loopDelay`: the calling thread's, measured from then on by how late each periodic check runs */
  join(url: string, peers: PeerNetwork, positions: ReplicaPositions, loopDelay?: LoopDelay): Promise<void>;
}
