// Processes the bench starts or watches: a Chicago node, CPU/RSS sampling from /proc, machine facts.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir, cpus, totalmem, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root, from dist/bench/*.js or bench/*.ts alike. */
export function repoRoot(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const up of ['..', '../..']) {
    const dir = resolve(here, up);
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'tsconfig.json'))) return dir;
  }
  return process.cwd();
}

export interface MachineInfo {
  node: string;
  cpus: { model: string; count: number };
  memGiB: number;
  platform: string;
  gitRev?: string;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  let gitRev: string | undefined;
  try {
    gitRev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: repoRoot(), stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: repoRoot(),
      stdio: ['ignore', 'pipe', 'ignore'],
    }).toString();
    if (dirty.trim() !== '') gitRev += '-dirty';
  } catch {
    gitRev = undefined;
  }
  return {
    node: process.version,
    cpus: { model: list[0]?.model.trim() ?? 'unknown', count: list.length },
    memGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    platform: `${process.platform}-${process.arch}`,
    ...(gitRev === undefined ? {} : { gitRev }),
  };
}

// ---- /proc sampling ---------------------------------------------------------------------------

let clkTck = 0;
function clockTicks(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

export interface ProcSample {
  /** user + system CPU seconds so far (all threads) */
  cpuS: number;
  rssMB: number;
  threads: number;
}

export function readProc(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name may contain spaces and parentheses: fields start after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const threads = Number(fields[17]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return { cpuS: (utime + stime) / clockTicks(), rssMB: rssKb / 1024, threads };
  } catch {
    return undefined;
  }
}

export interface ProcUsage {
  /** average CPU over the window, % of one core (200 = both cores of a 2-core machine) */
  cpuPct: number;
  rssMB: number;
  rssMaxMB: number;
  threads: number;
}

/** Samples a process every `everyMs` from start() to stop(); CPU is averaged over the window. */
export class ProcSampler {
  private first?: ProcSample;
  private last?: ProcSample;
  private t0 = 0;
  private t1 = 0;
  private rssMax = 0;
  private timer?: NodeJS.Timeout;
  constructor(
    private readonly pid: number,
    private readonly everyMs = 500,
  ) {}

  start(): void {
    this.first = readProc(this.pid);
    this.t0 = performance.now();
    this.rssMax = this.first?.rssMB ?? 0;
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
  }

  private sample(): void {
    const s = readProc(this.pid);
    if (s === undefined) return;
    this.last = s;
    this.t1 = performance.now();
    if (s.rssMB > this.rssMax) this.rssMax = s.rssMB;
  }

  stop(): ProcUsage | undefined {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    if (!this.first || !this.last || this.t1 <= this.t0) return undefined;
    const wallS = (this.t1 - this.t0) / 1000;
    return {
      cpuPct: round1(((this.last.cpuS - this.first.cpuS) / wallS) * 100),
      rssMB: round1(this.last.rssMB),
      rssMaxMB: round1(this.rssMax),
      threads: this.last.threads,
    };
  }
}

/** CPU of this (the generator's) process over a window, % of one core. */
export class SelfCpu {
  private readonly u0 = process.cpuUsage();
  private readonly t0 = performance.now();
  pct(): number {
    const u = process.cpuUsage(this.u0);
    const wallMs = performance.now() - this.t0;
    return round1(((u.user + u.system) / 1000 / wallMs) * 100);
  }
}

export const round1 = (x: number): number => Math.round(x * 10) / 10;

// ---- a node started by the bench ----------------------------------------------------------------

export interface SpawnedNode {
  url: string;
  pid: number;
  dataDir: string;
  /** the node's last log lines (for error messages) */
  logTail(): string;
  stop(): Promise<void>;
}

export interface SpawnOptions {
  /** extra arguments after `server …` (e.g. a config file) */
  serverArgs?: string[];
  /** extra node flags, e.g. --cpu-prof --cpu-prof-dir DIR */
  nodeArgs?: string[];
  startTimeoutMs?: number;
  keepDataDir?: boolean;
  env?: Record<string, string>;
}

/**
 * Starts `node dist/src/cli/main.js server --port 0 --data-dir TMP` and waits for its pino line
 * `{"msg":"serving","url":…}` on stdout.
 */
export async function spawnNode(opts: SpawnOptions = {}): Promise<SpawnedNode> {
  const root = repoRoot();
  const main = join(root, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first`);
  const dataDir = mkdtempSync(join(tmpdir(), 'chicago-bench-'));
  const args = [
    ...(opts.nodeArgs ?? []),
    main,
    'server',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--data-dir',
    dataDir,
    ...(opts.serverArgs ?? []),
  ];
  const child = spawn(process.execPath, args, {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(opts.env ?? {}) },
  });
  const tail: string[] = [];
  const remember = (line: string): void => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
  };
  const logTail = (): string => tail.join('\n');

  const started = new Promise<string>((resolveUrl, reject) => {
    let buf = '';
    let settled = false;
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      child.kill('SIGKILL');
      reject(new Error(`node did not log "serving" within ${opts.startTimeoutMs ?? 30_000} ms:\n${logTail()}`));
    }, opts.startTimeoutMs ?? 30_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        remember(line);
        if (settled) continue;
        try {
          const rec = JSON.parse(line) as { msg?: unknown; url?: unknown };
          if (rec.msg === 'serving' && typeof rec.url === 'string') {
            settled = true;
            clearTimeout(timer);
            resolveUrl(rec.url);
          }
        } catch {
          // not JSON: keep it for the log tail only
        }
      }
      if (buf.length > 1 << 20) buf = buf.slice(-4096);
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) if (line !== '') remember(line);
    });
    child.once('exit', (code, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`node exited (${code ?? signal}) before serving:\n${logTail()}`));
    });
  });
  let url: string;
  try {
    url = await started;
  } catch (e) {
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }

  return {
    url,
    pid: child.pid ?? -1,
    dataDir,
    logTail,
    stop: () => stopChild(child, dataDir, opts.keepDataDir ?? false),
  };
}

async function stopChild(child: ChildProcess, dataDir: string, keep: boolean): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(t);
  }
  if (!keep) rmSync(dataDir, { recursive: true, force: true });
}

// ---- the whole machine: other engineers' builds on a 2-core box ruin a run; say so ------------

function readStat(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

export interface MachineLoad {
  /** busy CPU of the whole machine over the window, % of one core (200 = 2 cores busy) */
  busyPct: number;
  loadAvg1: number;
}

export class MachineSampler {
  private readonly s0 = readStat();
  private readonly n = cpus().length;
  stop(): MachineLoad | undefined {
    const s1 = readStat();
    if (!this.s0 || !s1 || s1.total <= this.s0.total) return undefined;
    const busyPct = ((s1.busy - this.s0.busy) / (s1.total - this.s0.total)) * 100 * this.n;
    return { busyPct: round1(busyPct), loadAvg1: round1(loadavg()[0] ?? 0) };
  }
}

/** CPU seconds per thread name and tid (readThreadStats): who burns an idle node's CPU. */
export function readThreads(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const [tid, s] of readThreadStats(pid)) out.set(`${s.name} [${tid}]`, s.cpuS);
  return out;
}

/** % of one core per thread between two readThreads() snapshots, busiest first. */
export function threadCpuPct(a: Map<string, number>, b: Map<string, number>, wallS: number, top = 8): Record<string, number> {
  const rows: Array<[string, number]> = [];
  for (const [k, v] of b) rows.push([k, round1(((v - (a.get(k) ?? 0)) / wallS) * 100)]);
  rows.sort((x, y) => y[1] - x[1]);
  return Object.fromEntries(rows.slice(0, top).filter(([, v]) => v > 0));
}

/** One thread's CPU seconds and voluntary context switches (its wake-ups after sleeping). */
export interface ThreadStat { name: string; cpuS: number; wakeups: number }

/** Every thread of `pid`, by tid: CPU and wake-ups, for per-operation costs between two snapshots. */
export function readThreadStats(pid: number): Map<number, ThreadStat> {
  const out = new Map<number, ThreadStat>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const wakeups = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      // schedstat's time on the CPU is exact (ns); stat's utime + stime is sampled at each tick
      const onCpuNs = schedstatNs(pid, tid);
      const cpuS = onCpuNs !== undefined ? onCpuNs / 1e9 : (Number(f[11]) + Number(f[12])) / clockTicks();
      out.set(Number(tid), { name, cpuS, wakeups });
    } catch {
      // thread exited
    }
  }
  return out;
}

/** A thread's time on the CPU in ns; undefined where the kernel has no schedstat (CONFIG_SCHED_INFO off). */
function schedstatNs(pid: number, tid: string): number | undefined {
  try {
    const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    return Number.isFinite(ns) ? ns : undefined;
  } catch {
    return undefined;
  }
}

/**
 * µs of CPU and wake-ups per operation between two readThreadStats() snapshots, by thread role:
 * `main` (the gateway), `rocksdb` (its own named threads), and the rest by tid. Node names every
 * thread "node", so the rest are told apart by what they did: `busy` rows are the ones that spent
 * over 5 % of the total (the partition workers, under load), `others` sums the remainder (V8's
 * platform threads, libuv's pool).
 */
export function perOpByThread(pid: number, a: Map<number, ThreadStat>, b: Map<number, ThreadStat>, ops: number): Record<string, { cpuUs: number; wakeups: number }> {
  const rows: Array<{ role: string; cpuS: number; wakeups: number }> = [];
  for (const [tid, s] of b) {
    const s0 = a.get(tid);
    const role = tid === pid ? 'main' : s.name.startsWith('rocksdb') ? 'rocksdb' : `thread ${tid}`;
    rows.push({ role, cpuS: s.cpuS - (s0?.cpuS ?? 0), wakeups: s.wakeups - (s0?.wakeups ?? 0) });
  }
  const total = rows.reduce((t, r) => t + r.cpuS, 0);
  const out: Record<string, { cpuUs: number; wakeups: number }> = {};
  const add = (role: string, cpuS: number, wakeups: number): void => {
    const o = (out[role] ??= { cpuUs: 0, wakeups: 0 });
    o.cpuUs += cpuS;
    o.wakeups += wakeups;
  };
  for (const r of rows) {
    if (r.role.startsWith('thread') && r.cpuS <= total * 0.05) add('others', r.cpuS, r.wakeups);
    else add(r.role.startsWith('thread') ? `busy ${r.role}` : r.role, r.cpuS, r.wakeups);
  }
  add('all', total, rows.reduce((t, r) => t + r.wakeups, 0));
  for (const o of Object.values(out)) {
    o.cpuUs = round1((o.cpuUs * 1e6) / Math.max(1, ops));
    o.wakeups = Math.round((o.wakeups / Math.max(1, ops)) * 100) / 100;
  }
  return out;
}

// ---- child processes the bench starts -------------------------------------------------------------

const exitHooks = new Set<() => void>();
let exitHooked = false;

/** Runs `f` (synchronously) if the bench exits before the returned function removes it: crash, signal. */
export function atExit(f: () => void): () => void {
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const h of [...exitHooks].reverse()) {
        try {
          h();
        } catch {
          // best effort: the next hook still runs
        }
      }
    });
  }
  exitHooks.add(f);
  return () => void exitHooks.delete(f);
}

export interface LoggedProc {
  child: ChildProcess;
  pid: number;
  /** the last lines of its stdout and stderr (at most `keepLines`) */
  out: string[];
  exited: Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs` */
  stop(): Promise<void>;
}

/** A child whose output lines are kept for waiting on and for error messages; killed if the bench dies. */
export function spawnLogged(cmd: string, args: string[], name: string, opts: { cwd?: string; keepLines?: number; graceMs?: number; log?: (s: string) => void; env?: NodeJS.ProcessEnv } = {}): LoggedProc {
  const keepLines = opts.keepLines ?? 200;
  const child = spawn(cmd, args, { cwd: opts.cwd ?? repoRoot(), stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) });
  const out: string[] = [];
  let rest = '';
  const keep = (c: Buffer): void => {
    const parts = (rest + c.toString('utf8')).split('\n');
    rest = parts.pop() ?? '';
    for (const l of parts) if (l) out.push(l);
    if (out.length > keepLines) out.splice(0, out.length - Math.ceil(keepLines / 2));
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const unhook = atExit(() => void child.kill('SIGKILL'));
  const exited = new Promise<void>((r) => child.once('close', () => { unhook(); r(); }));
  const graceMs = opts.graceMs ?? 15_000;
  return {
    child,
    pid: child.pid ?? -1,
    out,
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => {
        (opts.log ?? ((s) => void process.stderr.write(s + '\n')))(`${name} did not stop within ${graceMs / 1000} s of SIGTERM: SIGKILL`);
        child.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Polls `cond` every `pollMs` until it holds; after `timeoutMs` throws, with `tail()` in the message. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number, tail?: () => string, pollMs = 20): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${tail ? `\n${tail()}` : ''}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
