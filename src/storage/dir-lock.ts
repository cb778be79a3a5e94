// One owner per data dir: a lock file naming the owning process, checked before RocksDB opens, so a
// second node on the same dir says who holds it instead of failing inside RocksDB. A lock left by a
// process that died (kill -9, a reboot) is taken over; RocksDB's own LOCK stays the last guard.
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const LOCK_FILE = 'chicago.lock';

export class DataDirInUseError extends Error {
  constructor(readonly dir: string, readonly pid: number) {
    super(`data dir ${dir} in use by pid ${pid}`);
    this.name = 'DataDirInUseError';
  }
}

interface Holder { pid: number; boot: string; startedAt: string }

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // a killed process that its parent has not reaped yet (a zombie) holds nothing
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc: trust kill(0)
  }
}

function readHolder(file: string): Holder | undefined {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as Holder;
    return Number.isSafeInteger(h.pid) ? h : undefined;
  } catch {
    return undefined; // unreadable or half-written: as good as stale
  }
}

/** Takes the dir's lock or throws DataDirInUseError; returns the release function. */
export function lockDataDir(dir: string): () => void {
  const file = path.join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, boot: bootId(), startedAt: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      writeFileSync(file, JSON.stringify(me) + '\n', { flag: 'wx' });
      return () => {
        if (readHolder(file)?.pid === me.pid) unlinkSync(file);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = readHolder(file);
    if (held && held.pid !== me.pid && held.boot === me.boot && alive(held.pid)) throw new DataDirInUseError(dir, held.pid);
    try {
      unlinkSync(file); // stale: its process is gone
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new Error(`could not take the lock ${file}: it keeps changing hands`);
}
