// The health check: disk, load, memory, CPU, zombies, configured apps and services, read from /proc
// directly (small synchronous reads of procfs never block on a disk; a few hundred a run cost about
// a millisecond). Slow things run apart with timeouts: statfs (a hung network mount), app stats
// (HTTP scrape, command) and service checks (init.d `status`, on their own, longer interval).
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../runtime/log.js';
import type { AppConfig, HealthConfig } from './monitor-config.js';
import {
  type CpuTimes, USER_HZ, cpuPercent, dataMounts, flattenNumbers, parseLoadavg, parseMeminfo, parseMounts, parsePidStat,
  parseProcStat, parsePrometheusText, parseSystemctlShow, round2, type MemInfo, type PidStat,
} from './procfs.js';

/** zombies listed in one sample (all are counted) */
export const ZOMBIES_LISTED_MAX = 100;
/** app stats kept from one scrape or command */
export const APP_STATS_MAX = 500;
/** bytes read from a Prometheus endpoint or a command's output */
export const APP_STATS_BYTES_MAX = 4 * 1024 * 1024;
const STATFS_TIMEOUT_MS = 2000;

export interface DiskSample { path: string; fsType: string; device: string; totalBytes: number; availBytes: number; usedPercent: number; inodesUsedPercent: number }
export interface ZombieSample { pid: number; comm: string; ppid: number; parentComm: string }
export interface AppSample {
  name: string;
  up: 0 | 1;
  pid?: number;
  cpuPercent?: number;
  rssBytes?: number;
  threads?: number;
  fds?: number;
  restarts: number;
  stats?: Record<string, number>;
  error?: string;
}
export interface ServiceSample { name: string; kind: 'initd' | 'systemd'; code: number; state: string; checkedAtMs: number }

export interface HealthSample {
  time: string;
  timeMs: number;
  intervalMs: number;
  load: { 1: number; 5: number; 15: number };
  cpu: { usedPercent: number; iowaitPercent: number; cores: number };
  memory: MemInfo;
  disks: DiskSample[];
  zombies: { count: number; processes: ZombieSample[] };
  apps: AppSample[];
  services: ServiceSample[];
}

interface AppTrack { pid?: number; startTicks?: number; cpuTicks?: number; atMs?: number; restarts: number }

/** LSB init script `status` exit codes. */
export function lsbState(code: number): string {
  return ({ 0: 'running', 1: 'dead (pid file exists)', 2: 'dead (lock file exists)', 3: 'stopped', 4: 'unknown' } as Record<number, string>)[code] ?? (code < 0 ? 'no answer' : 'unknown');
}

export class Health {
  private prevCpu?: CpuTimes;
  private readonly apps = new Map<string, AppTrack>();
  private services: ServiceSample[] = [];
  private servicesTimer?: NodeJS.Timeout;
  private servicesRunning = false;
  private stopped = false;
  private readonly cores: number;

  constructor(private readonly cfg: HealthConfig, private readonly log: Logger, private readonly proc = '/proc') {
    this.cores = (this.read('stat') ?? '').split('\n').filter((l) => /^cpu\d/.test(l)).length || 1;
    this.prevCpu = this.cpuTimes();
  }

  /** Starts the service checks on their own interval. */
  start(): void {
    const s = this.cfg.services;
    if (!s.initd && !s.systemd) return;
    const run = () => {
      if (this.stopped || this.servicesRunning) return;
      this.servicesRunning = true;
      void this.checkServices()
        .then((out) => { this.services = out; })
        .catch((err: Error) => this.log.warn({ err: err.message }, 'service checks failed'))
        .finally(() => { this.servicesRunning = false; });
    };
    run();
    this.servicesTimer = setInterval(run, s.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.servicesTimer);
  }

  private read(rel: string): string | undefined {
    try {
      return readFileSync(path.join(this.proc, rel), 'utf8');
    } catch {
      return undefined;
    }
  }

  private cpuTimes(): CpuTimes | undefined {
    const t = this.read('stat');
    return t ? parseProcStat(t) : undefined;
  }

  async collect(nowMs: number): Promise<HealthSample> {
    const [disks, apps] = await Promise.all([this.disks(), Promise.all(this.cfg.apps.map((a) => this.app(a, nowMs)))]);
    const cur = this.cpuTimes();
    const cpu = cur && this.prevCpu ? cpuPercent(this.prevCpu, cur) : { usedPercent: 0, iowaitPercent: 0 };
    this.prevCpu = cur;
    return {
      time: new Date(nowMs).toISOString(),
      timeMs: nowMs,
      intervalMs: this.cfg.intervalMs,
      load: parseLoadavg(this.read('loadavg') ?? '0 0 0'),
      cpu: { ...cpu, cores: this.cores },
      memory: parseMeminfo(this.read('meminfo') ?? ''),
      disks,
      zombies: this.zombies(),
      apps,
      services: this.services,
    };
  }

  private async disks(): Promise<DiskSample[]> {
    const mounts = parseMounts(this.read('self/mounts') ?? '');
    const targets = this.cfg.mounts
      ? this.cfg.mounts.map((p) => mounts.filter((m) => m.path === p).pop() ?? { path: p, fsType: 'unknown', device: '' })
      : dataMounts(mounts);
    const out = await Promise.all(targets.map(async (m): Promise<DiskSample | undefined> => {
      let timer: NodeJS.Timeout | undefined;
      try {
        const s = await Promise.race([
          statfs(m.path),
          new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`statfs took over ${STATFS_TIMEOUT_MS} ms`)), STATFS_TIMEOUT_MS); }),
        ]);
        // as df: used over what a non-root user could have (used + available)
        const used = (s.blocks - s.bfree) * s.bsize;
        const avail = s.bavail * s.bsize;
        return {
          path: m.path, fsType: m.fsType, device: m.device,
          totalBytes: s.blocks * s.bsize,
          availBytes: avail,
          usedPercent: used + avail > 0 ? round2((100 * used) / (used + avail)) : 0,
          inodesUsedPercent: s.files > 0 ? round2((100 * (s.files - s.ffree)) / s.files) : 0,
        };
      } catch (err) {
        this.log.debug({ path: m.path, err: (err as Error).message }, 'statfs failed');
        return undefined;
      } finally {
        clearTimeout(timer);
      }
    }));
    return out.filter((d): d is DiskSample => d !== undefined);
  }

  private pidStat(pid: number): PidStat | undefined {
    const t = this.read(`${pid}/stat`);
    if (!t) return undefined;
    try {
      return parsePidStat(t);
    } catch {
      return undefined;
    }
  }

  private pids(): number[] {
    const out: number[] = [];
    for (const name of readdirSync(this.proc)) {
      const c = name.charCodeAt(0);
      if (c >= 48 && c <= 57) out.push(Number(name));
    }
    return out;
  }

  private zombies(): { count: number; processes: ZombieSample[] } {
    const found: PidStat[] = [];
    for (const pid of this.pids()) {
      const s = this.pidStat(pid);
      // the agent's own children (a service check, an app command, journalctl) are reaped by its event
      // loop within a turn: one that has just exited is not a zombie anyone has to deal with
      if (s?.state === 'Z' && s.ppid !== process.pid) found.push(s);
    }
    const processes = found.slice(0, ZOMBIES_LISTED_MAX).map((z) => ({ pid: z.pid, comm: z.comm, ppid: z.ppid, parentComm: this.pidStat(z.ppid)?.comm ?? '?' }));
    return { count: found.length, processes };
  }

  /** The app's process now: from its pid file, its fixed pid, or the first command line that matches (cached while it lives). */
  private findPid(a: AppConfig, track: AppTrack): number | undefined {
    if (a.pid !== undefined) return a.pid;
    if (a.pidFile) {
      try {
        const n = Number(readFileSync(a.pidFile, 'utf8').trim());
        return Number.isSafeInteger(n) && n > 0 ? n : undefined;
      } catch {
        return undefined;
      }
    }
    if (!a.match) return undefined;
    if (track.pid !== undefined && this.pidStat(track.pid)?.startTicks === track.startTicks) return track.pid;
    const re = new RegExp(a.match);
    for (const pid of this.pids()) {
      if (pid === process.pid) continue;
      const cmd = this.read(`${pid}/cmdline`);
      if (cmd && re.test(cmd.replace(/\0+$/, '').replaceAll('\0', ' '))) return pid;
    }
    return undefined;
  }

  private async app(a: AppConfig, nowMs: number): Promise<AppSample> {
    let track = this.apps.get(a.name);
    if (!track) this.apps.set(a.name, (track = { restarts: 0 }));
    const out: AppSample = { name: a.name, up: 0, restarts: track.restarts };
    const hasProcess = a.pid !== undefined || a.pidFile !== undefined || a.match !== undefined;
    if (hasProcess) {
      const pid = this.findPid(a, track);
      const st = pid !== undefined ? this.pidStat(pid) : undefined;
      if (pid !== undefined && st && st.state !== 'Z' && st.state !== 'X') {
        // another pid, or the same pid with another start time, is a restart
        if (track.pid !== undefined && (track.pid !== pid || track.startTicks !== st.startTicks)) {
          track.restarts++;
          track.cpuTicks = undefined;
        }
        out.up = 1;
        out.pid = pid;
        out.restarts = track.restarts;
        if (track.cpuTicks !== undefined && track.atMs !== undefined && nowMs > track.atMs) {
          out.cpuPercent = round2((100 * (st.cpuTicks - track.cpuTicks)) / USER_HZ / ((nowMs - track.atMs) / 1000));
        }
        const rss = /VmRSS:\s+(\d+) kB/.exec(this.read(`${pid}/status`) ?? '');
        if (rss) out.rssBytes = Number(rss[1]) * 1024;
        out.threads = st.threads;
        try {
          out.fds = readdirSync(path.join(this.proc, String(pid), 'fd')).length;
        } catch {
          // a process of another user when not root
        }
        Object.assign(track, { pid, startTicks: st.startTicks, cpuTicks: st.cpuTicks, atMs: nowMs });
      }
    }
    if (a.prometheus || a.command) {
      try {
        out.stats = Object.fromEntries(a.prometheus ? await scrape(a.prometheus, a.timeoutMs) : await commandJson(a.command!, a.timeoutMs));
        if (!hasProcess) out.up = 1;
      } catch (err) {
        out.error = (err as Error).message.slice(0, 500);
      }
    }
    return out;
  }

  private async checkServices(): Promise<ServiceSample[]> {
    const s = this.cfg.services;
    const out: ServiceSample[] = [];
    if (s.initd) {
      let names = s.initd === 'all' ? [] : s.initd;
      if (s.initd === 'all') {
        try {
          names = readdirSync(s.initdDir).filter((n) => !n.startsWith('.') && n !== 'README' && n !== 'skeleton' && !n.endsWith('.dpkg-dist')).sort();
        } catch (err) {
          this.log.warn({ dir: s.initdDir, err: (err as Error).message }, 'init.d directory unreadable');
        }
      }
      const results = await mapBounded(names, s.concurrency, async (name): Promise<ServiceSample> => {
        const code = await exitCode(path.join(s.initdDir, name), ['status'], s.timeoutMs);
        return { name, kind: 'initd', code, state: lsbState(code), checkedAtMs: Date.now() };
      });
      out.push(...results);
    }
    if (s.systemd && s.systemd.length > 0 && this.read('1/comm')?.trim() === 'systemd') {
      const text = await output('systemctl', ['show', '--no-pager', '-p', 'Id,ActiveState,SubState,MainPID,NRestarts', ...s.systemd], s.timeoutMs);
      for (const u of parseSystemctlShow(text)) {
        out.push({ name: u.id, kind: 'systemd', code: systemdCode(u.activeState), state: `${u.activeState}/${u.subState}`, checkedAtMs: Date.now() });
      }
    }
    return out;
  }
}

/** A systemd ActiveState as an LSB-like code: 0 running, 3 stopped, 1 failed, 4 other. */
export function systemdCode(activeState: string): number {
  if (activeState === 'active' || activeState === 'reloading') return 0;
  if (activeState === 'inactive' || activeState === 'deactivating') return 3;
  if (activeState === 'failed') return 1;
  return 4;
}

/** `disk./.usedPercent`, `load.1`, `app.web.cpuPercent`, `service.nginx`, … (the fields alert rules name). */
export function flattenHealth(s: HealthSample, out = new Map<string, number>()): Map<string, number> {
  for (const k of ['1', '5', '15'] as const) out.set(`load.${k}`, s.load[k]);
  out.set('cpu.usedPercent', s.cpu.usedPercent);
  out.set('cpu.iowaitPercent', s.cpu.iowaitPercent);
  out.set('memory.availablePercent', s.memory.availablePercent);
  out.set('memory.availableBytes', s.memory.availableBytes);
  out.set('memory.swapUsedPercent', s.memory.swapUsedPercent);
  for (const d of s.disks) {
    out.set(`disk.${d.path}.usedPercent`, d.usedPercent);
    out.set(`disk.${d.path}.availBytes`, d.availBytes);
    out.set(`disk.${d.path}.inodesUsedPercent`, d.inodesUsedPercent);
  }
  out.set('zombies.count', s.zombies.count);
  for (const a of s.apps) {
    const p = `app.${a.name}.`;
    out.set(p + 'up', a.up);
    out.set(p + 'restarts', a.restarts);
    for (const k of ['cpuPercent', 'rssBytes', 'threads', 'fds'] as const) if (a[k] !== undefined) out.set(p + k, a[k]!);
    for (const [k, v] of Object.entries(a.stats ?? {})) out.set(`${p}stats.${k}`, v);
  }
  for (const sv of s.services) out.set(`service.${sv.name}`, sv.code);
  return out;
}

async function scrape(url: string, timeoutMs: number): Promise<Map<string, number>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'text/plain' } });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  const len = Number(res.headers.get('content-length') ?? 0);
  if (len > APP_STATS_BYTES_MAX) throw new Error(`${url}: ${len} bytes is over ${APP_STATS_BYTES_MAX}`);
  const text = await res.text();
  return parsePrometheusText(text.slice(0, APP_STATS_BYTES_MAX), APP_STATS_MAX);
}

async function commandJson(cmd: string[], timeoutMs: number): Promise<Map<string, number>> {
  const text = await output(cmd[0], cmd.slice(1), timeoutMs);
  return flattenNumbers(JSON.parse(text), APP_STATS_MAX);
}

function output(file: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: APP_STATS_BYTES_MAX, encoding: 'utf8' }, (err, stdout) => {
      if (err && (err as { killed?: boolean }).killed) reject(new Error(`${file}: no answer within ${timeoutMs} ms`));
      else if (err && typeof err.code !== 'number') reject(err);
      // systemctl show answers for the units it knows even when it exits non-zero for others
      else resolve(stdout);
    });
  });
}

/** The exit code of a command, -1 when it did not finish within timeoutMs or could not run. */
function exitCode(file: string, args: string[], timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 }, (err) => {
      if (!err) resolve(0);
      else if (typeof err.code === 'number' && !(err as { killed?: boolean }).killed) resolve(err.code);
      else resolve(-1);
    });
  });
}

async function mapBounded<T, R>(items: readonly T[], concurrency: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}
