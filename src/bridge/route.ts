// Pure pieces of the bridge: which Kafka topic and partition a Chicago record goes to, the headers
// it carries, how big Kafka will see it, and how records are cut into capped requests.
import type { ChicagoRecord } from './chicago.js';
import { type Mapping, globMatches } from './config.js';

/** header names every bridged Kafka record carries */
export const H = {
  host: 'host',
  task: 'task',
  source: 'source',
  seq: 'seq',
  topic: 'chicago-topic',
  partition: 'chicago-partition',
  offset: 'chicago-offset',
  timestamp: 'timestamp',
} as const;

export interface OutMessage {
  topic: string;
  /** undefined: Kafka's default partitioner (murmur2 of the key, as the Java client) */
  partition: number | undefined;
  key: Buffer | null;
  value: Buffer;
  headers: Record<string, string>;
  timestamp: string;
  /** estimated bytes this record takes in a Kafka produce request */
  bytes: number;
  offset: number;
}

/** bytes a request needs besides its records, and each record/partition batch besides its payload */
export const REQUEST_OVERHEAD_BYTES = 1024;
export const BATCH_OVERHEAD_BYTES = 128;
const RECORD_OVERHEAD_BYTES = 40;
const HEADER_OVERHEAD_BYTES = 12;

export function mappingFor(mappings: readonly Mapping[], chicagoTopic: string): Mapping | undefined {
  return mappings.find((m) => globMatches(m.chicago, chicagoTopic));
}

/** Header values become topic-name characters: anything else is replaced with `_`. */
function topicPart(v: string | undefined, missing: string): string {
  if (v === undefined || v === '') return missing;
  return v.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
}

export function kafkaTopicOf(m: Mapping, chicagoTopic: string, rec: Pick<ChicagoRecord, 'partition' | 'headers'>): string {
  const t = m.kafka.replace(/\$\{(task|host|source|topic|partition)\}/g, (_all, name: string) => {
    if (name === 'topic') return chicagoTopic;
    if (name === 'partition') return String(rec.partition);
    return topicPart(rec.headers[name], m.missing);
  });
  return t.slice(0, 249);
}

/** Kafka's murmur2 (the Java client's key partitioner), so header routing matches Java producers. */
export function murmur2(data: Uint8Array): number {
  const m = 0x5bd1e995;
  const len = data.length;
  let h = (0x9747b28c ^ len) | 0;
  const len4 = len >>> 2;
  for (let i = 0; i < len4; i++) {
    const i4 = i * 4;
    let k = (data[i4] & 0xff) + ((data[i4 + 1] & 0xff) << 8) + ((data[i4 + 2] & 0xff) << 16) + ((data[i4 + 3] & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const rest = len % 4;
  const idx = len & ~3;
  if (rest === 3) h ^= (data[idx + 2] & 0xff) << 16;
  if (rest >= 2) h ^= (data[idx + 1] & 0xff) << 8;
  if (rest >= 1) {
    h ^= data[idx] & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h;
}

/**
 * The Kafka partition, always explicit (never left to kafkajs, whose metadata may be stale): by key
 * it is the Java client's `toPositive(murmur2(key)) % partitions`; a record without a key goes by
 * its Chicago partition.
 */
export function partitionOf(m: Mapping, rec: Pick<ChicagoRecord, 'partition' | 'headers' | 'key'>, kafkaPartitions: number): number {
  if (m.partitionBy === 'key') return rec.key && rec.key.length > 0 ? (murmur2(rec.key) & 0x7fffffff) % kafkaPartitions : rec.partition % kafkaPartitions;
  if (m.partitionBy === 'chicago-partition') return rec.partition % kafkaPartitions;
  const name = m.partitionBy.slice('header:'.length);
  const v = rec.headers[name] ?? m.missing;
  return (murmur2(Buffer.from(v)) & 0x7fffffff) % kafkaPartitions;
}

export function estimateBytes(key: Buffer | null, value: Buffer, headers: Record<string, string>): number {
  let n = RECORD_OVERHEAD_BYTES + (key?.length ?? 0) + value.length;
  for (const [k, v] of Object.entries(headers)) n += HEADER_OVERHEAD_BYTES + Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

/**
 * Sequence counters of one Chicago partition: per task, the last `seq` the bridge gave. Bounded:
 * past `max` tasks the least recently used is forgotten (its next record starts again at 1).
 */
export class TaskSeqs {
  private readonly m: Map<string, number>;
  constructor(private readonly max: number, init?: Iterable<[string, number]>) {
    this.m = new Map(init);
  }
  next(task: string): number {
    const n = (this.m.get(task) ?? 0) + 1;
    this.m.delete(task); // re-insert: the Map's order is the recency order
    this.m.set(task, n);
    if (this.m.size > this.max) this.m.delete(this.m.keys().next().value!);
    return n;
  }
  clone(): TaskSeqs { return new TaskSeqs(this.max, this.m); }
  toJSON(): Record<string, number> { return Object.fromEntries(this.m); }
  get size(): number { return this.m.size; }
}

/** The Kafka record for one Chicago record; `seqs` is advanced when the record has no `seq` header. */
export function toKafka(
  m: Mapping,
  chicagoTopic: string,
  rec: ChicagoRecord,
  seqs: TaskSeqs,
  kafkaPartitions: (topic: string) => number,
): OutMessage {
  const topic = kafkaTopicOf(m, chicagoTopic, rec);
  const task = rec.headers.task ?? '';
  const headers: Record<string, string> = {
    ...rec.headers,
    [H.host]: rec.headers.host ?? '',
    [H.task]: task,
    [H.source]: rec.headers.source ?? '',
    [H.seq]: rec.headers.seq ?? String(seqs.next(task)),
    [H.topic]: chicagoTopic,
    [H.partition]: String(rec.partition),
    [H.offset]: String(rec.offset),
    [H.timestamp]: String(rec.timestamp),
  };
  const key = rec.key ?? null;
  return {
    topic,
    partition: partitionOf(m, rec, kafkaPartitions(topic)),
    key,
    value: rec.value,
    headers,
    timestamp: String(rec.timestamp),
    bytes: estimateBytes(key, rec.value, headers),
    offset: rec.offset,
  };
}

/** the largest record that fits a request on its own */
export function recordBytesMax(maxRequestBytes: number): number {
  return maxRequestBytes - REQUEST_OVERHEAD_BYTES - BATCH_OVERHEAD_BYTES;
}

/**
 * Cuts messages (kept in order) into requests of at most `maxRequestBytes` estimated bytes.
 * Every message must fit alone (callers route bigger ones to the dead-letter topic first).
 */
export function chunk(messages: readonly OutMessage[], maxRequestBytes: number): OutMessage[][] {
  const out: OutMessage[][] = [];
  let cur: OutMessage[] = [];
  let bytes = REQUEST_OVERHEAD_BYTES;
  let batches = new Set<string>();
  for (const msg of messages) {
    const batchId = `${msg.topic}/${msg.partition ?? 'k'}`;
    // Unknown partitions (key-hashed) may each open a batch: count the worst case.
    const add = msg.bytes + (batches.has(batchId) && msg.partition !== undefined ? 0 : BATCH_OVERHEAD_BYTES);
    if (msg.bytes > recordBytesMax(maxRequestBytes)) throw new Error(`record of ${msg.bytes} bytes cannot fit a request of ${maxRequestBytes}`);
    if (cur.length > 0 && bytes + add > maxRequestBytes) {
      out.push(cur);
      cur = [];
      bytes = REQUEST_OVERHEAD_BYTES;
      batches = new Set();
    }
    cur.push(msg);
    bytes += msg.bytes + (batches.has(batchId) && msg.partition !== undefined ? 0 : BATCH_OVERHEAD_BYTES);
    batches.add(batchId);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}
