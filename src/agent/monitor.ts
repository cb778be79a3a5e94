// Health, alerts and liveness around a running Agent. Every health interval: one health sample, the
// agent's own fields (ship lag, spool, log-pattern and notice rates) added, alert rules evaluated;
// then a record to the health topic, transitions to the alerts topic and the webhook, and KV
// `hosts/<host>` plus `alerts/<host>/<id>` (each with a TTL of about three intervals, refreshed
// every interval, so a host that stops reporting disappears from `chicago hosts` and `chicago alerts`).
import { performance } from 'node:perf_hooks';
import { caDispatcher } from '../client/tls.js';
import { authHeader } from '../client/token.js';
import { isLoopback } from '../runtime/config.js';
import type { Agent, Notice, TaskSink } from './agent.js';
import { type ActiveAlert, type AlertState, type Transition, RateWindow, activeAlerts, alertSlackMs, alertStateText, emptyAlertState, evaluate, restoreAlertState } from './alerts.js';
import { type HealthSample, Health, flattenHealth } from './health.js';
import type { AlertsConfig, HealthConfig } from './monitor-config.js';
import { valueText } from './spool.js';
import { Webhook } from './webhook.js';

/** notice kinds counted apart (more kinds count only in the total) */
const NOTICE_KINDS_MAX = 100;

export interface HostSummary {
  host: string;
  time: string;
  timeMs: number;
  intervalMs: number;
  ttlSeconds: number;
  lagSeconds: number;
  spoolBytes: number;
  spoolQuotaBytes: number;
  alertsFiring: number;
  load1: number;
  cpuUsedPercent: number;
  memoryAvailablePercent: number;
  zombies: number;
}

export interface MonitorStats {
  runs: number;
  lastRunMs: number;
  lastDurationMs: number;
  runErrors: number;
  kvErrors: number;
  transitions: { firing: number; resolved: number };
  notices: Map<string, number>;
}

/** The spool key of the firing alerts, written in the same append as the transitions. */
const ALERT_STATE_KEY = 'alerts:firing';

export class Monitor {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private running?: Promise<void>;
  private alertState: AlertState = emptyAlertState;
  private readonly noticeRates = new Map<string, RateWindow>();
  private readonly noticeTotal = new RateWindow();
  private readonly patternRates = new Map<string, RateWindow>();
  private readonly lastTapped = new Map<string, number>();
  private unsubscribe?: () => void;
  readonly health: Health;
  readonly webhook?: Webhook;
  private healthSink?: TaskSink;
  private alertsSink?: TaskSink;
  last?: HealthSample;
  lastSummary?: HostSummary;
  readonly stats: MonitorStats = { runs: 0, lastRunMs: 0, lastDurationMs: 0, runErrors: 0, kvErrors: 0, transitions: { firing: 0, resolved: 0 }, notices: new Map() };

  constructor(private readonly agent: Agent, private readonly hcfg: HealthConfig, private readonly acfg?: AlertsConfig) {
    this.health = new Health(hcfg, agent.log.child({ component: 'health' }));
    if (acfg?.webhook) this.webhook = new Webhook(acfg.webhook, agent.log.child({ component: 'webhook' }));
  }

  /** called after every run with its duration */
  onRun: (durationMs: number) => void = () => {};

  start(): void {
    const a = this.agent;
    if (this.hcfg.enabled) this.healthSink = a.sink(this.hcfg.task, this.hcfg.topic);
    if (this.acfg) {
      this.alertsSink = a.sink(this.acfg.task, this.acfg.topic);
      this.alertState = restoreAlertState(this.acfg.rules, a.spool.cursors.get(ALERT_STATE_KEY));
    }
    this.unsubscribe = a.onNotice((n) => this.countNotice(n));
    if (this.acfg && this.acfg.logPatterns.length > 0) this.tapRecords(this.acfg);
    for (const p of this.acfg?.logPatterns ?? []) this.patternRates.set(p.name, new RateWindow());
    this.health.start();
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.run().finally(() => {
        this.running = undefined;
        // the next run starts one interval after this one started (a slow run does not pile up)
        this.schedule(Math.max(0, this.hcfg.intervalMs - this.stats.lastDurationMs));
      });
    }, delayMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.health.stop();
    this.webhook?.stop();
    this.unsubscribe?.();
    await this.running;
  }

  private countNotice(n: Notice): void {
    const now = Date.now();
    const count = n.count ?? 1;
    this.noticeTotal.add(now, count);
    let w = this.noticeRates.get(n.kind);
    if (!w && this.noticeRates.size < NOTICE_KINDS_MAX) this.noticeRates.set(n.kind, (w = new RateWindow()));
    w?.add(now, count);
    this.stats.notices.set(n.kind, (this.stats.notices.get(n.kind) ?? 0) + count);
  }

  /**
   * Log-pattern rates: after each durable spool append, the records it added (the tail of the task's
   * pending queue past the last one seen) are matched against the task's patterns.
   */
  private tapRecords(cfg: AlertsConfig): void {
    const spool = this.agent.spool;
    const patterns = cfg.logPatterns.map((p) => ({ name: p.name, task: p.task, re: new RegExp(p.regex) }));
    const prev = spool.onRecords;
    spool.onRecords = (task) => {
      prev(task);
      const mine = patterns.filter((p) => p.task === undefined || p.task === task);
      if (mine.length === 0) return;
      const q = spool.pending.get(task);
      const seen = this.lastTapped.get(task) ?? -1;
      if (!q || q.length === 0 || q.lastSeq <= seen) return;
      this.lastTapped.set(task, q.lastSeq);
      const now = Date.now();
      for (const { e, i, j } of q.spans(seen + 1, q.lastSeq)) {
        for (let k = i; k < j; k++) {
          const v = valueText(e, k);
          if (v === undefined) continue;
          for (const p of mine) if (p.re.test(v)) this.patternRates.get(p.name)!.add(now);
        }
      }
    };
  }

  /** Age of the oldest record not yet acknowledged by the node, per task (0 when all are). */
  lagSeconds(nowMs: number): Map<string, number> {
    const out = new Map<string, number>();
    for (const task of this.agent.shippers.keys()) {
      const first = this.agent.spool.pending.get(task)?.firstHeaders();
      const t = first ? Date.parse(first.time) : NaN;
      out.set(task, Number.isFinite(t) ? Math.max(0, (nowMs - t) / 1000) : 0);
    }
    return out;
  }

  /** The agent's own fields for alert rules: ship lag, spool, log-pattern and notice rates. */
  private agentFields(nowMs: number, out: Map<string, number>): void {
    const spool = this.agent.spool;
    let maxLag = 0;
    for (const [task, lag] of this.lagSeconds(nowMs)) {
      out.set(`ship.${task}.lagSeconds`, lag);
      maxLag = Math.max(maxLag, lag);
    }
    out.set('ship.lagSeconds', maxLag);
    const quota = this.agent.cfg.spool.quotaBytes;
    out.set('spool.bytes', spool.bytes);
    out.set('spool.usedPercent', Math.round((10_000 * spool.bytes) / quota) / 100);
    out.set('spool.full', spool.full() ? 1 : 0);
    for (const [name, w] of this.patternRates) out.set(`log.${name}.perMinute`, w.perMinute(nowMs));
    out.set('notices.perMinute', this.noticeTotal.perMinute(nowMs));
    for (const [kind, w] of this.noticeRates) out.set(`notices.${kind}.perMinute`, w.perMinute(nowMs));
  }

  active(): ActiveAlert[] {
    return this.acfg ? activeAlerts(this.acfg.rules, this.alertState) : [];
  }

  private async run(): Promise<void> {
    const t0 = performance.now();
    const nowMs = Date.now();
    const host = this.agent.cfg.host;
    try {
      const sample = await this.health.collect(nowMs);
      const fields = flattenHealth(sample);
      this.agentFields(nowMs, fields);
      let transitions: Transition[] = [];
      if (this.acfg) ({ state: this.alertState, transitions } = evaluate(this.acfg.rules, this.alertState, fields, nowMs, alertSlackMs(this.hcfg.intervalMs)));
      this.last = sample;
      const lag = fields.get('ship.lagSeconds') ?? 0;
      const active = this.active();
      const writes: Array<Promise<void>> = [];
      if (this.healthSink) {
        writes.push(this.healthSink.write([{ value: JSON.stringify({ host, ...sample, agent: { lagSeconds: lag, spoolBytes: this.agent.spool.bytes, alertsFiring: active.length } }), source: 'health', timeMs: nowMs, level: 'info' }]));
      }
      if (transitions.length > 0) {
        for (const t of transitions) {
          this.stats.transitions[t.state]++;
          this.agent.log.info({ alert: t.id, state: t.state, value: t.value }, `alert ${t.state}`);
          this.webhook?.push(alertMessage(host, t));
        }
        if (this.alertsSink) {
          writes.push(this.alertsSink.write(transitions.map((t) => ({
            value: JSON.stringify(alertMessage(host, t)),
            source: t.rule,
            timeMs: t.atMs,
            level: t.state === 'resolved' ? 'info' : t.severity === 'critical' ? 'error' : 'warn',
            headers: { alert: t.id, state: t.state },
          })), [{ t: 'cur', key: ALERT_STATE_KEY, cursor: alertStateText(this.alertState) }]));
        }
      }
      await Promise.all(writes);
      const summary: HostSummary = {
        host, time: sample.time, timeMs: nowMs, intervalMs: this.hcfg.intervalMs, ttlSeconds: this.hcfg.ttlSeconds,
        lagSeconds: Math.round(lag * 1000) / 1000, spoolBytes: this.agent.spool.bytes, spoolQuotaBytes: this.agent.cfg.spool.quotaBytes,
        alertsFiring: active.length, load1: sample.load[1], cpuUsedPercent: sample.cpu.usedPercent,
        memoryAvailablePercent: sample.memory.availablePercent, zombies: sample.zombies.count,
      };
      this.lastSummary = summary;
      await this.publish(summary, active, transitions);
    } catch (err) {
      this.stats.runErrors++;
      this.agent.log.warn({ err: (err as Error).message }, 'health run failed');
    } finally {
      const d = performance.now() - t0;
      this.stats.runs++;
      this.stats.lastRunMs = nowMs;
      this.stats.lastDurationMs = d;
      this.onRun(d);
    }
  }

  /** KV: the host's summary and its active alerts with a TTL; resolved alerts deleted. */
  private async publish(summary: HostSummary, active: ActiveAlert[], transitions: Transition[]): Promise<void> {
    const ks = this.hcfg.kvKeyspace;
    const host = summary.host;
    const ttl = this.hcfg.ttlSeconds;
    const ops: Array<Promise<void>> = [this.kv('PUT', ks, `hosts/${host}`, JSON.stringify(summary), ttl)];
    for (const a of active) ops.push(this.kv('PUT', ks, `alerts/${host}/${a.id}`, JSON.stringify({ host, ...a }), ttl));
    for (const t of transitions) if (t.state === 'resolved') ops.push(this.kv('DELETE', ks, `alerts/${host}/${t.id}`));
    await Promise.all(ops);
  }

  private async kv(method: 'PUT' | 'DELETE', keyspace: string, key: string, value?: string, ttlSeconds?: number): Promise<void> {
    const node = this.agent.cfg.node;
    const url = `${node.url}/v1/kv/${encodeURIComponent(keyspace)}/${encodeURIComponent(key)}${ttlSeconds ? `?ttl=${ttlSeconds}` : ''}`;
    try {
      const res = await fetch(url, {
        method,
        headers: { ...authHeader(node.token), ...(value !== undefined ? { 'content-type': 'application/octet-stream' } : {}) },
        ...(value !== undefined ? { body: value } : {}),
        signal: AbortSignal.timeout(Math.min(node.timeoutMs, this.hcfg.intervalMs)),
        ...({ dispatcher: caDispatcher(node.ca) } as RequestInit),
      });
      const text = await res.text();
      if (!res.ok && !(method === 'DELETE' && res.status === 404)) throw new Error(`HTTP ${res.status} ${text.slice(0, 200)}`);
    } catch (err) {
      this.stats.kvErrors++;
      this.agent.log.warn({ key, err: (err as Error).message }, 'KV write failed');
    }
  }
}

/** What the alerts topic and the webhook receive for one transition. */
export function alertMessage(host: string, t: Transition): Record<string, unknown> {
  return { host, ...t, time: new Date(t.atMs).toISOString(), since: new Date(t.sinceMs).toISOString() };
}

/** Starts health, alerts and the status port as the config asks; the agent stops them when it stops. */
export async function startMonitoring(agent: Agent): Promise<void> {
  const { health, alerts, status } = agent.cfg.monitor;
  let monitor: Monitor | undefined;
  if (health) {
    monitor = new Monitor(agent, health, alerts);
    monitor.start();
    const m = monitor;
    agent.onStop(() => m.stop());
  }
  if (status) {
    const { StatusServer } = await import('./status.js');
    const server = new StatusServer(agent, monitor, status);
    if (monitor) monitor.onRun = (ms) => server.healthSeconds.observe(ms / 1000);
    const addr = await server.listen().catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EADDRINUSE') throw err;
      const e = new Error(`status.listen: ${status.host}:${status.port} is in use`);
      e.name = 'PortInUseError';
      throw e;
    });
    agent.log.info({ status: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}` }, 'status listening');
    if (!isLoopback(status.host)) agent.log.warn({ host: status.host }, `status.listen ${status.host} is not a loopback address: /status and /metrics have no authentication and name this host's tasks, paths and alerts`);
    agent.onStop(() => server.close());
  }
}
