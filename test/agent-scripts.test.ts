// Agent scripts against real components: a node, the agent process, `chicago agent run`, scripts in
// /bin/sh, a JVM for jstack and eu-stack for native stacks. On demand (output streamed, exit code,
// trigger → first output latency), timeouts that kill the whole process group, the output cap, the
// allow list (name and sha256, edits after start), schedules without overlap, the agent:exec scope,
// and kill -9 of the agent: a command is never run twice and never missed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type NodeHandle, runCli, spawnCli, startNode } from './helpers/launcher.js';
import { SLOWDOWN, slow } from './helpers/slow.js';
import { waitUntil } from './helpers/bridge.js';
import { startEarly } from './helpers/early.js';
import { type AgentProc, readTopic, startAgent, type TopicRecord } from './helpers/agent.js';
import { Http } from '../src/cli/http.js';
import { ChicagoClient } from '../src/client/index.js';
import { runRemote } from '../src/cli/commands/agent-run.js';
import {
  checkDigest, cliExitCode, endRun, flushOutput, initialOutput, initialRunnerState, judgeCommand, judgeTick, parseCommand, runStatus, startRun, takeOutput,
} from '../src/agent/script-decide.js';
import { resolveAgentConfig } from '../src/agent/config.js';

const run = promisify(execFile);
const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const agents: AgentProc[] = [];
const children: ChildProcess[] = [];
const RESULTS = 'agent.scripts';

afterAll(() => {
  for (const a of agents) a.proc.kill('SIGKILL');
  for (const c of children) c.kill('SIGKILL');
});

// one node without tokens for the file: each agent on it has a host name of its own
const openNode = startEarly(() => startNode(), (n) => n.stop());

describe('scripts: pure decisions', () => {
  const cmd = (over: Record<string, unknown> = {}) => JSON.stringify({ id: 'c1', script: 'hello', args: ['a'], requestedAt: new Date(1000).toISOString(), expiresAt: new Date(5000).toISOString(), ...over });
  const ctx = { nowMs: 2000, remote: { allowed: true, why: '' }, allowed: new Set(['hello']), runsMax: 2 };

  it('parses commands and refuses malformed ones', () => {
    expect(parseCommand(cmd())).toEqual({ id: 'c1', script: 'hello', args: ['a'], requestedAtMs: 1000, expiresAtMs: 5000 });
    expect(parseCommand('nope')).toEqual({ error: expect.stringContaining('not JSON') });
    expect(parseCommand(cmd({ script: '../etc/passwd' }))).toEqual({ error: expect.stringContaining('script') });
    expect(parseCommand(cmd({ script: '.hidden' }))).toEqual({ error: expect.stringContaining('script') });
    expect(parseCommand(cmd({ args: [1] }))).toEqual({ error: expect.stringContaining('args') });
    expect(parseCommand(cmd({ expiresAt: 'soon' }))).toEqual({ error: expect.stringContaining('ISO') });
  });

  it('judges: expired before refused before not allowlisted before busy', () => {
    const c = parseCommand(cmd()) as Exclude<ReturnType<typeof parseCommand>, { error: string }>;
    const s0 = initialRunnerState();
    expect(judgeCommand(s0, c, ctx)).toEqual({ kind: 'run' });
    expect(judgeCommand(s0, c, { ...ctx, nowMs: 5000 })).toMatchObject({ kind: 'refused', status: 'expired' });
    expect(judgeCommand(s0, c, { ...ctx, remote: { allowed: false, why: 'off' } })).toEqual({ kind: 'refused', status: 'refused', reason: 'off' });
    expect(judgeCommand(s0, { ...c, script: 'other' }, ctx)).toMatchObject({ kind: 'refused', status: 'refused' });
    const full = startRun(startRun(s0));
    expect(judgeCommand(full, c, ctx)).toMatchObject({ kind: 'refused', status: 'busy' });
    expect(judgeCommand(endRun(full), c, ctx)).toEqual({ kind: 'run' });
  });

  it('a tick during its schedule\'s run is skipped and counted; the next run reports the count', () => {
    let t = judgeTick(initialRunnerState(), 'tick', 4);
    expect(t.run).toBe(true);
    t = judgeTick(t.state, 'tick', 4);
    expect([t.run, t.why]).toEqual([false, 'its previous run is still going on']);
    t = judgeTick(t.state, 'tick', 4);
    expect(t.state.skipped.get('tick')).toBe(2);
    const other = judgeTick(t.state, 'other', 4);
    expect(other.run).toBe(true);
    const after = judgeTick(endRun(t.state, 'tick'), 'tick', 4);
    expect([after.run, after.skippedBefore]).toEqual([true, 2]);
    expect(judgeTick(startRun(startRun(initialRunnerState())), 'x', 2).run).toBe(false);
  });

  it('cuts output into chunks at newlines, keeps stream order, caps and counts what it drops', () => {
    const lim = { capBytes: 50, chunkBytes: 16 };
    let s = initialOutput();
    let r = takeOutput(s, 'stdout', Buffer.from('line one\nline two\nthree'), lim);
    expect(r.chunks.map((c) => c.data.toString())).toEqual(['line one\n']);
    s = r.state;
    r = takeOutput(s, 'stderr', Buffer.from('oops\n'), lim);
    expect(r.chunks.map((c) => [c.stream, c.data.toString()])).toEqual([['stdout', 'line two\nthree']]);
    s = r.state;
    r = takeOutput(s, 'stderr', Buffer.alloc(40, 0x61), lim);
    s = r.state;
    expect(s.keptBytes).toBe(50);
    expect(s.droppedBytes).toBe(23 + 5 + 40 - 50);
    expect(r.chunks.every((c) => c.data.length <= 16)).toBe(true);
    const f = flushOutput(s);
    expect(f.state.pending).toBeUndefined();
    const all = [...r.chunks, ...f.chunks].map((c) => c.data.toString()).join('');
    expect(all.startsWith('oops\n')).toBe(true);
  });

  it('maps a run\'s end to the CLI\'s exit code', () => {
    const sig = (s: string) => (os.constants.signals as Record<string, number>)[s];
    expect(runStatus(0, null, false)).toEqual({ status: 'ok', exitCode: 0, signal: null });
    expect(runStatus(null, 'SIGKILL', true).status).toBe('timeout');
    expect(cliExitCode('failed', 3, null, sig)).toBe(3);
    expect(cliExitCode('failed', null, 'SIGTERM', sig)).toBe(143);
    expect(cliExitCode('timeout', null, 'SIGKILL', sig)).toBe(124);
    expect(cliExitCode('expired', null, null, sig)).toBe(125);
    expect(cliExitCode('refused', null, null, sig)).toBe(126);
    expect(checkDigest('x', '/x', 'a', 'a')).toBeUndefined();
    expect(checkDigest('x', '/x', 'a', 'b')).toContain('edited');
  });

  it('config: schedules need allowlisted names and valid cron; builtin names are reserved; unknown keys are refused', () => {
    const base = { sources: [{ task: 't', paths: ['/x'], topic: 't' }], host: 'h' };
    const ok = resolveAgentConfig({ ...base, scripts: { dirs: ['/s'], allow: [{ name: 'a', sha256: 'A'.repeat(64) }], schedule: [{ name: 'a', cron: '*/5 * * * * *' }] } }, '/');
    expect(ok.scripts).toMatchObject({ commandsTopic: 'agent.commands.h', resultsTopic: 'agent.scripts', remote: { enabled: 'auto' }, allow: [{ name: 'a', sha256: 'a'.repeat(64), timeoutMs: 60_000 }] });
    expect(() => resolveAgentConfig({ ...base, scripts: { dirs: ['/s'], schedule: [{ name: 'a', cron: '* * * * *' }] } }, '/')).toThrow(/not on scripts.allow/);
    expect(() => resolveAgentConfig({ ...base, scripts: { dirs: ['/s'], allow: [{ name: 'a', sha256: 'a'.repeat(64) }], schedule: [{ name: 'a', cron: 'every day' }] } }, '/')).toThrow(/cron/);
    expect(() => resolveAgentConfig({ ...base, scripts: { dirs: ['/s'], allow: [{ name: 'jstack', sha256: 'a'.repeat(64) }] } }, '/')).toThrow(/built-in/);
    expect(() => resolveAgentConfig({ ...base, scripts: { commandsTopic: 'x' } }, '/')).toThrow(/commandsTopic/);
    expect(() => resolveAgentConfig({ ...base, scripts: { dirs: ['/s'], allow: [{ name: 'a', sha256: 'a'.repeat(64), user: 'no-such-user-here' }] } }, '/')).toThrow(/does not exist/);
  });
});

// ---- against a real node and agent ----

interface Setup { dir: string; config: string; scripts: string }

async function writeScript(dir: string, name: string, body: string): Promise<string> {
  const text = `#!/bin/sh\n${body}\n`;
  await writeFile(path.join(dir, name), text, { mode: 0o755 });
  return sha(text);
}

async function setup(name: string, url: string, host: string, scriptsYaml: (scriptsDir: string) => Promise<string>): Promise<Setup> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `chicago-scripts-${name}-`));
  const scripts = path.join(dir, 'scripts');
  await mkdir(scripts);
  await mkdir(path.join(dir, 'logs'));
  const config = path.join(dir, 'agent.yaml');
  await writeFile(config, [
    `node: { url: ${url} }`,
    `host: ${host}`,
    'spool: { dir: ./spool, quotaBytes: 67108864, segmentBytes: 1048576 }',
    'batch: { lingerMs: 5 }',
    'retry: { minMs: 20, maxMs: 500 }',
    'logLevel: info',
    'sources:',
    '  - { task: app, paths: [./logs/app.log], topic: app }',
    'scripts:',
    await scriptsYaml(scripts),
  ].join('\n'));
  return { dir, config, scripts };
}

async function running(config: string): Promise<AgentProc> {
  const a = startAgent(config);
  agents.push(a);
  try {
    await a.stdout.waitFor(/"msg":"scripts ready"/, 10_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- agent stderr\n${a.stderr.text()}`);
  }
  return a;
}

/** the records of one run on the results topic */
async function runRecords(url: string, runId?: string): Promise<TopicRecord[]> {
  const all = await readTopic(url, RESULTS);
  return runId ? all.filter((r) => r.headers.run === runId) : all;
}

/** processes whose process group is `pgid` */
function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) === pgid && f[0] !== 'Z') out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];

describe('scripts on an open node (remote.enabled: true)', () => {
  let node: NodeHandle;
  let s: Setup;
  let agent: AgentProc;
  const cli = (args: string[], opts: { timeoutMs?: number } = {}) => runCli(['agent', 'run', '--url', node.url, 'testhost', ...args], opts);

  beforeAll(async () => {
    node = await openNode();
    s = await setup('open', node.url, 'testhost', async (dir) => {
      const hello = await writeScript(dir, 'hello', 'echo "hello $*"\necho "to stderr" >&2\nexit 3');
      const first = await writeScript(dir, 'first', 'echo first');
      const tree = await writeScript(dir, 'tree', "trap '' TERM\nsleep 1000 &\necho \"pgid $$ child $!\"\nsleep 1000");
      const flood = await writeScript(dir, 'flood', "head -c 300000 /dev/zero | tr '\\0' a\necho\necho tail-marker\nexit 0");
      const edited = await writeScript(dir, 'edited', 'echo original');
      await writeScript(dir, 'wrongsum', 'echo hi');
      const mark = await writeScript(dir, 'mark', `echo "$CHICAGO_RUN_ID" >> ${path.join(dir, '..', 'marks')}\necho marked`);
      const slowScript = await writeScript(dir, 'slow', 'echo "slow $$"\nsleep 1000');
      const whoami = await writeScript(dir, 'whoami', 'id -u; pwd; env | sort');
      return [
        '  dirs: [./scripts]',
        '  remote: { enabled: true }',
        '  killGraceMs: 300',
        '  output: { chunkBytes: 16384, lingerMs: 5 }',
        '  allow:',
        `    - { name: hello, sha256: "${hello}" }`,
        `    - { name: first, sha256: "${first}" }`,
        `    - { name: tree, sha256: "${tree}", timeoutMs: 500 }`,
        `    - { name: flood, sha256: "${flood}", outputBytesMax: 100000 }`,
        `    - { name: edited, sha256: "${edited}" }`,
        `    - { name: wrongsum, sha256: "${"0".repeat(64)}" }`,
        `    - { name: mark, sha256: "${mark}" }`,
        `    - { name: slow, sha256: "${slowScript}", timeoutMs: 120000 }`,
        `    - { name: whoami, sha256: "${whoami}", user: nobody }`,
      ].join('\n');
    });
    agent = await running(s.config);
  });

  afterAll(async () => {
    agent?.proc.kill('SIGKILL');
    await agent?.exited;
    if (s) await rm(s.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });

  it('runs a script on demand: output streamed to stdout and stderr, exit code passed through, records with run headers', async () => {
    const r = await cli(['hello', 'a', 'b c']);
    expect([r.code, r.stdout, r.stderr]).toEqual([3, 'hello a b c\n', 'to stderr\n']);
    const recs = await runRecords(node.url);
    const exit = recs.find((x) => x.headers.stream === 'exit' && x.headers.script === 'hello')!;
    const mine = recs.filter((x) => x.headers.run === exit.headers.run);
    expect(mine.map((x) => x.headers.stream)).toEqual(['start', 'stdout', 'stderr', 'exit']);
    for (const x of mine) expect(x.headers).toMatchObject({ host: 'testhost', task: 'scripts', script: 'hello', trigger: 'command' });
    expect(JSON.parse(exit.value)).toMatchObject({ status: 'failed', exitCode: 3, signal: null, truncated: false });
    expect(JSON.parse(exit.value).durationMs).toBeGreaterThanOrEqual(0);
    const seqs = recs.filter((x) => x.headers.task === 'scripts').map((x) => Number(x.headers.seq)).sort((a, b) => a - b);
    expect(seqs).toEqual(seqs.map((_, i) => i));
  });

  it('trigger → first output: p99 within 250 ms (× slowdown) over 30 runs', async () => {
    const http = new Http(node.url, slow(10_000));
    const lat: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      let first = -1;
      const r = await runRemote(http, {
        host: 'testhost', script: 'first', args: [], waitMs: slow(10_000), expireMs: slow(10_000), resultsTopic: RESULTS,
        onOutput: () => { if (first < 0) first = performance.now() - t0; },
      });
      expect(r.exit).toBe(0);
      lat.push(first);
    }
    lat.sort((a, b) => a - b);
    const p50 = pct(lat, 50);
    const p99 = pct(lat, 99);
    console.log(`scripts: trigger → first output over ${lat.length} runs: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${lat[lat.length - 1].toFixed(1)} ms`);
    expect(p99).toBeLessThanOrEqual(250 * SLOWDOWN);
  });

  it('a timeout kills the whole process group (SIGTERM ignored: SIGKILL after the grace); exit 124', async () => {
    const t0 = Date.now();
    const r = await cli(['tree']);
    expect(r.code, r.stderr).toBe(124);
    expect(r.stderr).toContain('timeout');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(800);
    const m = /pgid (\d+) child (\d+)/.exec(r.stdout)!;
    expect(m).not.toBeNull();
    const [pgid, child] = [Number(m[1]), Number(m[2])];
    expect(groupMembers(pgid)).toEqual([]);
    expect(existsSync(`/proc/${child}`) && !readFileSync(`/proc/${child}/stat`, 'utf8').includes(') Z ')).toBe(false);
    const exit = (await runRecords(node.url)).find((x) => x.headers.stream === 'exit' && x.headers.script === 'tree')!;
    expect(JSON.parse(exit.value)).toMatchObject({ status: 'timeout', signal: 'SIGKILL' });
  });

  it('the output cap cuts and marks the output; the script runs to its end; records are at most chunkBytes', async () => {
    const r = await cli(['flood']);
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(100_000);
    expect(r.stdout).toBe('a'.repeat(100_000));
    expect(r.stderr).toContain('output cut');
    const recs = await runRecords(node.url);
    const exit = recs.find((x) => x.headers.stream === 'exit' && x.headers.script === 'flood')!;
    expect(exit.headers.truncated).toBe('true');
    expect(JSON.parse(exit.value)).toMatchObject({ status: 'ok', exitCode: 0, truncated: true, keptBytes: 100_000, droppedBytes: 300_000 + 1 + 12 - 100_000 });
    const out = recs.filter((x) => x.headers.run === exit.headers.run && x.headers.stream === 'stdout');
    expect(out.length).toBeGreaterThanOrEqual(7);
    for (const x of out) expect(x.value.length).toBeLessThanOrEqual(16384);
  });

  it('refuses a script not on the allow list, one with a wrong sha256 and one edited after start (exit 126, nothing runs)', async () => {
    const nope = await cli(['nope']);
    expect([nope.code, nope.stdout]).toEqual([126, '']);
    expect(nope.stderr).toContain('not on this agent\'s allow list');
    const wrong = await cli(['wrongsum']);
    expect([wrong.code, wrong.stdout]).toEqual([126, '']);
    expect(wrong.stderr).toMatch(/has sha256 [0-9a-f]{64}, the allow list says 0{64}/);
    expect((await cli(['edited'])).stdout).toBe('original\n');
    await appendFile(path.join(s.scripts, 'edited'), 'echo injected\n');
    const edited = await cli(['edited']);
    expect([edited.code, edited.stdout]).toEqual([126, '']);
    expect(edited.stderr).toContain('edited after it was allowlisted');
    const recs = await runRecords(node.url);
    const refused = recs.filter((x) => x.headers.stream === 'exit' && x.headers.status === 'refused');
    expect(refused.map((x) => x.headers.script).sort()).toEqual(['edited', 'nope', 'wrongsum']);
    // refusals have no start record and no output
    for (const x of refused) expect(recs.filter((y) => y.headers.run === x.headers.run)).toHaveLength(1);
  });

  it('an expired command is answered expired, not run; a malformed one is answered invalid', async () => {
    const now = Date.now();
    const post = (value: string) => fetch(`${node.url}/v1/topics/agent.commands.testhost/records`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify([{ value }]),
    });
    expect((await post(JSON.stringify({ id: 'old-1', script: 'mark', args: [], requestedAt: new Date(now - 60_000).toISOString(), expiresAt: new Date(now - 50_000).toISOString() }))).status).toBe(200);
    expect((await post('{"not":"a command"}')).status).toBe(200);
    await waitUntil('answers', async () => (await runRecords(node.url)).some((x) => x.headers.status === 'invalid'), 10_000, 50);
    const recs = await runRecords(node.url);
    expect(recs.filter((x) => x.headers.run === 'old-1').map((x) => x.headers.status)).toEqual(['expired']);
    expect(JSON.parse(recs.find((x) => x.headers.status === 'invalid')!.value).reason).toContain('id');
    expect(existsSync(path.join(s.dir, 'marks'))).toBe(false);
  });

  it('runs as an unprivileged user with a minimal environment', async () => {
    const r = await cli(['whoami']);
    expect(r.code, r.stderr).toBe(0);
    const [uid, cwd, ...env] = r.stdout.trim().split('\n');
    expect([uid, cwd]).toEqual(['65534', '/']);
    const names = env.map((l) => l.split('=')[0]).filter((n) => n !== 'PWD' && n !== 'SHLVL' && n !== '_');
    expect(names.sort()).toEqual(['CHICAGO_HOST', 'CHICAGO_RUN_ID', 'CHICAGO_SCRIPT', 'CHICAGO_SCRIPT_PATH', 'HOME', 'LANG', 'LOGNAME', 'PATH', 'USER']);
    expect(env).toContain('USER=nobody');
  });

  it('stack dumps: jstack of a JVM (jcmd Thread.print) and native-stack of a sleeping process (eu-stack)', async () => {
    const jdir = await mkdtemp(path.join(os.tmpdir(), 'chicago-jvm-'));
    await writeFile(path.join(jdir, 'Sleeper.java'), 'public class Sleeper { public static void main(String[] a) throws Exception { System.out.println("ready"); System.out.flush(); Thread.sleep(600_000); } }\n');
    await run('javac', ['Sleeper.java'], { cwd: jdir, timeout: slow(60_000) });
    const jvm = spawn('java', ['-Xmx32m', '-cp', jdir, 'Sleeper'], { stdio: ['ignore', 'pipe', 'ignore'] });
    children.push(jvm);
    const sleeper = spawn('sleep', ['1000'], { stdio: 'ignore' });
    children.push(sleeper);
    try {
      await new Promise<void>((resolve, reject) => {
        jvm.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('ready')) resolve(); });
        jvm.once('exit', () => reject(new Error('the JVM exited')));
      });
      const j = await cli(['jstack', String(jvm.pid)], { timeoutMs: 60_000 });
      expect(j.code, j.stderr).toBe(0);
      expect(j.stdout).toContain('Full thread dump');
      expect(j.stdout).toMatch(/"main" #\d+[^\n]*\n\s+java.lang.Thread.State: TIMED_WAITING \(sleeping\)/);
      expect(j.stdout).toContain('Sleeper.main');
      const n = await cli(['native-stack', String(sleeper.pid)]);
      expect(n.code, n.stderr).toBe(0);
      expect(n.stdout).toContain(`PID ${sleeper.pid}`);
      expect(n.stdout).toMatch(/nanosleep/);
      const bad = await cli(['jstack', 'notapid']);
      expect(bad.code).toBe(64);
    } finally {
      jvm.kill('SIGKILL');
      sleeper.kill('SIGKILL');
      await rm(jdir, { recursive: true, force: true });
    }
  });

  it('kill -9 of the agent: a run cut short is answered interrupted and its processes killed; a command written while it was down runs once; nothing runs twice', async () => {
    const marks = path.join(s.dir, 'marks');
    const lines = async () => (existsSync(marks) ? (await readFile(marks, 'utf8')).trim().split('\n') : []);
    expect((await cli(['mark'])).code).toBe(0);
    expect(await lines()).toHaveLength(1);

    const slowRun = spawnCli(['agent', 'run', '--url', node.url, 'testhost', 'slow'], { timeoutMs: 120_000 });
    await slowRun.stdout.waitFor(/slow \d+/, 10_000);
    const pgid = Number(/slow (\d+)/.exec(slowRun.stdout.text())![1]);
    agent.proc.kill('SIGKILL');
    await agent.exited;
    expect(groupMembers(pgid).length).toBeGreaterThan(0);

    const commandsEnd = async () => ((await (await fetch(`${node.url}/v1/topics/agent.commands.testhost`)).json()) as { partitions: Array<{ endOffset: number }> }).partitions[0].endOffset;
    const before = await commandsEnd();
    const markWhileDown = spawnCli(['agent', 'run', '--url', node.url, 'testhost', 'mark', '--wait', `${slow(60_000)}ms`], { timeoutMs: 120_000 });
    await waitUntil('the command written', async () => (await commandsEnd()) > before, 10_000, 50);
    expect(await lines()).toHaveLength(1);

    agent = await running(s.config);
    const slowDone = await slowRun.done;
    expect(slowDone.code, slowDone.stderr).toBe(75);
    expect(slowDone.stderr).toContain('interrupted');
    expect(groupMembers(pgid)).toEqual([]);
    const markDone = await markWhileDown.done;
    expect(markDone.code, markDone.stderr).toBe(0);
    expect(await lines()).toHaveLength(2);

    agent.proc.kill('SIGKILL');
    await agent.exited;
    agent = await running(s.config);
    expect((await cli(['mark'])).code).toBe(0);
    const ids = await lines();
    expect(ids).toHaveLength(3);
    expect(new Set(ids).size).toBe(3);
  });
});

describe('scripts with tokens: the agent:exec scope; schedules', () => {
  let node: NodeHandle;
  let s: Setup;
  let agent: AgentProc;
  const tokens: Record<string, string> = {};

  beforeAll(async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-scripts-tok-'));
    const made: Record<string, { token: string; entry: Record<string, unknown> }> = {};
    for (const [name, scopes] of [['agent', '*'], ['writer', 'topic:write:*,topic:read:agent.scripts'], ['exec', 'agent:exec:tokhost,topic:read:agent.scripts']]) {
      const r = await runCli(['token', 'create', '--scopes', scopes, '--name', name, '--json']);
      expect(r.code, r.stderr).toBe(0);
      made[name] = JSON.parse(r.stdout);
      tokens[name] = made[name].token;
    }
    await writeFile(path.join(dir, 'node.json'), JSON.stringify({ security: { tokens: Object.values(made).map((m) => m.entry) } }));
    node = await startNode({ args: ['--config', path.join(dir, 'node.json')] });
    s = await setup('tok', node.url, 'tokhost', async (sdir) => {
      const hello = await writeScript(sdir, 'hello', `echo "$CHICAGO_RUN_ID" >> ${path.join(sdir, '..', 'ran')}\necho hello`);
      const tick = await writeScript(sdir, 'tick', `echo "start $(date +%s%N)" >> ${path.join(sdir, '..', 'ticks')}\nsleep 1.5\necho "end $(date +%s%N)" >> ${path.join(sdir, '..', 'ticks')}`);
      return [
        '  dirs: [./scripts]',
        '  allow:',
        `    - { name: hello, sha256: "${hello}" }`,
        `    - { name: tick, sha256: "${tick}" }`,
        '  schedule:',
        "    - { name: tick, cron: '* * * * * *' }",
      ].join('\n');
    });
    await writeFile(s.config, (await readFile(s.config, 'utf8')).replace(`node: { url: ${node.url} }`, `node: { url: ${node.url}, token: ${tokens.agent} }`));
    agent = await running(s.config);
  });

  afterAll(async () => {
    agent?.proc.kill('SIGKILL');
    await agent?.exited;
    await node?.stop();
    // a scheduled run (its own process group) may still write its last output as the dir goes: retried
    if (s) await rm(s.dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });

  const cli = (token: string, args: string[]) => runCli(['agent', 'run', '--url', node.url, '--token', token, 'tokhost', ...args]);

  it('topic:write alone cannot write a command (403 FORBIDDEN, nothing runs); agent:exec:<host> can (remote on by default with tokens)', async () => {
    const refused = await cli(tokens.writer, ['hello']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('FORBIDDEN');
    expect(refused.stderr).toContain('agent:exec:tokhost');
    const direct = await fetch(`${node.url}/v1/topics/agent.commands.tokhost/records`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.writer}` }, body: '[{"value":"{}"}]',
    });
    expect(direct.status).toBe(403);
    expect(((await direct.json()) as { error: { code: string } }).error.code).toBe('FORBIDDEN');
    // the WebSocket produce is guarded the same way
    const ws = await ChicagoClient.connect({ url: node.url, token: tokens.writer });
    try {
      await expect(ws.producer({ deliveryTimeoutMs: slow(5000) }).send('agent.commands.tokhost', { value: '{}' })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    } finally {
      ws.close();
    }
    expect(existsSync(path.join(s.dir, 'ran'))).toBe(false);
    // other topics are still writable with topic:write
    const other = await fetch(`${node.url}/v1/topics/app/records`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens.writer}` }, body: '[{"value":"x"}]',
    });
    expect([403, 401]).not.toContain(other.status);

    const ok = await cli(tokens.exec, ['hello']);
    expect([ok.code, ok.stdout], ok.stderr).toEqual([0, 'hello\n']);
    expect((await readFile(path.join(s.dir, 'ran'), 'utf8')).trim().split('\n')).toHaveLength(1);
  });

  it('a scheduled script runs every second without overlapping itself; skipped ticks are counted', async () => {
    const ticks = path.join(s.dir, 'ticks');
    await waitUntil('three scheduled runs', async () => existsSync(ticks) && (await readFile(ticks, 'utf8')).split('\n').filter((l) => l.startsWith('end')).length >= 3, 15_000, 100);
    const ev = (await readFile(ticks, 'utf8')).trim().split('\n').map((l) => l.split(' '));
    // starts and ends alternate: no run started before the previous one ended
    for (let i = 0; i + 1 < ev.length; i += 2) expect([ev[i][0], ev[i + 1][0]]).toEqual(['start', 'end']);
    for (let i = 1; i + 1 < ev.length; i += 2) expect(BigInt(ev[i + 1][1])).toBeGreaterThanOrEqual(BigInt(ev[i][1]));
    const headers = { authorization: `Bearer ${tokens.agent}` };
    const meta = (await (await fetch(`${node.url}/v1/topics/${RESULTS}`, { headers })).json()) as { partitionCount: number };
    const starts: Array<{ skippedTicks: number }> = [];
    for (let p = 0; p < meta.partitionCount; p++) {
      const body = (await (await fetch(`${node.url}/v1/topics/${RESULTS}/records?partition=${p}&offset=0&maxRecords=10000`, { headers })).json()) as { records: TopicRecord[] };
      for (const r of body.records) if (r.headers.script === 'tick' && r.headers.stream === 'start') starts.push(JSON.parse(r.value));
    }
    expect(starts.length).toBeGreaterThanOrEqual(3);
    expect(starts.slice(1).some((x) => x.skippedTicks >= 1)).toBe(true);
  });

  it('on an open node, remote scripts are off unless the agent enables them (answered refused, exit 126)', async () => {
    const open = await openNode();
    const o = await setup('auto', open.url, 'autohost', async (sdir) => `  dirs: [./scripts]\n  allow:\n    - { name: hello, sha256: "${await writeScript(sdir, 'hello', 'echo hello')}" }`);
    const a = await running(o.config);
    try {
      const r = await runCli(['agent', 'run', '--url', open.url, 'autohost', 'hello']);
      expect([r.code, r.stdout]).toEqual([126, '']);
      expect(r.stderr).toContain('scripts.remote.enabled: true');
    } finally {
      a.proc.kill('SIGKILL');
      await rm(o.dir, { recursive: true, force: true });
    }
  });
});
