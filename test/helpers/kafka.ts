// A real Apache Kafka for tests, started through scripts/kafka.sh (which fetches the jars with
// Maven once, formats KRaft storage and waits until the brokers answer metadata requests).
// Brokers outlive the test process so the next run reuses them; `scripts/kafka.sh down` stops them.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import kafkajs from 'kafkajs';
import { slow } from './slow.js';

const run = promisify(execFile);
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const kafkaScript = path.join(repoRoot, 'scripts/kafka.sh');

/** the shared test broker; tests that stop their broker use their own port */
export const DEFAULT_KAFKA_PORT = 19092;
/** first fetch of the jars plus apt-get kcat can take a while on a fresh machine */
const UP_TIMEOUT_MS = slow(240_000);
const CMD_TIMEOUT_MS = slow(60_000);

export interface KafkaOptions { port?: number; brokers?: 1 | 3; fresh?: boolean }

const started = new Map<string, Promise<string[]>>();

/**
 * Test brokers start with the client JIT only (C1): it cuts a broker's start-up, most of what a
 * test that starts or restarts Kafka waits for, by a third or more; their load is small.
 * Benchmarks start their own brokers without it.
 */
const TEST_JVM_OPTS = process.env.KAFKA_JVM_OPTS ?? '-XX:TieredStopAtLevel=1';

async function script(args: string[], timeoutMs: number): Promise<string> {
  try {
    const { stdout } = await run(kafkaScript, args, {
      cwd: repoRoot, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, KAFKA_JVM_OPTS: TEST_JVM_OPTS },
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string; stdout?: string };
    throw new Error(`scripts/kafka.sh ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

/** Starts (or reuses) the Kafka cluster on `port`; returns its bootstrap brokers. Once per process. */
export function ensureKafka(opts: KafkaOptions = {}): Promise<string[]> {
  const port = opts.port ?? DEFAULT_KAFKA_PORT;
  const brokers = opts.brokers ?? 1;
  const id = `${port}/${brokers}/${opts.fresh ? 'fresh' : ''}`;
  let p = started.get(id);
  if (!p) {
    const args = ['up', '--brokers', String(brokers), '--port', String(port), ...(opts.fresh ? ['--fresh'] : [])];
    p = script(args, UP_TIMEOUT_MS).then((out) => out.trim().split('\n').pop()!.split(','));
    p.catch(() => started.delete(id));
    started.set(id, p);
  }
  return p;
}

/** Stops the cluster on `port` cleanly (its data stays). */
export async function kafkaDown(port: number = DEFAULT_KAFKA_PORT): Promise<void> {
  await script(['down', '--port', String(port)], CMD_TIMEOUT_MS);
  for (const id of [...started.keys()]) if (id.startsWith(`${port}/`)) started.delete(id);
}

/** Starts a stopped cluster again on the same data. */
export async function kafkaUp(port: number = DEFAULT_KAFKA_PORT, brokers: 1 | 3 = 1): Promise<string[]> {
  const out = await script(['up', '--brokers', String(brokers), '--port', String(port)], UP_TIMEOUT_MS);
  return out.trim().split('\n').pop()!.split(',');
}

export function kafkaClient(brokers: string[], clientId = 'chicago-test'): kafkajs.Kafka {
  return new kafkajs.Kafka({
    clientId,
    brokers,
    logLevel: kafkajs.logLevel.NOTHING,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2_000 },
  });
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

export async function createTopic(brokers: string[], topic: string, partitions = 1, config: Record<string, string> = {}): Promise<void> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic, numPartitions: partitions, configEntries: Object.entries(config).map(([name, value]) => ({ name, value })) }],
    });
  } finally {
    await admin.disconnect();
  }
}

export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: string | null;
  headers: Record<string, string>;
}

/**
 * Reads `topic` from the beginning with a fresh group until `count` records arrived or nothing new
 * came for `idleMs` after `minMs`. `readCommitted` hides aborted transactional records.
 *
 * Each Kafka (partition, offset) is returned once: a group consumer delivers records again after
 * a rebalance (e.g. when the group coordinator moved to another broker), and that is not a second
 * copy in Kafka. A record written twice has two offsets and is returned twice.
 */
export async function consumeAll(
  brokers: string[],
  topic: string,
  opts: { count?: number; idleMs?: number; timeoutMs?: number; readCommitted?: boolean } = {},
): Promise<ConsumedRecord[]> {
  const kafka = kafkaClient(brokers, 'chicago-test-consumer');
  const consumer = kafka.consumer({
    groupId: uniqueName('check'),
    readUncommitted: !(opts.readCommitted ?? true),
    maxWaitTimeInMs: 200,
  });
  const out: ConsumedRecord[] = [];
  const seen = new Set<string>();
  // "nothing new for idleMs" ends a read without a count: on a busy machine records come slower
  const idleMs = slow(opts.idleMs ?? 3_000);
  const deadline = Date.now() + slow(opts.timeoutMs ?? 60_000);
  let last = Date.now();
  await waitForTopic(brokers, topic, deadline - Date.now());
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ topic: t, partition, message }) => {
        last = Date.now();
        const at = `${partition}/${message.offset}`;
        if (seen.has(at)) return;
        seen.add(at);
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = v.toString();
        out.push({
          topic: t,
          partition,
          offset: Number(message.offset),
          key: message.key ? message.key.toString() : null,
          value: message.value ? message.value.toString() : null,
          headers,
        });
      },
    });
    while (Date.now() < deadline) {
      if (opts.count !== undefined && out.length >= opts.count && Date.now() - last > slow(300)) break;
      if (opts.count === undefined && out.length > 0 && Date.now() - last > idleMs) break;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await consumer.disconnect();
  }
  return out;
}

/** Waits until `topic` exists with leaders for every partition (a bridge may create it later). */
export async function waitForTopic(brokers: string[], topic: string, timeoutMs: number): Promise<void> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const ok = await admin.fetchTopicMetadata({ topics: [topic] }).then(
        (m) => m.topics[0]!.partitions.length > 0 && m.topics[0]!.partitions.every((p) => p.leader >= 0),
        () => false,
      );
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`Kafka topic ${topic} did not appear within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await admin.disconnect();
  }
}

/**
 * Debian's kcat as an independent consumer: every record of `topic` from the start, as JSON. It
 * ends at the end of every partition (-e), so it waits for no idle time; `readCommitted: false`
 * includes what aborted transactions left.
 */
export async function kcatConsume(brokers: string[], topic: string, idleMs = 30_000, readCommitted = true): Promise<ConsumedRecord[]> {
  const timeoutMs = slow(idleMs);
  const { stdout } = await run(
    'kcat',
    ['-C', '-b', brokers.join(','), '-t', topic, '-o', 'beginning', '-e', '-J', '-q', '-X', `isolation.level=${readCommitted ? 'read_committed' : 'read_uncommitted'}`],
    { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024 },
  );
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const j = JSON.parse(l) as { topic: string; partition: number; offset: number; key: string | null; payload: string | null; headers?: string[] };
      const headers: Record<string, string> = {};
      const h = j.headers ?? [];
      for (let i = 0; i + 1 < h.length; i += 2) headers[h[i]!] = h[i + 1]!;
      return { topic: j.topic, partition: j.partition, offset: j.offset, key: j.key, value: j.payload, headers };
    });
}
