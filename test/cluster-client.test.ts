// The TypeScript client against a real 3-node cluster: KV requests, pinned-partition produces and
// tails go straight to their partition's leader (not through the node it connected to), and
// acks=all reports 3 copies. A node that does not lead a partition still serves its tails.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { ChicagoClient } from '../src/client/index.js';
import { Session } from '../src/client/session.js';
import { TailStream } from '../src/client/tail.js';
import { slow } from './helpers/slow.js';

let cluster: Cluster;
beforeAll(async () => { cluster = await startCluster({ nodes: 3, partitions: 8, replicas: 3 }); }, slow(120_000));
afterAll(async () => { await cluster?.teardown(); });

async function wsRequests(url: string, route: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text.split('\n')
    .filter((l) => l.startsWith('chicago_requests_total{') && l.includes('edge="ws"') && l.includes(`route="${route}"`))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}
const wsPuts = (url: string) => wsRequests(url, 'kv.put');

/** replication frames the cluster's workers sent over `link` (direct: the only one), summed over nodes */
async function framesSent(link: string): Promise<number> {
  const counts = await Promise.all(cluster.targets().map(async (t) => {
    const line = (await (await fetch(`${t.url}/metrics`)).text()).split('\n').find((l) => l.startsWith(`chicago_replication_frames_sent{link="${link}"}`));
    return line ? Number(line.split(' ').at(-1)) : 0;
  }));
  return counts.reduce((a, b) => a + b, 0);
}

describe('client routing in a cluster', () => {
  it('sends each key to its leader and gets N acknowledged copies', async () => {
    const [seed] = cluster.targets();
    const client = await ChicagoClient.connect({ url: seed.url });
    try {
      for (let i = 0; i < 60; i++) {
        const r = await client.kv.put('routed', `key-${i}`, `value-${i}`);
        expect(r.replicas).toBe(3);
      }
      for (let i = 0; i < 60; i += 7) expect((await client.kv.get('routed', `key-${i}`))?.value.toString()).toBe(`value-${i}`);
      // Leaders are spread over the nodes, so the puts arrive at more than the node we dialled.
      const perNode = await Promise.all(cluster.targets().map((t) => wsPuts(t.url)));
      expect(perNode.reduce((a, b) => a + b, 0)).toBe(60);
      expect(perNode.filter((n) => n > 0).length).toBeGreaterThan(1);
    } finally {
      client.close();
    }
  });
});

describe('replication links', () => {
  it('carry appends and acks straight between the partition workers of different nodes', async () => {
    const client = await ChicagoClient.connect({ url: cluster.targets()[0].url });
    try {
      await client.kv.put('direct', 'warm-up', 'x'); // links open on first use
      const direct0 = await framesSent('direct');
      for (let i = 0; i < 40; i++) expect((await client.kv.put('direct', `key-${i}`, 'v')).replicas).toBe(3);
      const direct = await framesSent('direct') - direct0;
      // one at a time, each put is an append to 2 followers and their 2 acks (heartbeats add more)
      expect(direct).toBeGreaterThanOrEqual(40 * 4);
    } finally {
      client.close();
    }
  });
});

describe('reading a topic partition at a node that does not lead it', () => {
  async function nonLeaderOf(topic: string): Promise<{ url: string; leaderUrl: string }> {
    const info = (await (await fetch(`${cluster.targets()[0].url}/v1/topics/${topic}`)).json()) as { partitions: Array<{ leader: string }> };
    const leader = info.partitions[0].leader;
    const other = cluster.targets().find((t) => t.id !== leader);
    const lead = cluster.targets().find((t) => t.id === leader);
    if (!other || !lead) throw new Error(`no leader/non-leader pair for ${topic} (leader ${leader})`);
    return { url: other.url, leaderUrl: lead.url };
  }

  async function createTopic(name: string): Promise<void> {
    const res = await fetch(`${cluster.targets()[0].url}/v1/topics`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, partitions: 1 }),
    });
    expect(res.status).toBe(201);
  }

  const produce = (url: string, topic: string, value: string) => fetch(`${url}/v1/topics/${topic}/records?partition=0`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([{ value }]),
  }).then((r) => expect(r.status).toBe(200));

  it('a long poll there is woken by the append at the leader, not by its timeout', async () => {
    await createTopic('remote-poll');
    const { url, leaderUrl } = await nonLeaderOf('remote-poll');
    const t0 = Date.now();
    const poll = fetch(`${url}/v1/topics/remote-poll/records?partition=0&offset=0&waitMs=8000`).then((r) => r.json()) as Promise<{ records: Array<{ value: string }> }>;
    setTimeout(() => void produce(leaderUrl, 'remote-poll', 'woken'), 300);
    const got = await poll;
    expect(got.records.map((r) => r.value)).toEqual(['woken']);
    expect(Date.now() - t0).toBeLessThan(4_000);
  });

  it('a live tail there keeps receiving appends after it has caught up', async () => {
    await createTopic('remote-tail');
    const { url, leaderUrl } = await nonLeaderOf('remote-tail');
    await produce(leaderUrl, 'remote-tail', 'v0');
    // a session without a router: the subscription stays on the node that does not lead
    const session = await Session.open({ url, connectTimeoutMs: slow(5_000), requestTimeoutMs: slow(10_000), backoffMinMs: 50, backoffMaxMs: 500, clientName: 'test' });
    try {
      const tail = new TailStream(session, 'remote-tail', 0, { from: 'earliest' });
      const got: string[] = [];
      const reading = (async () => {
        for await (const r of tail) {
          got.push(r.value.toString());
          if (got.length === 4) break;
        }
      })();
      // Each append comes after the tail has read everything before it.
      for (let i = 1; i < 4; i++) {
        await expect.poll(() => got.length, { timeout: slow(5_000) }).toBe(i);
        await produce(leaderUrl, 'remote-tail', `v${i}`);
      }
      await reading;
      expect(got).toEqual(['v0', 'v1', 'v2', 'v3']);
      expect(await wsRequests(url, 'subscribe')).toBeGreaterThan(0);
    } finally {
      session.close();
    }
  });

  it('the client subscribes and produces to a pinned partition at its leader', async () => {
    await createTopic('routed-stream');
    const { url, leaderUrl } = await nonLeaderOf('routed-stream');
    const before = { sub: await wsRequests(url, 'subscribe'), leaderSub: await wsRequests(leaderUrl, 'subscribe'), leaderProduce: await wsRequests(leaderUrl, 'produce') };
    const client = await ChicagoClient.connect({ url });
    try {
      const tail = client.tail('routed-stream', 0, { from: 'earliest' });
      // The tail subscribes at the leader once the client's session to it is open: produce after
      // that, so that the batches find the session open (on a busy machine it opens late).
      for (const deadline = Date.now() + slow(10_000); await wsRequests(leaderUrl, 'subscribe') === before.leaderSub && Date.now() < deadline;) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const producer = client.producer({ acks: 'all' });
      for (let i = 0; i < 5; i++) await producer.send('routed-stream', { value: `r${i}`, partition: 0 });
      const got: string[] = [];
      for await (const r of tail) {
        got.push(r.value.toString());
        if (got.length === 5) break;
      }
      expect(got).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
      await producer.close();
      // The first batch may go through the node dialled while the leader's session opens.
      expect(await wsRequests(leaderUrl, 'subscribe') - before.leaderSub).toBe(1);
      expect(await wsRequests(url, 'subscribe') - before.sub).toBe(0);
      expect(await wsRequests(leaderUrl, 'produce') - before.leaderProduce).toBeGreaterThanOrEqual(4);
    } finally {
      client.close();
    }
  });
});
