// Joining a cluster through etcd. Filled in by the cluster milestone.
import type { Config } from '../runtime/config.js';
import type { Logger } from '../runtime/log.js';
import type { ClusterConnection } from './hooks.js';

export async function connectCluster(config: Config, log: Logger): Promise<ClusterConnection> {
  void log;
  throw new Error(`cluster mode (etcd ${config.etcd.join(',')}) is not available yet`);
}
