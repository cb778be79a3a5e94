// One owner per data dir: a lock file naming the owning process, checked before RocksDB opens, so a
// second node on the same dir says who holds it instead of failing inside RocksDB. A lock left by a
// process that died (kill -9, a reboot) is taken over; RocksDB's own LOCK stays the last guard. The
// lock names its process by pid, start time and boot, so a reused pid does not keep it. A lock written
// on another host (a container re-created after a crash gets a new host name) is taken over with a
// warning: its pid says nothing here, and refusing it would keep a crashed service down until someone
// removes the file by hand.
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const LOCK_FILE = 'chicago.lock';
/** held only while a stale lock is replaced: at most one starter replaces it */
const TAKEOVER_SUFFIX = '.takeover';
/** how long a starter waits for another one's takeover (microseconds of work) before it gives up */
const TAKEOVER_WAIT_MS = 1000;
const TAKEOVER_POLL_MS = 10;

/** `live`: a running process holds it; `takeover`: a takeover died midway. */
export type InUseKind = 'live' | 'takeover';

export class DataDirInUseError extends Error {
  constructor(readonly dir: string, readonly pid: number, readonly kind: InUseKind = 'live', message = `data dir ${dir} in use by pid ${pid}`) {
    super(message);
    this.name = 'DataDirInUseError';
  }
}

/** The lock's content. `host` and `startTicks` are absent in locks of older versions. */
export interface Holder {
  pid: number;
  boot: string;
  startedAt: string;
  host?: string;
  /** field 22 of /proc/PID/stat (clock ticks after boot): with pid and boot it names one process */
  startTicks?: number;
}

/** What this host tells of a pid: gone, or alive with its start time (undefined without /proc). */
export type PidProbe = (pid: number) => { alive: false } | { alive: true; startTicks?: number };

/** Whether a lock found in the dir still has a holder: a pure decision over what the probe saw. */
export function lockVerdict(held: Holder, me: { pid: number; boot: string; host: string }, probe: PidProbe): 'held' | 'stale' | 'other-host' {
  // another host's processes are not visible here: its pid says nothing (the caller warns as it takes it)
  if (held.host !== undefined && held.host !== me.host) return 'other-host';
  if (held.pid === me.pid || held.boot !== me.boot) return 'stale';
  const seen = probe(held.pid);
  if (!seen.alive) return 'stale';
  // the pid is alive, but it names another process when it started at another time (a reused pid)
  if (held.startTicks !== undefined && seen.startTicks !== undefined && seen.startTicks !== held.startTicks) return 'stale';
  return 'held';
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** /proc/PID/stat's state (field 3) and start time (field 22); `comm` may hold ')' so fields start after the last one. */
function procStat(pid: number): { state: string; startTicks: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], startTicks: Number(f[19]) };
  } catch {
    return undefined;
  }
}

export const probePid: PidProbe = (pid) => {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return { alive: false };
  }
  const stat = procStat(pid);
  if (!stat) return { alive: true }; // no /proc: trust kill(0)
  // a killed process that its parent has not reaped yet (a zombie) holds nothing
  return stat.state === 'Z' ? { alive: false } : { alive: true, startTicks: stat.startTicks };
};

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function parseHolder(text: string | undefined): Holder | undefined {
  try {
    const h = JSON.parse(text ?? '') as Holder;
    return Number.isSafeInteger(h.pid) ? h : undefined;
  } catch {
    return undefined; // unreadable (torn by a crash before it reached the disk): as good as stale
  }
}

function unlinkIfThere(file: string): void {
  try {
    unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

const tempName = (file: string) => `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;

/**
 * Creates `file` with `text` only if it does not exist. Written to a temp file and linked: the file
 * appears whole, so no reader takes a half-written lock for a stale one.
 */
function createWhole(file: string, text: string): boolean {
  const tmp = tempName(file);
  writeFileSync(tmp, text, { flag: 'wx' });
  try {
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return false;
  } finally {
    unlinkSync(tmp);
  }
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Takes the dir's lock or throws DataDirInUseError (held by a live process); returns the release
 * function. `what` names the dir in messages; `onOtherHost` hears of a lock taken over from another host.
 */
export function lockDataDir(dir: string, what = 'data dir', probe: PidProbe = probePid, onOtherHost?: (held: Holder) => void): () => void {
  const file = path.join(dir, LOCK_FILE);
  const guard = file + TAKEOVER_SUFFIX;
  const self = procStat(process.pid);
  const me: Holder = { pid: process.pid, boot: bootId(), startedAt: new Date().toISOString(), host: os.hostname(), ...(self ? { startTicks: self.startTicks } : {}) };
  const text = JSON.stringify(me) + '\n';
  const release = () => {
    const h = parseHolder(readText(file));
    if (h?.pid === me.pid && h.startTicks === me.startTicks) unlinkIfThere(file);
  };
  const giveUpAt = Date.now() + TAKEOVER_WAIT_MS;
  for (;;) {
    if (createWhole(file, text)) return release;
    if (Date.now() > giveUpAt) throw new Error(`could not take the lock ${file}: it keeps changing hands`);
    const seen = readText(file);
    if (seen === undefined) continue; // released meanwhile: create it again
    const held = parseHolder(seen);
    const verdict = held ? lockVerdict(held, { pid: me.pid, boot: me.boot, host: me.host! }, probe) : 'stale';
    if (verdict === 'held') throw new DataDirInUseError(dir, held!.pid, 'live', `${what} ${dir} in use by pid ${held!.pid}`);
    // Stale. Only the guard's holder replaces a lock, and only after it reads, under the guard, the
    // very bytes it judged stale; a fresh start creates the lock by link, which fails while any lock
    // is there, and the rename replaces it in one step. So two starters never both hold it.
    if (createWhole(guard, text)) {
      try {
        if (readText(file) === seen) {
          const tmp = tempName(file);
          writeFileSync(tmp, text, { flag: 'wx' });
          renameSync(tmp, file);
          if (verdict === 'other-host') onOtherHost?.(held!);
          return release;
        }
      } finally {
        unlinkIfThere(guard);
      }
      continue; // it changed hands meanwhile: judge the new holder
    }
    // Another starter's takeover (a few syscalls) is under way. A guard whose writer died midway
    // stays: removing it would race a live starter's guard in the same way.
    const taker = parseHolder(readText(guard));
    if (taker && lockVerdict(taker, { pid: me.pid, boot: me.boot, host: me.host! }, probe) === 'stale') {
      throw new DataDirInUseError(dir, taker.pid, 'takeover',
        `${what} ${dir}: pid ${taker.pid} died while it took over ${file}; remove ${guard} once no process uses the dir`);
    }
    sleepSync(TAKEOVER_POLL_MS);
  }
}
