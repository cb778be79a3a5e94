// Disk-full protection. The node refuses new writes (STORAGE_FULL, retryable) while the free space
// under its data dir is below `minFreeBytes`, before RocksDB runs out: RocksDB stops taking writes
// after a failed WAL append until it is reopened, and a full disk mid-batch would also fail the
// reads and deletes that share the batch. Reads, tails and deletes keep working; writes come back
// on their own once free space is above the mark again (with 25 % hysteresis). A reserve file holds
// `reserveBytes` while all is well. It is deleted when a write hits ENOSPC anyway (something else
// filled the disk) and when a node starts on a full disk, so deletes, compaction and RocksDB's start
// (a new write-ahead log, preallocated at about 1.1 × its write buffer, at most 16 MiB) have room; it is
// written again once the disk has room for it.
import { closeSync, existsSync, fstatSync, openSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AlignedInterval } from '../runtime/aligned-timer.js';
import { libcFunction } from '../runtime/libc.js';

export const RESERVE_FILE = 'reserve.chicago';
const CHUNK_BYTES = 1024 * 1024;

export interface DiskSettings { minFreeBytes: number; reserveBytes: number }
export interface DiskState { full: boolean; availBytes: number; reserve: boolean }
export type DiskEffect = 'release-reserve' | 'create-reserve';

/**
 * The decision, pure: given what statfs says now, is the disk full, and what to do with the
 * reserve. `starting`: the database is not open yet and needs room to open.
 */
export function decide(prev: DiskState, availBytes: number, s: DiskSettings, starting = false): { next: DiskState; effects: DiskEffect[] } {
  // writes resume only once the reserve fits again too, so they never eat the room it keeps
  const resumeAt = s.minFreeBytes * 1.25 + (prev.reserve ? 0 : s.reserveBytes);
  const full = prev.full ? availBytes < resumeAt : availBytes < s.minFreeBytes;
  const effects: DiskEffect[] = [];
  let reserve = prev.reserve;
  if (starting && full && reserve) { effects.push('release-reserve'); reserve = false; }
  if (!full && !reserve && s.reserveBytes > 0 && availBytes - s.reserveBytes >= s.minFreeBytes * 1.25) { effects.push('create-reserve'); reserve = true; }
  return { next: { full, availBytes, reserve }, effects };
}

export class DiskGuard {
  private state: DiskState;
  private timer: AlignedInterval | undefined;
  private readonly reservePath: string;
  /** bytes of writes let through since the last look at statfs */
  private admitted = 0;

  constructor(private readonly dir: string, private readonly settings: DiskSettings, private readonly onChange: (s: DiskState) => void = () => {}) {
    this.reservePath = path.join(dir, RESERVE_FILE);
    this.state = { full: false, availBytes: Number.MAX_SAFE_INTEGER, reserve: existsSync(this.reservePath) };
  }

  /** Checks now (so a start on a full disk releases the reserve before RocksDB opens), then every `everyMs`. */
  start(everyMs: number): void {
    this.check(true);
    // on the wall clock's multiples of the period, where the node's other periodic work falls
    this.timer = new AlignedInterval(everyMs, () => this.check());
  }

  stop(): void { this.timer?.stop(); }

  get full(): boolean { return this.state.full; }
  get availBytes(): number { return this.state.availBytes; }

  reason(): string {
    return `${mib(this.state.availBytes)} free under ${this.dir}, below storage.minFreeBytes ${mib(this.settings.minFreeBytes)}`;
  }

  /**
   * May a write of about `bytes` go ahead? Counts it against the free space of the last look, so a
   * burst between two looks cannot run the disk out.
   */
  admit(bytes: number): boolean {
    if (this.state.full) return false;
    this.admitted += bytes;
    if (this.state.availBytes - this.admitted >= this.settings.minFreeBytes) return true;
    this.apply({ ...this.state, full: true }, []);
    return false;
  }

  /** A write failed with ENOSPC: full now, whatever the last look said, and the reserve goes. */
  tripped(): void {
    if (this.state.full && !this.state.reserve) return;
    this.apply({ ...this.state, full: true, reserve: false }, this.state.reserve ? ['release-reserve'] : []);
  }

  check(starting = false): void {
    let avail: number;
    try {
      const st = statfsSync(this.dir);
      avail = st.bavail * st.bsize;
    } catch {
      return; // the dir is being removed (tests) or unreadable: keep the last verdict
    }
    this.admitted = 0;
    const { next, effects } = decide(this.state, avail, this.settings, starting);
    this.apply(next, effects);
  }

  private apply(next: DiskState, effects: DiskEffect[]): void {
    for (const e of effects) {
      if (e === 'release-reserve') {
        try { unlinkSync(this.reservePath); } catch { /* already gone */ }
      } else if (!this.writeReserve()) {
        next = { ...next, reserve: false };
      }
    }
    const changed = next.full !== this.state.full;
    this.state = next;
    if (changed) this.onChange(next);
  }

  /**
   * Real blocks (a sparse file would reserve nothing): allocated without writing them where the
   * file system can (fallocate), written otherwise; false and no file if the disk cannot take it.
   */
  private writeReserve(): boolean {
    let fd: number | undefined;
    try {
      fd = openSync(this.reservePath, 'w');
      // some file systems (OpenZFS) answer fallocate with a sparse file: only counted blocks reserve
      if (allocate(fd, this.settings.reserveBytes) && fstatSync(fd).blocks * 512 >= this.settings.reserveBytes) return true;
      const chunk = Buffer.alloc(Math.min(CHUNK_BYTES, this.settings.reserveBytes), 0x52);
      // no fsync: the blocks are counted as used once written, which is all a reserve is for
      for (let left = this.settings.reserveBytes; left > 0; left -= chunk.length) writeSync(fd, chunk, 0, Math.min(chunk.length, left));
      return true;
    } catch {
      try { unlinkSync(this.reservePath); } catch { /* nothing written */ }
      return false;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
}

let fallocate: ((fd: number, mode: number, offset: number, len: number) => unknown) | null | undefined;

/**
 * fallocate(2), mode 0: the blocks are the file's and counted as used at once, and nothing is
 * written (writing a default reserve is 128 MiB of copying on a node's first start, and as much
 * writeback for the disk). False where glibc, koffi or the file system cannot.
 */
function allocate(fd: number, bytes: number): boolean {
  if (fallocate === undefined) fallocate = libcFunction('int fallocate(int fd, int mode, int64_t offset, int64_t len)');
  return fallocate !== null && fallocate(fd, 0, 0, bytes) === 0;
}

/** RocksDB could not open: no room for its new write-ahead log. The node cannot start until there is. */
export class DiskFullError extends Error {
  constructor(readonly dir: string, availBytes: number) {
    super(`cannot open the database in ${dir}: the disk is full (${mib(availBytes)} free, and no reserve file left to release); free some space and start again`);
    this.name = 'DiskFullError';
  }
}

export function isNoSpace(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === 'ENOSPC' || /No space left on device/i.test(e?.message ?? '');
}

const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MiB`;
