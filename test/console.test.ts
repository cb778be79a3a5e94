// The web console at /ui: its pure parts (filters, buffer, same-origin rule, static replies), then
// real headless Chromium (Debian's, driven by playwright-core) against a real node that requires
// tokens: the page asks for a token, tails a topic live with header and text filters, pauses and
// resumes, its charts grow, and the topics, groups, cluster, hosts and guard views show what the
// test wrote. Screenshots go to test-results/console/ (not committed).
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WsClient from 'ws';
import { chromium, type Browser } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium, shot } from './helpers/console-page.js';
import { http } from './helpers/http.js';
import { repoRoot, runCli, startNode, type NodeHandle } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';
import { matches, parseFilter, Ring, shownText, type ShownRecord } from '../src/console/filter.js';
import { consoleReply, loadConsole } from '../src/gateway/console.js';
import { sameOriginByAddress } from '../src/gateway/auth.js';

if (!haveChromium) console.warn(`console browser tests skipped: ${CHROMIUM} is missing (scripts/test-deps.sh installs Debian's chromium)`);

const rec = (value: string, headers: Record<string, string> = {}, key: string | null = null): ShownRecord => ({ partition: 0, offset: 0, timestampMs: 0, key, value, headers });

describe('console: pure parts', () => {
  it('filters on headers (exact value or presence) and on text (substring or /regex/)', () => {
    const nginx = rec('GET /index.html 200', { task: 'nginx', host: 'web-1' }, 'web-1');
    const sshd = rec('Failed password for root', { task: 'sshd', host: 'web-2' });
    const f = (h: string, t = '') => parseFilter(h, t);
    expect([matches(f('task=nginx'), nginx), matches(f('task=nginx'), sshd)]).toEqual([true, false]);
    expect([matches(f('task=nginx host=web-2'), nginx), matches(f('host'), sshd), matches(f('trace'), sshd)]).toEqual([false, true, false]);
    expect([matches(f('', 'index'), nginx), matches(f('', 'INDEX'), nginx), matches(f('', 'index'), sshd)]).toEqual([true, true, false]);
    expect([matches(f('', '/^failed/i'), sshd), matches(f('', '/^failed/'), sshd), matches(f('', 'web-1'), nginx)]).toEqual([true, false, true]);
    expect(f('', '/(/').error).toMatch(/not a regular expression/);
    // a habitual g (or y) flag does not make the filter skip every other record
    for (const flags of ['g', 'gi', 'y']) expect([1, 2, 3].map(() => matches(f('', `/index/${flags}`), nginx))).toEqual([true, true, true]);
  });

  it('the page buffer keeps the newest records, newest first, and counts what it dropped', () => {
    const r = new Ring<number>(3);
    for (let i = 1; i <= 5; i++) r.push(i);
    expect([r.newest(), r.size, r.dropped]).toEqual([[5, 4, 3], 3, 2]);
    expect(r.newest(2, (n) => n !== 4)).toEqual([5, 3]);
    r.clear();
    r.push(9);
    expect(r.newest()).toEqual([9]);
  });

  it('shows bytes that are not UTF-8 as base64 (never U+FFFD), and keeps a bounded prefix of a large value', () => {
    const utf8 = (t: string) => new TextEncoder().encode(t);
    expect(shownText(utf8('héllo ✓ 日本'))).toBe('héllo ✓ 日本');
    expect(shownText(Uint8Array.from([0x00, 0xff, 0x10, 0x80]))).toBe('(base64) AP8QgA==');
    // a cut inside a character steps back to its first byte
    expect(shownText(utf8('ab✓'), 3)).toBe('ab…');
    expect(shownText(utf8('ab✓'), 5)).toBe('ab✓');
    expect(shownText(utf8('a'.repeat(10)), 4)).toBe('aaaa…');
    expect(shownText(Uint8Array.from([0xff, 1, 2, 3, 4]), 3)).toBe('(base64) /wEC…');
    const big = shownText(new Uint8Array(4 * 1024 * 1024).fill(0x78));
    expect(big.length).toBe(16 * 1024 + 1);
  });

  it('a page the node served may open its WebSocket only when reached by address, not by a name', () => {
    expect(sameOriginByAddress('http://127.0.0.1:7070', '127.0.0.1:7070', false)).toBe(true);
    expect(sameOriginByAddress('http://localhost:7070', 'localhost:7070', false)).toBe(true);
    expect(sameOriginByAddress('http://[::1]:7070', '[::1]:7070', false)).toBe(true);
    expect(sameOriginByAddress('https://10.1.2.3:7070', '10.1.2.3:7070', true)).toBe(true);
    // another port, another scheme, another host: another origin
    expect(sameOriginByAddress('http://127.0.0.1:8080', '127.0.0.1:7070', false)).toBe(false);
    expect(sameOriginByAddress('http://10.1.2.3:7070', '10.1.2.3:7070', true)).toBe(false);
    expect(sameOriginByAddress('http://127.0.0.2:7070', '127.0.0.1:7070', false)).toBe(false);
    // a name could be an attacker's re-pointed at the node (DNS rebinding)
    expect(sameOriginByAddress('http://evil.example:7070', 'evil.example:7070', false)).toBe(false);
    expect(sameOriginByAddress('', '127.0.0.1:7070', false)).toBe(false);
  });

  it('static replies: ETag and 304, gzip only when accepted, a security policy on the page, 404 when not built', () => {
    // the build's output (this source file runs from src/ here, not from dist/)
    const assets = loadConsole(path.join(repoRoot, 'dist/console'));
    expect([...assets.keys()].sort()).toEqual(['app.css', 'app.js', 'index.html']);
    const page = consoleReply(assets, '/ui', '', 'gzip, deflate, br');
    expect(page.status).toBe('200 OK');
    expect(page.headers).toMatchObject({ 'content-type': 'text/html; charset=utf-8', 'content-encoding': 'gzip', 'cache-control': 'no-cache', 'x-frame-options': 'DENY' });
    expect(page.headers['content-security-policy']).toContain("connect-src 'self'");
    expect(consoleReply(assets, '/ui/', page.headers.etag, '').status).toBe('304 Not Modified');
    const js = consoleReply(assets, '/ui/app.js', '"other"', 'identity');
    expect([js.status, js.headers['content-type'], js.headers['content-encoding']]).toEqual(['200 OK', 'text/javascript; charset=utf-8', undefined]);
    expect(consoleReply(assets, '/ui/app.js', '', 'gzip;q=0').headers['content-encoding']).toBeUndefined();
    const missing = consoleReply(assets, '/ui/nope.js', '', '');
    expect([missing.status, JSON.parse(String(missing.body)).error.code]).toEqual(['404 Not Found', 'ROUTE_NOT_FOUND']);
    expect(consoleReply(new Map(), '/ui', '', '').body).toMatch(/npm run build/);
    // another method on a file is a 405 naming GET and HEAD, as on every route; on no file a 404
    const post = consoleReply(assets, '/ui', '', '', 'POST');
    expect([post.status, post.headers.allow, JSON.parse(String(post.body)).error.code]).toEqual(['405 Method Not Allowed', 'GET, HEAD', 'METHOD_NOT_ALLOWED']);
    expect(JSON.parse(String(consoleReply(assets, '/ui/nope.js', '', '', 'DELETE').body)).error.message).toBe('no route DELETE /ui/nope.js');
  });
});

interface Made { token: string; entry: Record<string, unknown> }

describe.skipIf(!haveChromium)('console in headless Chromium (a node with tokens)', () => {
  let node: NodeHandle;
  let browser: Browser;
  let dir: string;
  let other: Server | undefined;
  let admin: Made;
  const auth = () => ({ authorization: `Bearer ${admin.token}` });
  const produce = async (records: Array<{ value: string; key?: string; headers?: Record<string, string> }>) => {
    const r = await http(node.url, 'POST', '/v1/topics/console-logs/records', records, auth());
    expect(r.status, r.text).toBe(200);
  };

  beforeAll(async () => {
    const made = await runCli(['token', 'create', '--scopes', '*', '--name', 'console-admin', '--json']);
    expect(made.code, made.stderr).toBe(0);
    admin = JSON.parse(made.stdout) as Made;
    dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-console-'));
    const cfg = path.join(dir, 'node.json');
    await writeFile(cfg, JSON.stringify({ security: { tokens: [admin.entry] } }));
    node = await startNode({ args: ['--config', cfg] });
    expect((await http(node.url, 'POST', '/v1/topics', { name: 'console-logs', partitions: 3 }, auth())).status).toBe(201);
    await produce([{ value: 'before the page', key: 'k0' }]);
    // a group that read nothing yet: lag = every record
    for (let p = 0; p < 3; p++) expect((await http(node.url, 'POST', '/v1/groups/console-g/offsets', { topic: 'console-logs', partition: p, offset: 0 }, auth())).status).toBe(200);
    // a group that only committed one partition (stored in another node partition than console-g's first)
    expect((await http(node.url, 'POST', '/v1/groups/console-a/offsets', { topic: 'console-logs', partition: 2, offset: 0 }, auth())).status).toBe(200);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await node?.stop();
    other?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('serves the console without a token, with cache and compression headers; data still needs one', async () => {
    const page = await fetch(`${node.url}/ui`, { headers: { 'accept-encoding': 'gzip' } });
    expect([page.status, page.headers.get('content-type'), page.headers.get('content-encoding')]).toEqual([200, 'text/html; charset=utf-8', 'gzip']);
    expect(await page.text()).toContain('<title>Chicago console</title>');
    const etag = page.headers.get('etag')!;
    expect((await fetch(`${node.url}/ui/`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    const js = await fetch(`${node.url}/ui/app.js`);
    expect([js.status, js.headers.get('content-type')]).toEqual([200, 'text/javascript; charset=utf-8']);
    const put = await fetch(`${node.url}/ui/app.js`, { method: 'PUT', body: 'x' });
    expect([put.status, put.headers.get('allow'), (await put.json()).error.code]).toEqual([405, 'GET, HEAD', 'METHOD_NOT_ALLOWED']);
    expect((await http(node.url, 'GET', '/v1/topics')).status).toBe(401);
    expect((await http(node.url, 'GET', '/v1/groups')).status).toBe(401);
    expect((await http(node.url, 'GET', '/v1/groups', undefined, auth())).body).toEqual({ groups: ['console-a', 'console-g'] });
    expect((await http(node.url, 'GET', '/v1/groups?limit=1', undefined, auth())).body).toEqual({ groups: ['console-a'] });
    expect((await http(node.url, 'GET', '/v1/groups?limit=0', undefined, auth())).status).toBe(400);
  });

  it('the WebSocket takes its own origin by address, refuses a name pointing at it and other origins', async () => {
    const host = new URL(node.url).host;
    const tryOpen = (headers: Record<string, string>) => new Promise<string>((resolve) => {
      const ws = new WsClient(`${node.url.replace('http', 'ws')}/v1/ws`, { headers });
      ws.on('open', () => { ws.close(); resolve('open'); });
      ws.on('unexpected-response', (_req, res) => resolve(String(res.statusCode)));
      ws.on('error', () => resolve('error'));
    });
    expect(await tryOpen({ origin: `http://${host}`, host })).toBe('open');
    expect(await tryOpen({ origin: `http://rebound.example:${node.port}`, host: `rebound.example:${node.port}` })).toBe('403');
    expect(await tryOpen({ origin: `http://127.0.0.1:${node.port + 1}` })).toBe('403');
    // and from a real page on another port of the same address
    other = createServer((_q, r) => { r.writeHead(200, { 'content-type': 'text/html' }); r.end('<title>other</title>'); });
    await new Promise<void>((resolve) => other!.listen(0, '127.0.0.1', resolve));
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(other.address() as { port: number }).port}/`);
    const ws = await page.evaluate((url) => new Promise<string>((resolve) => {
      const s = new WebSocket(`${url.replace('http', 'ws')}/v1/ws`);
      s.onopen = () => { s.close(); resolve('open'); };
      s.onerror = () => resolve('refused');
    }), node.url);
    await page.close();
    expect(ws).toBe('refused');
  });

  it('asks for a token, then tails live with filters, pauses and resumes; charts grow; every view shows its data', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    const urls: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('request', (r) => urls.push(r.url()));
    const wait = { timeout: slow(10_000) };
    const rowsText = () => page.locator('#tail-rows').innerText();

    await page.goto(`${node.url}/ui#/tail`);
    await page.locator('#login').waitFor(wait);
    await shot(page, 'login.png');
    // a wrong secret for a known id: refused, asked again, nothing kept
    await page.fill('#token', admin.token.replace(/_[^_]+$/, `_${'A'.repeat(43)}`));
    await page.press('#token', 'Enter');
    await page.locator('#login', { hasText: 'refused the token' }).waitFor(wait);
    expect(await page.evaluate(() => sessionStorage.getItem('chicago.console.token'))).toBeNull();
    await page.fill('#token', admin.token);
    await page.press('#token', 'Enter');
    await page.locator('#conn', { hasText: 'connected with a token' }).waitFor(wait);
    expect(await page.evaluate(() => sessionStorage.getItem('chicago.console.token'))).toBe(admin.token);

    // the live tail: every partition, records produced from now on
    await page.locator('#tail-topic option[value="console-logs"]').waitFor({ state: 'attached', ...wait });
    await page.selectOption('#tail-topic', 'console-logs');
    await page.locator('body[data-tail="live"]').waitFor({ state: 'attached', ...wait });
    // {bytes: 64 KiB} is asked of every partition: the choice says so
    expect(await page.locator('#tail-from option[value="recent"]').innerText()).toBe('the last 64 KiB of each partition');
    const nginx = Array.from({ length: 6 }, (_, i) => ({ value: `GET /console-${i} 200`, key: `web-${i % 3}`, headers: { task: 'nginx', host: `web-${i % 3}` } }));
    await produce(nginx);
    await produce([{ value: 'sshd: Failed password for root', headers: { task: 'sshd', host: 'web-1' } }]);
    await page.locator('#tail-rows tr', { hasText: 'Failed password' }).waitFor(wait);
    await page.locator('#tail-rows tr', { hasText: 'GET /console-5 200' }).waitFor(wait);
    expect(await page.locator('#tail-rows tr').count()).toBe(7); // not the record from before the page
    // records of all three partitions arrived
    const partitions = new Set(await page.locator('#tail-rows tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-partition'))));
    expect(partitions.size).toBeGreaterThan(1);
    await shot(page, 'tail.png');

    await page.fill('#tail-headers', 'task=nginx');
    await page.locator('#tail-rows tr', { hasText: 'Failed password' }).waitFor({ state: 'detached', ...wait });
    expect(await page.locator('#tail-rows tr').count()).toBe(6);
    await page.fill('#tail-headers', 'task=nginx host=web-1');
    await expect.poll(() => page.locator('#tail-rows tr').count(), wait).toBe(2);
    await page.fill('#tail-text', '/console-4/');
    await expect.poll(() => rowsText(), wait).toMatch(/^[^\n]*GET \/console-4 200[^\n]*$/);
    await shot(page, 'tail-filtered.png');
    await page.fill('#tail-headers', '');
    await page.fill('#tail-text', '');

    await page.click('#tail-pause');
    await expect.poll(() => page.locator('#tail-info').innerText(), wait).toMatch(/^paused/);
    await produce([{ value: 'produced while paused', headers: { task: 'nginx' } }]);
    await page.click('#tail-pause');
    await page.locator('#tail-rows tr', { hasText: 'produced while paused' }).waitFor(wait);

    // a node restart: the console reconnects and resumes after the last record it had
    const before = await page.locator('#tail-rows tr').count();
    const errorsBefore = errors.length;
    node = await node.restart();
    await page.locator('body[data-connections="2"][data-tail="live"]').waitFor({ state: 'attached', timeout: slow(20_000) });
    // while the node was down the browser logs its refused reconnection attempts; nothing else
    const whileDown = errors.splice(errorsBefore);
    expect(whileDown.filter((e) => !/ERR_CONNECTION_REFUSED/.test(e))).toEqual([]);
    expect((await http(node.url, 'GET', '/v1/groups', undefined, auth())).body).toEqual({ groups: ['console-a', 'console-g'] }); // from storage, not memory
    await produce([{ value: 'after the restart', headers: { task: 'nginx' } }]);
    await page.locator('#tail-rows tr', { hasText: 'after the restart' }).waitFor(wait);
    expect(await page.locator('#tail-rows tr').count()).toBe(before + 1);
    // a partition that had no record before a restart: what reaches it before the console is back still shows
    expect((await http(node.url, 'POST', '/v1/topics', { name: 'console-quiet', partitions: 2 }, auth())).status).toBe(201);
    await page.locator('#tail-topic option[value="console-quiet"]').waitFor({ state: 'attached', ...wait });
    await page.selectOption('#tail-topic', 'console-quiet');
    await page.locator('body[data-tail="live"]').waitFor({ state: 'attached', ...wait });
    const errorsBefore2 = errors.length;
    node = await node.restart();
    expect((await http(node.url, 'POST', '/v1/topics/console-quiet/records?partition=1', [{ value: 'while the console was away' }], auth())).status).toBe(200);
    await page.locator('body[data-connections="3"][data-tail="live"]').waitFor({ state: 'attached', timeout: slow(20_000) });
    expect(errors.splice(errorsBefore2).filter((e) => !/ERR_CONNECTION_REFUSED/.test(e))).toEqual([]);
    await page.locator('#tail-rows tr', { hasText: 'while the console was away' }).waitFor(wait);
    await page.selectOption('#tail-topic', 'console-logs');
    await page.locator('body[data-tail="live"]').waitFor({ state: 'attached', ...wait });
    // a deleted topic leaves the picker
    const del = await http(node.url, 'DELETE', '/v1/topics/console-quiet', undefined, auth());
    expect(del.status, del.text).toBe(204);
    await page.locator('#tail-topic option[value="console-quiet"]').waitFor({ state: 'detached', ...wait });
    // bytes that are not UTF-8 show as base64, as the HTTP API gives them, not as U+FFFD
    expect((await http(node.url, 'POST', '/v1/topics/console-logs/records', [{ value: 'AP8QgA==', valueEncoding: 'base64', key: '/w==', keyEncoding: 'base64' }], auth())).status).toBe(200);
    await page.locator('#tail-rows tr', { hasText: '(base64) AP8QgA==' }).waitFor(wait);
    expect(await page.locator('#tail-rows tr', { hasText: '(base64) /w==' }).count()).toBe(1);

    // topics: the table and a records/s chart whose data grows while records flow
    await page.click('nav a[href="#/topics"]');
    await page.locator('#topics-table td', { hasText: 'console-logs' }).waitFor(wait);
    const chart = page.locator('.chart').first();
    await chart.locator('canvas').waitFor(wait);
    const points0 = Number(await chart.getAttribute('data-points'));
    const canvas0 = await chart.locator('canvas').evaluate((c) => (c as HTMLCanvasElement).toDataURL());
    for (let i = 0; i < 5; i++) await produce(Array.from({ length: 50 }, (_, j) => ({ value: `burst ${i}.${j}` })));
    await expect.poll(async () => Number(await chart.getAttribute('data-points')), { timeout: slow(10_000) }).toBeGreaterThan(points0 + 1);
    await expect.poll(() => chart.locator('canvas').evaluate((c) => (c as HTMLCanvasElement).toDataURL()), wait).not.toBe(canvas0);
    const row = page.locator('#topics-table tr', { hasText: 'console-logs' });
    expect((await row.innerText()).split('\t').slice(0, 2)).toEqual(['console-logs', '3']);
    expect(await page.locator('#partitions-table tr', { hasText: 'console-logs' }).count()).toBe(3);
    await shot(page, 'topics.png');

    // groups: the group with its lag, and the lag chart
    await page.click('nav a[href="#/groups"]');
    await page.locator('#groups-table td', { hasText: 'console-g' }).first().waitFor(wait);
    const lags = await page.locator('#groups-table tbody tr').evaluateAll((rows) => rows.map((r) => Number((r.children[5] as HTMLElement).innerText)));
    expect(lags).toHaveLength(4); // console-a's one partition, console-g's three
    expect(lags.reduce((a, b) => a + b, 0)).toBeGreaterThan(250);
    await expect.poll(async () => Number(await page.locator('.chart').first().getAttribute('data-points')), wait).toBeGreaterThan(1);
    await shot(page, 'groups.png');
    // a name the node would refuse is refused in the form, saying why, and not kept
    await page.fill('#group-add', 'bad name');
    expect(await page.locator('#group-add').evaluate((i) => [(i as HTMLInputElement).validity.valid, (i as HTMLInputElement).validationMessage])).toEqual([false, expect.stringMatching(/1-128 of A-Z/)]);
    await page.press('#group-add', 'Enter');
    expect(await page.evaluate(() => localStorage.getItem('chicago.console.groups'))).toBeNull();
    await page.fill('#group-add', 'console-none');
    await page.press('#group-add', 'Enter');
    await page.locator('.watched-empty', { hasText: 'console-none: watched, no committed offsets yet' }).waitFor(wait);

    // cluster: a single node says so
    await page.click('nav a[href="#/cluster"]');
    await page.locator('#single-node').waitFor(wait);
    expect(await page.locator('#cluster-partitions tbody tr').count()).toBeGreaterThan(0);
    await shot(page, 'cluster.png');

    // hosts and guard: empty first, then what an agent and a guard write
    await page.click('nav a[href="#/hosts"]');
    await page.locator('#no-hosts').waitFor(wait);
    const now = Date.now();
    expect((await http(node.url, 'PUT', '/v1/kv/agent/hosts/web-1', JSON.stringify({ host: 'web-1', timeMs: now, load1: 0.42, cpuUsedPercent: 12.5, memoryAvailablePercent: 61, zombies: 0, alertsFiring: 1, lagSeconds: 0.2, spoolBytes: 2048 }), auth())).status).toBe(200);
    expect((await http(node.url, 'PUT', '/v1/kv/agent/alerts/web-1/disk-full[%2F]', JSON.stringify({ host: 'web-1', id: 'disk-full[/]', severity: 'critical', field: 'disks./.usedPercent', value: 97, op: '>', threshold: 90, sinceMs: now, description: 'disk almost full' }), auth())).status).toBe(200);
    await page.locator('#hosts-table td', { hasText: 'web-1' }).waitFor(wait);
    await page.locator('#alerts-table td', { hasText: 'disk almost full' }).waitFor(wait);
    await shot(page, 'hosts.png');

    await page.click('nav a[href="#/guard"]');
    await page.locator('#no-guard').waitFor(wait);
    expect((await http(node.url, 'PUT', '/v1/kv/blocklist/198.51.100.7', JSON.stringify({ target: '198.51.100.7', untilMs: now + 3_600_000, scenario: 'ssh-bruteforce', reason: 'console test' }), auth())).status).toBe(200);
    await page.locator('#blocklist-table').getByRole('cell', { name: '198.51.100.7', exact: true }).waitFor(wait);
    await shot(page, 'guard.png');

    await page.close();
    expect(errors).toEqual([]);
    // the token never travels in a URL (those end up in logs)
    expect(urls.filter((u) => u.includes(admin.token.slice(-20)))).toEqual([]);
  }, 90_000);
});
