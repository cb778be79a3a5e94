// A private Chicago cluster for the cluster benchmarks: one etcd (Debian's `etcd`, installed by
// scripts/etcd.sh when missing) on free loopback ports, and N `chicago server --etcd …` nodes, node
// nK on 127.0.0.(K+1) with its own free port and temp data dir. Faults and membership changes the
// benchmarks need: kill -9 and restart (same id, port and data), join (a new node), graceful leave
// (SIGTERM). `waitReady` polls GET /v1/status on every node until every partition has a live leader
// and its in-sync set equals its replica set of N live nodes, and all nodes agree.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { serverSemiSpaceMb } from '../src/runtime/young-gc.js';
import { repoRoot } from './proc.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface PartitionView {
  id: number;
  epoch: number;
  leader: string | null;
  replicas: string[];
  isr: string[];
}

export interface ClusterView {
  nodes: Array<{ id: string; url: string; state: string }>;
  partitions: PartitionView[];
  /** partitions this node reports moving (GET /v1/status → rebalance.moving) */
  moving: number;
}

export interface BenchNode {
  id: string;
  host: string;
  port: number;
  url: string;
  dataDir: string;
  proc: ChildProcess;
  pid: number;
  state: 'running' | 'killed' | 'removed';
  /** last lines of its output, for error messages */
  tail: string[];
}

export interface ClusterOptions {
  nodes: number;
  /** N: replicas per partition (CHICAGO_DEFAULTS_REPLICAS); default the node's own default (3) */
  replicas?: number;
  /** cluster partitions (CHICAGO_PARTITIONS); default the node's own default */
  partitions?: number;
  /** worker threads per node (CHICAGO_WORKERS); default the node's own default */
  workers?: number;
  env?: Record<string, string>;
  /** extra `chicago server` flags for every node */
  serverArgs?: string[];
  /** extra node (V8) flags, e.g. --cpu-prof --cpu-prof-dir DIR */
  nodeArgs?: string[];
  log?: (s: string) => void;
}

// ---- ports and processes -----------------------------------------------------------------------

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function findEtcd(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, 'etcd');
    if (dir && existsSync(p)) return p;
  }
  return existsSync('/usr/bin/etcd') ? '/usr/bin/etcd' : undefined;
}

/** The etcd binary; scripts/etcd.sh installs Debian's etcd-server (with its apt lock) when missing. */
export function etcdBinary(log: (s: string) => void): string {
  const found = findEtcd();
  if (found) return found;
  log('etcd missing: installing it through scripts/etcd.sh');
  const script = join(repoRoot(), 'scripts', 'etcd.sh');
  const port = '23797';
  execFileSync('bash', [script, 'up', '--port', port, '--fresh'], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 });
  execFileSync('bash', [script, 'down', '--port', port], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000 });
  const installed = findEtcd();
  if (!installed) throw new Error('etcd not found after scripts/etcd.sh installed etcd-server');
  return installed;
}

function captureTail(proc: ChildProcess, tail: string[], onLine?: (l: string) => void): void {
  const feed = (chunk: string, state: { buf: string }): void => {
    state.buf += chunk;
    let nl: number;
    while ((nl = state.buf.indexOf('\n')) >= 0) {
      const line = state.buf.slice(0, nl);
      state.buf = state.buf.slice(nl + 1);
      tail.push(line.length > 400 ? `${line.slice(0, 400)}…` : line);
      if (tail.length > 40) tail.shift();
      onLine?.(line);
    }
    if (state.buf.length > 1 << 20) state.buf = state.buf.slice(-4096);
  };
  const out = { buf: '' };
  const err = { buf: '' };
  proc.stdout?.setEncoding('utf8').on('data', (c: string) => feed(c, out));
  proc.stderr?.setEncoding('utf8').on('data', (c: string) => feed(c, err));
}

function exited(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((r) => proc.once('exit', () => r()));
}

async function fetchJson(url: string, timeoutMs = 2000): Promise<any> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status} ${text.slice(0, 200)}`);
  return JSON.parse(text);
}

async function fetchText(url: string, timeoutMs = 2000): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}`);
  return text;
}

/** Sum of one metric's samples (all label sets) in Prometheus text; undefined when absent. */
export function metricValue(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const v = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(v)) sum = (sum ?? 0) + v;
  }
  return sum;
}

// ---- the cluster ---------------------------------------------------------------------------------

export class BenchCluster {
  readonly nodes: BenchNode[] = [];
  private etcdProc?: ChildProcess;
  private readonly etcdTail: string[] = [];
  etcdUrl = '';
  private nextIndex = 1;
  private readonly root: string;
  private readonly log: (s: string) => void;
  /** last seen value of a metric per node (a leaving node's counters survive its exit) */
  private readonly lastMetric = new Map<string, number>();

  private constructor(readonly opts: ClusterOptions) {
    this.root = mkdtempSync(join(tmpdir(), 'chicago-bench-cluster-'));
    this.log = opts.log ?? ((s) => process.stderr.write(`[cluster] ${s}\n`));
    live.add(this);
  }

  /** SIGKILL every process of this cluster now (synchronous: for exit and signal handlers). */
  killAllSync(): void {
    for (const n of this.nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGKILL');
    if (this.etcdProc && this.etcdProc.exitCode === null) this.etcdProc.kill('SIGKILL');
    try {
      rmSync(this.root, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }

  /** etcd plus `opts.nodes` nodes, ready (see waitReady). */
  static async start(opts: ClusterOptions): Promise<BenchCluster> {
    const c = new BenchCluster(opts);
    try {
      await c.startEtcd();
      // the first node creates the cluster record in etcd; the others join it
      await c.addNode();
      await Promise.all(Array.from({ length: opts.nodes - 1 }, () => c.addNode()));
      await c.waitReady(120_000);
    } catch (e) {
      const logs = c.nodes.map((n) => `--- ${n.id}\n${n.tail.slice(-10).join('\n')}`).join('\n');
      await c.stop();
      throw new Error(`cluster did not start: ${(e as Error).message}\n${logs}`);
    }
    return c;
  }

  private async startEtcd(): Promise<void> {
    const bin = etcdBinary(this.log);
    for (let attempt = 1; ; attempt++) {
      const client = await freePort();
      const peer = await freePort();
      const dir = join(this.root, 'etcd');
      rmSync(dir, { recursive: true, force: true });
      const url = `http://127.0.0.1:${client}`;
      const proc = spawn(
        bin,
        [
          '--name', 'bench', '--data-dir', dir,
          '--listen-client-urls', url, '--advertise-client-urls', url,
          '--listen-peer-urls', `http://127.0.0.1:${peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peer}`,
          '--initial-cluster', `bench=http://127.0.0.1:${peer}`, '--initial-cluster-state', 'new',
          '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      captureTail(proc, this.etcdTail);
      this.etcdProc = proc;
      const deadline = Date.now() + 20_000;
      for (;;) {
        try {
          const h = await fetchJson(`${url}/health`, 1000);
          if (h.health === 'true') {
            this.etcdUrl = url;
            return;
          }
        } catch {
          // not yet
        }
        if (proc.exitCode !== null || Date.now() > deadline) break;
        await sleep(50);
      }
      proc.kill('SIGKILL');
      await exited(proc);
      if (attempt >= 3) throw new Error(`etcd did not start:\n${this.etcdTail.join('\n')}`);
    }
  }

  private env(): Record<string, string> {
    const o = this.opts;
    return {
      ...(o.partitions ? { CHICAGO_PARTITIONS: String(o.partitions) } : {}),
      ...(o.replicas ? { CHICAGO_DEFAULTS_REPLICAS: String(o.replicas) } : {}),
      ...(o.workers ? { CHICAGO_WORKERS: String(o.workers) } : {}),
      ...(o.env ?? {}),
    };
  }

  private async launch(n: Omit<BenchNode, 'proc' | 'pid' | 'state' | 'url' | 'tail'>): Promise<BenchNode> {
    const main = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
    if (!existsSync(main)) throw new Error(`${main} is missing: run \`npm run build\` first`);
    const args = [
      ...(this.opts.nodeArgs ?? []),
      // the main thread's semi-space as bin/chicago.js gives `chicago server` (the workers set theirs)
      ...(serverSemiSpaceMb() > 0 ? [`--max-semi-space-size=${serverSemiSpaceMb()}`] : []),
      // BENCH_NODE_ARGS="--trace-gc …": node options NODE_OPTIONS refuses, for the nodes alone
      ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
      main, 'server',
      '--etcd', this.etcdUrl,
      '--node-id', n.id,
      '--host', n.host,
      '--port', String(n.port),
      '--data-dir', n.dataDir,
      ...(this.opts.serverArgs ?? []),
    ];
    const proc = spawn(process.execPath, args, {
      cwd: repoRoot(),
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.env() },
    });
    // BENCH_NODE_LOGS=DIR keeps every node's whole output (to see what a run did, not only its tail)
    const logDir = process.env.BENCH_NODE_LOGS;
    if (logDir) {
      mkdirSync(logDir, { recursive: true });
      const file = createWriteStream(join(logDir, `${n.id}.log`), { flags: 'a' });
      proc.stdout.pipe(file, { end: false });
      proc.stderr.pipe(file, { end: false });
    }
    const tail: string[] = [];
    let served: ((url: string) => void) | undefined;
    const serving = new Promise<string>((r) => (served = r));
    captureTail(proc, tail, (line) => {
      if (!served || !line.startsWith('{')) return;
      try {
        const rec = JSON.parse(line) as { msg?: unknown; url?: unknown };
        if (rec.msg === 'serving' && typeof rec.url === 'string') {
          served(rec.url);
          served = undefined;
        }
      } catch {
        // not JSON
      }
    });
    const node: BenchNode = { ...n, url: `http://${n.host}:${n.port}`, proc, pid: proc.pid ?? -1, state: 'running', tail };
    const died = exited(proc).then(() => {
      throw new Error(`${n.id} exited (${proc.exitCode ?? proc.signalCode}) before serving:\n${tail.slice(-15).join('\n')}`);
    });
    const timeout = sleep(60_000).then(() => {
      throw new Error(`${n.id} did not log "serving" within 60 s:\n${tail.slice(-15).join('\n')}`);
    });
    try {
      const url = await Promise.race([serving, died, timeout]);
      node.url = url.replace(/\/$/, '');
    } catch (e) {
      proc.kill('SIGKILL');
      throw e;
    }
    void died.catch(() => undefined);
    void timeout.catch(() => undefined);
    return node;
  }

  /** A new node (a join when the cluster is already up); does not wait for the rebalance. */
  async addNode(): Promise<BenchNode> {
    const index = this.nextIndex++;
    const id = `n${index}`;
    const host = `127.0.0.${index + 1}`;
    const dataDir = join(this.root, id);
    mkdirSync(dataDir, { recursive: true });
    const port = await freePort(host);
    const node = await this.launch({ id, host, port, dataDir });
    this.nodes.push(node);
    return node;
  }

  node(id: string): BenchNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  running(): BenchNode[] {
    return this.nodes.filter((n) => n.state === 'running');
  }

  /** kill -9; returns performance.now() (ms) taken just before the signal. */
  kill9(id: string): number {
    const n = this.node(id);
    const t = performance.now();
    n.proc.kill('SIGKILL');
    n.state = 'killed';
    return t;
  }

  async waitExit(id: string): Promise<void> {
    await exited(this.node(id).proc);
  }

  /** Starts a killed node again: same id, host, port and data dir. */
  async restart(id: string): Promise<BenchNode> {
    const old = this.node(id);
    if (old.state === 'running') {
      old.proc.kill('SIGKILL');
    }
    await exited(old.proc);
    const fresh = await this.launch({ id: old.id, host: old.host, port: old.port, dataDir: old.dataDir });
    this.nodes[this.nodes.indexOf(old)] = fresh;
    return fresh;
  }

  /** Graceful leave: SIGTERM, resolves when the process has exited (it hands its replicas off first). */
  async leave(id: string, timeoutMs = 120_000): Promise<number> {
    const n = this.node(id);
    const t0 = performance.now();
    n.proc.kill('SIGTERM');
    await this.removed(n, timeoutMs);
    return performance.now() - t0;
  }

  /**
   * Stop at once (two SIGINTs: no hand-off), e.g. so that --cpu-prof writes its profiles on exit
   * even when every node stops together (a leave would wait for replicas that can go nowhere).
   */
  async interrupt(id: string, timeoutMs = 10_000): Promise<void> {
    const n = this.node(id);
    n.proc.kill('SIGINT');
    await sleep(200);
    n.proc.kill('SIGINT');
    await this.removed(n, timeoutMs);
  }

  /** Wait for a signalled node to exit (SIGKILL past `timeoutMs`); it is no longer running. */
  private async removed(n: BenchNode, timeoutMs: number): Promise<void> {
    const t = setTimeout(() => n.proc.kill('SIGKILL'), timeoutMs);
    await exited(n.proc);
    clearTimeout(t);
    n.state = 'removed';
  }

  /** One node's view of the cluster (GET /v1/status → `cluster`, or the lists at the top level). */
  async status(id?: string): Promise<ClusterView> {
    const n = id ? this.node(id) : this.running()[0];
    if (!n) throw new Error('no running node');
    const body = await fetchJson(`${n.url}/v1/status`);
    const view = body.cluster ?? (body.clustered ? { nodes: body.nodes, partitions: body.partitions } : undefined);
    if (!view || !Array.isArray(view.nodes) || !Array.isArray(view.partitions)) {
      throw new Error(`${n.id}: /v1/status has no cluster view`);
    }
    return { ...view, moving: body.rebalance?.moving ?? 0 } as ClusterView;
  }

  /** Every running node's view (one GET /v1/status each). */
  async views(): Promise<Array<readonly [string, ClusterView]>> {
    return Promise.all(this.running().map(async (n) => [n.id, await this.status(n.id)] as const));
  }

  /** The partition table merged over every running node (highest epoch wins), with agreement. */
  async table(views?: Array<readonly [string, ClusterView]>): Promise<Map<number, PartitionView & { agreed: boolean }>> {
    views ??= await this.views();
    const sig = (p: PartitionView): string => `${p.epoch}/${p.leader}/${p.replicas.join(',')}/${[...p.isr].sort().join(',')}`;
    const merged = new Map<number, PartitionView & { agreed: boolean }>();
    for (const [id, v] of views) {
      const up = v.nodes.filter((x) => x.state === 'up').map((x) => x.id).sort().join(',');
      const want = this.running().map((x) => x.id).sort().join(',');
      if (up !== want) throw new Error(`${id} sees up [${up}], expected [${want}]`);
      for (const p of v.partitions) {
        const prev = merged.get(p.id);
        if (!prev) merged.set(p.id, { ...p, agreed: true });
        else merged.set(p.id, { ...(p.epoch > prev.epoch ? p : prev), agreed: prev.agreed && sig(prev) === sig(p) });
      }
    }
    return merged;
  }

  /** Why the cluster is not fully replicated and settled, or undefined when it is. */
  async notReady(): Promise<string | undefined> {
    let t: Awaited<ReturnType<BenchCluster['table']>>;
    try {
      t = await this.table();
    } catch (e) {
      return (e as Error).message;
    }
    return this.unsettled(t);
  }

  /** notReady() of a table already fetched. */
  unsettled(t: Map<number, PartitionView & { agreed: boolean }>): string | undefined {
    const ids = new Set(this.running().map((n) => n.id));
    const want = Math.min(this.opts.replicas ?? 3, ids.size);
    if (t.size === 0) return 'no partitions listed';
    for (const p of t.values()) {
      if (!p.agreed) return `nodes disagree on partition ${p.id}`;
      if (!p.leader || !ids.has(p.leader)) return `partition ${p.id} leader ${p.leader}`;
      if (p.replicas.length !== want || !p.replicas.every((r) => ids.has(r))) return `partition ${p.id} replicas [${p.replicas}] (want ${want} live)`;
      if ([...p.isr].sort().join(',') !== [...p.replicas].sort().join(',')) return `partition ${p.id} isr [${p.isr}] ≠ replicas [${p.replicas}]`;
    }
    return undefined;
  }

  /** Polls until notReady() is undefined and `extra` (if given) holds; returns the ms waited. */
  async waitReady(timeoutMs = 60_000, extra?: (t: Map<number, PartitionView>) => string | undefined, pollMs = 100): Promise<number> {
    const t0 = performance.now();
    let why: string | undefined = 'not polled';
    for (;;) {
      why = await this.notReady();
      if (why === undefined && extra) {
        try {
          why = extra(await this.table());
        } catch (e) {
          why = (e as Error).message;
        }
      }
      if (why === undefined) return performance.now() - t0;
      if (performance.now() - t0 > timeoutMs) throw new Error(`cluster not ready within ${timeoutMs} ms: ${why}`);
      await sleep(pollMs);
    }
  }

  /**
   * Every partition's replicas hold the same content at the same seq (their digests match), and
   * how many keys the leaders hold in all. Retried for up to `timeoutMs` while replicas catch up.
   */
  async compareReplicas(timeoutMs = 30_000): Promise<{ agree: boolean; keys: number; differ: string[] }> {
    const t0 = performance.now();
    for (;;) {
      const differ: string[] = [];
      let keys = 0;
      for (const p of (await this.table()).values()) {
        const digests = await Promise.all(p.replicas.map(async (id) => {
          const d = await fetchJson(`${this.node(id).url}/v1/debug/partitions/${p.id}/digest`, 10_000) as { seq: number; digest: string; keys: number };
          return [id, d] as const;
        }));
        const [, lead] = digests.find(([id]) => id === p.leader) ?? digests[0]!;
        keys += lead.keys;
        for (const [id, d] of digests) if (d.seq !== lead.seq || d.digest !== lead.digest) differ.push(`partition ${p.id}: ${id} at seq ${d.seq} (${d.keys} keys) vs leader ${lead.seq} (${lead.keys} keys)`);
      }
      if (differ.length === 0 || performance.now() - t0 > timeoutMs) return { agree: differ.length === 0, keys, differ };
      await sleep(500);
    }
  }

  async metricsText(id: string): Promise<string> {
    return fetchText(`${this.node(id).url}/metrics`, 5000);
  }

  /**
   * Sum of a metric over the nodes. Running nodes are asked now; nodes that are gone count with the
   * last value read from them (call `sampleMetric` periodically while one leaves).
   */
  async sumMetric(name: string): Promise<number> {
    await this.sampleMetric(name);
    return this.sampledSum(name);
  }

  /** Σ over the nodes of the values last sampled (no request). */
  sampledSum(name: string): number {
    let sum = 0;
    for (const n of this.nodes) sum += this.lastMetric.get(`${n.id}/${name}`) ?? 0;
    return sum;
  }

  /** Reads `name` from every running node and remembers the values. */
  async sampleMetric(name: string): Promise<void> {
    await Promise.all(
      this.running().map(async (n) => {
        try {
          const v = metricValue(await this.metricsText(n.id), name);
          if (v !== undefined) this.lastMetric.set(`${n.id}/${name}`, v);
        } catch {
          // leaving or dead: keep the last value
        }
      }),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (n) => {
        if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill('SIGKILL');
        await exited(n.proc);
      }),
    );
    if (this.etcdProc) {
      this.etcdProc.kill('SIGKILL');
      await exited(this.etcdProc);
    }
    rmSync(this.root, { recursive: true, force: true });
    live.delete(this);
  }
}

// A bench killed by a signal (timeout, ^C) must not leave a cluster behind.
const live = new Set<BenchCluster>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const c of live) c.killAllSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const c of live) c.killAllSync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}
hookExit();
