// A systemd journal for tests on a machine whose PID 1 is not systemd: a private systemd-journald
// per test (a journald namespace: its own sockets under /run/systemd/journal.NAME, its own files),
// so a test that rotates or vacuums its journal, or writes thousands of entries, cannot touch
// another test's or another run's. Writers (systemd-cat, sshd) run in a mount namespace where the
// private instance's sockets are /run/systemd/journal (and /dev/log); readers use
// `journalctl --namespace=NAME`.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { slow } from './slow.js';
import { waitUntil } from './bridge.js';
import { type AgentProc, readTopic, startAgent, type TopicRecord } from './agent.js';

const run = promisify(execFile);
export const JOURNALD = '/lib/systemd/systemd-journald';

/** Debian packages installed if a file of theirs is missing (under the repo's apt lock). */
export async function aptEnsure(need: Record<string, string>): Promise<void> {
  const missing = Object.entries(need).filter(([, file]) => !existsSync(file)).map(([pkg]) => pkg);
  if (missing.length === 0) return;
  const script = [
    'set -e',
    '(',
    '  flock 8',
    '  env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null',
    `  env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=300 install -y -qq ${missing.join(' ')} >/dev/null`,
    ') 8>/tmp/chicago-apt.lock',
  ].join('\n');
  await run('bash', ['-c', script], { timeout: slow(300_000) });
}

/** A private systemd-journald: a namespace of the test's own, without rate limits, volatile. */
export interface PrivateJournal {
  namespace: string;
  /** journalctl arguments that select it */
  args: string[];
  /** argv that runs cmd with this journal's sockets as /run/systemd/journal and /dev/log */
  wrap: (cmd: string[]) => string[];
  /** journalctl on it: stdout */
  journalctl: (args: string[]) => Promise<string>;
  stop: () => Promise<void>;
}

const MOUNT_SCRIPT = [
  'set -e',
  'mkdir -p /run/systemd/journal',
  'mount --bind "/run/systemd/journal.$NS" /run/systemd/journal',
  // a /dev/log that is a socket rather than the usual symlink into /run/systemd/journal
  'if [ -S /dev/log ] && [ ! -L /dev/log ]; then mount --bind "/run/systemd/journal.$NS/dev-log" /dev/log; fi',
  'exec "$@"',
].join('\n');

const CONF_RE = /^journald@(chj[a-z0-9-]*)\.conf$/;
const STALE_MS = 15 * 60_000;

/** Removes what private journals of runs that were killed left (config and files of a namespace no journald serves). */
async function sweepStale(machineId: string): Promise<void> {
  const names = (await readdir('/etc/systemd').catch(() => [] as string[])).map((f) => CONF_RE.exec(f)?.[1]).filter((n): n is string => n !== undefined);
  if (names.length === 0) return;
  const serving = new Set<string>();
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv[0] === JOURNALD && argv[1]) serving.add(argv[1]);
  }
  for (const name of names) {
    const conf = `/etc/systemd/journald@${name}.conf`;
    // a run that is starting one has just written its config
    const age = Date.now() - (await stat(conf).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
    if (serving.has(name) || age < STALE_MS) continue;
    for (const d of [`/run/systemd/journal.${name}`, `/run/log/journal/${machineId}.${name}`, `/var/log/journal/${machineId}.${name}`]) await rm(d, { recursive: true, force: true });
    await rm(conf, { force: true });
  }
}

/**
 * Starts a private systemd-journald for one test (namespace `name`, [a-z0-9-]); it ends with the test
 * process (pdeathsig) or at stop(), which also removes its files and config.
 */
export async function startPrivateJournal(name: string): Promise<PrivateJournal> {
  if (!/^[a-z0-9-]{1,48}$/.test(name)) throw new Error(`journal namespace ${name}: [a-z0-9-]{1,48}`);
  const machineId = readFileSync('/etc/machine-id', 'utf8').trim();
  const conf = `/etc/systemd/journald@${name}.conf`;
  const dirs = [`/run/systemd/journal.${name}`, `/run/log/journal/${machineId}.${name}`, `/var/log/journal/${machineId}.${name}`];
  await sweepStale(machineId);
  // syslog(3) callers such as sshd write to /dev/log
  if (!existsSync('/dev/log')) await run('ln', ['-sfn', '/run/systemd/journal/dev-log', '/dev/log']);
  await mkdir('/etc/systemd', { recursive: true });
  await writeFile(conf, '[Journal]\n# tests write thousands of entries a second from one process\nRateLimitIntervalSec=0\nStorage=volatile\n');
  const proc = spawn('setpriv', ['--pdeathsig', 'SIGKILL', '--', JOURNALD, name], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => proc.once('close', () => r()));
  const args = [`--namespace=${name}`];
  const j: PrivateJournal = {
    namespace: name,
    args,
    wrap: (cmd) => ['unshare', '--mount', '--propagation', 'private', 'env', `NS=${name}`, 'sh', '-c', MOUNT_SCRIPT, 'sh', ...cmd],
    journalctl: async (a) => (await run('journalctl', [...args, ...a], { maxBuffer: 512 * 1024 * 1024, timeout: slow(30_000) })).stdout,
    stop: async () => {
      proc.kill('SIGTERM');
      await exited;
      for (const d of dirs) await rm(d, { recursive: true, force: true });
      await rm(conf, { force: true });
    },
  };
  await waitUntil(`systemd-journald ${name} started`, () => proc.exitCode === null && existsSync(`${dirs[0]}/stdout`) && existsSync(`${dirs[0]}/io.systemd.journal`), 10_000, 20);
  return j;
}

/** A systemd-cat process: each line written to it is one journal entry with this identifier. */
export function journalWriter(j: PrivateJournal, identifier: string, priority = 'info'): { proc: ChildProcess; write: (s: string | Buffer) => Promise<void>; end: () => Promise<void> } {
  const [cmd, ...argv] = j.wrap(['systemd-cat', '-t', identifier, '-p', priority]);
  const proc = spawn(cmd, argv, { stdio: ['pipe', 'ignore', 'inherit'] });
  const closed = new Promise<void>((r) => proc.once('close', () => r()));
  return {
    proc,
    write: (s) => new Promise((resolve, reject) => proc.stdin!.write(s, (err) => (err ? reject(err) : resolve()))),
    end: async () => {
      proc.stdin!.end();
      await closed;
    },
  };
}

/** Every entry of an identifier in the journal now: [MESSAGE, cursor]. */
export async function journalEntries(j: PrivateJournal, identifier: string): Promise<Array<{ message: unknown; cursor: string }>> {
  const stdout = await j.journalctl(['-o', 'json', '--all', `--identifier=${identifier}`, '--output-fields=MESSAGE']);
  return stdout.split('\n').filter((l) => l).map((l) => {
    const o = JSON.parse(l) as { MESSAGE: unknown; __CURSOR: string };
    return { message: o.MESSAGE, cursor: o.__CURSOR };
  });
}

/** the pids of journalctl processes following an identifier */
export async function journalctlPids(identifier: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (cmd.startsWith('journalctl\0') && cmd.includes(`--identifier=${identifier}\0`) && !/^\d+ \(\S+\) Z/.test(stat)) out.push(Number(pid));
  }
  return out;
}

/** writes `count` lines `prefix i` (+ pad) at about perSec, calling `at(i)` between batches */
export async function writeNumbered(j: PrivateJournal, identifier: string, prefix: string, count: number, perSec: number, at: (i: number) => Promise<void> = async () => {}, pad = ''): Promise<void> {
  const w = journalWriter(j, identifier, 'warning');
  const batch = Math.max(1, Math.round(perSec / 50));
  const started = Date.now();
  for (let i = 0; i < count;) {
    let s = '';
    const end = Math.min(count, i + batch);
    for (; i < end; i++) s += `${prefix} ${i}${pad}\n`;
    await w.write(s);
    await at(i);
    const due = started + (i / perSec) * 1000;
    if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
  }
  await w.end();
}

/** An agent process whose journald sources are reading; kept in `started` (for the caller's cleanup). */
export async function followingAgent(config: string, started: AgentProc[]): Promise<AgentProc> {
  const a = startAgent(config);
  started.push(a);
  await a.stdout.waitFor(/"msg":"journald: following"/, 10_000);
  return a;
}

export async function kill9(a: AgentProc): Promise<void> {
  a.proc.kill('SIGKILL');
  await a.exited;
}

/** a task's records in seq order */
export const recordsOfTask = (records: TopicRecord[], task: string): TopicRecord[] =>
  records.filter((r) => r.headers.task === task).sort((a, b) => Number(a.headers.seq) - Number(b.headers.seq));

/** A task's records, read back until `done` holds (for at most idleMs, scaled). */
export async function awaitRecords(url: string, topic: string, task: string, done: (recs: TopicRecord[]) => boolean, what: string, idleMs = 15_000, everyMs = 100): Promise<TopicRecord[]> {
  let recs: TopicRecord[] = [];
  await waitUntil(what, async () => {
    recs = recordsOfTask(await readTopic(url, topic).catch(() => []), task);
    return done(recs);
  }, idleMs, everyMs);
  return recs;
}
