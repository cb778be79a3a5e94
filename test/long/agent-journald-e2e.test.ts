// The agent's journald source against a real systemd-journald (standalone: PID 1 is not systemd
// here) and a real sshd: entries written by systemd-cat arrive once each, in order, with headers,
// through kill -9 of the agent, a killed journalctl and `journalctl --rotate`; a vacuumed cursor
// becomes a gap record; sshd's failed logins from a network namespace arrive as ssh.* fields.
// In the long suite while a miss is open: in some runs (in the full suite and alone) a wait for
// records ran out (45 s), or sshd's "Server listening" entry, in the journal, was never shipped.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type NodeHandle, startNode } from '../helpers/launcher.js';
import { slow } from '../helpers/slow.js';
import { waitUntil } from '../helpers/bridge.js';
import { type AgentProc, readTopic, type TopicRecord } from '../helpers/agent.js';
import { aptEnsure, awaitRecords, ensureJournald, followingAgent, journalctlPids, journalEntries, journalWriter, kill9, recordsOfTask, writeNumbered } from '../helpers/journald.js';

const run = promisify(execFile);
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

// ---- against the real journal and sshd ----

let node: NodeHandle;
const agents: AgentProc[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  await aptEnsure({ 'openssh-server': '/usr/sbin/sshd', sshpass: '/usr/bin/sshpass' });
  [node] = await Promise.all([startNode(), ensureJournald()]);
}, slow(320_000));

afterAll(async () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await node?.stop();
});

async function setup(name: string, body: string[]): Promise<{ dir: string; config: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `chicago-journald-${name}-`));
  await mkdir(path.join(dir, 'logs'));
  const config = path.join(dir, 'agent.yaml');
  await writeFile(config, [
    `node: { url: ${node.url} }`,
    'host: testhost',
    'spool: { dir: ./spool, quotaBytes: 67108864, segmentBytes: 1048576 }',
    'pollIntervalMs: 50',
    'batch: { lingerMs: 5 }',
    'retry: { minMs: 20, maxMs: 500 }',
    ...body,
  ].join('\n'));
  return { dir, config };
}

const running = (config: string) => followingAgent(config, agents);
const mine = recordsOfTask;
const until = (topic: string, task: string, done: (recs: TopicRecord[]) => boolean, what: string) => awaitRecords(node.url, topic, task, done, what);

describe('agent: journald to Chicago', () => {
  it('first start at the tail; messages at a bounded rate arrive once each, in order, with headers; binary kept as bytes; a long one cut and marked', async () => {
    const ID = `chj-basic-${RUN_ID}`;
    const before = journalWriter(ID);
    await before.write('written before the first start\n');
    await before.end();
    await waitUntil('the early entry in the journal', async () => (await journalEntries(ID)).length === 1, 5000, 50);
    const { config } = await setup('basic', ['journald:', `  - { task: j1, topic: agent-journal-1, identifiers: [${ID}], maxMessageBytes: 1024 }`]);
    const agent = await running(config);
    const N = 1000;
    const t0 = Date.now();
    await writeNumbered(ID, 'm', N, 1000);
    const w = journalWriter(ID, 'info');
    await w.write(Buffer.from('bin\x01\xff end\n', 'latin1'));
    await w.write(`${'y'.repeat(3000)}\n`);
    await w.end();
    const recs = await until('agent-journal-1', 'j1', (r) => r.length >= N + 2, `${N + 2} records`);
    await new Promise((r) => setTimeout(r, 300));
    const again = mine(await readTopic(node.url, 'agent-journal-1'), 'j1');
    expect(again.length, 'no record twice').toBe(N + 2);
    expect(recs.map((r) => r.headers.seq)).toEqual(recs.map((_, i) => String(i)));
    expect(recs.slice(0, N).map((r) => r.value)).toEqual(Array.from({ length: N }, (_, i) => `m ${i}`));
    const r0 = recs[0];
    expect(r0.headers).toMatchObject({ host: 'testhost', task: 'j1', source: ID, level: 'warn', 'journal.priority': 'warning', 'journal.identifier': ID, 'journal.transport': 'stdout' });
    expect(Number(r0.headers['journal.pid'])).toBeGreaterThan(0);
    expect(Math.abs(Date.parse(r0.headers.time) - t0)).toBeLessThan(60_000);
    const bin = recs[N] as TopicRecord & { valueEncoding?: string };
    expect(bin.valueEncoding).toBe('base64');
    expect(Buffer.from(bin.value, 'base64')).toEqual(Buffer.from('bin\x01\xff end', 'latin1'));
    expect(recs[N + 1].value).toBe('y'.repeat(1024));
    expect(recs[N + 1].headers.cut).toBe('3000');
    console.log(`journald: ${N} entries at 1000/s shipped; last record in Chicago ${Date.now() - t0} ms after the first was written`);
    await kill9(agent);
  });

  it('kill -9 of the agent, a killed journalctl and journalctl --rotate mid-stream: 0 missing, 0 duplicated, seq gap-free', async () => {
    const ID = `chj-kill-${RUN_ID}`;
    const { config } = await setup('kill', ['journald:', `  - { task: j2, topic: agent-journal-2, identifiers: [${ID}] }`]);
    let agent = await running(config);
    const N = 4000;
    const events: string[] = [];
    let orphan: number[] = [];
    await writeNumbered(ID, 'k', N, 2000, async (i) => {
      if (i === 1000 || i === 3000) {
        await run('journalctl', ['--rotate']);
        events.push(`rotate@${i}`);
      }
      if (i === 1600) {
        orphan = await journalctlPids(ID);
        await kill9(agent);
        agent = await running(config);
        events.push(`kill9@${i}`);
      }
      if (i === 2400) {
        const pids = await journalctlPids(ID);
        expect(pids).toHaveLength(1);
        process.kill(pids[0], 'SIGKILL');
        events.push(`journalctl-killed@${i}`);
      }
    });
    expect(events).toHaveLength(4);
    const recs = await until('agent-journal-2', 'j2', (r) => r.length >= N, `${N} records`);
    await new Promise((r) => setTimeout(r, 300));
    const all = mine(await readTopic(node.url, 'agent-journal-2'), 'j2');
    const nums = all.map((r) => Number(r.value.split(' ')[1]));
    expect(all.length, 'records (no duplicates)').toBe(N);
    expect(nums).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(recs.map((r) => r.headers.seq)).toEqual(recs.map((_, i) => String(i)));
    expect((await journalEntries(ID)).length, 'the journal holds what was written').toBe(N);
    // journalctl restarted after its kill, with a notice; the killed agent's journalctl ended with it
    expect(agent.stdout.text()).toMatch(/"kind":"source_restart"/);
    expect(orphan).toHaveLength(1);
    await waitUntil('the killed agent\'s journalctl to end', async () => !(await journalctlPids(ID)).includes(orphan[0]), 5000, 50);
    console.log(`journald: ${N} entries at 2000/s with ${events.join(', ')}: 0 missing, 0 duplicated`);
    await kill9(agent);
  });

  it('a cursor the journal no longer has (vacuumed): a gap record and a notice, then what is left', async () => {
    const ID = `chj-gap-${RUN_ID}`;
    const { config } = await setup('gap', ['journald:', `  - { task: j3, topic: agent-journal-3, identifiers: [${ID}] }`]);
    let agent = await running(config);
    await writeNumbered(ID, 'kept', 5, 1000);
    await until('agent-journal-3', 'j3', (r) => r.length >= 5, '5 records');
    await kill9(agent);
    await writeNumbered(ID, 'lost', 5, 1000);
    await run('journalctl', ['--rotate']);
    await run('journalctl', ['--vacuum-size=1']);
    await waitUntil('the lost entries vacuumed', async () => (await journalEntries(ID)).length === 0, 5000, 50);
    await writeNumbered(ID, 'after', 3, 1000);
    agent = await running(config);
    const recs = await until('agent-journal-3', 'j3', (r) => r.length >= 9, '9 records');
    expect(recs.slice(0, 5).map((r) => r.value)).toEqual(['kept 0', 'kept 1', 'kept 2', 'kept 3', 'kept 4']);
    expect(recs[5].headers).toMatchObject({ gap: 'journald', level: 'warn', source: 'journald' });
    expect(Number(recs[5].headers['gap.entries'])).toBeGreaterThanOrEqual(5);
    expect(recs.slice(6).map((r) => r.value)).toEqual(['after 0', 'after 1', 'after 2']);
    expect(recs.map((r) => r.headers.seq)).toEqual(recs.map((_, i) => String(i)));
    expect(agent.stdout.text()).toMatch(/"notice":\{"kind":"gap","task":"j3"/);
    await kill9(agent);
  });

  it('sshd: failed logins from another network namespace arrive with ssh.* fields, from journald and from auth.log', async () => {
    const { dir, config } = await setup('sshd', [
      'sources:',
      '  - { task: authlog, topic: agent-ssh, paths: [./logs/auth.log], parse: sshd }',
      'journald:',
      '  - { task: sshd, topic: agent-ssh, identifiers: [sshd] }',
    ]);
    // the client in a namespace of its own (its address is the source IP sshd sees); loopback if unavailable
    const ns = `chj${RUN_ID}`.slice(0, 14);
    const octet = process.pid % 250;
    let serverIp = `198.19.${octet}.1`;
    let clientIp = `198.19.${octet}.2`;
    let inNs: string[] = [];
    try {
      await run('ip', ['netns', 'add', ns]);
      cleanups.push(() => run('ip', ['netns', 'del', ns]));
      await run('ip', ['link', 'add', `${ns}h`, 'type', 'veth', 'peer', 'name', `${ns}n`]);
      cleanups.push(() => run('ip', ['link', 'del', `${ns}h`]));
      await run('ip', ['link', 'set', `${ns}n`, 'netns', ns]);
      await run('ip', ['addr', 'add', `${serverIp}/30`, 'dev', `${ns}h`]);
      await run('ip', ['link', 'set', `${ns}h`, 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `${clientIp}/30`, 'dev', `${ns}n`]);
      await run('ip', ['-n', ns, 'link', 'set', `${ns}n`, 'up']);
      inNs = ['ip', 'netns', 'exec', ns];
    } catch (err) {
      console.log(`sshd test: no network namespace (${(err as Error).message.split('\n')[0]}); on loopback`);
      serverIp = '127.0.0.1';
      clientIp = '127.0.0.1';
    }
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')]);
    await mkdir('/run/sshd', { recursive: true });
    const port = 20_000 + (process.pid % 20_000);
    const agent = await running(config);
    const sshd: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-f', '/dev/null',
      '-o', `ListenAddress=${serverIp}:${port}`, '-o', `HostKey=${path.join(dir, 'host_key')}`, '-o', `PidFile=${path.join(dir, 'sshd.pid')}`,
      '-o', 'UsePAM=no', '-o', 'PasswordAuthentication=yes', '-o', 'KbdInteractiveAuthentication=no', '-o', 'PermitRootLogin=yes',
      '-o', 'SyslogFacility=AUTH', '-o', 'LogLevel=INFO', '-o', 'MaxAuthTries=3'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let sshdErr = '';
    sshd.stderr!.setEncoding('utf8').on('data', (s: string) => { sshdErr += s; });
    cleanups.push(async () => { sshd.kill('SIGTERM'); });
    const since = new Date(Date.now() - 1000).toISOString().replace('T', ' ').slice(0, 19);
    await waitUntil(`sshd listening (${sshdErr})`, async () =>
      (await readTopic(node.url, 'agent-ssh').catch(() => [])).some((r) => r.value === `Server listening on ${serverIp} port ${port}.`), 10_000, 100);
    const attempt = (user: string) => run(inNs[0] ?? 'sshpass', [...inNs.slice(1), ...(inNs.length ? ['sshpass'] : []), '-p', 'wrong', 'ssh',
      '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password',
      '-o', 'ConnectTimeout=10', '-p', String(port), `${user}@${serverIp}`, 'true'], { timeout: slow(20_000) }).catch((e: { code?: number }) => e.code);
    expect(await attempt(`nosuch${RUN_ID}`)).toBe(5); // sshpass: wrong password
    expect(await attempt('root')).toBe(5);
    const fromClient = (r: TopicRecord) => r.headers['ssh.ip'] === clientIp && (clientIp !== '127.0.0.1' || r.headers['ssh.port'] !== undefined);
    const want = (recs: TopicRecord[]) => {
      const evs = recs.filter(fromClient).map((r) => `${r.headers['ssh.event']}:${r.headers['ssh.user']}`);
      return evs.includes(`invalid_user:nosuch${RUN_ID}`) && evs.includes(`failed:nosuch${RUN_ID}`) && evs.includes('failed:root') && evs.filter((e) => e.startsWith('closed:')).length >= 2;
    };
    const viaJournal = await until('agent-ssh', 'sshd', want, 'sshd events from journald');
    const failed = viaJournal.find((r) => fromClient(r) && r.headers['ssh.event'] === 'failed' && r.headers['ssh.user'] === `nosuch${RUN_ID}`)!;
    expect(failed.headers).toMatchObject({ 'ssh.method': 'password', 'ssh.invalid_user': 'true', 'journal.identifier': 'sshd', source: 'sshd' });
    expect(Number(failed.headers['ssh.port'])).toBeGreaterThan(0);
    // the same lines as rsyslog writes auth.log (RFC 3339 time, host, sshd[pid]: message)
    const { stdout } = await run('journalctl', ['--identifier=sshd', '-o', 'short-iso-precise', '--since', since]);
    await appendFile(path.join(dir, 'logs', 'auth.log'), stdout.split('\n').filter((l) => / sshd\[\d+\]: /.test(l)).map((l) => `${l}\n`).join(''));
    const viaFile = await until('agent-ssh', 'authlog', want, 'sshd events from auth.log');
    expect(viaFile.find((r) => fromClient(r) && r.headers['ssh.event'] === 'invalid_user')!.headers['ssh.user']).toBe(`nosuch${RUN_ID}`);
    console.log(`sshd: ${viaJournal.filter(fromClient).length} events from ${clientIp} via journald, ${viaFile.filter(fromClient).length} via auth.log`);
    await kill9(agent);
  });
});
