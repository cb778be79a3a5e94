// The partition actor's pure transition, without threads or RocksDB.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  initialState, step, decodeKvValue, encodeKvValue, streamKeyOf,
  type Command, type Op, type PartitionState, type ProduceResult, type WireRecord,
  decodeStoredBatch,
} from '../src/actors/partition.js';
import { epoch, partitionId, seq } from '../src/runtime/ids.js';
import * as K from '../src/storage/keys.js';
import { diskCodec } from '../src/runtime/codec.js';

/** A sorted in-memory column family that applies ops exactly as the worker does. */
class MemStore {
  readonly data = new Map<string, Buffer>();
  apply(ops: Op[]): void {
    for (const op of ops) {
      if (op.type === 'put') this.data.set(op.key.toString('hex'), op.value);
      else if (op.type === 'del') this.data.delete(op.key.toString('hex'));
      else for (const k of [...this.data.keys()]) {
        const b = Buffer.from(k, 'hex');
        if (Buffer.compare(b, op.gte) >= 0 && Buffer.compare(b, op.lt) < 0) this.data.delete(k);
      }
    }
  }
  range(gte: Buffer, lt: Buffer): Array<[Buffer, Buffer]> {
    return [...this.data.entries()].map(([k, v]) => [Buffer.from(k, 'hex'), v] as [Buffer, Buffer])
      .filter(([k]) => Buffer.compare(k, gte) >= 0 && Buffer.compare(k, lt) < 0)
      .sort((a, b) => Buffer.compare(a[0], b[0]));
  }
}

const rec = (v: string, k?: string): WireRecord => [k ? Buffer.from(k) : null, Buffer.from(v), null];
const fresh = (): PartitionState => initialState(partitionId(0), epoch(1), seq(0));

function run(s: PartitionState, store: MemStore, cmd: Command, now = 1000) {
  const r = step(s, cmd, now);
  store.apply(r.ops);
  return r;
}

describe('partition transition', () => {
  it('assigns gap-free offsets from 0 and a new sequence per mutation', () => {
    const s = fresh();
    const store = new MemStore();
    const a = run(s, store, { op: 'produce', topicId: 1, tp: 0, records: [rec('a'), rec('b')] });
    const b = run(s, store, { op: 'produce', topicId: 1, tp: 0, records: [rec('c')] });
    expect(a.reply).toMatchObject({ ok: true, res: { base: 0, count: 2 } });
    expect(b.reply).toMatchObject({ ok: true, res: { base: 2, count: 1 } });
    expect(s.seq).toBe(2);
    expect(s.streams.get(streamKeyOf(1, 0))).toMatchObject({ start: 0, end: 3 });
    expect(store.range(...Object.values(K.batchRange(1, 0)) as [Buffer, Buffer]).map(([k]) => K.baseOffsetOfBatchKey(k))).toEqual([0, 2]);
  });

  it('never lets append timestamps go back, so the time index stays ordered', () => {
    const s = fresh();
    const store = new MemStore();
    run(s, store, { op: 'produce', topicId: 1, tp: 0, records: [rec('a')] }, 5000);
    const late = run(s, store, { op: 'produce', topicId: 1, tp: 0, records: [rec('b')] }, 4000);
    expect((late.reply as { res: ProduceResult }).res.ts).toBe(5000);
  });

  it('answers an idempotent retry with the original offsets and appends nothing', () => {
    const s = fresh();
    const store = new MemStore();
    const cmd: Command = { op: 'produce', topicId: 1, tp: 0, records: [rec('a')], producerId: 'p1', sequence: 7 };
    const first = run(s, store, cmd);
    const again = run(s, store, cmd);
    expect(again.reply).toMatchObject({ ok: true, res: { base: 0, count: 1, duplicate: true } });
    expect(again.ops).toEqual([]);
    expect(s.streams.get(streamKeyOf(1, 0))!.end).toBe(1);
    expect(first.reply).toMatchObject({ ok: true, res: { duplicate: false } });
    const stale = run(s, store, { ...cmd, sequence: 1 } as Command);
    expect(stale.reply).toMatchObject({ ok: false, code: 'OUT_OF_ORDER_SEQUENCE' });
  });

  it('holds a pipelined batch back until the batch it names as previous is stored', () => {
    const s = fresh();
    const store = new MemStore();
    const b = (sequence: number, previousSequence: number | undefined, v: string): Command =>
      ({ op: 'produce', topicId: 1, tp: 0, records: [rec(v)], producerId: 'p2', sequence, ...(previousSequence !== undefined ? { previousSequence } : {}) });
    // the first batch failed on its way: the second, sent behind it, must not go first
    expect(run(s, store, b(20, 10, 'second')).reply).toMatchObject({ ok: false, code: 'SEQUENCE_GAP' });
    expect(run(s, store, b(10, undefined, 'first')).reply).toMatchObject({ ok: true, res: { base: 0, duplicate: false } });
    expect(run(s, store, b(30, 20, 'third')).reply).toMatchObject({ ok: false, code: 'SEQUENCE_GAP' });
    expect(run(s, store, b(20, 10, 'second')).reply).toMatchObject({ ok: true, res: { base: 1, duplicate: false } });
    expect(run(s, store, b(30, 20, 'third')).reply).toMatchObject({ ok: true, res: { base: 2 } });
    // a resend of a stored batch is still a duplicate whatever it names as previous
    expect(run(s, store, b(20, 10, 'second')).reply).toMatchObject({ ok: true, res: { base: 1, duplicate: true } });
    expect(s.streams.get(streamKeyOf(1, 0))!.end).toBe(3);
  });

  it('rejects a commit past the end and stores one inside', () => {
    const s = fresh();
    const store = new MemStore();
    run(s, store, { op: 'produce', topicId: 1, tp: 0, records: [rec('a'), rec('b')] });
    expect(run(s, store, { op: 'commit', group: 'g', topicId: 1, tp: 0, offset: 3 }).reply).toMatchObject({ ok: false, code: 'OFFSET_OUT_OF_RANGE' });
    expect(run(s, store, { op: 'commit', group: 'g', topicId: 1, tp: 0, offset: 2 }).reply).toMatchObject({ ok: true });
    const stored = store.data.get(K.groupKey('g', 1, 0).toString('hex'))!;
    expect(diskCodec.decode<{ offset: number }>(stored).offset).toBe(2);
  });

  it('trims whole batches from the start and never past the end', () => {
    const s = fresh();
    const store = new MemStore();
    const a = run(s, store, { op: 'produce', topicId: 1, tp: 0, records: [rec('aa'), rec('bb')] }, 1000);
    run(s, store, { op: 'produce', topicId: 1, tp: 0, records: [rec('cc')] }, 2000);
    const ts = (a.reply as { res: ProduceResult }).res.ts;
    run(s, store, { op: 'trim', topicId: 1, tp: 0, newStart: 2, bytesRemoved: 4, removed: [{ lastTs: ts, base: 0 }] });
    expect(s.streams.get(streamKeyOf(1, 0))).toMatchObject({ start: 2, end: 3, bytes: 2 });
    expect(store.range(...Object.values(K.batchRange(1, 0)) as [Buffer, Buffer])).toHaveLength(1);
    expect(store.range(...Object.values(K.timeIndexRange(1, 0)) as [Buffer, Buffer])).toHaveLength(1);
    expect(() => step(s, { op: 'trim', topicId: 1, tp: 0, newStart: 9, bytesRemoved: 0, removed: [] }, 3000)).toThrow(/unwritten/);
  });

  it('round-trips KV values with and without TTL', () => {
    const v = encodeKvValue(123456789, Buffer.from('hello'), 1_700_000_000_000);
    expect(decodeKvValue(v)).toMatchObject({ version: 123456789, expiresAtMs: 1_700_000_000_000 });
    expect(decodeKvValue(v).value.toString()).toBe('hello');
    expect(decodeKvValue(encodeKvValue(1, Buffer.alloc(0))).expiresAtMs).toBeUndefined();
  });

  it('keeps offsets contiguous and sequences increasing under any command sequence (property)', () => {
    const produce = fc.record({
      op: fc.constant('produce' as const), topicId: fc.constant(1), tp: fc.integer({ min: 0, max: 2 }),
      records: fc.array(fc.string({ maxLength: 8 }).map((v) => rec(v)), { minLength: 1, maxLength: 5 }),
      producerId: fc.option(fc.constantFrom('p1', 'p2'), { nil: undefined }),
      sequence: fc.integer({ min: 0, max: 20 }),
    }).map((c) => (c.producerId === undefined ? { ...c, sequence: undefined } : c));
    const kv = fc.record({ op: fc.constant('kvPut' as const), ks: fc.constant('ks'), key: fc.uint8Array({ minLength: 1, maxLength: 4 }), value: fc.uint8Array({ maxLength: 8 }) });
    const commit = fc.record({ op: fc.constant('commit' as const), group: fc.constant('g'), topicId: fc.constant(1), tp: fc.integer({ min: 0, max: 2 }), offset: fc.integer({ min: 0, max: 30 }) });
    fc.assert(fc.property(fc.array(fc.oneof(produce, kv, commit), { maxLength: 60 }), (cmds) => {
      const s = fresh();
      const store = new MemStore();
      let lastSeq = 0;
      const ends = new Map<number, number>();
      for (const cmd of cmds) {
        const r = run(s, store, cmd as Command);
        expect(s.seq).toBeGreaterThanOrEqual(lastSeq);
        if (r.ops.length > 0) expect(s.seq).toBe(lastSeq + 1);
        lastSeq = s.seq;
        if (cmd.op === 'produce' && r.reply.ok) {
          const res = r.reply.res as ProduceResult;
          if (!res.duplicate) {
            expect(res.base).toBe(ends.get(cmd.tp) ?? 0);
            ends.set(cmd.tp, res.base + res.count);
          }
        }
      }
      // What is on disk agrees with memory: batches tile [start, end) with no gap or overlap.
      for (const [tp, end] of ends) {
        let next = 0;
        for (const [k, v] of store.range(...Object.values(K.batchRange(1, tp)) as [Buffer, Buffer])) {
          expect(K.baseOffsetOfBatchKey(k)).toBe(next);
          next += decodeStoredBatch(v).r.length;
        }
        expect(next).toBe(end);
        expect(s.streams.get(streamKeyOf(1, tp))!.end).toBe(end);
      }
    }), { numRuns: 200 });
  });
});

describe('storage keys', () => {
  it('orders batch keys numerically, across the 32-bit boundary', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (a, b) => {
      const c = Buffer.compare(K.batchKey(1, 0, a), K.batchKey(1, 0, b));
      expect(Math.sign(c)).toBe(Math.sign(a - b));
      expect(K.baseOffsetOfBatchKey(K.batchKey(1, 0, a))).toBe(a);
    }));
  });

  it('a snapshot copies every kind of key except the replication log and hinted entries, and its install keeps the hints', () => {
    const within = (range: { gte: Buffer; lt: Buffer }, key: Buffer) => Buffer.compare(key, range.gte) >= 0 && Buffer.compare(key, range.lt) < 0;
    const own = [K.Kind.log, K.Kind.hint] as number[];
    for (const [name, kind] of Object.entries(K.Kind)) expect(within(K.snapshotRange, Buffer.from([kind])), name).toBe(!own.includes(kind));
    expect(within(K.snapshotRange, K.logKey(5))).toBe(false);
    for (const key of [K.hintHeaderKey, K.hintKey(0), K.hintKey(2 ** 40)]) {
      expect(within(K.copyRange, key)).toBe(false);
      expect(within(K.contentRange, key)).toBe(false);
      expect(within(K.allRange, key)).toBe(true);
      expect(within(K.hintRange, key)).toBe(true);
    }
    expect(within(K.hintEntriesRange, K.hintHeaderKey)).toBe(false);
    expect(within(K.copyRange, K.logKey(5))).toBe(true);
  });

  it('keeps one keyspace out of another that shares its prefix', () => {
    const k = K.kvKey('ab', Buffer.from('x'));
    const prefix = K.kvPrefix('a');
    expect(Buffer.compare(k, prefix) >= 0 && Buffer.compare(k, K.prefixEnd(prefix)) < 0).toBe(false);
    expect(K.userKeyOf(K.kvKey('ks', Buffer.from('key/with/slash')), 'ks').toString()).toBe('key/with/slash');
  });

  it('parses expiry and group keys back', () => {
    expect(K.parseExpiryKey(K.expiryKey(1234, 'ks', Buffer.from([0, 1, 2])))).toMatchObject({ expiresAtMs: 1234, keyspace: 'ks' });
    expect(K.parseGroupKey(K.groupKey('grp', 7, 3))).toEqual({ group: 'grp', topicId: 7, tp: 3 });
  });
});
