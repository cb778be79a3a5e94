// Record batches reach a partition worker two ways: small ones packed into the message, large ones
// beside it, transferred (threads.ts flush). Both, sent together, must land whole and in place.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BATCH_CONTENT_TYPE, encodeBatch } from '../src/protocol/batch.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

let node: NodeHandle;

beforeAll(async () => {
  node = await startNode();
  const res = await fetch(`${node.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'inl', partitions: 1 }) });
  expect(res.status).toBe(201);
}, slow(60_000));
afterAll(async () => { await node?.stop(); });

// 3 records of ~40 B are far below the inline bound (4 KiB); 300 of ~60 B are far above it
const sizes = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 3 : 300));
const valueOf = (b: number, i: number) => `batch ${b} record ${i} ${'x'.repeat(b % 2 === 0 ? 10 : 40)}`;

describe('produce batches small and large at once', () => {
  it('every record is stored at the offset its answer gave, with its own value', async () => {
    const answers = await Promise.all(sizes.map(async (n, b) => {
      const body = encodeBatch(Array.from({ length: n }, (_, i) => ({ value: valueOf(b, i), headers: { b: String(b) } })));
      expect(body.length > 4096).toBe(n === 300);
      const res = await fetch(`${node.url}/v1/topics/inl/records`, { method: 'POST', headers: { 'content-type': BATCH_CONTENT_TYPE }, body });
      expect(res.status).toBe(200);
      return ((await res.json()) as { records: Array<{ offset: number }> }).records.map((r) => r.offset);
    }));
    const total = sizes.reduce((a, n) => a + n, 0);
    const got = new Map<number, string>();
    for (let from = 0; got.size < total;) {
      const page = await (await fetch(`${node.url}/v1/topics/inl/records?offset=${from}&maxRecords=1000`)).json() as { records: Array<{ offset: number; value: string }> };
      expect(page.records.length).toBeGreaterThan(0);
      for (const r of page.records) got.set(r.offset, r.value);
      from = page.records[page.records.length - 1].offset + 1;
    }
    expect(got.size).toBe(total);
    answers.forEach((offsets, b) => {
      expect(offsets).toHaveLength(sizes[b]);
      offsets.forEach((o, i) => expect(got.get(o)).toBe(valueOf(b, i)));
    });
  }, slow(30_000));
});
