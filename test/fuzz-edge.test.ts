// Generated HTTP requests and WebSocket frames against a real node: every answer is a success or an
// error from the catalogue (src/runtime/errors.ts), never INTERNAL; the node keeps serving with its
// fixtures intact. `npm test` runs a short, time-boxed version; the long suite
// (test/long/fuzz-long.test.ts) sets FUZZ_HTTP_RUNS and FUZZ_WS_RUNS to over a million in total.
//   FUZZ_SEED=… replays a run (fast-check prints the seed of a failure).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { ERRORS } from '../src/runtime/errors.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';

const HTTP_RUNS = Number(process.env.FUZZ_HTTP_RUNS ?? 300);
const WS_RUNS = Number(process.env.FUZZ_WS_RUNS ?? 300);
/** requests per property run, sent together */
const HTTP_BATCH = 8;
const WS_BATCH = 32;
const TIME_LIMIT_MS = Number(process.env.FUZZ_TIME_LIMIT_MS ?? 20_000);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
const CODES = new Set(Object.keys(ERRORS));

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

let node: NodeHandle;
beforeAll(async () => {
  node = await startNode();
  await http(node.url, 'POST', '/v1/topics', { name: 'fz', partitions: 2 });
  await http(node.url, 'PUT', '/v1/kv/fz/keep', 'me');
});
afterAll(async () => { await node?.stop(); });

const segment = fc.oneof(
  fc.constantFrom('v1', 'kv', 'topics', 'records', 'groups', 'offsets', 'fz', 'keep', 'health', 'status', 'metrics', '%00', '%ff', '..', '.', '%2E%2E', '%2F', '', 'a'.repeat(300), '%F0%9F%98%80', '%ED%A0%80'),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
);
const query = fc.array(fc.tuple(
  fc.constantFrom('offset', 'partition', 'since', 'maxRecords', 'maxBytes', 'waitMs', 'acks', 'ttl', 'limit', 'prefix', 'producerId', 'sequence', 'tailBytes', 'from', 'after'),
  fc.oneof(fc.constantFrom('-1', '0', '1', '0x10', '1.0', '1e99', 'NaN', '', ' 1', '99999999999999999999', 'all', 'none', 'latest', '5m'), fc.string({ maxLength: 8 })),
), { maxLength: 4 }).map((qs) => qs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&'));
const jsonish = fc.oneof(
  fc.json(),
  fc.array(fc.record({
    value: fc.oneof(fc.string(), fc.integer(), fc.constant('\ud800'), fc.object()),
    key: fc.option(fc.oneof(fc.string(), fc.integer()), { nil: undefined }),
    headers: fc.option(fc.dictionary(fc.oneof(fc.string(), fc.constant('__proto__')), fc.oneof(fc.string(), fc.integer())), { nil: undefined }),
  }), { maxLength: 5 }).map((a) => JSON.stringify(a)),
  fc.record({ name: fc.oneof(fc.string(), fc.constant('..')), partitions: fc.oneof(fc.integer(), fc.string()), retention: fc.anything() }).map((o) => JSON.stringify(o)),
  fc.nat({ max: 200 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
);
const body = fc.oneof(fc.constant(undefined), jsonish, fc.uint8Array({ maxLength: 300 }));
const contentType = fc.constantFrom(undefined, 'application/json', 'text/plain', 'application/x-ndjson', 'application/x-www-form-urlencoded', 'application/octet-stream');
const request = fc.record({
  method: fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'),
  segs: fc.array(segment, { minLength: 1, maxLength: 5 }),
  q: query,
  b: body,
  ct: contentType,
  origin: fc.constantFrom(undefined, undefined, 'http://evil.example'),
});

function checkAnswer(what: string, status: number, text: string, parsed: any): void {
  expect(status, what).toBeGreaterThanOrEqual(200);
  expect(status, what).toBeLessThan(600);
  if (status >= 400) {
    expect(CODES.has(parsed?.error?.code), `${what} → ${status} ${text.slice(0, 200)}`).toBe(true);
    expect(parsed.error.code, `${what} → ${text.slice(0, 200)}`).not.toBe('INTERNAL');
    expect(typeof parsed.error.retryable).toBe('boolean');
  }
}

describe('edge fuzz', () => {
  it(`answers generated HTTP requests (${HTTP_RUNS} × ${HTTP_BATCH}) with a success or a catalogued error, never INTERNAL`, async () => {
    let sent = 0;
    await fc.assert(fc.asyncProperty(fc.array(request, { minLength: HTTP_BATCH, maxLength: HTTP_BATCH }), async (reqs) => {
      await Promise.all(reqs.map(async ({ method, segs, q, b, ct, origin }) => {
        const path = '/' + segs.join('/') + (q ? `?${q}` : '');
        // never delete the fixtures the final check relies on
        if (method === 'DELETE' && (path.includes('fz/keep') || /^\/v1\/topics\/fz\/?(\?|$)/.test(path))) return;
        const headers: Record<string, string> = {};
        if (ct) headers['content-type'] = ct;
        if (origin) headers.origin = origin;
        let r;
        try {
          r = await http(node.url, method, path, method === 'GET' || method === 'DELETE' || method === 'OPTIONS' ? undefined : b as never, headers);
        } catch (e) {
          // fetch itself refuses some targets; the node must still be up
          expect(String(e)).not.toMatch(/ECONNREFUSED/);
          return;
        }
        sent++;
        checkAnswer(`${method} ${path}`, r.status, r.text, r.body);
      }));
    }), { numRuns: HTTP_RUNS, interruptAfterTimeLimit: slow(TIME_LIMIT_MS), seed: SEED });
    console.log(`edge fuzz: ${sent} HTTP requests answered`);
    expect((await http(node.url, 'GET', '/v1/health')).status).toBe(200);
    expect((await http(node.url, 'GET', '/v1/kv/fz/keep')).text).toBe('me');
  }, slow(Math.max(60_000, TIME_LIMIT_MS * 2)));

  it(`answers generated WebSocket frames (${WS_RUNS} × ${WS_BATCH}) with a reply or a catalogued error, never INTERNAL`, async () => {
    const bin = fc.uint8Array({ maxLength: 64 });
    const op = fc.constantFrom('hello', 'produce', 'kv.put', 'kv.get', 'kv.delete', 'kv.scan', 'subscribe', 'credit', 'unsubscribe', 'commit', 'offsets', 'nope');
    const frame = fc.oneof(
      fc.record({
        op, id: fc.oneof(fc.nat(), fc.integer(), fc.constant(0)), topic: fc.constantFrom('fz', 'nope', '..', ''), ks: fc.constantFrom('fz', 'x', ''), key: fc.oneof(bin, fc.string()), value: fc.oneof(bin, fc.string()),
        acks: fc.constantFrom('all', 'one', 'none', 'x'), partition: fc.oneof(fc.nat({ max: 3 }), fc.double()), records: fc.array(fc.tuple(bin, fc.option(bin), fc.option(fc.dictionary(fc.string(), fc.string())))),
        from: fc.oneof(fc.constantFrom('earliest', 'latest'), fc.record({ offset: fc.integer() })), credit: fc.integer(), sub: fc.nat(), bytes: fc.integer(), limit: fc.integer(), versions: fc.array(fc.integer()),
        group: fc.constantFrom('g', ''), offset: fc.integer(),
      }, { requiredKeys: ['op'] }),
      fc.anything(),
    ).map((f) => packr.pack(f));
    const raw = fc.oneof(frame, frame, frame, bin.map((b) => Buffer.from(b)));
    let answered = 0;
    let ws: WebSocket | undefined;
    const frames: any[] = [];
    const connect = async () => {
      ws = new WebSocket(node.url.replace('http', 'ws') + '/v1/ws');
      ws.on('message', (d: Buffer) => { try { frames.push(unpackr.unpack(d)); } catch { frames.push({ undecodable: true }); } });
      ws.on('error', () => undefined);
      await new Promise((r, j) => { ws!.once('open', r); ws!.once('error', j); });
    };
    await fc.assert(fc.asyncProperty(fc.array(raw, { minLength: WS_BATCH, maxLength: WS_BATCH }), async (batch) => {
      if (!ws || ws.readyState !== WebSocket.OPEN) await connect();
      const socket = ws!;
      for (const f of batch) socket.send(f);
      // a round trip after the batch: the server answers in order, so everything before it is in
      socket.send(packr.pack({ op: 'kv.get', id: 4_000_000_000, ks: 'fz', key: Buffer.from('keep') }));
      const deadline = Date.now() + slow(5_000);
      while (!frames.some((f) => f?.id === 4_000_000_000) && socket.readyState === WebSocket.OPEN && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      for (const f of frames.splice(0)) {
        expect(f.undecodable, 'a server frame that is not msgpack').toBeUndefined();
        if (f.op === 'err') {
          expect(CODES.has(f.code), JSON.stringify(f).slice(0, 200)).toBe(true);
          expect(f.code, JSON.stringify(f).slice(0, 200)).not.toBe('INTERNAL');
        }
        answered++;
      }
      // a closed connection is allowed (too many bad frames in a row: close code 4100); it reconnects
    }), { numRuns: WS_RUNS, interruptAfterTimeLimit: slow(TIME_LIMIT_MS), seed: SEED });
    ws?.close();
    console.log(`edge fuzz: ${answered} WebSocket frames answered`);
    expect(answered).toBeGreaterThan(0);
    expect((await http(node.url, 'GET', '/v1/kv/fz/keep')).text).toBe('me');
  }, slow(Math.max(60_000, TIME_LIMIT_MS * 2)));
});
