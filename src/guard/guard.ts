// `chicago guard`: tails the access-log (and sshd) topics over the WebSocket client, runs every
// event through detection (detect.ts) and decisions (decisions.ts), and pushes each decision to the
// enforcers (nftables, nginx) and the store (topic + KV) at once. I/O lives here; the logic is pure.
import http from 'node:http';
import v8 from 'node:v8';
import { pino, type Logger } from 'pino';
import client from 'prom-client';
import { httpRequest } from '../client/http-json.js';
import { ChicagoClient, type GroupConsumer, type GroupPartitionRef, type TailRecord, type TailStream } from '../client/index.js';
import { LruMap } from './bucket.js';
import { compile, DEBIAN_CRS_RULES_DIR, evaluate, type Ruleset } from './crs/index.js';
import { type GuardConfig, type InputConfig, loadGuardConfig } from './config.js';
import { type Decision, type DecisionState, type Effect, decide, expire, newDecisions } from './decisions.js';
import { type DetectorState, detect, forget, newDetector, sketchBytes } from './detect.js';
import { Allowlist } from './ip.js';
import { NftEnforcer } from './nft.js';
import { NginxEnforcer } from './nginx.js';
import { type GuardEvent, type ParseLimits, parseNginx, parseSsh, loggedHeaders } from './parse.js';
import { type PartitionSource, StaticPartitionSource } from './partitions.js';
import { compileScenarios } from './scenarios.js';
import { DecisionStore, decodeRecord, ensureDecisionsTopic } from './store.js';
import { nowUs } from '../runtime/timing.js';
import { limits } from '../runtime/limits.js';
import { warmUp } from './warm.js';

const EXPIRE_INTERVAL_MS = 1000;
const VERDICT_CACHE_ENTRIES_MAX = 20_000;
/** a failed group member leaves and joins again after this long */
const REJOIN_DELAY_MS = 1000;

export interface GuardMetrics {
  registry: client.Registry;
  lines: client.Counter<'topic'>;
  rejected: client.Counter<'reason'>;
  latency: client.Histogram<'enforcer'>;
  bans: client.Counter<'scenario' | 'effect'>;
  sketch: client.Gauge;
  ips: client.Gauge;
  partitions: client.Gauge;
  ipBytes: client.Gauge;
  nftQueued: client.Gauge;
  nftRefused: client.Gauge<'by'>;
  nginxRefused: client.Gauge<'by'>;
}

function metrics(): GuardMetrics {
  const registry = new client.Registry();
  const lines = new client.Counter({ name: 'guard_lines_total', help: 'records read (rate() gives lines/s)', labelNames: ['topic'], registers: [registry] });
  const rejected = new client.Counter({ name: 'guard_rejected_total', help: 'records skipped as malformed or absurd, by reason', labelNames: ['reason'], registers: [registry] });
  const latency = new client.Histogram({
    name: 'guard_decision_latency_seconds', help: "triggering line's $msec to the enforcer's acknowledgement", labelNames: ['enforcer'], registers: [registry],
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5],
  });
  const bans = new client.Counter({ name: 'guard_decisions_total', help: 'decision effects by scenario (ban, extend, unban, dry, capped)', labelNames: ['scenario', 'effect'], registers: [registry] });
  const sketch = new client.Gauge({ name: 'guard_sketch_bytes', help: 'memory of the prefix sketches and top-K lists', registers: [registry] });
  const ips = new client.Gauge({ name: 'guard_tracked_ips', help: 'addresses with bucket state (bounded by limits.ipsMax)', registers: [registry] });
  const partitions = new client.Gauge({ name: 'guard_partitions_assigned', help: 'input partitions this guard reads now (its share of the group, and pinned ones)', registers: [registry] });
  const ipBytes = new client.Gauge({ name: 'guard_ip_state_bytes', help: 'memory of the per-address state, fixed at start by limits.ipsMax', registers: [registry] });
  const nftQueued = new client.Gauge({ name: 'guard_nft_queue_elements', help: 'set elements with a change waiting for nft (bounded by nftables.queueMax)', registers: [registry] });
  const nftRefused = new client.Gauge({ name: 'guard_nft_refused', help: 'changes not applied since start: by=queue (the queue was full), by=nft (nft refused the element)', labelNames: ['by'], registers: [registry] });
  const nginxRefused = new client.Gauge({ name: 'guard_nginx_refused', help: 'blocklist changes not applied since start: by=queue (the queue was full), by=nginx (a POST failed three times)', labelNames: ['by'], registers: [registry] });
  return { registry, lines, rejected, latency, bans, sketch, ips, partitions, ipBytes, nftQueued, nftRefused, nginxRefused };
}

export class Guard {
  readonly log: Logger;
  readonly m = metrics();
  private detector!: DetectorState;
  private decisions!: DecisionState;
  private crs: Ruleset | undefined;
  private client!: ChicagoClient;
  private store!: DecisionStore;
  private nft: NftEnforcer | undefined;
  private nginx: NginxEnforcer | undefined;
  private tails: TailStream[] = [];
  private member: GroupConsumer | undefined;
  /** input partitions (`topic/partition`) as small numbers: the tag on the detector's per-address state */
  private readonly sources = new Map<string, number>();
  private readonly reading = new Set<string>();
  /** decision writes in flight (at most the bans of the last moments: new ones are capped per minute) */
  private readonly storing = new Set<Promise<void>>();
  private timers: NodeJS.Timeout[] = [];
  private server: http.Server | undefined;
  private readonly limits: ParseLimits;
  private stopped = false;
  /** CRS verdicts of recent distinct requests; full: the least recently used is dropped */
  private readonly verdicts = new LruMap<boolean>(VERDICT_CACHE_ENTRIES_MAX);
  /** log level trace: each ban's stage times (`timing decision`, `timing nft`) for the latency bench */
  private tracing = false;

  /** `sourceFor` says which partitions of an input this guard reads (default: the configured list) */
  constructor(readonly cfg: GuardConfig, private readonly sourceFor: (input: GuardConfig['inputs'][number]) => PartitionSource = (i) => new StaticPartitionSource(i.partitions)) {
    this.log = pino({ level: cfg.logLevel, base: { guard: cfg.guardId } });
    this.limits = { ...cfg.limits, prefixV4: cfg.prefixBits.v4, prefixV6: cfg.prefixBits.v6 };
    this.tracing = this.log.isLevelEnabled('trace');
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    const allow = new Allowlist(cfg.allowlist);
    const scenarios = compileScenarios(cfg.scenarios, cfg.loginPaths);
    if (cfg.crs.enabled && scenarios.some((s) => s.usesCrs)) {
      this.crs = compile(cfg.crs.rulesDir ?? DEBIAN_CRS_RULES_DIR, { paranoiaLevel: cfg.crs.paranoiaLevel, inboundThreshold: cfg.crs.inboundThreshold });
      const li = this.crs.stats.libinjection;
      if (!li.available) this.log.warn({ reason: li.detail, setAside: this.crs.stats.setAside.filter((r) => r.reason.includes('libinjection')).map((r) => r.id) }, 'CRS libinjection rules set aside');
    }
    this.detector = newDetector(scenarios, allow, { ipsMax: cfg.limits.ipsMax, sketch: cfg.sketch });
    const policy = { ...cfg.decisions, extendMinMs: 5000 };
    this.decisions = newDecisions(policy, allow);
    // its own path compiled before the first real line, not on it (warm.ts)
    const warmed = warmUp({ scenarios, crs: this.crs, limits: this.limits, policy, lines: limits.guardWarmLinesMax, crsRequests: limits.guardWarmCrsRequestsMax, msMax: limits.guardWarmMsMax, nowMs: Date.now() });
    this.log.info(warmed, 'warmed up');
    this.client = await ChicagoClient.connect({ url: cfg.node.url, clientName: `guard-${cfg.guardId}`, requestTimeoutMs: cfg.node.timeoutMs, ...(cfg.node.token ? { token: cfg.node.token } : {}), ...(cfg.node.ca ? { ca: cfg.node.ca } : {}) });
    await ensureDecisionsTopic(cfg.node.url, cfg.node.token, cfg.decisions.topic, { timeoutMs: cfg.node.timeoutMs, ...(cfg.node.ca ? { ca: cfg.node.ca } : {}) });
    this.store = new DecisionStore(this.client, cfg.decisions.topic, cfg.decisions.keyspace, cfg.guardId);
    const logFn = (level: 'info' | 'warn' | 'error', msg: string, extra?: object) => this.log[level](extra ?? {}, msg);
    if (cfg.nftables) {
      this.nft = new NftEnforcer({
        ...cfg.nftables, active: () => this.decisions.active.values(), log: logFn,
        ...(this.tracing ? { onTiming: (t: { target: string; writtenUs: number; ackUs: number }) => this.log.trace(t, 'timing nft') } : {}),
      });
      await this.nft.start();
    }
    if (cfg.nginx) this.nginx = new NginxEnforcer(cfg.nginx.urls, cfg.nginx.timeoutMs, logFn, { active: () => this.decisions.active.values(), checkIntervalMs: cfg.nginx.checkIntervalMs });
    // decisions in force survive a restart: read them back and enforce them before reading traffic;
    // following the topic starts first, so a decision written while the KV is read is not missed
    this.followDecisions();
    const restored = await this.store.load(Date.now());
    await Promise.all(restored.flatMap((d) => decide(this.decisions, { kind: 'restore', decision: d }, Date.now())).map((e) => this.enforce(e, true)));
    this.log.info({ restored: restored.length }, 'decisions restored');
    // `partitions: all` inputs are shared with the group's other members; listed ones are read here alone
    for (const input of cfg.inputs.filter((i) => i.partitions !== 'all')) {
      const count = await this.partitionCount(input.topic);
      for (const p of this.sourceFor(input).assigned(input.topic, count)) {
        const tail = this.client.tail(input.topic, p, { group: cfg.group, from: input.from, commitIntervalMs: cfg.membership.commitIntervalMs });
        this.tails.push(tail);
        this.reading.add(`${input.topic}/${p}`);
        void this.consume(tail, input.format);
      }
    }
    const shared = cfg.inputs.filter((i) => i.partitions === 'all');
    if (shared.length > 0) {
      // the coordinator counts a group's partitions when a member joins: the topics must exist first
      for (const input of shared) await this.partitionCount(input.topic);
      this.join(shared);
    }
    this.m.partitions.set(this.reading.size);
    this.timers.push(setInterval(() => {
      for (const d of expire(this.decisions, Date.now())) this.log.debug({ target: d.target }, 'decision expired');
      this.m.sketch.set(sketchBytes(this.detector));
      this.m.ips.set(this.detector.ips.size);
      this.m.ipBytes.set(this.detector.ips.bytes);
      if (this.nft) {
        this.m.nftQueued.set(this.nft.queued);
        this.m.nftRefused.labels('queue').set(this.nft.dropped);
        this.m.nftRefused.labels('nft').set(this.nft.errors);
      }
      if (this.nginx) {
        this.m.nginxRefused.labels('queue').set(this.nginx.refused);
        this.m.nginxRefused.labels('nginx').set(this.nginx.failures);
      }
    }, EXPIRE_INTERVAL_MS));
    if (cfg.metrics) await this.serveMetrics(cfg.metrics.host, cfg.metrics.port);
    this.log.info({ inputs: cfg.inputs.map((i) => i.topic), scenarios: scenarios.map((s) => s.spec.name + (s.spec.dryRun ? ' (dry-run)' : '')), nft: !!this.nft, nginx: !!this.nginx, crsRules: this.crs ? { active: this.crs.stats.active, setAside: this.crs.stats.setAside.length } : undefined }, 'guard running');
  }

  private async partitionCount(topic: string): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const res = await httpRequest(`${this.cfg.node.url}/v1/topics/${encodeURIComponent(topic)}`, { headers: this.cfg.node.token ? { authorization: `Bearer ${this.cfg.node.token}` } : {}, timeoutMs: this.cfg.node.timeoutMs, ...(this.cfg.node.ca ? { ca: this.cfg.node.ca } : {}) });
      const body = (res.ok ? JSON.parse(res.text) : {}) as { partitionCount?: number };
      if (res.ok && body.partitionCount) return body.partitionCount;
      if (attempt % 20 === 0) this.log.warn({ topic, status: res.status }, 'input topic not found; waiting for it');
      await new Promise((r) => setTimeout(r, 500));
      if (this.stopped) throw new Error('stopped');
    }
  }

  private async consume(tail: TailStream, format: 'nginx' | 'sshd'): Promise<void> {
    const topic = tail.topic;
    const lines = this.m.lines.labels(topic);
    const source = this.sourceOf(topic, tail.partition);
    try {
      for await (const rec of tail) {
        lines.inc();
        this.ingest(rec, format, source);
      }
      if (!this.stopped) this.log.error({ topic, partition: tail.partition }, 'tail ended');
    } catch (err) {
      if (!this.stopped) this.log.error({ err, topic, partition: tail.partition }, 'tail failed');
    }
  }

  /**
   * Joins the consumer group over the shared inputs: the coordinator assigns this guard its share
   * of their partitions, moves them when a member joins, leaves or dies, and offsets are committed
   * per partition (fenced), so the next owner resumes where this one stopped.
   */
  private join(inputs: InputConfig[]): void {
    const byTopic = new Map(inputs.map((i) => [i.topic, i]));
    const name = (ps: GroupPartitionRef[]) => ps.map((p) => `${p.topic}/${p.partition}`);
    const lines = new Map(inputs.map((i) => [i.topic, this.m.lines.labels(i.topic)]));
    const member = this.client.subscribe(this.cfg.group, [...byTopic.keys()], {
      sessionTimeoutMs: this.cfg.membership.sessionTimeoutMs,
      heartbeatIntervalMs: this.cfg.membership.heartbeatIntervalMs,
      commitIntervalMs: this.cfg.membership.commitIntervalMs,
      from: (p) => byTopic.get(p.topic)?.from ?? 'latest',
      onAssign: (ps) => {
        for (const k of name(ps)) this.reading.add(k);
        this.m.partitions.set(this.reading.size);
        this.log.info({ group: this.cfg.group, member: member.member, generation: member.generation, partitions: name(ps) }, 'partitions assigned');
      },
      onRevoke: async (ps) => {
        // their progress is committed; the addresses counted from them are the next owner's now
        for (const k of name(ps)) this.reading.delete(k);
        // the decisions made from them are in the store before the next owner reads on, so it
        // extends them rather than banning again; bounded, so the session does not lapse meanwhile
        let timer: NodeJS.Timeout | undefined;
        const wait = new Promise((r) => { timer = setTimeout(r, this.cfg.membership.sessionTimeoutMs / 2); });
        await Promise.race([Promise.allSettled([...this.storing]), wait]);
        clearTimeout(timer);
        this.m.partitions.set(this.reading.size);
        const released = this.detector ? forget(this.detector, new Set(ps.map((p) => this.sourceOf(p.topic, p.partition)))) : 0;
        this.log.info({ group: this.cfg.group, member: member.member, generation: member.generation, partitions: name(ps), released, stats: member.stats }, 'partitions revoked');
      },
    });
    this.member = member;
    void (async () => {
      try {
        for await (const rec of member) {
          const input = byTopic.get(rec.topic);
          if (!input) continue;
          lines.get(rec.topic)!.inc();
          this.ingest(rec, input.format, this.sourceOf(rec.topic, rec.partition));
        }
      } catch (err) {
        if (this.stopped) return;
        // a member that cannot read must not keep its partitions: leave (they move at once), then join again
        this.log.error({ err, group: this.cfg.group }, 'group member failed; rejoining');
        await member.close().catch(() => undefined);
        await new Promise((r) => setTimeout(r, REJOIN_DELAY_MS));
        if (!this.stopped) this.join(inputs);
      }
    })();
  }

  private sourceOf(topic: string, partition: number): number {
    const k = `${topic}/${partition}`;
    let n = this.sources.get(k);
    if (n === undefined) this.sources.set(k, (n = this.sources.size));
    return n;
  }

  private ingest(rec: TailRecord, format: 'nginx' | 'sshd', source: number): void {
    const gotUs = this.tracing ? nowUs() : 0;
    const ev = format === 'nginx' ? parseNginx(rec.value, rec.timestampMs, this.limits) : parseSsh(rec.headers, rec.timestampMs, this.limits);
    if (typeof ev === 'string') {
      this.m.rejected.labels(ev).inc();
      return;
    }
    this.handle(ev, source, gotUs ? { offset: rec.offset, gotUs } : undefined);
  }

  /** One event: detection, decisions, and the effects sent on their way (not awaited). */
  handle(ev: GuardEvent, source?: number, got?: { offset: number; gotUs: number }): void {
    const crs = this.crs;
    const alerts = detect(this.detector, ev, () => {
      if (!crs || ev.kind !== 'http') return false;
      // the verdict depends on the request only: repeated requests (floods, popular pages) are looked up
      const key = `${ev.method} ${ev.uri} ${ev.protocol}\n${ev.userAgent}\n${ev.referer}\n${ev.host}`;
      let blocked = this.verdicts.get(key);
      if (blocked === undefined) {
        blocked = evaluate(crs, { method: ev.method, uri: ev.uri, protocol: ev.protocol, headers: loggedHeaders(ev), remoteAddr: ev.client.ip }).blocked;
        this.verdicts.set(key, blocked);
      }
      return blocked;
    }, source);
    for (const alert of alerts) {
      const sc = this.cfg.scenarios.find((s) => s.name === alert.scenario)!;
      for (const e of decide(this.decisions, { kind: 'alert', alert, durationMs: sc.durationMs ?? 600_000 }, Date.now())) {
        if (got && e.type === 'ban') this.log.trace({ target: e.decision.target, offset: got.offset, gotUs: got.gotUs, decidedUs: nowUs() }, 'timing decision');
        void this.enforce(e);
      }
    }
  }

  private async enforce(e: Effect, restored = false): Promise<void> {
    if (e.type === 'capped' || e.type === 'dry' || e.type === 'allowlisted') {
      const scenario = e.type === 'allowlisted' ? 'allowlist' : e.alert.scenario;
      this.m.bans.labels(scenario, e.type).inc();
      this.log.info({ effect: e.type, ...(e.type === 'allowlisted' ? { target: e.target } : { target: e.alert.target, detail: e.alert.detail }) }, `decision ${e.type}`);
      return;
    }
    const d = e.decision;
    this.m.bans.labels(d.scenario, e.type).inc();
    // an enforcer that did not apply the change (nft or a full queue refused it, nginx failed three times) acknowledged nothing
    const timed = async (name: string, p: Promise<boolean>): Promise<[string, number | 'failed']> => {
      if (!(await p)) return [name, 'failed'];
      // a decision restored at start was timed when it was made: its line is long past
      const ms = d.eventMs !== undefined && !restored ? Date.now() - d.eventMs : NaN;
      if (Number.isFinite(ms)) this.m.latency.labels(name).observe(ms / 1000);
      return [name, ms];
    };
    const jobs: Array<Promise<[string, number | 'failed']>> = [];
    if (this.nft) jobs.push(timed('nft', e.type === 'unban' ? this.nft.unban(d) : this.nft.ban(d, e.type === 'extend')));
    if (this.nginx) jobs.push(timed('nginx', e.type === 'unban' ? this.nginx.unban(d) : this.nginx.ban(d)));
    const stored = !restored && (d.origin === 'guard' || e.type === 'unban') ? this.store.put(e.type === 'unban' ? 'unban' : 'ban', d).then(() => undefined, (err: unknown) => {
      this.log.error({ err, target: d.target }, 'storing a decision failed');
    }) : Promise.resolve();
    this.storing.add(stored);
    void stored.finally(() => this.storing.delete(stored));
    const enforced = Object.fromEntries(await Promise.all(jobs));
    await stored;
    this.log.info({ effect: e.type, target: d.target, scope: d.scope, scenario: d.scenario, offense: d.offense, untilMs: d.untilMs, latencyMs: enforced, ...(d.eventMs !== undefined && e.type === 'ban' ? { eventMs: d.eventMs, detectMs: d.createdMs - d.eventMs } : {}), detail: d.detail }, restored ? 'decision restored' : `decision ${e.type}`);
  }

  /** Decisions written elsewhere (the CLI, other guards) reach this guard's enforcers too. */
  private followDecisions(): void {
    const tail = this.client.tail(this.cfg.decisions.topic, 0, { from: 'latest' });
    this.tails.push(tail);
    void (async () => {
      try {
        for await (const rec of tail) {
          const r = decodeRecord(rec.value);
          if (!r || r.by === this.cfg.guardId) continue;
          const input = r.action === 'unban' ? { kind: 'unban' as const, target: r.decision.target } : { kind: 'restore' as const, decision: r.decision };
          for (const e of decide(this.decisions, input, Date.now())) {
            if (e.type === 'allowlisted') {
              this.m.bans.labels('allowlist', e.type).inc();
              this.log.warn({ effect: e.type, target: e.target, by: r.by }, 'decision allowlisted (followed): not enforced');
              continue;
            }
            // already stored by whoever wrote it
            const d = (e as { decision: Decision }).decision;
            if (!d) continue;
            if (this.nft) void (e.type === 'unban' ? this.nft.unban(d) : this.nft.ban(d, e.type === 'extend'));
            if (this.nginx) void (e.type === 'unban' ? this.nginx.unban(d) : this.nginx.ban(d));
            this.log.info({ effect: e.type, target: d.target, by: r.by }, `decision ${e.type} (followed)`);
          }
        }
      } catch (err) {
        if (!this.stopped) this.log.error({ err }, 'following decisions failed');
      }
    })();
  }

  private async serveMetrics(host: string, port: number): Promise<void> {
    this.server = http.createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.m.registry.metrics().then((body) => res.writeHead(200, { 'content-type': this.m.registry.contentType }).end(body), () => res.writeHead(500).end());
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EADDRINUSE') return reject(err);
        const e = new Error(`metrics: ${host}:${port} is in use`);
        e.name = 'PortInUseError'; // the CLI's exit 69, as a node's port in use
        reject(e);
      });
      this.server!.listen(port, host, resolve);
    });
    const addr = this.server.address();
    this.log.info({ metrics: `http://${host}:${typeof addr === 'object' && addr ? addr.port : port}/metrics` }, 'metrics listening');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    // leaving hands this guard's partitions to the others at once, with their progress committed
    await this.member?.close().catch(() => undefined);
    for (const t of this.tails) await t.return?.();
    await this.nft?.close();
    this.nginx?.stop();
    await this.store?.close().catch(() => undefined);
    this.client?.close();
    this.server?.close();
  }
}

export async function runGuard(opts: { config: string }): Promise<void> {
  // V8 lets the old generation grow to about twice what survived its last full collection before the
  // next one: at a high line rate the guard's garbage (records, parsed lines) then outweighs what it
  // keeps. Collecting at +guardHeapGrowingPercent keeps its RSS near what it holds (docs/guard.md "Memory").
  v8.setFlagsFromString(`--heap-growing-percent=${limits.guardHeapGrowingPercent}`);
  const cfg = loadGuardConfig(opts.config);
  const guard = new Guard(cfg);
  const stop = () => {
    guard.log.info('guard stopping');
    void guard.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    await guard.start();
  } catch (err) {
    // what started (the nft child, tails, the group membership) would keep the process alive
    await guard.stop().catch(() => undefined);
    throw err;
  }
}
