// Anti-entropy on a real 3-node cluster: a follower whose data was changed behind Chicago's back
// (written into its RocksDB while it was down) is found by the leader's digests, counted in
// chicago_antientropy_divergences, and repaired with a fresh copy until every replica matches.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { columnName, openDatabase } from '../src/storage/rocks.js';
import { kvPartition } from '../src/runtime/hash.js';
import { encodeKvValue } from '../src/actors/partition.js';
import * as K from '../src/storage/keys.js';

const PARTITIONS = 4;
let cluster: Cluster;
beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, partitions: PARTITIONS, replicas: 3, env: { CHICAGO_ANTI_ENTROPY_INTERVAL_MS: '500' } });
}, 120_000);
afterAll(async () => { await cluster?.teardown(); });

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('anti-entropy', () => {
  it('finds a replica changed behind its back, counts it, and repairs it from the leader', async () => {
    const url = cluster.targets()[0].url;
    for (let i = 0; i < 40; i++) {
      // a busy machine can time a write out; putting the same value again is harmless here
      await expect.poll(async () => (await fetch(`${url}/v1/kv/ae/key-${i}?acks=all`, { method: 'PUT', body: `value-${i}` })).status,
        { timeout: 20_000, interval: 100 }).toBe(200);
    }
    await cluster.waitConverged();

    const p = kvPartition('ae', Buffer.from('key-7'), PARTITIONS);
    const { partitions } = await cluster.status();
    const record = partitions.find((x) => x.id === p)!;
    const follower = cluster.node(record.replicas.find((n) => n !== record.leader)!);

    // Down, so its RocksDB can be opened here; it comes back at the same seq, so only the
    // digests can tell: one value changed, one key that no write ever made.
    await cluster.kill9(follower.id);
    const db = await openDatabase(path.join(follower.dataDir, 'rocksdb'), PARTITIONS);
    try {
      const column = db.columns[columnName(p)];
      await db.batch()
        .put(K.kvKey('ae', Buffer.from('key-7')), encodeKvValue(1, Buffer.from('tampered')), { column })
        .put(K.kvKey('ae', Buffer.from('planted')), encodeKvValue(1, Buffer.from('nobody wrote me')), { column })
        .write();
    } finally {
      await db.close();
    }
    await cluster.restart(follower.id);

    await expect.poll(() => metric(follower.url, 'chicago_antientropy_divergences'), { timeout: 30_000, interval: 250 }).toBeGreaterThan(0);
    const digests = await cluster.waitConverged(30_000);
    const copies = digests.find((d) => d.partition === p)!.copies;
    expect(copies.map((c) => c.node).sort()).toEqual([...record.replicas].sort());
    expect(new Set(copies.map((c) => c.digest)).size).toBe(1);
    expect(await metric(follower.url, 'chicago_antientropy_checks')).toBeGreaterThan(0);
  }, 120_000);
});
