// Exactly-once across `kill -9` of the bridge under load: a read_committed consumer on the Kafka
// side must see every Chicago record once (no loss, no duplicate) and every task's seq without gaps.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BridgeProc, checkExactlyOnce, createChicagoTopic, endOffsets, spawnBridge, startLoad, waitLog, writeBridgeConfig,
} from './helpers/bridge.js';
import { consumeAll, ensureKafka, uniqueName } from './helpers/kafka.js';
import { type NodeHandle, startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

const KILLS = Number(process.env.BRIDGE_EOS_KILLS ?? 4);
const RATE = Number(process.env.BRIDGE_EOS_RATE ?? 2000);

describe('Kafka bridge exactly-once (real broker)', () => {
  let brokers: string[];
  let node: Pick<NodeHandle, 'url' | 'stop'>;
  const live = new Set<BridgeProc>();

  beforeAll(async () => {
    const url = process.env.CHICAGO_TEST_NODE_URL;
    [brokers, node] = await Promise.all([
      ensureKafka(),
      url ? Promise.resolve({ url, stop: async () => ({ code: 0, signal: null }) }) : startNode(),
    ]);
  });
  afterAll(async () => {
    for (const b of live) await b.kill('SIGKILL');
    await node?.stop();
  });

  it(`delivers every record once across ${KILLS} kill -9 of the bridge under load`, async () => {
    const id = uniqueName('eos');
    const topic = `eos-${id}`;
    const kafkaTopic = `k-${id}`;
    await createChicagoTopic(node.url, topic, 4);
    const cfg = await writeBridgeConfig({
      chicago: { url: node.url },
      kafka: { brokers, createTopics: { partitions: 3 }, transactionTimeoutMs: 10_000 },
      group: `g-${id}`,
      mode: 'exactly-once',
      mappings: [{ chicago: topic, kafka: kafkaTopic }],
      // small rounds: many transactions, so kills land in every phase of one
      limits: { maxRequestBytes: 16 * 1024, roundBytesMax: 64 * 1024, fetchWaitMs: 100, fetchMaxRecords: 300 },
      retry: { initialMs: 50, maxMs: 1000 },
      logLevel: 'info', // a few lines per run: 'bridge positions recovered from Kafka' tells when it delivers
    });
    const load = startLoad(node.url, topic, { ratePerS: RATE, batch: 50 });
    const run = () => {
      const b = spawnBridge(cfg);
      live.add(b);
      void b.exited.then(() => live.delete(b));
      return b;
    };
    try {
      for (let k = 0; k < KILLS; k++) {
        const b = run();
        // kill at a random moment once it delivers (the first recovery reads the checkpoints): a
        // busy machine starts it later, so the moment counts from its recovery (0.5–0.7 s after
        // the spawn on an idle machine), not from the spawn
        await waitLog(b, 'bridge positions recovered from Kafka');
        await new Promise((r) => setTimeout(r, 1_000 + Math.random() * 2_000));
        const exit = await b.kill('SIGKILL');
        expect(exit.signal, b.stderr.tail()).toBe('SIGKILL');
      }
    } finally {
      await load.stop();
    }
    expect(load.errors).toBe(0);
    const final = run();
    const ends = await endOffsets(node.url, topic);
    const total = [...ends.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(load.acked);
    const got = await consumeAll(brokers, kafkaTopic, { count: total, timeoutMs: 90_000, readCommitted: true });
    // let a late duplicate show up if there were one; uncommitted reads include what the killed
    // bridges left in aborted transactions. Both only wait: they read side by side.
    const [again, dirty] = await Promise.all([
      consumeAll(brokers, kafkaTopic, { count: total + 1, timeoutMs: 3_000, readCommitted: true }),
      consumeAll(brokers, kafkaTopic, { count: total + 1, timeoutMs: 5_000, readCommitted: false }),
    ]);
    await final.kill('SIGTERM');
    expect(checkExactlyOnce(got, ends)).toEqual([]);
    expect(again.length).toBe(total);
    console.log(`exactly-once: ${total} records, ${KILLS} kills; read_uncommitted saw ${dirty.length} (aborted: ${dirty.length - total})`);
  }, slow(180_000));
});
