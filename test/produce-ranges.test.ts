// The compact produce answer: a client that asks for it (HTTP Accept, WebSocket hello accept) gets
// one range per run of records instead of one offset per record; one that does not gets the old
// answer; the TypeScript client and the agent's shipper ask for it and read it right.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ChicagoClient } from '../src/client/index.js';
import { placesOf } from '../src/client/producer.js';
import type { Session } from '../src/client/session.js';
import { PRODUCE_RANGES_TYPE, rangesOf } from '../src/protocol/api.js';
import { BATCH_CONTENT_TYPE, encodeBatch } from '../src/protocol/batch.js';
import { encodeFrame, parseServerFrame } from '../src/protocol/frames.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

let node: NodeHandle;

beforeAll(async () => {
  node = await startNode();
  for (const [name, partitions] of [['pr-one', 1], ['pr-four', 4]] as const) {
    const res = await fetch(`${node.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, partitions }) });
    expect(res.status).toBe(201);
  }
}, slow(60_000));
afterAll(async () => { await node?.stop(); });

async function produce(topic: string, body: Buffer | string, opts: { batch?: boolean; ranges?: boolean; query?: string } = {}): Promise<{ status: number; answer: Record<string, unknown> }> {
  const res = await fetch(`${node.url}/v1/topics/${topic}/records?${opts.query ?? ''}`, {
    method: 'POST',
    headers: { 'content-type': opts.batch ? BATCH_CONTENT_TYPE : 'application/json', ...(opts.ranges ? { accept: PRODUCE_RANGES_TYPE } : {}) },
    body,
  });
  return { status: res.status, answer: (await res.json()) as Record<string, unknown> };
}

const batchOf = (n: number, tag: string) => encodeBatch(Array.from({ length: n }, (_, i) => ({ value: `${tag} ${i}`, headers: { host: 'h', seq: String(i) } })));

describe('HTTP produce answer', () => {
  it('a batch: one range with Accept, one offset per record without', async () => {
    const full = await produce('pr-one', batchOf(500, 'full'), { batch: true });
    expect(full.status).toBe(200);
    const records = full.answer.records as Array<{ partition: number; offset: number }>;
    expect(records).toHaveLength(500);
    expect(full.answer.ranges).toBeUndefined();
    const compact = await produce('pr-one', batchOf(500, 'compact'), { batch: true, ranges: true });
    expect(compact.status).toBe(200);
    expect(compact.answer).toEqual({ ranges: [{ partition: 0, offset: records[499].offset + 1, count: 500 }], replicas: 1 });
    // what the range says is where the records are
    const read = await (await fetch(`${node.url}/v1/topics/pr-one/records?offset=${records[499].offset + 1}&maxRecords=500`)).json() as { records: Array<{ offset: number; value: string }> };
    expect(read.records.map((r) => r.value)).toEqual(Array.from({ length: 500 }, (_, i) => `compact ${i}`));
  });

  it('an idempotent retry answers the same range with duplicate', async () => {
    const q = 'producerId=pr-test&sequence=0&partition=0';
    const first = await produce('pr-one', batchOf(10, 'idem'), { batch: true, ranges: true, query: q });
    const again = await produce('pr-one', batchOf(10, 'idem'), { batch: true, ranges: true, query: q });
    expect(again.answer).toEqual({ ...first.answer, duplicate: true });
  });

  it('keyed JSON records spread over partitions: runs in input order that account for every record', async () => {
    const recs = Array.from({ length: 40 }, (_, i) => ({ key: `k${i % 7}`, value: `v${i}` }));
    const full = await produce('pr-four', JSON.stringify(recs));
    const placed = full.answer.records as Array<{ partition: number; offset: number }>;
    const compact = await produce('pr-four', JSON.stringify(recs), { ranges: true });
    const ranges = compact.answer.ranges as Array<{ partition: number; offset: number; count: number }>;
    expect(ranges.reduce((n, r) => n + r.count, 0)).toBe(40);
    // the same keys land on the same partitions, each after the first request's records
    const at = placesOf(compact.answer, 40);
    expect(typeof at).toBe('function');
    for (let i = 0; i < 40; i++) expect((at as (i: number) => { partition: number })(i).partition).toBe(placed[i].partition);
    // acks=none answers no ranges
    const none = await produce('pr-four', JSON.stringify(recs), { ranges: true, query: 'acks=none' });
    expect(none).toEqual({ status: 202, answer: { ranges: [], replicas: 0 } });
    // the Accept header is read as for fetch: q=0 refuses it, JSON listed first wins
    for (const accept of [`${PRODUCE_RANGES_TYPE};q=0`, `application/json, ${PRODUCE_RANGES_TYPE}`]) {
      const res = await fetch(`${node.url}/v1/topics/pr-four/records`, { method: 'POST', headers: { 'content-type': 'application/json', accept }, body: JSON.stringify(recs) });
      const answer = await res.json() as Record<string, unknown>;
      expect(answer.ranges).toBeUndefined();
      expect((answer.records as unknown[]).length).toBe(40);
    }
  });
});

describe('WebSocket produce answer', () => {
  async function raw(accept?: string[]): Promise<{ ws: WebSocket; ask: (f: Record<string, unknown>) => Promise<Record<string, unknown>> }> {
    const ws = new WebSocket(`${node.url.replace('http', 'ws')}/v1/ws`);
    const waiting = new Map<number, (f: Record<string, unknown>) => void>();
    ws.on('message', (d: Buffer) => {
      const p = parseServerFrame(d);
      if (p.ok) waiting.get((p.frame as { id: number }).id)?.(p.frame as Record<string, unknown>);
    });
    await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
    let id = 0;
    const ask = (f: Record<string, unknown>) => new Promise<Record<string, unknown>>((resolve) => {
      const n = ++id;
      waiting.set(n, resolve);
      ws.send(Buffer.from(encodeFrame({ ...f, id: n } as never)));
    });
    const hello = await ask({ op: 'hello', versions: [1], ...(accept ? { accept } : {}) });
    expect(hello.features).toEqual(['batch', 'batches', 'ranges']);
    return { ws, ask };
  }

  it('columnar offsets without ranges in the hello\'s accept, ranges with it; unknown names are ignored', async () => {
    const old = await raw();
    const a = await old.ask({ op: 'produce', topic: 'pr-one', acks: 'all', batch: batchOf(50, 'ws') });
    expect((a.offsets as number[]).length).toBe(50);
    old.ws.close();
    const neu = await raw(['ranges', 'some-future-thing']);
    const b = await neu.ask({ op: 'produce', topic: 'pr-one', acks: 'all', batch: batchOf(50, 'ws') });
    expect(b).toMatchObject({ op: 'res', ranges: [{ partition: 0, offset: (a.offsets as number[])[49] + 1, count: 50 }], replicas: 1 });
    expect(b.offsets).toBeUndefined();
    neu.ws.close();
  });

  it('the client asks for ranges and resolves every record\'s offset from them', async () => {
    const c = await ChicagoClient.connect({ url: node.url });
    try {
      // the client's session asked for ranges in its hello: a produce through it is answered with them
      const session = (c as unknown as { session: Session }).session;
      const direct = await session.request({ op: 'produce', topic: 'pr-one', acks: 'all', records: [[Buffer.from('a')], [Buffer.from('b')]] }, 'write');
      expect(direct).toMatchObject({ ranges: [{ partition: 0, count: 2 }], replicas: 1 });
      expect(direct.offsets).toBeUndefined();
      const p = c.producer();
      const placed = await Promise.all(Array.from({ length: 300 }, (_, i) => p.send('pr-one', { value: `client ${i}` })));
      await p.close();
      const offsets = placed.map((p) => p.offset);
      // distinct and, for one partition and one producer, in order
      expect(offsets).toEqual([...offsets].sort((x, y) => x - y));
      expect(new Set(offsets).size).toBe(300);
      const read = await (await fetch(`${node.url}/v1/topics/pr-one/records?offset=${offsets[0]}&maxRecords=300`)).json() as { records: Array<{ offset: number; value: string }> };
      const byOffset = new Map(read.records.map((r) => [r.offset, r.value]));
      for (let i = 0; i < 300; i++) expect(byOffset.get(offsets[i])).toBe(`client ${i}`);
    } finally {
      c.close();
    }
  });
});

describe('ranges', () => {
  it('rangesOf makes runs; placesOf reads either answer and refuses one that does not add up', () => {
    const recs = [[0, 5], [0, 6], [1, 0], [0, 7], [0, 8], [0, 9]].map(([partition, offset]) => ({ partition, offset })) as never;
    expect(rangesOf(recs)).toEqual([{ partition: 0, offset: 5, count: 2 }, { partition: 1, offset: 0, count: 1 }, { partition: 0, offset: 7, count: 3 }]);
    const at = placesOf({ ranges: rangesOf(recs) }, 6) as (i: number) => unknown;
    expect(Array.from({ length: 6 }, (_, i) => at(i))).toEqual(recs);
    expect(placesOf({ ranges: [{ partition: 0, offset: 0, count: 2 }] }, 3)).toMatch(/2 records, not 3/);
    expect(placesOf({ partitions: [0], offsets: [4] }, 1)).toBeTypeOf('function');
    expect(placesOf({}, 1)).toMatch(/offsets/);
  });
});
