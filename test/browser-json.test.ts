// examples/browser-tail.html (a page written from docs/protocol.md's JSON mode, no library) in real
// headless Chromium against a real node: it learns the topic's partitions, tails them all, shows
// records produced while it is open (binary ones as flagged base64), and produces from its form.
// Screenshots go to test-results/ (not committed).
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium, shot } from './helpers/console-page.js';
import { http } from './helpers/http.js';
import { repoRoot, runCli, startNode, type NodeHandle } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

if (!haveChromium) console.warn(`browser tests skipped: ${CHROMIUM} is missing (scripts/test-deps.sh installs Debian's chromium)`);
const PAGE = readFileSync(path.join(repoRoot, 'examples/browser-tail.html'), 'utf8');

describe.skipIf(!haveChromium)('the JSON-mode tail page (headless Chromium)', () => {
  let node: NodeHandle;
  let browser: Browser;
  let site: Server;
  let origin: string;
  let dir: string;
  /** what the page's own server was asked for: a token must never be in it (servers log it) */
  const siteUrls: string[] = [];

  beforeAll(async () => {
    site = createServer((req, res) => {
      siteUrls.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(site.address() as { port: number }).port}`;
    dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-browser-json-'));
    const cfg = path.join(dir, 'node.json');
    await writeFile(cfg, JSON.stringify({ security: { allowedOrigins: [origin] } }));
    node = await startNode({ args: ['--config', cfg] });
    await http(node.url, 'POST', '/v1/topics', { name: 'bt', partitions: 2 });
    await http(node.url, 'POST', '/v1/topics/bt/records?partition=1', [{ value: 'before', key: 'k' }]);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await node?.stop();
    site?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const rows = (page: Page) => page.locator('.record').allTextContents();

  it('tails every partition live and produces from its form', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${origin}/?url=${encodeURIComponent(node.url)}&topic=bt`);
    await page.waitForSelector('body[data-ready="yes"]', { timeout: slow(10_000) });
    expect(await page.textContent('#status')).toBe('following 2 partition(s) of bt');
    await page.waitForFunction(() => document.querySelectorAll('.record').length === 1, undefined, { timeout: slow(10_000) });
    expect((await rows(page))[0]).toMatch(/^1:0 \S+ k before$/);

    // produced while the page is open: text on partition 0, bytes that are not UTF-8 on partition 1
    await http(node.url, 'POST', '/v1/topics/bt/records?partition=0', [{ value: 'live one' }]);
    await http(node.url, 'POST', '/v1/topics/bt/records?partition=1', [{ value: Buffer.from([0xff, 0xfe]).toString('base64'), valueEncoding: 'base64' }]);
    await page.waitForFunction(() => document.querySelectorAll('.record').length === 3, undefined, { timeout: slow(10_000) });
    const shown = await rows(page);
    expect(shown.some((r) => /^0:0 \S+  live one$/.test(r))).toBe(true);
    expect(shown.some((r) => /^1:1 \S+  \(base64\) \/\/4=$/.test(r))).toBe(true);

    await page.fill('#value', 'from the page');
    await page.click('#send button');
    await page.waitForFunction(() => document.querySelectorAll('.record').length === 4, undefined, { timeout: slow(10_000) });
    expect(await page.textContent('#status')).toMatch(/^produced at [01]:\d+$/);
    expect((await rows(page))[0]).toMatch(/ from the page$/);
    await shot(page, 'json-mode-tail.png');
    await page.close();
    expect(errors).toEqual([]);

    // the node holds what the page produced
    const parts = await Promise.all([0, 1].map(async (p) => (await http(node.url, 'GET', `/v1/topics/bt/records?partition=${p}`)).body.records));
    expect(parts.flat().map((r: { value: string }) => r.value)).toContain('from the page');
  }, slow(60_000));

  it('on a node with tokens takes the token from the fragment, never sent to its server; a refused origin is named', async () => {
    const made = await runCli(['token', 'create', '--scopes', 'topic:*:bt2', '--name', 'browser-tail', '--json']);
    expect(made.code, made.stderr).toBe(0);
    const { token, entry } = JSON.parse(made.stdout) as { token: string; entry: unknown };
    const cfg = path.join(dir, 'tokens.json');
    await writeFile(cfg, JSON.stringify({ security: { tokens: [entry], allowedOrigins: [origin] } }));
    const secured = await startNode({ args: ['--config', cfg] });
    try {
      const auth = { authorization: `Bearer ${token}` };
      expect((await http(secured.url, 'POST', '/v1/topics', { name: 'bt2', partitions: 1 }, auth)).status).toBe(201);
      await http(secured.url, 'POST', '/v1/topics/bt2/records', [{ value: 'with a token' }], auth);
      const page = await browser.newPage();
      await page.goto(`${origin}/?url=${encodeURIComponent(secured.url)}&topic=bt2#token=${token}`);
      await page.waitForSelector('body[data-ready="yes"]', { timeout: slow(10_000) });
      await page.waitForFunction(() => document.querySelectorAll('.record').length === 1, undefined, { timeout: slow(10_000) });
      expect((await rows(page))[0]).toMatch(/ with a token$/);
      expect(siteUrls.filter((u) => u.includes(token.slice(-20)))).toEqual([]);
      // a page from an origin the node does not list: the browser shows only 1006, the page says why
      await page.goto(`${origin.replace('127.0.0.1', 'localhost')}/?url=${encodeURIComponent(secured.url)}&topic=bt2`);
      await page.waitForFunction(() => /allowedOrigins/.test(document.getElementById('status')!.textContent ?? ''), undefined, { timeout: slow(10_000) });
      await page.close();
    } finally {
      await secured.stop();
    }
  }, slow(60_000));
});
