// Real headless Chromium (Debian's, driven by playwright-core) against a real node: a page from an
// origin that is not allowed tries to write with every cross-site trick a page has (a "simple"
// text/plain fetch that needs no preflight, a JSON fetch, a form post, a WebSocket) and changes
// nothing; a page from the allowed origin writes and reads with CORS. Screenshots go to
// test-results/ (not committed).
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { http } from './helpers/http.js';
import { repoRoot, startNode, type NodeHandle } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`browser tests skipped: ${CHROMIUM} is missing (scripts/test-deps.sh installs Debian's chromium)`);

function servePage(host: string, html: string): Promise<{ server: Server; origin: string }> {
  const server = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end(html); });
  return new Promise((resolve) => server.listen(0, host, () => resolve({ server, origin: `http://${host}:${(server.address() as { port: number }).port}` })));
}

describe.skipIf(!haveChromium)('browsers (headless Chromium)', () => {
  let node: NodeHandle;
  let browser: Browser;
  let good: { server: Server; origin: string };
  let evil: { server: Server; origin: string };
  let dir: string;
  const shots = path.join(repoRoot, 'test-results', 'browser');
  // a screenshot is for people reading a failure, not part of the property: Chromium under load
  // sometimes cannot capture one, which is logged, not failed
  const shot = async (page: Page, name: string) => {
    try {
      await page.screenshot({ path: path.join(shots, name), timeout: slow(5_000) });
    } catch (err) {
      console.warn(`screenshot ${name} not taken: ${(err as Error).message.split('\n')[0]}`);
    }
  };

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    good = await servePage('127.0.0.1', '<title>console</title><h1>console</h1>');
    evil = await servePage('127.0.0.2', '<title>evil</title><h1>evil</h1><form id="f" method="POST" enctype="text/plain"><input name=\'[{"value":"form","x":"\' value=\'"}]\'></form>');
    dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-browser-'));
    const cfg = path.join(dir, 'node.json');
    await writeFile(cfg, JSON.stringify({ security: { allowedOrigins: [good.origin] } }));
    node = await startNode({ args: ['--config', cfg] });
    await http(node.url, 'POST', '/v1/topics', { name: 'web', partitions: 1 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await node?.stop();
    good?.server.close();
    evil?.server.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const endOffset = async () => (await http(node.url, 'GET', '/v1/topics/web')).body.partitions[0].endOffset as number;

  it('a page from another origin cannot write, by fetch, form or WebSocket', async () => {
    const page = await browser.newPage();
    await page.goto(evil.origin);
    const tried = await page.evaluate(async (url) => {
      const out: Record<string, string> = {};
      // a "simple" request: no preflight, the browser sends it and only hides the answer
      try { await fetch(`${url}/v1/topics/web/records`, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: '[{"value":"simple"}]' }); out.simple = 'sent'; } catch (e) { out.simple = String(e); }
      try { const r = await fetch(`${url}/v1/topics/web/records`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[{"value":"json"}]' }); out.json = String(r.status); } catch (e) { out.json = 'blocked'; }
      // needs a preflight, which the node refuses for this origin
      try { const r = await fetch(`${url}/v1/topics/web`, { method: 'DELETE' }); out.del = String(r.status); } catch (e) { out.del = 'blocked'; }
      out.ws = await new Promise<string>((resolve) => {
        const ws = new WebSocket(`${url.replace('http', 'ws')}/v1/ws`);
        ws.onopen = () => resolve('open');
        ws.onerror = () => resolve('refused');
      });
      return out;
    }, node.url);
    // the form posts cross-site too (navigates away)
    await page.evaluate((url) => { const f = document.getElementById('f') as HTMLFormElement; f.action = `${url}/v1/topics/web/records`; f.submit(); }, node.url);
    await page.waitForLoadState('load');
    await shot(page, 'evil-origin.png');
    await page.close();
    expect(tried).toEqual({ simple: 'sent', json: 'blocked', del: 'blocked', ws: 'refused' });
    expect(await endOffset()).toBe(0);
    expect((await http(node.url, 'GET', '/v1/topics/web')).status).toBe(200); // not deleted
    const m = (await http(node.url, 'GET', '/metrics')).text;
    expect(m).toMatch(/chicago_auth_refused_total\{edge="http",code="FORBIDDEN",reason="origin"\} [3-9]/);
    expect(m).toMatch(/chicago_auth_refused_total\{edge="ws",code="FORBIDDEN",reason="origin"\} [1-9]/);
  });

  it('the allowed origin writes and reads through CORS and the WebSocket', async () => {
    const page = await browser.newPage();
    await page.goto(good.origin);
    const result = await page.evaluate(async (url) => {
      const w = await fetch(`${url}/v1/topics/web/records`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '[{"value":"from the console"}]' });
      const r = await fetch(`${url}/v1/topics/web/records?partition=0`);
      const ws = await new Promise<string>((resolve) => {
        const s = new WebSocket(`${url.replace('http', 'ws')}/v1/ws`);
        s.onopen = () => { s.close(); resolve('open'); };
        s.onerror = () => resolve('refused');
      });
      return { write: w.status, read: (await r.json()).records.map((x: { value: string }) => x.value), ws };
    }, node.url);
    await shot(page, 'allowed-origin.png');
    await page.close();
    expect(result).toEqual({ write: 200, read: ['from the console'], ws: 'open' });
    expect(await endOffset()).toBe(1);
  });
});
