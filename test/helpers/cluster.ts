// A real cluster for tests: a private etcd and N `chicago server --etcd` processes, node nK on its
// own loopback address 127.x.y.(K+1) (x.y random per cluster, or `subnet`), with the faults the nemesis applies (kill -9, SIGSTOP/SIGCONT,
// restart, join, leave, link cuts with iptables). Nodes start through the single-node launcher.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startNode, type NodeHandle } from './launcher.js';
import { sleep, type ReplicaDigests, type Target } from './checker.js';
import { startEtcd, type EtcdServer } from './etcd.js';
import { Iptables, type FaultTarget } from './nemesis.js';
import { slow } from './slow.js';
import { caDispatcher } from '../../src/client/tls.js';

export interface ClusterOptions {
  nodes?: number;
  /** cluster partitions, fixed at creation (CHICAGO_PARTITIONS of the first node) */
  partitions?: number;
  /** replicas per partition (CHICAGO_DEFAULTS_REPLICAS) */
  replicas?: number;
  env?: Record<string, string>;
  /** extra `chicago server` flags for every node */
  args?: string[];
  /** the token the harness reads status with, for nodes configured with tokens */
  token?: string;
  /** PEM of the CA that signed the nodes' certificates, for nodes that serve HTTPS */
  ca?: string;
  /** an etcd started elsewhere (not stopped by teardown); default a private one */
  etcd?: EtcdServer;
  /** deadline for the cluster to become ready at start */
  readyTimeoutMs?: number;
  /** 'cluster' (default): every partition placed, led and fully in sync; 'health': only /v1/health */
  waitFor?: 'cluster' | 'health';
  /** nodes without --etcd (independent single nodes): only to test this harness itself */
  standalone?: boolean;
  /**
   * the first three octets of the nodes' addresses: node nK gets `${subnet}.${K + 1}`. Default a
   * random 127.x.y, so clusters of test files running in parallel never share an address and one
   * file's link cuts never touch another's nodes.
   */
  subnet?: string;
}

export type NodeState = 'running' | 'paused' | 'killed' | 'removed';

export interface ClusterNode {
  id: string;
  host: string;
  dataDir: string;
  state: NodeState;
  /** the current process; replaced on restart */
  handle: NodeHandle;
  readonly url: string;
}

/** `cluster` in GET /v1/status, as docs/cluster.md and the lead's node define it. */
export interface ClusterStatus {
  nodes: Array<{ id: string; url: string; state: string }>;
  partitions: Array<{ id: number; epoch: number; leader: string | null; replicas: string[]; isr: string[] }>;
}

export interface Cluster extends FaultTarget {
  etcd: EtcdServer;
  partitions: number;
  replicas: number;
  /** every node ever started, removed ones included */
  nodes: ClusterNode[];
  node(id: string): ClusterNode;
  /** running or paused members */
  live(): ClusterNode[];
  /** running members, for clients */
  targets(): Target[];
  /** the cluster status as one node sees it (default: the first running node) */
  status(id?: string): Promise<ClusterStatus>;
  /** every partition's digest from every replica, as the placement names them */
  digests(): Promise<ReplicaDigests[]>;
  /** waits until ready and every partition's replicas report the same seq and digest; returns the last digests */
  waitConverged(timeoutMs?: number): Promise<ReplicaDigests[]>;
  /** the iptables rules in force, as `source>destination` */
  cuts(): string[];
  hostOf(id: string): string;
  teardown(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
const READY_TIMEOUT_MS = 60_000;
const LEAVE_TIMEOUT_MS = slow(150_000); // past the node's own hand-off limit (limits.leaveHandOffMs)
const POLL_MS = 100;
const STATUS_TIMEOUT_MS = slow(2000);

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const size = opts.nodes ?? 4;
  const partitions = opts.partitions ?? 16;
  const replicas = opts.replicas ?? 3;
  const root = await mkdtemp(path.join(os.tmpdir(), 'chicago-cluster-'));
  const ownEtcd = opts.etcd === undefined;
  const etcd: EtcdServer = opts.etcd ?? (await startEtcd());
  const cutter = new Iptables();
  const nodes: ClusterNode[] = [];
  const subnet = opts.subnet ?? randomSubnet();
  let nextIndex = 1;
  let lastNotReady = '';

  const env = {
    CHICAGO_PARTITIONS: String(partitions),
    CHICAGO_DEFAULTS_REPLICAS: String(replicas),
    CHICAGO_WORKERS: '1',
    ...opts.env,
  };

  const launch = async (): Promise<ClusterNode> => {
    const index = nextIndex++;
    if (index > 250) throw new Error('out of loopback addresses');
    const id = `n${index}`;
    const host = `${subnet}.${index + 1}`;
    const dataDir = path.join(root, id);
    await mkdir(dataDir, { recursive: true });
    const handle = await startNode({
      nodeId: id,
      host,
      dataDir,
      keepData: true,
      env,
      args: [...(opts.standalone ? [] : ['--etcd', etcd.endpoints.join(',')]), ...(opts.args ?? [])],
      startTimeoutMs: START_TIMEOUT_MS,
      ca: opts.ca,
    });
    const node: ClusterNode = {
      id,
      host,
      dataDir,
      state: 'running',
      handle,
      get url() {
        return this.handle.url;
      },
    };
    nodes.push(node);
    return node;
  };

  const node = (id: string): ClusterNode => {
    const n = nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id} (have ${nodes.map((x) => x.id).join(',')})`);
    return n;
  };
  const live = () => nodes.filter((n) => n.state === 'running' || n.state === 'paused');
  const running = () => nodes.filter((n) => n.state === 'running');

  const fetchJson = async (url: string): Promise<any> => {
    const res = await fetch(url, {
      headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {}, signal: AbortSignal.timeout(STATUS_TIMEOUT_MS),
      ...({ dispatcher: caDispatcher(opts.ca) } as RequestInit),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status} ${text.slice(0, 200)}`);
    return JSON.parse(text);
  };

  /**
   * One node's view. Accepts `cluster: {nodes, partitions}` in /v1/status, or the same two lists at
   * the top level beside `clustered: true` (then `partitions` may list only what that node hosts).
   */
  const status = async (id?: string): Promise<ClusterStatus> => {
    const n = id ? node(id) : running()[0];
    if (!n) throw new Error('no running node to ask');
    const body = await fetchJson(`${n.url}/v1/status`);
    const view = body.cluster ?? (body.clustered ? { nodes: body.nodes, partitions: body.partitions } : undefined);
    if (!view || !Array.isArray(view.nodes) || !Array.isArray(view.partitions)) {
      throw new Error(`${n.id}: /v1/status has no cluster view (nodes, partitions): not in cluster mode?`);
    }
    return view as ClusterStatus;
  };

  /**
   * The partition table merged from every running node's view: for each partition the entry with
   * the highest epoch, and whether all views that list it agree, and which nodes list it.
   */
  const table = async (): Promise<{ views: Map<string, ClusterStatus>; partitions: Map<number, ClusterStatus['partitions'][number] & { agreed: boolean; listedBy: string[] }> }> => {
    const views = new Map<string, ClusterStatus>();
    await Promise.all(running().map(async (n) => views.set(n.id, await status(n.id))));
    const merged = new Map<number, ClusterStatus['partitions'][number] & { agreed: boolean; listedBy: string[] }>();
    const sig = (p: ClusterStatus['partitions'][number]) => `${p.epoch}/${p.leader}/${p.replicas.join(',')}/${[...p.isr].sort().join(',')}`;
    for (const [id, v] of views) {
      for (const p of v.partitions) {
        const prev = merged.get(p.id);
        if (!prev) merged.set(p.id, { ...p, agreed: true, listedBy: [id] });
        else {
          const agreed = prev.agreed && sig(prev) === sig(p);
          const pick = p.epoch > prev.epoch ? p : prev;
          merged.set(p.id, { ...pick, agreed, listedBy: [...prev.listedBy, id] });
        }
      }
    }
    return { views, partitions: merged };
  };

  /** Why the cluster is not ready, or undefined when it is. */
  const notReady = async (): Promise<string | undefined> => {
    const members = live();
    if (members.some((n) => n.state === 'paused')) return 'a node is paused';
    const ids = new Set(members.map((n) => n.id));
    const want = Math.min(replicas, ids.size);
    for (const n of members) {
      try {
        await fetchJson(`${n.url}/v1/health`);
      } catch (err) {
        return `${n.id} not healthy: ${(err as Error).message}`;
      }
    }
    if (opts.waitFor === 'health') return undefined;
    let t: Awaited<ReturnType<typeof table>>;
    try {
      t = await table();
    } catch (err) {
      return (err as Error).message;
    }
    for (const [id, v] of t.views) {
      const up = v.nodes.filter((x) => x.state === 'up').map((x) => x.id).sort();
      if (up.join(',') !== [...ids].sort().join(',')) return `${id} sees up nodes [${up}], expected [${[...ids].sort()}]`;
    }
    if (t.partitions.size !== partitions) return `the nodes list ${t.partitions.size} partitions, expected ${partitions}`;
    for (const p of t.partitions.values()) {
      if (!p.agreed) return `nodes disagree on partition ${p.id} (${p.listedBy})`;
      if (!p.leader || !ids.has(p.leader)) return `partition ${p.id} leader is ${p.leader}`;
      if (p.replicas.length !== want || !p.replicas.every((r) => ids.has(r))) return `partition ${p.id} replicas [${p.replicas}], want ${want} live`;
      if ([...p.isr].sort().join(',') !== [...p.replicas].sort().join(',')) return `partition ${p.id} isr [${p.isr}] ≠ replicas [${p.replicas}]`;
      const missing = p.replicas.filter((r) => !p.listedBy.includes(r));
      if (missing.length > 0) return `partition ${p.id}: replicas ${missing} do not list it yet`;
    }
    return undefined;
  };

  /** `idleMs` is scaled by the test slowdown */
  const waitReady = async (idleMs = READY_TIMEOUT_MS): Promise<void> => {
    const timeoutMs = slow(idleMs);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const why = await notReady();
      if (why === undefined) return;
      lastNotReady = why;
      if (Date.now() > deadline) throw new Error(`cluster not ready within ${timeoutMs} ms: ${why}`);
      await sleep(POLL_MS);
    }
  };

  const digests = async (): Promise<ReplicaDigests[]> => {
    const t = await table();
    const want = Math.min(replicas, live().length);
    return Promise.all(
      [...t.partitions.values()].sort((a, b) => a.id - b.id).map(async (p) => {
        const copies = await Promise.all(
          p.replicas.map(async (r) => {
            const n = nodes.find((x) => x.id === r);
            if (!n || n.state !== 'running') return { node: r, seq: -1, digest: `unreachable (${n?.state ?? 'unknown node'})` };
            try {
              const d = await fetchJson(`${n.url}/v1/debug/partitions/${p.id}/digest`);
              return { node: r, seq: Number(d.seq), digest: String(d.digest) };
            } catch (err) {
              return { node: r, seq: -1, digest: `error: ${(err as Error).message}` };
            }
          }),
        );
        return { partition: p.id, copies, expectedCopies: want };
      }),
    );
  };

  const cluster: Cluster = {
    etcd,
    partitions,
    replicas,
    nodes,
    node,
    live,
    liveIds: () => live().map((n) => n.id),
    targets: () => running().map((n) => ({ id: n.id, url: n.url })),
    hostOf: (id) => node(id).host,
    status,
    async leaderCounts() {
      const counts = new Map<string, number>();
      for (const p of (await table()).partitions.values()) if (p.leader) counts.set(p.leader, (counts.get(p.leader) ?? 0) + 1);
      return counts;
    },
    async kill9(id) {
      const n = node(id);
      if (n.state === 'removed' || n.state === 'killed') throw new Error(`${id} is ${n.state}`);
      await n.handle.kill('SIGKILL');
      n.state = 'killed';
    },
    async restart(id) {
      const n = node(id);
      if (n.state === 'removed') throw new Error(`${id} was removed`);
      if (n.state === 'paused') cluster.cont(id);
      if (n.state === 'running') {
        await n.handle.kill('SIGKILL');
        n.state = 'killed';
      }
      n.handle = await n.handle.restart();
      n.state = 'running';
    },
    stop(id) {
      const n = node(id);
      if (n.state !== 'running') throw new Error(`${id} is ${n.state}`);
      n.handle.proc.kill('SIGSTOP');
      n.state = 'paused';
    },
    cont(id) {
      const n = node(id);
      if (n.state !== 'paused') throw new Error(`${id} is ${n.state}`);
      n.handle.proc.kill('SIGCONT');
      n.state = 'running';
    },
    async addNode() {
      return launch();
    },
    async removeNode(id) {
      const n = node(id);
      if (n.state === 'paused') cluster.cont(id);
      if (n.state === 'running') {
        const timer = setTimeout(() => n.handle.proc.kill('SIGKILL'), LEAVE_TIMEOUT_MS);
        const exit = await n.handle.kill('SIGTERM');
        clearTimeout(timer);
        if (exit.signal === 'SIGKILL') throw new Error(`${id} did not leave within ${LEAVE_TIMEOUT_MS} ms of SIGTERM`);
      }
      n.state = 'removed';
      await rm(n.dataDir, { recursive: true, force: true });
    },
    partition(a, b) {
      cutter.cut(a.map((id) => node(id).host), b.map((id) => node(id).host));
    },
    heal() {
      cutter.heal();
    },
    cuts: () => cutter.rules(),
    waitReady,
    digests,
    async waitConverged(idleMs = READY_TIMEOUT_MS) {
      const deadline = Date.now() + slow(idleMs);
      await waitReady(idleMs);
      for (;;) {
        const d = await digests();
        const converged = d.every((p) => p.copies.length >= (p.expectedCopies ?? 0) && new Set(p.copies.map((c) => `${c.seq}/${c.digest}`)).size === 1);
        if (converged || Date.now() > deadline) return d;
        await sleep(250);
      }
    },
    async teardown() {
      cutter.close();
      for (const n of nodes) if (n.state === 'paused') n.handle.proc.kill('SIGCONT');
      await Promise.all(nodes.map((n) => n.handle.kill('SIGKILL')));
      for (const n of nodes) if (n.state !== 'removed') n.state = 'killed';
      if (ownEtcd) await etcd.stop().catch(() => undefined);
      await rm(root, { recursive: true, force: true });
    },
  };

  try {
    // The first node creates the cluster (meta in etcd); the others join it.
    await launch();
    await Promise.all(Array.from({ length: size - 1 }, () => launch()));
    await waitReady(opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
  } catch (err) {
    const logs = nodes.map((n) => `--- ${n.id} stderr\n${n.handle.stderr.tail(15)}\n--- ${n.id} stdout\n${n.handle.stdout.tail(15)}`).join('\n');
    await cluster.teardown();
    throw new Error(`cluster did not start: ${(err as Error).message}${lastNotReady ? ` (last: ${lastNotReady})` : ''}\n${logs}`);
  }
  return cluster;
}

/** 127.x.y with x, y in 1..254: all of 127/8 is loopback on Linux. */
export function randomSubnet(): string {
  const octet = () => 1 + Math.floor(Math.random() * 254);
  return `127.${octet()}.${octet()}`;
}
