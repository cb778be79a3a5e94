// The journald source under load: 5k messages/s through systemd-cat for ~30 s while the agent is
// killed (-9) and restarted and the journal rotated, then a full spool with the node down (journalctl
// blocks writing its output) until the node comes back. Read back: 0 missing, 0 duplicated, in order.
// Each test has a systemd-journald of its own (helpers/journald.ts).
//   JOURNALD_LONG_RATE (5000), JOURNALD_LONG_SECONDS (30)
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort, type NodeHandle, startNode } from '../helpers/launcher.js';
import { type AgentProc, readTopic, type TopicRecord } from '../helpers/agent.js';
import { awaitRecords, followingAgent, journalctlPids, journalEntries, kill9, type PrivateJournal, recordsOfTask, startPrivateJournal, writeNumbered } from '../helpers/journald.js';

const RATE = Number(process.env.JOURNALD_LONG_RATE ?? 5000);
const SECONDS = Number(process.env.JOURNALD_LONG_SECONDS ?? 30);
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

const nodes: NodeHandle[] = [];
const agents: AgentProc[] = [];
const journals: PrivateJournal[] = [];

afterAll(async () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  for (const n of nodes) await n.stop();
  for (const j of journals) await j.stop();
});

async function journal(name: string): Promise<PrivateJournal> {
  const j = await startPrivateJournal(`chjl-${name}-${RUN_ID}`);
  journals.push(j);
  return j;
}

async function setup(name: string, url: string, spool: string, body: string[]): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `chicago-journald-long-${name}-`));
  const config = path.join(dir, 'agent.yaml');
  await writeFile(config, [`node: { url: ${url} }`, 'host: testhost', `spool: ${spool}`, 'batch: { lingerMs: 5 }', 'retry: { minMs: 20, maxMs: 500 }', ...body].join('\n'));
  return config;
}

const running = (config: string) => followingAgent(config, agents);

function check(recs: TopicRecord[], n: number, label: string): void {
  const nums = recs.map((r) => Number(r.value.split(' ')[1]));
  const seen = new Set(nums);
  const missing = n - seen.size;
  const dup = nums.length - seen.size;
  expect({ missing, dup }, `${label}: missing and duplicated`).toEqual({ missing: 0, dup: 0 });
  expect(nums.every((x, i) => x === i), `${label}: in order`).toBe(true);
  expect(recs.every((r, i) => r.headers.seq === String(i)), `${label}: seq gap-free`).toBe(true);
}

async function spoolBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir).catch(() => [] as string[])) n += (await stat(path.join(dir, f)).catch(() => ({ size: 0 }))).size;
  return n;
}

describe('agent: journald under load', () => {
  it(`${RATE} messages/s for ${SECONDS} s with kill -9s of the agent and journalctl --rotate: 0 missing, 0 duplicated`, async () => {
    const node = await startNode();
    nodes.push(node);
    const j = await journal('load');
    const ID = `chjl-${RUN_ID}`;
    const config = await setup('load', node.url, '{ dir: ./spool, quotaBytes: 268435456, segmentBytes: 16777216 }', ['journald:', `  - { task: load, topic: agent-journal-long, identifiers: [${ID}], namespace: ${j.namespace} }`]);
    let agent = await running(config);
    const N = RATE * SECONDS;
    const t0 = Date.now();
    let writing = true;
    const writer = writeNumbered(j, ID, 'L', N, RATE).finally(() => { writing = false; });
    let kills = 0;
    let rotations = 0;
    // bounded: the writer ends after about SECONDS
    for (let i = 0; i < SECONDS * 2 && writing; i++) {
      await new Promise((r) => setTimeout(r, 1500));
      if (!writing) break;
      await j.journalctl(['--rotate']);
      rotations++;
      if (i % 3 === 1) {
        await kill9(agent);
        agent = await running(config);
        kills++;
      }
    }
    await writer;
    const writtenS = (Date.now() - t0) / 1000;
    await awaitRecords(node.url, 'agent-journal-long', 'load', (r) => r.length >= N, `${N} records`, 60_000, 500);
    const lagS = (Date.now() - t0) / 1000 - writtenS;
    await new Promise((r) => setTimeout(r, 500));
    const recs = recordsOfTask(await readTopic(node.url, 'agent-journal-long'), 'load');
    expect((await journalEntries(j, ID)).length, 'the journal holds what was written').toBe(N);
    check(recs, N, 'load');
    console.log(`journald long: ${N} entries in ${writtenS.toFixed(1)} s (${Math.round(N / writtenS)}/s written), ${kills} kill -9s, ${rotations} rotations; ` +
      `all in Chicago ${lagS.toFixed(1)} s after the last write; 0 missing, 0 duplicated`);
    await kill9(agent);
  });

  it('a full spool with the node down pauses journalctl (its output fills); when the node is back everything arrives once', async () => {
    const port = await freePort();
    const j = await journal('full');
    const ID = `chjb-${RUN_ID}`;
    const QUOTA = 1024 * 1024;
    const config = await setup('full', `http://127.0.0.1:${port}`, `{ dir: ./spool, quotaBytes: ${QUOTA}, segmentBytes: 65536 }`, ['journald:', `  - { task: full, topic: agent-journal-full, identifiers: [${ID}], namespace: ${j.namespace} }`]);
    const spoolDir = path.join(path.dirname(config), 'spool');
    const agent = await running(config);
    const N = 20_000;
    const pad = ` ${'p'.repeat(200)}`;
    let maxSpool = 0;
    await writeNumbered(j, ID, 'F', N, 5000, async () => { maxSpool = Math.max(maxSpool, await spoolBytes(spoolDir)); }, pad);
    // the spool holds about its quota; journalctl waits on its full stdout
    await new Promise((r) => setTimeout(r, 500));
    maxSpool = Math.max(maxSpool, await spoolBytes(spoolDir));
    const [pid] = await journalctlPids(ID);
    const wchan = await readFile(`/proc/${pid}/wchan`, 'utf8').catch(() => '?');
    expect(maxSpool, 'spool bytes while the node is down').toBeLessThan(QUOTA + 1024 * 1024);
    const node = await startNode({ port });
    nodes.push(node);
    await awaitRecords(node.url, 'agent-journal-full', 'full', (r) => r.length >= N, `${N} records`, 60_000, 500);
    await new Promise((r) => setTimeout(r, 500));
    const recs = recordsOfTask(await readTopic(node.url, 'agent-journal-full'), 'full');
    check(recs, N, 'full');
    console.log(`journald full spool: at most ${maxSpool} spool bytes (quota ${QUOTA}) while the node was down, journalctl waiting in ${wchan}; ${N} entries arrived once each`);
    await kill9(agent);
  });
});
