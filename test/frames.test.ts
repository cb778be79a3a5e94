// Frame codec: round trips, validation codes, and a time-boxed fuzz of the decoder.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { ChicagoError } from '../src/runtime/errors.js';
import { limits } from '../src/runtime/limits.js';
import {
  closeCodeOf, encodeFrame, fromRecordTuple, parseClientFrame, parseServerFrame, storedRecordBytes, toRecordTuple,
  toStartPosition,
} from '../src/protocol/frames.js';
import { offset } from '../src/runtime/ids.js';
import { encodeBatch } from '../src/protocol/batch.js';

const raw = new Packr({ useRecords: false });
const parse = (v: unknown) => parseClientFrame(raw.pack(v));

describe('client frames', () => {
  it('round-trips every request op', () => {
    const frames = [
      { op: 'hello', id: 1, versions: [1], client: 'test' },
      { op: 'produce', id: 2, topic: 'logs', acks: 'one', partition: 3, producerId: 'p1', sequence: 9, records: [[Buffer.from('v'), Buffer.from('k'), { a: 'b' }]] },
      { op: 'kv.put', id: 3, ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v'), ttl: 60, acks: 'all' },
      { op: 'kv.get', id: 4, ks: 'ks', key: Buffer.from('k') },
      { op: 'kv.delete', id: 5, ks: 'ks', key: Buffer.from('k'), acks: 'none' },
      { op: 'kv.scan', id: 6, ks: 'ks', prefix: Buffer.from('a'), limit: 10 },
      { op: 'subscribe', id: 7, topic: 't', partition: 0, from: { timestamp: 1700000000000 }, credit: 1024 },
      { op: 'credit', sub: 7, bytes: 512 },
      { op: 'unsubscribe', id: 8, sub: 7 },
      { op: 'commit', id: 9, group: 'g', topic: 't', partition: 0, offset: 42 },
      { op: 'offsets', id: 10, group: 'g' },
    ] as const;
    for (const f of frames) {
      const p = parseClientFrame(encodeFrame(f as never));
      expect(p.ok, f.op).toBe(true);
      if (p.ok) expect(p.frame).toMatchObject(f);
    }
  });

  it('takes a produce of one record batch (bin), validated once with what routing needs', () => {
    const batch = encodeBatch([{ value: Buffer.from('v'), key: Buffer.from('k') }, { value: Buffer.from('w') }]);
    const p = parse({ op: 'produce', id: 3, topic: 't', producerId: 'p', sequence: 0, batch });
    expect(p.ok).toBe(true);
    if (p.ok && p.frame.op === 'produce') {
      expect(p.frame.records).toBeUndefined();
      expect(Buffer.from(p.frame.batch!).equals(batch)).toBe(true);
      expect(p.frame.checked!.info).toEqual({ count: 2, recordBytes: 3, keyed: true });
    }
  });

  it('fills defaults and accepts str for bytes', () => {
    const p = parse({ op: 'produce', id: 1, topic: 't', records: [['hello']] });
    expect(p.ok && p.frame).toMatchObject({ acks: 'all', records: [[Buffer.from('hello'), undefined, undefined]] });
    const s = parse({ op: 'kv.scan', id: 1, ks: 'k' });
    expect(s.ok && s.frame).toMatchObject({ limit: 1000 });
  });

  it('rejects with the right code and keeps the request id', () => {
    const cases: Array<[unknown, string]> = [
      [{ op: 'nope', id: 4 }, 'UNKNOWN_OP'],
      [{ id: 4 }, 'BAD_REQUEST'],
      [{ op: 'kv.get', id: 4, ks: 'a/b', key: 'k' }, 'INVALID_NAME'],
      [{ op: 'kv.get', id: 4, ks: 'a'.repeat(limits.nameLengthMax + 1), key: 'k' }, 'INVALID_NAME'],
      [{ op: 'kv.put', id: 4, ks: 'a', key: 'k', value: Buffer.alloc(limits.valueBytesMax + 1) }, 'VALUE_TOO_LARGE'],
      [{ op: 'produce', id: 4, topic: 't', records: Array.from({ length: limits.batchRecordsMax + 1 }, () => ['']) }, 'TOO_MANY_RECORDS'],
      [{ op: 'produce', id: 4, topic: 't', records: [['v', null, { n: 1 }]] }, 'INVALID_ARGUMENT'],
      [{ op: 'produce', id: 4, topic: 't', records: [['v', null, Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`h${i}`, '']))]] }, 'INVALID_ARGUMENT'],
      [{ op: 'produce', id: 4, topic: 't', partition: 1.5, records: [['v']] }, 'INVALID_ARGUMENT'],
      [{ op: 'produce', id: 4, topic: 't', records: [['v']], batch: encodeBatch([{ value: Buffer.from('v') }]) }, 'BAD_REQUEST'],
      [{ op: 'produce', id: 4, topic: 't', batch: 'not bin' }, 'BAD_REQUEST'],
      [{ op: 'produce', id: 4, topic: 't', batch: Buffer.from('garbage') }, 'INVALID_BATCH'],
      [{ op: 'produce', id: 4, topic: 't', batch: encodeBatch([{ value: Buffer.from('v'), key: Buffer.alloc(limits.keyBytesMax + 1) }]) }, 'INVALID_KEY'],
      [{ op: 'credit', sub: 4, bytes: limits.subscriberCreditBytesMax + 1 }, 'INVALID_ARGUMENT'],
      [{ op: 'commit', id: 4, group: 'g', topic: 't', partition: 0, offset: 2 ** 60 }, 'INVALID_OFFSET'],
      [{ op: 'subscribe', id: 4, topic: 't', partition: 0, from: 'middle', credit: 1 }, 'BAD_REQUEST'],
    ];
    for (const [frame, code] of cases) {
      const p = parse(frame);
      expect(p.ok, JSON.stringify(frame).slice(0, 60)).toBe(false);
      if (!p.ok) {
        expect(p.error.code, JSON.stringify(frame).slice(0, 60)).toBe(code);
        expect(p.undecodable).toBe(false);
        if ((frame as { id?: number }).id) expect(p.id).toBe(4);
      }
    }
  });

  it('marks garbage as undecodable', () => {
    for (const bytes of [[0xc1], [0x92, 0x01], [0x81, 0xa1], [0x93, 1, 2, 3], [0xa3, 0x61, 0x62, 0x63], [0x80, 0x80]]) {
      const p = parseClientFrame(Buffer.from(bytes));
      expect(p.ok).toBe(false);
      if (!p.ok) expect([p.undecodable, p.error.code, p.id]).toEqual([true, 'BAD_REQUEST', 0]);
    }
  });
});

describe('server frames and helpers', () => {
  it('round-trips records and errors', () => {
    const rec = { partition: 2, offset: offset(7), timestampMs: 123, key: Buffer.from('k'), value: Buffer.from('v'), headers: { a: 'b' } };
    const p = parseServerFrame(encodeFrame({ op: 'records', sub: 1, bytes: storedRecordBytes(rec), records: [toRecordTuple(rec)] }));
    expect(p.ok).toBe(true);
    if (p.ok && p.frame.op === 'records') expect(fromRecordTuple(2, p.frame.records[0])).toEqual(rec);
    const e = parseServerFrame(encodeFrame({ op: 'err', id: 0, ...new ChicagoError('OVERLOADED', 'x', 'y').toJSON() }));
    expect(e.ok && e.frame).toMatchObject({ op: 'err', id: 0, code: 'OVERLOADED', retryable: true });
  });

  it('maps start positions and close codes', () => {
    expect(toStartPosition({ offset: 3 })).toEqual({ kind: 'offset', offset: 3 });
    expect(toStartPosition('latest')).toEqual({ kind: 'latest' });
    expect(toStartPosition({ timestamp: 5 })).toEqual({ kind: 'timestamp', timestampMs: 5 });
    expect(closeCodeOf('SLOW_CONSUMER')).toBe(4301);
    expect(storedRecordBytes({ value: Buffer.alloc(10), key: Buffer.alloc(2), headers: { ab: 'cde' } })).toBe(17);
  });
});

describe('fuzz (time-boxed)', () => {
  const opts = { numRuns: 3000, interruptAfterTimeLimit: 3000 };
  const check = (bytes: Uint8Array) => {
    for (const parser of [parseClientFrame, parseServerFrame]) {
      const p = parser(bytes);
      if (!p.ok) expect(p.error).toBeInstanceOf(ChicagoError);
    }
  };

  it('never throws on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => check(b)), opts);
  });

  it('never throws on arbitrary msgpack values', () => {
    const value = fc.anything({ withBigInt: true, withNullPrototype: true, withDate: true, withMap: true, withSet: true, withTypedArray: true, maxDepth: 4 });
    fc.assert(fc.property(value, (v) => {
      let bytes: Uint8Array;
      try { bytes = new Packr({ useRecords: false, structuredClone: true }).pack(v); } catch { return; }
      check(bytes);
    }), opts);
  });

  it('never throws on near-valid frames', () => {
    const fieldValue = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.constant(null), fc.boolean(), fc.uint8Array({ maxLength: 8 }),
      fc.array(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 4 }), fc.array(fc.oneof(fc.string(), fc.constant(null))))), fc.dictionary(fc.string(), fc.string()));
    const ops = fc.constantFrom('hello', 'produce', 'kv.put', 'kv.get', 'kv.delete', 'kv.scan', 'subscribe', 'credit', 'unsubscribe', 'commit', 'offsets', 'res', 'err', 'records', 'end', '__proto__');
    const frame = fc.record({ op: ops, id: fc.oneof(fc.nat(), fc.constant(1)) }).chain((base) =>
      fc.dictionary(fc.constantFrom('ks', 'key', 'value', 'topic', 'records', 'partition', 'from', 'credit', 'sub', 'bytes', 'acks', 'producerId', 'sequence', 'versions', 'group', 'offset', 'code', 'message', '__proto__', 'constructor'), fieldValue)
        .map((fields) => ({ ...fields, ...base })));
    fc.assert(fc.property(frame, (f) => check(raw.pack(f))), opts);
  });
});

describe('integers on the wire', () => {
  it('go out as msgpack integers, never float64: timestamps and expiries as int64, small ones as they were', async () => {
    const { encodeFrame: enc, parseServerFrame: parse, widenIntegers } = await import('../src/protocol/frames.js');
    const { Unpackr } = await import('msgpackr');
    const ts = 1796535051795;
    const frame = { op: 'records' as const, sub: 1, bytes: 3, records: [[7, ts, Buffer.from('abc'), null, { h: 'v' }]] };
    const bytes = Buffer.from(enc(frame as never));
    // 0xcb is msgpack float64: no number in the frame is sent as one
    expect(bytes.includes(0xcb)).toBe(false);
    expect(bytes.includes(Buffer.from([0xd3, ...Buffer.from(BigInt(ts).toString(16).padStart(16, '0'), 'hex')]))).toBe(true);
    // a decoder that keeps 64-bit integers as such (as Go, Rust and Python do) gets an integer
    const raw = new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(bytes) as { records: unknown[][] };
    expect(raw.records[0][1]).toBe(BigInt(ts));
    // the reference decoder reads it back as a number
    const back = parse(bytes);
    expect(back.ok && (back.frame as unknown as { records: unknown[][] }).records[0][1]).toBe(ts);
    // the frame given is not changed; values that need no widening keep their identity
    expect(frame.records[0][1]).toBe(ts);
    const small = { op: 'res', id: 1, version: 5, list: [1, 2, { a: -3 }] };
    expect(widenIntegers(small)).toBe(small);
    expect(widenIntegers({ a: 2 ** 40, b: -(2 ** 33), c: 1.5, d: 0x80000000 })).toEqual({ a: BigInt(2 ** 40), b: BigInt(-(2 ** 33)), c: 1.5, d: 0x80000000 });
  });
});
