// The journald source against a real systemd-journald and a real sshd, as one suite run at two
// sizes: short in `npm test` (test/agent-journald-e2e.test.ts), full in the long suite
// (test/long/agent-journald-e2e.test.ts). Every test has a journald of its own (a namespace:
// helpers/journald.ts), so one test's rotations and vacuums never reach another's journal.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess, execFile } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, type NodeHandle, startNode } from './launcher.js';
import { slow } from './slow.js';
import { waitUntil } from './bridge.js';
import { type AgentProc, readTopic, startAgent, type TopicRecord } from './agent.js';
import { aptEnsure, awaitRecords, followingAgent, journalctlPids, journalEntries, journalWriter, kill9, type PrivateJournal, recordsOfTask, startPrivateJournal, writeNumbered } from './journald.js';

const run = promisify(execFile);

export interface JournaldE2eSizes {
  /** entries of the first-start test, written before and after the agent follows */
  basic: number;
  /** entries of the kill/rotate test, and their rate */
  kill: number;
  killPerSec: number;
}

export function journaldE2eSuite(sizes: JournaldE2eSizes): void {
  const RUN_ID = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
  let node: NodeHandle;
  const agents: AgentProc[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    await aptEnsure({ systemd: '/lib/systemd/systemd-journald', 'openssh-server': '/usr/sbin/sshd', sshpass: '/usr/bin/sshpass' });
    node = await startNode();
  }, slow(320_000));

  afterAll(async () => {
    for (const a of agents) a.proc.kill('SIGKILL');
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await node?.stop();
  });

  /** a journal of the test's own, stopped and removed after the file */
  async function journal(name: string): Promise<PrivateJournal> {
    const j = await startPrivateJournal(`chj-${name}-${RUN_ID}`);
    cleanups.push(() => j.stop());
    return j;
  }

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
  const until = (topic: string, task: string, done: (recs: TopicRecord[]) => boolean, what: string) => awaitRecords(node.url, topic, task, done, what);
  /** the numbers of `prefix N` values, in seq order */
  const numbers = (recs: TopicRecord[], prefix: string) => recs.filter((r) => r.value.startsWith(`${prefix} `)).map((r) => Number(r.value.slice(prefix.length + 1)));
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);

  describe('agent: journald to Chicago (a real systemd-journald)', () => {
    // PID 1 is not systemd here: a journalctl started before any journal file exists never sees the
    // files a journald started later writes, so the source says so and waits for journald's socket
    it('an agent started before systemd-journald warns, waits, and ships once journald runs', async () => {
      const ID = `chj-late-${RUN_ID}`;
      const topic = `agent-journal-late-${RUN_ID}`;
      const { config } = await setup('late', ['journald:', `  - { task: jl, topic: ${topic}, identifiers: [${ID}], from: head, namespace: ${ID} }`]);
      const agent = startAgent(config);
      agents.push(agent);
      const warning = await agent.stdout.waitFor(/systemd-journald is not running/, slow(10_000));
      expect(JSON.parse(warning)).toMatchObject({ level: 40, task: 'jl', socket: `/run/systemd/journal.${ID}/socket` });
      const j = await journal('late');
      expect(j.namespace).toBe(ID);
      await agent.stdout.waitFor(/"msg":"journald: following"/, slow(10_000));
      const w = journalWriter(j, ID);
      await w.write('after journald started\n');
      await w.end();
      const recs = await until(topic, 'jl', (r) => r.length >= 1, 'the entry written once journald ran');
      expect(recs.map((r) => r.value)).toEqual(['after journald started']);
    });

    it('first start at the tail; entries written before journalctl runs are not skipped; headers; bytes kept; a long MESSAGE in cut pieces', async () => {
      const j = await journal('basic');
      const ID = `chj-basic-${RUN_ID}`;
      const topic = `agent-journal-basic-${RUN_ID}`;
      const before = journalWriter(j, ID);
      await before.write('written before the first start\n');
      await before.end();
      // the journal's end is another program's entry
      const other = journalWriter(j, `${ID}-other`);
      await other.write('not shipped\n');
      await other.end();
      await waitUntil('the early entries in the journal', async () => (await journalEntries(j, `${ID}-other`)).length === 1, 5000, 50);
      const { config } = await setup('basic', ['journald:', `  - { task: j1, topic: ${topic}, identifiers: [${ID}], maxMessageBytes: 1024, namespace: ${j.namespace} }`]);
      // the first start saves the journal's end (another identifier's entry) and the agent dies before
      // anything of its own is written: the restart follows from that saved cursor with entries waiting
      await kill9(await running(config));
      const half = Math.floor(sizes.basic / 2);
      const t0 = Date.now();
      await writeNumbered(j, ID, 'm', half, 5000);
      const w = journalWriter(j, ID, 'info');
      await w.write(Buffer.from('bin\x01\xff end\n', 'latin1'));
      await w.write(`x${'é'.repeat(1000)}${'y'.repeat(999)}\n`);
      await w.end();
      await waitUntil('the entries in the journal', async () => (await journalEntries(j, ID)).length === half + 3, 5000, 50);
      const agent = await running(config);
      await writeNumbered(j, ID, 'n', sizes.basic - half, 1000);
      const total = sizes.basic + 4; // + the binary one and the long one's 3 pieces
      // the last entry written arrives last: then what came before it is checked whole
      const last = `n ${sizes.basic - half - 1}`;
      const recs = await until(topic, 'j1', (r) => r.some((x) => x.value === last), last);
      await new Promise((r) => setTimeout(r, 300));
      const again = recordsOfTask(await readTopic(node.url, topic), 'j1');
      expect(numbers(recs, 'm'), 'written while the agent was down, from the saved journal end').toEqual(range(half));
      expect(numbers(recs, 'n'), 'written while it follows').toEqual(range(sizes.basic - half));
      expect(again.length, 'no record twice').toBe(total);
      expect(recs.map((r) => r.headers.seq)).toEqual(recs.map((_, i) => String(i)));
      const r0 = recs[0];
      expect(r0.headers).toMatchObject({ host: 'testhost', task: 'j1', source: ID, level: 'warn', 'journal.priority': 'warning', 'journal.identifier': ID, 'journal.transport': 'stdout' });
      // _PID as journald stored it (a busy journald may store an entry of a writer that has exited without it)
      const stored = JSON.parse((await j.journalctl(['-o', 'json', `--identifier=${ID}`, '--output-fields=_PID,MESSAGE'])).split('\n').find((l) => l.includes('"m 0"'))!) as { _PID?: string };
      expect(r0.value).toBe('m 0');
      expect(r0.headers['journal.pid']).toBe(stored._PID);
      if (stored._PID === undefined) console.log('journald stored m 0 without _PID');
      else expect(Number(stored._PID)).toBeGreaterThan(0);
      expect(Math.abs(Date.parse(r0.headers.time) - t0)).toBeLessThan(60_000);
      const bin = recs[half] as TopicRecord & { valueEncoding?: string };
      expect(bin.valueEncoding).toBe('base64');
      expect(Buffer.from(bin.value, 'base64')).toEqual(Buffer.from('bin\x01\xff end', 'latin1'));
      // 3000 bytes in pieces of 1024 bytes, cut as a file's long line is (the first piece ends inside an é)
      const pieces = recs.slice(half + 1, half + 4) as Array<TopicRecord & { valueEncoding?: string }>;
      expect(pieces.map((r) => r.headers.cut)).toEqual(['1+', '2+', '3/3']);
      const bytes = Buffer.concat(pieces.map((r) => (r.valueEncoding === 'base64' ? Buffer.from(r.value, 'base64') : Buffer.from(r.value))));
      expect(bytes.toString()).toBe(`x${'é'.repeat(1000)}${'y'.repeat(999)}`);
      expect(pieces[0].valueEncoding).toBe('base64');
      expect(pieces[2].value).toBe('y'.repeat(952));
      console.log(`journald: ${sizes.basic} entries shipped (half written before journalctl ran); last record in Chicago ${Date.now() - t0} ms after the first was written`);
      await kill9(agent);
    });

    it('kill -9 of the agent, a killed journalctl and journalctl --rotate mid-stream: 0 missing, 0 duplicated, seq gap-free', async () => {
      const j = await journal('kill');
      const ID = `chj-kill-${RUN_ID}`;
      const topic = `agent-journal-kill-${RUN_ID}`;
      const { config } = await setup('kill', ['journald:', `  - { task: j2, topic: ${topic}, identifiers: [${ID}], namespace: ${j.namespace} }`]);
      let agent = await running(config);
      const N = sizes.kill;
      const events: string[] = [];
      let orphan: number[] = [];
      let journalctlKilled: number[] = [];
      // at these fractions of the stream (each once, at the first batch past it)
      const steps: Array<[number, string, () => Promise<void>]> = [
        [0.25, 'rotate', async () => { await j.journalctl(['--rotate']); }],
        [0.4, 'kill9', async () => {
          orphan = await journalctlPids(ID);
          await kill9(agent);
          agent = await running(config);
        }],
        [0.6, 'journalctl-killed', async () => {
          journalctlKilled = await journalctlPids(ID);
          for (const pid of journalctlKilled) process.kill(pid, 'SIGKILL');
        }],
        [0.75, 'rotate', async () => { await j.journalctl(['--rotate']); }],
      ];
      await writeNumbered(j, ID, 'k', N, sizes.killPerSec, async (i) => {
        while (steps.length > 0 && i >= steps[0][0] * N) {
          const [, what, act] = steps.shift()!;
          await act();
          events.push(`${what}@${i}`);
        }
      });
      expect(events).toHaveLength(4);
      expect(journalctlKilled, 'one journalctl follows').toHaveLength(1);
      const recs = await until(topic, 'j2', (r) => r.some((x) => x.value === `k ${N - 1}`), `k ${N - 1}`);
      await new Promise((r) => setTimeout(r, 300));
      const all = recordsOfTask(await readTopic(node.url, topic), 'j2');
      expect(numbers(all, 'k'), 'once each, in order').toEqual(range(N));
      expect(recs.map((r) => r.headers.seq)).toEqual(recs.map((_, i) => String(i)));
      expect((await journalEntries(j, ID)).length, 'the journal holds what was written').toBe(N);
      // journalctl restarted after its kill, with a notice; the killed agent's journalctl ended with it
      await waitUntil('the restart notice', () => /"kind":"source_restart"/.test(agent.stdout.text()), 5000, 50);
      expect(orphan).toHaveLength(1);
      await waitUntil('the killed agent\'s journalctl to end', async () => !(await journalctlPids(ID)).includes(orphan[0]), 5000, 50);
      console.log(`journald: ${N} entries at ${sizes.killPerSec}/s with ${events.join(', ')}: 0 missing, 0 duplicated`);
      await kill9(agent);
    });

    it('vacuumed: the saved entry alone gone loses nothing (no gap); unread entries gone make a gap record and a notice', async () => {
      const j = await journal('gap');
      const ID = `chj-gap-${RUN_ID}`;
      const topic = `agent-journal-gap-${RUN_ID}`;
      const { config } = await setup('gap', ['journald:', `  - { task: j3, topic: ${topic}, identifiers: [${ID}], namespace: ${j.namespace} }`]);
      const count = async () => (await journalEntries(j, ID)).length;
      // rotated only once journald has stored them (a busy journald lags behind systemd-cat's exit):
      // an entry stored after the rotation is in the active file, which is never vacuumed
      const vacuum = async (before: number, left: number) => {
        await waitUntil(`${before} entries in the journal`, async () => (await count()) === before, 5000, 50);
        await j.journalctl(['--rotate']);
        await j.journalctl(['--vacuum-size=1']);
        await waitUntil(`${left} entries left in the journal`, async () => (await count()) === left, 5000, 50);
      };
      let agent = await running(config);
      await writeNumbered(j, ID, 'kept', 5, 1000);
      await until(topic, 'j3', (r) => r.length >= 5, '5 records');
      await kill9(agent);
      // the saved cursor's entry is vacuumed, and nothing after it: the next entry is the first shipped
      await j.journalctl(['--rotate']);
      await writeNumbered(j, ID, 'next', 3, 1000);
      await j.journalctl(['--vacuum-size=1']);
      await waitUntil('the kept entries vacuumed', async () => (await count()) === 3, 5000, 50);
      agent = await running(config);
      await until(topic, 'j3', (r) => r.some((x) => x.value === 'next 2'), 'next 2');
      await kill9(agent);
      // entries never read are vacuumed: a gap record, then what is left
      await writeNumbered(j, ID, 'lost', 5, 1000);
      await vacuum(8, 0);
      await writeNumbered(j, ID, 'after', 3, 1000);
      agent = await running(config);
      const recs = await until(topic, 'j3', (r) => r.some((x) => x.value === 'after 2'), 'after 2');
      expect(recs.map((r) => r.value).filter((v) => !v.startsWith('GAP')), 'no entry lost beside the vacuumed ones').toEqual(['kept 0', 'kept 1', 'kept 2', 'kept 3', 'kept 4', 'next 0', 'next 1', 'next 2', 'after 0', 'after 1', 'after 2']);
      expect(recs.findIndex((r) => r.headers.gap !== undefined), 'the gap record, after next 2').toBe(8);
      expect(recs[8].headers).toMatchObject({ gap: 'journald', level: 'warn', source: 'journald' });
      expect(Number(recs[8].headers['gap.entries'])).toBeGreaterThanOrEqual(5);
      expect(recs.map((r) => r.headers.seq)).toEqual(recs.map((_, i) => String(i)));
      expect(agent.stdout.text()).toMatch(/"notice":\{"kind":"gap","task":"j3"/);
      await new Promise((r) => setTimeout(r, 300));
      expect(recordsOfTask(await readTopic(node.url, topic), 'j3'), 'no record twice').toHaveLength(12);
      await kill9(agent);
    });

    it('sshd: "Server listening" and failed logins from another network namespace arrive with ssh.* fields, from journald and from auth.log', async () => {
      const j = await journal('sshd');
      const topic = `agent-ssh-${RUN_ID}`;
      const { dir, config } = await setup('sshd', [
        'sources:',
        `  - { task: authlog, topic: ${topic}, paths: [./logs/auth.log], parse: sshd }`,
        'journald:',
        `  - { task: sshd, topic: ${topic}, identifiers: [sshd], namespace: ${j.namespace} }`,
      ]);
      // the client in a network namespace of its own (its address is the source IP sshd sees)
      const ns = `chj${RUN_ID}`.slice(0, 14);
      const octet = process.pid % 250;
      const serverIp = `198.19.${octet}.1`;
      const clientIp = `198.19.${octet}.2`;
      await run('ip', ['netns', 'add', ns]);
      cleanups.push(() => run('ip', ['netns', 'del', ns]));
      await run('ip', ['link', 'add', `${ns}h`, 'type', 'veth', 'peer', 'name', `${ns}n`]);
      cleanups.push(() => run('ip', ['link', 'del', `${ns}h`]));
      await run('ip', ['link', 'set', `${ns}n`, 'netns', ns]);
      await run('ip', ['addr', 'add', `${serverIp}/30`, 'dev', `${ns}h`]);
      await run('ip', ['link', 'set', `${ns}h`, 'up']);
      await run('ip', ['-n', ns, 'addr', 'add', `${clientIp}/30`, 'dev', `${ns}n`]);
      await run('ip', ['-n', ns, 'link', 'set', `${ns}n`, 'up']);
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')]);
      await mkdir('/run/sshd', { recursive: true });
      const port = await freePort(serverIp);
      const agent = await running(config);
      const [cmd, ...argv] = j.wrap(['/usr/sbin/sshd', '-D', '-f', '/dev/null',
        '-o', `ListenAddress=${serverIp}:${port}`, '-o', `HostKey=${path.join(dir, 'host_key')}`, '-o', `PidFile=${path.join(dir, 'sshd.pid')}`,
        '-o', 'UsePAM=no', '-o', 'PasswordAuthentication=yes', '-o', 'KbdInteractiveAuthentication=no', '-o', 'PermitRootLogin=yes',
        '-o', 'SyslogFacility=AUTH', '-o', 'LogLevel=INFO', '-o', 'MaxAuthTries=3']);
      const sshd: ChildProcess = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
      let sshdErr = '';
      sshd.stderr!.setEncoding('utf8').on('data', (s: string) => { sshdErr += s; });
      cleanups.push(async () => { sshd.kill('SIGTERM'); });
      await waitUntil(`sshd's first entry shipped (${sshdErr})`, async () =>
        (await readTopic(node.url, topic).catch(() => [])).some((r) => r.value === `Server listening on ${serverIp} port ${port}.`), 10_000, 100);
      const attempt = (user: string) => run('ip', ['netns', 'exec', ns, 'sshpass', '-p', 'wrong', 'ssh',
        '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password',
        '-o', 'ConnectTimeout=10', '-p', String(port), `${user}@${serverIp}`, 'true'], { timeout: slow(20_000) }).catch((e: { code?: number }) => e.code);
      expect(await attempt(`nosuch${RUN_ID}`)).toBe(5); // sshpass: wrong password
      expect(await attempt('root')).toBe(5);
      const fromClient = (r: TopicRecord) => r.headers['ssh.ip'] === clientIp;
      const want = (recs: TopicRecord[]) => {
        const evs = recs.filter(fromClient).map((r) => `${r.headers['ssh.event']}:${r.headers['ssh.user']}`);
        return evs.includes(`invalid_user:nosuch${RUN_ID}`) && evs.includes(`failed:nosuch${RUN_ID}`) && evs.includes('failed:root') && evs.filter((e) => e.startsWith('closed:')).length >= 2;
      };
      const viaJournal = await until(topic, 'sshd', want, 'sshd events from journald');
      const failed = viaJournal.find((r) => fromClient(r) && r.headers['ssh.event'] === 'failed' && r.headers['ssh.user'] === `nosuch${RUN_ID}`)!;
      expect(failed.headers).toMatchObject({ 'ssh.method': 'password', 'ssh.invalid_user': 'true', 'journal.identifier': 'sshd', source: 'sshd' });
      expect(Number(failed.headers['ssh.port'])).toBeGreaterThan(0);
      // the same lines as rsyslog writes auth.log (RFC 3339 time, host, sshd[pid]: message)
      const stdout = await j.journalctl(['--identifier=sshd', '-o', 'short-iso-precise']);
      await appendFile(path.join(dir, 'logs', 'auth.log'), stdout.split('\n').filter((l) => / sshd\[\d+\]: /.test(l)).map((l) => `${l}\n`).join(''));
      const viaFile = await until(topic, 'authlog', want, 'sshd events from auth.log');
      expect(viaFile.find((r) => fromClient(r) && r.headers['ssh.event'] === 'invalid_user')!.headers['ssh.user']).toBe(`nosuch${RUN_ID}`);
      console.log(`sshd: ${viaJournal.filter(fromClient).length} events from ${clientIp} via journald, ${viaFile.filter(fromClient).length} via auth.log`);
      await kill9(agent);
    });
  });
}
