// The cluster bench's replicated anchors (bench/anchors.ts): a Redis primary with 2 replicas whose
// writes count only once WAIT reports both, a 3-member etcd, each started and stopped by the bench;
// and how the results and the target read. Shape and bookkeeping, not speed.
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { EtcdKv, RedisWaitKv, startEtcdGroup, startRedisGroup } from '../bench/anchors.js';
import { BenchArgsError, parseBenchArgs } from '../bench/args.js';
import type { BenchResult } from '../bench/result.js';
import { benchAnchor, clusterAnchorsGoal } from '../bench/scenarios/cluster-anchors.js';
import { renderAnchors } from '../bench/scenarios/cluster-table.js';
import { slow } from './helpers/slow.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const quiet = (): void => undefined;

describe('bench args', () => {
  it('takes a comma list of baselines for cluster-kv-put, the single Redis apart from the replicated anchors', () => {
    const a = parseBenchArgs('cluster-kv-put', ['--baseline', 'etcd,redis,redis-wait']);
    expect(a.baseline).toBe('redis');
    expect(a.anchors).toEqual(['redis-wait', 'etcd']);
    expect(a.waitTimeoutMs).toBe(5000);
    expect(parseBenchArgs('cluster-kv-put', ['--baseline', 'etcd']).baseline).toBeUndefined();
    expect(parseBenchArgs('kv-put', ['--baseline', 'redis']).anchors).toEqual([]);
  });

  it('refuses anchors where they do not apply, unknown names, and a WAIT that outlasts the request timeout', () => {
    expect(() => parseBenchArgs('kv-put', ['--baseline', 'redis,etcd'])).toThrow(BenchArgsError);
    expect(() => parseBenchArgs('cluster-kv-put', ['--baseline', 'redis,mysql'])).toThrow(/--baseline must be one of/);
    expect(() => parseBenchArgs('cluster-produce', ['--baseline', 'etcd'])).toThrow(BenchArgsError);
    expect(() => parseBenchArgs('cluster-kv-put', ['--baseline', 'redis-wait', '--wait-timeout-ms', '10000'])).toThrow(/below --timeout-ms/);
  });
});

describe('redis primary + 2 replicas', () => {
  it('acknowledges a write once both replicas hold it, and fails it when WAIT reports fewer', async () => {
    const g = await startRedisGroup('none', 2);
    try {
      expect(g.pids).toHaveLength(3);
      const kv = await RedisWaitKv.connect(g.port, 4, 2, slow(5000));
      // a short WAIT for the write no second replica will acknowledge
      const short = await RedisWaitKv.connect(g.port, 1, 2, 300);
      try {
        await Promise.all(Array.from({ length: 40 }, (_, i) => kv.put(`k${i}`, Buffer.from(`v${i}`))));
        // WAIT answered 2: each replica already holds every key
        for (const rp of g.replicaPorts) {
          const r = new Redis({ host: '127.0.0.1', port: rp, lazyConnect: true, maxRetriesPerRequest: 0 });
          await r.connect();
          expect(await r.dbsize()).toBe(40);
          expect(await r.get('k39')).toBe('v39');
          r.disconnect();
        }
        process.kill(g.pids[2]!, 'SIGKILL');
        await expect(short.put('after', Buffer.from('x'))).rejects.toThrow(/WAIT 2 300 answered 1/);
      } finally {
        await kv.close();
        await short.close();
      }
    } finally {
      await g.stop();
    }
    for (const pid of g.pids) expect(alive(pid), `pid ${pid}`).toBe(false);
  });

  it('runs the cluster-kv-put schedule and reports it as the redis-wait anchor', async () => {
    const args = parseBenchArgs('cluster-kv-put', ['--rate', '200', '--duration', '1', '--warmup', '0', '--baseline', 'redis-wait', '--anchor-connections', '8']);
    const r = await benchAnchor(args, 'redis-wait');
    expect(r).toMatchObject({ target: 'redis-wait', sent: 200, acked: 200, errors: 0, connections: 8, nodes: 3 });
    expect(r.latencyUs.p50).toBeGreaterThan(0);
    expect(r.latencyUs.p50).toBeLessThanOrEqual(r.latencyUs.max);
    expect(r.extra?.write).toBe('SET k v; WAIT 2 5000');
    expect(r.server?.version).toMatch(/primary \+ 2 replicas/);
  });
});

describe('etcd, 3 members', () => {
  it('starts a private 3-member cluster, takes puts on any member, and leaves nothing running', async () => {
    const g = await startEtcdGroup(3, quiet);
    try {
      expect(g.endpoints).toHaveLength(3);
      expect(new Set(g.endpoints).size).toBe(3);
      const kv = EtcdKv.connect(g.endpoints, 2, 5000);
      try {
        await Promise.all(Array.from({ length: 30 }, (_, i) => kv.put(`k${i}`, Buffer.from(`v${i}`))));
      } finally {
        kv.close();
      }
      // each member answers for the same 3-member cluster and holds the writes
      for (const ep of g.endpoints) {
        const c = new Etcd3({ hosts: [ep] });
        try {
          expect((await c.cluster.memberList({})).members).toHaveLength(3);
          expect(await c.get('k29').string()).toBe('v29');
          expect(await c.getAll().prefix('k').count()).toBe(30);
        } finally {
          c.close();
        }
      }
    } finally {
      await g.stop();
    }
    for (const pid of g.pids) expect(alive(pid), `pid ${pid}`).toBe(false);
  });
});

describe('results against the anchors', () => {
  const result = (target: BenchResult['target'], p99: number, extra: Partial<BenchResult> = {}): BenchResult =>
    ({
      scenario: 'cluster-kv-put', target, nodes: 3, replicas: 3, rate: 500, durationS: 10, sent: 5000, acked: 5000, errors: 0,
      achievedRate: 500, latencyUs: { p50: p99 / 4, p90: p99 / 2, p99, p999: p99 * 2, max: p99 * 3 },
      node: 'v20', cpus: { model: 'x', count: 2 }, timestamp: '', platform: '', memGiB: 1, ...extra,
    }) as BenchResult;

  it('meets the target at ≤ 2× Redis+WAIT 2 and ≤ etcd, misses it by how much otherwise', () => {
    const met = result('chicago', 4000, { anchors: { 'redis-wait': result('redis-wait', 2000), etcd: result('etcd', 4000) } });
    expect(clusterAnchorsGoal(met)?.met).toBe(true);
    const missed = result('chicago', 4000, { anchors: { 'redis-wait': result('redis-wait', 1000), etcd: result('etcd', 3000) } });
    const g = clusterAnchorsGoal(missed);
    expect(g?.met).toBe(false);
    expect(g?.missedBy).toEqual([expect.stringMatching(/×4 redis-wait .* > ×2/), expect.stringMatching(/×1\.3 etcd .* > ×1/)]);
    const none = result('chicago', 4000, { anchors: { etcd: result('etcd', 0, { acked: 0 }) } });
    expect(clusterAnchorsGoal(none)?.missedBy).toEqual(['etcd acknowledged nothing: no comparison']);
    expect(clusterAnchorsGoal(result('chicago', 4000))).toBeUndefined();
  });

  it('puts a row per system under each run, with Chicago ÷ that system', () => {
    const r = result('chicago', 4000, {
      anchors: { 'redis-wait': result('redis-wait', 2000), etcd: result('etcd', 8000, { errors: 3 }) },
      ratioToAnchors: { 'redis-wait': { p50: 2, p90: 2, p99: 2, p999: 2, max: 2 }, etcd: { p50: 0.5, p90: 0.5, p99: 0.5, p999: 0.5, max: 0.5 } },
    });
    r.anchorsGoal = clusterAnchorsGoal(r);
    const md = renderAnchors([{ name: 'cluster-kv-put-ws-500', r }]).join('\n');
    expect(md).toMatch(/\| cluster-kv-put-ws-500 \| 500\/s \| Chicago, 4 nodes, N=3, acks=all \| 500\/s \| 1\.00 \| 4\.00 \| 8\.00 \| 12\.0 \| 0 \|/);
    expect(md).toMatch(/\| Redis primary \+ 2 replicas, `SET` then `WAIT 2` \| 500\/s \| 0\.50 \| 2\.00 \| 4\.00 \| 6\.00 \| 0 \| ×2\.00 \/ ×2\.00 \/ ×2\.00 \|/);
    expect(md).toMatch(/\| etcd, 3 members, `put` \| 500\/s \| 2\.00 \| 8\.00 \| 16\.0 \| 24\.0 \| 3 \| ×0\.50 \/ ×0\.50 \/ ×0\.50 \|/);
    expect(md).toMatch(/target: met/);
  });
});
