// nftables enforcement: one long-lived `nft -i` child fed lines, each its own transaction. Bans go
// into sets with per-element timeouts (`flags timeout`), so the kernel lifts them by itself:
//   <table>.v4 / v6        single addresses (ipv4_addr / ipv6_addr)
//   <table>.v4net / v6net  prefix decisions (flags interval, timeout)
// Changes wait in a bounded queue, one per element (nftqueue.ts: coalescing, full policy, lines).
// A batch is up to `batchMax` × 8 changes written at once: delete lines, then add lines, then an
// ack line `chicago-ack N`, which nft's parser refuses (a command the kernel refuses would do too,
// but a failed transaction costs ≈ 20 ms; a syntax error ≈ 0.2 ms). nft prints each failed line's
// error, the line and carets under the culprit on stderr, in order, so the ack's error says every
// line before it is done, and the errors before it say which failed:
// those are resent without the element the carets point at (or in halves). An `add` of an element
// already present keeps its old timeout on older kernels (newer ones update it), so an extension
// is a delete then an add; `destroy element`, which ignores absent elements, is nft 1.0.8+ and
// this is written for 1.0.6.
// If the child dies it is restarted: the unacknowledged batch is queued again, and every active
// decision re-added. A child that has read limits.nftChildLinesMax lines is replaced between
// batches (see replaceChild).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Decision } from './decisions.js';
import { nowUs } from '../runtime/timing.js';
import { afterFailure, buildLines, type NftLine, NftQueue, type Pending, retryLines } from './nftqueue.js';
import { limits } from '../runtime/limits.js';

export interface NftOptions {
  /** the nft program and any wrapper before it (e.g. ['ip', 'netns', 'exec', 'ns1', 'nft']) */
  command: string[];
  table: string;
  /** also install an input chain dropping what the sets hold */
  drop: boolean;
  /** elements per line; a batch is up to 8 lines' worth */
  batchMax: number;
  /** elements with a change waiting (nftqueue.ts); a change for another element is refused */
  queueMax: number;
  /** the decisions in force, re-added after a restart of the child */
  active: () => Iterable<Decision>;
  log: (level: 'info' | 'warn' | 'error', msg: string, extra?: object) => void;
  /** each element whose change is done: its batch written to nft's stdin, acknowledged (CLOCK_MONOTONIC µs; for the latency bench); a resent one at its retry's ack */
  onTiming?: (t: { target: string; writtenUs: number; ackUs: number }) => void;
  /** lines a child reads before it is replaced (default limits.nftChildLinesMax) */
  childLinesMax?: number;
}

const RESTART_BACKOFF_MS = 200;
/** a batch not acknowledged within this long means the child is stuck: it is killed and restarted */
const ACK_TIMEOUT_MS = 10_000;
const BATCH_LINES = 8;
/** the line under a failed command pointing at its culprit */
const CARET = /^ *(\^+) *$/;

function setOf(d: Decision): string {
  return (d.v6 ? 'v6' : 'v4') + (d.scope === 'prefix' ? 'net' : '');
}

export function tableScript(table: string, drop: boolean): string {
  const t = `inet ${table}`;
  const lines = [
    `add table ${t}`,
    `add set ${t} v4 { type ipv4_addr; flags timeout; }`,
    `add set ${t} v6 { type ipv6_addr; flags timeout; }`,
    `add set ${t} v4net { type ipv4_addr; flags interval, timeout; }`,
    `add set ${t} v6net { type ipv6_addr; flags interval, timeout; }`,
  ];
  if (drop) {
    lines.push(
      `add chain ${t} input { type filter hook input priority -10; policy accept; }`,
      `flush chain ${t} input`,
      `add rule ${t} input ip saddr @v4 drop`,
      `add rule ${t} input ip saddr @v4net drop`,
      `add rule ${t} input ip6 saddr @v6 drop`,
      `add rule ${t} input ip6 saddr @v6net drop`,
    );
  }
  return lines.join('\n') + '\n';
}

interface InFlight {
  ack: string;
  lines: NftLine[];
  items: Pending[];
  failures: Array<{ line: NftLine; caretStart?: number; caretEnd?: number }>;
  timer: NodeJS.Timeout;
  writtenUs: number;
  /** the no-op transaction a fresh child runs first (warm) */
  warm?: boolean;
}

export class NftEnforcer {
  private child: ChildProcess | undefined;
  private readonly queue: NftQueue;
  private inFlight: InFlight | undefined;
  private ackSeq = 0;
  /** lines written to the current child */
  private childLines = 0;
  private closed = false;
  restarts = 0;
  /** children replaced after childLinesMax lines */
  replaced = 0;
  /** elements nft refused to add */
  errors = 0;
  /** lines resent after nft refused them */
  retries = 0;
  /** fresh children that ran their no-op transaction before any change (warm) */
  warmed = 0;

  constructor(private readonly opts: NftOptions) {
    this.queue = new NftQueue(opts.queueMax);
  }

  /** changes refused because the queue was full */
  get dropped(): number { return this.queue.dropped; }

  get queued(): number { return this.queue.size; }

  async start(): Promise<void> {
    const [cmd, ...args] = this.opts.command;
    const p = spawn(cmd, [...args, '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.setEncoding('utf8').on('data', (c: string) => { err += c; });
    p.stdin!.end(tableScript(this.opts.table, this.opts.drop));
    const [code] = (await once(p, 'close')) as [number | null];
    if (code !== 0) throw new Error(`nft: setting up table ${this.opts.table} failed (${code}): ${err.trim()}`);
    // resolved once the child is warm or takes changes; a child that does not acknowledge is killed
    // and restarted at the ack timeout, when this wait ends too
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => { this.onWarm = resolve; this.spawnChild(); }),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, ACK_TIMEOUT_MS); }),
    ]);
    clearTimeout(timer);
    this.onWarm = undefined;
  }

  private onWarm: (() => void) | undefined;

  private spawnChild(): void {
    const [cmd, ...args] = this.opts.command;
    // nft's interactive mode keeps a line history in $HOME/.nft.history: read whole at start, each
    // line added (its cost grows with the file: ≈ 0.15 ms per line at 1.7 MB), rewritten at exit,
    // never trimmed. HOME=/dev/null: no file can be there, so none is read or written. The history
    // in memory still grows by every line read (see replaceChild).
    const child = spawn(cmd, [...args, '-i'], { stdio: ['pipe', 'ignore', 'pipe'], env: { ...process.env, HOME: '/dev/null' } });
    this.child = child;
    this.childLines = 0;
    let errBuf = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      errBuf += c;
      let nl: number;
      while ((nl = errBuf.indexOf('\n')) >= 0) {
        const l = errBuf.slice(0, nl);
        errBuf = errBuf.slice(nl + 1);
        if (this.child === child) this.onStderrLine(l);
      }
      if (errBuf.length > 1024 * 1024) errBuf = '';
    });
    child.stdin!.on('error', () => { /* the close handler restarts */ });
    child.once('close', (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (this.closed) return;
      this.restarts++;
      this.opts.log('warn', 'nft exited; restarting', { code, signal });
      if (this.inFlight) {
        clearTimeout(this.inFlight.timer);
        this.queue.putBack(this.inFlight.items);
        this.inFlight = undefined;
      }
      setTimeout(() => {
        if (this.closed) return;
        // the kernel kept the sets: an add of an element still there keeps it as it is. Queued before
        // the child starts, so they are its first transaction and no no-op goes ahead of them (warm)
        for (const d of this.opts.active()) this.queue.push(setOf(d), d.target, 'add', d.untilMs, undefined, true);
        this.spawnChild();
      }, RESTART_BACKOFF_MS).unref();
    });
    this.warm();
  }

  /**
   * A child's first transaction costs 1–3 ms more than the next ones (nft's code paged in, its
   * netlink socket and cache set up): with nothing waiting, a no-op transaction (`add table` of the
   * table that exists) pays that before the first ban. With changes waiting they go first instead.
   */
  private warm(): void {
    const child = this.child;
    if (!child || this.inFlight || this.queue.size > 0) {
      this.onWarm?.(); // start() waits for the child to take changes, not for a no-op that is not sent
      return this.pump();
    }
    // `add table` of a table that exists changes nothing; it has no lines of ours, so an error of it
    // is matched to no change
    this.send([], [], `add table inet ${this.opts.table}`);
  }

  /** nft's stderr, line by line: errors of our lines (with their carets), and the ack's */
  private expectCaret: InFlight['failures'][number] | undefined;

  private onStderrLine(l: string): void {
    const f = this.inFlight;
    const caret = CARET.exec(l);
    if (caret) {
      if (this.expectCaret) {
        this.expectCaret.caretStart = l.indexOf('^');
        this.expectCaret.caretEnd = this.expectCaret.caretStart + caret[1].length;
      }
      this.expectCaret = undefined;
      return;
    }
    this.expectCaret = undefined;
    if (!f || l.startsWith('Error:')) return;
    if (l === f.ack) {
      this.acknowledged(f);
      return;
    }
    const line = f.lines.find((x) => x.text === l && !f.failures.some((y) => y.line === x));
    if (line) {
      const failure = { line };
      f.failures.push(failure);
      this.expectCaret = failure;
    }
  }

  private acknowledged(f: InFlight): void {
    clearTimeout(f.timer);
    this.inFlight = undefined;
    if (f.warm) {
      this.warmed++;
      this.onWarm?.();
    }
    const ackUs = this.opts.onTiming ? nowUs() : 0;
    const nowMs = Date.now();
    const refused = new Set<Pending>();
    const again = new Set<Pending>();
    const lines: NftLine[] = [];
    for (const { line, caretStart, caretEnd } of f.failures) {
      const r = afterFailure(line, caretStart, caretEnd);
      for (const e of r.refused) {
        if (line.kind !== 'add') continue; // the element is gone already, as wanted
        this.errors++;
        refused.add(e.item);
        this.opts.log('warn', 'nft refused an element', { set: line.set, target: e.item.target });
      }
      for (const group of r.retry) {
        for (const it of group) again.add(it);
        lines.push(...retryLines(this.opts.table, line.kind, line.set, group, nowMs));
      }
    }
    for (const it of f.items) {
      if (again.has(it)) continue; // resent: its time is its retry's
      this.opts.onTiming?.({ target: it.target, writtenUs: f.writtenUs, ackUs });
      for (const w of it.waiters) w(!refused.has(it));
    }
    if (lines.length > 0) {
      this.retries += lines.length;
      this.send(lines, [...again]);
    } else {
      this.pump();
    }
  }

  /** Resolves true once the kernel set holds the ban; false when nft or the full queue refused it (logged and counted). */
  ban(d: Decision, extend: boolean): Promise<boolean> {
    return this.enqueue(d, extend ? 'replace' : 'add');
  }

  unban(d: Decision): Promise<boolean> {
    return this.enqueue(d, 'del');
  }

  private enqueue(d: Decision, op: 'add' | 'replace' | 'del'): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const ok = this.queue.push(setOf(d), d.target, op, d.untilMs, resolve);
      if (!ok) this.opts.log('warn', 'nft queue full; change refused', { target: d.target, op, queueMax: this.opts.queueMax });
      this.pump();
    });
  }

  private pump(): void {
    if (this.inFlight || !this.child) return;
    if (this.childLines >= (this.opts.childLinesMax ?? limits.nftChildLinesMax)) return this.replaceChild();
    if (this.queue.size === 0) return;
    const items = this.queue.take(this.opts.batchMax * BATCH_LINES);
    this.send(buildLines(this.opts.table, items, Date.now(), this.opts.batchMax), items);
  }

  /**
   * nft -i (libedit) keeps every line it reads in its history, and each new line costs time in
   * proportion to the lines before it (≈ 40 µs a line over the first 4000, ≈ 150 µs over 32000):
   * a child is replaced by a fresh one between batches. The kernel keeps the sets, so nothing is
   * re-added; the old child exits at the end of its input, and its exit is not a restart.
   */
  private replaceChild(): void {
    const old = this.child!;
    this.child = undefined;
    this.replaced++;
    const kill = setTimeout(() => old.kill('SIGKILL'), 2000);
    kill.unref();
    old.once('close', () => clearTimeout(kill));
    old.stdin!.end();
    this.spawnChild();
  }

  /** `noop`: the warm-up's line instead of `lines` */
  private send(lines: NftLine[], items: Pending[], noop?: string): void {
    const child = this.child;
    if (!child) {
      this.queue.putBack(items);
      return;
    }
    const ack = `chicago-ack ${++this.ackSeq}`;
    const timer = setTimeout(() => {
      this.opts.log('error', 'nft did not acknowledge a batch; killing it', { ack: this.ackSeq });
      child.kill('SIGKILL');
    }, ACK_TIMEOUT_MS);
    timer.unref();
    this.inFlight = { ack, lines, items, failures: [], timer, writtenUs: 0, ...(noop !== undefined ? { warm: true } : {}) };
    const text = noop !== undefined ? [noop] : lines.map((l) => l.text);
    this.childLines += text.length + 1;
    child.stdin!.write([...text, ack].join('\n') + '\n');
    if (this.opts.onTiming) this.inFlight.writtenUs = nowUs();
  }

  get pid(): number | undefined { return this.child?.pid; }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.child;
    this.child = undefined;
    if (this.inFlight) clearTimeout(this.inFlight.timer);
    for (const it of [...(this.inFlight?.items ?? []), ...this.queue.take(Infinity)]) for (const w of it.waiters) w(false);
    if (c) {
      c.stdin!.end();
      const t = setTimeout(() => c.kill('SIGKILL'), 2000);
      await once(c, 'close').catch(() => undefined);
      clearTimeout(t);
    }
  }
}
