// cluster-kv-put: kv.put at --rate against a private cluster (default 4 nodes, N=3, acks=all),
// each put to its partition's leader as the client library sends it (--route any: round robin over
// every node, which forwards writes for partitions led elsewhere); with --baseline redis the identical schedule against a fresh Redis afterwards, with
// --baseline redis-wait,etcd against the replicated anchors (scenarios/cluster-anchors.ts) too.
import type { BenchArgs } from '../args.js';
import { runOpenLoop, type Op } from '../openloop.js';
import { fromLoop, ratio, round1OrZero, type BenchResult, type Goal } from './cluster-result.js';
import { benchKvRedis } from './kv.js';
import { benchAnchor, clusterAnchorsGoal } from './cluster-anchors.js';
import { readThreadStats } from '../proc.js';
import { asciiValue, interestingMetrics, loopOptions } from './common.js';
import { HttpTarget } from '../http.js';
import { MultiDriver, clog, clusterMeters, keyOf, uptime, withCluster } from './cluster-common.js';

export function clusterKvGoal(r: BenchResult): Goal {
  const missed: string[] = [];
  const l = r.latencyUs;
  if (l.p99 > 1000) missed.push(`p99 ${l.p99} µs > 1000 µs (×${round1OrZero(l.p99 / 1000)})`);
  if (l.p999 > 5000) missed.push(`p99.9 ${l.p999} µs > 5000 µs (×${round1OrZero(l.p999 / 5000)})`);
  if (r.errors > 0) missed.push(`${r.errors} errors`);
  if (r.rate < 10_000) missed.push(`offered ${r.rate}/s < 10000/s`);
  return { text: 'cluster kv-put at 10k/s, 4 nodes, N=3, acks=all: p99 ≤ 1 ms, p99.9 ≤ 5 ms', met: missed.length === 0, ...(missed.length ? { missedBy: missed } : {}) };
}

export async function benchClusterKvPut(args: BenchArgs): Promise<BenchResult> {
  const value = asciiValue(args.recordBytes);
  const uptimeBefore = uptime();
  const res = await withCluster(args, async (c) => {
    const d = await MultiDriver.open(args, c.running());
    if (args.route === 'leader') await d.routeLeader();
    let replicasSeen = 0;
    let replicasMin = Infinity;
    try {
      const op: Op = async (k) => {
        const r = await d.kvPut(args.keyspace, keyOf(k, args.keys), value);
        if (r.replicas > replicasSeen) replicasSeen = r.replicas;
        if (r.replicas < replicasMin) replicasMin = r.replicas;
      };
      const pids = c.running().map((n) => n.pid);
      const meters = clusterMeters(pids);
      const threads0 = pids.map(readThreadStats);
      clog(`kv-put ${args.rate}/s for ${args.durationS} s (+${args.warmupS} s warmup) via ${args.via}, acks=${args.acks}`);
      const r = await runOpenLoop(loopOptions(args, args.rate, 1), op);
      const { perNodeCpuPct, ...measured } = meters.stop();
      // voluntary context switches of every node thread (about one per wake-up), over warm-up and run alike
      let wakes = 0;
      pids.forEach((p, i) => {
        for (const [tid, s] of readThreadStats(p)) wakes += s.wakeups - (threads0[i]!.get(tid)?.wakeups ?? 0);
      });
      const admin = new HttpTarget(c.running()[0]!.url, 1);
      const metrics = await interestingMetrics(admin);
      admin.close();
      const out = fromLoop(args, 'chicago', r, {
        via: d.via,
        acks: args.acks,
        recordBytes: args.recordBytes,
        connections: args.connections,
        ...measured,
        ...(metrics ? { serverMetrics: metrics } : {}),
        extra: {
          keys: args.keys,
          keyspace: args.keyspace,
          spreadOver: c.running().map((n) => n.url),
          route: args.route,
          // partition workers per node (null: the node's default, one per core it sees)
          workersPerNode: args.cluster.workers ?? null,
          perNodeCpuPct,
          wakeupsPerWrite: r.acked > 0 ? Math.round((wakes / (r.acked * (1 + args.warmupS / args.durationS))) * 10) / 10 : null,
          replicasMin: Number.isFinite(replicasMin) ? replicasMin : null,
          clusterPartitions: (await c.status()).partitions.length,
        },
      });
      out.nodes = c.running().length;
      out.replicas = replicasSeen || args.replicas;
      return out;
    } finally {
      await d.close();
    }
  });
  if (args.baseline === 'redis') {
    clog('baseline: the same schedule against Redis');
    const baseUptime = uptime();
    const base = await benchKvRedis({ ...args, scenario: 'kv-put', acks: 'one' });
    base.extra = { ...base.extra, uptimeBefore: baseUptime };
    res.baseline = base;
    res.ratioToBaseline = ratio(res.latencyUs, base.latencyUs);
  }
  for (const anchor of args.anchors) {
    clog(`anchor: the same schedule against ${anchor}`);
    const a = await benchAnchor(args, anchor);
    res.anchors = { ...res.anchors, [anchor]: a };
    res.ratioToAnchors = { ...res.ratioToAnchors, [anchor]: ratio(res.latencyUs, a.latencyUs) };
  }
  res.goal = clusterKvGoal(res);
  const anchorsGoal = clusterAnchorsGoal(res);
  if (anchorsGoal) res.anchorsGoal = anchorsGoal;
  res.extra = { ...res.extra, uptimeBefore, uptimeAfter: uptime() };
  return res;
}
