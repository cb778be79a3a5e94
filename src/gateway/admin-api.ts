// What the gateway needs from the node besides the data API (protocol/api.ts NodeApi): its
// settings, memory budget and metrics, and the admin and debug endpoints. The gateway sees the
// node only through these two interfaces.
import type { DigestReply } from '../actors/messages.js';
import type { Config } from '../runtime/config.js';
import type { MemoryBudget } from '../runtime/memory-budget.js';
import type { Metrics } from '../runtime/metrics.js';
import type { NodeApi } from '../protocol/api.js';

export interface AdminApi {
  readonly config: Config;
  readonly memory: MemoryBudget;
  readonly metrics: Metrics;
  health(): { status: 'ok' | 'degraded' | 'unavailable'; reasons?: string[] };
  renderMetrics(): Promise<string>;
  maintain(): Promise<{ expired: number; trimmedBatches: number }>;
  placement(): { clustered: boolean; partitions: number; nodes: Array<{ id: string; url: string; state: string }>; leaders: Array<string | null>; epochs: number[] };
  digest(p: number): Promise<DigestReply>;
  /** the groups with committed offsets, in name order, at most `limit` (GET /v1/groups, the console) */
  groupNames(limit: number): Promise<string[]>;
  /** tests only: write one KV entry on this replica alone, bypassing replication */
  plantDivergence(p: number, ks: string, key: Uint8Array, value: Uint8Array): Promise<void>;
}

/** the node as the gateway sees it */
export type GatewayNode = NodeApi & AdminApi;
