// Prometheus metrics of one node, in its own registry (no process-wide globals).
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { requireCjs } from './require.js';

export type Metrics = ReturnType<typeof createMetrics>;

type DefaultMetric = (registry: Registry, config: { prefix: string }) => void;

/**
 * prom-client's default process series, all but its event-loop lag: that one runs a timer of its
 * own (monitorEventLoopDelay) that wakes the main thread at a phase of its own every interval.
 * chicago_event_loop_delay_seconds reports the delay from the node's periodic work instead.
 */
function collectProcessMetrics(registry: Registry, prefix: string): void {
  const names = (collectDefaultMetrics as unknown as { metricsList: string[] }).metricsList.filter((n) => n !== 'eventLoopLag');
  for (const name of names) (requireCjs(`prom-client/lib/metrics/${name}`) as DefaultMetric)(registry, { prefix });
}

export function createMetrics() {
  const registry = new Registry();
  collectProcessMetrics(registry, 'chicago_process_');
  return {
    registry,
    requests: new RequestMeter(registry),
    httpRefused: new Counter({ name: 'chicago_http_refused_total', help: 'HTTP requests that never ran: ambiguous framing (the node closed the connection), or the connection closed before the request started (a request pipelined behind an unanswered one, or the client left)', labelNames: ['reason'] as const, registers: [registry] }),
    authRefused: new Counter({ name: 'chicago_auth_refused_total', help: 'Requests refused by authentication (UNAUTHENTICATED) or authorization (FORBIDDEN), by edge and reason', labelNames: ['edge', 'code', 'reason'] as const, registers: [registry] }),
    produced: new Counter({ name: 'chicago_records_produced_total', help: 'Records appended', labelNames: ['topic'] as const, registers: [registry] }),
    dropped: new Counter({ name: 'chicago_dropped_total', help: 'Fire-and-forget updates dropped because a queue was full', labelNames: ['reason'] as const, registers: [registry] }),
    wsConnections: new Gauge({ name: 'chicago_ws_connections', help: 'Open WebSocket connections', registers: [registry] }),
    eventLoopDelay: new Gauge({ name: 'chicago_event_loop_delay_seconds', help: 'Event-loop delay per thread (main, worker-N) since the last scrape: how late its periodic task ran (the worker tick, the cluster check; else a 100 ms monitor)', labelNames: ['thread', 'quantile'] as const, registers: [registry] }),
    partitionSeq: new Gauge({ name: 'chicago_partition_sequence', help: 'Last mutation sequence per partition', labelNames: ['partition'] as const, registers: [registry] }),
    streamStart: new Gauge({ name: 'chicago_stream_start_offset', help: 'First stored offset', labelNames: ['topic', 'partition'] as const, registers: [registry] }),
    streamEnd: new Gauge({ name: 'chicago_stream_end_offset', help: 'Next offset to be assigned', labelNames: ['topic', 'partition'] as const, registers: [registry] }),
    streamBytes: new Gauge({ name: 'chicago_stream_bytes', help: 'Record bytes stored', labelNames: ['topic', 'partition'] as const, registers: [registry] }),
    groupLagRecords: new Gauge({ name: 'chicago_group_lag_records', help: 'Records not yet committed by a group', labelNames: ['group', 'topic', 'partition'] as const, registers: [registry] }),
    groupLagSeconds: new Gauge({ name: 'chicago_group_lag_seconds', help: 'Age of the oldest record a group has not committed', labelNames: ['group', 'topic', 'partition'] as const, registers: [registry] }),
    expiredKeys: new Gauge({ name: 'chicago_ttl_expired_keys', help: 'Expired keys swept from disk (since start)', registers: [registry] }),
    trimmedBatches: new Gauge({ name: 'chicago_retention_trimmed_batches', help: 'Record batches removed by retention (since start)', registers: [registry] }),
    digestChecks: new Gauge({ name: 'chicago_antientropy_checks', help: 'Replica digest comparisons made (since start)', registers: [registry] }),
    divergences: new Gauge({ name: 'chicago_antientropy_divergences', help: 'Replicas found to differ from their leader and repaired (since start)', registers: [registry] }),
    rebalanceMoving: new Gauge({ name: 'chicago_rebalance_partitions_moving', help: 'Partitions whose new replicas are still catching up', registers: [registry] }),
    rebalanceEta: new Gauge({ name: 'chicago_rebalance_eta_seconds', help: 'Estimated seconds until every partition is back on N in-sync replicas (-1: unknown)', registers: [registry] }),
    copyPartInterval: new Gauge({ name: 'chicago_rebalance_copy_part_interval_seconds', help: 'Gap between the parts of a copy this node sends: its pacer widens it while foreground writes are slower than usual', registers: [registry] }),
    snapshotBytes: new Gauge({ name: 'chicago_rebalance_snapshot_bytes_sent', help: 'Bytes of full partition copies sent to other replicas (since start)', registers: [registry] }),
    replicationDropped: new Gauge({ name: 'chicago_replication_dropped_messages', help: 'Replication messages dropped because a partition worker was too far behind, or a link to another node\'s worker was backed up or not up (since start; leaders resend)', registers: [registry] }),
    replicationFrames: new Gauge({ name: 'chicago_replication_frames_sent', help: 'Replication frames this node\'s workers sent to other nodes\' workers (since start); `link` is always direct', labelNames: ['link'] as const, registers: [registry] }),
    memoryBuffered: new Gauge({ name: 'chicago_memory_buffered_bytes', help: 'Bytes the node buffers against memory.maxBytes (request bodies, queued requests, WebSocket send buffers, large HTTP answers not yet sent, for 20 s what a closed WebSocket left unsent)', registers: [registry] }),
    memoryRefused: new Gauge({ name: 'chicago_memory_refused', help: 'Requests refused OVERLOADED because memory.maxBytes was reached (since start)', registers: [registry] }),
    diskFree: new Gauge({ name: 'chicago_disk_free_bytes', help: 'Bytes free under the data dir (for unprivileged users)', registers: [registry] }),
    diskFull: new Gauge({ name: 'chicago_disk_full', help: '1 while writes are refused because free space is below storage.minFreeBytes', registers: [registry] }),
    fsyncs: new Gauge({ name: 'chicago_fsyncs', help: 'WAL fsyncs (since start)', registers: [registry] }),
  };
}

const REQUEST_SECONDS_BOUNDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5];

/** one edge and route: its latency histogram and its count per outcome */
interface RouteCell {
  readonly edge: string;
  readonly route: string;
  count: number;
  sum: number;
  /** observations per bucket (not cumulative); the last is above every bound */
  readonly buckets: Float64Array;
  readonly codes: Map<string, number>;
}

interface MetricValue { labels: Record<string, string | number>; value: number; metricName?: string }

/**
 * chicago_requests_total and chicago_request_duration_seconds, recorded once per request on the
 * gateway thread. prom-client checks and hashes the labels of every observation (a few µs a
 * request, most of the gateway's metrics cost); here a request finds its cell by two map lookups
 * and the registry reads the cells, in prom-client's own shape, only when scraped. Routes are the
 * gateway's fixed names and codes the error catalogue's, so the cells are bounded.
 */
export class RequestMeter {
  private readonly edges = new Map<string, Map<string, RouteCell>>();

  constructor(registry: Registry) {
    const counter = { name: 'chicago_requests_total', help: 'Requests by edge, route and outcome', type: 'counter', aggregator: 'sum', get: async () => this.counterValues(), reset: () => this.edges.clear() };
    const histogram = { name: 'chicago_request_duration_seconds', help: 'Request latency by edge and route', type: 'histogram', aggregator: 'sum', get: async () => this.histogramValues(), reset: () => this.edges.clear() };
    registry.registerMetric(counter as never);
    registry.registerMetric(histogram as never);
  }

  record(edge: string, route: string, code: string, seconds: number): void {
    let routes = this.edges.get(edge);
    if (!routes) this.edges.set(edge, (routes = new Map()));
    let cell = routes.get(route);
    if (!cell) routes.set(route, (cell = { edge, route, count: 0, sum: 0, buckets: new Float64Array(REQUEST_SECONDS_BOUNDS.length + 1), codes: new Map() }));
    cell.count++;
    cell.sum += seconds;
    let i = 0;
    while (i < REQUEST_SECONDS_BOUNDS.length && seconds > REQUEST_SECONDS_BOUNDS[i]) i++;
    cell.buckets[i]++;
    cell.codes.set(code, (cell.codes.get(code) ?? 0) + 1);
  }

  private cells(): RouteCell[] {
    const out: RouteCell[] = [];
    for (const routes of this.edges.values()) out.push(...routes.values());
    return out;
  }

  private counterValues() {
    const values: MetricValue[] = [];
    for (const c of this.cells()) for (const [code, n] of c.codes) values.push({ labels: { edge: c.edge, route: c.route, code }, value: n });
    return { name: 'chicago_requests_total', help: 'Requests by edge, route and outcome', type: 'counter', values, aggregator: 'sum' };
  }

  private histogramValues() {
    const name = 'chicago_request_duration_seconds';
    const values: MetricValue[] = [];
    for (const c of this.cells()) {
      let cumulative = 0;
      REQUEST_SECONDS_BOUNDS.forEach((le, i) => {
        cumulative += c.buckets[i];
        values.push({ labels: { le, edge: c.edge, route: c.route }, value: cumulative, metricName: `${name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', edge: c.edge, route: c.route }, value: c.count, metricName: `${name}_bucket` });
      values.push({ labels: { edge: c.edge, route: c.route }, value: c.sum, metricName: `${name}_sum` });
      values.push({ labels: { edge: c.edge, route: c.route }, value: c.count, metricName: `${name}_count` });
    }
    return { name, help: 'Request latency by edge and route', type: 'histogram', values, aggregator: 'sum' };
  }
}
