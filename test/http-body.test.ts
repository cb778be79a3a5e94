// Produce bodies as they arrive over HTTP: a body with a Content-Length is copied into one buffer of
// that size as its pieces come; a chunked one is gathered and joined. Either way the node stores
// exactly the bytes sent, and a body cut short costs nothing once its connection is gone.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BATCH_CONTENT_TYPE, decodeStoredBatches, encodeBatch } from '../src/protocol/batch.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';
import { ChicagoClient } from '../src/client/index.js';

let node: NodeHandle;

beforeAll(async () => {
  node = await startNode();
  const res = await http(node.url, 'POST', '/v1/topics', { name: 'body-asm', partitions: 1 });
  expect(res.status).toBe(201);
}, slow(60_000));
afterAll(async () => { await node?.stop(); });

/** One request over a raw socket, written in `pieceBytes` pieces, each after the last was flushed; the status line back. */
function send(head: string, body: Buffer, pieceBytes: number, chunked: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(node.port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer: ${text.slice(0, 200)}`)); }, slow(20_000));
    sock.on('data', (d) => {
      text += d.toString('latin1');
      if (/\r\n\r\n/.test(text) && /content-length: *(\d+)/i.test(text)) {
        const len = Number(/content-length: *(\d+)/i.exec(text)![1]);
        if (text.length - text.indexOf('\r\n\r\n') - 4 >= len) { clearTimeout(timer); sock.destroy(); resolve(text); }
      }
    });
    sock.on('error', reject);
    sock.on('connect', async () => {
      const framing = chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${body.length}`;
      sock.write(`${head}\r\nHost: x\r\n${framing}\r\n\r\n`);
      for (let at = 0; at < body.length; at += pieceBytes) {
        const piece = body.subarray(at, Math.min(at + pieceBytes, body.length));
        const bytes = chunked ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]) : piece;
        if (!sock.write(bytes)) await new Promise((r) => sock.once('drain', r));
        await new Promise((r) => setImmediate(r));
      }
      if (chunked) sock.write('0\r\n\r\n');
    });
  });
}

async function storedFrom(offset: number): Promise<string[]> {
  const res = await fetch(`${node.url}/v1/topics/body-asm/records?partition=0&offset=${offset}&maxRecords=10000&maxBytes=16777216`, { headers: { accept: BATCH_CONTENT_TYPE }, signal: AbortSignal.timeout(slow(30_000)) });
  expect(res.status).toBe(200);
  return decodeStoredBatches(Buffer.from(await res.arrayBuffer()), offset).map((r) => `${Buffer.from(r.value).toString()}|${r.headers?.seq}`);
}

const endOffset = async (): Promise<number> => (await http(node.url, 'GET', '/v1/topics/body-asm')).body.partitions[0].endOffset as number;

describe('HTTP produce bodies', () => {
  it('stores exactly the batch sent, in pieces with a Content-Length and chunked, at several piece sizes', async () => {
    let n = 0;
    for (const chunked of [false, true]) {
      for (const pieceBytes of [1_000, 65_536, 700_001]) {
        const values = Array.from({ length: 6_000 }, (_, i) => `${chunked ? 'c' : 'l'}${pieceBytes}-${i}-`.padEnd(300, String.fromCharCode(97 + (i % 26))));
        const batch = encodeBatch(values.map((v, i) => ({ value: v, headers: { host: 'h', seq: String(i) } })));
        const from = await endOffset();
        const status = await send('POST /v1/topics/body-asm/records?partition=0 HTTP/1.1\r\nContent-Type: ' + BATCH_CONTENT_TYPE, batch, pieceBytes, chunked);
        expect([chunked, pieceBytes, status.split('\r\n')[0]]).toEqual([chunked, pieceBytes, 'HTTP/1.1 200 OK']);
        expect(await storedFrom(from)).toEqual(values.map((v, i) => `${v}|${i}`));
        n++;
      }
    }
    expect(n).toBe(6);
  }, slow(120_000));

  it('a pipelined batch whose body is in first waits for the one it names, whose headers came first; one whose predecessor went away is refused', async () => {
    const batchOf = (tag: string, n: number) => encodeBatch(Array.from({ length: n }, (_, i) => ({ value: `${tag}${i}`.padEnd(100, '.'), headers: { seq: String(i) } })));
    const head = (producer: string, sequence: number, previous?: number) =>
      `POST /v1/topics/body-asm/records?partition=0&producerId=${producer}&sequence=${sequence}${previous !== undefined ? `&previousSequence=${previous}` : ''} HTTP/1.1\r\nContent-Type: ${BATCH_CONTENT_TYPE}`;
    /** a request whose headers and the first half of its body are sent now; `finish` sends the rest, `drop` closes the connection */
    const started = async (h: string, body: Buffer) => {
      const sock = net.connect(node.port, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      let text = '';
      sock.on('data', (d) => { text += d.toString('latin1'); });
      sock.on('error', () => undefined);
      sock.write(`${h}\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
      sock.write(body.subarray(0, body.length >> 1));
      return {
        finish: async () => {
          sock.write(body.subarray(body.length >> 1));
          const end = Date.now() + slow(10_000);
          while (!/\r\n\r\n/.test(text) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
          sock.destroy();
          return text.split('\r\n')[0];
        },
        drop: () => sock.destroy(),
      };
    };
    const settled = (p: Promise<string>) => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), slow(400)))]);

    const from = await endOffset();
    const a = await started(head('order-p', 0), batchOf('a', 2_000));
    await new Promise((r) => setTimeout(r, 100));
    // b's body is in first; it names a, whose headers came first: it waits for a, not refused as a gap
    const b = send(head('order-p', 1, 0), batchOf('b', 3), 1 << 20, false);
    expect(await settled(b)).toBe(false);
    expect(await a.finish()).toBe('HTTP/1.1 200 OK');
    expect((await b).split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    const stored = await storedFrom(from);
    expect(stored.length).toBe(2_003);
    expect(stored.slice(1_999, 2_001).map((v) => v.slice(0, 2))).toEqual(['a1', 'b0']);

    // a predecessor whose connection closes mid-body gives up its place: its successor is refused at once
    const c = await started(head('order-q', 0), batchOf('c', 2_000));
    await new Promise((r) => setTimeout(r, 100));
    const d = send(head('order-q', 1, 0), batchOf('d', 3), 1 << 20, false);
    c.drop();
    expect((await d).split('\r\n')[0]).toMatch(/^HTTP\/1\.1 409/);
  }, slow(60_000));

  it('a live tail gets large record-batch bodies as they are produced, every one answered 200 (the batch given to the worker is not read again here)', async () => {
    await http(node.url, 'POST', '/v1/topics', { name: 'body-tail', partitions: 1 });
    const client = await ChicagoClient.connect({ url: node.url, clientName: 'body-tail' });
    const tail = client.tail('body-tail', 0, { from: 'earliest' });
    const got: string[] = [];
    const reading = (async () => { for await (const r of tail) got.push(r.value.toString('utf8')); })().catch(() => undefined);
    try {
      // the tail is open before the first batch: each append can reach it from the request's bytes
      await http(node.url, 'POST', '/v1/topics/body-tail/records?partition=0', [{ value: 'first' }]);
      const end = Date.now() + slow(10_000);
      while (got.length < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      const want = ['first'];
      for (let b = 0; b < 5; b++) {
        // above the size a worker takes inline: the body's buffer goes to the worker
        const values = Array.from({ length: 2_000 }, (_, i) => `t${b}-${i}-`.padEnd(200, 'v'));
        want.push(...values);
        const res = await fetch(`${node.url}/v1/topics/body-tail/records?partition=0`, { method: 'POST', headers: { 'content-type': BATCH_CONTENT_TYPE }, body: encodeBatch(values.map((value) => ({ value }))), signal: AbortSignal.timeout(slow(10_000)) });
        expect(res.status).toBe(200);
      }
      while (got.length < want.length && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      expect(got).toEqual(want);
    } finally {
      await tail.close();
      client.close();
      await reading;
    }
  }, slow(60_000));

  it('stores a JSON body sent in pieces with a Content-Length', async () => {
    const values = Array.from({ length: 2_000 }, (_, i) => `json-${i}-`.padEnd(200, 'j'));
    const body = Buffer.from(JSON.stringify(values.map((v, i) => ({ value: v, headers: { seq: String(i) } }))));
    const from = await endOffset();
    const status = await send('POST /v1/topics/body-asm/records?partition=0 HTTP/1.1\r\nContent-Type: application/json', body, 4_096, false);
    expect(status.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(await storedFrom(from)).toEqual(values.map((v, i) => `${v}|${i}`));
  }, slow(60_000));

  it('drops a body cut short (more declared than sent) when its connection closes, and serves on', async () => {
    const from = await endOffset();
    const sock = net.connect(node.port, '127.0.0.1');
    await new Promise((r) => sock.on('connect', r));
    sock.write(`POST /v1/topics/body-asm/records?partition=0 HTTP/1.1\r\nHost: x\r\nContent-Type: ${BATCH_CONTENT_TYPE}\r\nContent-Length: 4000000\r\n\r\n`);
    sock.write(Buffer.alloc(300_000, 1));
    await new Promise((r) => setTimeout(r, slow(100)));
    sock.destroy();
    // nothing of the cut body is stored; the next request is served
    const batch = encodeBatch([{ value: 'after', headers: { seq: '0' } }]);
    expect((await http(node.url, 'POST', '/v1/topics/body-asm/records?partition=0', batch, { 'content-type': BATCH_CONTENT_TYPE })).status).toBe(200);
    expect(await storedFrom(from)).toEqual(['after|0']);
  }, slow(60_000));

  it('takes a declared body from the memory budget whole when its buffer is made, however slowly it comes', async () => {
    const cap = 64 * 1024 * 1024;
    const small = await startNode({ env: { CHICAGO_MEMORY_MAX_BYTES: String(cap) } });
    const socks: net.Socket[] = [];
    try {
      expect((await http(small.url, 'POST', '/v1/topics', { name: 'body-budget', partitions: 1 })).status).toBe(201);
      // each declares 20 MB and sends 1 KB: the fourth cannot fit, and is refused at once
      const declared = 20_000_000;
      const buffered = async () => Number(/^chicago_memory_buffered_bytes (\d+)/m.exec(await (await fetch(`${small.url}/metrics`)).text())![1]);
      let refusedAt = -1;
      for (let i = 0; i < 4 && refusedAt < 0; i++) {
        const sock = net.connect(small.port, '127.0.0.1');
        socks.push(sock);
        let text = '';
        sock.on('data', (d) => { text += d.toString('latin1'); });
        sock.on('error', () => {});
        await new Promise((r) => sock.once('connect', r));
        sock.write(`POST /v1/topics/body-budget/records?partition=0 HTTP/1.1\r\nHost: x\r\nContent-Type: ${BATCH_CONTENT_TYPE}\r\nContent-Length: ${declared}\r\n\r\n`);
        sock.write(Buffer.alloc(1_000, 1));
        // until it is answered, or its buffer is taken (a slow body is not waited on for long)
        const until = Date.now() + slow(2_000);
        while (Date.now() < until && !text.includes('\r\n\r\n') && (await buffered()) < (i + 1) * declared) await new Promise((r) => setTimeout(r, 10));
        if (text) {
          expect(text.split('\r\n')[0]).toBe('HTTP/1.1 429 Too Many Requests');
          expect(text).toContain('OVERLOADED');
          refusedAt = i;
        }
      }
      expect(refusedAt).toBeGreaterThanOrEqual(2); // 64 MiB holds three
      for (const s of socks) s.destroy();
      // their bytes are given back: a 12 MB body, more than was left, fits again
      const batch = encodeBatch(Array.from({ length: 12 }, () => ({ value: Buffer.alloc(1_000_000, 2) })));
      let status = 0;
      for (const until = Date.now() + slow(10_000); status !== 200 && Date.now() < until;) {
        status = (await http(small.url, 'POST', '/v1/topics/body-budget/records?partition=0', batch, { 'content-type': BATCH_CONTENT_TYPE })).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(200);
    } finally {
      for (const s of socks) s.destroy();
      await small.stop();
    }
  }, slow(60_000));
});
