// The host agent against real components: a node, the agent process, writers appending numbered
// lines, Debian's logrotate forced repeatedly (create and copytruncate), and kill -9 of the agent.
// Read back: 0 missing, 0 duplicated, seq gap-free per task; a Java trace split by a restart
// arrives as one record.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendFile, mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type NodeHandle, runCli, startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';
import { type AgentProc, logrotateBinary, readTopic, rotate, startAgent, startWriter, type TopicRecord } from './helpers/agent.js';

let node: NodeHandle;
let logrotate: string;
const agents: AgentProc[] = [];

beforeAll(async () => {
  [node, logrotate] = await Promise.all([startNode(), logrotateBinary()]);
});

afterAll(async () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  await node?.stop();
});

async function setup(name: string, sources: string, opts: { url?: string; spool?: string } = {}): Promise<{ dir: string; config: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `chicago-agent-${name}-`));
  await mkdir(path.join(dir, 'logs'));
  const config = path.join(dir, 'agent.yaml');
  await writeFile(config, [
    `node: { url: ${opts.url ?? node.url} }`,
    'host: testhost',
    `spool: ${opts.spool ?? '{ dir: ./spool, quotaBytes: 67108864, segmentBytes: 1048576 }'}`,
    'pollIntervalMs: 50',
    'rotatedIdleMs: 1000',
    'batch: { lingerMs: 5 }',
    'retry: { minMs: 20, maxMs: 500 }',
    'logLevel: info',
    'sources:',
    sources,
  ].join('\n'));
  return { dir, config };
}

async function running(config: string): Promise<AgentProc> {
  const a = startAgent(config);
  agents.push(a);
  await a.stdout.waitFor(/"msg":"agent running"/, 10_000);
  return a;
}

async function kill9(a: AgentProc): Promise<void> {
  a.proc.kill('SIGKILL');
  await a.exited;
}

/** Every record of topic once at least n are there (or the deadline passed). */
async function waitRecords(topic: string, n: number): Promise<TopicRecord[]> {
  const deadline = Date.now() + slow(15_000);
  for (;;) {
    const recs = await readTopic(node.url, topic).catch(() => [] as TopicRecord[]);
    if (recs.length >= n || Date.now() > deadline) return recs;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** line number per record of a task, checked for duplicates and seq gaps */
function byTask(records: TopicRecord[], task: string): { lines: number[]; seqs: number[] } {
  const mine = records.filter((r) => r.headers.task === task);
  const seqs = mine.map((r) => Number(r.headers.seq)).sort((a, b) => a - b);
  const lines = mine.map((r) => Number(/ (\d+) INFO/.exec(r.value)?.[1] ?? -1));
  return { lines, seqs };
}

/** every numbered line still in `file` or its rotated copies */
async function linesOnDisk(dir: string, base: string, prefix: string): Promise<Set<number>> {
  const out = new Set<number>();
  for (const name of await readdir(dir)) {
    if (!name.startsWith(base)) continue;
    for (const m of (await readFile(path.join(dir, name), 'utf8')).matchAll(new RegExp(`^${prefix} (\\d+) INFO`, 'gm'))) out.add(Number(m[1]));
  }
  return out;
}

describe('agent: files to Chicago exactly once', () => {
  it('logrotate create and copytruncate, forced repeatedly while lines are written, and kill -9 of the agent: 0 missing, 0 duplicated, seq gap-free', async () => {
    const { dir, config } = await setup('rotate', [
      '  - task: create',
      '    paths: [./logs/create.log]',
      '    topic: agent-rotate',
      '  - task: copy',
      '    paths: [./logs/copy.log]',
      '    topic: agent-rotate',
    ].join('\n'));
    const logs = path.join(dir, 'logs');
    const N = Number(process.env.AGENT_TEST_LINES ?? 12_000);
    const RATE = 2_000;
    let agent = await running(config);
    const wCreate = startWriter(path.join(logs, 'create.log'), 'create', N, RATE);
    const wCopy = startWriter(path.join(logs, 'copy.log'), 'copy', N, RATE);
    let writing = true;
    void Promise.all([wCreate.done, wCopy.done]).then(() => { writing = false; });
    let rotations = 0;
    let kills = 0;
    const started = Date.now();
    // bounded: the writers finish in about N / RATE seconds
    for (let i = 0; i < 200 && (writing || kills < 2); i++) {
      await new Promise((r) => setTimeout(r, 400));
      await rotate(logrotate, dir, path.join(logs, 'create.log'), 'create');
      await rotate(logrotate, dir, path.join(logs, 'copy.log'), 'copytruncate');
      rotations++;
      if (i % 4 === 1) {
        await kill9(agent);
        kills++;
        agent = await running(config);
      }
    }
    await Promise.all([wCreate.done, wCopy.done]);
    expect(kills).toBeGreaterThanOrEqual(2);

    const copyOnDisk = await linesOnDisk(logs, 'copy.log', 'copy');
    // logrotate's own create-mode window: a line the writer (it reopens by name) appends between
    // logrotate's rename and its create makes a new file that logrotate then moves aside as
    // create.log-YYYYMMDDHH.backup, unseen by the agent; measured here apart (the writers and
    // rotations are over, so the set is final before the wait)
    const movedAside = new Set<number>();
    for (const name of (await readdir(logs)).filter((f) => /^create\.log-\d+\.backup$/.test(f))) {
      for (const m of (await readFile(path.join(logs, name), 'utf8')).matchAll(/^create (\d+) INFO/gm)) movedAside.add(Number(m[1]));
    }
    const createWant = [...Array(N).keys()].filter((n) => !movedAside.has(n));
    let records: TopicRecord[] = [];
    const deadline = Date.now() + slow(20_000);
    for (;;) {
      records = await readTopic(node.url, 'agent-rotate');
      const c = byTask(records, 'create');
      const p = byTask(records, 'copy');
      const copyHave = new Set(p.lines);
      const createHave = new Set(c.lines);
      if (createWant.every((n) => createHave.has(n)) && [...copyOnDisk].every((n) => copyHave.has(n))) break;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    // let a late duplicate show if there were one
    await new Promise((r) => setTimeout(r, 300));
    records = await readTopic(node.url, 'agent-rotate');
    if (process.env.AGENT_TEST_DUMP) await writeFile(process.env.AGENT_TEST_DUMP, JSON.stringify({ dir, records, logs: agents.map((a) => a.stdout.text()) }));

    for (const task of ['create', 'copy']) {
      const { lines, seqs } = byTask(records, task);
      expect(new Set(lines).size, `${task}: duplicated lines`).toBe(lines.length);
      expect(seqs, `${task}: seq gap-free from 0`).toEqual(seqs.map((_, i) => i));
      for (const r of records.filter((x) => x.headers.task === task)) {
        expect(r.headers.host).toBe('testhost');
        expect(r.headers.source).toMatch(new RegExp(`${task}\\.log`));
        expect(r.headers.level).toBe('info');
        expect(Number.isFinite(Date.parse(r.headers.time))).toBe(true);
      }
    }
    const create = new Set(byTask(records, 'create').lines);
    const missingCreate = createWant.filter((n) => !create.has(n));
    expect(missingCreate, 'create: missing lines').toEqual([]);
    // copytruncate loses what the app writes between logrotate's copy and its truncate: that is
    // logrotate's own window, measured here apart; the agent must have everything that is on disk
    const copy = new Set(byTask(records, 'copy').lines);
    const missingOnDisk = [...copyOnDisk].filter((n) => !copy.has(n));
    expect(missingOnDisk, 'copy: lines on disk missing from Chicago').toEqual([]);
    const lostByLogrotate = [...Array(N).keys()].filter((n) => !copyOnDisk.has(n));
    const shippedAnyway = lostByLogrotate.filter((n) => copy.has(n)).length;
    console.log(`agent rotation: ${rotations} rotations of each file, ${kills} kill -9s in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
      `copytruncate window lost ${lostByLogrotate.length} of ${N} lines from disk (${shippedAnyway} of them were read before the truncate and shipped); ` +
      `create window moved ${movedAside.size} lines aside to .backup files (${[...movedAside].filter((n) => create.has(n)).length} of them shipped)`);
    await kill9(agent);
  });

  it('a Java trace split by a kill -9 arrives as one record', async () => {
    const { dir, config } = await setup('trace', [
      '  - task: java',
      '    paths: [./logs/*.log]',
      '    topic: agent-trace',
      // the quiet timeout outlasts the wait for "before" and the kill (a busy machine takes seconds): the
      // trace must still be pending when the agent dies, so its end comes from the restarted agent
      `    multiline: { preset: java, quietMs: ${slow(1_500)} }`,
    ].join('\n'));
    const file = path.join(dir, 'logs', 'app.log');
    await writeFile(file, 'app 1 INFO before\n2026-12-06 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat a.B.c(B.java:10)\n');
    let agent = await running(config);
    // "before" ships once the trace's first line ends it; the trace itself stays pending
    const deadline = Date.now() + slow(10_000);
    for (;;) {
      const recs = await readTopic(node.url, 'agent-trace').catch(() => []);
      if (recs.some((r) => r.value === 'app 1 INFO before')) break;
      expect(Date.now() < deadline, 'the first line never arrived').toBe(true);
      await new Promise((r) => setTimeout(r, 50));
    }
    await kill9(agent);
    // "end" ends "after", which ships then rather than quietMs later; "end" itself stays pending
    await appendFile(file, '\tat a.B.d(B.java:20)\nCaused by: java.io.IOException: disk\n\t... 2 more\napp 2 INFO after\napp 3 INFO end\n');
    agent = await running(config);
    let recs: TopicRecord[] = [];
    const deadline2 = Date.now() + slow(10_000);
    for (;;) {
      recs = await readTopic(node.url, 'agent-trace');
      if (recs.some((r) => r.value === 'app 2 INFO after')) break;
      expect(Date.now() < deadline2, 'the last line never arrived').toBe(true);
      await new Promise((r) => setTimeout(r, 50));
    }
    // "end" ships on its own once quietMs passes: it may be there, as the last record
    const shipped = recs.map((r) => r.value);
    expect(shipped.slice(0, 3)).toEqual([
      'app 1 INFO before',
      '2026-12-06 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat a.B.c(B.java:10)\n\tat a.B.d(B.java:20)\nCaused by: java.io.IOException: disk\n\t... 2 more',
      'app 2 INFO after',
    ]);
    expect(shipped.slice(3)).toEqual(shipped.length > 3 ? ['app 3 INFO end'] : []);
    expect(recs.map((r) => r.headers.seq)).toEqual(shipped.map((_, i) => String(i)));
    expect(recs[1].headers.level).toBe('error');
    await kill9(agent);
  });

  it('files appearing later, a followed file deleted, and a file rewritten in place while the agent is down (same inode, another head: as inode reuse)', async () => {
    const { dir, config } = await setup('files', ['  - task: f', '    paths: [./logs/*.log]', '    topic: agent-files'].join('\n'));
    const logs = path.join(dir, 'logs');
    const lines = (p: string, a: number, b: number) => Array.from({ length: b - a }, (_, i) => `${p} ${a + i} INFO x\n`).join('');
    let agent = await running(config);
    await writeFile(path.join(logs, 'a.log'), lines('a', 0, 100));
    await writeFile(path.join(logs, 'gone.log'), lines('gone', 0, 100));
    const want = async (n: number) => {
      const deadline = Date.now() + slow(10_000);
      let recs: TopicRecord[] = [];
      for (;;) {
        recs = await readTopic(node.url, 'agent-files').catch(() => []);
        if (recs.length >= n || Date.now() > deadline) return recs;
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await want(200);
    // deleted after more lines: the open handle is read to its end
    await appendFile(path.join(logs, 'gone.log'), lines('gone', 100, 150));
    const { rm } = await import('node:fs/promises');
    await rm(path.join(logs, 'gone.log'));
    await want(250);
    await kill9(agent);
    // while the agent is down: a.log rewritten in place with other content, shorter than the offset
    await writeFile(path.join(logs, 'a.log'), lines('a2', 0, 10));
    await writeFile(path.join(logs, 'late.log'), lines('late', 0, 20));
    agent = await running(config);
    const recs = await want(280);
    await new Promise((r) => setTimeout(r, 300));
    const everything = await readTopic(node.url, 'agent-files');
    // gap records: a.log rewritten in place (what followed its offset is unknown); gone.log when its
    // checkpoint outlived the kill (the agent cannot know nothing was appended before the delete)
    const gaps = everything.filter((r) => r.headers.gap === 'true');
    expect(gaps.map((r) => `${path.basename(r.headers.gapPath)} ${r.headers.gapReason}`)).toContain('a.log truncated');
    for (const g of gaps) expect(['a.log truncated', 'gone.log gone']).toContain(`${path.basename(g.headers.gapPath)} ${g.headers.gapReason}`);
    expect(everything.map((r) => Number(r.headers.seq)).sort((x, y) => x - y)).toEqual([...Array(280 + gaps.length).keys()]);
    const all = everything.filter((r) => r.headers.gap !== 'true');
    const values = all.map((r) => r.value.split(' ').slice(0, 2).join(' '));
    expect(new Set(values).size).toBe(values.length);
    const count = (p: string) => values.filter((v) => v.startsWith(p + ' ')).length;
    expect([count('a'), count('gone'), count('a2'), count('late')]).toEqual([100, 150, 10, 20]);
    expect(recs.length).toBeGreaterThanOrEqual(280);
    await kill9(agent);
  });

  it('keys records by a JSON field of the line: one client IP, one partition, exactly once across a kill -9', async () => {
    expect((await runCli(['topic', 'create', 'agent-keyed', '--partitions', '4', '--replicas', '1', '--url', node.url])).code).toBe(0);
    const { dir, config } = await setup('keyed', ['  - task: access', '    paths: [./logs/access.log]', '    topic: agent-keyed', '    key: { json: remote_addr }'].join('\n'));
    const log = path.join(dir, 'logs', 'access.log');
    const ips = Array.from({ length: 16 }, (_, i) => `198.18.${i}.${i + 1}`);
    const batch = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => {
      const n = from + k;
      // every 25th line is not JSON: it has no key and still arrives
      return n % 25 === 24 ? `not json ${n}\n` : `${JSON.stringify({ remote_addr: ips[n % ips.length], n, request: `GET /p/${n} HTTP/1.1`, status: 200 })}\n`;
    }).join('');
    let agent = await running(config);
    await writeFile(log, batch(0, 400));
    await waitRecords('agent-keyed', 100);
    await kill9(agent);
    await appendFile(log, batch(400, 800));
    agent = await running(config);
    const recs = await waitRecords('agent-keyed', 800);
    await new Promise((r) => setTimeout(r, 300));
    const all = await readTopic(node.url, 'agent-keyed');
    const ns = all.map((r) => Number(/"n":(\d+)/.exec(r.value)?.[1] ?? /^not json (\d+)$/.exec(r.value)?.[1] ?? -1)).sort((a, b) => a - b);
    expect(ns).toEqual([...Array(800).keys()]);
    expect(all.map((r) => Number(r.headers.seq)).sort((a, b) => a - b)).toEqual([...Array(800).keys()]);
    const partitionOf = new Map<string, Set<number>>();
    for (const r of all) {
      if (r.value.startsWith('not json')) {
        expect(r.key ?? null).toBeNull();
        continue;
      }
      const ip = (JSON.parse(r.value) as { remote_addr: string }).remote_addr;
      expect(r.key).toBe(ip);
      (partitionOf.get(ip) ?? partitionOf.set(ip, new Set()).get(ip)!).add(r.partition);
    }
    // each address in one partition, the addresses spread over several
    for (const [ip, parts] of partitionOf) expect([...parts], ip).toHaveLength(1);
    expect(new Set([...partitionOf.values()].map((p) => [...p][0])).size).toBeGreaterThan(1);
    expect(recs.length).toBeGreaterThanOrEqual(800);
    await kill9(agent);
  });

  it('exits 78 on a bad config (also a source taking the health task\'s name), 64 without --config, 0 after SIGTERM; a webhook\'s headers are not logged; a second agent on a spool in use exits 69', async () => {
    const { dir, config } = await setup('cli', ['  - task: c', '    paths: [./logs/*.log]', '    topic: agent-cli'].join('\n'));
    const bad = path.join(dir, 'bad.yaml');
    await writeFile(bad, 'sources: []\nspool: { dir: ./s, quota: 5 }\n');
    const r = await runCli(['agent', '--config', bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/quota/);
    expect((await runCli(['agent'])).code).toBe(64);
    // health ships as task `health` to topic `health`: a source of that task name shipping elsewhere is a config error
    const clash = path.join(dir, 'clash.yaml');
    await writeFile(clash, `node: { url: ${node.url} }\nspool: { dir: ./s2 }\nsources: [{ task: health, paths: [./logs/a.log], topic: agent-cli }]\nhealth: { intervalMs: 1000 }\n`);
    const rc = await runCli(['agent', '--config', clash]);
    expect(rc.code).toBe(78);
    expect(rc.stderr).toMatch(/health\/task health ships to health.*one topic/);
    // the logged config keeps a webhook's authorization header out of the log, as it does the token
    await appendFile(config, '\nalerts:\n  webhook: { url: "http://127.0.0.1:9/hook", headers: { authorization: "Bearer s3cret" } }\n');
    const a = await running(config);
    expect(await a.stdout.waitFor(/"msg":"agent config"/, 5000)).toMatch(/"authorization":"\(set\)"/);
    expect(a.stdout.text()).not.toContain('s3cret');
    // one agent per spool dir: a second one on it exits 69 (as a node on a data dir in use)
    const second = await runCli(['agent', '--config', config]);
    expect([second.code, second.stderr]).toEqual([69, expect.stringMatching(/spool dir .*\/spool in use by pid \d+ \(one agent per spool.dir\)/)]);
    a.proc.kill('SIGTERM');
    expect(await a.exited).toEqual({ code: 0, signal: null });
  });

  it('a node stopped, then killed -9, while the agent ships: the spool fills to its quota, reading pauses, and every line arrives once', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'chicago-agent-node-'));
    let n2 = await startNode({ dataDir });
    const QUOTA = 1024 * 1024;
    const sources = ['  - task: q', '    paths: [./logs/q.log]', '    topic: agent-quota'].join('\n');
    const spool = `{ dir: ./spool, quotaBytes: ${QUOTA}, segmentBytes: 131072 }`;
    const { dir, config } = await setup('quota', sources, { url: n2.url, spool });
    // a request the stopped node never answers is abandoned after 1 s and resent
    await writeFile(config, (await readFile(config, 'utf8')).replace(/^node: \{ url: ([^ ]+) \}/m, 'node: { url: $1, timeoutMs: 1000 }'));
    // ~35 spool bytes a line (records of one read share their headers): more than the quota holds
    const N = Number(process.env.AGENT_TEST_QUOTA_LINES ?? 40_000);
    let agent = await running(config);
    const w = startWriter(path.join(dir, 'logs', 'q.log'), 'q', N, 20_000);
    await new Promise((r) => setTimeout(r, 300));
    n2.proc.kill('SIGSTOP');
    await w.done;
    // while the node does not answer the spool stays near its quota
    let maxSpool = 0;
    for (let i = 0; i < 30; i++) {
      maxSpool = Math.max(maxSpool, await dirBytes(path.join(dir, 'spool')));
      await new Promise((r) => setTimeout(r, 50));
    }
    n2.proc.kill('SIGCONT');
    expect(maxSpool).toBeGreaterThan(QUOTA * 0.8);
    expect(maxSpool).toBeLessThan(QUOTA * 1.5);
    // then a crash of the node and of the agent while it ships the backlog; the node may come back on another port
    await new Promise((r) => setTimeout(r, 200));
    await n2.kill('SIGKILL');
    await kill9(agent);
    n2 = await n2.restart();
    await writeFile(config, (await readFile(config, 'utf8')).replace(/url: [^ ,]+/, `url: ${n2.url}`));
    agent = await running(config);
    let recs: TopicRecord[] = [];
    const deadline = Date.now() + slow(20_000);
    for (;;) {
      recs = await readTopic(n2.url, 'agent-quota');
      if (recs.length >= N || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await new Promise((r) => setTimeout(r, 300));
    recs = await readTopic(n2.url, 'agent-quota');
    const { lines, seqs } = byTask(recs, 'q');
    expect(new Set(lines).size, 'duplicated lines').toBe(lines.length);
    expect(lines.length, 'lines').toBe(N);
    expect(seqs).toEqual(seqs.map((_, i) => i));
    console.log(`agent quota: spool peaked at ${maxSpool} bytes (quota ${QUOTA}) while the node was stopped`);
    await kill9(agent);
    await n2.stop();
  });
});

async function dirBytes(d: string): Promise<number> {
  let n = 0;
  for (const name of await readdir(d).catch(() => [])) n += (await stat(path.join(d, name)).catch(() => ({ size: 0 }))).size;
  return n;
}
