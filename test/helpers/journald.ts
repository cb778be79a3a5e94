// A systemd journal for tests on a machine whose PID 1 is not systemd: systemd-journald run
// standalone (started once, left running for later tests), /dev/log pointing at it for syslog(3)
// callers such as sshd, and writers through systemd-cat. Idempotent and safe to call from several
// test files at once (one flock).
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { slow } from './slow.js';
import { waitUntil } from './bridge.js';
import { type AgentProc, readTopic, startAgent, type TopicRecord } from './agent.js';

const run = promisify(execFile);
export const JOURNALD = '/lib/systemd/systemd-journald';
const SOCKET = '/run/systemd/journal/socket';

function journaldRunning(): boolean {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      // a zombie keeps its comm: check the state too
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/^\d+ \(systemd-journal\) [^Z]/.test(stat)) return true;
    } catch {
      // gone
    }
  }
  return false;
}

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

/**
 * systemd-journald running (started here if not), without rate limits (tests write thousands of
 * messages a second from one process), and /dev/log → its syslog socket.
 */
export async function ensureJournald(): Promise<void> {
  const script = [
    'set -e',
    '(',
    '  flock 9',
    '  mkdir -p /etc/systemd/journald.conf.d /run/systemd/journal',
    '  conf=/etc/systemd/journald.conf.d/chicago-test.conf',
    '  [ -e $conf ] || printf "[Journal]\\nRateLimitIntervalSec=0\\n" > $conf',
    '  [ -e /dev/log ] || ln -s /run/systemd/journal/dev-log /dev/log',
    ') 9>/tmp/chicago-journald.lock',
  ].join('\n');
  await run('bash', ['-c', script], { timeout: slow(10_000) });
  if (!journaldRunning()) {
    const p = spawn(JOURNALD, [], { detached: true, stdio: 'ignore' });
    p.unref();
  }
  const deadline = Date.now() + slow(10_000);
  while (!(existsSync(SOCKET) && journaldRunning())) {
    if (Date.now() > deadline) throw new Error('systemd-journald did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A systemd-cat process: each line written to it is one journal entry with this identifier. */
export function journalWriter(identifier: string, priority = 'info'): { proc: ChildProcess; write: (s: string | Buffer) => Promise<void>; end: () => Promise<void> } {
  const proc = spawn('systemd-cat', ['-t', identifier, '-p', priority], { stdio: ['pipe', 'ignore', 'ignore'] });
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
export async function journalEntries(identifier: string): Promise<Array<{ message: unknown; cursor: string }>> {
  const { stdout } = await run('journalctl', ['-o', 'json', '--all', `--identifier=${identifier}`, '--output-fields=MESSAGE'], { maxBuffer: 512 * 1024 * 1024 });
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
export async function writeNumbered(identifier: string, prefix: string, count: number, perSec: number, at: (i: number) => Promise<void> = async () => {}, pad = ''): Promise<void> {
  const w = journalWriter(identifier, 'warning');
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
