// The gateway thread copies every WebSocket frame it receives (uWS reuses the memory) and drops
// the copy with its request. Such copies count against V8's old-generation limit until a GC frees
// them: without help, a stream of 200 KB produce batches set off a mark-compact every ~40 batches
// on the thread every request passes through. runtime/young-gc.ts asks for a scavenge instead
// every few MB copied; this checks the node's own GC counts (/metrics, main thread).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChicagoClient } from '../src/client/index.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

let node: NodeHandle;

beforeAll(async () => {
  node = await startNode();
  const res = await fetch(`${node.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'gc-big', partitions: 2 }) });
  expect(res.status).toBe(201);
}, slow(60_000));
afterAll(async () => { await node?.stop(); });

async function gcCounts(): Promise<{ major: number; minor: number }> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const count = (kind: string) => Number(new RegExp(`nodejs_gc_duration_seconds_count\\{kind="${kind}"\\} (\\d+)`).exec(text)?.[1] ?? 0);
  return { major: count('major'), minor: count('minor') };
}

describe('gateway GC under large produce frames', () => {
  it('600 batches of 200 KB: scavenges free the frame copies, next to no mark-compacts', async () => {
    const client = await ChicagoClient.connect({ url: node.url });
    const RECORDS = 1000;
    const values = Array.from({ length: RECORDS }, (_, i) => Buffer.alloc(200, 97 + (i % 26)));
    const producer = client.producer({ acks: 'one', lingerMs: 1000, batchBytesMax: RECORDS * 200, maxInFlight: 4 });
    try {
      const before = await gcCounts();
      expect(Number.isFinite(before.major)).toBe(true);
      const BATCHES = 600;
      const deadline = Date.now() + slow(120_000);
      for (let b = 0; b < BATCHES; b += 4) {
        // four batches at a time, one per partition stream window slot: bounded in count and time
        const acks: Array<Promise<unknown>> = [];
        for (let k = 0; k < 4; k++) for (const value of values) acks.push(producer.send('gc-big', { value, partition: k % 2 }));
        await Promise.all(acks);
        expect(Date.now()).toBeLessThan(deadline);
      }
      const after = await gcCounts();
      // ~120 MB of frame copies: at one mark-compact per ~8 MB that is ~15 without the scavenges
      expect(after.major - before.major).toBeLessThanOrEqual(3);
      expect(after.minor - before.minor).toBeGreaterThanOrEqual(10);
    } finally {
      await producer.close(5_000).catch(() => undefined);
      client.close();
    }
  }, slow(180_000));
});
