// A fetch that asks for application/vnd.chicago.record-batch gets the stored batches as they are
// (no decoding on the node); decoded by the client library they are the records the JSON form
// gives, offset for offset. Without the Accept type the JSON form is unchanged. Tails over /v1/ws
// push the stored batches to a client whose hello accepts `batches` (the reference client does).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';
import WebSocket from 'ws';
import { BATCH_CONTENT_TYPE, ChicagoClient, decodeStoredBatches } from '../src/client/index.js';
import { encodeFrame, parseServerFrame, PROTOCOL_VERSION, type ServerFrame } from '../src/protocol/frames.js';
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

/** The frames a bare /v1/ws connection gets for a subscription from offset 0 with `credit` bytes. */
async function subscribeRaw(accept: string[] | undefined, credit: number, until: (frames: ServerFrame[]) => boolean, from = 4, onReply?: () => void): Promise<ServerFrame[]> {
  const ws = new WebSocket(node.url.replace(/^http/, 'ws') + '/v1/ws');
  const frames: ServerFrame[] = [];
  try {
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no end: ${JSON.stringify(frames.map((f) => f.op))}`)), slow(10_000));
      ws.on('message', (data: Buffer) => {
        const p = parseServerFrame(data);
        if (!p.ok) return reject(p.error);
        frames.push(p.frame);
        if (p.frame.op === 'res' && p.frame.id === 2) onReply?.();
        if (until(frames)) { clearTimeout(timer); resolve(); }
      });
    });
    ws.send(encodeFrame({ op: 'hello', id: 1, versions: [PROTOCOL_VERSION], ...(accept ? { accept } : {}) }));
    ws.send(encodeFrame({ op: 'subscribe', id: 2, topic: 'raw', partition: 0, from: { offset: from }, credit }));
    await done;
    return frames;
  } finally {
    ws.close();
  }
}

describe('tails of stored record batches', () => {
  const pushedOffsets = (frames: ServerFrame[]): number[] => frames.flatMap((f) =>
    f.op === 'batches' ? f.batches.flatMap((b) => decodeStoredBatches(b, f.first).map((r) => r.offset)) : f.op === 'records' ? f.records.map((r) => r[0]) : []);

  it('pushes batches, as stored, to a client that accepts them, and records to one that does not', async () => {
    const all = (frames: ServerFrame[]) => pushedOffsets(frames).at(-1) === 29;
    const raw = await subscribeRaw(['batches'], 1 << 20, all);
    expect(raw.some((f) => f.op === 'batches')).toBe(true);
    expect(raw.some((f) => f.op === 'records')).toBe(false);
    expect(pushedOffsets(raw)).toEqual(Array.from({ length: 26 }, (_, i) => i + 4));
    const stored = await rawFetch('offset=4&maxRecords=1000');
    const pushed = Buffer.concat(raw.flatMap((f) => (f.op === 'batches' ? f.batches : [])));
    expect(pushed.equals(stored.body)).toBe(true); // the stored bytes, byte for byte
    const plain = await subscribeRaw(undefined, 1 << 20, all);
    expect(plain.some((f) => f.op === 'batches')).toBe(false);
    expect(pushedOffsets(plain)).toEqual(Array.from({ length: 26 }, (_, i) => i + 4));
  });

  it('charges a batch its length of the credit: a small credit gets one batch at a time', async () => {
    const frames = await subscribeRaw(['batches'], 1, (f) => f.some((x) => x.op === 'batches'));
    await new Promise((r) => setTimeout(r, 300)); // nothing more comes without more credit
    const pushes = frames.filter((f) => f.op === 'batches') as Array<Extract<ServerFrame, { op: 'batches' }>>;
    expect(pushes).toHaveLength(1);
    expect(pushes[0].batches).toHaveLength(1);
    expect(pushes[0].bytes).toBe(pushes[0].batches[0].length);
  });

  it('the reference client decodes them: a tail reads what the JSON fetch reads, live appends included', async () => {
    const c = await ChicagoClient.connect({ url: node.url });
    try {
      const t = c.tail('raw', 0, { from: 'earliest', creditBytes: 64 });
      const got: Array<{ offset: number; timestamp: number; key?: string; value: string; headers: Record<string, string> }> = [];
      for await (const r of t) {
        got.push({ offset: r.offset, timestamp: r.timestampMs, ...(r.key ? { key: r.key.toString() } : {}), value: r.value.toString(), headers: r.headers });
        if (r.offset === 29) {
          expect((await http(node.url, 'POST', '/v1/topics/raw/records', [{ value: 'live', key: 'k' }])).status).toBeLessThan(300);
        }
        if (r.offset === 30) break;
      }
      const json = (await http(node.url, 'GET', '/v1/topics/raw/records?offset=0&maxRecords=1000')).body.records as JsonRecord[];
      expect(got).toEqual(json.map((r) => ({ offset: r.offset, timestamp: r.timestamp, ...(r.key ? { key: r.key } : {}), value: r.value, headers: r.headers })));
    } finally {
      await c.close();
    }
  });

  it('pushes a live append as the bytes the partition stored, JSON and batch produces alike', async () => {
    const end = Number((await rawFetch('offset=0&maxRecords=1')).headers.get('x-chicago-end-offset'));
    let produced: Promise<unknown> | undefined;
    const frames = await subscribeRaw(['batches'], 1 << 20, (f) => pushedOffsets(f).at(-1) === end + 1, end, () => {
      produced = (async () => {
        await http(node.url, 'POST', '/v1/topics/raw/records', [{ key: 'j', value: 'json-live', headers: { x: 'y' } }]);
        await http(node.url, 'POST', '/v1/topics/raw/records', encodeBatch([{ key: null, value: Buffer.from('batch-live') }]), { 'content-type': BATCH_CONTENT_TYPE });
      })();
    });
    await produced;
    const pushed = Buffer.concat(frames.flatMap((f) => (f.op === 'batches' ? f.batches : [])));
    expect(pushed.equals((await rawFetch(`offset=${end}`)).body)).toBe(true);
    expect(decodeStoredBatches(pushed, end).map((r) => Buffer.from(r.value).toString())).toEqual(['json-live', 'batch-live']);
  });
});
