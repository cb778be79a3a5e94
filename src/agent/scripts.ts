// Scripts on demand and on schedule. Only allowlisted scripts run (name and sha256, checked at every
// run on the bytes that then run: a verified copy is executed, so an edit cannot slip in between).
// Each run is its own process group with a timeout that kills the whole group, an output cap, an
// optional unprivileged user and a minimal environment; its output goes to the results topic
// through the agent's spool (exactly once, seq gap-free), as records with headers run, script,
// stream. Commands come from `agent.commands.<host>` (long-polled); the read position and the run's
// entry are durable before the process starts: after a crash a command is never run twice and never
// skipped. The start record goes with the first output (or the output linger after the spawn), so a
// run's first output costs one spool append and one shipped batch.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cron } from 'croner';
import { caDispatcher } from '../client/tls.js';
import { deadline } from '../runtime/deadline.js';
import type { Logger } from '../runtime/log.js';
import type { Agent, TaskSink } from './agent.js';
import type { AgentConfig } from './config.js';
import type { AgentEvent } from './records.js';
import {
  type Chunk, type OutputState, type RunnerState, type RunStatus, type ScriptCommand, type Stream,
  checkDigest, endRun, flushOutput, initialOutput, initialRunnerState, judgeCommand, judgeTick, parseCommand, runStatus, startRun, takeOutput,
} from './script-decide.js';
import { type AllowedScript, BUILTIN_SCRIPTS, SCRIPTS_TASK, type ScheduleEntry, type ScriptsConfig } from './scripts-config.js';
import { NodeError, nodeRequest } from './shipper.js';
import type { Entry } from './spool.js';

/** spool cursor: the next offset of the command topic to read */
export const COMMANDS_CURSOR = 'scripts.commands';
/** spool cursor per run going on: `{script, pid, startTicks}`; one left after a crash is answered 'interrupted' */
const RUN_CURSOR_PREFIX = 'scripts.run.';
const BUILTIN_OUTPUT_BYTES_MAX = 8 * 1024 * 1024;
const COMMANDS_FETCH_MAX = 100;
const COMMANDS_WAIT_MS = 10_000;
/** the command topic keeps a week of commands: a restarted agent answers what it missed */
const COMMANDS_RETENTION_MS = 7 * 86_400_000;
/** how long an 'auto' check of whether the node needs tokens is trusted */
const REMOTE_PROBE_TTL_MS = 10_000;
/** after the script's process ended, how long its pipes may stay open (a grandchild that left the group) */
const PIPE_CLOSE_GRACE_MS = 1000;
const MINIMAL_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ScriptStats { runs: number; refused: number; expired: number; busy: number; timeouts: number; skippedTicks: number; interrupted: number }

type Trigger = { kind: 'command'; command: ScriptCommand; offset: number } | { kind: 'schedule'; schedule: ScheduleEntry; skippedBefore: number };

interface Run {
  id: string;
  script: AllowedScript;
  trigger: Trigger;
  file: string;
  args: string[];
  startedAtMs: number;
  proc?: ChildProcess;
  out: OutputState;
  linger?: NodeJS.Timeout;
  /** the start record (and the pid entry once spawned) not appended yet: it goes with the run's next records */
  start?: { event: AgentEvent; extra: Entry[] };
  startHold?: NodeJS.Timeout;
  timedOut: boolean;
  stopping: boolean;
  timers: NodeJS.Timeout[];
  done: Promise<void>;
}

/** Where the built-in scripts are: scripts/agent/ at the package root (from dist/src/agent or src/agent). */
export function builtinDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../..', '../..']) {
    const dir = path.resolve(here, up, 'scripts/agent');
    if (existsSync(path.join(dir, BUILTIN_SCRIPTS[0]))) return dir;
  }
  throw new Error(`the agent's built-in scripts (scripts/agent/) are missing near ${here}`);
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** /proc/PID/stat's start time (clock ticks since boot): tells a process from a later one with its pid. */
function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export class ScriptRunner {
  readonly stats: ScriptStats = { runs: 0, refused: 0, expired: 0, busy: 0, timeouts: 0, skippedTicks: 0, interrupted: 0 };
  private state: RunnerState = initialRunnerState();
  private readonly allow = new Map<string, { script: AllowedScript; dir: string }>();
  private readonly runs = new Map<string, Run>();
  private readonly crons: Cron[] = [];
  private readonly abort = new AbortController();
  private loop?: Promise<void>;
  private stopped = false;
  private remoteProbe?: { atMs: number; allowed: boolean; why: string };
  private readonly sink: TaskSink;
  private readonly cfg: ScriptsConfig;

  private constructor(private readonly agent: Agent, private readonly agentCfg: AgentConfig, private readonly log: Logger) {
    this.cfg = agentCfg.scripts!;
    // a run's records ship as soon as the batch before them is acknowledged: `chicago agent run`
    // waits for them, and a batch of a few records costs no more than lingering for more
    this.sink = agent.sink(SCRIPTS_TASK, this.cfg.resultsTopic, { lingerMs: 0 });
  }

  static async start(agent: Agent, cfg: AgentConfig, log: Logger): Promise<ScriptRunner> {
    const r = new ScriptRunner(agent, cfg, log.child({ part: 'scripts' }));
    r.loadAllowList();
    await r.recoverInterrupted();
    for (const s of r.cfg.schedule) {
      r.crons.push(new Cron(s.cron, { catch: (err) => r.log.error({ err, schedule: s.name }, 'schedule tick failed') }, () => r.tick(s)));
    }
    r.loop = r.commandLoop().catch((err: Error) => {
      r.log.error({ err }, 'command loop stopped');
      agent.notice({ kind: 'scripts-commands-stopped', task: SCRIPTS_TASK, detail: err.message });
    });
    log.info({ allow: [...r.allow.keys()], schedules: r.cfg.schedule.length, commandsTopic: r.cfg.commandsTopic, resultsTopic: r.cfg.resultsTopic, remote: r.cfg.remote.enabled }, 'scripts ready');
    return r;
  }

  /** The allow list with the built-ins (hashed now: an edit after start is refused like any other). */
  private loadAllowList(): void {
    if (this.cfg.builtins) {
      const dir = builtinDir();
      for (const name of BUILTIN_SCRIPTS) {
        const digest = sha256(readFileSync(path.join(dir, name)));
        this.allow.set(name, { dir, script: { name, sha256: digest, timeoutMs: this.cfg.builtinTimeoutMs, outputBytesMax: BUILTIN_OUTPUT_BYTES_MAX, cwd: '/' } });
      }
    }
    for (const s of this.cfg.allow) {
      const dir = this.cfg.dirs.find((d) => existsSync(path.join(d, s.name)));
      // a script missing now may appear later; it is looked for again at each run
      this.allow.set(s.name, { script: s, dir: dir ?? '' });
      if (!dir) this.log.warn({ script: s.name, dirs: this.cfg.dirs }, 'allowlisted script not found in scripts.dirs');
    }
  }

  /** Runs a crash cut short: their leftover processes are killed, and each gets a final 'interrupted' record. */
  private async recoverInterrupted(): Promise<void> {
    const extra: Entry[] = [];
    const events: AgentEvent[] = [];
    for (const [key, value] of this.agent.spool.cursors) {
      if (!key.startsWith(RUN_CURSOR_PREFIX)) continue;
      const id = key.slice(RUN_CURSOR_PREFIX.length);
      let info: { script?: string; pid?: number; startTicks?: string; trigger?: string } = {};
      try {
        info = JSON.parse(value) as typeof info;
      } catch { /* an entry from before the process started */ }
      if (info.pid && info.startTicks && startTicks(info.pid) === info.startTicks) killGroup(info.pid, 'SIGKILL');
      events.push(this.finalEvent(id, info.script ?? '?', info.trigger ?? '?', {
        status: 'interrupted', exitCode: null, signal: null, reason: 'the agent stopped or crashed during the run; its processes were killed', durationMs: null,
      }));
      extra.push({ t: 'cur', key, cursor: null });
      this.stats.interrupted++;
    }
    if (events.length > 0) {
      await this.sink.write(events, extra);
      this.log.warn({ runs: events.length }, 'runs interrupted by a restart answered');
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const c of this.crons) c.stop();
    this.abort.abort();
    await this.loop;
    for (const run of this.runs.values()) {
      run.stopping = true;
      if (run.proc?.pid) {
        killGroup(run.proc.pid, 'SIGTERM');
        run.timers.push(setTimeout(() => killGroup(run.proc!.pid!, 'SIGKILL'), this.cfg.killGraceMs));
      }
    }
    await Promise.all([...this.runs.values()].map((r) => r.done));
  }

  // ---- triggers ----

  private tick(s: ScheduleEntry): void {
    if (this.stopped) return;
    const t = judgeTick(this.state, s.name, this.cfg.runsMax);
    this.state = t.state;
    if (!t.run) {
      this.stats.skippedTicks++;
      this.log.debug({ schedule: s.name, why: t.why }, 'schedule tick skipped');
      return;
    }
    if (t.skippedBefore > 0) this.agent.notice({ kind: 'script-ticks-skipped', task: SCRIPTS_TASK, source: s.name, count: t.skippedBefore, detail: 'ticks came while the previous run went on' });
    void this.begin(randomUUID(), s.name, s.args, { kind: 'schedule', schedule: s, skippedBefore: t.skippedBefore });
  }

  private async commandLoop(): Promise<void> {
    let backoff = this.agentCfg.retry.minMs;
    let ensured = false;
    const cursorText = this.agent.spool.cursors.get(COMMANDS_CURSOR);
    let next: number | undefined = cursorText === undefined ? undefined : Number(cursorText);
    const topic = encodeURIComponent(this.cfg.commandsTopic);
    while (!this.stopped) {
      try {
        if (!ensured) {
          await this.ensureCommandTopic();
          ensured = true;
        }
        const from = next === undefined ? 'from=earliest' : `offset=${next}`;
        const res = (await this.request('GET', `/v1/topics/${topic}/records?partition=0&${from}&maxRecords=${COMMANDS_FETCH_MAX}&waitMs=${COMMANDS_WAIT_MS}`, undefined, COMMANDS_WAIT_MS)) as {
          records: Array<{ offset: number; value: string | null; valueEncoding?: string }>; nextOffset: number; startOffset: number; endOffset: number;
        };
        backoff = this.agentCfg.retry.minMs;
        if (next !== undefined && next > res.endOffset) {
          // the topic was deleted and made again: its offsets started over
          this.agent.notice({ kind: 'script-commands-reset', task: SCRIPTS_TASK, detail: `command topic ends at ${res.endOffset}, below the saved position ${next}` });
          next = res.startOffset;
          continue;
        }
        if (res.records.length > 0 && next !== undefined && res.records[0].offset > next) {
          this.agent.notice({ kind: 'script-commands-lost', task: SCRIPTS_TASK, count: res.records[0].offset - next, detail: 'commands were trimmed by retention before this agent read them' });
        }
        if (res.records.length > 0) {
          const remote = await this.remoteAllowed();
          for (const r of res.records) this.command(r.offset, r.value === null || r.valueEncoding === 'base64' ? '' : r.value, remote);
        }
        next = res.nextOffset;
      } catch (err) {
        if (this.stopped) return;
        const e = err as Error & { code?: string };
        if (e instanceof NodeError && e.code === 'TOPIC_NOT_FOUND') ensured = false;
        this.log.warn({ err: e.message, code: e.code, retryInMs: backoff }, 'reading commands failed; retrying');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(this.agentCfg.retry.maxMs, backoff * 2);
      }
    }
  }

  private async ensureCommandTopic(): Promise<void> {
    const topic = this.cfg.commandsTopic;
    try {
      await this.request('GET', `/v1/topics/${encodeURIComponent(topic)}`);
    } catch (err) {
      if (!(err instanceof NodeError && err.code === 'TOPIC_NOT_FOUND')) throw err;
      await this.request('POST', '/v1/topics', { name: topic, partitions: 1, retention: { ms: COMMANDS_RETENTION_MS } }).catch((e: unknown) => {
        if (!(e instanceof NodeError && e.code === 'TOPIC_EXISTS')) throw e;
      });
      this.log.info({ topic }, 'command topic made');
    }
  }

  /**
   * Whether remote commands run: `remote.enabled` true or false says so; absent ('auto'), they run
   * only when the node refuses a request without a token (then writing a command needed agent:exec).
   */
  private async remoteAllowed(): Promise<{ allowed: boolean; why: string }> {
    const e = this.cfg.remote.enabled;
    if (e === true) return { allowed: true, why: '' };
    if (e === false) return { allowed: false, why: 'remote scripts are off on this agent (scripts.remote.enabled: false)' };
    const now = Date.now();
    if (this.remoteProbe && now - this.remoteProbe.atMs < REMOTE_PROBE_TTL_MS) return this.remoteProbe;
    let status = 0;
    try {
      const res = await fetch(`${this.agentCfg.node.url}/v1/topics/${encodeURIComponent(this.cfg.commandsTopic)}`, {
        signal: AbortSignal.timeout(this.agentCfg.node.timeoutMs),
        ...({ dispatcher: caDispatcher(this.agentCfg.node.ca) } as RequestInit),
      });
      status = res.status;
      await res.arrayBuffer();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not check whether the node requires tokens');
    }
    const allowed = status === 401;
    this.remoteProbe = {
      atMs: now,
      allowed,
      why: allowed ? '' : 'the node runs without tokens (anyone who reaches it could write commands): set scripts.remote.enabled: true on the agent to allow remote scripts anyway',
    };
    return this.remoteProbe;
  }

  /** One command record: run it, or answer why not; either way its first record carries the new read position. */
  private command(offset: number, value: string, remote: { allowed: boolean; why: string }): void {
    const cursor: Entry = { t: 'cur', key: COMMANDS_CURSOR, cursor: String(offset + 1) };
    const parsed = parseCommand(value);
    if ('error' in parsed) {
      this.stats.refused++;
      this.answer(`invalid-${offset}`, '?', 'command', 'invalid', parsed.error, [cursor]);
      return;
    }
    const v = judgeCommand(this.state, parsed, { nowMs: Date.now(), remote, allowed: new Set(this.allow.keys()), runsMax: this.cfg.runsMax });
    if (v.kind === 'refused') {
      if (v.status === 'expired') this.stats.expired++;
      else if (v.status === 'busy') this.stats.busy++;
      else this.stats.refused++;
      this.log.info({ command: parsed.id, script: parsed.script, status: v.status, reason: v.reason }, 'command not run');
      this.answer(parsed.id, parsed.script, 'command', v.status, v.reason, [cursor]);
      return;
    }
    this.state = startRun(this.state);
    void this.begin(parsed.id, parsed.script, parsed.args, { kind: 'command', command: parsed, offset }, [cursor]);
  }

  // ---- a run ----

  /**
   * Verifies the script, makes the command's read position and the run's entry durable, then starts
   * the process. The run slot is taken by the caller.
   */
  private async begin(id: string, name: string, args: string[], trigger: Trigger, extra: Entry[] = []): Promise<void> {
    const schedule = trigger.kind === 'schedule' ? trigger.schedule.name : undefined;
    const entry = this.allow.get(name);
    const release = () => { this.state = endRun(this.state, schedule); };
    let bytes: Buffer;
    let file: string;
    try {
      if (!entry) throw new Error(`script ${name} is not on this agent's allow list`);
      const dir = entry.dir && existsSync(path.join(entry.dir, name)) ? entry.dir : this.cfg.dirs.find((d) => existsSync(path.join(d, name)));
      if (!dir) throw new Error(`script ${name} is allowlisted but not found in ${this.cfg.dirs.join(', ') || 'scripts.dirs'}`);
      file = path.join(dir, name);
      if (!statSync(file).isFile()) throw new Error(`${file} is not a regular file`);
      bytes = readFileSync(file);
      const refused = checkDigest(name, file, sha256(bytes), entry.script.sha256);
      if (refused) throw new Error(refused);
    } catch (err) {
      release();
      this.stats.refused++;
      this.log.warn({ run: id, script: name, err: (err as Error).message }, 'script refused');
      this.agent.notice({ kind: 'script-refused', task: SCRIPTS_TASK, source: name, detail: (err as Error).message });
      this.answer(id, name, trigger.kind, 'refused', (err as Error).message, extra);
      return;
    }
    const script = entry.script;
    let resolveDone!: () => void;
    const run: Run = {
      id, script, trigger, file, args, startedAtMs: Date.now(), out: initialOutput(), timedOut: false, stopping: false, timers: [],
      done: new Promise((r) => { resolveDone = r; }),
    };
    this.runs.set(id, run);
    const runKey = RUN_CURSOR_PREFIX + id;
    run.start = {
      event: this.event(run, 'start', JSON.stringify({
        run: id, script: name, args, trigger: trigger.kind, timeoutMs: script.timeoutMs, outputBytesMax: script.outputBytesMax,
        ...(trigger.kind === 'command' ? { requestedAt: new Date(trigger.command.requestedAtMs).toISOString() } : { schedule: trigger.schedule.cron, skippedTicks: trigger.skippedBefore }),
      })),
      extra: [],
    };
    try {
      // entries only (nothing to ship yet): a crash from here on is answered 'interrupted', never run again
      await this.sink.write([], [...extra, { t: 'cur', key: runKey, cursor: JSON.stringify({ script: name, trigger: trigger.kind }) }]);
    } catch (err) {
      // the spool failed: the agent stops; nothing ran
      this.runs.delete(id);
      release();
      resolveDone();
      this.log.error({ err, run: id }, 'could not record the start of a run');
      return;
    }
    this.stats.runs++;
    let copyDir: string | undefined;
    const finish = (status: RunStatus, exitCode: number | null, signal: string | null, reason?: string) => {
      for (const t of run.timers) clearTimeout(t);
      if (run.linger) clearTimeout(run.linger);
      const { chunks } = flushOutput(run.out);
      const events = [...this.takeStart(run).events, ...chunks.map((c) => this.chunkEvent(run, c))];
      const truncated = run.out.droppedBytes > 0;
      events.push(this.finalEvent(id, name, trigger.kind, {
        status, exitCode, signal, durationMs: Date.now() - run.startedAtMs, truncated, keptBytes: run.out.keptBytes, droppedBytes: run.out.droppedBytes, ...(reason ? { reason } : {}),
      }));
      if (copyDir) rmSync(copyDir, { recursive: true, force: true });
      this.runs.delete(id);
      release();
      this.sink.write(events, [{ t: 'cur', key: runKey, cursor: null }]).catch((err: Error) => this.log.error({ err, run: id }, 'could not record the end of a run')).finally(resolveDone);
      this.log.info({ run: id, script: name, status, exitCode, signal, durationMs: Date.now() - run.startedAtMs, truncated }, 'script run ended');
    };
    if (this.stopped) {
      finish('interrupted', null, null, 'the agent stopped before the script started');
      return;
    }
    let proc: ChildProcess;
    try {
      // the verified bytes are what runs: a private copy, readable by an unprivileged user
      copyDir = mkdtempSync(path.join(this.cfg.runDir, 'chicago-run-'));
      chmodSync(copyDir, 0o755);
      const exe = path.join(copyDir, name);
      writeFileSync(exe, bytes, { mode: 0o555 });
      const runAs = script.runAs;
      proc = spawn(exe, args, {
        detached: true,
        cwd: script.cwd,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          PATH: MINIMAL_PATH,
          HOME: runAs?.home ?? process.env.HOME ?? '/',
          USER: runAs?.user ?? os.userInfo().username,
          LOGNAME: runAs?.user ?? os.userInfo().username,
          LANG: 'C.UTF-8',
          CHICAGO_RUN_ID: id,
          CHICAGO_SCRIPT: name,
          CHICAGO_SCRIPT_PATH: file,
          CHICAGO_HOST: this.agentCfg.host,
        },
        ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
      });
    } catch (err) {
      finish('error', null, null, `could not start ${name}: ${(err as Error).message}`);
      return;
    }
    run.proc = proc;
    let ended = false;
    let exit: { code: number | null; signal: string | null } | undefined;
    proc.once('error', (err) => {
      if (ended) return;
      ended = true;
      finish('error', null, null, `could not start ${name}: ${err.message}`);
    });
    proc.once('spawn', () => {
      const pid = proc.pid!;
      // the pid lets a restarted agent kill what a crash left running; it goes with the start record,
      // appended with the first output or after the output linger, whichever comes first
      run.start?.extra.push({ t: 'cur', key: runKey, cursor: JSON.stringify({ script: name, trigger: trigger.kind, pid, startTicks: startTicks(pid) }) });
      run.startHold = setTimeout(() => this.emit(run, []), this.cfg.output.lingerMs);
      run.timers.push(run.startHold);
      run.timers.push(setTimeout(() => {
        run.timedOut = true;
        this.stats.timeouts++;
        killGroup(pid, 'SIGTERM');
        run.timers.push(setTimeout(() => killGroup(pid, 'SIGKILL'), this.cfg.killGraceMs));
      }, script.timeoutMs));
    });
    proc.stdout!.on('data', (d: Buffer) => this.output(run, 'stdout', d));
    proc.stderr!.on('data', (d: Buffer) => this.output(run, 'stderr', d));
    const closed = () => {
      if (ended || !exit) return;
      ended = true;
      const end = runStatus(exit.code, exit.signal, run.timedOut);
      if (run.stopping && end.status !== 'ok') {
        finish('interrupted', end.exitCode, end.signal, 'the agent stopped during the run');
        return;
      }
      finish(end.status, end.exitCode, end.signal, end.status === 'timeout' ? `killed after its timeout of ${script.timeoutMs} ms` : undefined);
    };
    proc.once('exit', (code, signal) => {
      exit = { code, signal };
      // the run is over when its process is: whatever it left in its group goes too
      if (proc.pid) killGroup(proc.pid, 'SIGKILL');
      // a process that left the group (setsid) may hold the pipes open: stop reading after a grace
      run.timers.push(setTimeout(() => { proc.stdout!.destroy(); proc.stderr!.destroy(); closed(); }, PIPE_CLOSE_GRACE_MS));
    });
    proc.once('close', closed);
  }

  private output(run: Run, stream: Stream, data: Buffer): void {
    const first = run.out.keptBytes === 0;
    const r = takeOutput(run.out, stream, data, { capBytes: run.script.outputBytesMax, chunkBytes: this.cfg.output.chunkBytes });
    run.out = r.state;
    let chunks = r.chunks;
    if (first && run.out.pending) {
      // the first output goes at once (what a caller waits for); later output lingers to fill records
      const f = flushOutput(run.out);
      run.out = f.state;
      chunks = [...chunks, ...f.chunks];
    }
    this.emit(run, chunks);
    if (run.out.pending && !run.linger) {
      run.linger = setTimeout(() => {
        run.linger = undefined;
        const f = flushOutput(run.out);
        run.out = f.state;
        this.emit(run, f.chunks);
      }, this.cfg.output.lingerMs);
    } else if (!run.out.pending && run.linger) {
      clearTimeout(run.linger);
      run.linger = undefined;
    }
  }

  /** Output records, after the start record if it is still held. */
  private emit(run: Run, chunks: Chunk[]): void {
    const start = this.takeStart(run);
    if (chunks.length === 0 && start.events.length === 0) return;
    this.sink.write([...start.events, ...chunks.map((c) => this.chunkEvent(run, c))], start.extra).catch((err: Error) => this.log.error({ err, run: run.id }, 'could not record output'));
  }

  /** The held start record and pid entry, once: the caller appends them before the run's other records. */
  private takeStart(run: Run): { events: AgentEvent[]; extra: Entry[] } {
    const s = run.start;
    if (!s) return { events: [], extra: [] };
    run.start = undefined;
    clearTimeout(run.startHold);
    return { events: [s.event], extra: s.extra };
  }

  // ---- records ----

  private event(run: Run, stream: string, value: string | Buffer): AgentEvent {
    return { value, source: run.script.name, timeMs: Date.now(), headers: { run: run.id, script: run.script.name, stream, trigger: run.trigger.kind } };
  }

  private chunkEvent(run: Run, c: Chunk): AgentEvent {
    return this.event(run, c.stream, c.data);
  }

  private finalEvent(id: string, script: string, trigger: string, end: { status: RunStatus; exitCode: number | null; signal: string | null; durationMs: number | null; reason?: string; truncated?: boolean; keptBytes?: number; droppedBytes?: number }): AgentEvent {
    return {
      value: JSON.stringify({ run: id, script, ...end }),
      source: script,
      timeMs: Date.now(),
      level: end.status === 'ok' ? 'info' : 'warn',
      headers: {
        run: id, script, stream: 'exit', trigger, status: end.status,
        ...(end.exitCode !== null ? { exitCode: String(end.exitCode) } : {}),
        ...(end.signal ? { signal: end.signal } : {}),
        ...(end.truncated ? { truncated: 'true' } : {}),
      },
    };
  }

  /** A command or run answered without running: one final record. */
  private answer(id: string, script: string, trigger: string, status: RunStatus, reason: string, extra: Entry[]): void {
    this.sink.write([this.finalEvent(id, script, trigger, { status, exitCode: null, signal: null, durationMs: 0, reason })], extra)
      .catch((err: Error) => this.log.error({ err, run: id }, 'could not record an answer'));
  }

  // ---- the node ----

  private request(method: string, route: string, body?: unknown, waitMs = 0): Promise<unknown> {
    const node = this.agentCfg.node;
    const d = deadline(node.timeoutMs + waitMs, this.abort.signal);
    return nodeRequest(node, method, route, body, d.signal).finally(d.done);
  }

}

