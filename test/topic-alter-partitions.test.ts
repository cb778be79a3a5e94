// `topic alter --partitions`: a topic's partition count grows (never shrinks), on a single node and
// on a 3-node cluster (one compare-and-swap in etcd, followed by every node). The new partitions take
// records at once, and a consumer group's live member is assigned them without rejoining.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChicagoClient } from '../src/client/index.js';
import { runCli, startNode, type NodeHandle } from './helpers/launcher.js';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { startEarly } from './helpers/early.js';
import { getJson, waitUntil } from './helpers/bridge.js';
import { slow } from './helpers/slow.js';

async function send(method: string, url: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(slow(10_000)) });
  return { status: res.status, body: await res.json().catch(() => undefined) };
}

/** The same story against any node set: `urls[0]` is altered through, every url must follow. */
async function growsAndAssigns(urls: string[], topic: string, replicas: number): Promise<void> {
  const [url] = urls;
  expect((await send('POST', `${url}/v1/topics`, { name: topic, partitions: 2, replicas })).status).toBe(201);
  const client = await ChicagoClient.connect({ url, backoffMinMs: 10, backoffMaxMs: 100 });
  const member = client.subscribe(`${topic}-g`, [topic], { sessionTimeoutMs: 1_000 });
  const assigned = () => member.assignment().map((a) => a.partition).sort((a, b) => a - b).join(',');
  try {
    await waitUntil('the member holds both partitions', () => assigned() === '0,1', 10_000, 50);

    // fewer is refused, and a refused change leaves everything as it was (retention included)
    const fewer = await send('PATCH', `${url}/v1/topics/${topic}`, { partitions: 1, retention: { ms: 60_000 } });
    expect(fewer.status).toBe(400);
    expect(fewer.body.error.code).toBe('INVALID_ARGUMENT');
    expect(fewer.body.error.message).toMatch(/has 2; partitions can only be added/);
    const refusedCli = await runCli(['topic', 'alter', topic, '--partitions', '1', '--url', url]);
    expect(refusedCli.code).toBe(2);
    expect(refusedCli.stderr).toMatch(/^error INVALID_ARGUMENT: .*can only be added/);
    expect(await getJson(`${url}/v1/topics/${topic}`)).toMatchObject({ partitionCount: 2, retention: {} });
    // a produce to a partition the topic does not have yet is refused, as a read of it is
    expect((await send('POST', `${url}/v1/topics/${topic}/records?partition=3`, [{ value: 'early' }])).status).toBe(404);

    const grown = await runCli(['topic', 'alter', topic, '--partitions', '4', '--url', url]);
    expect(grown.code).toBe(0);
    expect(grown.stdout).toMatch(new RegExp(`^altered topic ${topic} retention=.* partitions=4\\n$`));
    // the same count again is a no-op
    expect((await send('PATCH', `${url}/v1/topics/${topic}`, { partitions: 4 })).body).toMatchObject({ partitions: 4, partitionCount: 4 });

    // every node follows; a new partition takes records through any of them and reads back
    for (const u of urls) {
      await waitUntil(`${u} sees 4 partitions`, async () => ((await getJson(`${u}/v1/topics/${topic}`)) as { partitionCount: number }).partitionCount === 4, 10_000, 50);
    }
    const last = urls[urls.length - 1];
    const produced = await send('POST', `${last}/v1/topics/${topic}/records?partition=3`, [{ value: 'new-3' }]);
    expect(produced.status).toBe(200);
    expect(produced.body.records).toEqual([{ partition: 3, offset: 0 }]);
    const read = await getJson(`${url}/v1/topics/${topic}/records?partition=3&offset=0`);
    expect(read.records.map((r: { value: string }) => r.value)).toEqual(['new-3']);
    expect((await client.topic(topic)).partitions.map((p) => [p.partition, p.endOffset])).toEqual([[0, 0], [1, 0], [2, 0], [3, 1]]);

    // the live member is assigned the new partitions at its next heartbeat
    await waitUntil('the member holds all four partitions', () => assigned() === '0,1,2,3', 10_000, 50);
    const members = await getJson(`${url}/v1/groups/${topic}-g/members`);
    expect(members.members).toHaveLength(1);
    expect(members.unassigned).toEqual([]);
  } finally {
    await member.close();
    client.close();
  }
}

// the cluster, started with the file
const clusterOnce = startEarly(() => startCluster({ nodes: 3, partitions: 8, replicas: 3 }), (c) => c.teardown());

describe('topic alter --partitions on a single node', () => {
  let node: NodeHandle;
  beforeAll(async () => { node = await startNode(); }, slow(30_000));
  afterAll(async () => { await node?.stop(); });

  it('adds partitions, refuses fewer, and a group member gets the new ones', async () => {
    await growsAndAssigns([node.url], 'grow1', 1);
    // the count survives a restart (the catalog is on disk)
    node = await node.restart();
    expect(await getJson(`${node.url}/v1/topics/grow1`)).toMatchObject({ partitionCount: 4 });
  }, slow(40_000));
});

describe('topic alter --partitions on a 3-node cluster', () => {
  let cluster: Cluster;
  beforeAll(async () => { cluster = await clusterOnce(); }, slow(120_000));

  it('one compare-and-swap in etcd, followed by every node; a member connected elsewhere gets the new partitions', async () => {
    await growsAndAssigns(cluster.targets().map((t) => t.url), 'grow3', 3);
  }, slow(60_000));
});
