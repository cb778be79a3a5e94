// httpRequest (the node:http stand-in for fetch in the guard and the router): a total deadline, a
// bounded reply, and an answer that is not 2xx is a reply, not an error.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest } from '../src/client/http-json.js';
import { ChicagoError } from '../src/runtime/errors.js';
import { makeCerts } from './helpers/certs.js';
import { slow } from './helpers/slow.js';

let server: http.Server;
let base: string;
beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/drip') { // a byte every 50 ms: a socket idle timeout never fires
      res.writeHead(200);
      const t = setInterval(() => res.write('x'), 50);
      res.on('close', () => clearInterval(t));
    } else if (req.url === '/big') {
      res.writeHead(200);
      const chunk = Buffer.alloc(1 << 20);
      let n = 0;
      const more = (): void => { while (n < 6 && res.write(chunk)) n++; if (n < 6) res.once('drain', () => { n++; more(); }); else res.end(); };
      more();
    } else if (req.url === '/moved') {
      res.writeHead(302, { location: '/json' }).end();
    } else {
      let body = '';
      req.on('data', (c: Buffer) => { body += c.toString(); });
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ method: req.method, body })));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => { server.closeAllConnections(); server.close(); });

describe('httpRequest', () => {
  it('sends a body and returns the reply text', async () => {
    const r = await httpRequest(`${base}/json`, { method: 'POST', body: 'ban 198.18.0.1 60\n', timeoutMs: slow(2000) });
    expect(r).toMatchObject({ status: 200, ok: true });
    expect(JSON.parse(r.text)).toEqual({ method: 'POST', body: 'ban 198.18.0.1 60\n' });
  });

  it('gives up on a reply that drips past the deadline with TIMEOUT', async () => {
    const t0 = Date.now();
    const err = await httpRequest(`${base}/drip`, { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChicagoError);
    expect((err as ChicagoError).code).toBe('TIMEOUT');
    expect(Date.now() - t0).toBeLessThan(slow(3000));
  });

  it('refuses a reply over its byte limit', async () => {
    const err = await httpRequest(`${base}/big`, { timeoutMs: slow(5000) }).catch((e: unknown) => e);
    expect((err as ChicagoError).code).toBe('FRAME_TOO_LARGE');
  });

  it('returns a redirect as a reply that is not ok', async () => {
    expect(await httpRequest(`${base}/moved`, { timeoutMs: slow(2000) })).toMatchObject({ status: 302, ok: false });
  });

  it('trusts the CA it is given for https, and only that', async () => {
    const certs = await makeCerts(['127.0.0.1']);
    const tls = https.createServer({ cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile) }, (_req, res) => res.end('{}'));
    try {
      await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
      const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/`;
      expect(await httpRequest(url, { ca: certs.ca, timeoutMs: slow(2000) })).toMatchObject({ status: 200, text: '{}' });
      // the system CAs do not know the test CA
      const err = await httpRequest(url, { timeoutMs: slow(2000) }).catch((e: unknown) => e);
      expect((err as NodeJS.ErrnoException).code).toMatch(/CERT|SELF_SIGNED|UNABLE/);
    } finally {
      tls.closeAllConnections();
      tls.close();
      await certs.cleanup();
    }
  });
});

