// The record batch format (src/protocol/batch.ts): round trips, Kafka's layout, and hostile bytes.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { crc32c } from '@node-rs/crc32';
import { batchCount, decodeBatch, encodeBatch, encodeHeaders, isRecordBatch, stampBatch, validateBatch, type BatchRecord } from '../src/protocol/batch.js';
import { ChicagoError } from '../src/runtime/errors.js';
import { limits } from '../src/runtime/limits.js';
import { diskCodec } from '../src/runtime/codec.js';
import { decodeStoredBatch } from '../src/actors/partition.js';

const b = (s: string) => Buffer.from(s);

function expectCode(f: () => unknown, code: string, text?: RegExp) {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ChicagoError);
    expect((e as ChicagoError).code).toBe(code);
    if (text) expect((e as Error).message).toMatch(text);
    return;
  }
  throw new Error(`expected ${code}`);
}

/** Rewrite the CRC so a test reaches the checks after it. */
function recrc(buf: Buffer): Buffer {
  buf.writeUInt32BE(crc32c(buf.subarray(21)), 17);
  return buf;
}

describe('record batch', () => {
  it('round-trips keys, values and headers, and reports what routing needs', () => {
    const recs: BatchRecord[] = [
      { value: b('one') },
      { value: b(''), key: b('k'), headers: { host: 'h1', 'ü': 'ñ' } },
      { value: Buffer.alloc(300, 7), key: null, headers: null },
    ];
    const buf = encodeBatch(recs, 1_700_000_000_123);
    const info = validateBatch(buf);
    expect(info).toEqual({ count: 3, recordBytes: 3 + 1 + 4 + 2 + 2 + 2 + 300, keyed: true });
    const d = decodeBatch(buf);
    expect(d.ts).toBe(1_700_000_000_123);
    expect(d.records.map(([k, v, h]) => [k && Buffer.from(k).toString(), Buffer.from(v).toString('hex').slice(0, 8), h])).toEqual([
      [null, b('one').toString('hex'), null],
      ['k', '', { host: 'h1', 'ü': 'ñ' }],
      [null, '07070707', null],
    ]);
    expect(validateBatch(encodeBatch([{ value: b('x') }])).keyed).toBe(false);
  });

  it('encodes text as UTF-8 and shared headers once, to the same bytes as per-record ones', () => {
    const shared = encodeHeaders({ host: 'h1', task: 'ñ' });
    const a = encodeBatch([
      { value: 'héllo', key: 'k', shared, headers: { seq: '1' } },
      { value: b('x'), shared, headers: { seq: '2' } },
    ], 9);
    const c = encodeBatch([
      { value: b('héllo'), key: b('k'), headers: { host: 'h1', task: 'ñ', seq: '1' } },
      { value: b('x'), headers: { host: 'h1', task: 'ñ', seq: '2' } },
    ], 9);
    expect(a.equals(c)).toBe(true);
    expect(decodeBatch(a).records[0][2]).toEqual({ host: 'h1', task: 'ñ', seq: '1' });
  });

  it('lays out Kafka RecordBatch v2: magic 2, batchLength, CRC32C from attributes to the end', () => {
    const buf = encodeBatch([{ value: b('v'), key: b('k') }], 5);
    expect(buf[16]).toBe(2);
    expect(buf.readInt32BE(8)).toBe(buf.length - 12);
    expect(buf.readUInt32BE(17)).toBe(crc32c(buf.subarray(21)));
    expect(buf.readInt32BE(57)).toBe(1);
    expect(batchCount(buf)).toBe(1);
    // record: length 8, attrs 0, tsDelta 0, offsetDelta 0, key len 1 'k', value len 1 'v', 0 headers
    expect([...buf.subarray(61)]).toEqual([2 * 8, 0, 0, 0, 2, 0x6b, 2, 0x76, 0]);
  });

  it('stamps base offset and append time outside and inside the CRC, deterministically', () => {
    const a = encodeBatch([{ value: b('v') }], 5);
    const c = Buffer.from(a);
    stampBatch(a, 1234, 99_000);
    stampBatch(c, 1234, 99_000);
    expect(a.equals(c)).toBe(true);
    expect(validateBatch(a).count).toBe(1);
    expect(decodeBatch(a).ts).toBe(99_000);
    expect(a.readInt32BE(4)).toBe(1234);
    const again = Buffer.from(a);
    stampBatch(again, 1234, 99_000); // already stamped: unchanged
    expect(again.equals(a)).toBe(true);
    expect(isRecordBatch(a)).toBe(true);
    const old = diskCodec.encode({ ts: 1, r: [[b('k'), b('v'), { h: 'x' }]] });
    expect(isRecordBatch(old)).toBe(false);
    // stream values written before record batches still read
    const back = decodeStoredBatch(old);
    expect([back.ts, Buffer.from(back.r[0][0]!).toString(), Buffer.from(back.r[0][1]).toString(), back.r[0][2]]).toEqual([1, 'k', 'v', { h: 'x' }]);
    expect(decodeStoredBatch(a).r.map((r) => Buffer.from(r[1]).toString())).toEqual(['v']);
  });

  it('refuses malformed batches with INVALID_BATCH and a reason', () => {
    const good = () => encodeBatch([{ value: b('abc'), key: b('k'), headers: { a: 'b' } }], 5);
    expectCode(() => validateBatch(Buffer.alloc(10)), 'INVALID_BATCH', /shorter/);
    let x = good(); x[16] = 1;
    expectCode(() => validateBatch(x), 'INVALID_BATCH', /magic 1/);
    x = good(); x[x.length - 1] ^= 1;
    expectCode(() => validateBatch(x), 'INVALID_BATCH', /CRC32C/);
    x = good(); x.writeInt16BE(1, 21); recrc(x);
    expectCode(() => validateBatch(x), 'INVALID_BATCH', /compressed/);
    x = good(); x.writeInt16BE(0x10, 21); recrc(x);
    expectCode(() => validateBatch(x), 'INVALID_BATCH', /transactional/);
    x = good(); x.writeInt32BE(2, 57); recrc(x);
    expectCode(() => validateBatch(x), 'INVALID_BATCH', /lastOffsetDelta/);
    x = Buffer.concat([good(), Buffer.from([0])]); x.writeInt32BE(x.length - 12, 8); recrc(x);
    expectCode(() => validateBatch(x), 'INVALID_BATCH', /after the last record/);
    x = good().subarray(0, 70); x.writeInt32BE(x.length - 12, 8); recrc(x);
    expectCode(() => validateBatch(x), 'INVALID_BATCH');
  });

  it('checks records against the limits, with the limit’s own error', () => {
    expectCode(() => validateBatch(encodeBatch([{ value: b('v'), key: Buffer.alloc(limits.keyBytesMax + 1) }])), 'INVALID_KEY');
    expectCode(() => validateBatch(encodeBatch([{ value: b('v'), key: Buffer.alloc(0) }])), 'INVALID_KEY');
    const many: Record<string, string> = {};
    for (let i = 0; i <= limits.headerCountMax; i++) many[`h${i}`] = 'v';
    expectCode(() => validateBatch(encodeBatch([{ value: b('v'), headers: many }])), 'INVALID_ARGUMENT', /headers/);
    expectCode(() => validateBatch(encodeBatch([{ value: b('v'), headers: { __proto__x: 'y', h: 'x'.repeat(limits.headerBytesMax) } }])), 'INVALID_ARGUMENT', /bytes/);
    expectCode(() => validateBatch(encodeBatch([{ value: Buffer.alloc(limits.recordBytesMax + 1) }])), 'VALUE_TOO_LARGE');
    // a header named twice (a Kafka batch may carry that; a map cannot)
    const twice = encodeBatch([{ value: b('v'), headers: { aa: '1', ab: '2' } }]);
    const at = twice.lastIndexOf('ab'); // the header name: the time stamp's bytes come before it
    twice[at + 1] = 0x61;
    recrc(twice);
    expectCode(() => validateBatch(twice), 'INVALID_ARGUMENT', /twice/);
    // invalid UTF-8 in a header value
    const utf = encodeBatch([{ value: b('v'), headers: { a: 'z' } }]);
    utf[utf.lastIndexOf('z')] = 0xff; // the header value: the time stamp's bytes may hold a 'z' too
    recrc(utf);
    expectCode(() => validateBatch(utf), 'INVALID_UTF8');
    // a hostile record count is refused before any walk
    const huge = encodeBatch([{ value: b('v') }]);
    huge.writeInt32BE(limits.batchRecordsMax + 1, 57); huge.writeInt32BE(limits.batchRecordsMax, 23); recrc(huge);
    expectCode(() => validateBatch(huge), 'TOO_MANY_RECORDS');
  });

  it('tells header names apart whatever bits their signatures share, and reads two-byte offsetDeltas in place', () => {
    // names of one length, first and last byte share a signature bit: compared pair by pair
    const alike = { axb: '1', ayb: '2', azb: '3', host: '4', seq: '5' };
    expect(validateBatch(encodeBatch([{ value: b('v'), headers: alike }])).count).toBe(1);
    const twice = encodeBatch([{ value: b('v'), headers: alike }]);
    twice[twice.indexOf('ayb', 61) + 1] = 0x7a; // ayb -> azb, a name the record already has
    recrc(twice);
    expectCode(() => validateBatch(twice), 'INVALID_ARGUMENT', /twice/);
    // records past the 64th carry a two-byte offsetDelta, checked as the one-byte ones are
    const recs = Array.from({ length: 300 }, (_, i) => ({ value: b(`v${i}`), headers: { host: 'h', seq: String(i) } }));
    expect(validateBatch(encodeBatch(recs)).count).toBe(300);
    const off = encodeBatch(recs);
    const d200 = off.indexOf('v200', 61) - 4; // record 200's offsetDelta (2 bytes), then no key (1), the value's length (1)
    expect([off[d200], off[d200 + 1]]).toEqual([0x90, 0x03]); // zigzag(200) = 400
    off[d200] = 0x91; // 401: zigzag of -201
    recrc(off);
    expectCode(() => validateBatch(off), 'INVALID_BATCH', /record 200: offsetDelta -201/);
  });

  it('stamps the CRC a full CRC32C of the stamped bytes gives, at any size and restamped (property)', () => {
    fc.assert(fc.property(
      fc.array(fc.nat(3000), { minLength: 1, maxLength: 30 }), fc.nat(2 ** 52), fc.nat(2 ** 42), fc.nat(2 ** 52), fc.nat(2 ** 42),
      (sizes, base1, ts1, base2, ts2) => {
        const a = encodeBatch(sizes.map((n, i) => ({ value: Buffer.alloc(n, i) })), 17);
        for (const [base, ts] of [[base1, ts1], [base2, ts2]]) {
          stampBatch(a, base, ts);
          expect(a.readUInt32BE(17)).toBe(crc32c(a.subarray(21)));
          expect(decodeBatch(a).ts).toBe(ts);
        }
      }), { numRuns: 300 });
  });

  it('finds a non-UTF-8 header byte wherever it sits against word boundaries, in views at any offset, after short and long lengths', () => {
    // from 64 bytes on a length takes two varint bytes, the first at 0x80 or above
    const lens = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 60, 61, 62, 63, 64, 65, 66, 67, 200];
    for (let shift = 0; shift < 4; shift++) {
      for (const len of lens) {
        const clean = encodeBatch([{ value: b('v'), headers: { n: 'a'.repeat(len), m: 'é', l: `é${'x'.repeat(len)}` } }, { value: b('w'), headers: { q: 'z'.repeat(len + 3) } }], 3);
        const place = (bytes: Buffer) => { const big = Buffer.alloc(bytes.length + 8); bytes.copy(big, shift); return big.subarray(shift, shift + bytes.length); };
        expect(validateBatch(place(clean)).count).toBe(2);
        // each byte of the first record's first value, then of the second record's, made a lone continuation byte
        for (const value of ['a'.repeat(len), 'z'.repeat(len + 3)]) {
          const from = clean.indexOf(Buffer.from(value));
          for (let k = from; k < from + value.length; k++) {
            const bad = Buffer.from(clean);
            bad[k] = 0x80;
            expect(() => validateBatch(place(recrc(bad)))).toThrow(expect.objectContaining({ code: 'INVALID_UTF8' }));
          }
        }
      }
    }
  });

  it('finds a non-UTF-8 header byte in long names and values (lengths of two and three bytes, text past 255 words)', () => {
    for (const len of [1100, 9000]) {
      const clean = encodeBatch([{ value: b('v'), headers: { [`n${'a'.repeat(70)}`]: 'é'.repeat(3), m: 'z'.repeat(len) } }], 3);
      expect(validateBatch(clean).count).toBe(1);
      const name = clean.indexOf(Buffer.from('a'.repeat(70)));
      const value = clean.indexOf(Buffer.from('z'.repeat(len)));
      for (const k of [name, name + 69, value, value + 1, value + 1019, value + 1020, value + 1021, value + len - 1]) {
        const bad = Buffer.from(clean);
        bad[k] = 0xff;
        expect(() => validateBatch(recrc(bad))).toThrow(expect.objectContaining({ code: 'INVALID_UTF8' }));
      }
    }
  });

  it('never crashes on random, truncated or mutated bytes (fuzzed)', () => {
    const seed = encodeBatch([{ value: b('hello'), key: b('k1'), headers: { a: 'b', c: 'd' } }, { value: Buffer.alloc(40, 1) }], 7);
    const judge = (bytes: Buffer) => {
      try {
        const info = validateBatch(bytes);
        // whatever passes decodes to what it said
        expect(decodeBatch(bytes).records.length).toBe(info.count);
      } catch (e) {
        expect(e).toBeInstanceOf(ChicagoError);
        expect(['INVALID_BATCH', 'INVALID_KEY', 'INVALID_ARGUMENT', 'INVALID_UTF8', 'VALUE_TOO_LARGE', 'TOO_MANY_RECORDS', 'BATCH_TOO_LARGE']).toContain((e as ChicagoError).code);
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (a) => judge(Buffer.from(a))), { numRuns: 2000 });
    fc.assert(fc.property(fc.nat(seed.length), (n) => judge(recrc(Buffer.from(seed.subarray(0, Math.max(n, 22)))))), { numRuns: 300 });
    // mutate a body byte, then fix the CRC so the record walk itself meets the damage
    fc.assert(fc.property(fc.integer({ min: 21, max: seed.length - 1 }), fc.integer({ min: 0, max: 255 }), (i, v) => {
      const m = Buffer.from(seed);
      m[i] = v;
      judge(recrc(m));
    }), { numRuns: 3000 });
  });

  it('round-trips arbitrary records (property)', () => {
    const rec = fc.record({
      value: fc.uint8Array({ maxLength: 200 }),
      key: fc.option(fc.uint8Array({ minLength: 1, maxLength: 40 }), { nil: undefined }),
      headers: fc.option(fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((s) => s !== '__proto__' && s.isWellFormed()), fc.string({ maxLength: 8 }).filter((s) => s.isWellFormed()), { maxKeys: 4 }), { nil: undefined }),
    });
    fc.assert(fc.property(fc.array(rec, { minLength: 1, maxLength: 20 }), (rs) => {
      const buf = encodeBatch(rs);
      expect(validateBatch(buf).count).toBe(rs.length);
      const d = decodeBatch(buf).records;
      rs.forEach((r, i) => {
        expect(Buffer.from(d[i][1]).equals(Buffer.from(r.value))).toBe(true);
        expect(d[i][0] ? Buffer.from(d[i][0]!).equals(Buffer.from(r.key!)) : r.key === undefined).toBe(true);
        const h = r.headers && Object.keys(r.headers).length > 0 ? r.headers : null;
        expect(d[i][2]).toEqual(h);
      });
    }), { numRuns: 300 });
  });
});
