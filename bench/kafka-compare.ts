// Chicago against Apache Kafka on the same machine, in one run (bench/run-kafka.sh wraps it):
//
//  (a) end to end: records produced to Chicago (acks=all) → the bridge (`chicago bridge`, exactly
//      once) → Kafka, latency = a read_committed Kafka consumer's receipt − the record's intended
//      send time, at fixed rates; and bridge throughput (a backlog drained, records/s and MB/s).
//  (b) side by side at the same record size (200 B), rates and replication (1 node vs 1 broker, acks
//      = all, 4 partitions): Chicago `produce` through its TypeScript client, Kafka through kafkajs
//      driven by the SAME open-loop generator and batches, and Kafka through its own
//      kafka-producer-perf-test (its best client; its percentiles parsed from its output).
//      Reports p99 ratios and the highest rate each keeps with p99 ≤ 10 ms.
//  (c) replicated, side by side (`--cluster`, instead of (a) and (b)): the same rows as (b), with the
//      same record size, partitions, rates, generator and batches, but 3 Kafka brokers (topics with
//      replication factor 3, min.insync.replicas=2, acks=all) against a 3-node Chicago cluster
//      (bench/cluster.ts: a private etcd + 3 nodes, topics with N=3, acks=all). The client is given
//      node 1's URL and pins each batch's partition, so it sends every batch straight to that
//      partition's leader (src/client/router.ts), as kafkajs does for Kafka.
//
//   node dist/bench/kafka-compare.js --brokers 127.0.0.1:19692 [--rates 1000,5000,...] [--duration 10]
//       [--warmup 2] [--e2e-rates 1000,5000,10000] [--backlog 200000] [--json FILE] [--md FILE] [--quick]
//       [--skip chicago,kafkajs,perf,e2e,throughput] [--cluster]
//   (--cluster wants the bootstrap list of 3 brokers: bench/run-kafka.sh --cluster starts them)
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import kafkajs from 'kafkajs';
import { newHistogram, nowUs, recordUs, runOpenLoop, summarize, type LatencySummary, type OpenLoopOptions, type OpenLoopResult } from './openloop.js';
import { MachineSampler, machineInfo, repoRoot, spawnNode } from './proc.js';
import { HttpTarget } from './http.js';
import { openDriver, type ChicagoDriver } from './targets.js';

const RECORD_BYTES = 200;
const PARTITIONS = 4;
const P99_LIMIT_US = 10_000;
/** --cluster: Kafka brokers = Chicago nodes = replicas per partition */
const CLUSTER_SIZE = 3;
/** --cluster: Kafka's min.insync.replicas (a majority of 3); Chicago's acks=all waits for all N */
const CLUSTER_MIN_ISR = 2;

interface Row {
  /** side = 1 node vs 1 broker; replicated = 3 nodes N=3 vs 3 brokers RF=3 (--cluster) */
  part: 'e2e' | 'side' | 'replicated';
  target: 'chicago' | 'kafkajs' | 'kafka-perf-test' | 'chicago→bridge→kafka';
  rate: number;
  achievedRate: number;
  sent: number;
  acked: number;
  errors: number;
  /** open-loop rows with errors: which kinds, and the first messages */
  errorsByKind?: OpenLoopResult['errorsByKind'];
  errorSamples?: string[];
  latencyUs: LatencySummary;
  /** machine CPU busy % (of one core) and load average during the run: noise */
  machineBusyPct?: number;
  loadAvg1: number;
  note?: string;
}

interface Opts {
  brokers: string[];
  rates: number[];
  e2eRates: number[];
  durationS: number;
  warmupS: number;
  backlog: number;
  json?: string;
  md?: string;
  skip: Set<string>;
  /** (c): 3 brokers RF=3 vs 3 Chicago nodes N=3, side by side only */
  cluster: boolean;
}

function parse(argv: string[]): Opts {
  const { values } = parseArgs({
    args: argv,
    options: {
      brokers: { type: 'string' },
      rates: { type: 'string' },
      'e2e-rates': { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      backlog: { type: 'string' },
      json: { type: 'string' },
      md: { type: 'string' },
      skip: { type: 'string' },
      quick: { type: 'boolean' },
      cluster: { type: 'boolean' },
    },
  });
  const quick = values.quick === true;
  const nums = (s: string | undefined, d: number[]) => (s ? s.split(',').map(Number) : d);
  if (!values.brokers) throw new Error('--brokers HOST:PORT is required (bench/run-kafka.sh starts a broker)');
  const cluster = values.cluster === true;
  // the replicated comparison is the side-by-side part only: e2e and throughput measure the bridge
  const skip = new Set([...(values.skip ?? '').split(',').filter(Boolean), ...(cluster ? ['e2e', 'throughput'] : [])]);
  return {
    brokers: values.brokers.split(','),
    rates: nums(values.rates, quick ? [1000, 20000] : [1000, 5000, 10000, 20000, 50000, 100000]),
    e2eRates: nums(values['e2e-rates'], quick ? [1000] : [1000, 5000, 10000]),
    durationS: Number(values.duration ?? (quick ? 3 : 10)),
    warmupS: Number(values.warmup ?? (quick ? 1 : 2)),
    backlog: Number(values.backlog ?? (quick ? 20000 : 200000)),
    ...(values.json ? { json: values.json } : {}),
    ...(values.md ? { md: values.md } : {}),
    skip,
    cluster,
  };
}

const log = (s: string) => process.stderr.write(`[kafka-compare] ${s}\n`);
const ms = (us: number) => (us / 1000).toFixed(us < 10_000 ? 2 : 1);

function kafka(brokers: string[]): kafkajs.Kafka {
  return new kafkajs.Kafka({ clientId: 'chicago-bench', brokers, logLevel: kafkajs.logLevel.NOTHING });
}

/** Kafka brokers, and replicas per partition, Chicago nodes and N, in this mode */
const sizeOf = (o: Opts) => (o.cluster ? CLUSTER_SIZE : 1);

async function kafkaAdmin<T>(o: Opts, fn: (admin: kafkajs.Admin) => Promise<T>): Promise<T> {
  const admin = kafka(o.brokers).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

/** the report names the broker count: a run against another cluster would mislabel its rows */
async function checkBrokers(o: Opts): Promise<void> {
  const { brokers } = await kafkaAdmin(o, (a) => a.describeCluster());
  if (brokers.length !== sizeOf(o)) {
    throw new Error(`Kafka at ${o.brokers.join(',')} has ${brokers.length} broker(s); this mode compares against ${sizeOf(o)}${o.cluster ? ' (bench/run-kafka.sh --cluster starts 3)' : ''}`);
  }
}

const KAFKA_TOPIC_READY_MS = 30_000;

/**
 * PARTITIONS partitions, replication factor sizeOf(o) (replicated: min.insync.replicas
 * CLUSTER_MIN_ISR); resolves when every partition has a leader and its whole replica set in sync,
 * as Chicago's topics are before a row. kafkajs' own waitForLeaders fails when the broker it asks
 * has not heard of the new topic yet ("does not host this topic-partition"), as happens with 3.
 */
async function createKafkaTopic(o: Opts, topic: string): Promise<void> {
  const configEntries = o.cluster ? [{ name: 'min.insync.replicas', value: String(CLUSTER_MIN_ISR) }] : [];
  await kafkaAdmin(o, async (a) => {
    await a.createTopics({ waitForLeaders: false, topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: sizeOf(o), configEntries }] });
    const deadline = Date.now() + KAFKA_TOPIC_READY_MS;
    for (;;) {
      const why = await a.fetchTopicMetadata({ topics: [topic] }).then(({ topics }) => {
        const ps = topics[0]?.partitions ?? [];
        const bad = ps.find((p) => p.leader < 0 || p.isr.length !== sizeOf(o));
        return ps.length !== PARTITIONS ? `${ps.length} partitions listed` : bad ? `partition ${bad.partitionId} leader ${bad.leader} isr [${bad.isr}]` : undefined;
      }, (e: unknown) => (e instanceof Error ? e.message : String(e)));
      if (why === undefined) return;
      if (Date.now() > deadline) throw new Error(`Kafka topic ${topic} not ready within ${KAFKA_TOPIC_READY_MS} ms: ${why}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  });
}

/** A 200-byte ASCII value whose first bytes are `index` (so a consumer can find its send time). */
function value(index: number): Buffer {
  const head = `${index}:`;
  const b = Buffer.alloc(RECORD_BYTES, 0x61 + (index % 26));
  b.write(head, 0, 'latin1');
  return b;
}

/** batches of ~1 ms of records (at least 1), the same for Chicago and kafkajs */
const batchFor = (rate: number) => Math.max(1, Math.round(rate / 1000));

function loop(rate: number, o: Opts, batch: number): OpenLoopOptions {
  return {
    opsPerSecond: rate / batch, durationS: o.durationS, warmupS: o.warmupS, weight: batch,
    maxOutstanding: 4000, timeoutMs: 10_000, drainMs: 10_000, pacing: 'ticker',
  };
}

function rowOf(part: Row['part'], target: Row['target'], rate: number, r: OpenLoopResult, m: MachineSampler, note?: string): Row {
  const load = m.stop();
  return {
    part, target, rate, achievedRate: Math.round(r.ackedPerSecond), sent: r.sent, acked: r.acked, errors: r.errors,
    ...(r.errors > 0 ? { errorsByKind: r.errorsByKind, errorSamples: r.errorSamples } : {}),
    latencyUs: summarize(r.latency), ...(load ? { machineBusyPct: load.busyPct } : {}), loadAvg1: Math.round((loadavg()[0] ?? 0) * 10) / 10,
    ...(note ? { note } : {}),
  };
}

// ---------------------------------------------------------------- Chicago: one node or a cluster

/** The Chicago under test: one spawned node, or (--cluster) a private etcd + CLUSTER_SIZE nodes. */
interface Chicago {
  /** node 1's URL: the client learns the placement from it and sends to partition leaders */
  url: string;
  /** replicas per topic partition (N) */
  replicas: number;
  /** resolves when every partition's in-sync set is its whole replica set */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

async function startChicago(o: Opts): Promise<Chicago> {
  if (!o.cluster) {
    const node = await spawnNode();
    return { url: node.url, replicas: 1, settled: async () => undefined, stop: () => node.stop() };
  }
  // imported here: cluster.ts hooks exit and signals (to kill its processes), which single-node
  // runs and the tests importing parsePerfTest do not need
  const { BenchCluster } = await import('./cluster.js');
  const c = await BenchCluster.start({ nodes: CLUSTER_SIZE, replicas: CLUSTER_SIZE, log: (s) => log(`cluster: ${s}`) });
  log(`Chicago cluster: ${c.nodes.map((n) => `${n.id}=${n.url}`).join(' ')}`);
  return { url: c.nodes[0]!.url, replicas: CLUSTER_SIZE, settled: async () => { await c.waitReady(30_000); }, stop: () => c.stop() };
}

/** A Chicago topic of PARTITIONS partitions with N = ch.replicas, all in sync; drop() deletes it. */
async function chicagoTopic(ch: Chicago, topic: string): Promise<{ drop(): Promise<void> }> {
  const admin = new HttpTarget(ch.url, 2);
  const drop = async () => {
    await admin.deleteTopic(topic).catch(() => undefined);
    admin.close();
  };
  try {
    await admin.createTopic(topic, PARTITIONS, ch.replicas);
    await ch.settled();
  } catch (e) {
    await drop();
    throw e;
  }
  return { drop };
}

/** the TypeScript client over WebSocket, acks=all; the ws driver pins batch k to partition k % P */
const chicagoDriver = (ch: Chicago): Promise<ChicagoDriver> =>
  openDriver({ url: ch.url, via: 'ws', connections: 1, acks: 'all', lingerMs: 0, producers: 1, creditBytes: 1 << 20 });

// ---------------------------------------------------------------- (b) and (c) side by side

/** the part of a side-by-side row: 1 vs 1, or replicated */
const sidePart = (o: Opts): Row['part'] => (o.cluster ? 'replicated' : 'side');

async function sideChicago(ch: Chicago, rate: number, o: Opts): Promise<Row> {
  const topic = `cmp-${Date.now().toString(36)}-${rate}`;
  const t = await chicagoTopic(ch, topic);
  const driver = await chicagoDriver(ch);
  const batch = batchFor(rate);
  const values = Array.from({ length: batch }, (_, i) => value(i));
  try {
    const m = new MachineSampler();
    const r = await runOpenLoop(loop(rate, o, batch), () => driver.produce(topic, values, PARTITIONS));
    return rowOf(sidePart(o), 'chicago', rate, r, m, `batch ${batch}`);
  } finally {
    await driver.close();
    await t.drop();
  }
}

async function sideKafkajs(rate: number, o: Opts): Promise<Row> {
  const topic = `cmp-kjs-${Date.now().toString(36)}-${rate}`;
  await createKafkaTopic(o, topic);
  const producer = kafka(o.brokers).producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const batch = batchFor(rate);
  const messages = Array.from({ length: batch }, (_, i) => ({ value: value(i) }));
  let k = 0;
  try {
    const m = new MachineSampler();
    const r = await runOpenLoop(loop(rate, o, batch), () =>
      producer.send({ topic, acks: -1, messages: messages.map((x) => ({ ...x, partition: k % PARTITIONS })) }).finally(() => { k++; }));
    return rowOf(sidePart(o), 'kafkajs', rate, r, m, `batch ${batch}`);
  } finally {
    await producer.disconnect();
  }
}

/** kafka-producer-perf-test's summary line → latency (µs) and rate */
export function parsePerfTest(out: string): { sent: number; rate: number; latencyUs: LatencySummary } | undefined {
  const m = /(\d+) records sent, ([\d.]+) records\/sec \([\d.]+ MB\/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th/.exec(out);
  if (!m) return undefined;
  // groups: 1 sent, 2 rate, 3 avg, 4 max, 5 50th, 6 95th, 7 99th, 8 99.9th
  const us = (i: number) => Math.round(Number(m[i]) * 1000);
  return { sent: Number(m[1]), rate: Number(m[2]), latencyUs: { p50: us(5), p90: us(6), p99: us(7), p999: us(8), max: us(4) } };
}

async function sidePerfTest(rate: number, o: Opts): Promise<Row> {
  const topic = `cmp-perf-${Date.now().toString(36)}-${rate}`;
  await createKafkaTopic(o, topic);
  // no warm-up option: the run covers warmup + duration, its percentiles include the JVM's first seconds
  const n = Math.round(rate * (o.durationS + o.warmupS));
  const args = ['perf-producer', '--topic', topic, '--num-records', String(n), '--record-size', String(RECORD_BYTES), '--throughput', String(rate),
    '--producer-props', `bootstrap.servers=${o.brokers.join(',')}`, 'acks=all'];
  const m = new MachineSampler();
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(join(repoRoot(), 'scripts/kafka.sh'), args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KAFKA_HEAP: '-Xms256m -Xmx512m' } });
    let text = '';
    p.stdout.setEncoding('utf8').on('data', (c: string) => { text += c; });
    p.stderr.setEncoding('utf8').on('data', (c: string) => { text += c; });
    const timer = setTimeout(() => p.kill('SIGKILL'), (o.durationS + o.warmupS) * 1000 * 4 + 60_000);
    p.on('exit', (code) => { clearTimeout(timer); code === 0 ? resolve(text) : reject(new Error(`perf-producer exited ${code}: ${text.slice(-2000)}`)); });
  });
  const load = m.stop();
  const r = parsePerfTest(out);
  if (!r) throw new Error(`cannot parse perf-producer output: ${out.slice(-1000)}`);
  return {
    part: sidePart(o), target: 'kafka-perf-test', rate, achievedRate: Math.round(r.rate), sent: r.sent, acked: r.sent, errors: n - r.sent,
    latencyUs: r.latencyUs, ...(load ? { machineBusyPct: load.busyPct } : {}), loadAvg1: Math.round((loadavg()[0] ?? 0) * 10) / 10,
    note: 'ms resolution; p90 column is its 95th; includes JVM warm-up',
  };
}

// ---------------------------------------------------------------- (a) end to end through the bridge

interface BridgeRun { stop(): Promise<void>; output(): string }

function startBridge(nodeUrl: string, o: Opts, group: string, mappings: Array<{ chicago: string; kafka: string }>, mode = 'exactly-once'): BridgeRun {
  const dir = mkdtempSync(join(tmpdir(), 'chicago-bench-bridge-'));
  const file = join(dir, 'bridge.json');
  writeFileSync(file, JSON.stringify({
    chicago: { url: nodeUrl }, kafka: { brokers: o.brokers, createTopics: { partitions: PARTITIONS } },
    group, mode, mappings, limits: { fetchWaitMs: 100 }, logLevel: 'warn',
  }));
  const p = spawn(process.execPath, [join(repoRoot(), 'dist/src/cli/main.js'), 'bridge', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (c: string) => { out = (out + c).slice(-8000); };
  p.stdout.setEncoding('utf8').on('data', keep);
  p.stderr.setEncoding('utf8').on('data', keep);
  const exited = new Promise<void>((r) => p.on('exit', () => r()));
  return {
    output: () => out,
    stop: async () => {
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** a read_committed consumer of `topic` calling onValue for every record */
async function consume(o: Opts, topic: string, onValue: (v: Buffer) => void): Promise<() => Promise<void>> {
  const c = kafka(o.brokers).consumer({ groupId: `bench-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`, readUncommitted: false, maxWaitTimeInMs: 20, maxBytesPerPartition: 8 << 20 });
  await c.connect();
  await c.subscribe({ topics: [topic], fromBeginning: true });
  let ready!: () => void;
  const joined = new Promise<void>((r) => { ready = r; });
  c.on(c.events.GROUP_JOIN, () => ready());
  await c.run({ eachBatch: async ({ batch }) => { for (const m of batch.messages) if (m.value) onValue(m.value); } });
  await joined;
  return () => c.disconnect();
}

async function e2e(ch: Chicago, rate: number, o: Opts): Promise<Row> {
  const id = `${Date.now().toString(36)}-${rate}`;
  const topic = `e2e-${id}`;
  const kTopic = `k-e2e-${id}`;
  const t = await chicagoTopic(ch, topic);
  await createKafkaTopic(o, kTopic);
  const bridge = startBridge(ch.url, o, `bench-${id}`, [{ chicago: topic, kafka: kTopic }]);
  const batch = batchFor(rate);
  const lo = loop(rate, o, batch);
  const warmRecords = Math.round(o.warmupS * rate / batch) * batch;
  const total = warmRecords + Math.max(1, Math.round(o.durationS * rate / batch)) * batch;
  const from = new Float64Array(total).fill(-1);
  const h = newHistogram();
  let got = 0;
  const stopConsumer = await consume(o, kTopic, (v) => {
    const i = Number(v.toString('latin1', 0, 12).split(':')[0]);
    if (!(i >= 0 && i < total) || from[i]! < 0) return;
    if (i >= warmRecords) { recordUs(h, nowUs() - from[i]!); got++; }
    from[i] = -1;
  });
  const driver = await chicagoDriver(ch);
  try {
    const m = new MachineSampler();
    const r = await runOpenLoop(lo, (k, fromUs) => {
      const vals: Buffer[] = [];
      for (let j = 0; j < batch; j++) { const i = k * batch + j; if (i < total) { from[i] = fromUs; vals.push(value(i)); } }
      return driver.produce(topic, vals, PARTITIONS);
    });
    const want = r.acked;
    const until = Date.now() + 30_000;
    while (got < want && Date.now() < until) await new Promise((res) => setTimeout(res, 50));
    const load = m.stop();
    const missing = want - got;
    return {
      part: 'e2e', target: 'chicago→bridge→kafka', rate, achievedRate: Math.round(r.ackedPerSecond), sent: r.sent, acked: got,
      errors: r.errors + Math.max(0, missing), latencyUs: summarize(h), ...(load ? { machineBusyPct: load.busyPct } : {}),
      loadAvg1: Math.round((loadavg()[0] ?? 0) * 10) / 10,
      note: `exactly-once; Chicago ack p99 ${ms(summarize(r.latency).p99)} ms${missing > 0 ? `; ${missing} not seen in Kafka within 30 s` : ''}`,
    };
  } finally {
    await driver.close();
    await stopConsumer();
    await bridge.stop();
    await t.drop();
  }
}

/** A backlog in Chicago drained by a fresh bridge: its throughput. */
async function bridgeThroughput(ch: Chicago, o: Opts, mode: 'exactly-once' | 'at-least-once'): Promise<{ mode: string; records: number; seconds: number; recordsPerS: number; MBps: number }> {
  const id = `${Date.now().toString(36)}-tp`;
  const topic = `tp-${id}`;
  const kTopic = `k-tp-${id}`;
  const t = await chicagoTopic(ch, topic);
  await createKafkaTopic(o, kTopic);
  const driver = await chicagoDriver(ch);
  const B = 1000;
  const vals = Array.from({ length: B }, (_, i) => value(i));
  for (let i = 0; i < o.backlog; i += B * PARTITIONS) await Promise.all(Array.from({ length: PARTITIONS }, () => driver.produce(topic, vals, PARTITIONS)));
  await driver.close();
  const records = Math.ceil(o.backlog / (B * PARTITIONS)) * B * PARTITIONS;
  let got = 0;
  let lastAt = 0;
  const stopConsumer = await consume(o, kTopic, () => { got++; lastAt = Date.now(); });
  const t0 = Date.now();
  const bridge = startBridge(ch.url, o, `bench-${id}`, [{ chicago: topic, kafka: kTopic }], mode);
  try {
    const until = Date.now() + 300_000;
    while (got < records && Date.now() < until) await new Promise((res) => setTimeout(res, 100));
    if (got < records) throw new Error(`bridge delivered ${got} of ${records} in 300 s\n${bridge.output()}`);
  } finally {
    await stopConsumer();
    await bridge.stop();
    await t.drop();
  }
  // includes the bridge's start (process, recovery) — a conservative figure
  const seconds = (lastAt - t0) / 1000;
  return { mode, records, seconds: Math.round(seconds * 10) / 10, recordsPerS: Math.round(records / seconds), MBps: Math.round((records * RECORD_BYTES) / seconds / 1e5) / 10 };
}

// ---------------------------------------------------------------- report

function bestUnder(rows: Row[], target: Row['target']): number {
  const ok = rows.filter((r) => r.target === target && r.errors === 0 && r.achievedRate >= 0.95 * r.rate && r.latencyUs.p99 <= P99_LIMIT_US);
  return ok.reduce((m, r) => Math.max(m, r.rate), 0);
}

function markdown(rows: Row[], tp: Awaited<ReturnType<typeof bridgeThroughput>>[], o: Opts): string {
  const mi = machineInfo();
  const head = `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${mi.cpus.count}× ${mi.cpus.model}, ${mi.memGiB} GiB, ${mi.node}, git ${mi.gitRev ?? '?'}; `
    + `${o.durationS} s measured after ${o.warmupS} s warm-up per rate; ${RECORD_BYTES} B records, ${PARTITIONS} partitions, acks=all, `
    + (o.cluster
      ? `replication ${CLUSTER_SIZE}: Chicago ${CLUSTER_SIZE} nodes (and a private etcd), topics with N=${CLUSTER_SIZE}; Kafka 4.1.1 (${CLUSTER_SIZE} combined KRaft broker+controllers, `
        + `default settings, -Xmx512m each), topics with replication factor ${CLUSTER_SIZE}, min.insync.replicas=${CLUSTER_MIN_ISR}; both clusters run on this machine throughout.`
      : 'replication 1; Kafka 4.1.1 (1 KRaft broker, default settings, -Xmx512m).');
  const title = o.cluster ? `**Replicated, side by side** (${CLUSTER_SIZE} nodes vs ${CLUSTER_SIZE} brokers; ` : '**Side by side** (';
  const lines = [head, '', `${title}latency from the intended send time for the open-loop rows; ms):`, '',
    '| rate rec/s | Chicago p50 / p99 | Kafka·kafkajs p50 / p99 | Kafka·perf-test p50 / p99 | p99 Chicago ÷ kafkajs | p99 Chicago ÷ perf-test | load avg |',
    '|---:|---:|---:|---:|---:|---:|---:|'];
  const cell = (r: Row | undefined) => (r ? `${ms(r.latencyUs.p50)} / ${ms(r.latencyUs.p99)}${r.errors > 0 || r.achievedRate < 0.95 * r.rate ? ` (got ${r.achievedRate}/s${r.errors ? `, ${r.errors} err` : ''})` : ''}` : '–');
  const ratio = (a: Row | undefined, b: Row | undefined) => (a && b && b.latencyUs.p99 > 0 ? (a.latencyUs.p99 / b.latencyUs.p99).toFixed(2) : '–');
  for (const rate of o.rates) {
    const c = rows.find((r) => r.target === 'chicago' && r.rate === rate);
    const j = rows.find((r) => r.target === 'kafkajs' && r.rate === rate);
    const p = rows.find((r) => r.target === 'kafka-perf-test' && r.rate === rate);
    const la = [c, j, p].filter(Boolean).map((r) => r!.loadAvg1);
    lines.push(`| ${rate} | ${cell(c)} | ${cell(j)} | ${cell(p)} | ${ratio(c, j)} | ${ratio(c, p)} | ${la.length ? Math.max(...la) : '–'} |`);
  }
  lines.push('', `Highest rate tried with p99 ≤ 10 ms (no errors, ≥ 95 % of the rate achieved): Chicago ${bestUnder(rows, 'chicago')}, `
    + `Kafka·kafkajs ${bestUnder(rows, 'kafkajs')}, Kafka·perf-test ${bestUnder(rows, 'kafka-perf-test')} records/s (of ${o.rates.join(', ')}).`);
  const e = rows.filter((r) => r.part === 'e2e');
  if (e.length) {
    lines.push('', '**End to end** Chicago produce (acks=all) → bridge (exactly-once, `chicago bridge` process) → Kafka, seen by a read_committed consumer (ms):', '',
      '| rate rec/s | p50 | p90 | p99 | max | delivered | note |', '|---:|---:|---:|---:|---:|---:|---|');
    for (const r of e) lines.push(`| ${r.rate} | ${ms(r.latencyUs.p50)} | ${ms(r.latencyUs.p90)} | ${ms(r.latencyUs.p99)} | ${ms(r.latencyUs.max)} | ${r.acked}/${r.sent} | ${r.note ?? ''} |`);
  }
  if (tp.length) {
    lines.push('', '**Bridge throughput** (a backlog already in Chicago drained into Kafka; includes the bridge process start):', '',
      '| mode | records | seconds | records/s | MB/s (values) |', '|---|---:|---:|---:|---:|');
    for (const t of tp) lines.push(`| ${t.mode} | ${t.records} | ${t.seconds} | ${t.recordsPerS} | ${t.MBps} |`);
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  log(`machine: ${cpus().length} cpus, load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const rows: Row[] = [];
  const tp: Awaited<ReturnType<typeof bridgeThroughput>>[] = [];
  await checkBrokers(o);
  const ch = await startChicago(o);
  const say = (r: Row) => log(`${r.part} ${r.target} @${r.rate}/s: p50 ${ms(r.latencyUs.p50)} p99 ${ms(r.latencyUs.p99)} ms, achieved ${r.achievedRate}/s, errors ${r.errors}, load ${r.loadAvg1}`);
  try {
    for (const rate of o.rates) {
      if (!o.skip.has('chicago')) { rows.push(await sideChicago(ch, rate, o)); say(rows.at(-1)!); }
      if (!o.skip.has('kafkajs')) { rows.push(await sideKafkajs(rate, o)); say(rows.at(-1)!); }
      if (!o.skip.has('perf')) { rows.push(await sidePerfTest(rate, o)); say(rows.at(-1)!); }
    }
    if (!o.skip.has('e2e')) {
      for (const rate of o.e2eRates) { rows.push(await e2e(ch, rate, o)); say(rows.at(-1)!); }
    }
    if (!o.skip.has('throughput')) {
      for (const mode of ['exactly-once', 'at-least-once'] as const) {
        tp.push(await bridgeThroughput(ch, o, mode));
        log(`bridge throughput ${mode}: ${JSON.stringify(tp.at(-1))}`);
      }
    }
  } finally {
    await ch.stop();
  }
  const md = markdown(rows, tp, o);
  process.stdout.write(md);
  const result = { machine: machineInfo(), timestamp: new Date().toISOString(), options: { ...o, skip: [...o.skip] }, rows, bridgeThroughput: tp, markdown: md };
  if (o.json) writeFileSync(o.json, JSON.stringify(result, null, 2));
  if (o.md) writeFileSync(o.md, md);
}

if (process.argv[1] && /kafka-compare\.[jt]s$/.test(process.argv[1])) {
  main().then(() => process.exit(0), (e: unknown) => {
    process.stderr.write(`kafka-compare: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
