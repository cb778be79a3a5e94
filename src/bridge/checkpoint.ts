// Checkpoints: where each Chicago partition's delivery stands, kept in a compacted Kafka topic and
// written in the same transaction as the records (exactly-once), so Kafka alone says what was sent.
//
// Key   = JSON {"g":group,"t":chicagoTopic,"p":partition}  (JSON, never an in-band delimiter)
// Value = JSON {"v":1,"next":offset,"seqs":{task:lastSeq},"atMs":…}
// A probe record {"g":group,"probe":true} → {"nonce"} marks "everything before me is read".
import { randomUUID } from 'node:crypto';
import kafkajs from 'kafkajs';

export interface Checkpoint { topic: string; partition: number; next: number; seqs: Record<string, number> }

export const CHECKPOINT_VERSION = 1;

export function checkpointKey(group: string, topic: string, partition: number): string {
  return JSON.stringify({ g: group, t: topic, p: partition });
}
export function checkpointValue(next: number, seqs: Record<string, number>, nowMs: number): string {
  return JSON.stringify({ v: CHECKPOINT_VERSION, next, seqs, atMs: nowMs });
}
export function probeKey(group: string): string {
  return JSON.stringify({ g: group, probe: true });
}
export function newProbe(): string {
  return JSON.stringify({ nonce: randomUUID() });
}

export function partKey(topic: string, partition: number): string {
  return JSON.stringify([topic, partition]);
}

/** Applies one checkpoint-topic record to `into`; records of other groups and probes are skipped. */
export function applyCheckpointRecord(group: string, key: Buffer | null, value: Buffer | null, into: Map<string, Checkpoint>): void {
  if (!key) return;
  let k: { g?: unknown; t?: unknown; p?: unknown; probe?: unknown };
  try {
    k = JSON.parse(key.toString('utf8')) as typeof k;
  } catch {
    return;
  }
  if (k.g !== group || k.probe || typeof k.t !== 'string' || typeof k.p !== 'number') return;
  const id = partKey(k.t, k.p);
  if (!value) { // a tombstone: the partition's checkpoint was removed
    into.delete(id);
    return;
  }
  const v = JSON.parse(value.toString('utf8')) as { v: number; next: number; seqs?: Record<string, number> };
  if (v.v !== CHECKPOINT_VERSION) throw new Error(`checkpoint of ${id} has version ${v.v}; this bridge reads ${CHECKPOINT_VERSION}`);
  if (!Number.isSafeInteger(v.next) || v.next < 0) throw new Error(`checkpoint of ${id} has a bad offset ${String(v.next)}`);
  into.set(id, { topic: k.t, partition: k.p, next: v.next, seqs: v.seqs ?? {} });
}

/**
 * Reads every committed checkpoint of `group` from the start of `topic` until the record whose
 * value is `probe` (written by the caller after its producer fenced any older one), read_committed.
 */
export async function readCheckpoints(
  kafka: kafkajs.Kafka,
  topic: string,
  group: string,
  probe: string,
  timeoutMs: number,
): Promise<Map<string, Checkpoint>> {
  const out = new Map<string, Checkpoint>();
  const consumer = kafka.consumer({
    groupId: `chicago-bridge-reader-${randomUUID()}`,
    readUncommitted: false,
    maxWaitTimeInMs: 100,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
  });
  let done!: () => void;
  let failed!: (e: Error) => void;
  const finished = new Promise<void>((resolve, reject) => { done = resolve; failed = reject; });
  const timer = setTimeout(() => failed(new Error(`checkpoint topic ${topic} not read to its end in ${timeoutMs} ms`)), timeoutMs);
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        try {
          if (message.value && message.value.toString('utf8') === probe) done();
          else applyCheckpointRecord(group, message.key, message.value, out);
        } catch (e) {
          failed(e as Error);
        }
      },
    });
    await finished;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => undefined);
  }
  return out;
}
