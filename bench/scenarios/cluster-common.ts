// What the cluster scenarios share: a private cluster for the run, one driver per node with
// requests to their partition's leader or spread round robin (a node forwards what it does not lead), CPU of all nodes, the
// machine's load average (the machine is shared: every result records `uptime`).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import type { BenchArgs } from '../args.js';
import { BenchCluster } from '../cluster.js';
import { MachineSampler, ProcSampler, SelfCpu, round1 } from '../proc.js';
import type { BenchResult } from '../result.js';
import type { ChicagoDriver } from '../targets.js';
import { driverFor } from './common.js';
import { kvPartition } from '../../src/runtime/hash.js';

export const clog = (s: string): void => {
  process.stderr.write(`[cluster-bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};

export function uptime(): string {
  try {
    return execFileSync('uptime', [], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return `load average: ${loadavg().map((x) => x.toFixed(2)).join(', ')}`;
  }
}

export async function withCluster<T>(args: BenchArgs, fn: (c: BenchCluster) => Promise<T>): Promise<T> {
  const nodeArgs: string[] = [];
  if (args.cpuProf) {
    const dir = resolve(args.cpuProf);
    mkdirSync(dir, { recursive: true });
    nodeArgs.push('--cpu-prof', '--cpu-prof-dir', dir);
  }
  clog(`starting etcd + ${args.cluster.nodes} nodes (N=${args.replicas}${args.cluster.partitions ? `, P=${args.cluster.partitions}` : ''}${args.cluster.workers ? `, workers=${args.cluster.workers}` : ''}); ${uptime()}`);
  const t0 = Date.now();
  const c = await BenchCluster.start({
    nodes: args.cluster.nodes,
    replicas: args.replicas,
    ...(args.cluster.partitions ? { partitions: args.cluster.partitions } : {}),
    ...(args.cluster.workers ? { workers: args.cluster.workers } : {}),
    serverArgs: args.serverArgs,
    nodeArgs,
    log: clog,
  });
  clog(`cluster ready in ${Date.now() - t0} ms: ${c.nodes.map((n) => `${n.id}=${n.url}`).join(' ')}`);
  try {
    return await fn(c);
  } finally {
    // an exit (not SIGKILL) lets --cpu-prof write its profiles; the rest is SIGKILLed by stop()
    if (args.cpuProf) await Promise.all(c.running().map((n) => c.interrupt(n.id).catch(() => undefined)));
    await c.stop();
  }
}

/** a node answers its placement from memory: longer means it is not up */
const PLACEMENT_TIMEOUT_MS = 5_000;

/**
 * One driver per node URL. Operations round robin over the nodes not excluded; a kv put with
 * `routeLeader()` set goes to its partition's leader (the placement every node serves, the
 * server's own hash: what the client library does), a node forwarding it only if leadership moved.
 */
export class MultiDriver {
  private rr = 0;
  private readonly excluded = new Set<string>();
  private leaders: Array<string | null> | undefined;
  private readonly byId = new Map<string, ChicagoDriver>();
  private constructor(
    readonly via: 'ws' | 'http',
    private readonly drivers: Array<{ id: string; url: string; d: ChicagoDriver }>,
  ) {
    for (const x of drivers) this.byId.set(x.id, x.d);
  }

  static async open(args: BenchArgs, nodes: Array<{ id: string; url: string }>): Promise<MultiDriver> {
    const drivers: Array<{ id: string; url: string; d: ChicagoDriver }> = [];
    for (const n of nodes) {
      drivers.push({
        id: n.id,
        url: n.url,
        d: await driverFor(args, n.url),
      });
    }
    return new MultiDriver(args.via, drivers);
  }

  /** Learn the partition leaders once (the cluster bench's load does not move them). */
  async routeLeader(): Promise<void> {
    const res = await fetch(`${this.drivers[0]!.url}/v1/cluster/placement`, { signal: AbortSignal.timeout(PLACEMENT_TIMEOUT_MS) });
    if (!res.ok) throw new Error(`placement: HTTP ${res.status}`);
    const body = (await res.json()) as { clustered: boolean; partitions: number; leaders: Array<string | null> };
    if (!body.clustered || body.leaders.length !== body.partitions) throw new Error('placement: not a cluster');
    this.leaders = body.leaders;
  }

  /** stop sending to a node (killed or leaving), as a client's failover or a load balancer would */
  exclude(id: string): void {
    this.excluded.add(id);
  }

  /** add a driver for a node that joined (not used for the foreground load by default) */
  async add(args: BenchArgs, n: { id: string; url: string }): Promise<void> {
    const tmp = await MultiDriver.open(args, [n]);
    this.drivers.push(...tmp.drivers);
    for (const x of tmp.drivers) this.byId.set(x.id, x.d);
  }

  pick(): ChicagoDriver {
    for (let i = 0; i < this.drivers.length; i++) {
      const x = this.drivers[this.rr]!;
      this.rr = (this.rr + 1) % this.drivers.length;
      if (!this.excluded.has(x.id)) return x.d;
    }
    throw new Error('every node is excluded');
  }

  kvPut(ks: string, key: string, value: Buffer): Promise<{ replicas: number }> {
    const l = this.leaders;
    const leader = l ? l[kvPartition(ks, Buffer.from(key), l.length)] : undefined;
    const d = leader && !this.excluded.has(leader) ? this.byId.get(leader) : undefined;
    return (d ?? this.pick()).kvPut(ks, key, value);
  }

  async close(): Promise<void> {
    await Promise.all(this.drivers.map((x) => x.d.close().catch(() => undefined)));
  }
}

/** CPU of every node process (summed), of the bench, and of the machine over a window. */
export function clusterMeters(pids: number[]): { stop(): Partial<BenchResult> & { perNodeCpuPct: number[] } } {
  const samplers = pids.map((p) => new ProcSampler(p, 250));
  for (const s of samplers) s.start();
  const self = new SelfCpu();
  const machine = new MachineSampler();
  return {
    stop: () => {
      const usages = samplers.map((s) => s.stop());
      const benchCpuPct = self.pct();
      const m = machine.stop();
      const perNodeCpuPct = usages.map((u) => u?.cpuPct ?? 0);
      const nodesCpu = round1(perNodeCpuPct.reduce((a, b) => a + b, 0));
      const rss = round1(usages.reduce((a, u) => a + (u?.rssMB ?? 0), 0));
      const rssMax = round1(usages.reduce((a, u) => a + (u?.rssMaxMB ?? 0), 0));
      return {
        perNodeCpuPct,
        benchCpuPct,
        server: { cpuPct: nodesCpu, rssMB: rss, rssMaxMB: rssMax, threads: usages.reduce((a, u) => a + (u?.threads ?? 0), 0), pid: pids[0] ?? -1, version: `${pids.length} nodes (CPU and RSS summed)` },
        ...(m ? { machine: { ...m, otherPct: round1(Math.max(0, m.busyPct - benchCpuPct - nodesCpu)) } } : {}),
      };
    },
  };
}

export const keyOf = (i: number, keys: number): string => `k${(i % keys).toString().padStart(8, '0')}`;

/** Writes keys [0, n) with `window` puts in flight, round robin over the nodes; returns keys/s. */
export async function loadKeys(
  d: MultiDriver,
  ks: string,
  n: number,
  value: Buffer,
  window = 512,
  progress?: (done: number) => void,
): Promise<{ seconds: number; errors: number }> {
  const t0 = performance.now();
  let next = 0;
  let done = 0;
  let errors = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      for (let attempt = 0; ; attempt++) {
        try {
          await d.kvPut(ks, keyOf(i, n), value);
          break;
        } catch (e) {
          errors++;
          if (attempt >= 5) throw e;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      done++;
      if (progress && done % 50_000 === 0) progress(done);
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker));
  return { seconds: (performance.now() - t0) / 1000, errors };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
