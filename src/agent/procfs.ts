// Pure parsers for the text the health check reads: /proc files, `systemctl show`, the Prometheus
// text format and a command's JSON. No I/O here: health.ts reads, these turn text into numbers.

/** Linux reports process CPU time in USER_HZ ticks, which is 100 on every architecture's ABI. */
export const USER_HZ = 100;

export interface CpuTimes { total: number; idle: number; iowait: number }

/** The aggregate `cpu` line of /proc/stat, in ticks. */
export function parseProcStat(text: string): CpuTimes {
  const line = text.slice(0, text.indexOf('\n') >>> 0);
  if (!line.startsWith('cpu ')) throw new Error('/proc/stat: no aggregate cpu line');
  const v = line.slice(4).trim().split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already counted in user)
  let total = 0;
  for (let i = 0; i < Math.min(8, v.length); i++) total += v[i];
  return { total, idle: v[3] ?? 0, iowait: v[4] ?? 0 };
}

/** Busy and iowait percent of all CPUs between two /proc/stat readings. */
export function cpuPercent(prev: CpuTimes, cur: CpuTimes): { usedPercent: number; iowaitPercent: number } {
  const dt = cur.total - prev.total;
  if (dt <= 0) return { usedPercent: 0, iowaitPercent: 0 };
  const idle = cur.idle - prev.idle + (cur.iowait - prev.iowait);
  return { usedPercent: round2(100 * (1 - idle / dt)), iowaitPercent: round2((100 * (cur.iowait - prev.iowait)) / dt) };
}

export interface MemInfo { totalBytes: number; availableBytes: number; availablePercent: number; swapTotalBytes: number; swapUsedPercent: number }

export function parseMeminfo(text: string): MemInfo {
  const kb = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)/.exec(line);
    if (m) kb.set(m[1], Number(m[2]));
  }
  const total = (kb.get('MemTotal') ?? 0) * 1024;
  // MemAvailable exists since Linux 3.14; before it free + cache is the usual estimate
  const avail = (kb.get('MemAvailable') ?? (kb.get('MemFree') ?? 0) + (kb.get('Cached') ?? 0)) * 1024;
  const swapTotal = (kb.get('SwapTotal') ?? 0) * 1024;
  const swapFree = (kb.get('SwapFree') ?? 0) * 1024;
  return {
    totalBytes: total,
    availableBytes: avail,
    availablePercent: total > 0 ? round2((100 * avail) / total) : 0,
    swapTotalBytes: swapTotal,
    swapUsedPercent: swapTotal > 0 ? round2((100 * (swapTotal - swapFree)) / swapTotal) : 0,
  };
}

export function parseLoadavg(text: string): { 1: number; 5: number; 15: number } {
  const [a, b, c] = text.trim().split(/\s+/).map(Number);
  return { 1: a, 5: b, 15: c };
}

export interface PidStat {
  pid: number;
  comm: string;
  state: string;
  ppid: number;
  /** user + system CPU time, in USER_HZ ticks */
  cpuTicks: number;
  threads: number;
  /** ticks after boot; with the pid it names one process (a reused pid has another) */
  startTicks: number;
  rssPages: number;
}

/** /proc/PID/stat. `comm` may hold spaces and parentheses: it ends at the last ')'. */
export function parsePidStat(text: string): PidStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) throw new Error('/proc/PID/stat: no (comm)');
  const f = text.slice(close + 2).trim().split(' ');
  // f[0] is field 3 (state) of proc(5)
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: f[0],
    ppid: Number(f[1]),
    cpuTicks: Number(f[11]) + Number(f[12]),
    threads: Number(f[17]),
    startTicks: Number(f[19]),
    rssPages: Number(f[21]),
  };
}

export interface Mount { device: string; path: string; fsType: string }

/** Filesystems that hold no user data (or are views of others): not checked unless listed in `mounts`. */
export const PSEUDO_FS = new Set([
  'proc', 'sysfs', 'devtmpfs', 'devpts', 'tmpfs', 'ramfs', 'cgroup', 'cgroup2', 'securityfs', 'pstore', 'debugfs',
  'tracefs', 'mqueue', 'hugetlbfs', 'fusectl', 'configfs', 'binfmt_misc', 'autofs', 'bpf', 'nsfs', 'efivarfs',
  'rpc_pipefs', 'nfsd', 'selinuxfs', 'squashfs', 'fuse.lxcfs', 'fuse.gvfsd-fuse', 'overlay-none',
]);

/** /proc/self/mounts; `\040`-style octal escapes in paths decoded. */
export function parseMounts(text: string): Mount[] {
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 3) continue;
    out.push({ device: unescape(f[0]), path: unescape(f[1]), fsType: f[2] });
  }
  return out;
}

/** Mounts worth a disk check: real filesystems, each mount point once (the last mount over a path wins). */
export function dataMounts(mounts: Mount[]): Mount[] {
  const byPath = new Map<string, Mount>();
  for (const m of mounts) byPath.set(m.path, m);
  return [...byPath.values()].filter((m) => !PSEUDO_FS.has(m.fsType));
}

export interface SystemdUnit { id: string; activeState: string; subState: string; mainPid: number; restarts: number; props: Record<string, string> }

/** `systemctl show -p Id,ActiveState,SubState,MainPID,NRestarts UNIT…`: one block per unit, blank-line separated. */
export function parseSystemctlShow(text: string): SystemdUnit[] {
  const out: SystemdUnit[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const props: Record<string, string> = {};
    for (const line of block.split('\n')) {
      const i = line.indexOf('=');
      if (i > 0) props[line.slice(0, i)] = line.slice(i + 1);
    }
    if (!props.Id) continue;
    out.push({
      id: props.Id,
      activeState: props.ActiveState ?? 'unknown',
      subState: props.SubState ?? 'unknown',
      mainPid: Number(props.MainPID ?? 0),
      restarts: Number(props.NRestarts ?? 0),
      props,
    });
  }
  return out;
}

/** Samples of a Prometheus text exposition: `name{labels}` → value; comments, and samples past `max`, are skipped. */
export function parsePrometheusText(text: string, max: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const raw of text.split('\n')) {
    if (out.size >= max) break;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) continue;
    let i = name.length;
    if (line[i] === '{') {
      // a label value may hold '}' or an escaped quote: scan for the brace outside quotes
      let quoted = false;
      for (i++; i < line.length; i++) {
        const c = line[i];
        if (quoted && c === '\\') i++;
        else if (c === '"') quoted = !quoted;
        else if (c === '}' && !quoted) break;
      }
      if (i >= line.length) continue;
      i++;
    }
    const key = line.slice(0, i);
    const valueText = line.slice(i).trim().split(/\s+/)[0];
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    if (valueText === '' || (Number.isNaN(value) && valueText !== 'NaN')) continue;
    out.set(key, value);
  }
  return out;
}

/** Numeric (and boolean, as 1/0) leaves of a JSON value as dotted paths, at most `max`. */
export function flattenNumbers(value: unknown, max: number, prefix = '', out = new Map<string, number>()): Map<string, number> {
  if (out.size >= max) return out;
  if (typeof value === 'number' && Number.isFinite(value)) out.set(prefix, value);
  else if (typeof value === 'boolean') out.set(prefix, value ? 1 : 0);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (out.size >= max) break;
      flattenNumbers(v, max, prefix ? `${prefix}.${k}` : k, out);
    }
  }
  return out;
}

export const round2 = (x: number): number => Math.round(x * 100) / 100;
