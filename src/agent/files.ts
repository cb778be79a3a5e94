// Following the files of one source: globs polled every pollIntervalMs and on fs.watch events;
// each file is followed by its inode, through renames (read to its end), copytruncate (the rotated
// copy is finished first), deletion and inode reuse. Decisions are the pure functions of
// identity.ts; this module does the I/O and turns lines into spool records.
import { type FSWatcher, type Stats, statSync, watch } from 'node:fs';
import { type FileHandle, open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../runtime/log.js';
import type { AgentConfig, SourceConfig } from './config.js';
import { HEAD_BYTES_MAX, globRegExp, growth, hashBytes, isRotatedName, judge, sameContent, tailRange, TAIL_BYTES_MAX } from './identity.js';
import { type Event, Multiline, type MultilineState, detectLevel } from './multiline.js';
import { recordEntries } from './records.js';
import { sshHeadersOfLine } from './sshd.js';
import type { Entry, FileCkpt, Spool } from './spool.js';

const CHUNK_BYTES = 1024 * 1024;
const MIN_CHUNK_BYTES = 4096;
/** how much larger than the bytes read their spool records may be (short lines, long headers) */
const SPOOL_EXPANSION_MAX = 8;
/** chunks read from one file per pass before the others get their turn */
const CHUNKS_PER_PASS = 8;
/** the longest gap between backup stat polls of watched, idle directories (1,000 idle files: ~0.3 % of a core) */
const IDLE_POLL_MS_MAX = 2000;

interface Followed {
  key: string;
  path: string;
  dev: number;
  ino: number;
  fh: FileHandle;
  /** file bytes [bufStart, readPos): the pending event, the partial line and the 1 KiB before them */
  buf: Buffer;
  bufStart: number;
  readPos: number;
  /** where the next line starts */
  scanPos: number;
  headLen: number;
  headHash: string;
  ml: MultilineState;
  /** no longer at a watched path (renamed or deleted): read to its end, then closed once idle */
  detached: boolean;
  lastGrowthMs: number;
  /** size:mtime when a read found nothing new: a pass whose stat still says so skips the file */
  quiet?: string;
}

export interface SourceStats { linesRead: number; bytesRead: number; rotations: number; truncations: number; files: number }

export class FileSource {
  private readonly followed = new Map<string, Followed>();
  private readonly patterns: Array<{ dir: string; re: RegExp }>;
  private readonly ml?: Multiline;
  private readonly watchers: FSWatcher[] = [];
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private again = false;
  private stopped = false;
  /** every pattern directory has a working fs.watch: the stat poll is only a backup */
  private allWatched = false;
  private pollMs = 0;
  private bytesAtPoll = 0;
  /** passes run only after the checkpoints were resumed (a pass would follow their files from 0) */
  private resumed = false;
  readonly stats: SourceStats = { linesRead: 0, bytesRead: 0, rotations: 0, truncations: 0, files: 0 };

  constructor(
    private readonly src: SourceConfig,
    private readonly cfg: AgentConfig,
    private readonly spool: Spool,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.patterns = src.paths.map((p) => ({ dir: path.dirname(p), re: globRegExp(path.basename(p)) }));
    if (src.multiline) this.ml = new Multiline(src.multiline);
  }

  /** Resumes the files this source's checkpoints name, then follows its globs. */
  async start(): Promise<void> {
    for (const [key, ck] of [...this.spool.ckpts]) {
      if (ck.task !== this.src.task) continue;
      await this.resume(key, ck);
    }
    this.resumed = true;
    let watched = 0;
    for (const dir of new Set(this.patterns.map((p) => p.dir))) {
      try {
        const w = watch(dir, { persistent: false }, () => {
          this.pollMs = this.cfg.pollIntervalMs;
          this.kick();
        });
        w.on('error', () => { this.allWatched = false; });
        this.watchers.push(w);
        watched++;
      } catch {
        // a directory that does not exist yet is found by the poll
      }
    }
    this.allWatched = watched === new Set(this.patterns.map((p) => p.dir)).size;
    this.pollMs = this.cfg.pollIntervalMs;
    this.schedule();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const w of this.watchers) w.close();
    await this.running;
    for (const f of this.followed.values()) await f.fh.close().catch(() => {});
    this.followed.clear();
  }

  /** Runs a pass now (or right after the current one). */
  kick(): void {
    if (this.stopped || !this.resumed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((err: Error) => {
        this.log.error({ err, task: this.src.task }, 'file pass failed');
        if (/spool/.test(err.message)) this.fatal(err);
      })
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** A spool that cannot write ends the agent (set by the agent). */
  fatal: (err: Error) => void = () => {};

  /**
   * The backup stat poll: every pollIntervalMs, backing off (doubling) to IDLE_POLL_MS_MAX while every
   * directory is watched and nothing was read; a watch event or a read brings it back.
   */
  private schedule(): void {
    this.timer = setTimeout(() => {
      const read = this.stats.bytesRead !== this.bytesAtPoll;
      this.bytesAtPoll = this.stats.bytesRead;
      this.pollMs = this.allWatched && !read ? Math.min(IDLE_POLL_MS_MAX, Math.max(this.cfg.pollIntervalMs, this.pollMs * 2)) : this.cfg.pollIntervalMs;
      this.kick();
      if (!this.stopped) this.schedule();
    }, this.pollMs);
    this.timer.unref?.();
  }

  /** The spool's key of a followed file's checkpoint (two tasks may follow one file). */
  private ckKey(key: string): string {
    return `${this.src.task}|${key}`;
  }

  private async pass(): Promise<void> {
    const present = new Set<string>();
    // files whose size and mtime are as the last read that found nothing left them: nothing to read
    // (an idle pass over 1,000 files costs their stats only)
    const unchanged = new Set<string>();
    for (const { dir, re } of this.patterns) {
      let names: string[];
      try {
        names = await readdir(dir);
      } catch {
        continue;
      }
      const matched = names.filter((n) => re.test(n)).sort();
      const matchedSet = new Set(matched);
      for (const name of matched) {
        // a glob that also matches rotated names (app.log*) must not read a copytruncate copy again
        // (renamed files keep their inode and are followed already)
        if (hasRotationBase(matchedSet, name)) {
          const st = await stat(path.join(dir, name)).catch(() => undefined);
          if (!st || !this.followed.has(`${st.dev}:${st.ino}`)) continue;
        }
        const p = path.join(dir, name);
        // a synchronous stat of a local file costs a few µs; through the thread pool about 20
        let st;
        try {
          st = statSync(p, { throwIfNoEntry: false });
        } catch {
          continue;
        }
        if (!st?.isFile()) continue;
        const key = `${st.dev}:${st.ino}`;
        present.add(key);
        const f = this.followed.get(key);
        if (f) {
          if (f.path !== p) this.stats.rotations++;
          f.path = p;
          f.detached = false;
          if (f.quiet === `${st.size}:${st.mtimeMs}`) unchanged.add(key);
          continue;
        }
        await this.follow(p, st.dev, st.ino, 0);
      }
    }
    for (const f of this.followed.values()) {
      if (!present.has(f.key) && !f.detached) {
        f.detached = true;
        this.stats.rotations++;
        this.log.debug({ path: f.path, key: f.key }, 'file rotated away; reading it to its end');
      }
    }
    let more = false;
    for (const f of [...this.followed.values()]) {
      if (this.stopped) return;
      if (unchanged.has(f.key) && !f.ml.pending) continue;
      more = (await this.readSome(f)) || more;
      await this.flushQuiet(f);
      await this.maybeClose(f);
    }
    this.stats.files = this.followed.size;
    if (more) this.again = true;
  }

  /** Starts following a file at offset (0 for a new one). */
  private async follow(p: string, dev: number, ino: number, offset: number, held?: Buffer): Promise<Followed | undefined> {
    if (this.followed.has(`${dev}:${ino}`)) throw new Error(`file ${dev}:${ino} (${p}) is followed already`);
    let fh: FileHandle;
    try {
      fh = await open(p, 'r');
    } catch (err) {
      this.log.warn({ path: p, code: (err as NodeJS.ErrnoException).code }, 'cannot open file');
      return undefined;
    }
    const st = await fh.stat();
    if (st.dev !== dev || st.ino !== ino) {
      // replaced between stat and open: the next pass sees the new one
      await fh.close();
      return undefined;
    }
    const head = await readAt(fh, 0, Math.min(HEAD_BYTES_MAX, st.size));
    const f: Followed = {
      key: `${dev}:${ino}`, path: p, dev, ino, fh, buf: held ?? Buffer.alloc(0), bufStart: offset - (held?.length ?? 0),
      readPos: offset, scanPos: offset, headLen: head.length, headHash: hashBytes(head), ml: {}, detached: false, lastGrowthMs: this.now(),
    };
    this.followed.set(f.key, f);
    this.log.info({ path: p, key: f.key, offset, task: this.src.task }, 'following file');
    return f;
  }

  /** A checkpoint from before the restart: trusted only when the file still is what it read. */
  private async resume(key: string, ck: FileCkpt): Promise<void> {
    const atPath = await probe(ck.path, ck);
    const verdict = atPath ? judge(ck, atPath.probe) : 'elsewhere';
    if (verdict === 'resume') {
      const f = await this.follow(ck.path, ck.dev, ck.ino, ck.offset, atPath!.tail);
      if (f && this.ckKey(f.key) !== key) await this.dropCkpt(key);
      return;
    }
    if (verdict === 'rewritten') {
      // copytruncate (or inode reuse) while the agent was down: finish the copy, then read the file from 0
      await this.finishCopy(ck);
      await this.dropCkpt(key);
      return; // the pass follows the path's file from 0
    }
    // renamed away while the agent was down: find the inode among the rotated names
    for (const cand of await siblings(ck.path)) {
      const pr = await probe(cand, ck);
      if (pr && judge(ck, pr.probe) === 'resume') {
        const f = await this.follow(cand, ck.dev, ck.ino, ck.offset, pr.tail);
        if (f) {
          f.detached = true;
          // it keeps its watched name: a checkpoint at a rotated name (app.log.1) is not found again
          // once that file is rotated on (app.log.2) while the agent is down
          f.path = ck.path;
        }
        if (f && this.ckKey(f.key) !== key) await this.dropCkpt(key);
        await this.catchUpRotated(ck, cand);
        return;
      }
    }
    if (await this.finishCopy(ck)) {
      await this.dropCkpt(key);
      return;
    }
    this.log.warn({ path: ck.path, key, offset: ck.offset, task: this.src.task }, 'GAP: a followed file is gone; what was written to it after the checkpoint is lost');
    await this.dropCkpt(key);
  }

  /**
   * Rotated names of ck.path modified after `after` (the file a checkpoint was found at) that this
   * source neither follows nor has a checkpoint for: whole files rotated away while the agent could not
   * read them (two rotations while it was down). Followed from 0, as rotated files, before the file at
   * the path is read again.
   */
  private async catchUpRotated(ck: FileCkpt, after: string): Promise<void> {
    const base = statSync(after, { throwIfNoEntry: false });
    if (!base) return;
    const newer: Array<{ p: string; st: Stats }> = [];
    const mine = [...this.spool.ckpts.values()].filter((c) => c.task === this.src.task);
    for (const cand of await siblings(ck.path)) {
      const st = statSync(cand, { throwIfNoEntry: false });
      if (!st?.isFile() || st.mtimeMs <= base.mtimeMs) continue;
      const key = `${st.dev}:${st.ino}`;
      if (key === `${base.dev}:${base.ino}` || this.followed.has(key) || this.spool.ckpts.has(this.ckKey(key))) continue;
      // a copytruncate copy of a checkpointed file (same head) is finished from that checkpoint, not read whole
      let copyOfCkpt = false;
      for (const c of mine) if (c.headLen > 0 && st.size >= c.headLen && (await headHashOf(cand, c.headLen)) === c.headHash) copyOfCkpt = true;
      if (!copyOfCkpt) newer.push({ p: cand, st });
    }
    newer.sort((a, b) => a.st.mtimeMs - b.st.mtimeMs);
    for (const { p, st } of newer) {
      this.log.warn({ path: p, task: this.src.task }, 'a rotated file the agent has not read (rotated away while it was down): reading it whole');
      const f = await this.follow(p, st.dev, st.ino, 0);
      if (f) {
        f.detached = true;
        f.path = ck.path;
      }
    }
  }

  private async dropCkpt(key: string): Promise<void> {
    await this.spool.append([{ t: 'ck', key, ck: null }]);
  }

  /**
   * Reads a rotated copy of a copytruncated file from ck.offset to its end, as that file: 'read';
   * 'behind' when the copy ends before ck.offset (the agent had read past the copy); false: no copy.
   */
  private async finishCopy(ck: FileCkpt): Promise<'read' | 'behind' | false> {
    for (const cand of await siblings(ck.path)) {
      const pr = await probe(cand, ck);
      if (!pr) continue;
      if (!sameContent(ck, pr.probe)) {
        if (pr.probe.size < ck.offset && pr.probe.size >= ck.headLen && (await headHashOf(cand, ck.headLen)) === ck.headHash) {
          // copied before the agent read past its end: nothing of it is left to read
          this.log.info({ path: ck.path, copy: cand, task: this.src.task }, 'truncated file: its rotated copy holds nothing unread');
          await this.catchUpRotated(ck, cand);
          return 'behind';
        }
        continue;
      }
      this.log.info({ path: ck.path, copy: cand, offset: ck.offset, task: this.src.task }, 'truncated file: finishing its rotated copy first');
      const f = await this.follow(cand, pr.probe.dev, pr.probe.ino, ck.offset, pr.tail);
      if (!f) return false;
      // checkpointed under the watched name, found among its rotated names after a restart (as above)
      f.path = ck.path;
      // the copy is checkpointed under the truncated file's key until it is done
      this.followed.delete(f.key);
      f.key = `${ck.dev}:${ck.ino}`;
      f.detached = true;
      for (;;) {
        if (this.stopped) {
          await f.fh.close();
          throw new Error('stopped while finishing a rotated copy');
        }
        if (this.spool.full()) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        if (!(await this.readSome(f)) && !this.spool.full()) break;
      }
      await this.endOf(f, false);
      await f.fh.close();
      await this.catchUpRotated(ck, cand);
      return 'read';
    }
    return false;
  }

  /** Reads up to CHUNKS_PER_PASS chunks; true when there is more. */
  private async readSome(f: Followed): Promise<boolean> {
    for (let i = 0; i < CHUNKS_PER_PASS; i++) {
      if (this.spool.full()) return false; // readers pause; the spool's onFreed kicks a pass
      const st = await f.fh.stat();
      const heldLen = Math.min(TAIL_BYTES_MAX, f.readPos - f.bufStart);
      // near the quota, small reads: a spooled line is a few times its size (headers, JSON)
      const chunk = Math.max(MIN_CHUNK_BYTES, Math.min(CHUNK_BYTES, Math.floor(this.spool.room() / SPOOL_EXPANSION_MAX)));
      const want = Math.min(chunk, Math.max(0, st.size - f.readPos));
      const got = await readAt(f.fh, f.readPos - heldLen, heldLen + want);
      const g = growth(f.readPos, st.size, got.subarray(0, heldLen), f.buf.subarray(f.buf.length - heldLen));
      if (g === 'truncated') {
        await this.truncated(f);
        return true;
      }
      const data = got.subarray(heldLen);
      f.quiet = undefined;
      if (data.length === 0) {
        if (f.readPos === st.size) f.quiet = `${st.size}:${st.mtimeMs}`;
        return false;
      }
      f.lastGrowthMs = this.now();
      this.stats.bytesRead += data.length;
      f.buf = f.buf.length === 0 ? Buffer.from(data) : Buffer.concat([f.buf, data]);
      f.readPos += data.length;
      await this.consume(f, false);
      if (data.length < want || f.readPos >= st.size) return false;
    }
    return true;
  }

  /** copytruncate seen while following: finish the rotated copy, then read the file from 0. */
  private async truncated(f: Followed): Promise<void> {
    this.stats.truncations++;
    const ck = this.ckptOf(f);
    const found = await this.finishCopy(ck);
    if (found === 'read') {
      // the copy was read from this file's checkpoint, pending event included; its state goes
      f.ml = {};
    } else {
      // what is held (a pending event, a partial line) is all there is of it
      if (!found) this.log.warn({ path: f.path, readPos: f.readPos, task: this.src.task }, 'GAP: file truncated and no rotated copy matches; reading it from 0');
      await this.endOf(f, false);
    }
    const head = await readAt(f.fh, 0, HEAD_BYTES_MAX);
    Object.assign(f, { buf: Buffer.alloc(0), bufStart: 0, readPos: 0, scanPos: 0, headLen: head.length, headHash: hashBytes(head), ml: {} });
    await this.spool.append([{ t: 'ck', key: this.ckKey(f.key), ck: this.ckptOf(f) }]);
  }

  /** Splits what was read into lines and events, appends them with the new checkpoint. */
  private async consume(f: Followed, eof: boolean): Promise<void> {
    const events: Event[] = [];
    const nowMs = this.now();
    let pos = f.scanPos - f.bufStart;
    for (;;) {
      const nl = f.buf.indexOf(10, pos);
      let end: number;
      let next: number;
      if (nl >= 0 && nl - pos <= this.cfg.maxLineBytes) {
        end = nl;
        next = nl + 1;
      } else if (f.buf.length - pos >= this.cfg.maxLineBytes) {
        // a line longer than the cap is cut into pieces
        end = pos + this.cfg.maxLineBytes;
        next = end;
      } else if (eof && pos < f.buf.length) {
        end = f.buf.length;
        next = end;
      } else break;
      let e = end;
      if (e > pos && f.buf[e - 1] === 13) e--;
      const line = { text: f.buf.toString('utf8', pos, e), start: f.bufStart + pos, end: f.bufStart + next, atMs: nowMs };
      this.stats.linesRead++;
      if (this.ml) this.ml.push(f.ml, line, events);
      else events.push({ text: line.text, start: line.start, end: line.end, lines: 1, firstAtMs: nowMs });
      pos = next;
    }
    f.scanPos = f.bufStart + pos;
    if (eof && this.ml) this.ml.flush(f.ml, nowMs, events, true);
    await this.emit(f, events);
  }

  private async flushQuiet(f: Followed): Promise<void> {
    if (!this.ml || !f.ml.pending) return;
    const events: Event[] = [];
    this.ml.flush(f.ml, this.now(), events);
    if (events.length > 0) await this.emit(f, events);
  }

  /** Records with their seqs and the checkpoint after them: one append, one fdatasync. */
  private async emit(f: Followed, events: Event[]): Promise<void> {
    const entries: Entry[] = recordEntries(
      this.spool,
      this.cfg.host,
      this.src.task,
      this.src.topic,
      events.map((ev) => ({
        value: ev.text, source: f.path, timeMs: ev.firstAtMs, level: detectLevel(ev.text),
        ...(this.src.parse === 'sshd' ? { headers: sshHeadersOfLine(ev.text) } : {}),
      })),
    );
    const ck = this.ckptOf(f);
    entries.push({ t: 'ck', key: this.ckKey(f.key), ck });
    // keep the pending event, the partial line and the 1 KiB before them
    const keepFrom = Math.max(f.bufStart, tailRange(ck.offset)[0]);
    if (keepFrom > f.bufStart) {
      f.buf = f.buf.subarray(keepFrom - f.bufStart);
      f.bufStart = keepFrom;
    }
    await this.spool.append(entries);
  }

  private ckptOf(f: Followed): FileCkpt {
    const offset = f.ml.pending ? f.ml.pending.start : f.scanPos;
    if (offset < f.bufStart) throw new Error(`checkpoint ${offset} before the held bytes ${f.bufStart}`);
    const [a, b] = tailRange(offset);
    if (f.headLen < HEAD_BYTES_MAX && f.bufStart === 0 && f.readPos > f.headLen) {
      // the head grows with the file up to 1 KiB
      const head = f.buf.subarray(0, Math.min(HEAD_BYTES_MAX, f.buf.length));
      f.headLen = head.length;
      f.headHash = hashBytes(head);
    }
    const tail = a >= f.bufStart ? f.buf.subarray(a - f.bufStart, b - f.bufStart) : Buffer.alloc(0);
    return { task: this.src.task, path: f.path, dev: f.dev, ino: f.ino, offset, headLen: f.headLen, headHash: f.headHash, tailHash: hashBytes(tail) };
  }

  /** The last partial line and pending event of a file that will not grow again. */
  private async endOf(f: Followed, remove: boolean): Promise<void> {
    await this.consume(f, true);
    if (remove) await this.spool.append([{ t: 'ck', key: this.ckKey(f.key), ck: null }]);
  }

  private async maybeClose(f: Followed): Promise<void> {
    if (!f.detached || !this.followed.has(f.key)) return;
    // rotated files of one name close oldest first: a checkpoint left of an older one after a newer one
    // closed would make a restart read the newer one again (catchUpRotated)
    for (const o of this.followed.values()) {
      if (o === f) break;
      if (o.detached && o.path === f.path) return;
    }
    const st = await f.fh.stat();
    if (st.size > f.readPos) return;
    if (this.now() - f.lastGrowthMs < this.cfg.rotatedIdleMs) return;
    await this.endOf(f, true);
    this.followed.delete(f.key);
    await f.fh.close();
    this.log.info({ path: f.path, key: f.key, task: this.src.task }, 'rotated file done');
  }
}

/** Whether another of `names` is a file `name` is a rotated copy of (app.log for app.log.1); linear in the name's length. */
function hasRotationBase(names: Set<string>, name: string): boolean {
  for (let i = 1; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c === 46 || c === 45) && names.has(name.slice(0, i)) && isRotatedName(name.slice(0, i), name)) return true;
  }
  return false;
}

async function headHashOf(p: string, len: number): Promise<string | undefined> {
  try {
    const fh = await open(p, 'r');
    try {
      return hashBytes(await readAt(fh, 0, len));
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return buf.subarray(0, got);
}

/** A candidate read at a checkpoint's head length and offset; tail: the held bytes before the offset. */
async function probe(p: string, ck: FileCkpt): Promise<{ probe: import('./identity.js').Probe; tail: Buffer } | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(p, 'r');
  } catch {
    return undefined;
  }
  try {
    const st = await fh.stat();
    const head = st.size >= ck.headLen ? await readAt(fh, 0, ck.headLen) : undefined;
    const [a, b] = tailRange(ck.offset);
    const tail = st.size >= ck.offset ? await readAt(fh, a, b - a) : undefined;
    return {
      probe: { dev: st.dev, ino: st.ino, size: st.size, ...(head ? { headHash: hashBytes(head) } : {}), ...(tail ? { tailHash: hashBytes(tail) } : {}) },
      tail: tail ?? Buffer.alloc(0),
    };
  } finally {
    await fh.close();
  }
}

/** Rotated names of a file in its directory (base.1, base-20261206, …), newest rotation first by name. */
async function siblings(p: string): Promise<string[]> {
  const dir = path.dirname(p);
  const base = path.basename(p);
  try {
    return (await readdir(dir)).filter((n) => isRotatedName(base, n)).sort().map((n) => path.join(dir, n));
  } catch {
    return [];
  }
}
