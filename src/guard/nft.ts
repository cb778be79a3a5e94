// nftables enforcement: one long-lived `nft -e -i` child fed one line per transaction. Bans go
// into sets with per-element timeouts (`flags timeout`), so the kernel lifts them by itself:
//   <table>.v4 / v6        single addresses (ipv4_addr / ipv6_addr)
//   <table>.v4net / v6net  prefix decisions (flags interval, timeout)
// A batch is every queued change, the adds of one set in one `add element` line, followed by an
// ack line (`add element … acks { N … }`); nft echoes each applied line (-e) and handles lines in
// order, so the echo of ack N means the batch before it is in the kernel. An `add` of an element
// already present is a no-op in nft 1.0 (it keeps its old timeout), so an extension is a
// `delete element` line (which may fail harmlessly if the element just expired) then the add.
// If the child dies it is restarted and every active decision is re-added.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { Decision } from './decisions.js';

export interface NftOptions {
  /** the nft program and any wrapper before it (e.g. ['ip', 'netns', 'exec', 'ns1', 'nft']) */
  command: string[];
  table: string;
  /** also install an input chain dropping what the sets hold */
  drop: boolean;
  /** elements per `add element` line */
  batchMax: number;
  /** the decisions in force, re-added after a restart of the child */
  active: () => Iterable<Decision>;
  log: (level: 'info' | 'warn' | 'error', msg: string, extra?: object) => void;
}

type Op = { kind: 'add'; d: Decision; extend: boolean } | { kind: 'del'; d: Decision };

const RESTART_BACKOFF_MS = 200;
/** a batch not acknowledged within this long means the child is stuck: it is killed and restarted */
const ACK_TIMEOUT_MS = 10_000;

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
    `add set ${t} acks { type mark; flags timeout; }`,
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

export class NftEnforcer {
  private child: ChildProcess | undefined;
  private queue: Op[] = [];
  private queueWaiters: Array<() => void> = [];
  private inFlight: { ack: number; waiters: Array<() => void>; ops: Op[]; timer: NodeJS.Timeout } | undefined;
  private ackSeq = 0;
  private stdoutBuf = '';
  private closed = false;
  restarts = 0;
  errors = 0;

  constructor(private readonly opts: NftOptions) {}

  async start(): Promise<void> {
    const [cmd, ...args] = this.opts.command;
    const p = spawn(cmd, [...args, '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr!.setEncoding('utf8').on('data', (c: string) => { err += c; });
    p.stdin!.end(tableScript(this.opts.table, this.opts.drop));
    const [code] = (await once(p, 'close')) as [number | null];
    if (code !== 0) throw new Error(`nft: setting up table ${this.opts.table} failed (${code}): ${err.trim()}`);
    this.spawnChild();
  }

  private spawnChild(): void {
    const [cmd, ...args] = this.opts.command;
    const child = spawn(cmd, [...args, '-e', '-i'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.stdoutBuf = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => this.onStdout(c));
    let errBuf = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      // nft prints `Error: …`, then the failed command, then a marker line. A failed `delete element`
      // (the element had just expired) is expected; a failed add is not.
      errBuf += c;
      let nl: number;
      while ((nl = errBuf.indexOf('\n')) >= 0) {
        const l = errBuf.slice(0, nl);
        errBuf = errBuf.slice(nl + 1);
        if (l.startsWith('add ') || l.startsWith('flush ')) {
          this.errors++;
          this.opts.log('warn', 'nft refused a command', { command: l.slice(0, 300) });
        }
      }
      if (errBuf.length > 64 * 1024) errBuf = '';
    });
    child.stdin!.on('error', () => { /* the close handler restarts */ });
    child.once('close', (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      if (this.closed) return;
      this.restarts++;
      this.opts.log('warn', 'nft exited; restarting', { code, signal });
      // the unacknowledged batch goes back to the front; everything active is re-added
      if (this.inFlight) {
        clearTimeout(this.inFlight.timer);
        this.queue.unshift(...this.inFlight.ops);
        this.queueWaiters.unshift(...this.inFlight.waiters);
        this.inFlight = undefined;
      }
      setTimeout(() => {
        if (this.closed) return;
        this.spawnChild();
        for (const d of this.opts.active()) this.queue.push({ kind: 'add', d, extend: true });
        this.pump();
      }, RESTART_BACKOFF_MS).unref();
    });
    this.pump();
  }

  private onStdout(chunk: string): void {
    this.stdoutBuf += chunk;
    let nl: number;
    while ((nl = this.stdoutBuf.indexOf('\n')) >= 0) {
      const line = this.stdoutBuf.slice(0, nl);
      this.stdoutBuf = this.stdoutBuf.slice(nl + 1);
      const m = / acks \{ (0x[0-9a-f]+|\d+) /.exec(line); // nft echoes marks in hex
      if (m && this.inFlight && Number(m[1]) === this.inFlight.ack) {
        const f = this.inFlight;
        clearTimeout(f.timer);
        this.inFlight = undefined;
        for (const w of f.waiters) w();
        this.pump();
      }
    }
  }

  /** Resolves once the kernel set holds the ban (or has dropped the element). */
  ban(d: Decision, extend: boolean): Promise<void> {
    return this.enqueue({ kind: 'add', d, extend });
  }

  unban(d: Decision): Promise<void> {
    return this.enqueue({ kind: 'del', d });
  }

  private enqueue(op: Op): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.queue.push(op);
      this.queueWaiters.push(resolve);
      this.pump();
    });
  }

  private pump(): void {
    if (this.inFlight || !this.child || this.queue.length === 0) return;
    const ops = this.queue;
    const waiters = this.queueWaiters;
    this.queue = [];
    this.queueWaiters = [];
    const t = `inet ${this.opts.table}`;
    const nowMs = Date.now();
    const lines: string[] = [];
    const adds = new Map<string, string[]>();
    for (const op of ops) {
      const set = setOf(op.d);
      if (op.kind === 'del' || op.extend) lines.push(`delete element ${t} ${set} { ${op.d.target} }`);
      if (op.kind === 'add') {
        const secs = Math.ceil((op.d.untilMs - nowMs) / 1000);
        if (secs < 1) continue;
        let list = adds.get(set);
        if (!list) adds.set(set, (list = []));
        list.push(`${op.d.target} timeout ${secs}s`);
      }
    }
    for (const [set, list] of adds) {
      for (let i = 0; i < list.length; i += this.opts.batchMax) lines.push(`add element ${t} ${set} { ${list.slice(i, i + this.opts.batchMax).join(', ')} }`);
    }
    const ack = ++this.ackSeq;
    lines.push(`add element ${t} acks { ${ack} timeout 10s }`);
    const child = this.child;
    const timer = setTimeout(() => {
      this.opts.log('error', 'nft did not acknowledge a batch; killing it', { ack });
      child.kill('SIGKILL');
    }, ACK_TIMEOUT_MS);
    timer.unref();
    this.inFlight = { ack, waiters, ops, timer };
    child.stdin!.write(lines.join('\n') + '\n');
  }

  get pid(): number | undefined { return this.child?.pid; }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.child;
    this.child = undefined;
    if (this.inFlight) clearTimeout(this.inFlight.timer);
    for (const w of [...(this.inFlight?.waiters ?? []), ...this.queueWaiters]) w();
    if (c) {
      c.stdin!.end();
      const t = setTimeout(() => c.kill('SIGKILL'), 2000);
      await once(c, 'close').catch(() => undefined);
      clearTimeout(t);
    }
  }
}
