// The agent's journald source and sshd parser without a live journal: sshd 9.2 lines as logged on
// this machine, journalctl arguments, resuming from a saved cursor, gap detection, entries as
// records, cut pieces, config, and a journalctl that cannot run. The runs against a real
// systemd-journald and sshd are in test/agent-journald-e2e.test.ts (and at full size in test/long).
import { describe, expect, it } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { waitUntil } from './helpers/bridge.js';
import { backoffMs, entryEvent, JournaldSource, followArgs, journaldSocket, gapAfter, type Line, LineSplitter, partialJsonValue, ResumeFilter, salvageEntry, type JournaldConfig } from '../src/agent/journald.js';
import { parseSshd, sshHeadersOfLine } from '../src/agent/sshd.js';
import { ConfigError, resolveAgentConfig } from '../src/agent/config.js';
import { Spool } from '../src/agent/spool.js';
import { cutHeader, cutPieces, recordEntries } from '../src/agent/records.js';
import type { Notice } from '../src/agent/agent.js';
import { createLogger } from '../src/runtime/log.js';

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
  it('journalctl arguments for each kind of position and journal; never --after-cursor', () => {
    const args = followArgs(cfg({ identifiers: ['a'], units: ['u.service'], matches: ['_PID=1'] }), 's=1;i=5');
    expect(args).toEqual(expect.arrayContaining(['--follow', '--output=json', '--all', '--cursor=s=1;i=5', '--unit=u.service', '--identifier=a', '_PID=1']));
    expect(args.some((a) => a.startsWith('--after-cursor'))).toBe(false);
    expect(followArgs(cfg(), '=s=1;i=5')).toContain('--cursor=s=1;i=5');
    expect(followArgs(cfg(), undefined)).toContain('--no-tail');
    expect(followArgs(cfg({ namespace: 'ns1' }), undefined)[0]).toBe('--namespace=ns1');
    expect(followArgs(cfg({ directory: '/srv/journal' }), undefined)[0]).toBe('--directory=/srv/journal');
  });

  // journalctl 252's --after-cursor skips one entry after the seek, assuming it is the cursor's own:
  // when that entry does not match the filters (the journal's end saved at a first start) or was
  // vacuumed, the first entry after it was lost. The source follows from --cursor and drops the saved
  // entry itself here.
  it('resuming from a saved position ships what comes after it and only that', () => {
    const c = (s: string, i: number) => `s=${s};i=${i.toString(16)};b=b;m=1;t=1;x=1`;
    const ship = (position: string | undefined, cursors: Array<string | undefined>) => {
      const f = new ResumeFilter(position);
      return cursors.map((x) => f.ship(x));
    };
    // after a plain cursor: journalctl shows the saved entry first when it matches and is still there
    expect(ship(c('aa', 10), [c('aa', 10), c('aa', 11), c('aa', 12)])).toEqual([false, true, true]);
    // the saved entry is another program's (the journal's end) or was vacuumed: nothing to drop
    expect(ship(c('aa', 10), [c('aa', 11), c('aa', 12)])).toEqual([true, true]);
    expect(ship(c('aa', 10), [c('aa', 40)])).toEqual([true]);
    // at a cursor (after a gap): the entry itself is shipped
    expect(ship(`=${c('aa', 10)}`, [c('aa', 10), c('aa', 11)])).toEqual([true, true]);
    // another sequence interleaves and is shipped; the position's own is still checked until past it
    expect(ship(c('aa', 10), [c('bb', 3), c('aa', 10), c('aa', 11)])).toEqual([true, false, true]);
    // once past, later entries are not compared (journalctl shows a sequence in order)
    expect(ship(c('aa', 10), [c('aa', 11), c('aa', 5)])).toEqual([true, true]);
    // no position, no cursor or an unreadable one: shipped
    expect(ship(undefined, [c('aa', 1)])).toEqual([true]);
    expect(ship(c('aa', 10), [undefined, 'garbage', c('aa', 10)])).toEqual([true, true, false]);
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
    expect(text).toEqual({ cursor: 's=a;i=1', events: [{ value: 'hello', source: 'app', timeMs: 1796548602450, level: 'error', headers: { 'journal.identifier': 'app', 'journal.pid': '42', 'journal.hostname': 'vm', 'journal.transport': 'stdout', 'journal.priority': 'err' } }] });
    expect(entryEvent({ ...base, MESSAGE: [98, 1, 255] }, 1024, 0).events[0].value).toEqual(Buffer.from([98, 1, 255]));
    expect(entryEvent({ ...base, MESSAGE: null }, 1024, 0).events[0].value).toBe('');
    expect(entryEvent({ ...base, MESSAGE: ['a', 'b'] }, 1024, 0).events[0].value).toEqual(Buffer.from('a\nb'));
    expect(entryEvent({ ...base, _SYSTEMD_UNIT: 'nginx.service', MESSAGE: 'x' }, 1024, 0).events[0].source).toBe('nginx.service');
    // over the cap: pieces of exactly maxMessageBytes bytes, marked as a file's long line is
    const cut = entryEvent({ ...base, MESSAGE: 'é'.repeat(1000) }, 1025, 0);
    expect(cut.cursor).toBe('s=a;i=1');
    expect(cut.events.map((e) => e.headers!.cut)).toEqual(['1+', '2/2']);
    expect(Buffer.concat(cut.events.map((e) => e.value as Buffer))).toEqual(Buffer.from('é'.repeat(1000)));
    expect((cut.events[0].value as Buffer).length).toBe(1025);
    expect(cut.events.every((e) => e.level === 'error' && e.source === 'app' && e.headers!['journal.pid'] === '42')).toBe(true);
    expect(entryEvent({ ...base, MESSAGE: 'é'.repeat(512) }, 1024, 0).events).toHaveLength(1);
    const ssh = entryEvent({ ...base, SYSLOG_IDENTIFIER: 'sshd', MESSAGE: 'Failed password for root from 198.18.0.2 port 4 ssh2' }, 1024, 0).events[0];
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
    const p = salvageEntry(big.head, big.tail, 4096, 0);
    expect(p.cursor).toBe('s=a;i=9');
    expect(p.events.every((e) => e.source === 'big' && e.timeMs === 1796548602450)).toBe(true);
    // what was read of MESSAGE, in pieces; the last one says the rest was not read
    expect(p.events.map((e) => e.headers!.cut)).toEqual(['1+', '2/2']);
    expect(p.events[1].headers!['cut.incomplete']).toBe('true');
    expect(p.events[0].headers!['cut.incomplete']).toBeUndefined();
    expect(Buffer.concat(p.events.map((e) => Buffer.from(e.value))).toString().startsWith('q"\\q"\\')).toBe(true);
    const small = salvageEntry(Buffer.from('{"__CURSOR":"s=a;i=2","MESSAGE":"short'), Buffer.alloc(0), 4096, 0);
    expect(small.events).toEqual([expect.objectContaining({ value: 'short', headers: expect.objectContaining({ cut: '1/1', 'cut.incomplete': 'true' }) })]);
    expect((out[1] as { line: Buffer }).line.toString()).toBe('{"MESSAGE":"next","__CURSOR":"c2"}');
    expect(partialJsonValue('"ab\\u00e9c", "X":1')).toBe('abéc');
    expect(partialJsonValue('"ab\\u00')).toBe('ab');
    expect(partialJsonValue('[1,2,3,4')).toEqual(Buffer.from([1, 2, 3]));
  });
});

describe('cut pieces (one form for files and journald)', () => {
  it('k+ while more follows, n/n on the last; exact byte pieces; a value that fits is not cut', () => {
    expect(cutHeader(1, false)).toBe('1+');
    expect(cutHeader(3, true)).toBe('3/3');
    expect(() => cutHeader(0, true)).toThrow();
    expect(cutPieces('abc', 3)).toEqual([{ value: 'abc' }]);
    expect(cutPieces(Buffer.from('abcd'), 4)).toEqual([{ value: Buffer.from('abcd') }]);
    expect(cutPieces('abcdefg', 3)).toEqual([{ value: Buffer.from('abc'), cut: '1+' }, { value: Buffer.from('def'), cut: '2+' }, { value: Buffer.from('g'), cut: '3/3' }]);
    expect(cutPieces('abcdef', 3).map((p) => p.cut)).toEqual(['1+', '2/2']);
    // a lone surrogate keeps its generalized UTF-8 bytes, as a whole value would
    expect(Buffer.concat(cutPieces('ab\ud800cd', 2).map((p) => p.value as Buffer))).toEqual(Buffer.from([0x61, 0x62, 0xed, 0xa0, 0x80, 0x63, 0x64]));
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
    expect(resolve({ journald: [{ task: 'j', topic: 't', namespace: 'apps' }] }).journald[0].namespace).toBe('apps');
    expect(resolve({ journald: [{ task: 'j', topic: 't', directory: 'jr' }] }).journald[0].directory).toBe('/tmp/jr');
    expect(() => resolve({ journald: [{ task: 'j', topic: 't', namespace: 'a/b' }] })).toThrow(ConfigError);
    expect(() => resolve({ journald: [{ task: 'j', topic: 't', namespace: 'a', directory: '/x' }] })).toThrow(/namespace and directory/);
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

describe('journald source on a host where systemd-journald does not run', () => {
  it('the socket checked for each kind of journal', () => {
    expect(journaldSocket({})).toBe('/run/systemd/journal/socket');
    expect(journaldSocket({ namespace: 'apps' })).toBe('/run/systemd/journal.apps/socket');
    expect(journaldSocket({ namespace: '+apps' })).toBe('/run/systemd/journal.apps/socket');
    expect(journaldSocket({ namespace: '*' })).toBeUndefined();
    expect(journaldSocket({ directory: '/srv/journal' })).toBeUndefined();
  });
});
