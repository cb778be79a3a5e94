// Exactly-once across `kill -9` of the bridge under load: a read_committed consumer on the Kafka
// side must see every Chicago record once (no loss, no duplicate) and every task's seq without gaps.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BridgeProc, checkExactlyOnce, createChicagoTopic, endOffsets, metric, spawnBridge, startLoad, waitLog, waitUntil, writeBridgeConfig,
} from './helpers/bridge.js';
import { consumeAll, ensureKafka, kcatConsume, uniqueName } from './helpers/kafka.js';
import { freePort, type NodeHandle, startNode } from './helpers/launcher.js';
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
    // metrics only on the final bridge (0 = not served), on a port taken just before it starts: a
    // port the killed bridges listened on in turn could be handed to another connection meanwhile
    const config = (metricsPort: number) => writeBridgeConfig({
      chicago: { url: node.url },
      kafka: { brokers, createTopics: { partitions: 3 }, transactionTimeoutMs: 10_000 },
      group: `g-${id}`,
      mode: 'exactly-once',
      mappings: [{ chicago: topic, kafka: kafkaTopic }],
      // small rounds: many transactions, so kills land in every phase of one
      limits: { maxRequestBytes: 16 * 1024, roundBytesMax: 64 * 1024, fetchWaitMs: 100, fetchMaxRecords: 300 },
      retry: { initialMs: 50, maxMs: 1000 },
      // the lag the final bridge reports tells when it has delivered everything (below)
      lag: { intervalMs: 250 },
      metrics: { port: metricsPort },
      logLevel: 'info', // a few lines per run: 'bridge positions recovered from Kafka' tells when it delivers
    });
    const cfg = await config(0);
    const load = startLoad(node.url, topic, { ratePerS: RATE, batch: 50 });
    const run = (file = cfg) => {
      const b = spawnBridge(file);
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
    const metricsPort = await freePort();
    const final = run(await config(metricsPort));
    const ends = await endOffsets(node.url, topic);
    const total = [...ends.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(load.acked);
    // The final bridge advances a partition's position only once the Kafka transaction carrying its
    // records has committed, and its lag is the end offset minus that position (docs/bridge.md,
    // "Guarantees", "Lag"): at lag 0 everywhere it has delivered everything from the checkpoints it
    // recovered. It then stays there for 1 s, ten of its fetch waits (fetchWaitMs), so that a late
    // duplicate, were it to send one, is in Kafka before the readers below read each partition to its
    // end (instead of waiting out an idle time for a record a passing run never has).
    const murl = `http://127.0.0.1:${metricsPort}`;
    let zeroSince: number | undefined;
    await waitUntil('the final bridge at lag 0 on every partition for 1 s', async () => {
      const lag = await metric(murl, 'chicago_bridge_lag_records').catch(() => []);
      zeroSince = lag.length === ends.size && lag.every((v) => v === 0) ? (zeroSince ?? Date.now()) : undefined;
      return zeroSince !== undefined && Date.now() - zeroSince >= 1_000;
    }, 90_000, 100);
    // kafkajs and kcat (independent), read_committed; uncommitted reads include what the killed
    // bridges left in aborted transactions
    const [got, again, dirty] = await Promise.all([
      consumeAll(brokers, kafkaTopic, { count: total, timeoutMs: 90_000, readCommitted: true }),
      kcatConsume(brokers, kafkaTopic),
      kcatConsume(brokers, kafkaTopic, 30_000, false),
    ]);
    await final.kill('SIGTERM');
    expect(checkExactlyOnce(got, ends)).toEqual([]);
    expect(checkExactlyOnce(again, ends)).toEqual([]);
    expect(again.length).toBe(total);
    console.log(`exactly-once: ${total} records, ${KILLS} kills; read_uncommitted saw ${dirty.length} (aborted: ${dirty.length - total})`);
  }, slow(180_000));
});
