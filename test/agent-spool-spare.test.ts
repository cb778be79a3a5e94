// The spool writes its next segment ahead (zeros, synced, its name synced) once the live one is half
// full, so a roll overwrites blocks in place and each commit's fdatasync needs no journal commit.
// Recovery treats a segment's unwritten zeros as its end, not as a torn append, and removes a segment
// written ahead but never used; a spare that cannot be made leaves the roll as it was.
import { afterEach, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { recordEntries } from '../src/agent/records.js';
import { decodeSegment, encodeEntry, Spool } from '../src/agent/spool.js';

const SEGMENT = 1 << 20;
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function tmp(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chicago-spool-spare-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const segs = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.wal')).sort();
const spareReady = (s: Spool): boolean => (s as unknown as { spare?: { ready: boolean } }).spare?.ready === true;

/** Appends 100 records of 1 KB (about 100 KB in one append); returns the seq after them. */
async function fill(spool: Spool, from: number): Promise<number> {
  const evs = Array.from({ length: 100 }, (_, i) => ({ value: `line ${from + i} ${'x'.repeat(1000)}`, source: '/x.log', timeMs: 0 }));
  await spool.append(recordEntries(spool, 'h', 't', 'logs', evs));
  return from + 100;
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A spool with 1 MiB segments, filled until its next segment is written ahead and ready. */
async function withSpare(): Promise<{ dir: string; opts: { dir: string; quotaBytes: number; segmentBytes: number }; spool: Spool; seq: number }> {
  const dir = tmp();
  const opts = { dir, quotaBytes: 64 << 20, segmentBytes: SEGMENT };
  const { spool } = Spool.open(opts);
  let seq = 0;
  while (segs(dir).length < 2) seq = await fill(spool, seq);
  await until('the spare to be ready', () => spareReady(spool));
  return { dir, opts, spool, seq };
}

describe('agent spool: the next segment written ahead', () => {
  it('is made once the live segment is half full, used by the roll in place, and recovery reads to its zeros', async () => {
    const { dir, opts, spool, seq: filled } = await withSpare();
    let seq = filled;
    const [live, spare] = segs(dir);
    expect(statSync(path.join(dir, spare)).size).toBe(SEGMENT);
    expect(decodeSegment(readFileSync(path.join(dir, spare))).entries).toEqual([]);
    const ino = statSync(path.join(dir, spare)).ino;
    // a crash now: the segment written ahead holds nothing, recovery removes it and loses no record
    const copy = tmp();
    cpSync(dir, copy, { recursive: true });
    // the live segment fills and rolls into the spare: the same file, as big as it was (the roll
    // writes its snapshot over the first zeros)
    while (readFileSync(path.join(dir, spare))[0] === 0) seq = await fill(spool, seq);
    const next = segs(dir).find((f) => f > live)!;
    expect(next).toBe(spare);
    expect(statSync(path.join(dir, next)).ino).toBe(ino);
    seq = await fill(spool, seq);
    spool.close();
    const { spool: s2, report } = Spool.open(opts);
    expect(report.tornBytes).toBe(0);
    expect(s2.records('t').length).toBe(seq);
    expect(s2.takeSeq('t')).toBe(seq);
    s2.close();

    const { spool: s3, report: r3 } = Spool.open({ ...opts, dir: copy });
    expect(r3.tornBytes).toBe(0);
    expect(s3.records('t').map((r) => r.seq)).toEqual(Array.from({ length: s3.records('t').length }, (_, i) => i));
    expect(s3.records('t').length).toBeGreaterThan(0);
    s3.close();
  });

  it('cuts a torn append in a segment written ahead, and only it', async () => {
    const { dir, opts, spool, seq: filled } = await withSpare();
    let seq = filled;
    const spare = path.join(dir, segs(dir)[1]);
    // the roll writes its snapshot over the spare's first zeros
    while (readFileSync(spare)[0] === 0) seq = await fill(spool, seq);
    seq = await fill(spool, seq);
    spool.close();
    const last = path.join(dir, segs(dir).at(-1)!);
    expect(statSync(last).size).toBe(SEGMENT);
    const { validBytes } = decodeSegment(readFileSync(last));
    // kill -9 mid-write: the first bytes of the next append, the zeros after them
    const torn = encodeEntry({ t: 'ck', key: 'k', ck: { task: 't', path: '/x.log', dev: 1, ino: 2, offset: 7, headLen: 0, headHash: 'h', tailHash: 't' } });
    const part = torn.subarray(0, torn.length - 3);
    const fd = openSync(last, 'r+');
    writeSync(fd, part, 0, part.length, validBytes);
    closeSync(fd);
    const { spool: s2, report } = Spool.open(opts);
    expect(report.tornBytes).toBe(part.length);
    expect(s2.records('t').length).toBe(seq);
    expect(s2.ckpts.get('k')).toBeUndefined();
    s2.close();
  });

  it('a spare that cannot be made (its name is taken) leaves the roll to create the segment', async () => {
    const dir = tmp();
    const opts = { dir, quotaBytes: 64 << 20, segmentBytes: SEGMENT };
    const { spool } = Spool.open(opts);
    const live = segs(dir)[0];
    const taken = `${String(Number(live.slice(0, 10)) + 1).padStart(10, '0')}.wal`;
    writeFileSync(path.join(dir, taken), 'not the spool\'s');
    let seq = 0;
    while (statSync(path.join(dir, taken)).size < 100 && seq < 2000) seq = await fill(spool, seq);
    // the roll took the name over with a snapshot; nothing was written ahead into it
    expect(decodeSegment(readFileSync(path.join(dir, taken))).entries[0]).toMatchObject({ t: 'snap' });
    seq = await fill(spool, seq);
    spool.close();
    const { spool: s2, report } = Spool.open(opts);
    expect(report.tornBytes).toBe(0);
    expect(s2.records('t').length).toBe(seq);
    s2.close();
  });
});
