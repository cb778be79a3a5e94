// The host agent's pure parts and its spool: config, multiline, identity decisions, spool recovery.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { appendFile, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, resolveAgentConfig, loadAgentConfig } from '../src/agent/config.js';
import { Multiline, detectLevel, type Event, type MultilineState } from '../src/agent/multiline.js';
import { closesFirst, copyInProgress, globRegExp, growth, hashBytes, isRotatedName, judge, supersedes, tailRange } from '../src/agent/identity.js';
import { decodeSegment, encodeEntry, recsCount, Spool, type Entry, type FileCkpt } from '../src/agent/spool.js';
import { sendable } from '../src/agent/shipper.js';

const tmp = (p: string) => mkdtemp(path.join(os.tmpdir(), `chicago-agent-${p}-`));
const src = { task: 'app', paths: ['/var/log/app/*.log'], topic: 'logs' };

describe('agent config', () => {
  it('fills defaults and resolves paths against the config file', () => {
    const c = resolveAgentConfig({ sources: [{ ...src, paths: ['logs/*.log'] }] }, '/etc/chicago', {});
    expect(c.node.url).toBe('http://127.0.0.1:7070');
    expect(c.host.length).toBeGreaterThan(0);
    expect(c.spool.dir).toBe('/etc/chicago/agent-spool');
    expect(c.sources[0].paths).toEqual(['/etc/chicago/logs/*.log']);
    expect(c.node.token).toBeUndefined();
    expect(c.batch.inFlightMax).toBe(4);
    // no more in flight than a partition remembers of a producer (a resend past them is not recognised)
    expect(resolveAgentConfig({ sources: [src], batch: { inFlightMax: 8 } }, '/', {}).batch.inFlightMax).toBe(8);
    expect(() => resolveAgentConfig({ sources: [src], batch: { inFlightMax: 9 } }, '/', {})).toThrow(/inFlightMax/);
  });

  it('rejects unknown keys, at every level', () => {
    expect(() => resolveAgentConfig({ sources: [src], spoool: {} }, '/', {})).toThrow(/spoool/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, multline: {} }] }, '/', {})).toThrow(/multline/);
    expect(() => resolveAgentConfig({ sources: [src], spool: { quota: 1 } }, '/', {})).toThrow(ConfigError);
  });

  it('rejects a task shipping to two topics, bad regexps, empty multiline', () => {
    expect(() => resolveAgentConfig({ sources: [src, { ...src, topic: 'other' }] }, '/', {})).toThrow(/one topic/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, multiline: { start: '(' } }] }, '/', {})).toThrow(/regular expression/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, multiline: { quietMs: 5 } }] }, '/', {})).toThrow(/preset, start or continue/);
    expect(resolveAgentConfig({ sources: [{ ...src, key: { json: 'remote_addr' } }] }, '/', {}).sources[0].key).toEqual({ json: 'remote_addr' });
    expect(() => resolveAgentConfig({ sources: [{ ...src, key: { regex: '(' } }] }, '/', {})).toThrow(/key\/regex is not a valid regular expression/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, key: { json: 'a', regex: 'b' } }] }, '/', {})).toThrow(ConfigError);
    expect(() => resolveAgentConfig({ sources: [{ ...src, key: {} }] }, '/', {})).toThrow(ConfigError);
    // health, alerts and scripts ship as tasks of their own (health, alerts, scripts)
    expect(() => resolveAgentConfig({ sources: [{ ...src, task: 'health' }], health: {} }, '/', {})).toThrow(/health\/task health ships to health.*one topic/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, task: 'alerts' }], alerts: {} }, '/', {})).toThrow(/alerts\/task alerts ships to alerts.*one topic/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, task: 'scripts' }], scripts: {} }, '/', {})).toThrow(/task scripts.*one topic/);
    expect(() => resolveAgentConfig({ sources: [src], health: { task: 'h' }, alerts: { task: 'h' } }, '/', {})).toThrow(/alerts\/task h ships to alerts.*one topic/);
    expect(resolveAgentConfig({ sources: [{ ...src, task: 'health', topic: 'health' }], health: {} }, '/', {}).sources[0].task).toBe('health');
    // a log pattern names a task the agent ships, or it would count nothing
    expect(() => resolveAgentConfig({ sources: [src], alerts: { logPatterns: [{ name: 'e', task: 'ap', regex: 'ERROR' }] } }, '/', {})).toThrow(/logPatterns\/0\/task ap is no task of this agent \(app, alerts\)/);
    expect(resolveAgentConfig({ sources: [src], alerts: { logPatterns: [{ name: 'e', task: 'app', regex: 'ERROR' }] } }, '/', {}).monitor.alerts!.logPatterns[0].task).toBe('app');
  });

  it('takes the token from the environment or a file, and reports an unreadable one as a config error', async () => {
    expect(resolveAgentConfig({ sources: [src] }, '/', { CHICAGO_TOKEN: 'tok' }).node.token).toBe('tok');
    const dir = await tmp('cfg');
    await writeFile(path.join(dir, 'tok'), 'filetok\n');
    expect(resolveAgentConfig({ sources: [src], node: { tokenFile: 'tok' } }, dir, {}).node.token).toBe('filetok');
    expect(() => resolveAgentConfig({ sources: [src], node: { tokenFile: 'nope' } }, dir, {})).toThrow(ConfigError);
    await writeFile(path.join(dir, 'a.yaml'), 'sources:\n  - task: app\n    paths: [x.log]\n    topic: logs\nhost: h1\n');
    expect(loadAgentConfig(path.join(dir, 'a.yaml'), {}).host).toBe('h1');
  });
});

function run(ml: Multiline, lines: string[], step = 10): { events: Event[]; s: MultilineState } {
  const s: MultilineState = {};
  const events: Event[] = [];
  let off = 0;
  lines.forEach((text, i) => {
    ml.push(s, { text, start: off, end: off + text.length + 1, atMs: i * step }, events);
    off += text.length + 1;
  });
  return { events, s };
}
const ML = { quietMs: 100, maxLines: 500, maxBytes: 256 * 1024 };

describe('agent multiline', () => {
  it('joins a Java trace, causes and "... n more"', () => {
    const ml = new Multiline({ ...ML, preset: 'java' });
    const { events, s } = run(ml, [
      '2026-12-06 ERROR failed', 'java.lang.IllegalStateException: x', '\tat a.B.c(B.java:1)', 'Caused by: java.io.IOException: y',
      '\tat d.E.f(E.java:2)', '\t... 3 more', '2026-12-06 INFO next',
    ]);
    expect(events.map((e) => e.lines)).toEqual([6]);
    expect(events[0].text.split('\n')[1]).toBe('java.lang.IllegalStateException: x');
    expect(s.pending?.lines).toEqual(['2026-12-06 INFO next']);
    // the checkpoint of a pending event is its first line's offset
    expect(s.pending?.start).toBe(events[0].end);
  });

  it('ends a Python traceback at its exception line, chained ones included', () => {
    const ml = new Multiline({ ...ML, preset: 'python' });
    const { events, s } = run(ml, [
      'Traceback (most recent call last):', '  File "a.py", line 1, in <module>', '    f()', 'ValueError: bad', 'next line',
    ]);
    expect(events.map((e) => e.text)).toEqual(['Traceback (most recent call last):\n  File "a.py", line 1, in <module>\n    f()\nValueError: bad']);
    expect(s.pending?.lines).toEqual(['next line']);
  });

  it('start pattern, line cap, byte cap and quiet timeout', () => {
    const ml = new Multiline({ ...ML, start: '^\\d{4}-', maxLines: 3 });
    const { events, s } = run(ml, ['2026-1 a', 'b', 'c', 'd', '2026-2 e']);
    expect(events.map((e) => e.lines)).toEqual([3, 1]);
    const out: Event[] = [];
    ml.flush(s, 40 + 99, out);
    expect(out).toHaveLength(0);
    ml.flush(s, 40 + 100, out);
    expect(out.map((e) => e.text)).toEqual(['2026-2 e']);
    const small = new Multiline({ ...ML, continue: '^\\s', maxBytes: 1024 });
    const big = run(small, ['x', ' ' + 'y'.repeat(600), ' ' + 'z'.repeat(600)]);
    expect(big.events.map((e) => e.lines)).toEqual([2]);
  });

  it('detects levels', () => {
    expect(detectLevel('2026 WARN disk')).toBe('warn');
    expect(detectLevel('[error] x')).toBe('error');
    expect(detectLevel('Traceback (most recent call last):\n  x')).toBe('error');
    expect(detectLevel('plain')).toBeUndefined();
  });
});

const ck = (o: Partial<FileCkpt> = {}): FileCkpt => ({
  task: 'app', path: '/l/a.log', dev: 1, ino: 2, offset: 100, headLen: 50, headHash: 'H', tailHash: 'T', ...o,
});

describe('agent file identity', () => {
  it('trusts an offset only when inode, head and tail all match', () => {
    expect(judge(ck(), { dev: 1, ino: 2, size: 200, headHash: 'H', tailHash: 'T' })).toBe('resume');
    expect(judge(ck(), { dev: 1, ino: 3, size: 200, headHash: 'H', tailHash: 'T' })).toBe('elsewhere');
    expect(judge(ck(), { dev: 9, ino: 2, size: 200, headHash: 'H', tailHash: 'T' })).toBe('elsewhere');
    // inode reuse: another head
    expect(judge(ck(), { dev: 1, ino: 2, size: 200, headHash: 'X', tailHash: 'T' })).toBe('rewritten');
    // copytruncate: shorter, or the bytes before the offset changed
    expect(judge(ck(), { dev: 1, ino: 2, size: 99, headHash: 'H' })).toBe('rewritten');
    expect(judge(ck(), { dev: 1, ino: 2, size: 200, headHash: 'H', tailHash: 'Y' })).toBe('rewritten');
  });

  it('sees truncation by size and by changed bytes before the read position', () => {
    expect(growth(100, 100)).toBe('idle');
    expect(growth(100, 150, Buffer.from('ab'), Buffer.from('ab'))).toBe('read');
    expect(growth(100, 50)).toBe('truncated');
    expect(growth(100, 150, Buffer.from('xy'), Buffer.from('ab'))).toBe('truncated');
    expect(tailRange(100)).toEqual([0, 100]);
    expect(tailRange(5000)).toEqual([5000 - 1024, 5000]);
    expect(hashBytes(Buffer.from('a'))).not.toBe(hashBytes(Buffer.from('b')));
  });

  it('sees a copytruncate before the first read by the head the file was found with', () => {
    // found (or restarted at 0) with 3 lines, nothing read yet; copytruncated, the writer went on
    const gen1 = Buffer.from('copy 1 INFO\ncopy 2 INFO\ncopy 3 INFO\n');
    const gen2 = Buffer.from('copy 4 INFO\n');
    const head = (now: Buffer) => ({ len: gen1.length, hash: hashBytes(gen1), now });
    expect(growth(0, gen1.length + 12, Buffer.alloc(0), Buffer.alloc(0), head(gen1))).toBe('read');
    // shrunk below the head: the rotated copy holds it (not bytes gone unread)
    expect(growth(0, gen2.length, Buffer.alloc(0), Buffer.alloc(0), head(gen2))).toBe('truncated');
    // grown past the head again with other bytes
    const gen2long = Buffer.concat([gen2, gen2, gen2, gen2]);
    expect(growth(0, gen2long.length, Buffer.alloc(0), Buffer.alloc(0), head(gen2long.subarray(0, gen1.length)))).toBe('truncated');
    // read past the head: the bytes before the read position decide, as before
    expect(growth(40, 50, Buffer.from('ab'), Buffer.from('ab'))).toBe('read');
  });

  it('a checkpoint at 0 does not replace one past 0 (an empty head matches every later generation)', () => {
    const empty = hashBytes(Buffer.alloc(0));
    // the end of the rotated copy just finished, under the truncated file's key
    const copyEnd = ck({ offset: 5000, headLen: 1024, headHash: 'H1', tailHash: 'T1' });
    // the file restarted at 0 right after the truncate: nothing in it yet
    const atZero = ck({ offset: 0, headLen: 0, headHash: empty, tailHash: empty });
    // another copytruncate while the agent is down: the file holds 300 bytes of a later generation,
    // probed at each checkpoint's head length and offset (its first 0 bytes hash as the empty head)
    const later = { dev: 1, ino: 2, size: 300 };
    // the checkpoint at 0 would resume it at 0 (the copy with the lines between never read) ...
    expect(judge(atZero, { ...later, headHash: empty, tailHash: empty })).toBe('resume');
    // ... the copy's end sees it rewritten: that copy is finished, then the newer one, then the file
    expect(judge(copyEnd, later)).toBe('rewritten');
    expect(supersedes(copyEnd, atZero)).toBe(false);
    expect(supersedes(copyEnd, { ...atZero, headLen: 60, headHash: 'H2' })).toBe(false);
    // anything read of it, a piece of a cut line shipped, no older checkpoint, or an older one at 0
    expect(supersedes(copyEnd, { ...atZero, offset: 40 })).toBe(true);
    expect(supersedes(copyEnd, { ...atZero, cut: 1 })).toBe(true);
    expect(supersedes(undefined, atZero)).toBe(true);
    expect(supersedes({ ...atZero }, { ...atZero, headLen: 60, headHash: 'H2' })).toBe(true);
  });

  it('a rotated copy whose bytes are still the file\'s is not read as a generation of its own (logrotate is copying)', () => {
    const file = Buffer.from('copy 100 INFO\ncopy 101 INFO\ncopy 102 INFO\n');
    // copytruncate has copied 2 lines of 3 and not truncated yet
    expect(copyInProgress(file.subarray(0, 28), 28, file, file.length)).toBe(true);
    // truncated since: the file holds the next generation
    const next = Buffer.from('copy 103 INFO\n');
    expect(copyInProgress(file, file.length, next, next.length)).toBe(false);
    // truncated and grown past the copy again with other lines
    const nextLong = Buffer.from('copy 103 INFO\ncopy 104 INFO\ncopy 105 INFO\ncopy 106 INFO\n');
    expect(copyInProgress(file, file.length, nextLong, nextLong.length)).toBe(false);
    // an empty copy holds nothing to read
    expect(copyInProgress(Buffer.alloc(0), 0, file, file.length)).toBe(false);
  });

  it('rotated files of one name close oldest first, whatever order they were found in', () => {
    // a restart resumes the oldest checkpoint and finds a newer file rotated away unread first
    expect(closesFirst({ mtimeMs: 100, foundBefore: false }, { mtimeMs: 200 })).toBe(true);
    expect(closesFirst({ mtimeMs: 200, foundBefore: true }, { mtimeMs: 100 })).toBe(false);
    expect(closesFirst({ mtimeMs: 100, foundBefore: true }, { mtimeMs: 100 })).toBe(true);
    expect(closesFirst({ mtimeMs: 100, foundBefore: false }, { mtimeMs: 100 })).toBe(false);
  });

  it('globs and rotated names', () => {
    expect(globRegExp('*.log').test('app.log')).toBe(true);
    expect(globRegExp('*.log').test('app.log.1')).toBe(false);
    expect(globRegExp('a?[0-9].txt').test('ab7.txt')).toBe(true);
    expect(isRotatedName('app.log', 'app.log.1')).toBe(true);
    expect(isRotatedName('app.log', 'app.log-20261206')).toBe(true);
    expect(isRotatedName('app.log', 'app.log.1.gz')).toBe(false);
    expect(isRotatedName('app.log', 'app.logx')).toBe(false);
    expect(isRotatedName('app.log', 'app.log')).toBe(false);
  });
});

const rec = (task: string, seq: number): Entry => ({ t: 'rec', task, seq, topic: 'logs', value: `v${seq}`, headers: { seq: String(seq) } });

describe('agent spool', () => {
  it('encodes records with a CRC and stops at a torn or corrupt one', () => {
    const a = encodeEntry(rec('t', 0));
    const b = encodeEntry(rec('t', 1));
    const whole = Buffer.concat([a, b]);
    expect(decodeSegment(whole).entries).toHaveLength(2);
    expect(decodeSegment(whole.subarray(0, whole.length - 3))).toMatchObject({ validBytes: a.length });
    const bad = Buffer.from(whole);
    bad[a.length + 12] ^= 0xff;
    expect(decodeSegment(bad).validBytes).toBe(a.length);
  });

  it('recovers records, checkpoints, sends and acks; truncates a torn tail', async () => {
    const dir = await tmp('spool');
    const opts = { dir, quotaBytes: 8 * 1024 * 1024, segmentBytes: 1024 * 1024 };
    const { spool } = Spool.open(opts);
    for (let i = 0; i < 5; i++) expect(spool.takeSeq('t')).toBe(i);
    await spool.append([rec('t', 0), rec('t', 1), rec('t', 2), { t: 'ck', key: 'k', ck: ck({ offset: 7 }) }]);
    await spool.append([rec('t', 3), rec('t', 4), { t: 'ck', key: 'k', ck: ck({ offset: 9 }) }]);
    await spool.append([{ t: 'send', task: 't', from: 0, to: 2 }]);
    await spool.append([{ t: 'ack', task: 't', to: 2 }, { t: 'send', task: 't', from: 3, to: 4 }]);
    spool.close();
    // a torn append after the last whole one (kill -9 mid-write)
    const files = (await readdir(dir)).sort();
    const last = path.join(dir, files[files.length - 1]);
    const torn = encodeEntry(rec('t', 5));
    await appendFile(last, torn.subarray(0, torn.length - 4));
    const sizeBefore = (await stat(last)).size;
    const { spool: s2, report } = Spool.open(opts);
    expect(report.tornBytes).toBe(torn.length - 4);
    expect((await stat(last)).size).toBe(sizeBefore - (torn.length - 4));
    expect(s2.ckpts.get('k')?.offset).toBe(9);
    expect(s2.acked.get('t')).toBe(2);
    expect(s2.sends.get('t')).toEqual([{ from: 3, to: 4 }]);
    expect(s2.records('t').map((r) => r.seq)).toEqual([3, 4]);
    expect(s2.takeSeq('t')).toBe(5);
    s2.close();
  });

  it('deletes a segment only once all its records are acknowledged; readers see the quota', async () => {
    const dir = await tmp('spool-gc');
    const { spool } = Spool.open({ dir, quotaBytes: 160 * 1024, segmentBytes: 64 * 1024 });
    const big = 'x'.repeat(8 * 1024);
    let seq = 0;
    for (let i = 0; i < 18; i++) {
      const s = spool.takeSeq('t');
      await spool.append([{ t: 'rec', task: 't', seq: s, topic: 'logs', value: big, headers: {} }]);
      seq = s;
    }
    expect(spool.full()).toBe(false);
    for (let i = 0; i < 4; i++) await spool.append([{ t: 'rec', task: 't', seq: spool.takeSeq('t'), topic: 'logs', value: big, headers: {} }]);
    seq += 4;
    expect(spool.full()).toBe(true);
    const before = (await readdir(dir)).length;
    expect(before).toBeGreaterThan(1);
    let freed = 0;
    spool.onFreed(() => freed++);
    await spool.append([{ t: 'ack', task: 't', to: 10 }]);
    expect((await readdir(dir)).length).toBeLessThan(before);
    expect(freed).toBeGreaterThan(0);
    await spool.append([{ t: 'ack', task: 't', to: seq }]);
    expect(spool.full()).toBe(false);
    expect(spool.records('t')).toEqual([]);
    spool.close();
    // what is left recovers to the same state
    const { spool: s2 } = Spool.open({ dir, quotaBytes: 160 * 1024, segmentBytes: 64 * 1024 });
    expect(s2.acked.get('t')).toBe(seq);
    expect(s2.takeSeq('t')).toBe(seq + 1);
    s2.close();
  });

  it('an idle shipper\'s next range and ack ride in the append of the records right after its last batch, as one spool record', async () => {
    const dir = await tmp('spool-offer');
    const opts = { dir, quotaBytes: 8 * 1024 * 1024, segmentBytes: 1024 * 1024 };
    const { spool } = Spool.open(opts);
    const recs = (task: string, n: number): Entry => ({ t: 'recs', task, topic: 'logs', seq: [...Array(n)].map(() => spool.takeSeq(task))[0], h: {}, v: [...Array(n)].map((_, i) => `v${i}`) });
    await spool.append([recs('t', 3), { t: 'send', task: 't', from: 0, to: 2 }]);
    // the shipper acked 0..2 in memory and waits; its cut takes 2 records a batch
    spool.offerSend('t', { after: 2, ack: 2, cut: (e) => Math.min(2, recsCount(e)), notBeforeMs: 0 });
    // another task's records and records not right after the last batch are not taken
    await spool.append([recs('u', 1)]);
    expect(spool.sends.get('u')).toBeUndefined();
    await spool.append([recs('t', 3)]);
    expect(spool.acked.get('t')).toBe(2);
    expect(spool.sends.get('t')).toEqual([{ from: 3, to: 4 }]);
    expect(spool.records('t').map((r) => r.seq)).toEqual([3, 4, 5]);
    // taken once: the next append is left alone
    await spool.append([recs('t', 1)]);
    expect(spool.sends.get('t')).toEqual([{ from: 3, to: 4 }]);
    // records before the offered point (unsent yet) keep it from being taken
    await spool.append([{ t: 'ack', task: 't', to: 4 }]);
    spool.offerSend('t', { after: 4, cut: (e) => recsCount(e), notBeforeMs: 0 });
    await spool.append([recs('t', 1)]);
    expect(spool.sends.get('t')).toBeUndefined();
    // a lingering shipper's offer is not taken before its time; a withdrawn one never
    spool.offerSend('t', { after: 7, cut: (e) => recsCount(e), notBeforeMs: Date.now() + 60_000 });
    await spool.append([recs('t', 1)]);
    spool.withdrawSend('t');
    expect(spool.sends.get('t')).toBeUndefined();
    spool.close();
    // the range, its records and the ack are durable together: recovered as the batch to resend
    const files = (await readdir(dir)).sort();
    const { entries } = decodeSegment(await readFile(path.join(dir, files[files.length - 1])));
    const taken = entries.find((e) => e.t === 'all' && e.es.some((x) => x.t === 'send' && x.from === 3));
    expect(taken && taken.t === 'all' && taken.es.map((x) => x.t)).toEqual(['ack', 'recs', 'send']);
    const { spool: s2 } = Spool.open(opts);
    expect(s2.acked.get('t')).toBe(4);
    expect(s2.records('t').map((r) => r.seq)).toEqual([5, 6, 7, 8]);
    s2.close();
  });

  it('keeps every batch in flight of a task, in order, across acks, a segment roll and recovery; reads a one-range spool', async () => {
    const dir = await tmp('spool-flights');
    const opts = { dir, quotaBytes: 8 * 1024 * 1024, segmentBytes: 64 * 1024 };
    const { spool } = Spool.open(opts);
    const n = 40;
    const seq0 = [...Array(n)].map(() => spool.takeSeq('t'))[0];
    await spool.append([{ t: 'recs', task: 't', topic: 'logs', seq: seq0, h: {}, v: [...Array(n)].map((_, i) => `v${i}`) }]);
    for (let i = 0; i < 4; i++) await spool.append([{ t: 'send', task: 't', from: i * 10, to: i * 10 + 9 }]);
    expect(spool.sends.get('t')).toEqual([0, 10, 20, 30].map((from) => ({ from, to: from + 9 })));
    spool.close();
    const { spool: s1 } = Spool.open(opts);
    // acks in order take ranges off the front; a segment rolled by a big append keeps the rest in its snapshot
    await s1.append([{ t: 'ack', task: 't', to: 9 }]);
    await s1.append([{ t: 'ack', task: 't', to: 19 }, { t: 'rec', task: 'u', seq: s1.takeSeq('u'), topic: 'logs', value: 'x'.repeat(70 * 1024), headers: {} }]);
    s1.close();
    const segs = (await readdir(dir)).filter((f) => f.endsWith('.wal')).sort();
    const snap = decodeSegment(await readFile(path.join(dir, segs[segs.length - 1]))).entries[0];
    expect(snap.t === 'snap' && snap.sends.t).toEqual([{ from: 20, to: 29 }, { from: 30, to: 39 }]);
    const { spool: s2 } = Spool.open(opts);
    expect(s2.sends.get('t')).toEqual([{ from: 20, to: 29 }, { from: 30, to: 39 }]);
    expect(s2.records('t')[0].seq).toBe(20);
    s2.close();
    // a spool written by an agent with one batch in flight holds one range, not a list
    const old = await tmp('spool-old');
    await writeFile(path.join(old, '0000000001.wal'), Buffer.concat([
      encodeEntry({ t: 'snap', producers: {}, next: { t: 5 }, acked: { t: 1 }, ckpts: {}, sends: { t: { from: 2, to: 4 } } }),
      encodeEntry({ t: 'recs', task: 't', topic: 'logs', seq: 2, h: {}, v: ['a', 'b', 'c'] }),
    ]));
    const { spool: s3 } = Spool.open({ ...opts, dir: old });
    expect(s3.sends.get('t')).toEqual([{ from: 2, to: 4 }]);
    // an overlapping range would resend records under another sequence: the spool stops
    await expect(s3.append([{ t: 'send', task: 't', from: 3, to: 4 }])).rejects.toThrow(/overlaps/);
    s3.close();
  });

  it('keeps a stable producer per task', async () => {
    const dir = await tmp('spool-prod');
    const { spool } = Spool.open({ dir, quotaBytes: 4 * 1024 * 1024, segmentBytes: 1024 * 1024 });
    const { producer, entry } = spool.producerFor('t', 'host-1', 4);
    expect(producer.id).toMatch(/^agent\.host-1\.t\.[0-9a-f]{12}$/);
    expect(producer.partition).toBeLessThan(4);
    await spool.append([entry!]);
    spool.close();
    const { spool: s2 } = Spool.open({ dir, quotaBytes: 4 * 1024 * 1024, segmentBytes: 1024 * 1024 });
    expect(s2.producerFor('t', 'host-1', 4)).toEqual({ producer });
    s2.close();
  });
});

describe('agent shipper window', () => {
  type F = Parameters<typeof sendable>[0][number];
  const f = (from: number, state: F['state'], keyed = false): F => ({ from, to: from + 9, keyed, state });
  it('sends in order: the first unacknowledged without a predecessor, the rest naming the one before; never past a held, failed or keyed one', () => {
    expect(sendable([f(0, 'wait'), f(10, 'wait'), f(20, 'wait')])).toEqual([{ i: 0 }, { i: 1, previous: 0 }, { i: 2, previous: 10 }]);
    expect(sendable([f(0, 'sending'), f(10, 'acked'), f(20, 'wait')])).toEqual([{ i: 2, previous: 10 }]);
    // held (the node had not its predecessor): resent only once the predecessor is acknowledged
    expect(sendable([f(0, 'sending'), f(10, 'held'), f(20, 'held')])).toEqual([]);
    expect(sendable([f(0, 'acked'), f(10, 'held'), f(20, 'held')])).toEqual([{ i: 1, previous: 0 }]);
    expect(sendable([f(10, 'held'), f(20, 'wait')])).toEqual([{ i: 0 }, { i: 1, previous: 10 }]);
    expect(sendable([f(0, 'failed'), f(10, 'wait')])).toEqual([]);
    // keyed batches span partitions: one at a time, alone
    expect(sendable([f(0, 'wait', true), f(10, 'wait', true)])).toEqual([{ i: 0 }]);
    expect(sendable([f(0, 'sending'), f(10, 'wait', true)])).toEqual([]);
    expect(sendable([f(0, 'sending', true), f(10, 'wait')])).toEqual([]);
  });
});

describe('agent properties', () => {
  it('multiline never loses, duplicates or reorders a line, and events cover the offsets without gaps', () => {
    const line = fc.oneof(
      fc.constantFrom('\tat a.B.c(B.java:1)', 'Caused by: x', '\t... 2 more', 'java.lang.RuntimeException: y', 'Traceback (most recent call last):', '  File "a.py"', 'ValueError: z', '', 'INFO plain'),
      fc.string({ maxLength: 40 }).map((t) => t.replace(/\n/g, ' ')),
    );
    const cfg = fc.oneof(
      fc.constant({ preset: 'java' as const }),
      fc.constant({ preset: 'python' as const }),
      fc.constant({ start: '^INFO' }),
      fc.constant({ continue: '^\\s' }),
    );
    fc.assert(fc.property(fc.array(line, { maxLength: 60 }), cfg, fc.integer({ min: 1, max: 8 }), (lines, c, maxLines) => {
      const ml = new Multiline({ ...ML, ...c, maxLines, maxBytes: 1024 });
      const { events, s } = run(ml, lines);
      ml.flush(s, Number.MAX_SAFE_INTEGER, events, true);
      expect(events.flatMap((e) => e.text.split('\n'))).toEqual(lines);
      let at = 0;
      for (const e of events) {
        expect(e.start).toBe(at);
        expect(e.lines).toBeLessThanOrEqual(maxLines);
        at = e.end;
      }
    }), { numRuns: 300 });
  });

  it('a segment cut or corrupted anywhere decodes to a prefix of its records, never throws', () => {
    const entries: Entry[] = Array.from({ length: 20 }, (_, i) => rec('t', i));
    const whole = Buffer.concat(entries.map(encodeEntry));
    fc.assert(fc.property(fc.integer({ min: 0, max: whole.length }), fc.option(fc.integer({ min: 0, max: whole.length - 1 })), (cut, flip) => {
      const buf = Buffer.from(whole.subarray(0, cut));
      if (flip !== null && flip < buf.length) buf[flip] ^= 0x5a;
      const { entries: got, validBytes } = decodeSegment(buf);
      expect(got).toEqual(entries.slice(0, got.length));
      expect(validBytes).toBe(Buffer.concat(got.map(encodeEntry)).length);
      if (flip === null || flip >= buf.length) expect(validBytes).toBeGreaterThan(cut - whole.length / 20 - 1);
    }), { numRuns: 500 });
  });
});
