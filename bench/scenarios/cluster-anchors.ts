// cluster-kv-put's replicated anchors: the schedule Chicago just ran (rate, duration, warmup, keys,
// values, generator), now against Redis primary + 2 replicas with SET then WAIT 2, or against a
// 3-member etcd with put; each on fresh processes the bench starts and stops (bench/anchors.ts).
import type { BenchArgs, ReplicatedAnchor } from '../args.js';
import { EtcdKv, RedisWaitKv, startEtcdGroup, startRedisGroup, type AnchorGroup } from '../anchors.js';
import { runOpenLoop, type Op } from '../openloop.js';
import { fromLoop, round1OrZero, type BenchResult, type Goal } from './cluster-result.js';
import { asciiValue, loopOptions } from './common.js';
import { clog, clusterMeters, keyOf, uptime } from './cluster-common.js';

/** replicas a write must reach besides the primary / leader: N = 3 copies like Chicago's default */
const REDIS_REPLICAS = 2;
const ETCD_MEMBERS = 3;

interface Driven {
  put(key: string, value: Buffer): Promise<void>;
  close(): Promise<void> | void;
}

async function runAnchor(
  args: BenchArgs,
  anchor: ReplicatedAnchor,
  g: AnchorGroup,
  kv: Driven,
  describe: { version: string; extra: Record<string, unknown>; connections: number },
): Promise<BenchResult> {
  const value = asciiValue(args.recordBytes);
  const uptimeBefore = uptime();
  try {
    const op: Op = (k) => kv.put(keyOf(k, args.keys), value);
    const meters = clusterMeters(g.pids);
    clog(`${anchor}: kv-put ${args.rate}/s for ${args.durationS} s (+${args.warmupS} s warmup)`);
    const r = await runOpenLoop(loopOptions(args, args.rate, 1), op);
    const { perNodeCpuPct, ...measured } = meters.stop();
    const out = fromLoop(args, anchor, r, {
      recordBytes: args.recordBytes,
      connections: describe.connections,
      ...measured,
      extra: { keys: args.keys, perProcessCpuPct: perNodeCpuPct, ...describe.extra, uptimeBefore, uptimeAfter: uptime() },
    });
    if (out.server) out.server.version = `${describe.version} (${g.pids.length} processes, CPU and RSS summed)`;
    out.nodes = g.pids.length;
    out.replicas = g.pids.length;
    return out;
  } finally {
    await kv.close();
  }
}

export async function benchRedisWait(args: BenchArgs): Promise<BenchResult> {
  const g = await startRedisGroup(args.redisPersistence, REDIS_REPLICAS);
  try {
    clog(`redis-wait: primary :${g.port}, replicas :${g.replicaPorts.join(', :')} (${g.persistence}), ${args.anchorConnections} connections`);
    const kv = await RedisWaitKv.connect(g.port, args.anchorConnections, REDIS_REPLICAS, args.waitTimeoutMs);
    return await runAnchor(args, 'redis-wait', g, kv, {
      version: `redis ${g.version} (${g.persistence}) primary + ${REDIS_REPLICAS} replicas`,
      connections: args.anchorConnections,
      extra: {
        write: `SET k v; WAIT ${REDIS_REPLICAS} ${args.waitTimeoutMs}`,
        client: 'ioredis 5 (auto-pipelining; a write on the connection with the fewest outstanding)',
        persistence: g.persistence,
      },
    });
  } finally {
    await g.stop();
  }
}

export async function benchEtcd(args: BenchArgs): Promise<BenchResult> {
  const g = await startEtcdGroup(ETCD_MEMBERS, clog);
  try {
    clog(`etcd: ${ETCD_MEMBERS} members ${g.endpoints.join(' ')}, ${args.connections} client(s)`);
    const kv = EtcdKv.connect(g.endpoints, args.connections, args.timeoutMs);
    return await runAnchor(args, 'etcd', g, kv, {
      version: `etcd ${g.version}, ${ETCD_MEMBERS} members`,
      connections: args.connections * ETCD_MEMBERS,
      extra: { write: 'put k v', client: `etcd3 (${args.connections} client(s), a gRPC channel to each member; no retries)`, members: ETCD_MEMBERS },
    });
  } finally {
    await g.stop();
  }
}

export function benchAnchor(args: BenchArgs, anchor: ReplicatedAnchor): Promise<BenchResult> {
  return anchor === 'redis-wait' ? benchRedisWait(args) : benchEtcd(args);
}

/** Chicago's p99 against the anchors: ≤ 2× Redis + WAIT 2, ≤ etcd (stated for 500/s and 2k/s). */
export function clusterAnchorsGoal(r: BenchResult): Goal | undefined {
  const anchors = r.anchors ?? {};
  const limitOf: Record<ReplicatedAnchor, number> = { 'redis-wait': 2, etcd: 1 };
  const parts: string[] = [];
  const missed: string[] = [];
  for (const name of ['redis-wait', 'etcd'] as const) {
    const a = anchors[name];
    if (!a) continue;
    const limit = limitOf[name];
    parts.push(`p99 ≤ ${limit === 1 ? '' : `${limit}× `}${name === 'etcd' ? "etcd's" : 'Redis+WAIT 2'}`);
    if (a.acked === 0) {
      missed.push(`${name} acknowledged nothing: no comparison`);
      continue;
    }
    const x = a.latencyUs.p99 > 0 ? r.latencyUs.p99 / a.latencyUs.p99 : Infinity;
    if (x > limit) missed.push(`p99 ${r.latencyUs.p99} µs = ×${round1OrZero(x)} ${name} (${a.latencyUs.p99} µs) > ×${limit}`);
  }
  if (parts.length === 0) return undefined;
  if (r.errors > 0) missed.push(`${r.errors} errors`);
  return { text: `cluster kv-put at 500/s and 2k/s: ${parts.join(' and ')}`, met: missed.length === 0, ...(missed.length ? { missedBy: missed } : {}) };
}
