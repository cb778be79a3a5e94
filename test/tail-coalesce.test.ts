// A caught-up tail gets the appends that one sync makes durable in one frame (`batches`, or
// `records` for a subscriber that did not ask for batches), not a frame per append: in offset
// order, byte for byte as stored, charged exactly their length of the credit; the reference client
// reads them as it reads any push.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';
import { waitUntil } from './helpers/bridge.js';
import { ChicagoClient, decodeStoredBatches, BATCH_CONTENT_TYPE } from '../src/client/index.js';
import { encodeFrame, fromRecordTuple, parseServerFrame, PROTOCOL_VERSION, storedRecordBytes, type ServerFrame } from '../src/protocol/frames.js';
import { encodeBatch } from '../src/protocol/batch.js';

/** single-record produces sent back to back on one socket: the worker answers many per sync */
const N = 400;

let node: NodeHandle;
beforeAll(async () => {
  node = await startNode({ env: { CHICAGO_MAINTENANCE_INTERVAL_MS: '3600000' } });
  expect((await http(node.url, 'POST', '/v1/topics', { name: 'co', partitions: 1 })).status).toBeLessThan(300);
});
afterAll(async () => { await node?.stop(); });

function wsOpen(): Promise<WebSocket> {
  const ws = new WebSocket(node.url.replace(/^http/, 'ws') + '/v1/ws');
  return new Promise((resolve, reject) => { ws.once('open', () => resolve(ws)); ws.once('error', reject); });
}

async function endOffset(): Promise<number> {
  const res = await fetch(`${node.url}/v1/topics/co/records?offset=0&maxRecords=1`, { headers: { accept: BATCH_CONTENT_TYPE }, signal: AbortSignal.timeout(slow(10_000)) });
  await res.arrayBuffer();
  return Number(res.headers.get('x-chicago-end-offset'));
}

/** Produces `n` records, one per request, pipelined on one socket; resolves when every one is answered. */
async function burst(n: number, tag: string): Promise<void> {
  const ws = await wsOpen();
  try {
    const answered = new Promise<void>((resolve, reject) => {
      let left = n;
      const timer = setTimeout(() => reject(new Error(`${left} produces unanswered`)), slow(20_000));
      ws.on('message', (d: Buffer) => {
        const p = parseServerFrame(d);
        if (!p.ok || p.frame.op === 'err') { clearTimeout(timer); reject(new Error(JSON.stringify(p.ok ? p.frame : p.error))); return; }
        if (p.frame.op === 'res' && p.frame.id > 1 && --left === 0) { clearTimeout(timer); resolve(); }
      });
    });
    ws.send(encodeFrame({ op: 'hello', id: 1, versions: [PROTOCOL_VERSION] }));
    for (let i = 0; i < n; i++) {
      const value = Buffer.from(`${tag}${i}`);
      // records and batch produces alike: the tail pushes what the partition stored for each
      ws.send(encodeFrame(i % 2
        ? { op: 'produce', id: i + 2, topic: 'co', partition: 0, acks: 'one', records: [[value]] }
        : { op: 'produce', id: i + 2, topic: 'co', partition: 0, acks: 'one', batch: encodeBatch([{ key: null, value }]) }));
    }
    await answered;
  } finally {
    ws.close();
  }
}

/** A bare /v1/ws subscriber from `from`, its hello accepting `accept`; pushes of `op` in `frames`, the rest in `others`. */
async function subscriber<Op extends 'batches' | 'records'>(op: Op, accept: string[] | undefined, from: number) {
  const ws = await wsOpen();
  const frames: Array<Extract<ServerFrame, { op: Op }>> = [];
  const others: ServerFrame[] = [];
  ws.on('message', (d: Buffer) => {
    const p = parseServerFrame(d);
    if (!p.ok) throw p.error;
    if (p.frame.op === op) frames.push(p.frame as Extract<ServerFrame, { op: Op }>);
    else others.push(p.frame);
  });
  ws.send(encodeFrame({ op: 'hello', id: 1, versions: [PROTOCOL_VERSION], ...(accept ? { accept } : {}) }));
  ws.send(encodeFrame({ op: 'subscribe', id: 2, topic: 'co', partition: 0, from: { offset: from }, credit: 64 << 20 }));
  await waitUntil('the subscription to be open', () => others.some((f) => f.op === 'res' && f.id === 2), slow(10_000), 5);
  return { ws, frames, others };
}

describe('a caught-up tail of stored batches', () => {
  it('gets appends made durable together in one frame, in order, as stored, charged their length', async () => {
    const from = await endOffset();
    const { ws, frames, others } = await subscriber('batches', ['batches'], from);
    try {
      await burst(N, 'a');
      const offsets = (): number[] => frames.flatMap((f) => f.batches.flatMap((b) => decodeStoredBatches(b, f.first).map((r) => r.offset)));
      await waitUntil('every append to be pushed', () => offsets().length >= N, slow(10_000), 5);
      expect(offsets()).toEqual(Array.from({ length: N }, (_, i) => from + i));
      const values = frames.flatMap((f) => f.batches.flatMap((b) => decodeStoredBatches(b, f.first).map((r) => Buffer.from(r.value).toString())));
      expect(values).toEqual(Array.from({ length: N }, (_, i) => `a${i}`));
      // the bytes the partition stored, byte for byte
      const stored = await fetch(`${node.url}/v1/topics/co/records?offset=${from}&maxRecords=1000`, { headers: { accept: BATCH_CONTENT_TYPE } });
      expect(Buffer.concat(frames.flatMap((f) => f.batches)).equals(Buffer.from(await stored.arrayBuffer()))).toBe(true);
      // each frame is charged exactly the length of its batches, and each says where it starts
      for (const f of frames) {
        expect(f.bytes).toBe(f.batches.reduce((s, b) => s + b.length, 0));
        expect(decodeStoredBatches(f.batches[0], f.first)[0].offset).toBe(f.first);
      }
      // one frame per append was N frames; the worker answers many appends per sync
      expect(frames.length).toBeLessThan(N / 2);
      expect(others.filter((f) => f.op === 'end' || f.op === 'err')).toEqual([]);
    } finally {
      ws.close();
    }
  });

  it('a subscriber of records (no batches in its hello) gets them the same way, in `records` frames', async () => {
    const from = await endOffset();
    const { ws, frames, others } = await subscriber('records', undefined, from);
    try {
      await burst(N, 'r');
      const all = () => frames.flatMap((f) => f.records);
      await waitUntil('every append to be pushed', () => all().length >= N, slow(10_000), 5);
      expect(all().map((r) => r[0])).toEqual(Array.from({ length: N }, (_, i) => from + i));
      expect(all().map((r) => Buffer.from(r[2]).toString())).toEqual(Array.from({ length: N }, (_, i) => `r${i}`));
      for (const f of frames) expect(f.bytes).toBe(f.records.reduce((n, r) => n + storedRecordBytes(fromRecordTuple(0, r)), 0));
      expect(frames.length).toBeLessThan(N / 2);
      expect(others.filter((f) => f.op === 'batches' || f.op === 'end' || f.op === 'err')).toEqual([]);
    } finally {
      ws.close();
    }
  });

  it('reaches the reference client whole and in order', async () => {
    const from = await endOffset();
    const c = await ChicagoClient.connect({ url: node.url });
    try {
      const t = c.tail('co', 0, { from: { offset: from }, creditBytes: 4096 });
      const got: string[] = [];
      const reading = (async () => {
        for await (const r of t) {
          expect(r.offset).toBe(from + got.length);
          got.push(r.value.toString());
          if (got.length === N) break;
        }
      })();
      await burst(N, 'b');
      await Promise.race([reading, new Promise((_, rej) => setTimeout(() => rej(new Error(`tail read ${got.length} of ${N}`)), slow(15_000)))]);
      expect(got).toEqual(Array.from({ length: N }, (_, i) => `b${i}`));
    } finally {
      await c.close();
    }
  });
});
