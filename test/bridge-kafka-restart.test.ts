// Kafka stopped and restarted mid-stream: the bridge pauses (bounded memory), raises its lag
// alert, retries with backoff and, once Kafka is back, resumes with every record exactly once.
// The topic has `untilGroup` retention: while Kafka is down, retention runs and must trim only
// what the bridge delivered (the exactly-once check afterwards needs every offset from 0).
// Uses its own broker (port 19292) so stopping it does not disturb the other tests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BridgeProc, checkExactlyOnce, createChicagoTopic, endOffsets, getJson, metric, postJson, spawnBridge, startLoad, waitLog,
  waitUntil, writeBridgeConfig,
} from './helpers/bridge.js';
import { consumeAll, ensureKafka, kafkaDown, kafkaUp, uniqueName } from './helpers/kafka.js';
import { freePort, type NodeHandle, startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

const PORT = 19292;

describe('Kafka bridge with Kafka restarted mid-stream (real broker)', () => {
  let brokers: string[];
  let node: Pick<NodeHandle, 'url' | 'stop'>;
  let bridge: BridgeProc | undefined;

  beforeAll(async () => {
    const url = process.env.CHICAGO_TEST_NODE_URL;
    [brokers, node] = await Promise.all([
      ensureKafka({ port: PORT }),
      url ? Promise.resolve({ url, stop: async () => ({ code: 0, signal: null }) }) : startNode(),
    ]);
  });
  afterAll(async () => {
    await bridge?.kill('SIGKILL');
    await node?.stop();
    await kafkaUp(PORT).catch(() => undefined); // leave it running for the next run
  });

  it('pauses, alerts, and resumes exactly once', async () => {
    const id = uniqueName('rst');
    const topic = `rst-${id}`;
    const kafkaTopic = `k-${id}`;
    await createChicagoTopic(node.url, topic, 2, { untilGroup: `g-${id}` });
    const metricsPort = await freePort();
    const cfg = await writeBridgeConfig({
      chicago: { url: node.url },
      kafka: { brokers, createTopics: { partitions: 2 }, transactionTimeoutMs: 15_000 },
      group: `g-${id}`,
      mode: 'exactly-once',
      mappings: [{ chicago: topic, kafka: kafkaTopic }],
      limits: { maxRequestBytes: 64 * 1024, roundBytesMax: 256 * 1024, fetchWaitMs: 100 },
      retry: { initialMs: 100, maxMs: 1_000 },
      lag: { intervalMs: 250, alertRecords: 500, alertSeconds: 3 },
      metrics: { port: metricsPort },
      logLevel: 'info',
    });
    const murl = `http://127.0.0.1:${metricsPort}`;
    bridge = spawnBridge(cfg);
    await waitLog(bridge, 'bridge positions recovered from Kafka');
    const load = startLoad(node.url, topic, { ratePerS: 1000, batch: 50 });
    try {
      // Kafka goes down mid-stream: once the bridge has delivered some of the load
      await waitUntil('the bridge delivering', async () => (await metric(murl, 'chicago_bridge_delivered_records_total')).reduce((a, b) => a + b, 0) >= 500, 20_000, 50);
      await kafkaDown(PORT);
      // Kafka is gone: the bridge stops consuming, says so, and the lag grows past the alert
      await waitUntil('kafka_up = 0', async () => (await metric(murl, 'chicago_bridge_kafka_up'))[0] === 0, 20_000);
      await waitUntil('lag alert', async () => (await metric(murl, 'chicago_bridge_lag_alert')).some((v) => v === 1), 20_000);
      const lagged = await metric(murl, 'chicago_bridge_lag_records');
      expect(Math.max(...lagged)).toBeGreaterThanOrEqual(500);
      // retention now: it may trim what the group committed, never what is still undelivered
      await postJson(`${node.url}/v1/admin/maintain`, {});
      const committed = new Map<number, number>(
        ((await getJson(`${node.url}/v1/groups/g-${id}/offsets?topic=${topic}`)).offsets as Array<{ partition: number; offset: number }>)
          .map((o) => [o.partition, o.offset]),
      );
      const info = await getJson(`${node.url}/v1/topics/${topic}`);
      for (const p of info.partitions as Array<{ partition: number; startOffset: number; endOffset: number }>) {
        expect(p.startOffset, `partition ${p.partition}`).toBeLessThanOrEqual(committed.get(p.partition) ?? 0);
        expect(p.endOffset - p.startOffset, `partition ${p.partition} keeps its undelivered records`).toBeGreaterThan(0);
      }
      await kafkaUp(PORT);
    } finally {
      await load.stop();
    }
    expect(load.errors).toBe(0);
    const ends = await endOffsets(node.url, topic);
    const total = [...ends.values()].reduce((a, b) => a + b, 0);
    const got = await consumeAll(brokers, kafkaTopic, { count: total, timeoutMs: 90_000, readCommitted: true });
    expect(checkExactlyOnce(got, ends)).toEqual([]);
    // and once delivered, retention trims them
    await waitUntil('untilGroup trims delivered records', async () => {
      await postJson(`${node.url}/v1/admin/maintain`, {});
      const info = await getJson(`${node.url}/v1/topics/${topic}`);
      return (info.partitions as Array<{ startOffset: number }>).every((p) => p.startOffset > 0);
    }, 20_000, 500);
    await waitUntil('alert cleared', async () => (await metric(murl, 'chicago_bridge_lag_alert')).every((v) => v === 0), 20_000);
    expect(bridge.stdout.text()).toMatch(/bridge round failed; retrying/);
    expect(bridge.proc.exitCode).toBeNull(); // it never gave up
    await bridge.kill('SIGTERM');
  }, slow(180_000));
});
