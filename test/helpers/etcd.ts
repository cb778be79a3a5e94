// A private etcd per test file: free loopback ports, a temp data dir, real signals for faults.
// The binary is Debian's etcd-server; on a fresh machine scripts/etcd.sh installs it.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, killOnExit, OutputRing, repoRoot } from './launcher.js';
import { slow } from './slow.js';
import { Agent } from 'undici';

const READY_TIMEOUT_MS = slow(15_000);
const STOP_TIMEOUT_MS = slow(5_000);
const HEALTH_POLL_MS = 50;
const INSTALL_TIMEOUT_MS = slow(300_000);
const HOST = '127.0.0.1';

export interface EtcdServer {
  /** client URLs for Coordination */
  endpoints: string[];
  dataDir: string;
  /** the process's recent output, for failure messages */
  output: OutputRing;
  pid(): number | undefined;
  /** SIGTERM (SIGKILL after 5 s), then removes the data dir */
  stop(): Promise<void>;
  /** SIGKILL; the data dir stays, so restart() comes back with the same state */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: a GC pause or a hung host */
  pause(): void;
  resume(): void;
}

function findEtcd(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const p = path.join(dir, 'etcd');
    if (dir && existsSync(p)) return p;
  }
  return existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : undefined;
}

/**
 * The binary, installed through scripts/etcd.sh (which knows the package and the locking) if missing.
 * Asynchronously: an apt install can take minutes, and a test worker must keep its event loop free.
 */
async function etcdBinary(): Promise<string> {
  const found = findEtcd();
  if (found) return found;
  // etcd.sh installs as part of `up`; start and stop one on a throwaway port.
  const port = '23790';
  const script = path.join(repoRoot, 'scripts/etcd.sh');
  const run = promisify(execFile);
  await run('bash', [script, 'up', '--port', port, '--fresh'], { timeout: INSTALL_TIMEOUT_MS });
  await run('bash', [script, 'down', '--port', port], { timeout: INSTALL_TIMEOUT_MS });
  const installed = findEtcd();
  if (!installed) throw new Error('etcd: not found after scripts/etcd.sh installed etcd-server');
  return installed;
}

async function healthy(url: string, agent?: Agent): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(slow(1_000)), ...({ dispatcher: agent } as RequestInit) });
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { child.off('exit', done); resolve(false); }, timeoutMs);
    const done = () => { clearTimeout(timer); resolve(true); };
    child.once('exit', done);
  });
}

/** `tls`: serve https:// and require client certificates the CA signed (etcd's own TLS flags) */
export async function startEtcd(opts: { name?: string; tls?: { certFile: string; keyFile: string; caFile: string } } = {}): Promise<EtcdServer> {
  const tls = opts.tls;
  const agent = tls ? new Agent({ connect: { ca: readFileSync(tls.caFile), cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) } }) : undefined;
  const bin = await etcdBinary();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'chicago-etcd-'));
  const name = opts.name ?? 'chicago-test';
  const output = new OutputRing(256 * 1024);
  let clientPort = 0;
  let child: ChildProcess | undefined;

  const launch = async (): Promise<void> => {
    const peerPort = await freePort(HOST);
    const client = `${tls ? 'https' : 'http'}://${HOST}:${clientPort}`;
    const peer = `http://${HOST}:${peerPort}`;
    const proc = spawn(bin, [
      '--name', name, '--data-dir', path.join(dataDir, 'data'),
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `${name}=${peer}`, '--initial-cluster-state', 'new',
      '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
      ...(tls ? ['--cert-file', tls.certFile, '--key-file', tls.keyFile, '--trusted-ca-file', tls.caFile, '--client-cert-auth'] : []),
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    killOnExit(proc);
    proc.stdout!.setEncoding('utf8').on('data', (c: string) => output.feed(c));
    proc.stderr!.setEncoding('utf8').on('data', (c: string) => output.feed(c));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await healthy(client, agent))) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`etcd exited during start (${proc.exitCode ?? proc.signalCode}):\n${output.tail()}`);
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`etcd not healthy after ${READY_TIMEOUT_MS} ms:\n${output.tail()}`);
      }
      await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
    }
  };

  // A port picked free can be taken before etcd binds it; try a few.
  for (let attempt = 1; ; attempt++) {
    clientPort = await freePort(HOST);
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test(output.text())) {
        await rm(dataDir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const signal = (sig: NodeJS.Signals) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) throw new Error(`etcd: ${sig} to a stopped etcd`);
    child.kill(sig);
  };
  const kill = async () => {
    if (!child) return;
    child.kill('SIGCONT'); // a stopped process only dies once it runs again
    child.kill('SIGKILL');
    if (!(await exited(child, STOP_TIMEOUT_MS))) throw new Error('etcd: did not die on SIGKILL');
  };

  return {
    endpoints: [`${tls ? 'https' : 'http'}://${HOST}:${clientPort}`],
    dataDir,
    output,
    pid: () => child?.pid,
    async stop() {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGCONT');
        child.kill('SIGTERM');
        if (!(await exited(child, STOP_TIMEOUT_MS))) await kill();
      }
      await rm(dataDir, { recursive: true, force: true });
    },
    kill,
    async restart() {
      await kill();
      await launch();
    },
    pause: () => {
      signal('SIGSTOP');
      // The stop reaches every thread of etcd a moment later; a call sent before then is answered.
      const deadline = Date.now() + slow(1_000);
      const stopped = () => readdirSync(`/proc/${child!.pid}/task`).every((t) => /^\S+ \(.*\) [Tt] /.test(readFileSync(`/proc/${child!.pid}/task/${t}/stat`, 'utf8')));
      while (!stopped()) {
        if (Date.now() > deadline) throw new Error(`etcd: not stopped ${slow(1_000)} ms after SIGSTOP`);
      }
    },
    resume: () => signal('SIGCONT'),
  };
}
