// The agent's status port (loopback by default): GET /metrics (Prometheus text, prom-client on a
// registry of its own) and GET /status (JSON, what `chicago agent status` prints). Values are read
// from the agent's counters when scraped; nothing is computed between scrapes.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';
import type { Agent } from './agent.js';
import type { Monitor } from './monitor.js';
import type { StatusConfig } from './monitor-config.js';

export interface TaskStatus {
  task: string;
  topic: string;
  linesRead: number;
  bytesRead: number;
  rotations: number;
  truncations: number;
  files: number;
  recordsShipped: number;
  bytesShipped: number;
  duplicates: number;
  errors: number;
  /** batches the node refused as ahead of their predecessor (resent after it) */
  gaps: number;
  /** the most batches in flight at once */
  inFlightPeak: number;
  pending: number;
  lagSeconds: number;
  lastAckMs: number;
}

export interface AgentStatus {
  host: string;
  pid: number;
  uptimeSeconds: number;
  node: string;
  spool: { dir: string; bytes: number; quotaBytes: number; full: boolean };
  tasks: TaskStatus[];
  health?: { intervalMs: number; runs: number; lastRun?: string; lastDurationMs: number; runErrors: number; kvErrors: number; summary?: unknown };
  alerts?: { firing: Array<Record<string, unknown>>; transitions: { firing: number; resolved: number }; webhook?: { sent: number; failedAttempts: number; dropped: number; queued: number } };
  notices: Record<string, number>;
}

export function agentStatus(agent: Agent, monitor: Monitor | undefined, startedMs: number): AgentStatus {
  const now = Date.now();
  const lag = monitor?.lagSeconds(now) ?? new Map<string, number>();
  const tasks: TaskStatus[] = [];
  for (const [task, s] of agent.shippers) {
    const read = { linesRead: 0, bytesRead: 0, rotations: 0, truncations: 0, files: 0 };
    // agent.sources is in the order of cfg.sources
    agent.sources.forEach((src, i) => {
      if (agent.cfg.sources[i]?.task !== task) return;
      for (const k of Object.keys(read) as Array<keyof typeof read>) read[k] += src.stats[k];
    });
    tasks.push({
      task, topic: s.topic, ...read,
      recordsShipped: s.stats.records, bytesShipped: s.stats.bytes, duplicates: s.stats.duplicates, errors: s.stats.errors,
      gaps: s.stats.gaps, inFlightPeak: s.stats.inFlightPeak,
      pending: agent.spool.pending.get(task)?.length ?? 0,
      lagSeconds: Math.round((lag.get(task) ?? 0) * 1000) / 1000,
      lastAckMs: s.stats.lastAckMs,
    });
  }
  const out: AgentStatus = {
    host: agent.cfg.host,
    pid: process.pid,
    uptimeSeconds: Math.round((now - startedMs) / 1000),
    node: agent.cfg.node.url,
    spool: { dir: agent.cfg.spool.dir, bytes: agent.spool.bytes, quotaBytes: agent.cfg.spool.quotaBytes, full: agent.spool.full() },
    tasks,
    notices: Object.fromEntries(monitor?.stats.notices ?? []),
  };
  if (monitor) {
    const st = monitor.stats;
    out.health = {
      intervalMs: agent.cfg.monitor.health!.intervalMs, runs: st.runs, ...(st.lastRunMs ? { lastRun: new Date(st.lastRunMs).toISOString() } : {}),
      lastDurationMs: Math.round(st.lastDurationMs * 100) / 100, runErrors: st.runErrors, kvErrors: st.kvErrors,
      ...(monitor.lastSummary ? { summary: monitor.lastSummary } : {}),
    };
    if (agent.cfg.monitor.alerts) {
      out.alerts = {
        firing: monitor.active().map((a) => ({ ...a, firedAt: new Date(a.firedAtMs).toISOString() })),
        transitions: { ...st.transitions },
        ...(monitor.webhook ? { webhook: { ...monitor.webhook.stats } } : {}),
      };
    }
  }
  return out;
}

/** prom-client counters set from running totals when scraped. */
function totals<L extends string>(name: string, help: string, labelNames: L[], registers: client.Registry[], read: () => Array<[Partial<Record<L, string>>, number]>): client.Counter<L> {
  return new client.Counter<L>({
    name, help, labelNames, registers,
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.inc(labels, v);
    },
  });
}

function gauge<L extends string>(name: string, help: string, labelNames: L[], registers: client.Registry[], read: () => Array<[Partial<Record<L, string>>, number]>): client.Gauge<L> {
  return new client.Gauge<L>({
    name, help, labelNames, registers,
    collect() {
      this.reset();
      for (const [labels, v] of read()) this.set(labels, v);
    },
  });
}

export class StatusServer {
  readonly registry = new client.Registry();
  private readonly server: http.Server;
  private snapshot?: { atMs: number; s: AgentStatus };
  readonly healthSeconds: client.Histogram;

  constructor(private readonly agent: Agent, private readonly monitor: Monitor | undefined, private readonly cfg: StatusConfig, private readonly startedMs = Date.now()) {
    const r = [this.registry];
    // one status per scrape: the collect callbacks below share it
    const st = () => {
      const now = Date.now();
      if (!this.snapshot || now - this.snapshot.atMs > 100) this.snapshot = { atMs: now, s: agentStatus(agent, monitor, startedMs) };
      return this.snapshot.s;
    };
    const perTask = (k: keyof TaskStatus) => () => st().tasks.map((t): [{ task: string }, number] => [{ task: t.task }, t[k] as number]);
    totals('chicago_agent_lines_read_total', 'lines read from files', ['task'], r, perTask('linesRead'));
    totals('chicago_agent_bytes_read_total', 'bytes read from files', ['task'], r, perTask('bytesRead'));
    totals('chicago_agent_records_shipped_total', 'records acknowledged by the node', ['task'], r, perTask('recordsShipped'));
    totals('chicago_agent_bytes_shipped_total', 'value bytes of records acknowledged by the node', ['task'], r, perTask('bytesShipped'));
    totals('chicago_agent_ship_errors_total', 'failed requests to the node (retried)', ['task'], r, perTask('errors'));
    totals('chicago_agent_rotations_total', 'file rotations seen (renames and deletions)', ['task'], r, perTask('rotations'));
    totals('chicago_agent_truncations_total', 'copytruncate rotations seen', ['task'], r, perTask('truncations'));
    gauge('chicago_agent_pending_records', 'records in the spool not yet acknowledged', ['task'], r, perTask('pending'));
    gauge('chicago_agent_ship_lag_seconds', 'age of the oldest record not yet acknowledged', ['task'], r, perTask('lagSeconds'));
    gauge('chicago_agent_spool_bytes', 'bytes in the spool', [], r, () => [[{}, st().spool.bytes]]);
    gauge('chicago_agent_spool_quota_bytes', 'spool quota', [], r, () => [[{}, st().spool.quotaBytes]]);
    gauge('chicago_agent_alerts_firing', 'alerts firing now', [], r, () => [[{}, monitor?.active().length ?? 0]]);
    totals('chicago_agent_alert_transitions_total', 'alerts fired and resolved', ['state'], r, () => [[{ state: 'firing' }, monitor?.stats.transitions.firing ?? 0], [{ state: 'resolved' }, monitor?.stats.transitions.resolved ?? 0]]);
    totals('chicago_agent_notices_total', 'gaps, losses and failures reported by sources', ['kind'], r, () => [...(monitor?.stats.notices ?? [])].map(([kind, n]) => [{ kind }, n]));
    totals('chicago_agent_webhook_sent_total', 'alert messages the webhook accepted', [], r, () => [[{}, monitor?.webhook?.stats.sent ?? 0]]);
    totals('chicago_agent_webhook_dropped_total', 'alert messages dropped (queue full or attempts exhausted)', [], r, () => [[{}, monitor?.webhook?.stats.dropped ?? 0]]);
    totals('chicago_agent_webhook_failed_attempts_total', 'webhook attempts that failed', [], r, () => [[{}, monitor?.webhook?.stats.failedAttempts ?? 0]]);
    totals('chicago_agent_kv_errors_total', 'failed KV writes (hosts/, alerts/)', [], r, () => [[{}, monitor?.stats.kvErrors ?? 0]]);
    this.healthSeconds = new client.Histogram({
      name: 'chicago_agent_health_run_seconds', help: 'time of one health run', registers: r,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    });
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0];
    try {
      if (req.method !== 'GET') {
        res.writeHead(405, { allow: 'GET' }).end();
      } else if (url === '/metrics') {
        const text = await this.registry.metrics();
        res.writeHead(200, { 'content-type': this.registry.contentType }).end(text);
      } else if (url === '/status') {
        this.snapshot = undefined;
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(agentStatus(this.agent, this.monitor, this.startedMs)));
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics or /status\n');
      }
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String((err as Error).message));
    }
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.cfg.port, this.cfg.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
