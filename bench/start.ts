// What a node's start costs: `chicago server` started through bin/chicago.js as users start it (its
// malloc settings and semi-space), N times one after the other, each on a fresh data dir (or with
// --same-dir on one dir: a restart). Per start: wall time from spawn to the "serving" log line, CPU
// of the whole process (all threads, /proc/PID/stat) then and 1 s later, the main thread's share,
// RSS. With --etcd each start is a cluster node against its own fresh private etcd (the etcd's
// CPU is not counted).
//
//   node dist/bench/start.js [--runs 10] [--etcd] [--same-dir] [--settle-ms 1000] [--json FILE]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { etcdBinary, freePort } from './cluster.js';
import { atExit, machineInfo, readProc, readThreadStats, repoRoot, round1, spawnLogged, waitFor, type LoggedProc } from './proc.js';

const START_TIMEOUT_MS = 60_000;

interface StartRun {
  /** spawn → the "serving" log line */
  wallMs: number;
  /** CPU seconds of all threads at "serving", and `settleMs` later */
  cpuAtServingS: number;
  cpuSettledS: number;
  /** of cpuSettledS: the main thread's (the gateway) */
  mainSettledS: number;
  rssMB: number;
  threads: number;
  load1: number;
}

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    etcd: { type: 'boolean', default: false },
    'same-dir': { type: 'boolean', default: false },
    'settle-ms': { type: 'string', default: '1000' },
    json: { type: 'string' },
  },
});
const runs = Number(values.runs);
const settleMs = Number(values['settle-ms']);
if (!Number.isInteger(runs) || runs < 1 || runs > 200) throw new Error('--runs: 1..200');
if (values.etcd && values['same-dir']) throw new Error('--same-dir restarts a single node (a fresh etcd per start would not know the dir\'s cluster)');
if (!Number.isFinite(settleMs) || settleMs < 0 || settleMs > 60_000) throw new Error('--settle-ms: 0..60000');

const root = mkdtempSync(join(tmpdir(), 'chicago-bench-start-'));
const unhookRoot = atExit(() => rmSync(root, { recursive: true, force: true }));
const log = (s: string): void => void process.stderr.write(`[start] ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A fresh single-member etcd on free loopback ports; its URL. */
async function startEtcd(dir: string): Promise<{ url: string; proc: LoggedProc }> {
  const client = await freePort();
  const peer = await freePort();
  const url = `http://127.0.0.1:${client}`;
  const proc = spawnLogged(etcdBinary(log), [
    '--name', 'start', '--data-dir', dir,
    '--listen-client-urls', url, '--advertise-client-urls', url,
    '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
    '--initial-cluster', `start=http://127.0.0.1:${peer}`, '--initial-cluster-state', 'new',
    '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
  ], 'etcd', { graceMs: 5_000 });
  const healthy = async () => {
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
      return res.ok && ((await res.json()) as { health?: string }).health === 'true';
    } catch {
      return false;
    }
  };
  await waitFor('etcd /health', healthy, 20_000, () => proc.out.slice(-10).join('\n'), 50);
  return { url, proc };
}

async function oneStart(i: number, dataDir: string): Promise<StartRun> {
  const etcd = values.etcd ? await startEtcd(join(root, `etcd-${i}`)) : undefined;
  const bin = join(repoRoot(), 'bin', 'chicago.js');
  const args = ['server', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, ...(etcd ? ['--etcd', etcd.url, '--node-id', 'n1'] : [])];
  const load1 = round1(loadavg()[0] ?? 0);
  const t0 = performance.now();
  // bin/chicago.js execs the `node` on PATH: this one first
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
  const node = spawnLogged(bin, args, 'node', { env, graceMs: 10_000 });
  try {
    let servedAt = 0;
    let cpuAtServingS = 0;
    node.child.stdout!.on('data', (c: Buffer) => {
      if (servedAt !== 0 || !c.includes('"msg":"serving"')) return;
      servedAt = performance.now();
      cpuAtServingS = readProc(node.pid)?.cpuS ?? NaN;
    });
    await waitFor('"serving"', () => servedAt !== 0 || node.child.exitCode !== null, START_TIMEOUT_MS, () => node.out.slice(-15).join('\n'), 5);
    if (servedAt === 0) throw new Error(`the node exited before serving:\n${node.out.slice(-15).join('\n')}`);
    await sleep(settleMs);
    const settled = readProc(node.pid);
    const main = readThreadStats(node.pid).get(node.pid);
    if (!settled || !main) throw new Error(`the node exited within ${settleMs} ms of serving:\n${node.out.slice(-15).join('\n')}`);
    return {
      wallMs: Math.round(servedAt - t0),
      cpuAtServingS: round3(cpuAtServingS),
      cpuSettledS: round3(settled.cpuS),
      mainSettledS: round3(main.cpuS),
      rssMB: round1(settled.rssMB),
      threads: settled.threads,
      load1,
    };
  } finally {
    await node.stop();
    await etcd?.proc.stop();
  }
}

const round3 = (x: number): number => Math.round(x * 1000) / 1000;

function stats(xs: number[]): { median: number; min: number; max: number; mean: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median: round3(median), min: round3(s[0]), max: round3(s[s.length - 1]), mean: round3(s.reduce((a, b) => a + b, 0) / s.length) };
}

const results: StartRun[] = [];
const sameDir = join(root, 'data');
for (let i = 0; i < runs; i++) {
  const dataDir = values['same-dir'] ? sameDir : join(root, `data-${i}`);
  const r = await oneStart(i, dataDir);
  results.push(r);
  log(`run ${i + 1}/${runs}: serving after ${r.wallMs} ms, CPU ${r.cpuAtServingS} s then, ${r.cpuSettledS} s ${settleMs} ms later (main ${r.mainSettledS} s), RSS ${r.rssMB} MB, load ${r.load1}`);
  if (!values['same-dir']) rmSync(dataDir, { recursive: true, force: true });
}
rmSync(root, { recursive: true, force: true });
unhookRoot();

const out = {
  bench: 'start',
  mode: values.etcd ? 'cluster node (--etcd, fresh etcd per start)' : 'single node',
  dataDir: values['same-dir'] ? 'one dir for every start (restarts)' : 'fresh per start',
  settleMs,
  machine: machineInfo(),
  summary: {
    wallMs: stats(results.map((r) => r.wallMs)),
    cpuAtServingS: stats(results.map((r) => r.cpuAtServingS)),
    cpuSettledS: stats(results.map((r) => r.cpuSettledS)),
    mainSettledS: stats(results.map((r) => r.mainSettledS)),
    rssMB: stats(results.map((r) => r.rssMB)),
  },
  runs: results,
};
const text = JSON.stringify(out, null, 2);
if (values.json) writeFileSync(values.json, text + '\n');
process.stdout.write(text + '\n');
