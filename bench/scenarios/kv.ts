// kv-put and kv-get, against Chicago or Redis, with the same generator and the same keys/values.
// `--baseline redis` runs the Chicago schedule first, then the identical schedule against a fresh
// Redis, and reports Chicago ÷ Redis per percentile.
import type { BenchArgs } from '../args.js';
import { runOpenLoop, type Op } from '../openloop.js';
import { RedisKv, startRedis } from '../redis.js';
import { perOpByThread, readThreadStats } from '../proc.js';
import { evaluateGoal, fromLoop, ratio, type BenchResult } from '../result.js';
import { asciiValue, driverFor, interestingMetrics, loopOptions, startMeters, withNode } from './common.js';

interface KvLike {
  put(key: string, value: Buffer): Promise<unknown>;
  get(key: string): Promise<unknown>;
}

const keyOf = (i: number, keys: number): string => `k${(i % keys).toString().padStart(8, '0')}`;

/** Fills `n` keys with a bounded window in flight, so kv-get reads existing values. */
async function preload(kv: KvLike, n: number, value: Buffer): Promise<void> {
  const window = 256;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await kv.put(keyOf(i, n), value);
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, n) }, worker));
}

async function runKv(args: BenchArgs, kv: KvLike, value: Buffer): Promise<Awaited<ReturnType<typeof runOpenLoop>>> {
  const keys = args.keys;
  const op: Op =
    args.scenario === 'kv-put' ? (k) => kv.put(keyOf(k, keys), value) : (k) => kv.get(keyOf(k * 7919, keys));
  return runOpenLoop(loopOptions(args, args.rate, 1), op);
}

export async function benchKvRedis(args: BenchArgs): Promise<BenchResult> {
  const value = asciiValue(args.recordBytes);
  const redis = await startRedis(args.redisPersistence);
  try {
    const kv = await RedisKv.connect(redis.port, args.connections);
    try {
      if (args.scenario === 'kv-get') await preload(kv, args.keys, value);
      const meters = startMeters(redis.pid, `redis ${redis.version} (${redis.persistence})`);
      const r = await runKv(args, kv, value);
      return fromLoop(args, 'redis', r, {
        recordBytes: args.recordBytes,
        connections: args.connections,
        ...meters.stop(),
        extra: { client: 'ioredis 5 (auto-pipelining)', persistence: redis.persistence, keys: args.keys },
      });
    } finally {
      await kv.close();
    }
  } finally {
    await redis.stop();
  }
}

export async function benchKvChicago(args: BenchArgs): Promise<BenchResult> {
  const value = asciiValue(args.recordBytes);
  return withNode(args, async (n) => {
    const driver = await driverFor(args, n.url);
    let replicasSeen = 0;
    let puts = 0;
    const kv: KvLike = {
      put: async (key, v) => {
        const r = await driver.kvPut(args.keyspace, key, v);
        puts++;
        if (r.replicas > replicasSeen) replicasSeen = r.replicas;
        return r;
      },
      get: (key) => driver.kvGet(args.keyspace, key),
    };
    try {
      if (args.scenario === 'kv-get') await preload(kv, args.keys, value);
      const meters = startMeters(n.pid);
      // per put and thread, warm-up included: CPU and wake-ups (what the hops between threads cost)
      const threads0 = n.pid === undefined ? undefined : readThreadStats(n.pid);
      const puts0 = puts;
      const r = await runKv(args, kv, value);
      const perPut = threads0 && n.pid !== undefined && args.scenario === 'kv-put' ? perOpByThread(n.pid, threads0, readThreadStats(n.pid), puts - puts0) : undefined;
      const measured = meters.stop();
      const metrics = await interestingMetrics(n.admin);
      const res = fromLoop(args, 'chicago', r, {
        via: driver.via,
        acks: args.acks,
        recordBytes: args.recordBytes,
        connections: args.connections,
        ...measured,
        ...(metrics ? { serverMetrics: metrics } : {}),
        extra: { keys: args.keys, keyspace: args.keyspace, spawned: n.spawned !== undefined, ...(perPut ? { perPut } : {}) },
      });
      if (replicasSeen > 0) res.replicas = replicasSeen;
      return res;
    } finally {
      await driver.close();
    }
  });
}

export async function benchKv(args: BenchArgs): Promise<BenchResult> {
  if (args.target === 'redis') return benchKvRedis(args);
  const res = await benchKvChicago(args);
  if (args.baseline === 'redis') {
    const base = await benchKvRedis(args);
    res.baseline = base;
    res.ratioToBaseline = ratio(res.latencyUs, base.latencyUs);
  }
  const goal = evaluateGoal(res);
  if (goal) res.goal = goal;
  return res;
}
