// Following the files of one source: globs polled every pollIntervalMs and on fs.watch events;
// each file is followed by its inode, through renames (read to its end), copytruncate (the rotated
// copy, plain or gzipped, is finished first), deletion and inode reuse. Decisions are the pure
// functions of identity.ts; this module does the I/O and turns lines into spool records. Files are
// bytes: a line is shipped as it is (as bytes when it is not UTF-8); lines longer than
// maxLineBytes are cut into marked pieces; what is known lost becomes a gap record and a notice.
import { isAscii } from 'node:buffer';
import { constants, createReadStream, type FSWatcher, readSync, type Stats, statSync, watch } from 'node:fs';
import { type FileHandle, open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { createGunzip } from 'node:zlib';
import { limits } from '../runtime/limits.js';
import type { Logger } from '../runtime/log.js';
import type { Notice } from './agent.js';
import type { AgentConfig, SourceConfig } from './config.js';
import { HEAD_BYTES_MAX, closesFirst, copyInProgress, globRegExp, growth, hashBytes, judge, rotatedName, rotationRank, sameContent, supersedes, tailRange, TAIL_BYTES_MAX } from './identity.js';
import { type Event, LEVEL_SCAN_CHARS, LineLevels, Multiline, type MultilineState, detectLevel } from './multiline.js';
import { BufferPool, Lease } from './buffers.js';
import { type AgentEvent, bytesEntry, cutHeader, keyOfLine, recordEntries } from './records.js';
import { copyTruncate, compressCopies, renameRotate, rotateDue } from './rotate.js';
import { sshHeadersOfLine } from './sshd.js';
import { type Entry, type FileCkpt, type RecsEntry, recsCount, type Spool, valueText } from './spool.js';
import { nowUs } from '../runtime/timing.js';

const CHUNK_BYTES = 1024 * 1024;
const MIN_CHUNK_BYTES = 4096;
/** how much larger than the bytes read their spool records may be (short lines, long headers) */
const SPOOL_EXPANSION_MAX = 8;
/** the most a read on a watch event takes (more goes to a whole pass) */
const FAST_READ_BYTES = 64 * 1024;
/** changed paths remembered between passes; more make the next pass a whole one */
const CHANGED_MAX = 64;
/** chunks read from one file per pass before the others get their turn */
const CHUNKS_PER_PASS = 8;
/** times a rotated file found by a probe is looked for again when it was gone from that name at the open */
const MOVED_RETRIES = 5;
/** a gzipped copy still being written is waited for this long after it last grew */
const GZ_WAIT_MS = 30_000;

function fromMultiline(ev: Event, source: string): AgentEvent {
  return { value: Buffer.from(ev.text, 'latin1'), source, timeMs: ev.firstAtMs, level: detectLevel(ev.text.slice(0, LEVEL_SCAN_CHARS)) };
}

/** A gzipped copy ended before its trailer: it is still being written. */
class PartialGzip extends Error {}

interface Followed {
  key: string;
  /** where it is now (the `source` header) */
  path: string;
  /** the watched path it was found at (its checkpoint's path, where its rotated copies are looked for) */
  base: string;
  dev: number;
  ino: number;
  fh: FileHandle;
  /** file bytes [bufStart, readPos): the pending event, the partial line and the 1 KiB before them */
  buf: Buffer;
  /** the pooled read buffer buf is a view of, held by this file (set through setBuf) */
  lease?: Lease;
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
  /** the size at the last read (a file that shrinks but stays above readPos lost [size, lastSize)) */
  lastSize: number;
  /** pieces shipped of the over-long line being read (0: at a line start) */
  cut: number;
  /** when the agent started following it or last rotated it (rotate.maxAgeMs) */
  sinceMs: number;
  /** size and mtime when a read found nothing new: a pass whose stat still says so skips the file (numbers, not a string: an idle pass over 1,000 files allocates nothing per file for it) */
  quietSize?: number;
  quietMtimeMs?: number;
}

export interface SourceStats {
  linesRead: number; bytesRead: number; rotations: number; truncations: number; files: number; gaps: number; ownRotations: number;
  /** reads on a watch event straight from the file's handle (readFast) */
  fastReads: number;
}

export class FileSource {
  private readonly followed = new Map<string, Followed>();
  private readonly patterns: Array<{ glob: string; dir: string; re: RegExp }>;
  /** globs that matched no file at the last pass, said once each (until one matches again) */
  private readonly toldNoMatch = new Set<string>();
  private readonly ml?: Multiline;
  /** where each record's key comes from (sources[].key) */
  private readonly keySpec?: { json: string } | { re: RegExp };
  /** lines are records as they are (no multiline, parse or key): consume's byte path */
  private readonly plain: boolean;
  private readonly watchers: FSWatcher[] = [];
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  /** a whole pass is due (the poll, a file created or renamed, more to read) */
  private again = false;
  /** paths a watch event said changed since the last pass began */
  private readonly changed = new Set<string>();
  /** the buffer readFast reads into (its bytes are copied out) */
  private fastBuf?: Buffer;
  private stopped = false;
  /** every pattern directory has a working fs.watch: the stat poll is only a backup */
  private allWatched = false;
  private pollMs = 0;
  private bytesAtPoll = 0;
  /** the first pass resumes the checkpoints before it follows the globs (which would read their files from 0) */
  private resumed = false;
  /** appends of fast reads whose fdatasync has not returned, oldest first (at most agentSpoolCommitsInFlightMax) */
  private readonly unsynced: Array<Promise<void>> = [];
  /** when the last watch event came (µs, only while the log level is trace) */
  private watchUs = 0;
  /** when the read that emits next began (0: a whole pass's read, not a watch event's) */
  private readAtUs = 0;
  private get tracing(): boolean {
    return this.log.isLevelEnabled('trace');
  }
  readonly stats: SourceStats = { linesRead: 0, bytesRead: 0, rotations: 0, truncations: 0, files: 0, gaps: 0, ownRotations: 0, fastReads: 0 };
  /** the rotated copy finished last while handling a truncation (newer copies are unseen generations) */
  private lastCopy?: { path: string; dev: number; ino: number };
  /** paths (files, directories) that could not be read, with the error code: logged and noticed once */
  private readonly unreadable = new Map<string, string>();

  constructor(
    private readonly src: SourceConfig,
    private readonly cfg: AgentConfig,
    private readonly spool: Spool,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.patterns = src.paths.map((p) => ({ glob: p, dir: path.dirname(p), re: globRegExp(path.basename(p)) }));
    if (src.multiline) this.ml = new Multiline(src.multiline);
    if (src.key) this.keySpec = 'json' in src.key ? { json: src.key.json } : { re: new RegExp(src.key.regex) };
    this.plain = !this.ml && !this.keySpec && src.parse === undefined;
  }

  /** Follows its globs; the first pass resumes the files this source's checkpoints name (it may wait for a gzipped copy). */
  async start(): Promise<void> {
    let watched = 0;
    for (const dir of new Set(this.patterns.map((p) => p.dir))) {
      try {
        const w = watch(dir, { persistent: false }, (event, name) => {
          if (this.tracing) this.watchUs = nowUs();
          this.pollMs = this.cfg.pollIntervalMs;
          // a write to a file already followed is read at once from its handle (readFast); anything
          // else (a file created, renamed or deleted) goes through a whole pass
          this.kick(event === 'change' && name ? path.join(dir, name) : undefined);
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
    await this.synced().catch(() => {});
    for (const f of this.followed.values()) {
      this.setBuf(f, Buffer.alloc(0));
      await f.fh.close().catch(() => {});
    }
    this.followed.clear();
  }

  /**
   * Runs a pass now (or right after the current one). `changed`: a watch event named that path
   * changed; when it is a file followed at that path, only it is read (readFast), else a whole pass runs.
   */
  kick(changed?: string): void {
    if (this.stopped) return;
    if (changed === undefined) this.again = true;
    else if (this.changed.size < CHANGED_MAX) this.changed.add(changed);
    else this.again = true;
    this.run();
  }

  private run(): void {
    if (this.running || this.stopped) return;
    const whole = this.again || !this.resumed;
    this.again = false;
    const paths = whole ? undefined : [...this.changed];
    this.changed.clear();
    this.running = (paths ? this.fastPass(paths) : this.pass())
      .catch((err: Error) => {
        this.log.error({ err, task: this.src.task }, 'file pass failed');
        if (/spool/.test(err.message)) this.fatal(err);
      })
      .finally(() => {
        this.running = undefined;
        if (this.again || this.changed.size > 0) this.run();
      });
  }

  /** Reads the files followed at `paths` from their handles; anything out of the ordinary is left to a whole pass. */
  private async fastPass(paths: string[]): Promise<void> {
    for (const p of paths) {
      if (this.stopped) return;
      let f: Followed | undefined;
      for (const o of this.followed.values()) {
        if (o.path === p && !o.detached) {
          f = o;
          break;
        }
      }
      const r = f ? await this.readFast(f) : 'whole';
      if (r === 'whole') return this.pass();
      if (r === 'more') this.again = true;
      await this.flushQuiet(f!);
      if (r === 'done' && this.src.rotate) {
        await this.synced();
        await this.rotateOwn(f!);
      }
    }
  }

  /** A spool that cannot write ends the agent (set by the agent). */
  fatal: (err: Error) => void = () => {};
  /** Something lost or unreadable, for alert rules (set by the agent). */
  notice: (n: Notice) => void = () => {};

  /** A path that cannot be read: logged and noticed once per error code; retried on every poll. */
  private problem(p: string, err: unknown, what: string): void {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    if (this.unreadable.get(p) === code) return;
    this.unreadable.set(p, code);
    this.log.warn({ path: p, code, task: this.src.task }, what);
    this.notice({ kind: 'unreadable', task: this.src.task, source: p, detail: `${what}: ${code}` });
  }

  private readable(p: string): void {
    if (this.unreadable.delete(p)) this.log.info({ path: p, task: this.src.task }, 'readable again');
  }

  /** What is known lost: a record with header gap=true in the task's topic (with `extra` in its append), and a notice. */
  private async gap(g: { path: string; reason: string; offset?: number; bytes?: number; detail: string }, extra: Entry[] = []): Promise<void> {
    this.stats.gaps++;
    const headers: Record<string, string> = { gap: 'true', gapReason: g.reason, gapPath: g.path };
    if (g.offset !== undefined) headers.gapOffset = String(g.offset);
    if (g.bytes !== undefined) headers.gapBytes = String(g.bytes);
    const ev: AgentEvent = { value: `GAP ${g.reason}: ${g.path}: ${g.detail}`, source: g.path, timeMs: this.now(), level: 'warn', headers };
    await this.spool.append([...recordEntries(this.spool, this.cfg.host, this.src.task, this.src.topic, [ev]), ...extra]);
    this.log.warn({ path: g.path, reason: g.reason, offset: g.offset, bytes: g.bytes, task: this.src.task }, `GAP: ${g.detail}`);
    this.notice({ kind: 'gap', task: this.src.task, source: g.path, detail: `${g.reason}: ${g.detail}`, ...(g.bytes !== undefined ? { count: g.bytes } : {}) });
  }

  /**
   * The backup stat poll: every pollIntervalMs, backing off (doubling) to limits.agentIdlePollMsMax while every
   * directory is watched and nothing was read; a watch event or a read brings it back.
   */
  private schedule(): void {
    this.timer = setTimeout(() => {
      const read = this.stats.bytesRead !== this.bytesAtPoll;
      this.bytesAtPoll = this.stats.bytesRead;
      this.pollMs = this.allWatched && !read ? Math.min(limits.agentIdlePollMsMax, Math.max(this.cfg.pollIntervalMs, this.pollMs * 2)) : this.cfg.pollIntervalMs;
      this.kick();
      if (!this.stopped) this.schedule();
    }, this.pollMs);
    this.timer.unref?.();
  }

  /** The spool's key of a followed file's checkpoint (two tasks may follow one file). */
  private ckKey(key: string): string {
    return `${this.src.task}|${key}`;
  }

  /** Says once that a source path matches no file (a typo, or a log this host does not have); again after one matched. */
  private noMatch(glob: string, files: number): void {
    if (files > 0) this.toldNoMatch.delete(glob);
    else if (!this.toldNoMatch.has(glob)) {
      this.toldNoMatch.add(glob);
      this.log.info({ task: this.src.task, path: glob }, 'no file matches this path yet: watching for one');
    }
  }

  private async pass(): Promise<void> {
    // a whole pass starts from what the spool holds: the fast reads' appends first
    await this.synced();
    if (!this.resumed) {
      for (const [key, ck] of [...this.spool.ckpts]) {
        if (ck.task !== this.src.task || this.followed.has(`${ck.dev}:${ck.ino}`)) continue;
        await this.resume(key, ck);
      }
      this.resumed = true;
    }
    const present = new Set<string>();
    const found: Entry[] = [];
    // files whose size and mtime are as the last read that found nothing left them: nothing to read
    // (an idle pass over 1,000 files costs their stats only)
    const unchanged = new Set<string>();
    for (const { glob, dir, re } of this.patterns) {
      let names: string[];
      try {
        names = await readdir(dir);
        this.readable(dir);
      } catch (err) {
        // a directory that does not exist yet is found by a later poll
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.problem(dir, err, 'cannot list directory');
        else this.noMatch(glob, 0);
        continue;
      }
      let files = 0;
      const matched = names.filter((n) => re.test(n)).sort();
      const matchedSet = new Set(matched);
      for (const name of matched) {
        // compressed copies are read only to finish a copytruncate (app.log* matches app.log.2.gz)
        const rotated = rotationOf(matchedSet, name);
        if (rotated?.compressed !== undefined) continue;
        // a glob that also matches rotated names (app.log*) must not read a copytruncate copy again
        // (renamed files keep their inode and are followed already)
        if (rotated) {
          const st = await stat(path.join(dir, name)).catch(() => undefined);
          const f = st && this.followed.get(`${st.dev}:${st.ino}`);
          // a renamed file is read to its end and closed: never rotated, never followed anew
          if (f && f.path !== path.join(dir, name)) {
            f.path = path.join(dir, name);
            this.stats.rotations++;
          }
          continue;
        }
        const p = path.join(dir, name);
        // a synchronous stat of a local file costs a few µs; through the thread pool about 20
        let st;
        try {
          st = statSync(p, { throwIfNoEntry: false });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.problem(p, err, 'cannot stat file');
          continue;
        }
        // directories, FIFOs, sockets and devices matched by a glob are not files to follow
        if (!st?.isFile()) continue;
        files++;
        const key = `${st.dev}:${st.ino}`;
        present.add(key);
        const f = this.followed.get(key);
        if (f) {
          if (f.path !== p) this.stats.rotations++;
          f.path = p;
          f.detached = false;
          if (f.quietSize === st.size && f.quietMtimeMs === st.mtimeMs) unchanged.add(key);
          continue;
        }
        const nf = await this.follow(p, st.dev, st.ino, 0);
        // a file whose copy was just finished (rewritten while the agent was down) keeps that checkpoint
        const nck = nf && this.ckptOf(nf);
        if (nf && nck && supersedes(this.spool.ckpts.get(this.ckKey(nf.key)), nck)) found.push({ t: 'ck', key: this.ckKey(nf.key), ck: nck });
      }
      this.noMatch(glob, files);
    }
    // a new file is checkpointed before anything of it is read: renamed away while the agent is
    // down, a restart finds it among the rotated names by its inode (one append for all of them)
    if (found.length > 0) this.log.debug({ task: this.src.task, found }, 'new files checkpointed');
    if (found.length > 0) await this.spool.append(found);
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
      if (unchanged.has(f.key) && !f.ml.pending) {
        // nothing to read, but a rotation by age may be due
        if (this.src.rotate) await this.rotateOwn(f);
        continue;
      }
      const again = await this.readSome(f, true);
      more = again || more;
      await this.flushQuiet(f);
      if (!again && this.src.rotate && !f.detached) await this.rotateOwn(f);
      await this.maybeClose(f);
    }
    this.stats.files = this.followed.size;
    if (more) this.again = true;
  }

  /**
   * Starts following a file at offset (0 for a new one). A resumed file keeps its checkpoint's head
   * (`head`): copytruncated between the probe that trusted the offset and this open, its head now is
   * another generation's, and the copy holding the rest is found by the checkpoint's.
   */
  private async follow(p: string, dev: number, ino: number, offset: number, held?: Buffer, cut?: number, base = p, head0?: { len: number; hash: string }): Promise<Followed | undefined> {
    if (this.followed.has(`${dev}:${ino}`)) throw new Error(`file ${dev}:${ino} (${p}) is followed already`);
    let fh: FileHandle;
    try {
      // O_NONBLOCK: a path replaced by a FIFO since its stat must not block the open
      fh = await open(p, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.problem(p, err, 'cannot open file');
      return undefined;
    }
    this.readable(p);
    const st = await fh.stat();
    if (st.dev !== dev || st.ino !== ino || !st.isFile()) {
      // replaced between stat and open: the next pass sees the new one
      await fh.close();
      return undefined;
    }
    const head = head0 ? undefined : await readAt(fh, 0, Math.min(HEAD_BYTES_MAX, st.size));
    const f: Followed = {
      key: `${dev}:${ino}`, path: p, base, dev, ino, fh, buf: held ?? Buffer.alloc(0), bufStart: offset - (held?.length ?? 0),
      readPos: offset, scanPos: offset, headLen: head0?.len ?? head!.length, headHash: head0?.hash ?? hashBytes(head!), ml: {}, detached: false, lastGrowthMs: this.now(),
      lastSize: st.size, cut: cut ?? 0, sinceMs: this.now(),
    };
    this.followed.set(f.key, f);
    this.log.info({ path: p, key: f.key, offset, task: this.src.task }, 'following file');
    return f;
  }

  /** A checkpoint from before the restart: trusted only when the file still is what it read. */
  private async resume(key: string, ck: FileCkpt): Promise<void> {
    const atPath = await probe(ck.path, ck);
    const verdict = atPath ? judge(ck, atPath.probe) : 'elsewhere';
    this.log.debug({ task: this.src.task, key, ck, probe: atPath?.probe, verdict }, 'resume');
    if (verdict === 'resume') {
      const f = await this.follow(ck.path, ck.dev, ck.ino, ck.offset, atPath!.tail, ck.cut, ck.path, { len: ck.headLen, hash: ck.headHash });
      if (f && this.ckKey(f.key) !== key) await this.dropCkpt(key);
      return;
    }
    if (verdict === 'rewritten') {
      // copytruncate (or inode reuse) while the agent was down: finish the copy, then read the file from 0
      this.lastCopy = undefined;
      const found = await this.finishCopy(ck, true);
      const behind = this.lastCopy as { path: string; dev: number; ino: number } | undefined;
      if (found === 'behind' && behind) await this.finishNewer(ck, behind.path, behind);
      const last = this.lastCopy as { path: string; dev: number; ino: number } | undefined;
      this.lastCopy = undefined;
      if (!found) {
        await this.gap(
          { path: ck.path, reason: 'truncated', offset: ck.offset, detail: `rewritten while the agent was down and no rotated copy holds what followed offset ${ck.offset}` },
          [{ t: 'ck', key, ck: null }],
        );
        return; // the pass follows the path's file from 0
      }
      // the file is followed from 0 now, with its head as it is (a copytruncate from here on shows in
      // growth()); one between the look for newer copies and this open left a copy newer than the last
      // one read, read before the file. The checkpoint (the end of the last copy) stays until the file
      // is read past 0 (supersedes).
      const f = await this.follow(ck.path, ck.dev, ck.ino, 0);
      this.lastCopy = last;
      if (f) await this.newerThenZero(f);
      this.lastCopy = undefined;
      return;
    }
    // renamed away while the agent was down: find the inode among the rotated names (again when
    // logrotate shifted it to another name between the probe and the open)
    for (let attempt = 0; attempt < MOVED_RETRIES; attempt++) {
      let moved = false;
      for (const cand of await siblings(ck.path, false)) {
        const pr = await probe(cand, ck);
        if (pr && judge(ck, pr.probe) === 'resume') {
          const f = await this.follow(cand, ck.dev, ck.ino, ck.offset, pr.tail, ck.cut, ck.path, { len: ck.headLen, hash: ck.headHash });
          if (!f) {
            moved = true;
            break;
          }
          f.detached = true;
          if (this.ckKey(f.key) !== key) await this.dropCkpt(key);
          await this.catchUpRotated(ck, cand);
          return;
        }
      }
      if (!moved) break;
    }
    if (await this.finishCopy(ck, false)) {
      await this.dropCkpt(key);
      return;
    }
    // rotated away more often than the copies kept while the agent was down (rotate 1, twice)
    await this.gap(
      { path: ck.path, reason: 'gone', offset: ck.offset, detail: `the file (inode ${ck.ino}) is gone while the agent was down; what it held after offset ${ck.offset} is lost` },
      [{ t: 'ck', key, ck: null }],
    );
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
    for (const cand of await siblings(ck.path, false)) {
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
      const f = await this.follow(p, st.dev, st.ino, 0, undefined, 0, ck.path);
      if (!f) continue;
      f.detached = true;
      // checkpointed before it is read, as a new file at the path is
      await this.spool.append([{ t: 'ck', key: this.ckKey(f.key), ck: this.ckptOf(f) }]);
    }
  }

  private async dropCkpt(key: string): Promise<void> {
    await this.spool.append([{ t: 'ck', key, ck: null }]);
  }

  /**
   * Reads a rotated copy of a copytruncated file from ck.offset to its end, as that file: 'read';
   * 'behind' when the copy ends before ck.offset (the agent had read past the copy); false: no copy.
   * Plain copies are tried first (newest first), then gzipped ones (logrotate's compress, or a
   * plain copy compressed while the agent was down).
   */
  private async finishCopy(ck: FileCkpt, inPlace: boolean): Promise<'read' | 'behind' | false> {
    // a copy that logrotate shifted to another name between the probe and the open is looked for again
    for (let attempt = 0; attempt < MOVED_RETRIES; attempt++) {
      const r = await this.finishPlainCopy(ck, inPlace);
      if (r !== 'moved') return r;
    }
    return false;
  }

  private async finishPlainCopy(ck: FileCkpt, inPlace: boolean): Promise<'read' | 'behind' | false | 'moved'> {
    for (const cand of await siblings(ck.path, false)) {
      const pr = await probe(cand, ck);
      if (!pr) continue;
      if (!sameContent(ck, pr.probe)) {
        if (pr.probe.size < ck.offset && pr.probe.size >= ck.headLen && (await headHashOf(cand, ck.headLen)) === ck.headHash) {
          // copied before the agent read past its end: nothing of it is left to read
          this.log.info({ path: ck.path, copy: cand, task: this.src.task }, 'truncated file: its rotated copy holds nothing unread');
          // newer copies are read by the caller, after what it holds of the file (finishNewer)
          if (inPlace) this.lastCopy = { path: cand, dev: pr.probe.dev, ino: pr.probe.ino };
          else await this.catchUpRotated(ck, cand);
          return 'behind';
        }
        continue;
      }
      this.log.info({ path: ck.path, copy: cand, offset: ck.offset, task: this.src.task }, 'truncated file: finishing its rotated copy first');
      this.log.debug({ task: this.src.task, ck, cand, probe: pr.probe }, 'finishCopy: reading copy');
      if (!(await this.readCopy(ck, cand, pr.probe, pr.tail))) return 'moved';
      if (inPlace) await this.finishNewer(ck, cand, pr.probe);
      else await this.catchUpRotated(ck, cand);
      return 'read';
    }
    for (const cand of await siblings(ck.path, true)) {
      const id = await stat(cand).catch(() => undefined);
      const r = await this.finishGzip(ck, cand);
      if (r) {
        if (inPlace && r === 'read' && id) await this.finishNewer(ck, cand, id);
        return r;
      }
    }
    return false;
  }

  /** A plain copy read from ck.offset to its end, checkpointed under the truncated file's key until it is done. */
  private async readCopy(ck: FileCkpt, cand: string, pr: { dev: number; ino: number }, tail: Buffer): Promise<boolean> {
    const f = await this.follow(cand, pr.dev, pr.ino, ck.offset, tail, ck.cut, ck.path);
    if (!f) return false;
    this.followed.delete(f.key);
    // checkpointed as the truncated file (its inode, the copy's bytes): a restart finds the file
    // rewritten and finishes the copy by its content, then the copies after it, then the file from 0
    f.key = `${ck.dev}:${ck.ino}`;
    f.dev = ck.dev;
    f.ino = ck.ino;
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
    return true;
  }

  /**
   * copytruncate only (the file is still at its path, so every generation passed through its one
   * checkpoint): rotated copies newer than the one just finished are generations copied away before
   * the agent saw them (rotated twice while it was down or busy). Each is read from 0, oldest first,
   * under the truncated file's key (a restart finds it by content).
   */
  private async finishNewer(ck: FileCkpt, done: string, doneId: { dev: number; ino: number }): Promise<void> {
    this.lastCopy = { path: done, dev: doneId.dev, ino: doneId.ino };
    const dir = path.dirname(ck.path);
    const base = path.basename(ck.path);
    // where the finished copy is now: logrotate may have shifted it (.1 → .2) while it was read
    let doneName = path.basename(done);
    for (const n of await readdir(dir).catch(() => [] as string[])) {
      if (rotatedName(base, n) === undefined) continue;
      const st = await stat(path.join(dir, n)).catch(() => undefined);
      if (st && st.dev === doneId.dev && st.ino === doneId.ino) doneName = n;
    }
    let after = rotationRank(base, doneName);
    const empty = hashBytes(Buffer.alloc(0));
    const ck0: FileCkpt = { task: ck.task, path: ck.path, dev: ck.dev, ino: ck.ino, offset: 0, headLen: 0, headHash: empty, tailHash: empty };
    for (let i = 0; after !== undefined && i < 10_000; i++) {
      const covered = new Set([...this.followed.values()].map((f) => `${f.dev}:${f.ino}`));
      for (const c of this.spool.ckpts.values()) covered.add(`${c.dev}:${c.ino}`);
      let next: { p: string; rank: string; dev: number; ino: number; gz: boolean } | undefined;
      for (const n of await readdir(dir).catch(() => [] as string[])) {
        const rank = rotationRank(base, n);
        const kind = rotatedName(base, n);
        if (rank === undefined || rank <= after || (kind?.compressed !== undefined && kind.compressed !== 'gz')) continue;
        if (next && rank >= next.rank) continue;
        const st = await stat(path.join(dir, n)).catch(() => undefined);
        if (!st?.isFile() || covered.has(`${st.dev}:${st.ino}`)) continue;
        next = { p: path.join(dir, n), rank, dev: st.dev, ino: st.ino, gz: kind?.compressed === 'gz' };
      }
      if (!next) return;
      if (!next.gz && (await this.stillInFile(ck.path, next.p))) {
        this.log.debug({ path: ck.path, copy: next.p, task: this.src.task }, 'a rotated copy still being made: read from the file');
        return;
      }
      this.log.info({ path: ck.path, copy: next.p, task: this.src.task }, 'a rotated copy the agent never saw: reading it from 0');
      if (next.gz) await this.finishGzip(ck0, next.p);
      else await this.readCopy(ck0, next.p, next, Buffer.alloc(0));
      this.lastCopy = { path: next.p, dev: next.dev, ino: next.ino };
      // the same shift may have moved it meanwhile: the next one is newer than where it is now
      after = next.rank;
      for (const n of await readdir(dir).catch(() => [] as string[])) {
        const st = rotatedName(base, n) !== undefined ? await stat(path.join(dir, n)).catch(() => undefined) : undefined;
        if (st && st.dev === next.dev && st.ino === next.ino) after = rotationRank(base, n) ?? after;
      }
    }
  }

  /** copyInProgress() of a rotated copy and the file at `file`, read now. */
  private async stillInFile(file: string, copy: string): Promise<boolean> {
    const read = async (p: string): Promise<{ head: Buffer; size: number } | undefined> => {
      let fh: FileHandle | undefined;
      try {
        fh = await open(p, constants.O_RDONLY | constants.O_NONBLOCK);
        const st = await fh.stat();
        return { head: await readAt(fh, 0, Math.min(HEAD_BYTES_MAX, st.size)), size: st.size };
      } catch {
        return undefined;
      } finally {
        await fh?.close();
      }
    };
    const c = await read(copy);
    const f = await read(file);
    return c !== undefined && f !== undefined && copyInProgress(c.head, c.size, f.head, f.size);
  }

  /**
   * A gzipped copy read from the uncompressed offset ck.offset: its head and the bytes before the
   * offset must match, as for a plain copy. A copy still being compressed (no gzip trailer yet) is
   * read as far as it goes (a prefix of the right bytes) and waited for while it grows.
   */
  private async finishGzip(ck: FileCkpt, cand: string): Promise<'read' | 'behind' | false> {
    let lastSize = -1;
    let grewAtMs = this.now();
    let told = false;
    for (;;) {
      const size = (await stat(cand).catch(() => undefined))?.size;
      if (size === undefined) return false;
      if (size !== lastSize) grewAtMs = this.now();
      lastSize = size;
      const r = await this.readGzipOnce(ck, cand).catch((err: unknown) => {
        if (err instanceof PartialGzip) return err;
        this.log.warn({ copy: cand, err: String(err), task: this.src.task }, 'cannot read gzipped copy');
        return false as const;
      });
      if (!(r instanceof PartialGzip)) return r;
      if (!told) this.log.info({ copy: cand, task: this.src.task }, 'gzipped copy is still being written; waiting for it');
      told = true;
      // what was read of it is checkpointed; go on from there once it has grown
      ck = this.spool.ckpts.get(this.ckKey(`${ck.dev}:${ck.ino}`)) ?? ck;
      if (this.stopped) throw new Error('stopped while finishing a gzipped copy');
      if (this.now() - grewAtMs > GZ_WAIT_MS) {
        this.log.warn({ copy: cand, task: this.src.task }, 'gzipped copy never completed');
        return false;
      }
      await new Promise((r) => setTimeout(r, this.cfg.pollIntervalMs));
    }
  }

  private async readGzipOnce(ck: FileCkpt, cand: string): Promise<'read' | 'behind' | false | PartialGzip> {
    const [a, b] = tailRange(ck.offset);
    const head: Buffer[] = [];
    const tail: Buffer[] = [];
    let pos = 0;
    let f: Followed | undefined;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const stream = createReadStream(cand).pipe(createGunzip());
    const feed = async () => {
      if (!f || pendingBytes === 0) return;
      while (this.spool.full() && !this.stopped) await new Promise((r) => setTimeout(r, 50));
      const data = Buffer.concat(pending);
      pending = [];
      pendingBytes = 0;
      f.buf = f.buf.length === 0 ? data : Buffer.concat([f.buf, data]);
      f.readPos += data.length;
      this.stats.bytesRead += data.length;
      await this.consume(f, false);
    };
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (this.stopped) throw new Error('stopped while reading a gzipped copy');
        let c = chunk;
        const cStart = pos;
        pos += c.length;
        if (!f) {
          const take = (from: number, to: number, into: Buffer[]) => {
            const s0 = Math.max(from, cStart);
            const e0 = Math.min(to, pos);
            if (e0 > s0) into.push(c.subarray(s0 - cStart, e0 - cStart));
          };
          take(0, ck.headLen, head);
          take(a, b, tail);
          if (pos >= ck.headLen && hashBytes(Buffer.concat(head)) !== ck.headHash) return false;
          if (pos < b || pos < ck.headLen) continue;
          const held = Buffer.concat(tail);
          if (hashBytes(held) !== ck.tailHash) return false;
          this.log.info({ path: ck.path, copy: cand, offset: ck.offset, task: this.src.task }, 'truncated file: finishing its gzipped copy first');
          // never in this.followed and never read through fh: consume() and emit() use its buffer only
          f = {
            key: `${ck.dev}:${ck.ino}`, path: cand, base: ck.path, dev: ck.dev, ino: ck.ino, fh: undefined as unknown as FileHandle, buf: held, bufStart: b - held.length,
            readPos: b, scanPos: b, headLen: ck.headLen, headHash: ck.headHash, ml: {}, detached: true, lastGrowthMs: this.now(), lastSize: 0, cut: ck.cut ?? 0, sinceMs: this.now(),
          };
          c = c.subarray(b - cStart);
        }
        if (c.length > 0) {
          pending.push(Buffer.from(c));
          pendingBytes += c.length;
          if (pendingBytes >= CHUNK_BYTES) await feed();
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'Z_BUF_ERROR' || /unexpected end of file/.test((err as Error).message)) {
        await feed();
        return new PartialGzip(cand);
      }
      throw err;
    } finally {
      stream.destroy();
    }
    if (!f) {
      // ended before the offset: a copy made before the agent read past its end, if its head matches
      return pos >= ck.headLen && hashBytes(Buffer.concat(head)) === ck.headHash ? 'behind' : false;
    }
    await feed();
    await this.endOf(f, false);
    return 'read';
  }

  /**
   * What a watch event says was written to a file followed at its watched path, read in one read from
   * its handle: the bytes before readPos read again with it show a truncation as readSome's stat and
   * reads do. Only for a file read up to its size at the last read and past its head; anything else
   * (shorter than readPos, the bytes before readPos changed, the head not read yet) is for readSome
   * in a whole pass ('whole'). 'more': the read filled the buffer.
   */
  private async readFast(f: Followed): Promise<'done' | 'more' | 'whole'> {
    // at most this many fast reads' appends wait for their fdatasync (the quota counts only durable
    // bytes, so it is checked after them)
    while (this.unsynced.length >= limits.agentSpoolCommitsInFlightMax) await this.unsynced[0];
    if (this.spool.full()) return 'done'; // readers pause; the spool's onFreed kicks a pass
    if (f.readPos < f.headLen || f.lastSize !== f.readPos || f.cut > 0) return 'whole';
    const heldLen = Math.min(TAIL_BYTES_MAX, f.readPos - f.bufStart);
    const want = Math.max(MIN_CHUNK_BYTES, Math.min(FAST_READ_BYTES, Math.floor(this.spool.room() / SPOOL_EXPANSION_MAX)));
    const buf = (this.fastBuf ??= Buffer.allocUnsafe(TAIL_BYTES_MAX + FAST_READ_BYTES));
    if (this.tracing) this.readAtUs = nowUs();
    // synchronous, as the pass's stats: a read of a few KiB from the page cache costs µs, a trip
    // through the thread pool about a tenth of a millisecond
    const bytesRead = readSync(f.fh.fd, buf, 0, heldLen + want, f.readPos - heldLen);
    if (bytesRead < heldLen || !buf.subarray(0, heldLen).equals(f.buf.subarray(f.buf.length - heldLen))) return 'whole';
    const n = bytesRead - heldLen;
    if (n === 0) return 'done';
    this.stats.fastReads++;
    f.quietSize = undefined;
    f.lastGrowthMs = this.now();
    this.stats.bytesRead += n;
    const data = buf.subarray(heldLen, bytesRead);
    this.setBuf(f, f.buf.length === 0 ? Buffer.from(data) : Buffer.concat([f.buf, data]));
    f.readPos += n;
    // the size is at least this; a whole pass stats it
    f.lastSize = f.readPos;
    // the next watch event's read does not wait for this append's fdatasync: it goes in the next commit,
    // which overlaps this one (Spool.commit)
    await this.consume(f, false, false);
    return n < want ? 'done' : 'more';
  }

  /**
   * Reads up to CHUNKS_PER_PASS chunks; true when there is more. `pipelined` (a whole pass's own
   * reads): a chunk's append does not wait for its fdatasync, so the next chunk is read and split
   * meanwhile (at most agentSpoolCommitsInFlightMax appends unsynced; the next pass starts once they
   * are durable). Reads for a rotated copy wait, as what follows them reads the spool's checkpoints.
   */
  private async readSome(f: Followed, pipelined = false): Promise<boolean> {
    for (let i = 0; i < CHUNKS_PER_PASS; i++) {
      // the quota counts only durable bytes, so it is checked after them
      if (pipelined) while (this.unsynced.length >= limits.agentSpoolCommitsInFlightMax) await this.unsynced[0];
      if (this.spool.full()) return false; // readers pause; the spool's onFreed kicks a pass
      const st = await f.fh.stat();
      const heldLen = Math.min(TAIL_BYTES_MAX, f.readPos - f.bufStart);
      // near the quota, small reads: a spooled line is a few times its size (headers, JSON)
      const chunk = Math.max(MIN_CHUNK_BYTES, Math.min(CHUNK_BYTES, Math.floor(this.spool.room() / SPOOL_EXPANSION_MAX)));
      const want = Math.min(chunk, Math.max(0, st.size - f.readPos));
      // read into a buffer that will hold the bytes kept before the held ones too: the new bytes are
      // not copied again to be joined with them
      const keep = f.buf.length - heldLen;
      // a pooled buffer (a large read): given back once the file and the records read into it let it go
      const lease = new Lease(readBuffers, readBuffers.take(keep + heldLen + want));
      const into = lease.buf;
      const got = into.subarray(keep, keep + (await readInto(f.fh, into, keep, f.readPos - heldLen, heldLen + want)));
      // less than the head it was found with is read: that head is what shows a copytruncate
      const head = f.readPos < f.headLen ? { len: f.headLen, hash: f.headHash, now: await readAt(f.fh, 0, f.headLen) } : undefined;
      const g = growth(f.readPos, st.size, got.subarray(0, heldLen), f.buf.subarray(f.buf.length - heldLen), head);
      if (g === 'truncated') {
        lease.release();
        // finishing the copy reads the spool's checkpoints: this file's own first
        await this.synced();
        await this.truncated(f);
        return true;
      }
      if (st.size < f.lastSize) {
        // shrunk, but not below what was read: the bytes past the new end were never read
        await this.gap({ path: f.path, reason: 'shrunk', offset: st.size, bytes: f.lastSize - st.size, detail: `the file shrank from ${f.lastSize} to ${st.size} bytes before they were read` });
      }
      f.lastSize = st.size;
      const data = got.subarray(heldLen);
      f.quietSize = undefined;
      if (data.length === 0) {
        lease.release();
        if (f.readPos === st.size) {
          f.quietSize = st.size;
          f.quietMtimeMs = st.mtimeMs;
          this.setBuf(f, ownMemory(f.buf, f.lease !== undefined));
        }
        return false;
      }
      f.lastGrowthMs = this.now();
      this.stats.bytesRead += data.length;
      // the held bytes are in `into` already (growth() found them unchanged)
      f.buf.copy(into, 0, 0, keep);
      this.setBuf(f, into.subarray(0, keep + got.length), lease);
      f.readPos += data.length;
      await this.consume(f, false, !pipelined);
      if (data.length < want || f.readPos >= st.size) return false;
    }
    return true;
  }

  /** copytruncate seen while following: finish the rotated copy, then read the file from 0. */
  private async truncated(f: Followed): Promise<void> {
    this.stats.truncations++;
    this.log.debug({ task: this.src.task, key: f.key, readPos: f.readPos, lastSize: f.lastSize, headLen: f.headLen }, 'truncated');
    this.lastCopy = undefined;
    const ck = this.ckptOf(f);
    const found = await this.finishCopy(ck, true);
    if (found === 'read') {
      // the copy was read from this file's checkpoint, pending event included; its state goes
      f.ml = {};
    } else {
      // what is held (a pending event, a partial line) is all there is of it
      await this.endOf(f, false);
      if (!found) {
        const bytes = Math.max(0, f.lastSize - f.readPos);
        await this.gap({ path: f.path, reason: 'truncated', offset: f.readPos, bytes, detail: `truncated at offset ${f.readPos} with no rotated copy holding the rest (at least ${bytes} unread bytes)` });
      }
    }
    // with no copy found (a gap) nothing older is worth keeping
    await this.restartAtZero(f, !found);
    if (found) await this.newerThenZero(f);
    this.lastCopy = undefined;
  }

  /**
   * f is at 0, nothing of it read yet: a copy made since the last one read (lastCopy) holds what was
   * in it then (rotated again meanwhile); it is read from 0 and f starts at 0 once more (its head
   * read again: f's own truncate would otherwise show next and that copy be read twice).
   */
  private async newerThenZero(f: Followed): Promise<void> {
    const lastCopy = (): { path: string; dev: number; ino: number } | undefined => this.lastCopy;
    for (let i = 0; i < 100; i++) {
      const last = lastCopy();
      if (!last) break;
      await this.finishNewer(this.ckptOf(f), last.path, last);
      const now = lastCopy();
      if (!now || (now.dev === last.dev && now.ino === last.ino)) break;
      await this.restartAtZero(f);
    }
  }

  /** Reads the file from 0 again; its checkpoint at 0 replaces the spool's only when `force` or supersedes() says so. */
  private async restartAtZero(f: Followed, force = false): Promise<void> {
    const head = await readAt(f.fh, 0, HEAD_BYTES_MAX);
    this.setBuf(f, Buffer.alloc(0));
    Object.assign(f, { bufStart: 0, readPos: 0, scanPos: 0, headLen: head.length, headHash: hashBytes(head), ml: {}, lastSize: 0, cut: 0 });
    const ck = this.ckptOf(f);
    const write = force || supersedes(this.spool.ckpts.get(this.ckKey(f.key)), ck);
    this.log.debug({ task: this.src.task, key: f.key, headLen: head.length, headFirst: head.toString('latin1', 0, 40), write }, 'restart at zero');
    if (write) await this.spool.append([{ t: 'ck', key: this.ckKey(f.key), ck }]);
  }

  /**
   * Splits what was read into lines and events, appends them with the new checkpoint. A line longer
   * than maxLineBytes goes out in pieces of that size, each its own record with header cut=`k+`
   * (more follows) and the last one cut=`k/k`; a pending multiline event ends before the first.
   */
  private async consume(f: Followed, eof: boolean, wait = true): Promise<void> {
    if (this.plain && f.cut === 0) {
      const e = this.linesAsBytes(f, eof);
      if (e) return this.emitEntries(f, [e], recsCount(e), wait, () => [head20(valueText(e, 0)!), head20(valueText(e, recsCount(e) - 1)!)]);
    }
    // an event's value: its bytes, or its text when they are ASCII (decoded once per read)
    const events: AgentEvent[] = [];
    const source = f.path;
    const ml: Event[] = [];
    const nowMs = this.now();
    const max = this.cfg.maxLineBytes;
    let pos = f.scanPos - f.bufStart;
    // ASCII (most logs): the read is decoded once and its lines are slices of that text, instead of
    // a UTF-8 check, a decode and a latin1 copy per line
    const text = !this.ml && isAscii(f.buf.subarray(pos)) ? f.buf.toString('latin1', pos) : undefined;
    const textAt = pos;
    for (;;) {
      const nl = f.buf.indexOf(10, pos);
      let end: number;
      let next: number;
      let cut = false;
      if (nl >= 0 && nl - pos <= max) {
        end = nl;
        next = nl + 1;
      } else if (f.buf.length - pos >= max) {
        end = pos + max;
        next = end;
        cut = true;
      } else if (eof && pos < f.buf.length) {
        end = f.buf.length;
        next = end;
      } else break;
      let e = end;
      if (!cut && e > pos && f.buf[e - 1] === 13) e--;
      this.stats.linesRead++;
      if (cut || f.cut > 0) {
        if (this.ml && f.ml.pending) {
          this.ml.flush(f.ml, nowMs, ml, true);
          for (const ev of ml) events.push(fromMultiline(ev, source));
          ml.length = 0;
        }
        f.cut++;
        const headers = { cut: cutHeader(f.cut, !cut) };
        if (!cut) f.cut = 0;
        events.push({ value: f.buf.subarray(pos, e), source, timeMs: nowMs, level: detectLevel(f.buf.toString('latin1', pos, Math.min(e, pos + LEVEL_SCAN_CHARS))), headers });
      } else if (this.ml) {
        this.ml.push(f.ml, { text: f.buf.toString('latin1', pos, e), start: f.bufStart + pos, end: f.bufStart + next, atMs: nowMs }, ml);
        for (const ev of ml) events.push(fromMultiline(ev, source));
        ml.length = 0;
      } else if (text !== undefined) {
        const v = text.slice(pos - textAt, e - textAt);
        events.push({ value: v, source, timeMs: nowMs, level: detectLevel(v) });
      } else {
        events.push({ value: f.buf.subarray(pos, e), source, timeMs: nowMs, level: detectLevel(f.buf.toString('latin1', pos, Math.min(e, pos + LEVEL_SCAN_CHARS))) });
      }
      pos = next;
    }
    f.scanPos = f.bufStart + pos;
    if (eof && this.ml) {
      this.ml.flush(f.ml, nowMs, ml, true);
      for (const ev of ml) events.push(fromMultiline(ev, source));
    }
    // the text values are slices of an ASCII read (the others are bytes)
    await this.emit(f, events, wait, text !== undefined);
  }

  /**
   * consume's plain path (no multiline, parse or key; no over-long line pending): the complete lines of
   * an all-ASCII read as byte ranges of it, in one entry, with no string and no object per line.
   * Undefined, nothing changed, for anything else (a non-ASCII byte, a line to cut, no line).
   */
  private linesAsBytes(f: Followed, eof: boolean): RecsEntry | undefined {
    const buf = f.buf;
    const pos0 = f.scanPos - f.bufStart;
    if (pos0 >= buf.length || !isAscii(buf.subarray(pos0))) return undefined;
    const max = this.cfg.maxLineBytes;
    let n = 0;
    let levels: Array<string | undefined> | undefined;
    // the read decoded in pieces that end at a newline: String indexOf finds newlines faster than a
    // Buffer call per line and the levels are found in one scan of each piece; a piece stays in V8's
    // young generation (a 1 MiB string went to old space and cost a full collection every few reads)
    let at = pos0;
    let pos = pos0;
    while (at < buf.length) {
      let to = Math.min(buf.length, at + DECODE_PIECE_BYTES);
      if (to < buf.length) {
        const nl = buf.lastIndexOf(10, to - 1);
        if (nl >= at) to = nl + 1;
        else {
          // a line longer than a piece: the piece is that line
          const after = buf.indexOf(10, to);
          to = after < 0 ? buf.length : after + 1;
        }
      }
      const text = buf.toString('latin1', at, to);
      const ll = new LineLevels(text);
      let p = 0;
      for (;;) {
        const nl = text.indexOf('\n', p);
        let end: number;
        let next: number;
        if (nl >= 0) {
          if (nl - p > max) return undefined;
          end = nl;
          next = nl + 1;
        } else if (text.length - p >= max) return undefined;
        else if (eof && p < text.length && to === buf.length) {
          end = text.length;
          next = end;
        } else break;
        if (end > p && text.charCodeAt(end - 1) === 13) end--;
        if (n === lineStarts.length) growLines();
        lineStarts[n] = at + p - pos0;
        lineEnds[n] = at + end - pos0;
        const lv = ll.of(p, end);
        if (lv !== undefined) {
          levels ??= [];
          levels[n] = lv;
        }
        n++;
        p = next;
      }
      pos = at + p;
      if (p < text.length) break;
      at = to;
    }
    if (n === 0) return undefined;
    const starts = lineStarts.slice(0, n);
    const ends = lineEnds.slice(0, n);
    if (levels && levels.length < n) levels.length = n;
    if (lineStarts.length > LINE_SCRATCH_KEPT) resetLines();
    this.stats.linesRead += n;
    f.scanPos = f.bufStart + pos;
    // the lines stay in memory until acknowledged: a small read's are copied out of the larger buffer
    // they are a slice of (the held bytes before them, a shared 8 KiB pool slab), which they would keep alive
    let data = buf.subarray(pos0, pos0 + ends[n - 1]);
    if (data.buffer.byteLength > 2 * data.length) data = ownMemory(data);
    // still a view of the pooled read buffer: the entry holds it until its records are acknowledged
    const lease = f.lease?.holds(data) ? f.lease.hold() : undefined;
    return bytesEntry(this.spool, this.cfg.host, this.src.task, this.src.topic, f.path, this.now(), lease ? { data, starts, ends, lease } : { data, starts, ends }, levels);
  }

  /** A file's held bytes are now `buf` (a view of `lease`'s buffer, which the file then holds); the buffer it held before is let go. */
  private setBuf(f: Followed, buf: Buffer, lease?: Lease): void {
    if (lease && !lease.holds(buf)) throw new Error('a file holds a view of a buffer other than its lease\'s');
    f.lease?.release();
    f.buf = buf;
    f.lease = lease;
  }

  private async flushQuiet(f: Followed): Promise<void> {
    if (!this.ml || !f.ml.pending) return;
    const events: Event[] = [];
    this.ml.flush(f.ml, this.now(), events);
    if (events.length > 0) await this.emit(f, events.map((ev) => fromMultiline(ev, f.path)));
  }

  /** Records with their seqs and the checkpoint after them: one append, one fdatasync. */
  private async emit(f: Followed, events: AgentEvent[], wait = true, asciiText = false): Promise<void> {
    if (this.src.parse === 'sshd' || this.keySpec) {
      for (const ev of events) {
        if (this.src.parse === 'sshd') ev.headers = { ...ev.headers, ...sshHeadersOfLine(ev.value.toString('utf8')) };
        const key = this.keySpec && !ev.headers?.cut ? keyOfLine(ev.value.toString('utf8'), this.keySpec) : undefined;
        if (key !== undefined) ev.key = key;
      }
    }
    const entries: Entry[] = recordEntries(this.spool, this.cfg.host, this.src.task, this.src.topic, events, asciiText);
    return this.emitEntries(f, entries, events.length, wait, () => [head20(events[0].value), head20(events[events.length - 1].value)]);
  }

  /** The entries of `n` records with the checkpoint after them: one append, one fdatasync. */
  private async emitEntries(f: Followed, entries: Entry[], n: number, wait: boolean, heads: () => [string, string]): Promise<void> {
    const ck = this.ckptOf(f);
    // nothing read of a file restarted at 0 yet: the older checkpoint stays (supersedes)
    if (n > 0 || supersedes(this.spool.ckpts.get(this.ckKey(f.key)), ck)) entries.push({ t: 'ck', key: this.ckKey(f.key), ck });
    if (n > 0 && this.log.isLevelEnabled('debug')) {
      const [first, last] = heads();
      this.log.debug({ task: this.src.task, key: f.key, path: f.path, n, first, last, off: ck.offset, headLen: ck.headLen }, 'emit');
    }
    // keep the pending event, the partial line and the 1 KiB before them
    const keepFrom = Math.max(f.bufStart, tailRange(ck.offset)[0]);
    if (keepFrom > f.bufStart) {
      f.buf = f.buf.subarray(keepFrom - f.bufStart);
      f.bufStart = keepFrom;
    }
    if (this.tracing && n > 0) {
      const r = entries[0] as RecsEntry;
      this.log.trace({ task: this.src.task, from: r.seq, to: r.seq + n - 1, watchUs: this.watchUs, readAtUs: this.readAtUs, readUs: nowUs() }, 'timing read');
      this.readAtUs = 0;
    }
    if (entries.length === 0) return;
    if (wait) return this.spool.append(entries);
    // the reader goes on meanwhile: the append may wait for the spool's commit gap
    const p = this.spool.append(entries, true);
    this.unsynced.push(p);
    // durable in order: the oldest is the one that resolved
    p.then(() => void this.unsynced.shift(), (err: Error) => {
      this.unsynced.shift();
      this.log.error({ err, task: this.src.task }, 'file pass failed');
      this.fatal(err);
    });
  }

  /** Resolves once the fast reads' appends are durable (rejects if one failed). */
  private async synced(): Promise<void> {
    if (this.unsynced.length > 0) await this.unsynced[this.unsynced.length - 1];
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
    return { task: this.src.task, path: f.base, dev: f.dev, ino: f.ino, offset, headLen: f.headLen, headHash: f.headHash, tailHash: hashBytes(tail), ...(f.cut > 0 ? { cut: f.cut } : {}) };
  }

  /** The last partial line and pending event of a file that will not grow again. */
  private async endOf(f: Followed, remove: boolean): Promise<void> {
    await this.consume(f, true);
    if (remove) await this.spool.append([{ t: 'ck', key: this.ckKey(f.key), ck: null }]);
  }

  /** sources[].rotate: the agent rotates a file it follows once it is due (read up to its end first). */
  private async rotateOwn(f: Followed): Promise<void> {
    const ro = this.src.rotate!;
    const st = await f.fh.stat();
    if (!rotateDue(ro, st.size, f.sinceMs, this.now()) || this.spool.full() || f.readPos < st.size) return;
    // a copytruncate's copy is finished from the spool's checkpoint of the file: the pass's own reads first
    await this.synced();
    f.sinceMs = this.now();
    this.stats.ownRotations++;
    if (ro.mode === 'rename') {
      const { signalled } = await renameRotate(f.path, ro);
      this.log.info({ path: f.path, signalled, task: this.src.task }, 'rotated (rename)');
      // the renamed file is read to its end through its handle; the pass finds the new one
      f.path = `${f.path}.1`;
      f.detached = true;
    } else {
      const r = await copyTruncate(f.path, f.fh, ro);
      this.log.info({ path: f.path, ...r, task: this.src.task }, 'rotated (copytruncate)');
      // what was not read yet is read from the copy, then the file from 0
      await this.truncated(f);
      if (r.lostBytes > 0) {
        await this.gap({ path: f.path, reason: 'rotate', offset: r.copiedBytes, bytes: r.lostBytes, detail: 'the writer outran the copy of copytruncate; what it wrote last is lost' });
      }
    }
    if (ro.compress) await compressCopies(f.base, ro.keep);
  }

  private async maybeClose(f: Followed): Promise<void> {
    if (!f.detached || !this.followed.has(f.key)) return;
    const st = await f.fh.stat();
    // rotated files of one name close oldest first (closesFirst)
    let foundBefore = true;
    for (const o of this.followed.values()) {
      if (o === f) {
        foundBefore = false;
        continue;
      }
      if (!o.detached || o.base !== f.base) continue;
      const os = await o.fh.stat().catch(() => undefined);
      if (os && closesFirst({ mtimeMs: os.mtimeMs, foundBefore }, st)) return;
    }
    if (st.size > f.readPos) return;
    if (this.now() - f.lastGrowthMs < this.cfg.rotatedIdleMs) return;
    await this.endOf(f, true);
    this.setBuf(f, Buffer.alloc(0)); // its read buffer back to the pool once its records let go
    this.followed.delete(f.key);
    await f.fh.close();
    this.log.info({ path: f.path, key: f.key, task: this.src.task }, 'rotated file done');
  }
}

/**
 * How `name` is a rotated copy of another of `names` (app.log.1, app-20261206.log and app.log.2.gz of
 * app.log), compressed ones first; undefined if it is none. Only the names its separators cut it
 * into are looked up: a pass over 1,000 names costs no 1M comparisons.
 */
export function rotationOf(names: Set<string>, name: string): { compressed?: string } | undefined {
  let plain: { compressed?: string } | undefined;
  const seps: number[] = [];
  for (let i = 1; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 46 || c === 45 || c === 95) seps.push(i);
  }
  const check = (base: string) => {
    if (base === name || !names.has(base)) return false;
    const r = rotatedName(base, name);
    if (r?.compressed !== undefined) return true;
    if (r) plain = r;
    return false;
  };
  for (const i of seps) {
    // base.1, base-20261206, base.1.gz
    if (check(name.slice(0, i))) return { compressed: rotatedName(name.slice(0, i), name)!.compressed };
    // stem-20261206.ext(.gz): the base is the stem and an extension that follows
    for (const j of seps) {
      if (j <= i || name.charCodeAt(j) !== 46) continue;
      for (const base of [name.slice(0, i) + name.slice(j), ...seps.filter((k) => k > j && name.charCodeAt(k) === 46).map((k) => name.slice(0, i) + name.slice(j, k))]) {
        if (check(base)) return { compressed: rotatedName(base, name)!.compressed };
      }
    }
  }
  return plain;
}

/**
 * The whole pass's read buffers (CHUNK_BYTES and the held bytes): reused once the records read into
 * one are acknowledged. Reads under READ_POOL_MIN_BYTES come from Node's allocator (glibc's heap, not
 * a mapping of their own).
 */
const READ_POOL_MIN_BYTES = 128 * 1024;
export const readBuffers = new BufferPool({ keptMax: limits.agentReadBuffersKeptMax, idleMs: limits.agentBatchBuffersIdleMs, minBytes: READ_POOL_MIN_BYTES });

/** consume's plain path: where each line of a read starts and ends (scratch, reused; shrunk after a read of many short lines) */
let lineStarts = new Uint32Array(4096);
let lineEnds = new Uint32Array(4096);
const LINE_SCRATCH_KEPT = 65536;
/** consume's plain path decodes a read in pieces of about this many bytes (young-generation strings) */
const DECODE_PIECE_BYTES = 64 * 1024;

function growLines(): void {
  const s = new Uint32Array(lineStarts.length * 2);
  const e = new Uint32Array(lineEnds.length * 2);
  s.set(lineStarts);
  e.set(lineEnds);
  lineStarts = s;
  lineEnds = e;
}

function resetLines(): void {
  lineStarts = new Uint32Array(4096);
  lineEnds = new Uint32Array(4096);
}

function head20(v: string | Buffer): string {
  return typeof v === 'string' ? v.slice(0, 20) : v.toString('latin1', 0, 20);
}

async function headHashOf(p: string, len: number): Promise<string | undefined> {
  try {
    const fh = await open(p, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      return hashBytes(await readAt(fh, 0, len));
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * The bytes of `b` in memory of their own: what a quiet file holds (its partial line and the 1 KiB
 * before it) may be a slice of an 8 KiB pool slab or of a 1 MiB read, which it would keep alive —
 * 1,000 idle files kept ~3 MB of slabs that way. `pooled`: b is a view of a pooled read buffer, copied
 * even when it is all of it (the buffer goes back to its pool).
 */
function ownMemory(b: Buffer, pooled = false): Buffer {
  if (b.byteLength === b.buffer.byteLength && !pooled) return b;
  const own = Buffer.allocUnsafeSlow(b.length);
  b.copy(own);
  return own;
}

async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(len);
  return buf.subarray(0, await readInto(fh, buf, 0, pos, len));
}

/** Reads up to len bytes at file position pos into buf at offset; how many were read (fewer at the end of the file). */
async function readInto(fh: FileHandle, buf: Buffer, offset: number, pos: number, len: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, offset + got, len - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** A candidate read at a checkpoint's head length and offset; tail: the held bytes before the offset. */
async function probe(p: string, ck: FileCkpt): Promise<{ probe: import('./identity.js').Probe; tail: Buffer } | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(p, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return undefined;
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

/**
 * Rotated copies of a file in its directory (base.1, base-20261206, app-20261206.log, …), plain or
 * gzipped ones, newest first (by mtime; the name breaks ties).
 */
async function siblings(p: string, gz: boolean): Promise<string[]> {
  const dir = path.dirname(p);
  const base = path.basename(p);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const picked = names.filter((n) => {
    const r = rotatedName(base, n);
    return r !== undefined && (gz ? r.compressed === 'gz' : r.compressed === undefined);
  });
  const withTime = await Promise.all(picked.map(async (n) => ({ n, t: (await stat(path.join(dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })));
  return withTime.sort((x, y) => y.t - x.t || (x.n < y.n ? -1 : 1)).map((x) => path.join(dir, x.n));
}
