// The bridge against a real Chicago node and a real Kafka broker (scripts/kafka.sh): delivery and
// order, headers, routing by task, capped requests with a dead-letter topic, group commits and
// untilGroup retention. kcat reads one of the topics as an independent client.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type BridgeProc, createChicagoTopic, endOffsets, getJson, produceChicago, spawnBridge, waitLog, waitUntil, writeBridgeConfig,
} from './helpers/bridge.js';
import { type ConsumedRecord, consumeAll, ensureKafka, kcatConsume, uniqueName } from './helpers/kafka.js';
import { freePort, type NodeHandle, startNode } from './helpers/launcher.js';
import { runKafkaTail } from '../src/bridge/kafka-tail.js';

const TASKS = ['web', 'db', 'cache'];

/** CHICAGO_TEST_NODE_URL points the test at a node already running (while developing). */
async function chicagoNode(): Promise<Pick<NodeHandle, 'url' | 'stop'>> {
  const url = process.env.CHICAGO_TEST_NODE_URL;
  if (url) return { url, stop: async () => ({ code: 0, signal: null }) };
  return startNode();
}

describe('Kafka bridge (real broker)', () => {
  let brokers: string[];
  let node: Pick<NodeHandle, 'url' | 'stop'>;
  let bridge: BridgeProc | undefined;
  const id = uniqueName('br');
  const group = `g-${id}`;
  const logs = `logs-${id}`;
  const metrics = `metrics-${id}.m`;

  beforeAll(async () => {
    [brokers, node] = await Promise.all([ensureKafka(), chicagoNode()]);
  });
  afterAll(async () => {
    await bridge?.kill('SIGTERM');
    await node?.stop();
  });

  it('delivers in order with headers, routes by task, dead-letters oversize records, commits the group', async () => {
    await createChicagoTopic(node.url, logs, 3, { untilGroup: group });
    await createChicagoTopic(node.url, metrics, 2);
    const N = 1500;
    const sent = Array.from({ length: N }, (_, i) => ({
      key: `host-${i % 7}`,
      value: `line ${i} ` + 'x'.repeat(i % 50),
      headers: { task: TASKS[i % 3]!, host: `host-${i % 7}`, source: 'syslog' },
    }));
    await produceChicago(node.url, logs, sent);
    // an oversize record (over maxRequestBytes) between normal ones
    await produceChicago(node.url, logs, [{ key: 'big', value: 'B'.repeat(80_000), headers: { task: 'web', host: 'h' } }]);
    await produceChicago(node.url, metrics, Array.from({ length: 200 }, (_, i) => ({ value: `m${i}`, headers: { task: 'metrics' } })));

    const cfg = await writeBridgeConfig({
      chicago: { url: node.url },
      kafka: { brokers, createTopics: { partitions: 3 } },
      group,
      mode: 'exactly-once',
      mappings: [
        { chicago: `logs-${id}`, kafka: `k-${id}-\${task}` },
        { chicago: `metrics-${id}.*`, kafka: `k-${id}-metrics`, partitionBy: 'chicago-partition' },
      ],
      limits: { maxRequestBytes: 64 * 1024, roundBytesMax: 256 * 1024, fetchWaitMs: 200 },
      lag: { intervalMs: 300 },
      metrics: { port: 0 },
    });
    bridge = spawnBridge(cfg);
    await waitLog(bridge, 'bridge positions recovered from Kafka');

    const byTask = new Map<string, ConsumedRecord[]>();
    await Promise.all(TASKS.map(async (t) => {
      byTask.set(t, await consumeAll(brokers, `k-${id}-${t}`, { count: N / 3, timeoutMs: 60_000 }));
    }));
    for (const t of TASKS) expect(byTask.get(t)!.length, `task ${t}`).toBe(N / 3);

    // every record once, in its task topic, with the full header set
    const all = [...byTask.values()].flat();
    const seen = new Set(all.map((r) => `${r.headers['chicago-partition']}/${r.headers['chicago-offset']}`));
    expect(seen.size).toBe(N);
    for (const r of all) {
      const i = Number(/^line (\d+)/.exec(r.value!)![1]);
      expect(r.key).toBe(sent[i]!.key);
      expect(r.topic).toBe(`k-${id}-${sent[i]!.headers.task}`);
      expect(r.headers).toMatchObject({ task: sent[i]!.headers.task, host: sent[i]!.key, source: 'syslog', 'chicago-topic': logs });
      expect(Number(r.headers.timestamp)).toBeGreaterThan(0);
    }
    // order: within a Kafka partition, records of one Chicago partition keep their offset order,
    // and each task's sequence per Chicago partition has no gap
    const runs = new Map<string, number[]>();
    for (const r of all.sort((a, b) => a.offset - b.offset)) {
      const k = `${r.topic}/${r.partition}/${r.headers['chicago-partition']}`;
      runs.set(k, [...(runs.get(k) ?? []), Number(r.headers['chicago-offset'])]);
    }
    for (const offs of runs.values()) expect(offs).toEqual([...offs].sort((a, b) => a - b));
    const seqs = new Map<string, number[]>();
    for (const r of all) {
      const k = `${r.headers.task}/${r.headers['chicago-partition']}`;
      seqs.set(k, [...(seqs.get(k) ?? []), Number(r.headers.seq)]);
    }
    for (const s of seqs.values()) expect(s.sort((a, b) => a - b)).toEqual(s.map((_, i) => i + 1));
    // same key → same Kafka partition (Kafka's own key partitioner)
    for (const t of TASKS) {
      const parts = new Map<string, Set<number>>();
      for (const r of byTask.get(t)!) parts.set(r.key!, (parts.get(r.key!) ?? new Set()).add(r.partition));
      for (const ps of parts.values()) expect(ps.size).toBe(1);
    }

    // the consumer-side helper filters a task topic by header
    const lines: string[] = [];
    const n = await runKafkaTail({
      brokers, topic: `k-${id}-web`, headers: { host: 'host-3' }, fromBeginning: true, follow: false, idleMs: 1_500, out: (l) => lines.push(l),
    });
    const want = sent.filter((r) => r.headers.task === 'web' && r.headers.host === 'host-3');
    expect(n).toBe(want.length);
    expect(lines.map((l) => JSON.parse(l).value).sort()).toEqual(want.map((r) => r.value).sort());

    // kcat, an independent client, sees the same records in the metrics topic, routed by Chicago partition
    await waitUntil('metrics delivered', async () => (await kcatConsume(brokers, `k-${id}-metrics`)).length >= 200, 30_000);
    const viaKcat = await kcatConsume(brokers, `k-${id}-metrics`);
    expect(viaKcat).toHaveLength(200);
    for (const r of viaKcat) expect(r.partition).toBe(Number(r.headers['chicago-partition']) % 3);
    expect(new Set(viaKcat.map((r) => r.value)).size).toBe(200);

    // the oversize record went to the dead-letter topic with a reason, not to Kafka
    expect(all.some((r) => r.key === 'big')).toBe(false);
    const dlq = `${group}.dead-letter`;
    const dl = await getJson(`${node.url}/v1/topics/${dlq}/records?partition=0&offset=0&maxRecords=10`);
    expect(dl.records).toHaveLength(1);
    expect(dl.records[0].key).toBe('big');
    expect(dl.records[0].value).toHaveLength(80_000);
    expect(dl.records[0].headers['dead-letter-reason']).toMatch(/maxRequestBytes/);
    expect(dl.records[0].headers['chicago-topic']).toBe(logs);

    // the group committed everything; untilGroup retention may now trim what was delivered
    const ends = await endOffsets(node.url, logs);
    await waitUntil('group commits', async () => {
      const g = await getJson(`${node.url}/v1/groups/${group}/offsets?topic=${logs}`);
      return (g.offsets as Array<{ partition: number; offset: number }>).every((o) => o.offset === ends.get(o.partition)) && g.offsets.length === 3;
    }, 15_000);
    await fetch(`${node.url}/v1/admin/maintain`, { method: 'POST' }).catch(() => undefined);
    await waitUntil('untilGroup retention', async () => {
      const info = await getJson(`${node.url}/v1/topics/${logs}`);
      return (info.partitions as Array<{ startOffset: number; endOffset: number }>).every((p) => p.endOffset === 0 || p.startOffset > 0);
    }, 20_000, 500);
  });

  it('starts a new group at latest and reports lag and deliveries on /metrics', async () => {
    // a second bridge on a new group with a tiny alert threshold and Kafka unreachable: lag grows
    const topic = `lag-${id}`;
    await createChicagoTopic(node.url, topic, 1);
    await produceChicago(node.url, topic, Array.from({ length: 50 }, (_, i) => ({ value: `r${i}`, headers: {} })));
    const cfg = await writeBridgeConfig({
      chicago: { url: node.url },
      kafka: { brokers, createTopics: { partitions: 1 } },
      group: `lag-${group}`,
      mappings: [{ chicago: topic, kafka: `k-${id}-lag` }],
      lag: { intervalMs: 200, alertRecords: 10, alertSeconds: 3600 },
      metrics: { port: await freePort() },
      start: 'latest',
    });
    const b = spawnBridge(cfg);
    try {
      await waitLog(b, 'bridging Chicago partition');
      const port = JSON.parse(await b.stdout.waitFor((l) => l.includes('bridge metrics served'), 10_000)).url;
      // started at "latest": the 50 old records are not this group's; 30 new ones are delivered
      await produceChicago(node.url, topic, Array.from({ length: 30 }, (_, i) => ({ value: `n${i}`, headers: {} })));
      await waitUntil('delivered', async () => (await consumeAll(brokers, `k-${id}-lag`, { count: 30, timeoutMs: 20_000 })).length === 30, 30_000, 1000);
      const lag = await getJson(`${port}/v1/bridge/lag`);
      expect(lag.partitions[0]).toMatchObject({ topic, partition: 0, next: 80 });
      const text = await (await fetch(`${port}/metrics`)).text();
      expect(text).toMatch(/chicago_bridge_lag_records\{topic="lag-[^"]+",partition="0",group="[^"]+"\} 0/);
      expect(text).toMatch(/chicago_bridge_delivered_records_total\{topic="k-[^"]+-lag",group="[^"]+"\} 30/);
    } finally {
      await b.kill('SIGTERM');
    }
  });
});
