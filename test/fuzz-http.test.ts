// Arbitrary paths, queries and bodies against a real node: every answer is a well-formed error
// or success, and the node keeps serving with its data intact. Time-boxed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { http } from './helpers/http.js';

let node: NodeHandle;
beforeAll(async () => {
  node = await startNode();
  await http(node.url, 'POST', '/v1/topics', { name: 'fz', partitions: 2 });
  await http(node.url, 'PUT', '/v1/kv/fz/keep', 'me');
});
afterAll(async () => { await node?.stop(); });

const segment = fc.oneof(
  fc.constantFrom('v1', 'kv', 'topics', 'records', 'groups', 'offsets', 'fz', 'keep', '%00', '%ff', '..', '%2F', 'a'.repeat(300)),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
);
const query = fc.array(fc.tuple(
  fc.constantFrom('offset', 'partition', 'since', 'maxRecords', 'maxBytes', 'waitMs', 'acks', 'ttl', 'limit', 'prefix', 'producerId', 'sequence', 'tailBytes', 'from'),
  fc.oneof(fc.constantFrom('-1', '0', '1e99', 'NaN', '', '99999999999999999999', 'all', 'latest', '5m'), fc.string({ maxLength: 8 })),
), { maxLength: 4 }).map((qs) => qs.map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&'));
const body = fc.oneof(
  fc.constant(undefined),
  fc.json().map((j) => j),
  fc.uint8Array({ maxLength: 200 }),
  fc.array(fc.record({ value: fc.oneof(fc.string(), fc.integer()), key: fc.option(fc.string(), { nil: undefined }), headers: fc.option(fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer())), { nil: undefined }) }), { maxLength: 5 }).map((a) => JSON.stringify(a)),
);

describe('HTTP fuzz', () => {
  it('answers every request with a status and, for errors, a coded body', async () => {
    await fc.assert(fc.asyncProperty(
      fc.constantFrom('GET', 'PUT', 'POST', 'DELETE'), fc.array(segment, { minLength: 1, maxLength: 5 }), query, body,
      async (method, segs, q, b) => {
        const path = '/' + segs.join('/') + (q ? `?${q}` : '');
        // Never delete the fixtures the final check relies on.
        if (method === 'DELETE' && (path.includes('fz/keep') || /^\/v1\/topics\/fz\/?(\?|$)/.test(path))) return;
        const r = await http(node.url, method, path, method === 'GET' || method === 'DELETE' ? undefined : b as never);
        expect(r.status).toBeGreaterThanOrEqual(200);
        expect(r.status).toBeLessThan(600);
        expect(r.status).not.toBe(500);
        if (r.status >= 400) {
          expect(r.body?.error?.code, `${method} ${path} → ${r.status} ${r.text.slice(0, 200)}`).toMatch(/^[A-Z][A-Z0-9_]+$/);
          expect(typeof r.body.error.retryable).toBe('boolean');
        }
      }), { numRuns: 400, interruptAfterTimeLimit: 20_000 });
    expect((await http(node.url, 'GET', '/v1/health')).status).toBe(200);
    expect((await http(node.url, 'GET', '/v1/kv/fz/keep')).text).toBe('me');
  }, 60_000);
});
