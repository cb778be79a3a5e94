// `chicago kafka-tail`: the consumer-side helper. Reads a Kafka topic the bridge writes (read
// committed) and prints the records whose headers match the filters as JSON lines
// {"topic","partition","offset","timestamp","key","value","headers"}.
import { randomUUID } from 'node:crypto';
import kafkajs from 'kafkajs';

export interface KafkaTailOptions {
  brokers: string[];
  topic: string;
  /** header filters, all must match: e.g. { task: 'web' } */
  headers: Record<string, string>;
  fromBeginning: boolean;
  /** keep reading; otherwise stop once nothing new arrived for `idleMs` */
  follow: boolean;
  idleMs?: number;
  /** stop after this many matching records */
  limit?: number;
  /** Kafka consumer group; default a fresh one (nothing committed) */
  group?: string;
  out?: (line: string) => void;
}

/** Prints matching records; resolves with how many were printed. */
export async function runKafkaTail(o: KafkaTailOptions): Promise<number> {
  const out = o.out ?? ((l: string) => process.stdout.write(l + '\n'));
  const kafka = new kafkajs.Kafka({ clientId: 'chicago-kafka-tail', brokers: o.brokers, logLevel: kafkajs.logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: o.group ?? `chicago-kafka-tail-${randomUUID()}`, readUncommitted: false, maxWaitTimeInMs: 200 });
  const idleMs = o.idleMs ?? 2_000;
  let printed = 0;
  let last = Date.now();
  let stop!: () => void;
  const stopped = new Promise<void>((r) => { stop = r; });
  const onSignal = () => stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [o.topic], fromBeginning: o.fromBeginning });
    await consumer.run({
      autoCommit: o.group !== undefined,
      eachMessage: async ({ topic, partition, message }) => {
        last = Date.now();
        if (o.limit !== undefined && printed >= o.limit) return;
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = Array.isArray(v) ? v.map(String).join(',') : v.toString();
        for (const [k, v] of Object.entries(o.headers)) if (headers[k] !== v) return;
        out(JSON.stringify({
          topic, partition, offset: Number(message.offset), timestamp: Number(message.timestamp),
          key: message.key?.toString() ?? null, value: message.value?.toString() ?? null, headers,
        }));
        printed++;
        if (o.limit !== undefined && printed >= o.limit) stop();
      },
    });
    if (!o.follow) {
      const timer = setInterval(() => { if (Date.now() - last > idleMs) stop(); }, 100);
      await stopped;
      clearInterval(timer);
    } else {
      await stopped;
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await consumer.disconnect().catch(() => undefined);
  }
  return printed;
}
