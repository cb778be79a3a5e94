// The agent's byte path: the ASCII lines of a file read go to the spool and into the record batch as
// byte ranges of the read (no string and no object per line). Checked against the string path it
// replaces: the same values, levels, batches and spool state, at the boundaries of a read (a line
// split across two reads, CRLF, a read ending exactly at a newline, a line at the cap, a non-ASCII
// line beside ASCII ones), and the spool's byte form reads back (and the form before it still does),
// and a spool of them cut anywhere recovers whole appends only.
import { afterEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveAgentConfig } from '../src/agent/config.js';
import { BufferPool, Lease } from '../src/agent/buffers.js';
import { FileSource, readBuffers } from '../src/agent/files.js';
import { detectLevel, LineLevels } from '../src/agent/multiline.js';
import { bytesEntry, recordEntries } from '../src/agent/records.js';
import { batchOf, encodeShipBatch } from '../src/agent/shipper.js';
import { decodeSegment, encodeEntry, PendingRecords, recordsOf, recsCount, Spool, type RecsEntry, type Span } from '../src/agent/spool.js';
import { decodeBatch, validateBatch } from '../src/protocol/batch.js';
import { createLogger } from '../src/runtime/log.js';
import { waitUntil } from './helpers/bridge.js';
import { slow } from './helpers/slow.js';

const T = Date.parse('2026-12-06T12:00:00.000Z');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tmp(tag: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `chicago-agent-bytes-${tag}-`));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A file source over a fresh spool; `passes` runs whole passes (the poll a minute away: the watch events and kick() bring the reads). */
async function follow(tag: string, content: string | Buffer, opts: { maxLineBytes?: number } = {}) {
  const dir = tmp(tag);
  const logs = path.join(dir, 'logs');
  mkdirSync(logs);
  const file = path.join(logs, 'app.log');
  writeFileSync(file, content);
  const cfg = resolveAgentConfig({ sources: [{ task: 't', paths: [path.join(logs, '*.log')], topic: 'b' }], spool: { dir: path.join(dir, 'spool') }, pollIntervalMs: 60_000, ...opts }, dir, {});
  const { spool } = Spool.open(cfg.spool);
  const src = new FileSource(cfg.sources[0], cfg, spool, createLogger('silent'));
  await src.start();
  cleanups.push(async () => {
    await src.stop();
    spool.close();
  });
  /** the entries the records are held in, with the path each took */
  const entries = (): RecsEntry[] => {
    const q = spool.pending.get('t');
    return q && q.length > 0 ? q.spans(q.firstSeq, q.lastSeq).map((s) => s.e) : [];
  };
  const values = (): string[] => spool.records('t').map((r) => (r.enc ? `b64:${r.value}` : r.value));
  return { file, src, spool, entries, values, cfg };
}

const line = (i: number, len: number): string => {
  const head = `L ${i} `;
  return head + 'x'.repeat(len - 1 - head.length) + '\n';
};

describe('agent byte path: a read of ASCII lines', () => {
  it('a line split across two reads is one record; CRLF lines lose their CR; all as byte ranges', async () => {
    const { file, src, entries, values } = await follow('split', 'first\r\nsecond\r\nhalf of a li');
    await waitUntil('the first two lines', () => values().length === 2, slow(5000), 5);
    expect(values()).toEqual(['first', 'second']);
    const read0 = src.stats.bytesRead;
    appendFileSync(file, 'ne\r\nlast\n');
    src.kick();
    await waitUntil('the split line', () => values().length === 4, slow(5000), 5);
    expect(src.stats.bytesRead).toBeGreaterThan(read0);
    expect(values()).toEqual(['first', 'second', 'half of a line', 'last']);
    expect(entries().every((e) => e.vb !== undefined && e.v.length === 0)).toBe(true);
  });

  it("a small read's lines hold memory of their own while pending: not the pool slab or the held bytes they were read with", async () => {
    const { file, src, entries, values } = await follow('own', 'one\ntwo\n');
    await waitUntil('the first read', () => values().length === 2, slow(5000), 5);
    appendFileSync(file, 'three\n');
    src.kick();
    await waitUntil('the second read', () => values().length === 3, slow(5000), 5);
    const held = entries().map((e) => [e.vb!.data.length, e.vb!.data.buffer.byteLength]);
    expect(held).toEqual([[7, 7], [5, 5]]);
  });

  for (const len of [256, 200]) {
    it(`${len} B lines over several 1 MiB reads (${len === 256 ? 'each read ends exactly at a newline' : 'reads end inside a line'}): every line once, in order, seqs gap-free`, async () => {
      const n = Math.ceil((2.5 * 1024 * 1024) / len);
      const text = Array.from({ length: n }, (_, i) => line(i, len)).join('');
      if (len === 256) expect((1024 * 1024) % len).toBe(0);
      const { entries, values, spool } = await follow(`big${len}`, text);
      await waitUntil('every line', () => values().length === n, slow(20_000), 10);
      const got = values();
      for (let i = 0; i < n; i += 997) expect(got[i]).toBe(line(i, len).slice(0, -1));
      expect(got.join('\n') + '\n').toBe(text);
      const recs = spool.records('t');
      expect(recs.map((r) => r.seq)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(entries().length).toBeGreaterThan(1);
      expect(entries().every((e) => e.vb !== undefined)).toBe(true);
    });
  }

  it('a line of exactly maxLineBytes is whole; one byte more is cut into pieces (that read takes the string path)', async () => {
    const cap = 1024;
    const atCap = 'a'.repeat(cap);
    const over = 'b'.repeat(cap + 1);
    const { file, src, entries, values, spool } = await follow('cap', `${atCap}\nshort\n`, { maxLineBytes: cap });
    await waitUntil('the line at the cap', () => values().length === 2, slow(5000), 5);
    expect(values()).toEqual([atCap, 'short']);
    expect(entries()[0].vb).toBeDefined();
    appendFileSync(file, `${over}\nafter\n`);
    src.kick();
    await waitUntil('the pieces', () => values().length === 5, slow(5000), 5);
    expect(values()).toEqual([atCap, 'short', 'b'.repeat(cap), 'b', 'after']);
    const recs = spool.records('t');
    expect(recs.map((r) => r.headers.cut)).toEqual([undefined, undefined, '1+', '2/2', undefined]);
    expect(entries().map((e) => e.vb !== undefined)).toEqual([true, false]);
  });

  it('a line longer than a decoded piece (64 KiB) and under the cap is one record on the byte path, its level found', async () => {
    const long = `ERROR ${'y'.repeat(150 * 1024)}`;
    const { entries, values } = await follow('long', `short one\n${long}\nshort two\n`, { maxLineBytes: 256 * 1024 });
    await waitUntil('the long line', () => values().length === 3, slow(5000), 5);
    expect(values()).toEqual(['short one', long, 'short two']);
    expect(entries().every((e) => e.vb !== undefined)).toBe(true);
    expect(recordsOf(entries()[0]).map((r) => r.headers.level)).toEqual([undefined, 'error', undefined]);
  });

  it('a non-ASCII line beside ASCII ones: that read takes the string path (UTF-8 text, invalid bytes as base64), the next ASCII read the byte path', async () => {
    const bad = Buffer.from([0x61, 0xff, 0x62]);
    const { file, src, entries, values } = await follow('utf8', Buffer.concat([Buffer.from('ascii one\nhé llo\n'), bad, Buffer.from('\nascii two\n')]));
    await waitUntil('the mixed read', () => values().length === 4, slow(5000), 5);
    expect(values()).toEqual(['ascii one', 'hé llo', `b64:${Buffer.from([0x61, 0xff, 0x62]).toString('base64')}`, 'ascii two']);
    expect(entries()[0].vb).toBeUndefined();
    appendFileSync(file, 'ERROR plain again\n');
    src.kick();
    await waitUntil('the ASCII read', () => values().length === 5, slow(5000), 5);
    expect(entries()[1].vb).toBeDefined();
    expect(recordsOf(entries()[1])[0].headers.level).toBe('error');
  });
});

describe('agent byte path: pooled read buffers', () => {
  it('a read buffer is reused only once its records are acknowledged and the file has moved on; pending records never change', async () => {
    readBuffers.poisonByte = 0x21; // a buffer given back is overwritten: a record still reading it would show '!'
    cleanups.push(() => { readBuffers.poisonByte = undefined; });
    const len = 200;
    const n = Math.ceil((3.5 * 1024 * 1024) / len);
    const text = (from: number, count: number): string => Array.from({ length: count }, (_, i) => line(from + i, len)).join('');
    const { file, src, spool, values, entries } = await follow('pool', text(0, n));
    await waitUntil('every line', () => values().length === n, slow(20_000), 10);
    expect(entries().some((e) => e.vb?.lease !== undefined)).toBe(true);
    const reused0 = readBuffers.reused;
    // the first two reads acknowledged: their buffers go back (the last read's stays with the file)
    const es = entries();
    expect(es.length).toBeGreaterThan(2);
    const ackTo = es[1].seq + recsCount(es[1]) - 1;
    await spool.append([{ t: 'ack', task: 't', to: ackTo }]);
    const held = spool.records('t');
    expect(held[0].seq).toBe(ackTo + 1);
    expect(held.every((r) => r.value === line(r.seq, len).slice(0, -1))).toBe(true);
    // more lines: read into the buffers given back
    appendFileSync(file, text(n, n));
    src.kick();
    await waitUntil('the lines appended', () => spool.records('t').at(-1)?.seq === 2 * n - 1, slow(20_000), 10);
    expect(readBuffers.reused).toBeGreaterThan(reused0);
    const recs = spool.records('t');
    expect(recs.map((r) => r.seq)).toEqual(Array.from({ length: 2 * n - 1 - ackTo }, (_, i) => ackTo + 1 + i));
    for (const r of recs) if (r.value !== line(r.seq, len).slice(0, -1)) expect(r.value).toBe(line(r.seq, len).slice(0, -1));
  });

  it('a pool hands small requests to Node and a lease gives its buffer back after its last holder', () => {
    const pool = new BufferPool({ keptMax: 2, idleMs: 1000, minBytes: 1024 });
    pool.give(pool.take(100));
    pool.take(100);
    expect(pool.reused).toBe(0);
    const lease = new Lease(pool, pool.take(4096));
    lease.hold();
    lease.release();
    expect(pool.take(4096).buffer).not.toBe(lease.buf.buffer); // one holder left: not back yet
    lease.release();
    expect(() => lease.release()).toThrow(/released more often/);
    expect(pool.take(4000).buffer).toBe(lease.buf.buffer);
    expect(pool.reused).toBe(1);
    const twice = pool.take(2048);
    pool.give(twice);
    expect(() => pool.give(twice)).toThrow(/given back twice/);
  });
});

describe('agent byte path: levels, spool form and batches', () => {
  it('LineLevels gives detectLevel of every line from one scan, words cut at 200 chars included', () => {
    const words = ['INFO', 'info', 'Warn', 'WARNING', 'WARNINGS', 'ERR', 'ERROR', 'error_x', 'xERROR', 'CRITICAL', 'fatal', 'Panic', 'notice', 'DEBUG', 'trace', 'severe', 'ok', '9ERR'];
    const starts = ['', 'Traceback (most recent call last):', 'Exception in thread main', 'panic: boom', 'fatal error: x', 'Trace', 'pa'];
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const lines: string[] = [];
    for (let i = 0; i < 3000; i++) {
      let l = starts[rnd(starts.length)];
      const target = rnd(4) === 0 ? 190 + rnd(20) : rnd(260);
      while (l.length < target) l += (rnd(3) === 0 ? words[rnd(words.length)] : 'abc'.slice(0, 1 + rnd(3))) + [' ', '-', '_', '.', ''][rnd(5)];
      // a word around the 200-char cut
      if (rnd(3) === 0 && l.length > 205) l = l.slice(0, 196 + rnd(4)) + words[rnd(words.length)] + l.slice(200);
      lines.push(l);
    }
    const text = lines.map((l, i) => l + (i % 3 === 0 ? '\r\n' : '\n')).join('');
    const ll = new LineLevels(text);
    let at = 0;
    let found = 0;
    for (const l of lines) {
      const want = detectLevel(l);
      if (want) found++;
      expect(ll.of(at, at + l.length), l).toBe(want);
      at += l.length + (text[at + l.length] === '\r' ? 2 : 1);
    }
    expect(found).toBeGreaterThan(500);
  });

  it('an entry of byte ranges spools in the ranges form and reads back (as does the form before it), and batches as the string records would', () => {
    const dir = tmp('form');
    const { spool } = Spool.open({ dir, quotaBytes: 1 << 20, segmentBytes: 1 << 20 });
    cleanups.push(() => spool.close());
    const lines = ['plain', '', 'ERROR x', 'with "quotes" \\ and \t', 'WARN y'];
    const read = Buffer.from(`junk before\n${lines.join('\r\n')}\npartial`);
    const at = read.indexOf('plain');
    const starts: number[] = [];
    const ends: number[] = [];
    let p = at;
    for (const l of lines) {
      starts.push(p - at);
      ends.push(p - at + l.length);
      p += l.length + 2;
    }
    const e = bytesEntry(spool, 'h', 't', 'logs', '/x.log', T, { data: read.subarray(at, at + ends[ends.length - 1]), starts: Uint32Array.from(starts), ends: Uint32Array.from(ends) }, lines.map((l) => detectLevel(l)));
    expect(recsCount(e)).toBe(lines.length);
    // the same lines through the string path
    const s = recordEntries(spool, 'h', 't', 'logs', lines.map((value) => ({ value, source: '/x.log', timeMs: T, level: detectLevel(value) })), true)[0] as RecsEntry;
    const strings = recordsOf(s);
    const bytes = recordsOf(e);
    expect(bytes.map((r) => [r.value, r.headers])).toEqual(strings.map((r) => [r.value, r.headers]));
    // the spool record: marker 1, the read's bytes as they are (CR LF between lines included)
    const enc = encodeEntry({ t: 'all', es: [e, { t: 'ck', key: 'k', ck: null }] });
    expect(enc[8]).toBe(1);
    expect(enc.includes(Buffer.from(lines.join('\r\n')))).toBe(true);
    const back = decodeSegment(enc).entries[0] as { t: 'all'; es: RecsEntry[] };
    expect(recordsOf(back.es[0]).map((r) => [r.value, r.headers, r.seq])).toEqual(bytes.map((r) => [r.value, r.headers, r.seq]));
    expect(back.es[1]).toEqual({ t: 'ck', key: 'k', ck: null });
    // the form before it (marker 0, values back to back) is still written for string entries and read
    const old = encodeEntry(s);
    expect(old[8]).toBe(0);
    expect(recordsOf(decodeSegment(old).entries[0] as RecsEntry).map((r) => r.value)).toEqual(lines);
    // a batch from the ranges (staged, then moved into place) is the batch of the string records, byte for byte
    const span = (x: RecsEntry, i = 0, j = recsCount(x)): Span => ({ e: x, i, j });
    expect(encodeShipBatch([span(e)], T).equals(batchOf(strings.map((r) => ({ ...r, seq: r.seq - s.seq + e.seq })), T))).toBe(true);
    // several entries in one batch: ranges, strings with bytes as base64, ranges again, part of one
    const b64 = recordEntries(spool, 'h', 't', 'logs', [{ value: 'é', source: '/y.log', timeMs: T }, { value: Buffer.from([0xfe]), source: '/y.log', timeMs: T }])[0] as RecsEntry;
    const e2 = bytesEntry(spool, 'h', 't', 'logs', '/x.log', T + 1, { data: read.subarray(at, at + ends[1]), starts: Uint32Array.from(starts.slice(0, 2)), ends: Uint32Array.from(ends.slice(0, 2)) });
    const spans = [span(e, 1), span(b64), span(e2), span(back.es[0], 0, 3)];
    const mixed = encodeShipBatch(spans, T);
    expect(mixed.equals(batchOf(spans.flatMap((x) => recordsOf(x.e, x.i, x.j)), T))).toBe(true);
    expect(decodeBatch(mixed).records.map(([, v]) => Buffer.from(v).toString('latin1'))).toEqual([...lines.slice(1), Buffer.from('é').toString('latin1'), '\xfe', 'plain', '', 'plain', '', 'ERROR x']);
    // ranges that are not lines of one read (far apart) are copied one by one: the same batch
    const far = bytesEntry(spool, 'h', 't', 'logs', '/x.log', T, { data: Buffer.from('aaaa..........bbbb'), starts: Uint32Array.from([14, 0]), ends: Uint32Array.from([18, 4]) });
    expect(encodeShipBatch([span(far)], T).equals(batchOf(recordsOf(far), T))).toBe(true);
  });

  it('pending records held per entry: any seq range is the right records after partial acks, across many entries', () => {
    let seed = 11;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const q = new PendingRecords();
    const all: number[] = [];
    let next = 0;
    let acked = -1;
    for (let round = 0; round < 300; round++) {
      const n = 1 + rnd(rnd(4) === 0 ? 50 : 3);
      const e: RecsEntry = { t: 'recs', task: 't', topic: 'x', seq: next, h: {}, v: Array.from({ length: n }, (_, i) => `v${next + i}`) };
      q.push(e, 0);
      for (let i = 0; i < n; i++) all.push(next + i);
      next += n;
      if (rnd(3) === 0 && acked < next - 1) {
        acked += 1 + rnd(Math.min(20, next - 1 - acked));
        q.dropTo(acked);
      }
      const held = all.filter((x) => x > acked);
      expect(q.length).toBe(held.length);
      if (held.length === 0) continue;
      expect([q.firstSeq, q.lastSeq]).toEqual([held[0], held[held.length - 1]]);
      const from = held[0] + rnd(held.length);
      const to = from + rnd(held[held.length - 1] - from + 1);
      const got = q.spans(from, to).flatMap((sp) => recordsOf(sp.e, sp.i, sp.j).map((r) => r.value));
      expect(got).toEqual(held.filter((x) => x >= from && x <= to).map((x) => `v${x}`));
    }
    expect(q.toArray().map((r) => r.seq)).toEqual(all.filter((x) => x > acked));
  });

  it('records of byte ranges recover from the spool, acknowledged in part, with their seqs', async () => {
    const dir = tmp('recover');
    const opts = { dir, quotaBytes: 1 << 20, segmentBytes: 1 << 20 };
    const { spool } = Spool.open(opts);
    const read = Buffer.from('one\ntwo\nthree\nfour\n');
    const e = bytesEntry(spool, 'h', 't', 'logs', '/x.log', T, { data: read, starts: Uint32Array.from([0, 4, 8, 14]), ends: Uint32Array.from([3, 7, 13, 18]) });
    await spool.append([e]);
    await spool.append([{ t: 'ack', task: 't', to: 1 }]);
    expect(spool.records('t').map((r) => [r.seq, r.value])).toEqual([[2, 'three'], [3, 'four']]);
    spool.close();
    const { spool: s2 } = Spool.open(opts);
    expect(s2.records('t').map((r) => [r.seq, r.value])).toEqual([[2, 'three'], [3, 'four']]);
    expect(s2.pending.get('t')!.spans(2, 3)[0].e.vb).toBeDefined();
    s2.close();
  });
});

describe('agent byte path: batch seqs and CRC', () => {
  it('a batch of many KiB (its CRC taken in pieces as it is written) checks, with seq headers right around 2^31, 2^32 and 2^53', () => {
    const n = 600;
    const data = Buffer.from(Array.from({ length: n }, (_, i) => line(i, 200)).join(''), 'latin1');
    const starts = Uint32Array.from({ length: n }, (_, i) => i * 200);
    const ends = Uint32Array.from({ length: n }, (_, i) => i * 200 + 199);
    for (const seq of [0, 9, 2 ** 31 - 300, 2 ** 32 - 10, 2 ** 53 - 1000]) {
      const e: RecsEntry = { t: 'recs', task: 't', topic: 'b', seq, h: { host: 'h', task: 't', source: '/x.log', time: 'T' }, v: [], vb: { data, starts, ends }, a: 1 };
      const b = encodeShipBatch([{ e, i: 0, j: 250 }, { e, i: 250, j: n }], T);
      // the CRC32C over the whole batch checks
      expect(validateBatch(b).count).toBe(n);
      const { records } = decodeBatch(b);
      expect(records.map((r) => r[2]!.seq)).toEqual(Array.from({ length: n }, (_, i) => String(seq + i)));
      expect(records.map((r) => Buffer.from(r[1]).toString('latin1'))).toEqual(Array.from({ length: n }, (_, i) => line(i, 200).slice(0, -1)));
    }
  });
});

describe('agent byte path: crash safety of the ranges form', () => {
  it('a read of empty lines only (no value bytes) is spooled with a CRC that checks, and recovers', async () => {
    const dir = tmp('empty');
    const opts = { dir, quotaBytes: 1 << 20, segmentBytes: 1 << 20 };
    const { spool } = Spool.open(opts);
    // "\n\n": two empty lines; the read's bytes before the last newline are none
    await spool.append([bytesEntry(spool, 'h', 't', 'logs', '/x.log', T, { data: Buffer.alloc(0), starts: Uint32Array.from([0, 0]), ends: Uint32Array.from([0, 0]) })]);
    await spool.append([bytesEntry(spool, 'h', 't', 'logs', '/x.log', T, { data: Buffer.from('after'), starts: Uint32Array.from([0]), ends: Uint32Array.from([5]) })]);
    spool.close();
    const { spool: s2, report } = Spool.open(opts);
    expect(report.tornBytes).toBe(0);
    expect(s2.records('t').map((r) => [r.seq, r.value])).toEqual([[0, ''], [1, ''], [2, 'after']]);
    s2.close();
  });

  it('one commit of more buffers than one writev system call takes (IOV_MAX, 1024) is written whole and recovers', async () => {
    const dir = tmp('iov');
    const opts = { dir, quotaBytes: 8 << 20, segmentBytes: 8 << 20 };
    const { spool } = Spool.open(opts);
    const commits: number[] = [];
    spool.onTiming = (t) => commits.push(t.recs.length);
    const values: string[] = [];
    const appends: Array<Promise<void>> = [];
    // appended in one turn: one commit, four buffers per append (header and meta, starts, ends, the read's bytes)
    for (let i = 0; i < 600; i++) {
      const lines = [`a ${i}`, `b ${i}`];
      values.push(...lines);
      const read = Buffer.from(lines.join('\n'));
      appends.push(spool.append([bytesEntry(spool, 'h', 't', 'logs', '/x.log', T, { data: read, starts: Uint32Array.from([0, lines[0].length + 1]), ends: Uint32Array.from([lines[0].length, read.length]) })]));
    }
    await Promise.all(appends);
    expect(commits).toEqual([600]);
    spool.close();
    const { spool: s2, report } = Spool.open(opts);
    expect(report.tornBytes).toBe(0);
    expect(s2.records('t').map((r) => r.value)).toEqual(values);
    s2.close();
  });

  it('a spool cut anywhere in its ranges records recovers whole appends only: records, checkpoint, range and acks together, seqs gap-free', async () => {
    const dir = tmp('torn');
    const opts = { dir, quotaBytes: 1 << 20, segmentBytes: 1 << 20 };
    const { spool } = Spool.open(opts);
    const seg = (): string => path.join(dir, readdirSync(dir).filter((f) => f.endsWith('.wal')).sort().at(-1)!);
    const ck = (offset: number) => ({ task: 't', path: '/x.log', dev: 1, ino: 2, offset, headLen: 0, headHash: '', tailHash: '' });
    // the state after each append, and where in the segment that append ends
    type State = { values: string[]; seqs: number[]; offset?: number; sends: Array<{ from: number; to: number }>; next: number };
    const states: State[] = [{ values: [], seqs: [], sends: [], next: 0 }];
    const ends: number[] = [statSync(seg()).size];
    let offset = 0;
    for (let i = 0; i < 12; i++) {
      const prev = states[states.length - 1];
      if (i % 4 === 3) {
        // an ack in the middle of an entry's records (a batch cut inside a read)
        const to = prev.seqs[Math.floor(prev.seqs.length / 2)];
        await spool.append([{ t: 'ack', task: 't', to }]);
        const keep = prev.seqs.map((s, k) => [s, k]).filter(([s]) => s > to).map(([, k]) => k);
        states.push({ ...prev, values: keep.map((k) => prev.values[k]), seqs: keep.map((k) => prev.seqs[k]), sends: prev.sends.filter((r) => r.to > to) });
      } else {
        const lines = Array.from({ length: 1 + i }, (_, j) => `line ${i}.${j} ${'x'.repeat(j * 7)}`);
        const read = Buffer.from(`held bytes\n${lines.join('\n')}\npartial`);
        const at = read.indexOf('line ');
        const starts: number[] = [];
        const lineEnds: number[] = [];
        let p = 0;
        for (const l of lines) {
          starts.push(p);
          lineEnds.push(p + l.length);
          p += l.length + 1;
        }
        const e = bytesEntry(spool, 'h', 't', 'logs', '/x.log', T, { data: read.subarray(at, at + lineEnds[lineEnds.length - 1]), starts: Uint32Array.from(starts), ends: Uint32Array.from(lineEnds) });
        offset += read.length;
        const send = i % 2 === 0 ? [{ t: 'send' as const, task: 't', from: e.seq, to: e.seq + lines.length - 1 }] : [];
        await spool.append([e, { t: 'ck', key: 'k', ck: ck(offset) }, ...send]);
        states.push({ values: [...prev.values, ...lines], seqs: [...prev.seqs, ...lines.map((_, k) => e.seq + k)], offset, sends: [...prev.sends, ...send.map(({ from, to }) => ({ from, to }))], next: e.seq + lines.length });
      }
      ends.push(statSync(seg()).size);
    }
    spool.close();
    const whole = readFileSync(seg());
    expect(whole.length).toBe(ends[ends.length - 1]);
    // every append's end and the bytes either side of it, and points inside the records (meta, starts/ends, values)
    const cuts = new Set<number>();
    for (const x of ends) for (const d of [-1, 0, 1]) if (x + d >= ends[0] && x + d <= whole.length) cuts.add(x + d);
    for (let c = ends[0]; c < whole.length; c += 11) cuts.add(c);
    for (const c of cuts) {
      const d = tmp('torn-cut');
      writeFileSync(path.join(d, path.basename(seg())), whole.subarray(0, c));
      const { spool: s2, report } = Spool.open({ ...opts, dir: d });
      let k = 0;
      while (k + 1 < ends.length && ends[k + 1] <= c) k++;
      const want = states[k];
      expect(report.tornBytes, `cut at ${c}`).toBe(c - ends[k]);
      expect(s2.records('t').map((r) => [r.seq, r.value]), `cut at ${c}`).toEqual(want.seqs.map((s, j) => [s, want.values[j]]));
      expect(s2.ckpts.get('k')?.offset, `cut at ${c}`).toBe(want.offset);
      expect(s2.sends.get('t') ?? [], `cut at ${c}`).toEqual(want.sends);
      expect(s2.takeSeq('t'), `cut at ${c}: the next seq follows the durable records`).toBe(want.next);
      s2.close();
      rmSync(d, { recursive: true, force: true });
    }
  });
});
