// A fetch that asks for application/vnd.chicago.record-batch gets the stored batches as they are
// (no decoding on the node); decoded by the client library they are the records the JSON form
// gives, offset for offset. Without the Accept type the JSON form is unchanged.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';
import { BATCH_CONTENT_TYPE, decodeStoredBatches } from '../src/client/index.js';
import { encodeBatch } from '../src/protocol/batch.js';
import { acceptsBatches } from '../src/gateway/http.js';

let node: NodeHandle;
beforeAll(async () => {
  node = await startNode({ env: { CHICAGO_MAINTENANCE_INTERVAL_MS: '3600000' } });
  expect((await http(node.url, 'POST', '/v1/topics', { name: 'raw', partitions: 1 })).status).toBeLessThan(300);
  // JSON and batch produces mixed: 5 requests of 1..5 records, keys, headers, binary values
  for (let i = 0; i < 10; i++) {
    const n = (i % 5) + 1;
    const recs = Array.from({ length: n }, (_, j) => ({ key: j % 2 ? null : `k${i}.${j}`, value: `v${i}.${j}`, headers: j % 3 ? { a: `h${j}` } : {} }));
    const res = i % 2 === 0
      ? await http(node.url, 'POST', '/v1/topics/raw/records', recs.map((r) => ({ ...(r.key ? { key: r.key } : {}), value: r.value, headers: r.headers })))
      : await http(node.url, 'POST', '/v1/topics/raw/records', encodeBatch(recs.map((r) => ({ key: r.key === null ? null : Buffer.from(r.key), value: Buffer.from(r.value), headers: r.headers }))), { 'content-type': BATCH_CONTENT_TYPE });
    expect(res.status).toBeLessThan(300);
  }
});
afterAll(async () => { await node?.stop(); });

interface JsonRecord { offset: number; timestamp: number; key?: string; value: string; headers: Record<string, string> }

async function rawFetch(query: string): Promise<{ status: number; type: string | null; headers: Headers; body: Buffer }> {
  const res = await fetch(`${node.url}/v1/topics/raw/records?${query}`, { headers: { accept: BATCH_CONTENT_TYPE }, signal: AbortSignal.timeout(slow(30_000)) });
  return { status: res.status, type: res.headers.get('content-type'), headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

const asJson = (r: ReturnType<typeof decodeStoredBatches>[number]) => ({
  offset: r.offset, timestamp: r.timestampMs, ...(r.key ? { key: Buffer.from(r.key).toString() } : {}), value: Buffer.from(r.value).toString(), headers: r.headers ?? {},
});

describe('fetch as stored record batches', () => {
  it('decodes to the records the JSON form answers, from any offset', async () => {
    for (const offset of [0, 1, 4, 13, 29]) {
      const json = await http(node.url, 'GET', `/v1/topics/raw/records?offset=${offset}&maxRecords=1000`);
      const want = json.body.records as JsonRecord[];
      expect(want.length).toBe(30 - offset);
      const raw = await rawFetch(`offset=${offset}&maxRecords=1000`);
      expect(raw.status).toBe(200);
      expect(raw.type).toBe(BATCH_CONTENT_TYPE);
      expect(Number(raw.headers.get('x-chicago-first-offset'))).toBe(offset);
      expect(Number(raw.headers.get('x-chicago-next-offset'))).toBe(json.body.nextOffset);
      expect(Number(raw.headers.get('x-chicago-end-offset'))).toBe(30);
      const got = decodeStoredBatches(raw.body, offset).map(asJson);
      expect(got).toEqual(want.map((r) => ({ offset: r.offset, timestamp: r.timestamp, ...(r.key ? { key: r.key } : {}), value: r.value, headers: r.headers })));
    }
  });

  it('answers whole batches within maxRecords and maxBytes, at least one; next offset continues', async () => {
    const a = await rawFetch('offset=2&maxRecords=2');
    // batches of 1, 2, 3, 4, 5, 1, 2, … records: offset 2 is the second of [1, 2], then [3..5] still fits
    const recs = decodeStoredBatches(a.body, 2);
    const next = Number(a.headers.get('x-chicago-next-offset'));
    expect(recs[0].offset).toBe(2);
    expect(recs.at(-1)!.offset).toBe(next - 1);
    expect(recs.map((x) => x.offset)).toEqual([2, 3, 4, 5]);
    const all: number[] = [];
    let at = 0;
    for (let i = 0; i < 40 && at < 30; i++) {
      const r = await rawFetch(`offset=${at}&maxBytes=1`);
      const got = decodeStoredBatches(r.body, at);
      expect(got.length).toBeGreaterThan(0); // one batch, though larger than maxBytes
      all.push(...got.map((x) => x.offset));
      at = Number(r.headers.get('x-chicago-next-offset'));
    }
    expect(all).toEqual(Array.from({ length: 30 }, (_, i) => i));
    const end = await rawFetch('offset=30');
    expect(end.body.length).toBe(0);
    expect(Number(end.headers.get('x-chicago-next-offset'))).toBe(30);
  });

  it('keeps the JSON form for clients that did not ask, or prefer JSON', async () => {
    for (const accept of [undefined, 'application/json', `application/json, ${BATCH_CONTENT_TYPE}`, `${BATCH_CONTENT_TYPE};q=0`]) {
      const res = await http(node.url, 'GET', '/v1/topics/raw/records?offset=0', undefined, accept ? { accept } : {});
      expect(res.headers.get('content-type')).toMatch(/application\/json/);
      expect((res.body as { records: unknown[] }).records.length).toBe(30);
    }
    expect(acceptsBatches(`${BATCH_CONTENT_TYPE}, application/json`)).toBe(true);
    expect(acceptsBatches('*/*')).toBe(false);
  });

  it('refuses bytes that are not whole batches', () => {
    const one = encodeBatch([{ key: null, value: Buffer.from('x') }]);
    expect(() => decodeStoredBatches(one.subarray(0, one.length - 1))).toThrow(/batch/);
    expect(() => decodeStoredBatches(Buffer.concat([one, Buffer.alloc(10)]))).toThrow(/whole batch/);
  });
});
