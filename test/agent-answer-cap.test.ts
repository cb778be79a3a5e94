// The agent's requests to a node hold at most a frame's worth of answer (limits.frameBytesMax): a
// server that answers without end is cut off with a clear error, not buffered.
import { afterAll, beforeAll, expect, it } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { nodeRequest, NodeError } from '../src/agent/shipper.js';
import { limits } from '../src/runtime/limits.js';

let server: http.Server;
let url: string;
beforeAll(async () => {
  const chunk = Buffer.alloc(1024 * 1024, 0x20);
  server = http.createServer((req, res) => {
    if (req.url === '/small') { res.end('{"ok":true}'); return; }
    res.writeHead(200, { 'content-type': 'application/json' });
    let sent = 0;
    // bounded: a little past the cap, then stop
    const more = () => { while (sent <= limits.frameBytesMax + chunk.length * 2 && !res.destroyed) { sent += chunk.length; if (!res.write(chunk)) return void res.once('drain', more); } res.end(); };
    more();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

it('cuts off an answer larger than a frame with VALUE_TOO_LARGE, and reads a normal one', async () => {
  const node = { url, timeoutMs: 10_000 } as never;
  expect(await nodeRequest(node, 'GET', '/small', undefined, AbortSignal.timeout(10_000))).toEqual({ ok: true });
  const err = await nodeRequest(node, 'GET', '/huge', undefined, AbortSignal.timeout(10_000)).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NodeError);
  expect(err).toMatchObject({ code: 'VALUE_TOO_LARGE', retryable: true });
});
