// The bridge inside `chicago server` (a `bridge:` section in the node config). Same Bridge class and
// the same path as `chicago bridge`: it talks to Chicago over the public HTTP API, here the node's
// own gateway. Its metrics are appended to the node's GET /metrics and its lag to GET /v1/status
// (field `bridge`), through `attachToNode`, the one place that touches the node.
import type { Logger } from 'pino';
import { Bridge, type BridgeState, type PartitionLag } from './bridge.js';
import { type BridgeConfig, resolveBridgeConfig } from './config.js';

/** what GET /v1/status carries under `bridge` when a node runs one */
export interface BridgeStatus {
  group: string;
  mode: BridgeConfig['mode'];
  state: BridgeState;
  kafka: string[];
  partitions: PartitionLag[];
  total: { lagRecords: number; lagSeconds: number; alert: boolean };
}

export function bridgeStatus(b: Bridge): BridgeStatus {
  const partitions = b.lag();
  return {
    group: b.config.group,
    mode: b.config.mode,
    state: b.status,
    kafka: b.config.kafka.brokers,
    partitions,
    total: {
      lagRecords: partitions.reduce((n, p) => n + p.lagRecords, 0),
      lagSeconds: partitions.reduce((n, p) => Math.max(n, p.lagSeconds), 0),
      alert: partitions.some((p) => p.alert),
    },
  };
}

/** The node surface the bridge hooks into. */
export interface HookableNode {
  addStatusField(name: string, value: () => unknown): void;
  addMetricsSource(render: () => Promise<string>): void;
}

/**
 * Appends the bridge's registry to the node's /metrics text (the bridge's metric names all start
 * with chicago_bridge_, so none collides) and adds a `bridge` field to the node's status.
 */
export function attachToNode(node: HookableNode, bridge: Bridge): void {
  node.addMetricsSource(() => bridge.metrics.registry.metrics());
  node.addStatusField('bridge', () => bridgeStatus(bridge));
}

const STOP_DEADLINE_MS = 15_000;

export interface InProcessBridge {
  bridge: Bridge;
  stop(): Promise<void>;
}

/**
 * Resolves the node config's `bridge` section (chicago.url defaults to `nodeUrl`), starts the
 * bridge and hooks it into the node. A bridge that fails for good logs it and stays visible as
 * state "failed" in the status; the node keeps serving.
 */
export async function startInProcessBridge(
  section: Record<string, unknown>,
  nodeUrl: string,
  node: HookableNode,
  log: Logger,
): Promise<InProcessBridge> {
  const chicago = { url: nodeUrl, ...((section.chicago as Record<string, unknown> | undefined) ?? {}) };
  const cfg = resolveBridgeConfig({ ...section, chicago });
  const blog = log.child({ component: 'bridge', group: cfg.group });
  const bridge = new Bridge(cfg, blog);
  attachToNode(node, bridge);
  await bridge.start();
  bridge.done().catch((e: unknown) => blog.error({ err: e }, 'in-process bridge ended; the node keeps serving without it'));
  return {
    bridge,
    async stop() {
      // A round stuck on an unreachable Kafka must not hold the node's shutdown for long; what it
      // did not commit is redone by the next start (exactly-once recovery reads Kafka).
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => { timer = setTimeout(() => { blog.warn('bridge still stopping after 15 s; going on'); resolve(); }, STOP_DEADLINE_MS); });
      await Promise.race([bridge.stop(), late]);
      clearTimeout(timer);
    },
  };
}
