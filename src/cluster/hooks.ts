// What the node needs from the cluster layer, so src/node depends on these types only and the
// cluster code (etcd, peers) loads only when `--etcd` is given.
import type { RocksLevel } from '@nxtedition/rocksdb';
import type { NodeId } from '../runtime/ids.js';
import type { WriteResult } from '../runtime/threads.js';
import type { DigestCheck, RequestBody, SnapshotAck, SnapshotChunk } from '../actors/messages.js';
import type { PeerMessage } from '../actors/replica.js';
import type { Coordinator, TopicCatalogApi } from '../node/coordinator.js';

export type ReplicationMessage = PeerMessage | SnapshotChunk | SnapshotAck | DigestCheck;

/** Node-to-node links: replication traffic one way, forwarded requests with answers. */
export interface PeerLink {
  send(to: NodeId, msg: ReplicationMessage): void;
  forward<T>(to: NodeId, p: number, body: RequestBody, write: boolean): Promise<WriteResult<T>>;
}

export interface ClusterConnection {
  /** the cluster's partition count, fixed when the cluster was created */
  partitions: number;
  catalog: TopicCatalogApi;
  coordinator(db: RocksLevel): Promise<Coordinator>;
}
