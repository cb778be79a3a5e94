// Following the systemd journal: `journalctl --follow --output=json --cursor=…` as a child process;
// each entry becomes a record and the cursor of the last one is appended with them (one fdatasync),
// so a restart resumes right after what the spool holds (the saved entry, shown again, is dropped). Backpressure: while the spool
// is full or a batch waits, journalctl's stdout is paused (its socket buffer fills and journalctl
// blocks in write).
// Decisions (arguments, entry → record, gap after a vacuumed cursor, backoff) are pure functions.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Logger } from '../runtime/log.js';
import type { Notice, TaskSink } from './agent.js';
import type { AgentConfig } from './config.js';
import { type AgentEvent, cutHeader, cutPieces } from './records.js';
import { SSHD_IDENTIFIERS, parseSshd, sshHeaders } from './sshd.js';
import type { Spool } from './spool.js';

export interface JournaldConfig {
  /** the `task` header of every record; one journald source per task */
  task: string;
  topic: string;
  /** `--unit` values (any of them) */
  units: string[];
  /** `--identifier` values: SYSLOG_IDENTIFIER (any of them) */
  identifiers: string[];
  /** journalctl match arguments: FIELD=value, `+` between alternatives */
  matches: string[];
  /** where a first start (no saved cursor) begins: the oldest entry or the journal's end */
  from: 'head' | 'tail';
  /** longest MESSAGE shipped as one record; longer ones go in pieces of this size, marked with a `cut` header */
  maxMessageBytes: number;
  /** a journald namespace (`--namespace`) instead of the default journal */
  namespace?: string;
  /** a directory of journal files (`--directory`) instead of the default journal */
  directory?: string;
}

/** the fields journalctl prints (it adds __CURSOR, __REALTIME_TIMESTAMP, __MONOTONIC_TIMESTAMP, _BOOT_ID) */
export const JOURNAL_FIELDS = ['MESSAGE', 'PRIORITY', 'SYSLOG_IDENTIFIER', 'SYSLOG_PID', '_PID', '_SYSTEMD_UNIT', '_HOSTNAME', '_COMM', '_TRANSPORT', '_UID'];

/** syslog severities by PRIORITY 0–7 */
export const SYSLOG_SEVERITY = ['emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'];
/** the agent's level vocabulary (as for files) by PRIORITY 0–7 */
const LEVEL_OF_PRIORITY = ['fatal', 'fatal', 'fatal', 'error', 'warn', 'info', 'info', 'debug'];

/** records read ahead while a batch is being written; then journalctl's output is paused */
const BATCH_RECORDS_MAX = 2000;
const BATCH_BYTES_MAX = 4 * 1024 * 1024;
const BATCH_BYTES_MIN = 64 * 1024;
/** a JSON line may be this many times its MESSAGE (binary messages are arrays of numbers) */
const LINE_EXPANSION_MAX = 4;
/** bytes kept from the end of an oversized line (its small fields may follow the MESSAGE) */
const LINE_TAIL_BYTES = 16 * 1024;
/** a run this long resets the restart backoff */
const HEALTHY_RUN_MS = 30_000;
const STDERR_KEEP_BYTES = 2048;
const QUERY_TIMEOUT_MS = 30_000;
const SETPRIV = '/usr/bin/setpriv';
/** how often a source waiting for systemd-journald to start looks for its socket */
const JOURNALD_WAIT_MS = 1000;

/** A saved position: after the entry (a plain cursor) or at it (`=` + cursor, after a gap). */
export function cursorKey(task: string): string {
  return `journald|${task}`;
}

/**
 * The socket systemd-journald listens on for the journal a source reads, or undefined when there is
 * none to check (a directory of journal files, every namespace). Without it nothing is written to
 * that journal, and journalctl follows it silently.
 */
export function journaldSocket(cfg: Pick<JournaldConfig, 'namespace' | 'directory'>): string | undefined {
  if (cfg.directory !== undefined || cfg.namespace === '*') return undefined;
  const ns = cfg.namespace?.replace(/^\+/, '');
  return ns ? `/run/systemd/journal.${ns}/socket` : '/run/systemd/journal/socket';
}

/** Which journal journalctl reads: the default one, a namespace's or a directory's. */
export function journalArgs(cfg: Pick<JournaldConfig, 'namespace' | 'directory'>): string[] {
  if (cfg.namespace !== undefined) return [`--namespace=${cfg.namespace}`];
  if (cfg.directory !== undefined) return [`--directory=${cfg.directory}`];
  return [];
}

/**
 * journalctl arguments for following from a saved position (none: from the oldest entry). Always
 * `--cursor` (at the entry), never `--after-cursor`: journalctl 252 skips one entry after the seek
 * on the assumption that it is the cursor's own, so when that entry does not match the filters (the
 * journal's end saved at a first start) or is gone (vacuumed), the first entry after it is lost.
 * The saved entry itself, when journalctl shows it again, is dropped by `ResumeFilter`.
 */
export function followArgs(cfg: JournaldConfig, position: string | undefined): string[] {
  const args = [...journalArgs(cfg), '--follow', '--output=json', '--all', '--quiet', `--output-fields=${JOURNAL_FIELDS.join(',')}`];
  if (position === undefined) args.push('--no-tail');
  else args.push(`--cursor=${position.startsWith('=') ? position.slice(1) : position}`);
  for (const u of cfg.units) args.push(`--unit=${u}`);
  for (const i of cfg.identifiers) args.push(`--identifier=${i}`);
  args.push(...cfg.matches);
  return args;
}

export interface Cursor { seqnumId: string; seqnum: bigint }

export function parseCursor(c: string): Cursor | undefined {
  const parts = new Map(c.split(';').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const));
  const s = parts.get('s');
  const i = parts.get('i');
  if (!s || !i || !/^[0-9a-f]+$/i.test(i)) return undefined;
  return { seqnumId: s, seqnum: BigInt(`0x${i}`) };
}

/**
 * What one journalctl run from a saved position ships: it starts at the position's entry (--cursor),
 * so an entry of the position's sequence up to it (the saved entry itself, after a plain cursor) is
 * dropped. Entries of another sequence (another journal's, interleaved) and entries without a
 * readable cursor are shipped. Once one entry of the sequence is after the position, so is every
 * later one (journalctl shows a sequence in order) and nothing more is checked.
 */
export class ResumeFilter {
  private saved?: Cursor;
  private readonly inclusive: boolean;

  constructor(position: string | undefined) {
    this.inclusive = position?.startsWith('=') ?? false;
    this.saved = position === undefined ? undefined : parseCursor(this.inclusive ? position.slice(1) : position);
  }

  ship(cursor: string | undefined): boolean {
    if (!this.saved || cursor === undefined) return true;
    const got = parseCursor(cursor);
    if (!got || got.seqnumId !== this.saved.seqnumId) return true;
    const after = this.inclusive ? got.seqnum >= this.saved.seqnum : got.seqnum > this.saved.seqnum;
    if (after) this.saved = undefined;
    return after;
  }
}

/**
 * Entries lost between a saved position and the first entry the journal has at or after it
 * (unfiltered): 0 when nothing is missing, a count when the sequence says how many, 'unknown' when
 * the journal no longer has the position's sequence at all.
 */
export function gapAfter(position: string, first: string | undefined): number | 'unknown' {
  const inclusive = position.startsWith('=');
  const saved = parseCursor(inclusive ? position.slice(1) : position);
  const got = first === undefined ? undefined : parseCursor(first);
  if (!saved || !got || saved.seqnumId !== got.seqnumId) return 'unknown';
  const expected = saved.seqnum + (inclusive ? 0n : 1n);
  return got.seqnum <= expected ? 0 : Number(got.seqnum - expected);
}

/** The restart delay after `failures` quick exits in a row. */
export function backoffMs(failures: number, retry: { minMs: number; maxMs: number }): number {
  return Math.min(retry.maxMs, retry.minMs * 2 ** Math.min(failures, 30));
}

/** One journal entry: one event, or its pieces when MESSAGE is over the cap (in order). */
export interface ParsedEntry { cursor?: string; events: AgentEvent[] }

const firstString = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : Array.isArray(v) && typeof v[0] === 'string' ? v[0] : undefined;

/** MESSAGE as journalctl prints it: a string, an array of byte values, several values, or null. */
function messageValue(v: unknown): string | Buffer {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v) || v.length === 0) return '';
  if (typeof v[0] === 'number') return Buffer.from(v as number[]);
  // a field given more than once: its values, one a line
  return Buffer.concat(v.map((x, i) => Buffer.concat([i > 0 ? Buffer.from('\n') : Buffer.alloc(0), typeof x === 'string' ? Buffer.from(x) : Array.isArray(x) ? Buffer.from(x as number[]) : Buffer.alloc(0)])));
}

/**
 * One journal entry (journalctl's JSON object) as agent events: one, or the pieces of a MESSAGE over
 * maxMessageBytes (header `cut`, as for a file's long line). `incomplete`: MESSAGE is only the start
 * of the entry's (its line was over the cap); its last piece says so with `cut.incomplete`.
 */
export function entryEvent(obj: Record<string, unknown>, maxMessageBytes: number, nowMs: number, incomplete = false): ParsedEntry {
  const f = (k: string) => firstString(obj[k]);
  const value = messageValue(obj.MESSAGE);
  const us = Number(f('__REALTIME_TIMESTAMP'));
  const prio = Number(f('PRIORITY'));
  const unit = f('_SYSTEMD_UNIT');
  const ident = f('SYSLOG_IDENTIFIER');
  const headers: Record<string, string> = {};
  const put = (h: string, v: string | undefined) => { if (v !== undefined) headers[h] = v; };
  put('journal.unit', unit);
  put('journal.identifier', ident);
  put('journal.pid', f('_PID') ?? f('SYSLOG_PID'));
  put('journal.hostname', f('_HOSTNAME'));
  put('journal.comm', f('_COMM'));
  put('journal.transport', f('_TRANSPORT'));
  put('journal.uid', f('_UID'));
  const level = Number.isInteger(prio) && prio >= 0 && prio <= 7 ? LEVEL_OF_PRIORITY[prio] : undefined;
  if (level) headers['journal.priority'] = SYSLOG_SEVERITY[prio];
  if (ident !== undefined && SSHD_IDENTIFIERS.has(ident) && typeof value === 'string') {
    const ev = parseSshd(value);
    if (ev) Object.assign(headers, sshHeaders(ev));
  }
  const cursor = f('__CURSOR');
  const base = { source: unit ?? ident ?? f('_COMM') ?? 'journald', timeMs: Number.isFinite(us) && us > 0 ? Math.floor(us / 1000) : nowMs, ...(level ? { level } : {}) };
  const pieces = cutPieces(value, maxMessageBytes);
  if (incomplete && pieces.length === 1) pieces[0].cut = cutHeader(1, true);
  const events = pieces.map((p, i) => {
    const h = p.cut === undefined ? headers : { ...headers, cut: p.cut };
    if (incomplete && i === pieces.length - 1) h['cut.incomplete'] = 'true';
    return { ...base, value: p.value, headers: h };
  });
  return { ...(cursor !== undefined ? { cursor } : {}), events };
}

/** The start of a JSON value cut anywhere: a string's complete characters, an array's complete numbers. */
export function partialJsonValue(s: string): string | Buffer {
  if (s.startsWith('"')) {
    // the closing quote is the first one not escaped
    for (let q = s.indexOf('"', 1); q >= 0; q = s.indexOf('"', q + 1)) {
      let bs = 0;
      while (s[q - 1 - bs] === '\\') bs++;
      if (bs % 2 === 0) return JSON.parse(s.slice(0, q + 1)) as string;
    }
    // cut inside: drop a trailing partial escape (at most 6 characters, "\u12")
    for (let drop = 0; drop <= 6 && drop < s.length; drop++) {
      try {
        return JSON.parse(`${s.slice(0, s.length - drop)}"`) as string;
      } catch {
        // try a shorter prefix
      }
    }
    return '';
  }
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    const body = end >= 0 ? s.slice(1, end) : s.slice(1, s.lastIndexOf(','));
    try {
      const arr = JSON.parse(`[${body}]`) as unknown[];
      if (arr.every((x) => typeof x === 'number')) return Buffer.from(arr as number[]);
    } catch {
      // several values: not recovered from a cut line
    }
  }
  return '';
}

/** An entry whose JSON line was longer than the line cap: its small fields from the head and tail kept, MESSAGE cut. */
export function salvageEntry(head: Buffer, tail: Buffer, maxMessageBytes: number, nowMs: number): ParsedEntry {
  const h = head.toString('utf8');
  const t = tail.toString('utf8');
  const obj: Record<string, unknown> = {};
  // inside a JSON string every quote is escaped, so `"NAME":"` only matches a field
  for (const name of ['__CURSOR', '__REALTIME_TIMESTAMP', ...JOURNAL_FIELDS.filter((x) => x !== 'MESSAGE')]) {
    const re = new RegExp(`"${name}":"([^"\\\\]*)"`);
    const m = re.exec(h) ?? re.exec(t);
    if (m) obj[name] = m[1];
  }
  const at = h.indexOf('"MESSAGE":');
  const msg = at >= 0 ? partialJsonValue(h.slice(at + 10)) : '';
  return entryEvent({ ...obj, MESSAGE: typeof msg === 'string' ? msg : [...msg] }, maxMessageBytes, nowMs, true);
}

export type Line = { line: Buffer } | { head: Buffer; tail: Buffer; totalBytes: number };

/** Splits journalctl's output into lines; a line over capBytes keeps its first capBytes and last tailBytes. */
export class LineSplitter {
  private parts: Buffer[] = [];
  private len = 0;
  private head?: Buffer;
  private tail = Buffer.alloc(0);
  private total = 0;

  constructor(private readonly capBytes: number, private readonly tailBytes: number) {}

  push(chunk: Buffer, out: Line[]): void {
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(10, pos);
      this.add(chunk.subarray(pos, nl < 0 ? chunk.length : nl));
      if (nl < 0) return;
      out.push(this.take());
      pos = nl + 1;
    }
  }

  /** Drops a partial line (the process that wrote it is gone). */
  reset(): void {
    this.parts = [];
    this.len = 0;
    this.head = undefined;
    this.tail = Buffer.alloc(0);
    this.total = 0;
  }

  private add(b: Buffer): void {
    if (b.length === 0) return;
    if (!this.head) {
      if (this.len + b.length <= this.capBytes) {
        this.parts.push(b);
        this.len += b.length;
        return;
      }
      const all = Buffer.concat([...this.parts, b]);
      this.head = Buffer.from(all.subarray(0, this.capBytes));
      this.tail = Buffer.from(all.subarray(Math.max(this.capBytes, all.length - this.tailBytes)));
      this.total = all.length;
      this.parts = [];
      this.len = 0;
      return;
    }
    this.total += b.length;
    const joined = Buffer.concat([this.tail, b]);
    this.tail = Buffer.from(joined.subarray(Math.max(0, joined.length - this.tailBytes)));
  }

  private take(): Line {
    let out: Line;
    if (this.head) out = { head: this.head, tail: this.tail, totalBytes: this.total };
    else out = { line: this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts) };
    this.reset();
    return out;
  }
}

export interface JournaldStats { entries: number; bytes: number; restarts: number; gaps: number; cut: number; badLines: number; skipped: number }

/** The journal of one journald source, followed by a journalctl child restarted with backoff. */
export class JournaldSource {
  readonly stats: JournaldStats = { entries: 0, bytes: 0, restarts: 0, gaps: 0, cut: 0, badLines: 0, skipped: 0 };
  private readonly key: string;
  private readonly splitter: LineSplitter;
  private child?: ChildProcess;
  private batch: AgentEvent[] = [];
  private batchBytes = 0;
  private batchCursor?: string;
  /** drops what the current journalctl run shows again */
  private resume = new ResumeFilter(undefined);
  private writing?: Promise<void>;
  private stopped = false;
  private loop?: Promise<void>;
  private offFreed?: () => void;
  private wakeSleep?: () => void;
  /** `from: tail` without a saved cursor: the journal's end is saved before following */
  private tailPending = false;
  /** a spool that cannot write ends the agent (set by the agent) */
  fatal: (err: Error) => void = () => {};

  constructor(
    private readonly cfg: JournaldConfig,
    private readonly agentCfg: AgentConfig,
    private readonly sink: TaskSink,
    private readonly spool: Spool,
    private readonly notice: (n: Notice) => void,
    private readonly log: Logger,
    private readonly journalctl = 'journalctl',
  ) {
    this.key = cursorKey(cfg.task);
    this.splitter = new LineSplitter(cfg.maxMessageBytes * LINE_EXPANSION_MAX + LINE_TAIL_BYTES, LINE_TAIL_BYTES);
  }

  /** Follows from the saved cursor; a first start at the tail saves the journal's end first. */
  async start(): Promise<void> {
    this.offFreed = this.spool.onFreed(() => this.pump());
    this.tailPending = this.spool.cursors.get(this.key) === undefined && this.cfg.from === 'tail';
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeSleep?.();
    this.child?.kill('SIGTERM');
    await this.loop;
    await this.writing?.catch(() => {});
    this.offFreed?.();
  }

  /** Saves the journal's last cursor; false when journalctl failed (tried again at the next start). */
  private async saveTail(): Promise<boolean> {
    const r = await this.query(['--output=json', '--lines=1', '--output-fields=__CURSOR']);
    if (r.code !== 0) return false;
    const cursor = lastCursor(r.stdout);
    // an empty journal: following from the oldest entry is following from its end
    if (cursor !== undefined) await this.spool.append([{ t: 'cur', key: this.key, cursor }]);
    this.tailPending = false;
    this.log.info({ task: this.cfg.task, cursor }, 'journald: first start at the journal\'s end');
    return true;
  }

  private query(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
    return new Promise((resolve) => {
      execFile(this.journalctl, [...journalArgs(this.cfg), ...args], { timeout: QUERY_TIMEOUT_MS, maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        resolve({ stdout, stderr, code });
      });
    });
  }

  /** A gap record and a notice when entries after the saved position are gone; the position moves to the first entry left. */
  private async checkGap(position: string): Promise<void> {
    const cursor = position.startsWith('=') ? position.slice(1) : position;
    const r = await this.query(['--output=json', '--lines=1', `--cursor=${cursor}`, '--output-fields=__CURSOR']);
    if (r.code !== 0 && !/cursor/i.test(r.stderr)) return; // journalctl itself failed: the follow reports it
    const first = r.code === 0 ? lastCursor(r.stdout) : undefined;
    const lost = gapAfter(position, first);
    if (lost === 0) return;
    this.stats.gaps++;
    const detail = r.code !== 0
      ? `journalctl refused the saved cursor (${r.stderr.trim().slice(0, 200)})`
      : first === undefined ? 'the journal holds nothing at or after the saved cursor' : 'the journal was vacuumed past the saved cursor';
    const count = lost === 'unknown' ? undefined : lost;
    this.log.warn({ task: this.cfg.task, position, first, lost }, `GAP: ${detail}`);
    const gap: AgentEvent = {
      value: `GAP: ${detail}; ${count === undefined ? 'an unknown number of' : count} journal entries (before filtering) are lost`,
      source: 'journald',
      timeMs: Date.now(),
      level: 'warn',
      headers: { gap: 'journald', 'gap.entries': count === undefined ? 'unknown' : String(count) },
    };
    // resume at the first entry left; with none (or a refused cursor), as a first start
    const next = first !== undefined ? `=${first}` : null;
    await this.sink.write([gap], [{ t: 'cur', key: this.key, cursor: next }]);
    this.notice({ kind: 'gap', task: this.cfg.task, source: 'journald', detail, ...(count !== undefined ? { count } : {}) });
    if (next === null && this.cfg.from === 'tail') this.tailPending = true;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wakeSleep = () => { clearTimeout(t); resolve(); };
    });
  }

  private async run(): Promise<void> {
    await this.awaitJournald();
    let failures = 0;
    while (!this.stopped) {
      const startedAt = Date.now();
      let exit: { code: number | null; signal: string | null; stderr: string };
      try {
        exit = await this.follow();
      } catch (err) {
        this.log.error({ err, task: this.cfg.task }, 'journald source failed');
        this.fatal(err as Error);
        return;
      }
      if (this.stopped) return;
      failures = Date.now() - startedAt > HEALTHY_RUN_MS ? 0 : failures + 1;
      const delay = backoffMs(failures, this.agentCfg.retry);
      this.stats.restarts++;
      const detail = `journalctl exited (${exit.signal ?? `code ${exit.code}`})${exit.stderr ? `: ${exit.stderr.trim().slice(-300)}` : ''}; restarting in ${delay} ms`;
      this.notice({ kind: 'source_restart', task: this.cfg.task, source: 'journald', detail });
      await this.sleep(delay);
    }
  }

  /** One journalctl run from the committed position; resolves when it exited and its last batch is written. */
  private async follow(): Promise<{ code: number | null; signal: string | null; stderr: string }> {
    let position = this.spool.cursors.get(this.key);
    if (position !== undefined) await this.checkGap(position);
    if (this.tailPending && !(await this.saveTail())) return { code: -1, signal: null, stderr: 'journalctl could not read the journal\'s end' };
    position = this.spool.cursors.get(this.key);
    if (this.stopped) return { code: 0, signal: null, stderr: '' };
    const args = followArgs(this.cfg, position);
    // setpriv --pdeathsig: journalctl ends with the agent, even after a kill -9
    const [cmd, argv] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'SIGTERM', '--', this.journalctl, ...args]] : [this.journalctl, args];
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.splitter.reset();
    this.resume = new ResumeFilter(position);
    this.log.info({ task: this.cfg.task, position: position ?? '(oldest entry)', pid: child.pid }, 'journald: following');
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-STDERR_KEEP_BYTES); });
    child.stdout!.on('data', (chunk: Buffer) => this.onChunk(chunk));
    const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve) => {
      child.once('error', (err) => { stderr += String(err.message); resolve({ code: -1, signal: null }); });
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    this.child = undefined;
    // batches read before the exit are written (in order); what the spool has no room for is read again
    while (this.writing) await this.writing.catch(() => {});
    this.batch = [];
    this.batchBytes = 0;
    this.batchCursor = undefined;
    return { ...exit, stderr };
  }

  /**
   * Waits, at start, for systemd-journald while its socket is missing and its journal holds nothing
   * (a host whose PID 1 is not systemd, say): a journalctl started before any journal file exists
   * never sees the files a journald started later writes.
   */
  private async awaitJournald(): Promise<void> {
    const socket = journaldSocket(this.cfg);
    if (socket === undefined || existsSync(socket)) return;
    const r = await this.query(['--output=json', '--lines=1', '--output-fields=__CURSOR']);
    // journalctl that fails is the follow's to report; entries to ship are followed as they are
    if (r.code !== 0 || lastCursor(r.stdout) !== undefined) return;
    this.log.warn({ task: this.cfg.task, socket }, `journald: systemd-journald is not running (no ${socket}): waiting for it; nothing ships until it runs`);
    while (!this.stopped && !existsSync(socket)) await this.sleep(JOURNALD_WAIT_MS);
    if (!this.stopped) this.log.info({ task: this.cfg.task, socket }, 'journald: systemd-journald is running');
  }

  private onChunk(chunk: Buffer): void {
    const lines: Line[] = [];
    this.splitter.push(chunk, lines);
    const nowMs = Date.now();
    for (const l of lines) {
      let p: ParsedEntry | undefined;
      if ('line' in l) {
        let obj: unknown;
        try {
          obj = JSON.parse(l.line.toString('utf8'));
        } catch {
          obj = undefined;
        }
        if (obj === null || typeof obj !== 'object') {
          this.stats.badLines++;
          continue;
        }
        p = entryEvent(obj as Record<string, unknown>, this.cfg.maxMessageBytes, nowMs);
        this.stats.bytes += l.line.length;
      } else {
        p = salvageEntry(l.head, l.tail, this.cfg.maxMessageBytes, nowMs);
        this.stats.bytes += l.totalBytes;
      }
      // journalctl starts at the saved entry itself (--cursor): what the spool already holds is dropped
      if (!this.resume.ship(p.cursor)) {
        this.stats.skipped++;
        continue;
      }
      if (p.events.length > 1 || p.events[0].headers?.cut !== undefined) this.stats.cut++;
      this.stats.entries++;
      for (const ev of p.events) {
        this.batch.push(ev);
        this.batchBytes += (typeof ev.value === 'string' ? ev.value.length : ev.value.length * 2) + 256;
      }
      if (p.cursor !== undefined) this.batchCursor = p.cursor;
    }
    // near the quota, smaller batches: the spool overshoots it by at most one batch
    const bytesMax = Math.max(BATCH_BYTES_MIN, Math.min(BATCH_BYTES_MAX, this.spool.room()));
    if (this.batch.length >= BATCH_RECORDS_MAX || this.batchBytes >= bytesMax) this.child?.stdout?.pause();
    this.pump();
  }

  /** Writes the batch read so far with its cursor, one write at a time; resumes reading when there is room. */
  private pump(): void {
    if (this.writing || this.stopped) return;
    const out = this.child?.stdout;
    if (this.batch.length === 0) {
      if (out?.isPaused() && !this.spool.full()) out.resume();
      return;
    }
    if (this.spool.full()) {
      out?.pause(); // the spool's onFreed pumps again
      return;
    }
    const events = this.batch;
    const cursor = this.batchCursor;
    this.batch = [];
    this.batchBytes = 0;
    this.batchCursor = undefined;
    this.writing = this.sink.write(events, cursor !== undefined ? [{ t: 'cur', key: this.key, cursor }] : [])
      .then(() => {
        this.writing = undefined;
        this.pump();
      }, (err: Error) => {
        this.writing = undefined;
        this.log.error({ err, task: this.cfg.task }, 'journald: spool write failed');
        this.stopped = true;
        this.child?.kill('SIGTERM');
        this.fatal(err);
      });
  }
}

function lastCursor(jsonLines: string): string | undefined {
  const lines = jsonLines.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return undefined;
  try {
    return firstString((JSON.parse(lines[lines.length - 1]) as Record<string, unknown>).__CURSOR);
  } catch {
    return undefined;
  }
}
