// `chicago agent`: the spool, one FileSource per configured source, one Shipper per task.
// Everything else the agent ships (journald, scripts, health, alerts) writes through sink(task, topic).
import { limits } from '../runtime/limits.js';
import { createLogger, type Logger } from '../runtime/log.js';
import { startIdleCompaction } from './compact.js';
import { type AgentConfig, loadAgentConfig } from './config.js';
import { FileSource } from './files.js';
import { JournaldSource } from './journald.js';
import { type AgentEvent, recordEntries } from './records.js';
import { startMonitoring } from './monitor.js';
import { Shipper } from './shipper.js';
import { ScriptRunner } from './scripts.js';
import { type Entry, Spool } from './spool.js';

/** Appends one task's records (and the position they were read up to) to the spool: one fdatasync. */
export interface TaskSink {
  readonly task: string;
  readonly topic: string;
  write(events: AgentEvent[], extra?: Entry[]): Promise<void>;
}

/** Something an alert rule may count: a gap, a spool that filled, a read that failed. */
export interface Notice { kind: string; task?: string; source?: string; detail?: string; count?: number }

export class Agent {
  readonly sources: FileSource[] = [];
  readonly journald: JournaldSource[] = [];
  readonly shippers = new Map<string, Shipper>();
  /** scripts on demand and on schedule, when the config has a `scripts` section */
  scripts?: ScriptRunner;
  private stopping?: Promise<void>;
  private failed?: Error;
  private resolveDone!: () => void;
  private started = false;
  private readonly noticeListeners = new Set<(n: Notice) => void>();
  /** run first at stop (health, status port), in parallel */
  private readonly stoppers: Array<() => Promise<void> | void> = [];
  /** resolves when the agent has stopped (signal or fatal error) */
  readonly done = new Promise<void>((r) => { this.resolveDone = r; });

  private constructor(readonly cfg: AgentConfig, readonly spool: Spool, readonly log: Logger) {}

  static async start(cfg: AgentConfig, log: Logger): Promise<Agent> {
    const { spool, report } = Spool.open(cfg.spool);
    log.info({ spool: cfg.spool.dir, ...report }, 'spool recovered');
    const agent = new Agent(cfg, spool, log);
    const fatal = (err: Error) => agent.fail(err);
    for (const src of cfg.sources) {
      if (!agent.shippers.has(src.task)) {
        const s = new Shipper(src.task, src.topic, spool, cfg, log);
        s.onFatal = fatal;
        agent.shippers.set(src.task, s);
      }
    }
    spool.onRecords = (task) => agent.shippers.get(task)?.notify();
    if (log.isLevelEnabled('trace')) spool.onTiming = (t) => log.trace(t, 'timing synced');
    for (const src of cfg.sources) {
      const fs = new FileSource(src, cfg, spool, log);
      fs.fatal = fatal;
      fs.notice = (n) => agent.notice(n);
      agent.sources.push(fs);
    }
    spool.onFreed(() => { for (const s of agent.sources) s.kick(); });
    for (const j of cfg.journald ?? []) {
      const src = new JournaldSource(j, cfg, agent.sink(j.task, j.topic), spool, (n) => agent.notice(n), log);
      src.fatal = fatal;
      agent.journald.push(src);
    }
    for (const s of agent.shippers.values()) s.start();
    agent.started = true;
    try {
      for (const s of agent.sources) await s.start();
      for (const j of agent.journald) await j.start();
      if (cfg.scripts) agent.scripts = await ScriptRunner.start(agent, cfg, log);
    } catch (err) {
      // a source that cannot resume ends the agent (its shippers would keep the process alive)
      await agent.stop();
      throw err;
    }
    return agent;
  }

  /**
   * A writer for a task that ships to `topic`, its shipper started on first use; a task has one topic.
   * `lingerMs` replaces batch.lingerMs for a task of its own (script output: someone waits for it).
   */
  sink(task: string, topic: string, opts: { lingerMs?: number } = {}): TaskSink {
    let s = this.shippers.get(task);
    if (s && s.topic !== topic) throw new Error(`task ${task} ships to ${s.topic}, not ${topic}`);
    if (!s) {
      const cfg = opts.lingerMs === undefined ? this.cfg : { ...this.cfg, batch: { ...this.cfg.batch, lingerMs: opts.lingerMs } };
      s = new Shipper(task, topic, this.spool, cfg, this.log);
      s.onFatal = (err) => this.fail(err);
      this.shippers.set(task, s);
      if (this.started) s.start();
    }
    const spool = this.spool;
    const host = this.cfg.host;
    return {
      task,
      topic,
      write: (events, extra = []) => spool.append([...recordEntries(spool, host, task, topic, events), ...extra]),
    };
  }

  /** Tells alert rules (and the log) about something that went wrong or was lost. */
  notice(n: Notice): void {
    this.log.warn({ notice: n }, n.kind);
    for (const fn of this.noticeListeners) fn(n);
  }

  onNotice(fn: (n: Notice) => void): () => void {
    this.noticeListeners.add(fn);
    return () => this.noticeListeners.delete(fn);
  }

  /** Something to stop before the sources, shippers and spool stop. */
  onStop(fn: () => Promise<void> | void): void {
    this.stoppers.push(fn);
  }

  private fail(err: Error): void {
    this.failed ??= err;
    this.log.fatal({ err }, 'agent failed');
    void this.stop();
  }

  get error(): Error | undefined {
    return this.failed;
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      // runs are killed and their final records written while the spool is open
      await this.scripts?.stop();
      await Promise.all(this.stoppers.map(async (fn) => fn()));
      await Promise.all([...this.sources.map((s) => s.stop()), ...this.journald.map((j) => j.stop())]);
      await Promise.all([...this.shippers.values()].map((s) => s.stop()));
      this.spool.close();
      this.resolveDone();
    })();
    return this.stopping;
  }
}

/**
 * V8 grows its young generation to 2 × 16 MiB under a burst of reads (1,000 files at start) and
 * keeps it: a third of the agent's RSS. V8 takes its cap only at start, so bin/chicago.js passes
 * --max-semi-space-size=AGENT_SEMI_SPACE_MB to node for `chicago agent`; an agent started some
 * other way says so once.
 */
export const AGENT_SEMI_SPACE_MB = limits.agentSemiSpaceMb;
function youngGenerationCapped(): boolean {
  return [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith('--max-semi-space-size'));
}

/** The config as logged at start: the token, the CA and the webhook's header values (an authorization token) as `(set)`. */
export function loggedConfig(cfg: AgentConfig): unknown {
  const alerts = cfg.monitor.alerts;
  const webhook = alerts?.webhook;
  return {
    ...cfg,
    node: { ...cfg.node, token: cfg.node.token ? '(set)' : undefined, ca: cfg.node.ca ? '(set)' : undefined },
    monitor: {
      ...cfg.monitor,
      ...(alerts ? { alerts: { ...alerts, ...(webhook ? { webhook: { ...webhook, headers: Object.fromEntries(Object.keys(webhook.headers).map((k) => [k, '(set)'])) } } : {}) } } : {}),
    },
  };
}

/** Runs the agent until SIGTERM/SIGINT; a wrong config throws ConfigError (exit 78). */
export async function runAgent(opts: { config: string }): Promise<void> {
  const cfg = loadAgentConfig(opts.config);
  const log = createLogger(cfg.logLevel, { component: 'agent', host: cfg.host });
  if (!youngGenerationCapped()) log.info(`V8's young generation is not capped: run as bin/chicago.js itself (chicago agent, not node bin/chicago.js) or under node --max-semi-space-size=${AGENT_SEMI_SPACE_MB}, the agent needs about 25 MB less memory`);
  log.info({ config: loggedConfig(cfg) }, 'agent config');
  const agent = await Agent.start(cfg, log);
  try {
    await startMonitoring(agent);
  } catch (err) {
    await agent.stop();
    throw err;
  }
  const read = () => agent.sources.reduce((n, s) => n + s.stats.bytesRead, 0) + agent.journald.reduce((n, j) => n + j.stats.bytes, 0);
  agent.onStop(startIdleCompaction(read, (ms) => log.debug({ ms: Math.round(ms) }, 'heap compacted after a burst')));
  log.info({ sources: cfg.sources.length, journald: cfg.journald?.length ?? 0, tasks: [...agent.shippers.keys()] }, 'agent running');
  const onSignal = () => void agent.stop();
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  await agent.done;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if (agent.error) throw agent.error;
}
