// The agent's batch-level spool entries and produce body: what a 'recs' entry holds, that old
// one-record entries still recover beside it, and that the body carries every header with its seq.
import { describe, expect, it } from 'vitest';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { keyOfLine, RECORD_KEY_CHARS_MAX, recordEntries } from '../src/agent/records.js';
import { batchOf, bodyOf } from '../src/agent/shipper.js';
import { decodeBatch, encodeBatch, encodeHeaders, validateBatch } from '../src/protocol/batch.js';
import { decodeSegment, encodeEntry, recordsOf, Spool, type RecsEntry } from '../src/agent/spool.js';

const tmp = (p: string) => mkdtemp(path.join(os.tmpdir(), `chicago-agent-${p}-`));
const T = Date.parse('2026-12-06T10:00:00.000Z');

/** A kill -9 mid-append: the newest segment loses its last `bytes` bytes. */
async function tearLastSegment(dir: string, bytes: number): Promise<void> {
  const last = path.join(dir, (await readdir(dir)).sort().at(-1)!);
  const buf = await readFile(last);
  await writeFile(last, buf.subarray(0, buf.length - bytes));
}

describe('record keys', () => {
  it('a JSON field or a regex capture of the line; nothing when the line has none', () => {
    const json = { json: 'remote_addr' };
    expect(keyOfLine('{"remote_addr":"198.18.0.1","status":200}', json)).toBe('198.18.0.1');
    expect(keyOfLine('{"remote_addr":4242}', json)).toBe('4242');
    for (const line of ['not json', '{"remote_addr":', '{"other":1}', '{"remote_addr":""}', '{"remote_addr":{"a":1}}', '[1,2]', `{"remote_addr":"${'x'.repeat(RECORD_KEY_CHARS_MAX + 1)}"}`]) {
      expect(keyOfLine(line, json), line.slice(0, 40)).toBeUndefined();
    }
    expect(keyOfLine('198.18.0.9 - - [06/Dec/2026] "GET /"', { re: /^(\S+) / })).toBe('198.18.0.9');
    expect(keyOfLine('user=alice action=x', { re: /user=\w+/ })).toBe('user=alice');
    expect(keyOfLine('nothing here', { re: /user=(\w+)/ })).toBeUndefined();
  });

  it('keys ride the spool entry (only when a record has one) and the produce body', async () => {
    const { spool } = Spool.open({ dir: await tmp('keys'), quotaBytes: 1 << 20, segmentBytes: 1 << 16 });
    const plain = recordEntries(spool, 'h1', 't', 'logs', [{ value: 'a', source: 's', timeMs: T }])[0] as RecsEntry;
    expect(plain.k).toBeUndefined();
    const e = recordEntries(spool, 'h1', 't', 'logs', [
      { value: 'a', source: 's', timeMs: T, key: '198.18.0.1' },
      { value: 'b', source: 's', timeMs: T },
    ])[0] as RecsEntry;
    expect(e.k).toEqual(['198.18.0.1', null]);
    const recs = recordsOf(decodeSegment(encodeEntry(e)).entries[0] as RecsEntry);
    expect(recs.map((r) => r.key)).toEqual(['198.18.0.1', undefined]);
    const body = JSON.parse(bodyOf(recs)) as Array<{ key?: string; value: string }>;
    expect(body.map((r) => [r.key, r.value])).toEqual([['198.18.0.1', 'a'], [undefined, 'b']]);
    spool.close();
  });
});

describe('agent batch spool entries', () => {
  it('one entry per append: shared headers once, a record\'s own headers apart, bytes that are not UTF-8 as base64', async () => {
    const { spool } = Spool.open({ dir: await tmp('recs'), quotaBytes: 1 << 20, segmentBytes: 1 << 16 });
    spool.takeSeq('t');
    const es = recordEntries(spool, 'h1', 't', 'logs', [
      { value: 'a', source: '/x.log', timeMs: T },
      { value: 'b ERROR', source: '/x.log', timeMs: T, level: 'ERROR' },
      { value: Buffer.from([0xff, 0x00]), source: '/x.log', timeMs: T, headers: { user: 'u' } },
    ]);
    expect(es).toHaveLength(1);
    const e = es[0] as RecsEntry;
    expect(e).toMatchObject({ t: 'recs', task: 't', topic: 'logs', seq: 1, h: { host: 'h1', task: 't', source: '/x.log', time: '2026-12-06T10:00:00.000Z' } });
    expect(e.x).toEqual([null, { level: 'ERROR' }, { user: 'u' }]);
    expect(e.b64).toEqual([2]);
    expect(spool.takeSeq('t')).toBe(4);
    const back = decodeSegment(encodeEntry(e)).entries[0] as RecsEntry;
    const recs = recordsOf(back);
    expect(recs.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(recs[1].headers).toEqual({ host: 'h1', task: 't', source: '/x.log', time: '2026-12-06T10:00:00.000Z', level: 'ERROR' });
    expect(recs[2]).toMatchObject({ enc: 'base64', value: Buffer.from([0xff, 0x00]).toString('base64'), headers: { user: 'u' } });
    // the records without headers of their own share one object
    expect(recordsOf(back)[0].headers).toBe(back.h);
    expect(recordEntries(spool, 'h1', 't', 'logs', [])).toEqual([]);
    spool.close();
  });

  it('a segment rolled while an append waits for the next fdatasync snapshots only the durable seqs', async () => {
    const dir = await tmp('roll');
    // every append rolls the segment
    const { spool } = Spool.open({ dir, quotaBytes: 1 << 30, segmentBytes: 1 });
    const ev = (n: number) => Array.from({ length: n }, (_, i) => ({ value: `line ${i}`, source: '/x.log', timeMs: T }));
    const a = spool.append(recordEntries(spool, 'h1', 't', 'logs', ev(3)));
    // a's write is made and its fdatasync runs off the main thread: b takes its seqs meanwhile
    await new Promise((r) => setImmediate(r));
    const b = spool.append(recordEntries(spool, 'h1', 't', 'logs', ev(2)));
    await Promise.all([a, b]);
    spool.close();
    // the segment a's append rolled to starts with a snapshot taken before b was durable: b's seqs
    // in it would outlive b's records after a kill -9 (a gap in seq when the lines are read again)
    const segs = (await readdir(dir)).filter((f) => f.endsWith('.wal')).sort();
    const snaps = await Promise.all(segs.map(async (f) => decodeSegment(await readFile(path.join(dir, f))).entries[0]));
    const nexts = snaps.map((e) => (e.t === 'snap' ? e.next.t ?? 0 : -1));
    expect(nexts).toEqual([0, 3, 5]);
  });

  it('recovers old one-record entries and batch entries in one spool, seqs gap-free, acks applied inside a batch', async () => {
    const dir = await tmp('mixed');
    const opts = { dir, quotaBytes: 1 << 20, segmentBytes: 1 << 16 };
    const { spool } = Spool.open(opts);
    for (let i = 0; i < 2; i++) spool.takeSeq('t');
    await spool.append([
      { t: 'rec', task: 't', seq: 0, topic: 'logs', value: 'old0', headers: { seq: '0', host: 'h' } },
      { t: 'rec', task: 't', seq: 1, topic: 'logs', value: 'old1', headers: { seq: '1', host: 'h' } },
    ]);
    await spool.append(recordEntries(spool, 'h', 't', 'logs', ['n2', 'n3', 'n4'].map((value) => ({ value, source: 's', timeMs: T }))));
    await spool.append([{ t: 'ack', task: 't', to: 2 }, { t: 'send', task: 't', from: 3, to: 4 }]);
    spool.close();
    const { spool: s2 } = Spool.open(opts);
    expect(s2.records('t').map((r) => [r.seq, r.value])).toEqual([[3, 'n3'], [4, 'n4']]);
    expect(s2.sends.get('t')).toEqual([{ from: 3, to: 4 }]);
    expect(s2.takeSeq('t')).toBe(5);
    s2.close();
  });

  it('ASCII file lines are spooled as raw bytes (no JSON escapes), recover as text beside JSON entries, and a torn one is cut off', async () => {
    const dir = await tmp('binary');
    const opts = { dir, quotaBytes: 1 << 20, segmentBytes: 1 << 20 };
    const { spool } = Spool.open(opts);
    const lines = ['plain', '', 'with "quotes" and \\ and \t tab', 'ERROR x'];
    const evs = lines.map((value) => ({ value, source: '/x.log', timeMs: T, level: value.startsWith('ERROR') ? 'ERROR' : undefined }));
    const ascii = recordEntries(spool, 'h', 't', 'logs', evs, true)[0] as RecsEntry;
    expect(ascii.a).toBe(1);
    const enc = encodeEntry({ t: 'all', es: [ascii, { t: 'ck', key: 'k', ck: null }] });
    // a binary body: marker 0, then the meta JSON without the values, then the values' bytes as they are
    expect(enc[8]).toBe(0);
    expect(enc.includes(Buffer.from(lines.join('')))).toBe(true);
    expect(enc.includes(Buffer.from('"v"'))).toBe(false);
    const back = decodeSegment(enc).entries[0];
    expect(back).toEqual({ t: 'all', es: [ascii, { t: 'ck', key: 'k', ck: null }] });
    // a Buffer value (bytes, not text) makes the entry JSON, as before
    const mixed = recordEntries(spool, 'h', 't', 'logs', [{ value: 'a', source: '/x.log', timeMs: T }, { value: Buffer.from([0xff]), source: '/x.log', timeMs: T }], true)[0] as RecsEntry;
    expect(mixed.a).toBeUndefined();
    expect(encodeEntry(mixed)[8]).toBe(0x7b);
    spool.close();
    // appended, recovered, shipped with the ascii mark
    const { spool: s1 } = Spool.open(opts);
    await s1.append(recordEntries(s1, 'h', 't', 'logs', evs, true));
    await s1.append(recordEntries(s1, 'h', 't', 'logs', [{ value: 'é', source: '/x.log', timeMs: T }]));
    await s1.append(recordEntries(s1, 'h', 't', 'logs', ['torn1', 'torn2'].map((value) => ({ value, source: '/x.log', timeMs: T })), true));
    s1.close();
    await tearLastSegment(dir, 3);
    const { spool: s2, report } = Spool.open(opts);
    expect(report.tornBytes).toBeGreaterThan(0);
    const recs = s2.records('t');
    expect(recs.map((r) => r.value)).toEqual([...lines, 'é']);
    expect(recs.map((r) => r.ascii ?? false)).toEqual([true, true, true, true, false]);
    expect(recs[3].headers.level).toBe('ERROR');
    // the batch carries the same bytes whether or not the value is marked ASCII
    const unmarked = recs.map(({ ascii: _a, ...r }) => r);
    expect(batchOf(recs, T).equals(batchOf(unmarked, T))).toBe(true);
    expect(decodeBatch(batchOf(recs, T)).records.map(([, v]) => Buffer.from(v).toString())).toEqual([...lines, 'é']);
    s2.close();
  });

  it('an append is one spool record: a write torn anywhere keeps neither its records nor its checkpoint', async () => {
    const dir = await tmp('torn');
    const opts = { dir, quotaBytes: 1 << 20, segmentBytes: 1 << 16 };
    const { spool } = Spool.open(opts);
    const ck = (offset: number) => ({ task: 't', path: '/x.log', dev: 1, ino: 2, offset, headLen: 0, headHash: '', tailHash: '' });
    await spool.append([...recordEntries(spool, 'h', 't', 'logs', [{ value: 'a', source: 's', timeMs: T }]), { t: 'ck', key: 'k', ck: ck(2) }]);
    await spool.append([...recordEntries(spool, 'h', 't', 'logs', ['b', 'c'].map((value) => ({ value, source: 's', timeMs: T }))), { t: 'ck', key: 'k', ck: ck(6) }]);
    spool.close();
    // cut inside the last append's checkpoint, after its records
    await tearLastSegment(dir, 5);
    const { spool: s2, report } = Spool.open(opts);
    expect(report.tornBytes).toBeGreaterThan(0);
    expect(s2.ckpts.get('k')?.offset).toBe(2);
    expect(s2.records('t').map((r) => r.value)).toEqual(['a']);
    expect(s2.takeSeq('t')).toBe(1);
    s2.close();
  });

  it('the produce body: every record with its seq header, shared headers or not', () => {
    const h = { host: 'h', source: 's' };
    const body = JSON.parse(bodyOf([
      { task: 't', seq: 7, topic: 'l', value: 'a "quoted"\nline', headers: h },
      { task: 't', seq: 8, topic: 'l', value: 'b', headers: h },
      { task: 't', seq: 9, topic: 'l', value: '/w==', enc: 'base64', headers: { seq: '9' } },
      { task: 't', seq: 10, topic: 'l', value: 'c', headers: {} },
    ])) as unknown;
    expect(body).toEqual([
      { value: 'a "quoted"\nline', headers: { host: 'h', source: 's', seq: '7' } },
      { value: 'b', headers: { host: 'h', source: 's', seq: '8' } },
      { value: '/w==', valueEncoding: 'base64', headers: { seq: '9' } },
      { value: 'c', headers: { seq: '10' } },
    ]);
  });

  it('the record-batch body holds the same records as the JSON body', () => {
    const h = { host: 'h', source: 's' };
    const recs = [
      { task: 't', seq: 7, topic: 'l', value: 'a "quoted"\nline ü', headers: h },
      { task: 't', seq: 8, topic: 'l', value: 'b', key: 'k8', headers: h },
      { task: 't', seq: 9, topic: 'l', value: '/w==', enc: 'base64' as const, headers: { seq: '9' } },
      { task: 't', seq: 10, topic: 'l', value: 'c', headers: {} },
    ];
    const batch = batchOf(recs);
    expect(validateBatch(batch)).toMatchObject({ count: 4, keyed: true });
    const json = JSON.parse(bodyOf(recs)) as Array<{ key?: string; value: string; valueEncoding?: string; headers: Record<string, string> }>;
    expect(decodeBatch(batch).records.map(([k, v, hd]) => [k && Buffer.from(k).toString(), Buffer.from(v).toString('base64'), hd]))
      .toEqual(json.map((r) => [r.key ?? null, Buffer.from(r.value, r.valueEncoding === 'base64' ? 'base64' : 'utf8').toString('base64'), r.headers]));
  });

  it('the agent\'s batch encoder writes the bytes the generic encoder writes', () => {
    const h = { host: 'h', source: 'ß/s' };
    const h2 = { host: 'h', source: 's', level: 'ERROR' };
    // seqs across digit-count boundaries, a multibyte value and key, base64, shared and unshared headers
    const seqs = [0, 9, 10, 99, 100, 12345, 999_999_999, 1_000_000_000_000, 2 ** 53 - 1];
    const recs = seqs.map((seq, i) => ({
      task: 't', seq, topic: 'l',
      ...(i === 3 ? { value: '/w==', enc: 'base64' as const } : { value: i % 2 === 0 ? `line ${i} ü €${'x'.repeat(i * 20)}` : `ascii line ${i}${'y'.repeat(i * 20)}` }),
      ...(i === 5 ? { key: 'kü' } : {}),
      headers: i < 4 ? h : i === 6 ? {} : h2,
    }));
    const generic = encodeBatch(recs.map((r) => {
      const { seq: _s, ...rest } = r.headers as Record<string, string>;
      return { value: r.enc === 'base64' ? Buffer.from(r.value, 'base64') : r.value, key: r.key, shared: encodeHeaders(rest), header: ['seq', String(r.seq)] as [string, string] };
    }), T);
    expect(batchOf(recs, T).equals(generic)).toBe(true);
    expect(validateBatch(batchOf(recs, T)).count).toBe(seqs.length);
  });
});
