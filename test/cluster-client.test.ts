// The TypeScript client against a real 3-node cluster: KV requests go straight to each key's
// partition leader (not through the node it connected to), and acks=all reports 3 copies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { ChicagoClient } from '../src/client/index.js';

let cluster: Cluster;
beforeAll(async () => { cluster = await startCluster({ nodes: 3, partitions: 8, replicas: 3 }); }, 120_000);
afterAll(async () => { await cluster?.teardown(); });

async function wsPuts(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text.split('\n')
    .filter((l) => l.startsWith('chicago_requests_total{') && l.includes('edge="ws"') && l.includes('route="kv.put"'))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
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
