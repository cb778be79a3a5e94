// The edge against a real node: tokens and scopes on every route and WebSocket op, revocation by
// SIGHUP, secure defaults, browser origins, exact HTTP framing over raw sockets, one owner per
// port and data dir, strict parsing. docs/security.md describes what is tested here.
import { spawn as spawnProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { ChicagoClient } from '../src/client/index.js';
import { hashSecret, newToken, parseToken } from '../src/runtime/tokens.js';
import { http } from './helpers/http.js';
import { repoRoot, runCli, startNode, type NodeHandle } from './helpers/launcher.js';
import { lockDataDir, probePid, type PidProbe } from '../src/storage/dir-lock.js';
import { Spool } from '../src/agent/spool.js';
import { startEarly } from './helpers/early.js';
import { waitUntil } from './helpers/bridge.js';
import { slow } from './helpers/slow.js';
import { startAgent } from './helpers/agent.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });
type Frame = Record<string, any>;

interface Made { token: string; entry: Record<string, unknown> }

/**
 * What `chicago token create --scopes S --name N --json` prints, made in this process: a CLI start per
 * token costs more than its scrypt (console.test.ts and agent-scripts.test.ts run the command itself).
 */
async function makeToken(scopes: string, name: string): Promise<Made> {
  const { token, id } = newToken();
  const hash = await hashSecret(parseToken(token)!.secret);
  return { token, entry: { id, hash, scopes: scopes.split(','), name } };
}

/** A raw WebSocket that collects decoded frames. */
class Raw {
  readonly frames: Frame[] = [];
  closed: { code: number; reason: string } | undefined;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => this.frames.push(unpackr.unpack(data)));
    ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; });
    ws.on('error', () => undefined);
  }
  static open(url: string, headers: Record<string, string> = {}): Promise<Raw> {
    const ws = new WebSocket(url.replace('http', 'ws') + '/v1/ws', { headers });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Raw(ws)));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }
  send(frame: Frame): void { this.ws.send(packr.pack(frame)); }
  async reply(id: number): Promise<Frame> {
    let found: Frame | undefined;
    await waitUntil(`a reply to ${id}`, () => (found = this.frames.find((f) => f.id === id)) !== undefined || this.closed !== undefined, 5_000, 10);
    if (!found) throw new Error(`closed ${this.closed?.code} before a reply to ${id}`);
    return found;
  }
}

/** Sends raw bytes on a fresh connection; returns what came back before the node closed it (or a quiet second). */
function rawHttp(port: number, bytes: Buffer | string): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => { if (done) return; done = true; sock.destroy(); resolve({ text, closed }); };
    sock.on('data', (d) => { text += d.toString('latin1'); });
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
    sock.on('connect', () => sock.write(bytes));
    setTimeout(() => finish(false), slow(1_000));
  });
}

describe('tokens and scopes', () => {
  let dir: string;
  let cfgPath: string;
  let node: NodeHandle;
  const t: Record<string, Made> = {};
  let security: { tokens: Array<Record<string, unknown>>; allowedOrigins: string[] };
  const bearer = (m: Made) => ({ authorization: `Bearer ${m.token}` });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-sec-'));
    const [admin, writer, reader, expired, revoked, guardCli, guardList] = await Promise.all([
      makeToken('*', 'admin'),
      makeToken('kv:write:app,topic:write:logs', 'writer'),
      makeToken('kv:read:app,topic:read:logs,group:g1', 'reader'),
      makeToken('*', 'expired'),
      makeToken('*', 'revoked'),
      makeToken('topic:write:guard.decisions,kv:write:blocklist', 'guard-cli'),
      makeToken('kv:read:blocklist', 'guard-list'),
    ]);
    Object.assign(t, { admin, writer, reader, expired, revoked, guardCli, guardList });
    security = {
      tokens: [admin.entry, writer.entry, reader.entry, { ...expired.entry, expiresAt: '2020-01-01T00:00:00Z' }, { ...revoked.entry, revoked: true }, guardCli.entry, guardList.entry],
      allowedOrigins: ['http://console.example'],
    };
    cfgPath = path.join(dir, 'node.json');
    await writeFile(cfgPath, JSON.stringify({ security }));
    node = await startNode({ args: ['--config', cfgPath] });
    expect((await http(node.url, 'POST', '/v1/topics', { name: 'logs', partitions: 2 }, bearer(admin))).status).toBe(201);
  });
  afterAll(async () => {
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  // every route: what it needs, and a token that has it
  const routes: Array<[string, string, unknown, 'writer' | 'reader' | 'admin', 'writer' | 'reader' | 'admin' | undefined]> = [
    ['PUT', '/v1/kv/app/k', 'v', 'writer', 'reader'],
    ['GET', '/v1/kv/app/k', undefined, 'reader', 'writer'],
    ['DELETE', '/v1/kv/app/gone', undefined, 'writer', 'reader'],
    ['GET', '/v1/kv/app', undefined, 'reader', 'writer'],
    ['POST', '/v1/topics', { name: 'made-by-admin', partitions: 1 }, 'admin', 'writer'],
    ['GET', '/v1/topics/logs', undefined, 'reader', undefined], // any topic scope describes: below
    ['POST', '/v1/topics/logs/records', [{ value: 'x' }], 'writer', 'reader'],
    ['GET', '/v1/topics/logs/records?partition=0', undefined, 'reader', 'writer'],
    ['POST', '/v1/groups/g1/offsets', { topic: 'logs', partition: 0, offset: 0 }, 'reader', 'writer'],
    ['GET', '/v1/groups/g1/offsets', undefined, 'reader', 'writer'],
    ['GET', '/v1/status', undefined, 'admin', 'reader'],
    ['GET', '/metrics', undefined, 'admin', 'writer'],
    ['POST', '/v1/admin/maintain', undefined, 'admin', 'reader'],
    ['DELETE', '/v1/topics/made-by-admin', undefined, 'admin', 'writer'],
  ];

  it('refuses every route without a token (401), with a token lacking the scope (403), and with an expired, revoked, unknown or malformed token (401)', async () => {
    for (const [method, p, body, , wrong] of routes) {
      const none = await http(node.url, method, p, body);
      expect([p, none.status, none.body?.error?.code]).toEqual([p, 401, 'UNAUTHENTICATED']);
      if (wrong) {
        const w = await http(node.url, method, p, body, bearer(t[wrong]));
        expect([p, w.status, w.body?.error?.code]).toEqual([p, 403, 'FORBIDDEN']);
      }
      for (const bad of [t.expired.token, t.revoked.token, t.admin.token.slice(0, -2) + 'AA', 'chicago_000000000000_' + 'A'.repeat(43), 'nonsense']) {
        const r = await http(node.url, method, p, body, { authorization: `Bearer ${bad}` });
        expect([p, r.status, r.body?.error?.code, r.body?.error?.retryable]).toEqual([p, 401, 'UNAUTHENTICATED', false]);
      }
    }
    // nothing was changed by the refused writes
    expect((await http(node.url, 'GET', '/v1/kv/app/k', undefined, bearer(t.admin))).status).toBe(404);
    expect((await http(node.url, 'GET', '/v1/topics/logs', undefined, bearer(t.admin))).body.partitions.every((p: { endOffset: number }) => p.endOffset === 0)).toBe(true);
  });

  it('allows every route to a token with the scope; lists only the topics a token may use', async () => {
    for (const [method, p, body, who] of routes) {
      const r = await http(node.url, method, p, body, bearer(t[who]));
      expect([method, p, r.status < 300 || (method === 'GET' && p === '/v1/kv/app/k' ? false : r.status === 404)], r.text).toEqual([method, p, true]);
    }
    await http(node.url, 'POST', '/v1/topics', { name: 'secret', partitions: 1 }, bearer(t.admin));
    const listed = await http(node.url, 'GET', '/v1/topics', undefined, bearer(t.reader));
    expect(listed.body.topics.map((x: { name: string }) => x.name)).toEqual(['logs']);
    // describing a topic takes any scope on it (a producer learns its partitions), not reading its records
    const described = await http(node.url, 'GET', '/v1/topics/logs', undefined, bearer(t.writer));
    expect([described.status, described.body.partitionCount]).toEqual([200, 2]);
    const notLogs = await http(node.url, 'GET', '/v1/topics/secret', undefined, bearer(t.writer));
    expect([notLogs.status, notLogs.body.error?.code, notLogs.body.error?.message]).toEqual([403, 'FORBIDDEN', expect.stringContaining('read, write or administer topic secret')]);
    expect((await http(node.url, 'GET', '/v1/health')).status).toBe(200); // public, for load balancers
  });

  it('checks the WebSocket hello token and every op against its scopes', async () => {
    const anon = await Raw.open(node.url);
    anon.send({ op: 'kv.get', id: 1, ks: 'app', key: Buffer.from('k') });
    expect(await anon.reply(1)).toMatchObject({ op: 'err', code: 'UNAUTHENTICATED' });
    anon.send({ op: 'hello', id: 2, versions: [1] });
    expect(await anon.reply(2)).toMatchObject({ op: 'err', code: 'UNAUTHENTICATED' });
    await waitUntil('the refused socket to close', () => anon.closed !== undefined, 5_000, 10);
    expect(anon.closed!.code).toBe(4400);

    const wrong = await Raw.open(node.url);
    wrong.send({ op: 'hello', id: 1, versions: [1], token: t.revoked.token });
    expect(await wrong.reply(1)).toMatchObject({ op: 'err', code: 'UNAUTHENTICATED' });

    const reader = await Raw.open(node.url);
    reader.send({ op: 'hello', id: 1, versions: [1], token: t.reader.token });
    expect(await reader.reply(1)).toMatchObject({ op: 'res', version: 1 });
    const ops: Array<[Frame, string]> = [
      [{ op: 'kv.put', ks: 'app', key: Buffer.from('k'), value: Buffer.from('v'), acks: 'all' }, 'FORBIDDEN'],
      [{ op: 'kv.delete', ks: 'app', key: Buffer.from('k'), acks: 'all' }, 'FORBIDDEN'],
      [{ op: 'kv.get', ks: 'other', key: Buffer.from('k') }, 'FORBIDDEN'],
      [{ op: 'kv.scan', ks: 'other', limit: 10 }, 'FORBIDDEN'],
      [{ op: 'produce', topic: 'logs', acks: 'all', records: [[Buffer.from('x')]] }, 'FORBIDDEN'],
      [{ op: 'subscribe', topic: 'secret', partition: 0, from: 'earliest', credit: 1000 }, 'FORBIDDEN'],
      [{ op: 'commit', group: 'g2', topic: 'logs', partition: 0, offset: 0 }, 'FORBIDDEN'],
      [{ op: 'offsets', group: 'g2' }, 'FORBIDDEN'],
      [{ op: 'topic', topic: 'secret' }, 'FORBIDDEN'],
      [{ op: 'topic', topic: 'logs' }, 'ok'],
      [{ op: 'kv.get', ks: 'app', key: Buffer.from('k') }, 'ok'],
      [{ op: 'offsets', group: 'g1' }, 'ok'],
    ];
    let id = 10;
    for (const [frame, want] of ops) {
      reader.send({ ...frame, id: ++id });
      const r = await reader.reply(id);
      expect([frame.op, r.op === 'res' ? 'ok' : r.code]).toEqual([frame.op, want]);
    }
    for (const s of [anon, wrong, reader]) s.ws.close();

    // the TypeScript client: a refused token fails at once, not after its connect timeout
    const started = Date.now();
    await expect(ChicagoClient.connect({ url: node.url, token: t.expired.token, connectTimeoutMs: 20_000 })).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(Date.now() - started).toBeLessThan(slow(5_000));
    const c = await ChicagoClient.connect({ url: node.url, token: t.writer.token });
    expect((await c.kv.put('app', 'from-ws', 'v')).version).toBeGreaterThan(0);
    expect((await c.topic('logs')).partitionCount).toBe(2); // a producer learns the partitions it writes to
    await expect(c.kv.put('other', 'k', 'v')).rejects.toMatchObject({ code: 'FORBIDDEN' });
    c.close();
  });

  it('takes the Bearer scheme in any case, logs refusals with the token id and name (at most 10 lines a second), and tells a WebSocket client where its token goes', async () => {
    // RFC 9110: the scheme is case-insensitive
    expect((await http(node.url, 'GET', '/v1/kv/app/k', undefined, { authorization: `bearer ${t.reader.token}` })).status).not.toBe(401);
    expect((await http(node.url, 'GET', '/v1/kv/app/k', undefined, { authorization: `BEARER ${t.writer.token}` })).status).toBe(403);
    const refusedSince = async (from: number, ok: (l: string) => boolean) => {
      let found: string | undefined;
      await waitUntil('a refusal logged', () => (found = node.stdout.lines().slice(from).find((l) => l.includes('"request refused"') && ok(l))) !== undefined, 5_000, 10);
      return JSON.parse(found!) as Record<string, unknown>;
    };
    expect(await refusedSince(0, (l) => l.includes('"reason":"scope"') && l.includes('"name":"writer"')))
      .toMatchObject({ edge: 'http', code: 'FORBIDDEN', token: { id: t.writer.entry.id, name: 'writer' }, route: 'GET /v1/kv/:ks/**' });

    // a flood of refusals is counted, not logged line by line; the next line logged says how many were not
    const before = node.stdout.lines().length;
    await Promise.all(Array.from({ length: 40 }, () => http(node.url, 'GET', '/v1/status')));
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await http(node.url, 'GET', '/v1/status', undefined, bearer(t.expired))).status).toBe(401);
    expect(await refusedSince(before, (l) => l.includes('"reason":"expired"'))).toMatchObject({ token: { id: t.expired.entry.id, name: 'expired' } });
    const logged = node.stdout.lines().slice(before).filter((l) => l.includes('"request refused"')).map((l) => JSON.parse(l) as { notLogged?: number });
    expect(logged.length).toBeLessThanOrEqual(21); // at most two windows of 10, and the line after them
    expect(logged.reduce((n, l) => n + (l.notLogged ?? 0), 0) + logged.length).toBeGreaterThanOrEqual(41);

    const anon = await Raw.open(node.url, { authorization: `Bearer ${t.reader.token}` }); // not read: the token goes in the hello
    anon.send({ op: 'hello', id: 1, versions: [1] });
    expect(await anon.reply(1)).toMatchObject({ op: 'err', code: 'UNAUTHENTICATED', message: expect.stringContaining('hello frame (its token field)') });
    anon.ws.close();
  });

  it('ships through the agent with a token that may only write its topic (describing it comes with the write)', async () => {
    const adir = await mkdtemp(path.join(dir, 'agent-'));
    await mkdir(path.join(adir, 'logs'));
    await writeFile(path.join(adir, 'logs', 'a.log'), Array.from({ length: 20 }, (_, i) => `secline ${i}`).join('\n') + '\n');
    const config = path.join(adir, 'agent.yaml');
    await writeFile(config, [
      `node: { url: ${node.url}, token: ${t.writer.token} }`,
      'host: sechost',
      'spool: { dir: ./spool }',
      'pollIntervalMs: 50',
      'sources:',
      '  - { task: sec, paths: [./logs/a.log], topic: logs }',
    ].join('\n'));
    const agent = startAgent(config);
    try {
      const shipped = async () => {
        let n = 0;
        for (const p of [0, 1]) {
          const r = await http(node.url, 'GET', `/v1/topics/logs/records?partition=${p}&offset=0&maxRecords=1000`, undefined, bearer(t.admin));
          n += (r.body.records as Array<{ headers?: Record<string, string> }>).filter((x) => x.headers?.task === 'sec').length;
        }
        return n;
      };
      await waitUntil('the agent to ship 20 lines', async () => (await shipped()) === 20, 20_000, 100);
      expect(agent.stderr.text() + agent.stdout.text()).not.toContain('FORBIDDEN');
    } finally {
      agent.proc.kill('SIGKILL');
      await agent.exited;
    }
  });

  it('counts refusals in /metrics and never logs a token', async () => {
    const m = await http(node.url, 'GET', '/metrics', undefined, bearer(t.admin));
    expect(m.text).toMatch(/chicago_auth_refused_total\{edge="http",code="UNAUTHENTICATED",reason="missing"\} [1-9]/);
    expect(m.text).toMatch(/chicago_auth_refused_total\{edge="http",code="FORBIDDEN",reason="scope"\} [1-9]/);
    expect(m.text).toMatch(/chicago_auth_refused_total\{edge="ws",code="UNAUTHENTICATED",reason="revoked"\} [1-9]/);
    const logged = node.stdout.text() + node.stderr.text();
    for (const m of Object.values(t)) {
      expect(logged).not.toContain(m.token);
      expect(logged).not.toContain(String(m.entry.hash));
    }
  });

  it('takes the CLI token from --token, --token-file and CHICAGO_TOKEN', async () => {
    const file = path.join(dir, 'writer.token');
    await writeFile(file, t.writer.token + '\n');
    const anonymous = await runCli(['kv', 'put', 'app', 'cli', 'v', '--url', node.url]);
    expect(anonymous.code).toBe(2);
    expect(anonymous.stderr).toMatch(/^error UNAUTHENTICATED: .*\(this command sent no token: --token, --token-file or CHICAGO_TOKEN\)/);
    expect((await runCli(['kv', 'put', 'app', 'cli', 'v', '--url', node.url, '--token', t.writer.token])).code).toBe(0);
    expect((await runCli(['kv', 'put', 'app', 'cli', 'v', '--url', node.url, '--token-file', file])).code).toBe(0);
    const env = await runCli(['kv', 'get', 'app', 'cli', '--url', node.url], { env: { CHICAGO_TOKEN: t.reader.token } });
    expect([env.code, env.stdout.trim()]).toEqual([0, 'v']);
    const refused = await runCli(['kv', 'get', 'app', 'cli', '--url', node.url], { env: { CHICAGO_TOKEN: t.writer.token } });
    expect([refused.code, refused.stderr]).toEqual([2, expect.stringContaining('FORBIDDEN')]);
  });

  it('chicago guard ban/unban need topic:write on guard.decisions and kv:write on blocklist (topic:admin once, to create it), list kv:read; a missing scope is exit 2', async () => {
    const g = (args: string[], who: Made) => runCli(['guard', ...args, '--url', node.url, '--token', who.token]);
    const first = await g(['ban', '198.18.7.7'], t.guardCli);
    // it may not create the topic: the answer names the scope it lacks
    expect([first.code, first.stderr]).toEqual([2, expect.stringMatching(/^error FORBIDDEN: creating topic guard.decisions: .*topic:admin:guard.decisions/)]);
    expect((await g(['ban', '198.18.7.6'], t.admin)).code).toBe(0);
    const ban = await g(['ban', '198.18.7.7', '--duration', '10m'], t.guardCli);
    expect(ban.code, ban.stderr).toBe(0);
    const list = await g(['list', '--json'], t.guardList);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as Array<{ target: string }>).map((d) => d.target).sort()).toEqual(['198.18.7.6', '198.18.7.7']);
    const unban = await g(['unban', '198.18.7.7'], t.guardCli);
    expect([unban.code, unban.stdout.trim()]).toEqual([0, 'unbanned 198.18.7.7']);
    // again: nothing was in force, and it says so
    const again = await g(['unban', '198.18.7.7'], t.guardCli);
    expect([again.code, again.stdout.trim()]).toEqual([0, '198.18.7.7 was not banned (the unban is recorded anyway)']);
    // a prefix of tens of millions of addresses needs --force (the rule: guard-unit's banTooWide)
    const wide = await g(['ban', '10.1.2.3/7'], t.guardCli);
    expect([wide.code, wide.stderr]).toEqual([64, expect.stringContaining('10.0.0.0/7 covers 33554432 addresses')]);
    const forced = await g(['ban', '10.0.0.0/7', '--duration', '1m', '--force', '--json'], t.guardCli);
    expect([forced.code, JSON.parse(forced.stdout).target]).toEqual([0, '10.0.0.0/7']);
    const refused = await g(['list'], t.guardCli);
    expect([refused.code, refused.stderr]).toEqual([2, expect.stringContaining('error FORBIDDEN')]);
  });

  it('revokes a token on SIGHUP: HTTP refuses it at once and an open WebSocket is cut at its next request', async () => {
    const c = await ChicagoClient.connect({ url: node.url, token: t.writer.token });
    await c.kv.put('app', 'before', 'v');
    const kept = await ChicagoClient.connect({ url: node.url, token: t.reader.token });
    const entries = security.tokens.map((e) => (e.id === t.writer.entry.id ? { ...e, revoked: true } : e));
    await writeFile(cfgPath, JSON.stringify({ security: { ...security, tokens: entries } }));
    node.proc.kill('SIGHUP');
    await node.stdout.waitFor(/security settings reloaded/, 10_000);
    expect((await http(node.url, 'PUT', '/v1/kv/app/after', 'v', bearer(t.writer))).status).toBe(401);
    await expect(c.kv.put('app', 'after', 'v')).rejects.toMatchObject({ code: expect.stringMatching(/UNAUTHENTICATED|OUTCOME_UNKNOWN/) });
    c.close();
    // a token the reload left as it was keeps its connection
    expect((await kept.kv.get('app', 'before'))?.value.toString()).toBe('v');
    kept.close();
    expect((await http(node.url, 'GET', '/v1/kv/app/after', undefined, bearer(t.admin))).status).toBe(404);
    // keys outside security are not reloaded, and the log says which changed
    await writeFile(cfgPath, JSON.stringify({ security: { ...security, tokens: entries }, maintenanceIntervalMs: 60_000, logLevel: 'debug' }));
    node.proc.kill('SIGHUP');
    const unapplied = await node.stdout.waitFor(/take effect only at the next restart/, 10_000);
    expect(JSON.parse(unapplied).keys).toEqual(['logLevel', 'maintenanceIntervalMs']);
    // a broken config on SIGHUP keeps the previous settings
    await writeFile(cfgPath, '{"security": {"tokens": [{"id": "nope"}]}}');
    node.proc.kill('SIGHUP');
    await node.stdout.waitFor(/config not reloaded/, 10_000);
    expect((await http(node.url, 'GET', '/v1/kv/app/before', undefined, bearer(t.reader))).status).toBe(200);
  });
});

/**
 * One node open on loopback (no tokens) with one allowed browser origin, for the origin and the
 * strict-parsing tests: none of them needs a fresh node, and the origin list changes nothing for a
 * request without an Origin header.
 */
let openNode: Promise<{ node: NodeHandle; dir: string }> | undefined;
const sharedOpenNode = () => (openNode ??= (async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-sec-'));
  const cfg = path.join(dir, 'c.json');
  await writeFile(cfg, JSON.stringify({ security: { allowedOrigins: ['http://console.example'] } }));
  try {
    return { node: await startNode({ args: ['--config', cfg] }), dir };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
})());
afterAll(async () => {
  // a start that failed already reported itself (and removed its dir) in the tests that asked for it
  const open = await openNode?.catch(() => undefined);
  if (!open) return;
  await open.node.stop();
  await rm(open.dir, { recursive: true, force: true });
});

describe('secure defaults and browser origins', () => {
  it('refuses to serve on a non-loopback address without tokens, unless --insecure', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-sec-'));
    try {
      const r = await runCli(['server', '--host', '0.0.0.0', '--port', '0', '--data-dir', dir]);
      expect([r.code, r.stderr]).toEqual([78, expect.stringContaining('refusing to serve on 0.0.0.0 without tokens')]);
      const open = await startNode({ host: '0.0.0.0', dataDir: dir, args: ['--insecure'] });
      try {
        expect(open.stdout.text()).toContain('no tokens configured and --insecure');
      } finally {
        await open.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs open on loopback without tokens and says so; refuses other origins and non-JSON bodies', async () => {
    const { node } = await sharedOpenNode();
    try {
      expect(node.stdout.text()).toContain('no tokens configured: the node is open to every process on this host');
      await http(node.url, 'POST', '/v1/topics', { name: 't', partitions: 1 });
      // a cross-site "simple" POST: text/plain, from a page elsewhere
      const evil = await http(node.url, 'POST', '/v1/topics/t/records', '[{"value":"x"}]', { origin: 'http://evil.example', 'content-type': 'text/plain' });
      expect([evil.status, evil.body.error.code]).toEqual([403, 'FORBIDDEN']);
      // even from an allowed origin, a body a page could send without a preflight is not taken as JSON
      const plain = await http(node.url, 'POST', '/v1/topics/t/records', '[{"value":"x"}]', { origin: 'http://console.example', 'content-type': 'text/plain' });
      expect([plain.status, plain.body.error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
      const form = await http(node.url, 'POST', '/v1/topics/t/records', '[{"value":"x"}]', { 'content-type': 'application/x-www-form-urlencoded' });
      expect([form.status, form.body.error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
      // a non-browser client's string body (fetch labels it text/plain) is JSON
      const script = await http(node.url, 'POST', '/v1/topics/t/records', '[{"value":"y"}]', { 'content-type': 'text/plain;charset=UTF-8' });
      expect(script.status).toBe(200);
      const del = await http(node.url, 'DELETE', '/v1/topics/t', undefined, { origin: 'http://evil.example' });
      expect(del.status).toBe(403);
      await expect(Raw.open(node.url, { origin: 'http://evil.example' })).rejects.toThrow('HTTP 403');
      // the allowed origin: CORS preflight and headers, and a WebSocket
      const pre = await http(node.url, 'OPTIONS', '/v1/topics/t/records', undefined, { origin: 'http://console.example', 'access-control-request-method': 'POST' });
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://console.example');
      expect(pre.headers.get('access-control-allow-headers')).toContain('authorization');
      const ok = await http(node.url, 'POST', '/v1/topics/t/records', [{ value: 'x' }], { origin: 'http://console.example' });
      expect([ok.status, ok.headers.get('access-control-allow-origin')]).toEqual([200, 'http://console.example']);
      (await Raw.open(node.url, { origin: 'http://console.example' })).ws.close();
      const topic = await http(node.url, 'GET', '/v1/topics/t');
      expect(topic.body.partitions[0].endOffset).toBe(2);
    } finally {
      // the node goes on serving the strict-parsing tests, which list its topics
      await http(node.url, 'DELETE', '/v1/topics/t');
    }
  });
});

describe('exact HTTP, one owner, strict parsing (raw sockets, real node)', () => {
  let node: NodeHandle;
  beforeAll(async () => {
    node = (await sharedOpenNode()).node;
    await http(node.url, 'POST', '/v1/topics', { name: 'strict', partitions: 2 });
  });
  const get = async (key: string) => (await http(node.url, 'GET', `/v1/kv/raw/${key}`)).status;

  it('answers sequential keep-alive requests in order, one response each', async () => {
    const sock = net.connect(node.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let text = '';
    sock.on('data', (d) => { text += d.toString('latin1'); });
    for (let i = 0; i < 3; i++) {
      sock.write(`PUT /v1/kv/raw/seq${i} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv${i}`);
      await waitUntil(`answer ${i}`, () => (text.match(/HTTP\/1.1 200/g) ?? []).length === i + 1, 5_000, 5);
    }
    sock.destroy();
    expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(3);
    for (let i = 0; i < 3; i++) expect(await get(`seq${i}`)).toBe(200);
  });

  it('refuses pipelined requests and ambiguous framing by closing the connection before anything runs', async () => {
    const cases: Array<[string, string, string[]]> = [
      ['pipelined', 'PUT /v1/kv/raw/p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv1PUT /v1/kv/raw/p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv2', ['p1', 'p2']],
      ['two lengths', 'PUT /v1/kv/raw/s1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 60\r\n\r\nv1PUT /v1/kv/raw/s2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv2', ['s1', 's2']],
      ['same length twice', 'PUT /v1/kv/raw/s3 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nv3', ['s3']],
      ['length and chunked', 'PUT /v1/kv/raw/t1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nv1\r\n0\r\n\r\n', ['t1']],
      ['bad chunk size', 'PUT /v1/kv/raw/c1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nv1\r\n0\r\n\r\n', ['c1']],
      ['unknown coding', 'PUT /v1/kv/raw/c2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nv1', ['c2']],
      ['signed length', 'PUT /v1/kv/raw/c3 HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\nv1', ['c3']],
    ];
    for (const [name, bytes, keys] of cases) {
      const r = await rawHttp(node.port, bytes);
      expect([name, r.closed, r.text.includes('HTTP/1.1 200')]).toEqual([name, true, false]);
      for (const k of keys) expect([name, k, await get(k)]).toEqual([name, k, 404]);
    }
    // chunked alone is fine
    const chunked = await rawHttp(node.port, 'PUT /v1/kv/raw/c4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nv4\r\n0\r\n\r\n');
    expect(chunked.text).toContain('HTTP/1.1 200');
    expect(await get('c4')).toBe(200);
    const m = await http(node.url, 'GET', '/metrics');
    expect(m.text).toMatch(/chicago_http_refused_total\{reason="framing"\} [1-9]/);
  });

  it('answers unsupported methods with 405, a coded body and the methods the route takes', async () => {
    for (const method of ['PATCH', 'TRACE']) {
      const r = await rawHttp(node.port, `${method} /v1/topics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect([method, r.text.split('\r\n')[0]]).toEqual([method, 'HTTP/1.1 405 Method Not Allowed']);
      expect(r.text).toMatch(/\r\nallow: POST, GET, HEAD\r\n/i);
    }
    const r = await rawHttp(node.port, 'PATCH /v1/topics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(r.text).toContain('"code":"METHOD_NOT_ALLOWED"');
    const h = await rawHttp(node.port, 'HEAD /v1/kv/raw/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(h.text.split('\r\n')[0]).toBe('HTTP/1.1 404 Not Found');
    // a scrape ends the metrics' windows: HEAD is not one
    const m = await rawHttp(node.port, 'HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(m.text.split('\r\n')[0]).toBe('HTTP/1.1 405 Method Not Allowed');
    expect(m.text).toMatch(/\r\nallow: GET\r\n/i);
  });

  it('answers HEAD of a GET route with its headers and length and no body, on a connection that stays usable', async () => {
    await http(node.url, 'PUT', '/v1/kv/raw/headed', 'twelve bytes');
    const gets = await Promise.all(['/v1/kv/raw/headed', '/v1/health', '/v1/status', '/ui'].map(async (p) => {
      const g = await fetch(node.url + p, { headers: { 'accept-encoding': 'identity' } });
      return { p, status: g.status, type: g.headers.get('content-type'), length: (await g.arrayBuffer()).byteLength };
    }));
    // the HEADs and a GET on one keep-alive connection: each answer ends at its headers
    const sock = net.connect(node.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let text = '';
    sock.on('data', (d) => { text += d.toString('latin1'); });
    for (const [i, g] of gets.entries()) {
      sock.write(`HEAD ${g.p} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await waitUntil(`answer ${i}`, () => (text.match(/\r\n\r\n/g) ?? []).length === i + 1, 5_000, 5);
    }
    sock.write('GET /v1/kv/raw/headed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await new Promise((r) => sock.once('close', r));
    const answers = text.split(/(?=HTTP\/1\.1 )/);
    expect(answers).toHaveLength(gets.length + 1);
    for (const [i, g] of gets.entries()) {
      const [head, body] = answers[i]!.split('\r\n\r\n');
      expect([g.p, head!.split('\r\n')[0]]).toEqual([g.p, `HTTP/1.1 ${g.status} OK`]);
      expect([g.p, /content-length: (\d+)/i.exec(head!)?.[1]]).toEqual([g.p, String(g.length)]);
      expect([g.p, /content-type: ([^\r]+)/i.exec(head!)?.[1]]).toEqual([g.p, g.type]);
      expect([g.p, body]).toEqual([g.p, '']);
    }
    expect(answers[gets.length]).toMatch(/^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\ntwelve bytes$/);
    const m = await http(node.url, 'GET', '/metrics');
    expect(m.text).toMatch(/chicago_requests_total\{[^}]*route="HEAD \/v1\/health"[^}]*\} 1\n/);
  });

  it('refuses rather than rewrites: integers, names, keys, header names and Unicode', async () => {
    const bad: Array<[string, string, unknown, number, string]> = [
      ['GET', '/v1/topics/strict/records?offset=0x10', undefined, 400, 'INVALID_OFFSET'],
      ['GET', '/v1/topics/strict/records?offset=%201', undefined, 400, 'INVALID_OFFSET'],
      ['GET', '/v1/topics/strict/records?offset=1e1', undefined, 400, 'INVALID_OFFSET'],
      ['GET', '/v1/topics/strict/records?partition=1.0', undefined, 400, 'INVALID_ARGUMENT'],
      ['GET', '/v1/topics/strict/records?partition=', undefined, 400, 'INVALID_ARGUMENT'],
      ['GET', '/v1/topics/strict/records?maxRecords=-1', undefined, 400, 'INVALID_ARGUMENT'],
      ['POST', '/v1/topics', { name: 'p2', partitions: '2' }, 400, 'INVALID_ARGUMENT'],
      ['POST', '/v1/topics', { name: '.' }, 400, 'INVALID_NAME'],
      ['POST', '/v1/topics', { name: '..' }, 400, 'INVALID_NAME'],
      ['PUT', '/v1/kv/../k', 'v', 404, 'ROUTE_NOT_FOUND'],
      ['POST', '/v1/groups/g/offsets', { topic: 'strict', partition: '0', offset: 0 }, 400, 'INVALID_ARGUMENT'],
      ['POST', '/v1/topics/strict/records', '[{"value":"x","headers":{"__proto__":"a"}}]', 400, 'INVALID_ARGUMENT'],
      ['POST', '/v1/topics/strict/records', '[{"value":"\\ud800"}]', 400, 'INVALID_UTF8'],
      ['POST', '/v1/topics/strict/records', '[{"value":"x","headers":{"h":"\\udfff"}}]', 400, 'INVALID_UTF8'],
      ['POST', '/v1/topics/strict/records', `[{"value":${'['.repeat(5000)}${']'.repeat(5000)}}]`, 400, 'BAD_REQUEST'],
      ['POST', '/v1/topics', `${'{"a":'.repeat(100)}1${'}'.repeat(100)}`, 400, 'BAD_REQUEST'],
    ];
    for (const [method, p, body, status, code] of bad) {
      const headers = typeof body === 'string' && method === 'POST' ? { 'content-type': 'application/json' } : undefined;
      const r = await http(node.url, method, p, body, headers);
      expect([method, p.slice(0, 60), r.status, r.body?.error?.code, r.body?.error?.retryable]).toEqual([method, p.slice(0, 60), status, code, false]);
    }
    // fetch would normalise %2E%2E away: sent as is
    const dots = await rawHttp(node.port, 'PUT /v1/kv/%2E%2E/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nv');
    expect(dots.text).toMatch(/^HTTP\/1\.1 400 [^]*"code":"INVALID_NAME"/);
    const topics = (await http(node.url, 'GET', '/v1/topics')).body.topics.map((x: { name: string }) => x.name);
    expect(topics).toEqual(['strict']);
    expect((await http(node.url, 'GET', '/v1/topics/strict')).body.partitions.map((p: { endOffset: number }) => p.endOffset)).toEqual([0, 0]);
  });

  it('keeps keys exactly as sent: a/b and a//b are two keys; a raw 0xFF byte in a path is refused', async () => {
    expect((await http(node.url, 'PUT', '/v1/kv/raw/a/b', 'one')).status).toBe(200);
    expect((await http(node.url, 'PUT', '/v1/kv/raw/a//b', 'two')).status).toBe(200);
    expect((await http(node.url, 'GET', '/v1/kv/raw/a/b')).text).toBe('one');
    expect((await http(node.url, 'GET', '/v1/kv/raw/a//b')).text).toBe('two');
    const items = (await http(node.url, 'GET', '/v1/kv/raw?prefix=a')).body.items.map((i: { key: string }) => i.key);
    expect(items).toEqual(['a//b', 'a/b']);
    const raw = await rawHttp(node.port, Buffer.concat([Buffer.from('PUT /v1/kv/raw/x'), Buffer.from([0xff]), Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1\r\n\r\nv')]));
    expect(raw.text.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect((await http(node.url, 'GET', '/v1/kv/raw?prefix=x')).body.items).toEqual([]);
    // headers come back exactly, including awkward names
    const p = await http(node.url, 'POST', '/v1/topics/strict/records?partition=1', [{ value: 'h', headers: { constructor: 'c', 'a b': 'd', 'ü': 'é' } }]);
    expect(p.status).toBe(200);
    const back = await http(node.url, 'GET', '/v1/topics/strict/records?partition=1');
    expect(back.body.records[0].headers).toEqual({ constructor: 'c', 'a b': 'd', 'ü': 'é' });
  });

  it('counts open WebSocket connections', async () => {
    const gauge = async () => Number(/chicago_ws_connections (\d+)/.exec((await http(node.url, 'GET', '/metrics')).text)?.[1]);
    const before = await gauge();
    const a = await Raw.open(node.url);
    const b = await Raw.open(node.url);
    expect(await gauge()).toBe(before + 2);
    a.ws.close();
    b.ws.close();
    await waitUntil('the gauge to drop', async () => (await gauge()) === before, 5_000, 50);
  });

  it('exits 69 with a clear message when the port or the data dir is in use; takes over a dead owner\'s dir and port at once', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-owner-'));
    try {
      const port = await runCli(['server', '--port', String(node.port), '--data-dir', dir]);
      expect([port.code, port.stderr]).toEqual([69, expect.stringContaining(`cannot listen on 127.0.0.1:${node.port}`)]);
      expect((await http(node.url, 'GET', '/v1/health')).status).toBe(200);
      // a fixed port below the ephemeral range, as deployments use (a port the kernel hands out for
      // outgoing connections cannot be bound again while a crashed node's connections on it linger)
      const fixed = 20_000 + Math.floor(Math.random() * 10_000);
      const first = await startNode({ dataDir: dir, keepData: true, port: fixed });
      const second = await runCli(['server', '--port', '0', '--data-dir', dir]);
      expect([second.code, second.stderr.trim()]).toEqual([69, `chicago: data dir ${dir} in use by pid ${first.pid}`]);
      for (let i = 0; i < 20; i++) await http(first.url, 'GET', '/v1/health'); // connections left in TIME_WAIT
      await first.kill('SIGKILL');
      expect(JSON.parse(await readFile(path.join(dir, 'chicago.lock'), 'utf8')).pid).toBe(first.pid);
      // the same dir and the same port right after a crash: the lock is stale, TIME_WAIT does not block
      const again = await startNode({ dataDir: dir, keepData: true, port: first.port });
      expect(again.port).toBe(first.port);
      await again.stop();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the dir lock: a reused pid, another host, kill -9 and racing starters', () => {
  const boot = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  const startTicks = (pid: number) => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  };
  const lockIn = async (dir: string, holder: Record<string, unknown>) =>
    writeFile(path.join(dir, 'chicago.lock'), JSON.stringify({ boot: boot(), startedAt: new Date().toISOString(), host: os.hostname(), ...holder }) + '\n');
  const holderOf = async (dir: string) => JSON.parse(await readFile(path.join(dir, 'chicago.lock'), 'utf8'));
  // a child that takes the lock with the built module, says so, and holds it until killed
  const lockChild = (dir: string, waitUntilMs = 0) => spawnProcess(process.execPath, ['--input-type=module', '-e', `
    import { lockDataDir } from ${JSON.stringify(path.join(repoRoot, 'dist/src/storage/dir-lock.js'))};
    while (Date.now() < ${waitUntilMs});
    try { lockDataDir(${JSON.stringify(dir)}); console.log('won'); } catch (e) { console.log('lost ' + e.message); }
    setTimeout(() => {}, 60_000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const firstLine = (child: ReturnType<typeof spawnProcess>) => new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => { out += b; if (out.includes('\n')) resolve(out.split('\n')[0]); });
    child.once('exit', (code) => reject(new Error(`lock child exited ${code} before it answered`)));
  });
  const killed = (child: ReturnType<typeof spawnProcess>) => new Promise((resolve) => { child.once('exit', resolve); child.kill('SIGKILL'); });

  let dir: string;
  beforeEach(async () => { dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-lock-')); });
  afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

  it('takes over a lock whose pid now names a live process that started at another time (a reused pid)', async () => {
    // pid 1 lives; with its own start time the lock is held, with another one it is stale
    await lockIn(dir, { pid: 1, startTicks: startTicks(1) });
    expect(() => lockDataDir(dir)).toThrow(`data dir ${dir} in use by pid 1`);
    await lockIn(dir, { pid: 1, startTicks: startTicks(1) + 1000 });
    const release = lockDataDir(dir);
    expect(await holderOf(dir)).toMatchObject({ pid: process.pid, startTicks: startTicks(process.pid), host: os.hostname(), boot: boot() });
    release();
    expect(existsSync(path.join(dir, 'chicago.lock'))).toBe(false);
    // a lock of an older version (no start time) keeps the pid rule: pid 1 holds it
    await lockIn(dir, { pid: 1, host: undefined });
    expect(() => lockDataDir(dir)).toThrow(`data dir ${dir} in use by pid 1`);
  });

  it('takes over a lock written on another host (a re-created container has a new host name), saying so', async () => {
    const alive = 1; // a live pid here: on another host it says nothing
    await lockIn(dir, { pid: alive, host: 'elsewhere.example', startTicks: 5 });
    const heard: Array<string | undefined> = [];
    const release = lockDataDir(dir, 'data dir', undefined, (held) => { heard.push(held.host); });
    expect(heard).toEqual(['elsewhere.example']);
    expect(await holderOf(dir)).toMatchObject({ pid: process.pid, host: os.hostname() });
    release();
    await lockIn(dir, { pid: alive, host: 'elsewhere.example', startTicks: 5 });
    const { spool } = Spool.open({ dir, quotaBytes: 1 << 20, segmentBytes: 1 << 16 });
    expect((await holderOf(dir)).pid).toBe(process.pid);
    spool.close();
  });

  it('takes over the lock of a process killed -9', async () => {
    const child = lockChild(dir);
    expect(await firstLine(child)).toBe('won');
    expect(() => lockDataDir(dir)).toThrow(`data dir ${dir} in use by pid ${child.pid}`);
    await killed(child);
    const release = lockDataDir(dir);
    expect((await holderOf(dir)).pid).toBe(process.pid);
    release();
  });

  it('replaces a stale lock only while it is the one judged stale: a starter that took it over meanwhile keeps it', async () => {
    const file = path.join(dir, 'chicago.lock');
    await lockIn(dir, { pid: 2 ** 22 + 17, startTicks: 5 }); // above pid_max: dead
    let other: ReturnType<typeof spawnProcess> | undefined;
    // between reading the stale lock and replacing it, another starter takes it over
    const probe: PidProbe = (pid) => {
      if (!other) {
        other = lockChild(dir);
        const deadline = Date.now() + 20_000;
        while (!readFileSync(file, 'utf8').includes(`"pid":${other.pid},`)) {
          if (Date.now() > deadline) throw new Error('the other starter did not take the lock');
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
      return probePid(pid);
    };
    try {
      let thrown: unknown;
      try {
        lockDataDir(dir, 'data dir', probe)();
      } catch (err) {
        thrown = err;
      }
      expect(other).toBeDefined();
      expect(String(thrown)).toBe(`DataDirInUseError: data dir ${dir} in use by pid ${other!.pid}`);
      expect((await holderOf(dir)).pid).toBe(other!.pid);
    } finally {
      if (other) await killed(other);
    }
  });

  it('leaves the takeover guard of a starter that died midway to a human, naming it', async () => {
    await lockIn(dir, { pid: 2 ** 22 + 17, startTicks: 5 });
    await writeFile(path.join(dir, 'chicago.lock.takeover'), JSON.stringify({ pid: 2 ** 22 + 18, boot: boot(), startedAt: '', host: os.hostname(), startTicks: 6 }));
    expect(() => lockDataDir(dir)).toThrow(`data dir ${dir}: pid ${2 ** 22 + 18} died while it took over ${path.join(dir, 'chicago.lock')}; remove ${path.join(dir, 'chicago.lock.takeover')}`);
  });

  it('gives a stale lock to one of several starters racing for it', async () => {
    for (let round = 0; round < 3; round++) {
      await lockIn(dir, { pid: 2 ** 22 + 17, startTicks: 5 }); // above pid_max: dead
      const at = Date.now() + 1500; // all start together, after their imports
      const children = Array.from({ length: 4 }, () => lockChild(dir, at));
      try {
        const answers = await Promise.all(children.map(firstLine));
        expect(answers.filter((a) => a === 'won')).toHaveLength(1);
        expect(answers.filter((a) => a !== 'won')).toEqual(Array(3).fill(expect.stringMatching(/in use by pid \d+/)));
      } finally {
        await Promise.all(children.map(killed));
      }
    }
  });
});

/** The 3-node cluster with tokens, with the tokens it was configured with and its temporary dir. */
async function tokenCluster() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-sec-cluster-'));
  const [admin, peer, writer] = await Promise.all([makeToken('*', 'admin'), makeToken('cluster:peer', 'peers'), makeToken('kv:write:app', 'writer')]);
  const cfg = path.join(dir, 'node.json');
  const peerFile = path.join(dir, 'peer.token');
  await writeFile(peerFile, peer.token + '\n');
  await writeFile(cfg, JSON.stringify({ security: { tokens: [admin.entry, peer.entry, writer.entry], peerTokenFile: peerFile } }));
  const { startCluster } = await import('./helpers/cluster.js');
  try {
    return { dir, admin, peer, writer, cluster: await startCluster({ nodes: 3, partitions: 4, replicas: 3, args: ['--config', cfg], token: admin.token }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
// started with the file
const tokenClusterOnce = startEarly(tokenCluster, async (s) => {
  await s.cluster.teardown();
  await rm(s.dir, { recursive: true, force: true });
});

describe('a cluster with tokens (real etcd, 3 nodes)', () => {
  it('links nodes with a cluster:peer token, replicates acks=all writes to 3 copies, and refuses a node without one', async () => {
    const { dir, admin, peer, writer, cluster } = await tokenClusterOnce();
    const url = cluster.nodes[0].handle.url;
    const put = await http(url, 'PUT', '/v1/kv/app/k?acks=all', 'v', { authorization: `Bearer ${writer.token}` });
    expect([put.status, put.body.replicas]).toEqual([200, 3]);
    // replication went straight between workers: the link key the peers exchanged works
    let direct = 0;
    for (const n of cluster.nodes) {
      const m = await http(n.handle.url, 'GET', '/metrics', undefined, { authorization: `Bearer ${admin.token}` });
      direct += Number(/chicago_replication_frames_sent\{link="direct"\} (\d+)/.exec(m.text)?.[1] ?? 0);
    }
    expect(direct).toBeGreaterThan(0);
    // the peer token is for nodes only: it cannot write
    expect((await http(url, 'PUT', '/v1/kv/app/k', 'v', { authorization: `Bearer ${peer.token}` })).status).toBe(403);
    // a process that is not a node cannot open a peer link, with or without a client token
    for (const headers of [{}, { authorization: `Bearer ${writer.token}` }]) {
      const ws = new WebSocket(url.replace('http', 'ws') + '/v1/peer', { headers });
      ws.on('error', () => undefined);
      const status = await new Promise<number>((resolve) => { ws.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0)); ws.once('open', () => resolve(101)); });
      ws.terminate();
      expect(status).toBe(401);
    }
    // a node configured with tokens but no peer token does not start
    const noPeer = path.join(dir, 'no-peer.json');
    await writeFile(noPeer, JSON.stringify({ security: { tokens: [admin.entry] } }));
    const r = await runCli(['server', '--config', noPeer, '--data-dir', path.join(dir, 'x'), '--port', '0', '--etcd', 'http://127.0.0.1:1']);
    expect([r.code, r.stderr]).toEqual([78, expect.stringContaining('needs security.peerToken')]);
  });

  it('rotates the peer token with SIGHUP: the nodes present the new one on the links they dial next', async () => {
    const { dir, admin, peer, writer, cluster } = await tokenClusterOnce();
    const next = await makeToken('cluster:peer', 'peers-2');
    const cfg = path.join(dir, 'node.json');
    const peerFile = path.join(dir, 'peer.token');
    const hupAll = async (what: RegExp) => {
      const seen = cluster.live().map((n) => n.handle.stdout.lines().length);
      for (const n of cluster.live()) n.handle.proc.kill('SIGHUP');
      await Promise.all(cluster.live().map((n, i) => waitUntil(`${n.id} reloaded`, () => n.handle.stdout.lines().slice(seen[i]).some((l) => what.test(l)), 10_000, 20)));
    };
    // docs/operations.md, Rotating tokens: add the new token everywhere and present it; then revoke the old one
    await writeFile(cfg, JSON.stringify({ security: { tokens: [admin.entry, peer.entry, next.entry, writer.entry], peerTokenFile: peerFile } }));
    await writeFile(peerFile, next.token + '\n');
    await hupAll(/security settings reloaded/);
    await writeFile(cfg, JSON.stringify({ security: { tokens: [admin.entry, { ...peer.entry, revoked: true }, next.entry, writer.entry], peerTokenFile: peerFile } }));
    await hupAll(/security settings reloaded/);
    // a restarted node takes links only with the new token: the others must dial it with that one
    const restarted = cluster.nodes[2];
    await cluster.restart(restarted.id);
    const others = cluster.live().filter((n) => n !== restarted);
    await waitUntil('the others linked to the restarted node', async () => {
      // each try bounded: a write a replica cannot ack waits for its own deadline
      const put = await fetch(`${others[0].handle.url}/v1/kv/app/rotated-${Date.now()}?acks=all`, { method: 'PUT', body: 'v', headers: { authorization: `Bearer ${writer.token}` }, signal: AbortSignal.timeout(slow(3_000)) })
        .then(async (r) => (r.status === 200 ? ((await r.json()) as { replicas: number }) : undefined), () => undefined);
      return put?.replicas === 3;
    }, 20_000, 200);
    expect(restarted.handle.stdout.text()).not.toContain('refused a peer link without a cluster:peer token');
    for (const n of others) expect(n.handle.stdout.text()).not.toContain('does not accept this node\'s security.peerToken');
  });
});
