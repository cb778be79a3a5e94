// Anti-entropy on a real 3-node cluster: a follower whose data differs from its leader's at the
// same seq (a value planted outside replication through the CHICAGO_TEST_FAULTS hook) is found by
// the leader's digests, counted in chicago_antientropy_divergences, and repaired with a fresh copy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { kvPartition } from '../src/runtime/hash.js';
import { slow } from './helpers/slow.js';

const PARTITIONS = 4;
let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({
    nodes: 3, partitions: PARTITIONS, replicas: 3,
    env: { CHICAGO_ANTI_ENTROPY_INTERVAL_MS: '500', CHICAGO_TEST_FAULTS: '1' },
  });
}, slow(120_000));
afterAll(async () => { await cluster?.teardown(); });

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('anti-entropy', () => {
  it('finds a replica that differs from its leader, counts it, and repairs it from the leader', async () => {
    const url = cluster.targets()[0].url;
    for (let i = 0; i < 40; i++) {
      // a busy machine can time a write out; putting the same value again is harmless here
      await expect.poll(async () => (await fetch(`${url}/v1/kv/ae/key-${i}?acks=all`, { method: 'PUT', body: `value-${i}` })).status,
        { timeout: slow(20_000), interval: 100 }).toBe(200);
    }
    await cluster.waitConverged();

    const p = kvPartition('ae', Buffer.from('key-7'), PARTITIONS);
    const record = (await cluster.status()).partitions.find((x) => x.id === p)!;
    const follower = cluster.node(record.replicas.find((n) => n !== record.leader)!);
    expect(await metric(follower.url, 'chicago_antientropy_divergences')).toBe(0);
    for (const [key, value] of [['key-7', 'tampered'], ['planted', 'nobody wrote me']]) {
      const res = await fetch(`${follower.url}/v1/debug/partitions/${p}/plant/ae/${key}`, { method: 'PUT', body: value });
      expect(res.status).toBe(200);
    }
    const leader = cluster.node(record.leader!);
    const [mine, theirs] = await Promise.all([follower, leader].map(async (n) => (await fetch(`${n.url}/v1/debug/partitions/${p}/digest`)).json() as Promise<{ seq: number; digest: string }>));
    expect(mine.seq).toBe(theirs.seq);
    // planted outside replication, the digests differ until a digest round (every 500 ms) repairs it;
    // on a busy machine that round may come first, and then it has counted the divergence already
    if (mine.digest === theirs.digest) expect(await metric(follower.url, 'chicago_antientropy_divergences')).toBeGreaterThan(0);

    await expect.poll(() => metric(follower.url, 'chicago_antientropy_divergences'), { timeout: slow(30_000), interval: 250 }).toBeGreaterThan(0);
    const digests = await cluster.waitConverged(30_000);
    const copies = digests.find((d) => d.partition === p)!.copies;
    expect(copies.map((c) => c.node).sort()).toEqual([...record.replicas].sort());
    expect(new Set(copies.map((c) => c.digest)).size).toBe(1);
    const res = await fetch(`${leader.url}/v1/kv/ae/key-7`);
    expect(await res.text()).toBe('value-7');
    // The repair was a copy, sent at the pace the leader's pacer sets: with no foreground to protect, the fastest.
    await expect.poll(() => metric(leader.url, 'chicago_rebalance_copy_part_interval_seconds'), { timeout: slow(10_000), interval: 250 }).toBe(0.05);
  }, slow(120_000));

  it('has no fault hook unless the node was started with one', async () => {
    const { startNode } = await import('./helpers/launcher.js');
    const node = await startNode();
    try {
      const res = await fetch(`${node.url}/v1/debug/partitions/0/plant/ae/k`, { method: 'PUT', body: 'v' });
      expect(res.status).toBe(404);
    } finally {
      await node.stop();
    }
  });
});
