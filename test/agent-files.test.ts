// The file source's rotation breadth against real components: Debian's logrotate with compress,
// delaycompress and dateext (forced while a writer appends numbered lines, and while the agent is
// down), a gzipped copy read while it is still being written, a file rotated away unread (a gap
// record), and the agent rotating what it ships (copytruncate; rename + SIGHUP to the writer).
import { describe, expect, it } from 'vitest';
import { appendFile, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import type { AgentProc } from './helpers/agent.js';
import { startWriter } from './helpers/agent.js';
import { agentFixture, agentSetup, check, logrotate, missing, numbered, readUntil, startFdWriter } from './helpers/agent-files.js';
import { slow } from './helpers/slow.js';

const { url, agent, kill9 } = agentFixture();

const src = (task: string, file: string, topic: string, more: string[] = []) => [`  - task: ${task}`, `    paths: [./logs/${file}]`, `    topic: ${topic}`, ...more];

describe('agent files: rotated copies', () => {
  it('rotated while the agent is down: the rest is read from a .gz (copytruncate+compress; create+compress+dateext; copytruncate twice), and from a .gz still being written', async () => {
    const T = 'af-down';
    const TASKS = ['ct', 'cr', 'pz', 'c2'];
    const s = await agentSetup(url(), 'down', TASKS.flatMap((n) => src(n, `${n}.log`, T)));
    const f = (n: string) => path.join(s.logs, n);
    for (const n of TASKS) await writeFile(f(`${n}.log`), numbered(0, 1000, n));
    let a = await agent(s.config);
    await readUntil(url(), T, (r) => r.length >= 4000);
    await kill9(a);
    for (const n of TASKS) await appendFile(f(`${n}.log`), numbered(1000, 2000, n));
    await logrotate(s.dir, f('ct.log'), ['copytruncate', 'compress', 'rotate 5']);
    await logrotate(s.dir, f('cr.log'), ['create', 'compress', 'dateext', 'dateformat -%Y%m%d-%s', 'rotate 5']);
    // pz: copied, then compressed halfway when the agent starts (the plain copy already gone)
    await logrotate(s.dir, f('pz.log'), ['copytruncate', 'nocompress', 'rotate 5']);
    const gz = gzipSync(await readFile(f('pz.log.1')));
    await rm(f('pz.log.1'));
    await writeFile(f('pz.log.1.gz'), gz.subarray(0, Math.floor(gz.length / 2)));
    for (const n of ['ct', 'cr', 'pz']) await appendFile(f(`${n}.log`), numbered(2000, 3000, n));
    // c2: copytruncated twice; the checkpoint is in the older copy (.2.gz), the newer one (.1) was never seen
    await logrotate(s.dir, f('c2.log'), ['copytruncate', 'compress', 'delaycompress', 'rotate 5']);
    await appendFile(f('c2.log'), numbered(2000, 2500, 'c2'));
    await logrotate(s.dir, f('c2.log'), ['copytruncate', 'compress', 'delaycompress', 'rotate 5']);
    await appendFile(f('c2.log'), numbered(2500, 3000, 'c2'));
    const names = await readdir(s.logs);
    expect(names.some((n) => /^ct\.log\.1\.gz$/.test(n)), names.join()).toBe(true);
    expect(names.some((n) => /^cr\.log-\d{8}-\d+\.gz$/.test(n)), names.join()).toBe(true);
    a = await agent(s.config);
    // the agent waits for the partial gzip (the other sources go on); it completes a moment later
    await a.stdout.waitFor(/gzipped copy is still being written/, slow(10_000));
    await readUntil(url(), T, (r) => check(r, 'ct').lines.length >= 3000 && check(r, 'cr').lines.length >= 3000);
    await writeFile(f('pz.log.1.gz'), gz);
    const recs = await readUntil(url(), T, (r) => r.length >= 12_000);
    await new Promise((r) => setTimeout(r, 300));
    expect((await readdir(s.logs)).filter((n) => n.startsWith('c2.log')).sort()).toEqual(['c2.log', 'c2.log.1', 'c2.log.2.gz']);
    for (const task of TASKS) {
      const c = check(recs, task);
      expect(missing(c.lines, 0, 3000), `${task} missing`).toEqual([]);
      expect(c.dups, `${task} duplicated`).toBe(0);
      expect(c.seqOk, `${task} seq`).toBe(true);
      expect(c.gaps, `${task} gaps`).toEqual([]);
    }
    await kill9(a);
  });

  it('logrotate forced every ~1.1 s while a writer appends (copytruncate+compress+delaycompress+dateext; create+compress+delaycompress): 0 missing, 0 duplicated', async () => {
    const T = 'af-live';
    const s = await agentSetup(url(), 'live', [...src('lc', 'lc.log', T), ...src('lr', 'lr.log', T)]);
    const a = await agent(s.config);
    const N = 8000;
    const wc = startWriter(path.join(s.logs, 'lc.log'), 'lc', N, 2000);
    const wr = startWriter(path.join(s.logs, 'lr.log'), 'lr', N, 2000);
    let writing = true;
    void Promise.all([wc.done, wr.done]).then(() => { writing = false; });
    let rotations = 0;
    for (let i = 0; i < 20 && writing; i++) {
      await new Promise((r) => setTimeout(r, 1100));
      await logrotate(s.dir, path.join(s.logs, 'lc.log'), ['copytruncate', 'compress', 'delaycompress', 'dateext', 'dateformat -%Y%m%d-%s', 'rotate 100']);
      await logrotate(s.dir, path.join(s.logs, 'lr.log'), ['create', 'compress', 'delaycompress', 'rotate 100']);
      rotations++;
    }
    await Promise.all([wc.done, wr.done]);
    expect(rotations).toBeGreaterThanOrEqual(3);
    const names = await readdir(s.logs);
    expect(names.filter((n) => n.endsWith('.gz')).length).toBeGreaterThanOrEqual(2);
    // what logrotate's copytruncate lost (written between its copy and its truncate) is on no disk
    const onDisk = new Set<number>();
    const { gunzipSync } = await import('node:zlib');
    for (const n of names.filter((x) => x.startsWith('lc.log'))) {
      const raw = await readFile(path.join(s.logs, n));
      const text = (n.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8');
      for (const m of text.matchAll(/^lc (\d+) INFO/gm)) onDisk.add(Number(m[1]));
    }
    // logrotate's own create race: a writer that opens by name (O_CREAT) can make the new file between
    // logrotate's rename and its create; logrotate then renames that file to NAME-DATE.backup, which
    // no rotation scheme names. Lines there are counted apart (the set is final: writers and
    // rotations are over), and the wait is for every other line, which must arrive.
    const inBackup = new Set<number>();
    for (const n of names.filter((x) => x.startsWith('lr.log') && x.endsWith('.backup'))) {
      for (const m of (await readFile(path.join(s.logs, n), 'utf8')).matchAll(/^lr (\d+) INFO/gm)) inBackup.add(Number(m[1]));
    }
    const lrWant = [...Array(N).keys()].filter((n) => !inBackup.has(n));
    const recs = await readUntil(url(), T, (r) => {
      const have = new Set(check(r, 'lc').lines);
      const lrHave = new Set(check(r, 'lr').lines);
      return lrWant.every((n) => lrHave.has(n)) && [...onDisk].every((n) => have.has(n));
    }, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    const lr = check(recs, 'lr');
    const lc = check(recs, 'lc');
    expect(missing(lr.lines, 0, N).filter((n) => !inBackup.has(n)), 'create: missing').toEqual([]);
    expect([lr.dups, lc.dups], 'duplicated').toEqual([0, 0]);
    expect([lr.seqOk, lc.seqOk], 'seq gap-free').toEqual([true, true]);
    const lcHave = new Set(lc.lines);
    expect([...onDisk].filter((n) => !lcHave.has(n)), 'copytruncate: on disk, not shipped').toEqual([]);
    const lostByLogrotate = missing([...onDisk], 0, N);
    console.log(`agent files live: ${rotations} forced rotations; ${inBackup.size} lines in logrotate's .backup files (its create race); logrotate's copytruncate window lost ${lostByLogrotate.length} of ${N} lines from disk (${lostByLogrotate.filter((n) => lcHave.has(n)).length} of them read before the truncate)`);
    await kill9(a);
  });

  it('a file rotated away unread while the agent is down (create, rotate 1, twice): a gap record and a notice', async () => {
    const T = 'af-gap';
    const s = await agentSetup(url(), 'gap', src('g', 'g.log', T));
    const file = path.join(s.logs, 'g.log');
    await writeFile(file, numbered(0, 100, 'g'));
    let a = await agent(s.config);
    await readUntil(url(), T, (r) => r.length >= 100);
    await kill9(a);
    await appendFile(file, numbered(100, 200, 'g'));
    await logrotate(s.dir, file, ['create', 'rotate 1']);
    await writeFile(file, numbered(200, 250, 'g'));
    await logrotate(s.dir, file, ['create', 'rotate 1']);
    await writeFile(file, numbered(250, 300, 'g'));
    a = await agent(s.config);
    const recs = await readUntil(url(), T, (r) => check(r, 'g').lines.includes(299));
    const c = check(recs, 'g');
    expect(c.gaps.length).toBe(1);
    const g = c.gaps[0].headers;
    expect([g.gap, g.gapReason, g.gapPath, g.gapOffset, g.level]).toEqual(['true', 'gone', file, String(Buffer.byteLength(numbered(0, 100, 'g'))), 'warn']);
    expect(c.seqOk).toBe(true);
    expect(missing(c.lines, 250, 300)).toEqual([]);
    expect(c.dups).toBe(0);
    expect(a.stdout.text()).toMatch(/"notice":\{"kind":"gap","task":"g"/);
    await kill9(a);
  });
});

describe('agent files: the agent rotates what it ships', () => {
  it('copytruncate at maxBytes while a writer appends: every line once; the truncate window is measured', async () => {
    const T = 'af-own-ct';
    const s = await agentSetup(url(), 'ownct', src('oc', 'oc.log', T, ['    rotate: { maxBytes: 32768, keep: 3, mode: copytruncate }']));
    const a = await agent(s.config);
    const N = 6000;
    const w = startWriter(path.join(s.logs, 'oc.log'), 'oc', N, 2000);
    await w.done;
    // a line lost in the truncate window never comes, so "all N" alone can run the wait out; the
    // writer is done and the agent ships in file order (seq order is offset order), so once the last
    // line is in, every line it read is
    const recs = await readUntil(url(), T, (r) => {
      const lines = check(r, 'oc').lines;
      return lines.length >= N || lines.includes(N - 1);
    }, 15_000);
    await new Promise((r) => setTimeout(r, 300));
    const c = check(recs, 'oc');
    const rotations = [...a.stdout.text().matchAll(/"msg":"rotated \(copytruncate\)"/g)].length;
    const windows = [...a.stdout.text().matchAll(/"windowUs":([\d.]+)/g)].map((m) => Number(m[1]));
    const lost = missing(c.lines, 0, N);
    console.log(`agent copytruncate: ${rotations} rotations, ${lost.length} of ${N} lines lost, fstat→ftruncate window max ${Math.max(...windows).toFixed(1)} µs`);
    expect(rotations).toBeGreaterThanOrEqual(3);
    expect(c.dups).toBe(0);
    expect(c.seqOk).toBe(true);
    // only a write landing in the fstat→ftruncate window (microseconds) can be lost: at most one writer batch (20 lines) per rotation
    expect(lost.length).toBeLessThanOrEqual(20 * rotations);
    const names = (await readdir(s.logs)).sort();
    expect(names).toEqual(['oc.log', 'oc.log.1', 'oc.log.2', 'oc.log.3']);
    await kill9(a);
  });

  it('rename + SIGHUP to the writer (pidFile), older copies gzipped: every line once', async () => {
    const T = 'af-own-mv';
    const s = await agentSetup(url(), 'ownmv', src('om', 'om.log', T, ['    rotate: { maxBytes: 32768, keep: 4, mode: rename, compress: true, signal: { pidFile: ./app.pid } }']));
    const a = await agent(s.config);
    const N = 6000;
    const w = startFdWriter(path.join(s.logs, 'om.log'), 'om', N, 20, 10, path.join(s.dir, 'app.pid'));
    await w.done;
    const recs = await readUntil(url(), T, (r) => check(r, 'om').lines.length >= N, 15_000);
    await new Promise((r) => setTimeout(r, 300));
    const c = check(recs, 'om');
    const rotations = [...a.stdout.text().matchAll(/"msg":"rotated \(rename\)"/g)].length;
    expect(rotations).toBeGreaterThanOrEqual(3);
    expect(missing(c.lines, 0, N)).toEqual([]);
    expect(c.dups).toBe(0);
    expect(c.seqOk).toBe(true);
    expect(a.stdout.text()).toMatch(/"signalled":\d+/);
    const names = (await readdir(s.logs)).sort();
    expect(names).toContain('om.log.1');
    expect(names.filter((n) => /^om\.log\.[234]\.gz$/.test(n)).length).toBeGreaterThanOrEqual(1);
    await kill9(a);
  });
});
