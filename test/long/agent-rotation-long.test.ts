// The file source's rotation matrix, long: Debian's logrotate (create, copytruncate, create+compress,
// copytruncate+compress+delaycompress+dateext) forced every second for AGENT_LONG_S seconds (120)
// while writers append numbered lines at 1k–20k lines/s, with a kill -9 of the agent every ~20 s:
// 0 missing (copytruncate: 0 missing of what is on disk; logrotate's own window counted apart),
// 0 duplicated, seq gap-free. Then inode reuse and identical file heads across restarts, and Java
// traces split across rotation and restart arriving whole.
import { describe, expect, it } from 'vitest';
import { appendFile, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { type AgentProc, startWriter } from '../helpers/agent.js';
import { agentFixture, agentSetup, check, logrotate, missing, readUntil } from '../helpers/agent-files.js';

const DURATION_S = Number(process.env.AGENT_LONG_S ?? 120);
const { url, agent, kill9 } = agentFixture();

/** line numbers of `prefix` still on disk in `base` and its rotated copies (gzipped ones too) */
async function onDisk(dir: string, base: string, prefix: string): Promise<Set<number>> {
  const out = new Set<number>();
  for (const n of await readdir(dir)) {
    // NAME-DATE.backup: logrotate's create race (a file the writer made between its rename and its
    // create, moved aside); no rotation scheme names it, so it is counted apart
    if (!n.startsWith(base) || n.endsWith('.backup')) continue;
    const raw = await readFile(path.join(dir, n));
    const text = (n.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8');
    for (const m of text.matchAll(new RegExp(`^${prefix} (\\d+) INFO`, 'gm'))) out.add(Number(m[1]));
  }
  return out;
}

const MATRIX = [
  { task: 'create', rate: 1000, directives: ['create', 'nocompress'] },
  { task: 'copy', rate: 20_000, directives: ['copytruncate', 'nocompress'] },
  { task: 'gz', rate: 5000, directives: ['create', 'compress'] },
  { task: 'dated', rate: 2000, directives: ['copytruncate', 'compress', 'delaycompress', 'dateext', 'dateformat -%Y%m%d-%s'] },
];

describe('agent rotation matrix (long)', () => {
  it(`create, copytruncate, compress, dateext forced every second for ${DURATION_S} s with kill -9s: 0 missing, 0 duplicated`, async () => {
    const T = 'afl-matrix';
    const s = await agentSetup(url(), 'matrix', MATRIX.flatMap((m) => [`  - task: ${m.task}`, `    paths: [./logs/${m.task}.log]`, `    topic: ${T}`]), [
      'spool: { dir: ./spool, quotaBytes: 268435456, segmentBytes: 16777216 }',
    ]);
    let a = await agent(s.config);
    const writers = MATRIX.map((m) => startWriter(path.join(s.logs, `${m.task}.log`), m.task, m.rate * DURATION_S, m.rate));
    let writing = true;
    void Promise.all(writers.map((w) => w.done)).then(() => { writing = false; });
    const started = Date.now();
    let rotations = 0;
    let kills = 0;
    let skipped = 0;
    for (let i = 0; i < DURATION_S * 3 && writing; i++) {
      const t0 = Date.now();
      for (const m of MATRIX) {
        // dateext refuses a second rotation within one second (the dated name exists): counted, not fatal
        await logrotate(s.dir, path.join(s.logs, `${m.task}.log`), [...m.directives, 'rotate 100000']).catch(() => { skipped++; });
      }
      rotations++;
      if (i % 20 === 19) {
        await kill9(a);
        kills++;
        a = await agent(s.config);
      }
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - t0))));
    }
    await Promise.all(writers.map((w) => w.done));
    expect(skipped).toBeLessThan(rotations / 4);
    const disk = new Map<string, Set<number>>();
    for (const m of MATRIX) disk.set(m.task, await onDisk(s.logs, `${m.task}.log`, m.task));
    const recs = await readUntil(url(), T, (r) => MATRIX.every((m) => {
      const have = new Set(check(r, m.task).lines);
      return [...disk.get(m.task)!].every((n) => have.has(n));
    }), 120_000);
    await new Promise((r) => setTimeout(r, 500));
    const report: string[] = [];
    for (const m of MATRIX) {
      const N = m.rate * DURATION_S;
      const c = check(recs, m.task);
      const have = new Set(c.lines);
      const d = disk.get(m.task)!;
      expect(c.dups, `${m.task}: duplicated`).toBe(0);
      expect(c.seqOk, `${m.task}: seq gap-free`).toBe(true);
      expect([...d].filter((n) => !have.has(n)), `${m.task}: on disk, not shipped`).toEqual([]);
      const lostFromDisk = missing([...d], 0, N);
      if (m.directives.includes('copytruncate')) {
        report.push(`${m.task}: logrotate's copy→truncate window lost ${lostFromDisk.length} of ${N} lines from disk (${lostFromDisk.filter((n) => have.has(n)).length} read before the truncate)`);
      } else {
        const backup = new Set<number>();
        for (const n of (await readdir(s.logs)).filter((x) => x.startsWith(`${m.task}.log`) && x.endsWith('.backup'))) {
          for (const mm of (await readFile(path.join(s.logs, n), 'utf8')).matchAll(new RegExp(`^${m.task} (\\d+) INFO`, 'gm'))) backup.add(Number(mm[1]));
        }
        expect(missing(c.lines, 0, N).filter((n) => !backup.has(n)), `${m.task}: missing`).toEqual([]);
        report.push(`${m.task}: ${N} lines, 0 missing (${backup.size} in logrotate's .backup files)`);
      }
      expect(c.gaps, `${m.task}: gaps`).toEqual([]);
    }
    console.log(`agent rotation matrix: ${rotations} forced rotations of each file (${skipped} refused by logrotate), ${kills} kill -9s in ${((Date.now() - started) / 1000).toFixed(0)} s; ${report.join('; ')}`);
    await kill9(a);
  });

  it('inode reuse and identical file heads across restarts: a new file with the same 2 KiB banner is read from 0; copies are told apart by the bytes before the offset', async () => {
    const T = 'afl-reuse';
    const s = await agentSetup(url(), 'reuse', ['  - task: r', '    paths: [./logs/r.log]', `    topic: ${T}`, '  - task: h', '    paths: [./logs/h.log]', `    topic: ${T}`]);
    const banner = `${'#'.repeat(2047)}\n`;
    const lines = (p: string, a0: number, b0: number) => Array.from({ length: b0 - a0 }, (_, i) => `${p} ${a0 + i} INFO x\n`).join('');
    const r = path.join(s.logs, 'r.log');
    const h = path.join(s.logs, 'h.log');
    let next = 0;
    let hNext = 0;
    let reused = 0;
    let a = await agent(s.config);
    for (let round = 0; round < 20; round++) {
      // r: deleted and made anew while the agent is down (same banner; the inode is often reused)
      await writeFile(r, (round === 0 ? banner : '') + lines('r', next, next + 50), { flag: 'a' });
      next += 50;
      await writeFile(h, banner, { flag: 'a' });
      await appendFile(h, lines('h', hNext, hNext + 30));
      hNext += 30;
      await readUntil(url(), T, (x) => check(x, 'r').lines.includes(next - 1) && check(x, 'h').lines.includes(hNext - 1), 20_000);
      await kill9(a);
      const ino = (await import('node:fs/promises')).stat;
      const before = (await ino(r)).ino;
      await rm(r);
      await writeFile(r, banner + lines('r', next, next + 50));
      next += 50;
      if ((await ino(r)).ino === before) reused++;
      // h: copytruncate while down; every generation starts with the same banner
      await appendFile(h, lines('h', hNext, hNext + 30));
      hNext += 30;
      await logrotate(s.dir, h, ['copytruncate', 'rotate 1000']);
      await writeFile(h, banner + lines('h', hNext, hNext + 30), { flag: 'a' });
      hNext += 30;
      a = await agent(s.config);
    }
    const recs = await readUntil(url(), T, (x) => check(x, 'r').lines.includes(next - 1) && check(x, 'h').lines.includes(hNext - 1), 20_000);
    await new Promise((res) => setTimeout(res, 300));
    if (process.env.AGENT_TEST_DUMP_DIR) await writeFile(path.join(process.env.AGENT_TEST_DUMP_DIR, 'reuse.json'), JSON.stringify(recs.map((x) => [x.headers, x.value.slice(0, 60)])));
    for (const [task, n] of [['r', next], ['h', hNext]] as const) {
      const c = check(recs, task);
      expect(missing(c.lines, 0, n), `${task} missing`).toEqual([]);
      expect(c.dups, `${task} duplicated`).toBe(0);
      expect(c.seqOk).toBe(true);
    }
    console.log(`agent inode reuse: ${reused} of 20 new files got the deleted file's inode back`);
    await kill9(a);
  });

  it('Java traces split by kill -9, or pending at a rename, arrive whole and once; halves a copytruncate put in two files arrive as two records', async () => {
    const T = 'afl-trace';
    const s = await agentSetup(url(), 'trace', ['create', 'copy'].flatMap((t) => [`  - task: ${t}`, `    paths: [./logs/${t}.log]`, `    topic: ${T}`, '    multiline: { preset: java, quietMs: 800 }']));
    const head = (t: string, i: number) => `2026-12-06 ERROR ${t} ${i} INFO failed\njava.lang.IllegalStateException: trace ${i}\n\tat a.B.c(B.java:${i})\n`;
    const tail = (i: number) => `\tat a.B.d(B.java:${i})\nCaused by: java.io.IOException: disk ${i}\n\t... 2 more\n`;
    let a = await agent(s.config);
    const TRACES = 30;
    for (let i = 0; i < TRACES; i++) {
      for (const t of ['create', 'copy']) await appendFile(path.join(s.logs, `${t}.log`), head(t, i));
      // the first half read (pending), then a restart or a rotation before the rest
      await new Promise((res) => setTimeout(res, 150));
      if (i % 3 === 0) {
        await kill9(a);
        a = await agent(s.config);
      }
      if (i % 3 === 1) await logrotate(s.dir, path.join(s.logs, 'copy.log'), ['copytruncate', 'rotate 1000']);
      for (const t of ['create', 'copy']) await appendFile(path.join(s.logs, `${t}.log`), tail(i));
      if (i % 3 === 2) {
        // a rename after the trace is whole but still pending: read to its end through the handle
        await logrotate(s.dir, path.join(s.logs, 'create.log'), ['create', 'rotate 1000']);
      }
    }
    const count = (x: Array<{ headers: Record<string, string> }>, t: string) => x.filter((r) => r.headers.task === t).length;
    const recs = await readUntil(url(), T, (x) => count(x, 'create') >= TRACES && count(x, 'copy') >= TRACES + TRACES / 3, 30_000);
    // a late duplicate would show by now
    await new Promise((res) => setTimeout(res, 1500));
    const all = (await readUntil(url(), T, () => true)).filter((x) => x.headers.task);
    for (const t of ['create', 'copy']) {
      const mine = all.filter((x) => x.headers.task === t).sort((x, y) => Number(x.headers.seq) - Number(y.headers.seq));
      // a copytruncate between a trace's halves puts them in two files: two records, each once
      const want = [...Array(TRACES).keys()].flatMap((i) => (t === 'copy' && i % 3 === 1 ? [head(t, i).slice(0, -1), tail(i).slice(0, -1)] : [(head(t, i) + tail(i)).slice(0, -1)]));
      // a renamed file's pending trace ends after its quiet time: order across files is not asserted
      expect(mine.map((x) => x.value).sort()).toEqual(want.sort());
    }
    expect(recs.length).toBeGreaterThanOrEqual(2 * TRACES);
    await kill9(a);
  });
});

