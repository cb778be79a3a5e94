// Real chicago node processes and CLI runs for tests. Needs `npm run build` first (npm test's
// pretest does it): the node and CLI run from dist/, as users run them.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { killOnExit } from './children.js';
import { slow } from './slow.js';
import { caDispatcher } from '../../src/client/tls.js';

export { killOnExit };

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(repoRoot, 'dist/src/cli/main.js');
/** the installed `chicago` program: nodes start through it, as users start them (it sets glibc's malloc settings) */
export const binPath = path.join(repoRoot, 'bin/chicago.js');

const START_TIMEOUT_MS = slow(30_000);
const STOP_TIMEOUT_MS = slow(10_000);
const HEALTH_POLL_MS = 50;
const CLI_TIMEOUT_MS = slow(30_000);
/** each captured stream keeps at most this much of its newest output */
const CAPTURE_CHARS_MAX = 1024 * 1024;

export interface Exit { code: number | null; signal: NodeJS.Signals | null }

/** The newest lines of a stream, bounded; tests can wait for a line to appear. */
export class OutputRing {
  private readonly buf: string[] = [];
  private chars = 0;
  private partial = '';
  /** the stream ended without a final newline; text() must not invent one */
  private unterminated = false;
  private readonly waiters = new Set<(line: string) => void>();

  constructor(private readonly maxChars = CAPTURE_CHARS_MAX) {}

  /** Feeds raw text; complete lines become visible. */
  feed(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop()!;
    for (const line of parts) this.push(line);
  }

  /** The unterminated last line, once the stream has ended. */
  end(): void {
    if (!this.partial) return;
    this.push(this.partial);
    this.partial = '';
    this.unterminated = true;
  }

  private push(line: string): void {
    this.buf.push(line);
    this.chars += line.length + 1;
    while (this.chars > this.maxChars && this.buf.length > 1) this.chars -= this.buf.shift()!.length + 1;
    for (const w of this.waiters) w(line);
  }

  lines(): string[] { return [...this.buf]; }
  text(): string {
    const all = this.buf.map((l) => l + '\n').join('') + this.partial;
    return this.unterminated ? all.slice(0, -1) : all;
  }
  tail(n = 30): string { return this.buf.slice(-n).join('\n'); }

  /** The first line (already seen or still to come) that `match` accepts, within `idleMs` scaled by the test slowdown. */
  waitFor(match: RegExp | ((line: string) => boolean), idleMs: number): Promise<string> {
    return this.waitBefore(match, Date.now() + slow(idleMs));
  }

  /** The first line that `match` accepts, before the absolute time `deadline` (ms since the epoch). */
  waitBefore(match: RegExp | ((line: string) => boolean), deadline: number): Promise<string> {
    const timeoutMs = Math.max(0, deadline - Date.now());
    const ok = typeof match === 'function' ? match : (l: string) => match.test(l);
    const seen = this.buf.find(ok);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = (line: string) => {
        if (!ok(line)) return;
        cleanup();
        resolve(line);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no line matching ${String(match)} within ${timeoutMs} ms; last lines:\n${this.tail()}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
    });
  }
}

/**
 * A spawned child whose output is captured and whose end is a promise (after stdio closed). With
 * `program`, args[0] is run as a program (bin/chicago.js execs the `node` on PATH: this one first).
 */
function launch(args: string[], env: Record<string, string> | undefined, stdin: 'pipe' | 'ignore', program = false) {
  const [file, argv] = program ? [args[0], args.slice(1)] : [process.execPath, args];
  const proc = spawn(file, argv, {
    cwd: repoRoot,
    env: { ...process.env, ...(program ? { PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}` } : {}), ...env },
    stdio: [stdin, 'pipe', 'pipe'],
  });
  const stdout = new OutputRing();
  const stderr = new OutputRing();
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => stdout.feed(c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => stderr.feed(c));
  const exited = new Promise<Exit>((resolve) => {
    proc.once('close', (code, signal) => {
      stdout.end();
      stderr.end();
      resolve({ code, signal });
    });
  });
  // A spawn failure (ENOENT, EMFILE) ends as an exit with no code; the error is in stderr.
  proc.once('error', (err) => stderr.feed(`spawn failed: ${err.message}\n`));
  // a test that fails half-way must not leave nodes running behind it
  killOnExit(proc);
  return { proc, stdout, stderr, exited };
}

export interface StartOptions {
  /** an existing data dir; default a fresh temp dir */
  dataDir?: string;
  /** extra `chicago server` flags; later flags override the launcher's */
  args?: string[];
  env?: Record<string, string>;
  nodeId?: string;
  /** default 0: the node picks a free port */
  port?: number;
  /** listen address, default 127.0.0.1; cluster tests give each node its own 127.0.0.N */
  host?: string;
  /** keep the data dir after stop; default false for a fresh temp dir, true for a given one */
  keepData?: boolean;
  startTimeoutMs?: number;
  /** PEM of the CA that signed the node's certificate, when it serves HTTPS */
  ca?: string;
}

export interface NodeHandle {
  url: string;
  port: number;
  dataDir: string;
  pid: number;
  proc: ChildProcess;
  stdout: OutputRing;
  stderr: OutputRing;
  exited: Promise<Exit>;
  /** signal the node (SIGKILL by default: a crash) and wait for it to end; the data dir stays */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
  /** SIGTERM, SIGKILL after a deadline; then removes the data dir unless keepData */
  stop(): Promise<Exit>;
  /** a new node on the same data dir and, if it is still free, the same port */
  restart(): Promise<NodeHandle>;
}

export async function startNode(opts: StartOptions = {}): Promise<NodeHandle> {
  if (!opts.port) {
    // another process may take the port between the probe and the node's listen: try again
    for (let attempt = 1; ; attempt++) {
      try {
        // a port given explicitly, not `--port 0`: uWS sets SO_REUSEADDR only on an explicit port, and
        // without it a node killed with clients connected could not listen on its port again until
        // their TIME_WAITs end (60 s) — a restart must keep its URL
        const host = opts.host ?? '127.0.0.1';
        return await startNode({ ...opts, port: await freePort(host.includes(':') ? host : '127.0.0.1') });
      } catch (err) {
        if (attempt >= 3 || !/exited before serving \(code 69,/.test((err as Error).message)) throw err;
      }
    }
  }
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run \`npm run build\` first`);
  const keepData = opts.keepData ?? opts.dataDir !== undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(os.tmpdir(), 'chicago-node-')));
  const args = [
    binPath, 'server', '--port', String(opts.port ?? 0), '--host', opts.host ?? '127.0.0.1', '--data-dir', dataDir,
    ...(opts.nodeId ? ['--node-id', opts.nodeId] : []),
    ...(opts.args ?? []),
  ];
  const child = launch(args, opts.env, 'ignore', true);
  const deadline = Date.now() + (opts.startTimeoutMs !== undefined ? slow(opts.startTimeoutMs) : START_TIMEOUT_MS);
  const failed = (why: string) =>
    new Error(
      `chicago node (pid ${child.proc.pid}, data ${dataDir}) ${why}\n` +
        `--- stderr (tail)\n${child.stderr.tail()}\n--- stdout (tail)\n${child.stdout.tail()}`,
    );

  let url: string;
  try {
    // The node logs {"msg":"serving","url":…} once it listens; that line also tells the port.
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout.waitBefore((l) => servingUrl(l) !== undefined, deadline).then(resolve, reject);
      // Whichever settles first wins; the later call is a no-op, so nothing is left unhandled.
      void child.exited.then((e) => reject(failed(`exited before serving (code ${e.code}, signal ${e.signal})`)));
    });
    url = servingUrl(line)!;
    await waitHealthy(url, deadline, child.exited, failed, opts.ca);
  } catch (err) {
    child.proc.kill('SIGKILL');
    await child.exited;
    // Only a dir this call created goes: a failed restart attempt must not delete the node's data.
    if (!keepData && opts.dataDir === undefined) await rm(dataDir, { recursive: true, force: true });
    throw (err as Error).message.startsWith('chicago node') ? err : failed((err as Error).message);
  }

  const port = Number(new URL(url).port);
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill(signal);
    return child.exited;
  };
  const shutdown = async (removeData: boolean): Promise<Exit> => {
    const timer = setTimeout(() => child.proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
    const exit = await kill('SIGTERM');
    clearTimeout(timer);
    if (removeData) await rm(dataDir, { recursive: true, force: true });
    return exit;
  };
  return {
    url,
    port,
    dataDir,
    pid: child.proc.pid!,
    proc: child.proc,
    stdout: child.stdout,
    stderr: child.stderr,
    exited: child.exited,
    kill,
    stop: () => shutdown(!keepData),
    async restart() {
      await shutdown(false);
      // The new handle inherits the dir and whether to remove it on stop.
      const again = { ...opts, dataDir, keepData };
      try {
        return await startNode({ ...again, port });
      } catch (err) {
        process.stderr.write(`restart on port ${port} failed, trying another: ${(err as Error).message.split('\n')[0]}\n`);
        return startNode({ ...again, port: 0 });
      }
    },
  };
}

function servingUrl(line: string): string | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const rec = JSON.parse(line) as { msg?: unknown; url?: unknown };
    return rec.msg === 'serving' && typeof rec.url === 'string' ? rec.url : undefined;
  } catch {
    return undefined;
  }
}

async function waitHealthy(url: string, deadline: number, exited: Promise<Exit>, failed: (why: string) => Error, ca?: string) {
  let gone = false;
  void exited.then(() => (gone = true));
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (gone) throw failed('exited while waiting for /v1/health');
    try {
      const res = await fetch(`${url}/v1/health`, { signal: AbortSignal.timeout(Math.max(1, Math.min(2000, deadline - Date.now()))), ...({ dispatcher: caDispatcher(ca) } as RequestInit) });
      if (res.status === 200) return;
      last = `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
  }
  throw failed(`was not healthy in time (last: ${last})`);
}

export interface CliResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
export interface CliOptions { input?: string | Uint8Array; env?: Record<string, string>; timeoutMs?: number }

export interface CliRun {
  proc: ChildProcess;
  stdout: OutputRing;
  stderr: OutputRing;
  /** settles when the CLI ends; rejects when it outlives its timeout (then it is killed) */
  done: Promise<CliResult>;
}

/** Starts `chicago ARGS…` without waiting: for `tail --follow` and other long runs. */
export function spawnCli(args: string[], opts: CliOptions = {}): CliRun {
  const child = launch([cliPath, ...args], opts.env, opts.input === undefined ? 'ignore' : 'pipe');
  if (opts.input !== undefined) {
    // a command may stop reading before the input ends (a refused line): the rest goes nowhere
    child.proc.stdin!.on('error', (err: NodeJS.ErrnoException) => { if (err.code !== 'EPIPE') throw err; });
    child.proc.stdin!.end(opts.input);
  }
  const timeoutMs = opts.timeoutMs !== undefined ? slow(opts.timeoutMs) : CLI_TIMEOUT_MS;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.proc.kill('SIGKILL');
  }, timeoutMs);
  const done = child.exited.then(({ code, signal }) => {
    clearTimeout(timer);
    const result = { code, signal, stdout: child.stdout.text(), stderr: child.stderr.text() };
    if (timedOut) {
      throw new Error(`chicago ${args.join(' ')} ran over ${timeoutMs} ms\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`);
    }
    return result;
  });
  return { proc: child.proc, stdout: child.stdout, stderr: child.stderr, done };
}

/** Runs `chicago ARGS…` to its end. */
export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return spawnCli(args, opts).done;
}

/** A port nothing listens on right now (the kernel's pick), for a process the test starts. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject).listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
