// The bridge's pure parts: config validation, routing, headers, request capping, checkpoints.
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyCheckpointRecord, type Checkpoint, checkpointKey, checkpointValue, partKey } from '../src/bridge/checkpoint.js';
import type { ChicagoRecord } from '../src/bridge/chicago.js';
import { checkWritten, sendByPartition } from '../src/bridge/bridge.js';
import { Ajv } from 'ajv';
import { BridgeConfigError, bridgeConfigSchema, globMatches, resolveBridgeConfig } from '../src/bridge/config.js';
import { checkExactlyOnce } from './helpers/bridge.js';
import { REQUEST_OVERHEAD_BYTES, TaskSeqs, chunk, kafkaTopicOf, mappingFor, murmur2, recordBytesMax, toKafka } from '../src/bridge/route.js';

const base = { kafka: { brokers: ['127.0.0.1:9092'] }, mappings: [{ chicago: 'logs', kafka: 'logs' }] };

function rec(partial: Partial<ChicagoRecord>): ChicagoRecord {
  const value = partial.value ?? Buffer.from('v');
  return { partition: 0, offset: 0, timestamp: 1000, key: undefined, headers: {}, bytes: value.length, ...partial, value };
}

describe('bridge config', () => {
  it('has a schema that is valid JSON Schema (a start does not check it against the meta-schema)', () => {
    const ajv = new Ajv({ strict: true });
    expect(ajv.validateSchema(bridgeConfigSchema), ajv.errorsText()).toBe(true);
  });

  it('fills defaults and derives names from the group', () => {
    const c = resolveBridgeConfig(base);
    expect(c.mode).toBe('exactly-once');
    expect(c.group).toBe('kafka-bridge');
    expect(c.kafka.checkpointTopic).toBe('chicago-bridge.kafka-bridge.checkpoints');
    expect(c.deadLetter.topic).toBe('kafka-bridge.dead-letter');
    expect(c.limits.maxRequestBytes).toBeLessThan(20 * 1000 * 1000);
    expect(c.mappings[0].partitionBy).toBe('key');
  });

  it('rejects unknown keys, at any depth, and explains renamed ones', () => {
    expect(() => resolveBridgeConfig({ ...base, colour: 'red' })).toThrow(/unknown key "colour"/);
    expect(() => resolveBridgeConfig({ ...base, limits: { maxRequestBytez: 1 } })).toThrow(/unknown key "maxRequestBytez"/);
    expect(() => resolveBridgeConfig({ ...base, topics: [] })).toThrow(/use "mappings"/);
    expect(() => resolveBridgeConfig({ ...base, mode: 'twice' })).toThrow(BridgeConfigError);
  });

  it('caps request size under 20 MB and checks relations', () => {
    expect(() => resolveBridgeConfig({ ...base, limits: { maxRequestBytes: 20 * 1000 * 1000 } })).toThrow(/maxRequestBytes/);
    expect(() => resolveBridgeConfig({ ...base, limits: { maxRequestBytes: 2_000_000, roundBytesMax: 1_000_000 } })).toThrow(/roundBytesMax/);
    expect(() => resolveBridgeConfig({ ...base, mappings: [{ chicago: '*', kafka: 'all' }] })).toThrow(/dead-letter/);
    expect(() => resolveBridgeConfig({ ...base, mappings: [{ chicago: 'a', kafka: 'x-${nope}' }] })).toThrow(BridgeConfigError);
  });

  it('matches topic patterns', () => {
    expect(globMatches('logs.*', 'logs.web')).toBe(true);
    expect(globMatches('logs.*', 'logsXweb')).toBe(false);
    expect(globMatches('logs', 'logs')).toBe(true);
    expect(globMatches('*-prod', 'a.b-prod')).toBe(true);
  });
});

describe('bridge routing', () => {
  const cfg = resolveBridgeConfig({
    ...base,
    mappings: [
      { chicago: 'app.*', kafka: 'app-${task}', partitionBy: 'header:host' },
      { chicago: 'logs', kafka: '${topic}-${host}', missing: 'nohost' },
    ],
  });

  it('picks the first matching mapping and substitutes headers safely', () => {
    const m = mappingFor(cfg.mappings, 'app.x')!;
    expect(kafkaTopicOf(m, 'app.x', rec({ headers: { task: 'web/1 a' } }))).toBe('app-web_1_a');
    expect(kafkaTopicOf(m, 'app.x', rec({}))).toBe('app-unknown');
    const l = mappingFor(cfg.mappings, 'logs')!;
    expect(kafkaTopicOf(l, 'logs', rec({ headers: { host: 'h1' } }))).toBe('logs-h1');
    expect(kafkaTopicOf(l, 'logs', rec({}))).toBe('logs-nohost');
    expect(mappingFor(cfg.mappings, 'other')).toBeUndefined();
  });

  it('murmur2 equals the Java client (kafkajs implementation) for any bytes', () => {
    const require = createRequire(import.meta.url);
    const ref = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (k: Buffer) => number;
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (a) => murmur2(a) === ref(Buffer.from(a))));
  });

  it('sets every header and gives per-task sequences; an existing seq passes through', () => {
    const m = mappingFor(cfg.mappings, 'app.x')!;
    const seqs = new TaskSeqs(10);
    const a = toKafka(m, 'app.x', rec({ offset: 7, partition: 2, headers: { task: 't', host: 'h', source: 's', extra: 'e' } }), seqs, () => 4);
    expect(a.headers).toEqual({
      task: 't', host: 'h', source: 's', extra: 'e', seq: '1',
      'chicago-topic': 'app.x', 'chicago-partition': '2', 'chicago-offset': '7', timestamp: '1000',
    });
    expect(a.partition).toBe((murmur2(Buffer.from('h')) & 0x7fffffff) % 4);
    expect(toKafka(m, 'app.x', rec({ headers: { task: 't' } }), seqs, () => 4).headers.seq).toBe('2');
    expect(toKafka(m, 'app.x', rec({ headers: { task: 'u' } }), seqs, () => 4).headers.seq).toBe('1');
    expect(toKafka(m, 'app.x', rec({ headers: { task: 't', seq: '99' } }), seqs, () => 4).headers.seq).toBe('99');
    expect(seqs.toJSON()).toEqual({ t: 2, u: 1 });
  });

  it('always picks the Kafka partition itself: by key as the Java client, else by Chicago partition', () => {
    const m = { chicago: 'a', kafka: 'b', partitionBy: 'key' as const, missing: 'unknown' };
    const require = createRequire(import.meta.url);
    const ref = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (k: Buffer) => number;
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 32 }), fc.integer({ min: 1, max: 64 }), (k, n) =>
      toKafka(m, 'a', rec({ key: Buffer.from(k) }), new TaskSeqs(1), () => n).partition === (ref(Buffer.from(k)) & 0x7fffffff) % n));
    expect(toKafka(m, 'a', rec({ partition: 5 }), new TaskSeqs(1), () => 3).partition).toBe(2);
  });

  it('fails a round when kafkajs left a partition out of a request (it does so silently)', () => {
    const m = mappingFor(cfg.mappings, 'app.x')!;
    const req = [0, 1, 2].map((p) => toKafka(m, 'app.x', rec({ partition: p }), new TaskSeqs(1), () => 3));
    const meta = (topicName: string, partition: number, errorCode = 0) => ({ topicName, partition, errorCode });
    const t = req[0]!.topic;
    expect(() => checkWritten(req, [meta(t, 0), meta(t, 1), meta(t, 2)])).not.toThrow();
    expect(() => checkWritten(req, [meta(t, 0), meta(t, 2)])).toThrow(/did not acknowledge partitions .*\/1/);
    expect(() => checkWritten(req, [meta(t, 0), meta(t, 1, 6), meta(t, 2)])).toThrow(/\/1/);
  });

  it('gives kafkajs one partition per sendBatch and settles every send before failing', async () => {
    const m = { chicago: 'a', kafka: 'b', partitionBy: 'chicago-partition' as const, missing: 'unknown' };
    const req = [0, 1, 2, 0, 1].map((p, i) => toKafka(m, 'a', rec({ partition: p, offset: i }), new TaskSeqs(1), () => 3));
    const calls: Array<{ partitions: number[]; offsets: string[] }> = [];
    let settledSends = 0;
    const sender = (failPartition?: number) => ({
      sendBatch: async ({ topicMessages }: { topicMessages: Array<{ topic: string; messages: Array<{ partition?: number; headers?: any }> }> }) => {
        expect(topicMessages).toHaveLength(1);
        const msgs = topicMessages[0]!.messages;
        const partitions = [...new Set(msgs.map((x) => x.partition!))];
        calls.push({ partitions, offsets: msgs.map((x) => String(x.headers['chicago-offset'])) });
        await new Promise((r) => setTimeout(r, partitions[0] === failPartition ? 1 : 20));
        settledSends++;
        if (partitions[0] === failPartition) throw new Error(`partition ${failPartition} failed`);
        return [{ topicName: topicMessages[0]!.topic, partition: partitions[0]!, errorCode: 0 }];
      },
    }) as any;
    await sendByPartition(sender(), req);
    expect(calls.map((c) => c.partitions)).toEqual([[0], [1], [2]]);
    expect(calls.map((c) => c.offsets)).toEqual([['0', '3'], ['1', '4'], ['2']]); // order kept per partition
    calls.length = 0;
    settledSends = 0;
    await expect(sendByPartition(sender(1), req)).rejects.toThrow(/partition 1 failed/);
    expect(settledSends).toBe(3); // the slower sends of partitions 0 and 2 ended before the error came out
  });

  it('forgets the least recently used task past its bound', () => {
    const s = new TaskSeqs(2);
    s.next('a'); s.next('b'); s.next('a'); s.next('c');
    expect(s.toJSON()).toEqual({ a: 2, c: 1 });
  });

  it('cuts requests under the cap, keeping order', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 300 }), fc.integer({ min: 8192, max: 20000 }), (sizes, cap) => {
      const m = mappingFor(cfg.mappings, 'logs')!;
      const seqs = new TaskSeqs(10);
      const msgs = sizes.map((n, i) => toKafka(m, 'logs', rec({ offset: i, value: Buffer.alloc(n, 97), key: Buffer.from('k' + (i % 3)) }), seqs, () => 3));
      const reqs = chunk(msgs, cap);
      expect(reqs.flat().map((x) => x.offset)).toEqual(msgs.map((x) => x.offset));
      for (const r of reqs) {
        // each record, plus one batch overhead per (topic, partition) in the request
        const batches = new Set(r.map((x) => `${x.topic}/${x.partition}`)).size;
        const total = REQUEST_OVERHEAD_BYTES + r.reduce((n, x) => n + x.bytes, 0) + 128 * batches;
        expect(r.length === 1 || total <= cap).toBe(true);
      }
    }));
    expect(recordBytesMax(1_000_000)).toBeLessThan(1_000_000);
  });
});

describe('checkpoints', () => {
  it('keeps the newest per partition of its own group; tombstones remove', () => {
    const into = new Map<string, Checkpoint>();
    const put = (g: string, t: string, p: number, next: number | null) =>
      applyCheckpointRecord('g1', Buffer.from(checkpointKey(g, t, p)), next === null ? null : Buffer.from(checkpointValue(next, { a: next }, 0)), into);
    put('g1', 'logs', 0, 5);
    put('g1', 'logs', 0, 9);
    put('g2', 'logs', 0, 100);
    put('g1', 'logs', 1, 3);
    put('g1', 'logs', 1, null);
    expect([...into.values()]).toEqual([{ topic: 'logs', partition: 0, next: 9, seqs: { a: 9 } }]);
    expect(into.has(partKey('logs', 0))).toBe(true);
  });
});

describe('the exactly-once checker of the bridge tests', () => {
  const recs = (n: number) => Array.from({ length: n }, (_, i) => ({
    partition: i % 3, offset: Math.floor(i / 3),
    headers: { 'chicago-partition': '0', 'chicago-offset': String(i), task: 'web', seq: String(i + 1) },
  }));
  it('passes each Chicago offset once and fails a second copy at another Kafka offset, naming both', () => {
    const ok = recs(30);
    expect(checkExactlyOnce(ok, new Map([[0, 30]]))).toEqual([]);
    const twice = [...ok, { ...ok[7]!, offset: 10 }];
    expect(checkExactlyOnce(twice, new Map([[0, 30]]))).toEqual([
      'chicago partition 0: 0 missing, 1 duplicated of 30; first: offset 7 at Kafka 1@2, 1@10',
      'task/partition web/0: seq is not 1..31 once each',
    ]);
    expect(checkExactlyOnce(ok.slice(1), new Map([[0, 30]]))[0]).toMatch(/1 missing, 0 duplicated/);
  });
});
