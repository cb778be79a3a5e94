// The agent's journald source against a real systemd-journald (standalone: PID 1 is not systemd
// here) and a real sshd: entries written by systemd-cat arrive once each, in order, with headers,
// through kill -9 of the agent, a killed journalctl and `journalctl --rotate`; a vacuumed cursor
// becomes a gap record; sshd's failed logins from a network namespace arrive as ssh.* fields.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type NodeHandle, startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';
import { waitUntil } from './helpers/bridge.js';
import { type AgentProc, readTopic, type TopicRecord } from './helpers/agent.js';
import { aptEnsure, awaitRecords, ensureJournald, followingAgent, journalctlPids, journalEntries, journalWriter, kill9, recordsOfTask, writeNumbered } from './helpers/journald.js';
import { backoffMs, entryEvent, JournaldSource, followArgs, gapAfter, type Line, LineSplitter, partialJsonValue, salvageEntry, type JournaldConfig } from '../src/agent/journald.js';
import { parseSshd, sshHeadersOfLine } from '../src/agent/sshd.js';
import { ConfigError, resolveAgentConfig } from '../src/agent/config.js';
import { Spool } from '../src/agent/spool.js';
import { recordEntries } from '../src/agent/records.js';
import type { Notice } from '../src/agent/agent.js';
import { createLogger } from '../src/runtime/log.js';

const run = promisify(execFile);
const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

describe('sshd messages (OpenSSH 9.2 as logged on this machine)', () => {
  it('parses accepted, failed, invalid user, closed, disconnected and max-attempts lines, IPv4 and IPv6', () => {
    expect(parseSshd('Accepted publickey for root from 127.0.0.1 port 54522 ssh2: ED25519 SHA256:FhbMQvL32mQEtMWQYPAnuu25jKD3U4JJrV/G+o542eU')).toEqual({
      event: 'accepted', method: 'publickey', user: 'root', ip: '127.0.0.1', port: 54522, key: 'ED25519 SHA256:FhbMQvL32mQEtMWQYPAnuu25jKD3U4JJrV/G+o542eU',
    });
    expect(parseSshd('Failed password for invalid user nosuchuser from 127.0.0.1 port 59896 ssh2')).toEqual({
      event: 'failed', method: 'password', user: 'nosuchuser', ip: '127.0.0.1', port: 59896, invalid: true,
    });
    expect(parseSshd('Failed password for root from ::1 port 42212 ssh2')).toEqual({ event: 'failed', method: 'password', user: 'root', ip: '::1', port: 42212 });
    expect(parseSshd('Accepted keyboard-interactive/pam for alice from 2001:db8::7 port 50000 ssh2')).toMatchObject({ event: 'accepted', method: 'keyboard-interactive/pam', ip: '2001:db8::7' });
    expect(parseSshd('Invalid user nosuchuser from 127.0.0.1 port 59896')).toEqual({ event: 'invalid_user', user: 'nosuchuser', ip: '127.0.0.1', port: 59896, invalid: true });
    expect(parseSshd('Invalid user  from 198.18.0.9 port 1')).toMatchObject({ event: 'invalid_user', user: '', ip: '198.18.0.9' });
    expect(parseSshd('Connection closed by invalid user nosuchuser 127.0.0.1 port 59896 [preauth]')).toEqual({ event: 'closed', user: 'nosuchuser', invalid: true, ip: '127.0.0.1', port: 59896 });
    expect(parseSshd('Connection closed by authenticating user root 127.0.0.1 port 59898 [preauth]')).toEqual({ event: 'closed', user: 'root', ip: '127.0.0.1', port: 59898 });
    expect(parseSshd('Connection closed by 203.0.113.5 port 4242 [preauth]')).toEqual({ event: 'closed', ip: '203.0.113.5', port: 4242 });
    expect(parseSshd('Disconnected from user root ::1 port 42204')).toEqual({ event: 'disconnected', user: 'root', ip: '::1', port: 42204 });
    expect(parseSshd('Received disconnect from 127.0.0.1 port 54522:11: disconnected by user')).toEqual({ event: 'received_disconnect', ip: '127.0.0.1', port: 54522 });
    expect(parseSshd('error: maximum authentication attempts exceeded for invalid user bob from 127.0.0.1 port 48742 ssh2 [preauth]')).toEqual({
      event: 'max_attempts', user: 'bob', ip: '127.0.0.1', port: 48742, invalid: true,
    });
    expect(parseSshd('Disconnecting authenticating user root 127.0.0.1 port 48732: Too many authentication failures [preauth]')).toEqual({
      event: 'too_many_failures', user: 'root', ip: '127.0.0.1', port: 48732,
    });
    expect(parseSshd('Unable to negotiate with 127.0.0.1 port 48746: no matching key exchange method found. Their offer: diffie-hellman-group1-sha1 [preauth]')).toMatchObject({ event: 'negotiation_failed', port: 48746 });
    expect(parseSshd('banner exchange: Connection from 127.0.0.1 port 48754: invalid format')).toMatchObject({ event: 'banner_error', ip: '127.0.0.1' });
    // a user name cannot move the address: the last "from IP port N" is sshd's
    expect(parseSshd('Invalid user x from 6.6.6.6 port 1 from 10.0.0.1 port 2')).toMatchObject({ user: 'x from 6.6.6.6 port 1', ip: '10.0.0.1', port: 2 });
    expect(parseSshd('Connection closed by UNKNOWN port 65535 [preauth]')).toEqual({ event: 'closed', port: 65535 });
    expect(parseSshd('Server listening on 0.0.0.0 port 22.')).toBeUndefined();
    expect(parseSshd(`Invalid user ${'a'.repeat(5000)} from 1.2.3.4 port 1`)).toBeUndefined();
  });

  it('reads auth.log lines (RFC 3164 and RFC 3339 times) and ignores other programs', () => {
    expect(sshHeadersOfLine('Dec  6 09:20:01 vm sshd[1234]: Failed password for root from 198.18.0.2 port 40000 ssh2')).toEqual({
      'ssh.event': 'failed', 'ssh.user': 'root', 'ssh.ip': '198.18.0.2', 'ssh.port': '40000', 'ssh.method': 'password',
    });
    expect(sshHeadersOfLine('2026-12-06T09:20:01.123456+00:00 vm sshd[1234]: Invalid user bob from 2001:db8::1 port 5')).toMatchObject({ 'ssh.event': 'invalid_user', 'ssh.ip': '2001:db8::1', 'ssh.invalid_user': 'true' });
    expect(sshHeadersOfLine('Dec  6 09:20:01 vm sudo[99]: Failed password for root from 1.2.3.4 port 5 ssh2')).toBeUndefined();
    expect(sshHeadersOfLine('Dec  6 09:20:01 vm sshd[1234]: Server listening on :: port 22.')).toBeUndefined();
  });
});

const cfg = (over: Partial<JournaldConfig> = {}): JournaldConfig => ({ task: 't', topic: 'x', units: [], identifiers: [], matches: [], from: 'tail', maxMessageBytes: 1024, ...over });

describe('journald decisions', () => {
  it('journalctl arguments for each kind of position', () => {
    expect(followArgs(cfg({ identifiers: ['a'], units: ['u.service'], matches: ['_PID=1'] }), 's=1;i=5')).toEqual(expect.arrayContaining(['--follow', '--output=json', '--all', '--after-cursor=s=1;i=5', '--unit=u.service', '--identifier=a', '_PID=1']));
    expect(followArgs(cfg(), '=s=1;i=5')).toContain('--cursor=s=1;i=5');
    expect(followArgs(cfg(), undefined)).toContain('--no-tail');
  });

  it('a gap after a saved cursor: none, counted, or unknown', () => {
    const c = (s: string, i: number) => `s=${s};i=${i.toString(16)};b=b;m=1;t=1;x=1`;
    expect(gapAfter(c('aa', 10), c('aa', 10))).toBe(0); // the entry is still there
    expect(gapAfter(c('aa', 10), c('aa', 11))).toBe(0); // only the entry itself went
    expect(gapAfter(c('aa', 10), c('aa', 20))).toBe(9);
    expect(gapAfter(`=${c('aa', 10)}`, c('aa', 10))).toBe(0);
    expect(gapAfter(`=${c('aa', 10)}`, c('aa', 11))).toBe(1);
    expect(gapAfter(c('aa', 10), c('bb', 1))).toBe('unknown');
    expect(gapAfter(c('aa', 10), undefined)).toBe('unknown');
    expect(backoffMs(0, { minMs: 100, maxMs: 5000 })).toBe(100);
    expect(backoffMs(3, { minMs: 100, maxMs: 5000 })).toBe(800);
    expect(backoffMs(50, { minMs: 100, maxMs: 5000 })).toBe(5000);
  });

  it('an entry as a record: MESSAGE text, bytes or absent; level and headers; sshd fields', () => {
    const base = { __CURSOR: 's=a;i=1', __REALTIME_TIMESTAMP: '1796548602450152', PRIORITY: '3', SYSLOG_IDENTIFIER: 'app', _PID: '42', _HOSTNAME: 'vm', _TRANSPORT: 'stdout' };
    const text = entryEvent({ ...base, MESSAGE: 'hello' }, 1024, 0);
    expect(text).toEqual({ cursor: 's=a;i=1', event: { value: 'hello', source: 'app', timeMs: 1796548602450, level: 'error', headers: { 'journal.identifier': 'app', 'journal.pid': '42', 'journal.hostname': 'vm', 'journal.transport': 'stdout', 'journal.priority': 'err' } } });
    expect(entryEvent({ ...base, MESSAGE: [98, 1, 255] }, 1024, 0).event.value).toEqual(Buffer.from([98, 1, 255]));
    expect(entryEvent({ ...base, MESSAGE: null }, 1024, 0).event.value).toBe('');
    expect(entryEvent({ ...base, MESSAGE: ['a', 'b'] }, 1024, 0).event.value).toEqual(Buffer.from('a\nb'));
    expect(entryEvent({ ...base, _SYSTEMD_UNIT: 'nginx.service', MESSAGE: 'x' }, 1024, 0).event.source).toBe('nginx.service');
    const cut = entryEvent({ ...base, MESSAGE: 'é'.repeat(1000) }, 1025, 0).event;
    expect(cut.value).toBe('é'.repeat(512));
    expect(cut.headers!.cut).toBe('2000');
    const ssh = entryEvent({ ...base, SYSLOG_IDENTIFIER: 'sshd', MESSAGE: 'Failed password for root from 198.18.0.2 port 4 ssh2' }, 1024, 0).event;
    expect(ssh.headers).toMatchObject({ 'ssh.event': 'failed', 'ssh.ip': '198.18.0.2', 'ssh.user': 'root', 'ssh.port': '4', 'ssh.method': 'password' });
  });

  it('an oversized line keeps its head and tail: the cursor, the time and the start of MESSAGE', () => {
    const obj = { __CURSOR: 's=a;i=9', PRIORITY: '6', MESSAGE: `${'q"\\'.repeat(30_000)}`, __REALTIME_TIMESTAMP: '1796548602450152', SYSLOG_IDENTIFIER: 'big' };
    const line = Buffer.from(JSON.stringify(obj));
    const sp = new LineSplitter(10_000, 2048);
    const out: Line[] = [];
    sp.push(line.subarray(0, 5000), out);
    sp.push(Buffer.concat([line.subarray(5000), Buffer.from('\n{"MESSAGE":"next","__CURSOR":"c2"}\n')]), out);
    expect(out).toHaveLength(2);
    const big = out[0] as { head: Buffer; tail: Buffer; totalBytes: number };
    expect(big.totalBytes).toBe(line.length);
    const p = salvageEntry(big.head, big.tail, big.totalBytes, 4096, 0);
    expect(p.cursor).toBe('s=a;i=9');
    expect(p.event.source).toBe('big');
    expect(p.event.timeMs).toBe(1796548602450);
    expect(String(p.event.value).startsWith('q"\\q"\\')).toBe(true);
    expect(p.event.headers!.cut).toBe(String(line.length));
    expect((out[1] as { line: Buffer }).line.toString()).toBe('{"MESSAGE":"next","__CURSOR":"c2"}');
    expect(partialJsonValue('"ab\\u00e9c", "X":1')).toBe('abéc');
    expect(partialJsonValue('"ab\\u00')).toBe('ab');
    expect(partialJsonValue('[1,2,3,4')).toEqual(Buffer.from([1, 2, 3]));
  });
});

describe('journald config', () => {
  const resolve = (raw: unknown) => resolveAgentConfig(raw, '/tmp', {});
  it('defaults, unknown keys rejected, one journald source per task, a task has one topic', () => {
    const c = resolve({ journald: [{ task: 'j', topic: 't', identifiers: ['sshd'] }], maxLineBytes: 4096 });
    expect(c.journald).toEqual([{ task: 'j', topic: 't', units: [], identifiers: ['sshd'], matches: [], from: 'tail', maxMessageBytes: 4096 }]);
    expect(c.sources).toEqual([]);
    expect(() => resolve({ journald: [{ task: 'j', topic: 't', unit: ['x'] }] })).toThrow(/additional properties \(unit\)/);
    expect(() => resolve({ journald: [{ task: 'j', topic: 't', matches: ['lowercase=x'] }] })).toThrow(ConfigError);
    expect(() => resolve({ journald: [{ task: 'j', topic: 't' }, { task: 'j', topic: 't', units: ['a'] }] })).toThrow(/one journald source per task/);
    expect(() => resolve({ sources: [{ task: 'j', topic: 'a', paths: ['/x'] }], journald: [{ task: 'j', topic: 'b' }] })).toThrow(/a task has one topic/);
    expect(() => resolve({})).toThrow(/needs sources, journald or scripts/);
    expect(resolve({ sources: [{ task: 'a', topic: 'a', paths: ['/var/log/auth.log'], parse: 'sshd' }] }).sources[0].parse).toBe('sshd');
    expect(() => resolve({ sources: [{ task: 'a', topic: 'a', paths: ['/x'], parse: 'nginx' }] })).toThrow(ConfigError);
  });
});

describe('journald source without journalctl', () => {
  it('a journalctl that cannot run is retried with backoff and notices; the agent does not stop', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-journald-nojctl-'));
    const agentCfg = resolveAgentConfig({ journald: [{ task: 'j', topic: 't' }], spool: { dir } , retry: { minMs: 10, maxMs: 40 } }, dir, {});
    const { spool } = Spool.open(agentCfg.spool);
    const sink = { task: 'j', topic: 't', write: (evs: Parameters<typeof recordEntries>[4], extra: Parameters<Spool['append']>[0] = []) => spool.append([...recordEntries(spool, 'h', 'j', 't', evs), ...extra]) };
    const notices: Notice[] = [];
    const src = new JournaldSource(agentCfg.journald[0], agentCfg, sink, spool, (n) => notices.push(n), createLogger('silent'), '/nonexistent/journalctl');
    const started = Date.now();
    await src.start();
    await waitUntil('3 restart notices', () => notices.length >= 3, 5000, 10);
    await src.stop();
    spool.close();
    expect(notices.every((n) => n.kind === 'source_restart' && n.task === 'j')).toBe(true);
    expect(notices[0].detail).toMatch(/journalctl exited/);
    // 20, 40, 40 ms apart at least (backoff from retry.minMs, capped at retry.maxMs)
    expect(Date.now() - started).toBeGreaterThanOrEqual(60);
    expect(src.stats.restarts).toBeGreaterThanOrEqual(3);
  });
});

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
