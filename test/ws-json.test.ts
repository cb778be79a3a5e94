// The /v1/ws JSON text mode (subprotocol chicago.json) against a real node, with a raw `ws`
// socket speaking JSON text as a browser page would: every op a page needs, bytes that are not
// UTF-8 both ways, tails with credit, errors, and a bad frame that the connection survives.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Unpackr } from 'msgpackr';
import fc from 'fast-check';
import { ChicagoError } from '../src/runtime/errors.js';
import { encodeJsonFrame, parseJsonClientFrame } from '../src/gateway/json-frames.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { createChicagoTopic, getJson, waitUntil } from './helpers/bridge.js';
import { slow } from './helpers/slow.js';

type Frame = Record<string, any>;

class JsonSocket {
  readonly frames: Frame[] = [];
  readonly kinds: boolean[] = [];
  closed: { code: number; reason: string } | undefined;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.kinds.push(isBinary);
      this.frames.push(isBinary ? { binary: data } : JSON.parse(data.toString('utf8')));
    });
    ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; });
    ws.on('error', () => undefined);
  }
  static open(url: string, protocols: string[] = ['chicago.json']): Promise<JsonSocket> {
    const ws = new WebSocket(url.replace('http', 'ws') + '/v1/ws', protocols);
    return new Promise((resolve, reject) => { ws.once('open', () => resolve(new JsonSocket(ws))); ws.once('error', reject); });
  }
  send(frame: Frame | string): void { this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)); }
  async take(pred: (f: Frame) => boolean, idleMs = 5_000): Promise<Frame> {
    let found: Frame | undefined;
    await waitUntil('a frame', () => {
      const i = this.frames.findIndex(pred);
      if (i >= 0) found = this.frames.splice(i, 1)[0];
      else if (this.closed) throw new Error(`closed ${this.closed.code} ${this.closed.reason}`);
      return found !== undefined;
    }, idleMs, 5);
    return found!;
  }
  async request(frame: Frame): Promise<Frame> {
    this.send(frame);
    return this.take((f) => f.id === frame.id && (f.op === 'res' || f.op === 'err'));
  }
}

const NOT_UTF8 = Buffer.from([0xff, 0x00, 0xfe, 0x80, 0x41]);

let node: NodeHandle;
let c: JsonSocket;

beforeAll(async () => {
  node = await startNode();
  await createChicagoTopic(node.url, 'jt', 2);
  c = await JsonSocket.open(node.url);
}, slow(30_000));

afterAll(async () => {
  c?.ws.close();
  await node?.stop();
});

describe('the JSON text mode', () => {
  it('is chosen by the chicago.json subprotocol and answers hello in text', async () => {
    expect(c.ws.protocol).toBe('chicago.json');
    const r = await c.request({ op: 'hello', id: 1, versions: [1], client: 'test' });
    expect(r).toMatchObject({ op: 'res', id: 1, version: 1, server: 'chicago' });
    expect(r.limits.frameBytesMax).toBeGreaterThan(0);
    // record batches are bin, msgpack only: a JSON client is not told it may send or take them
    expect(r.features).toEqual(['ranges']);
    expect(c.kinds.every((b) => b === false)).toBe(true);
  });

  it('produces records as HTTP record objects and as tuples', async () => {
    const r = await c.request({
      op: 'produce', id: 2, topic: 'jt', partition: 0, records: [
        { value: 'hello', key: 'k1', headers: { task: 'a' } },
        { value: NOT_UTF8.toString('base64'), valueEncoding: 'base64' },
        ['tuple', 'k2'],
        { value: { n: 1 } },
      ],
    });
    expect(r).toMatchObject({ op: 'res', id: 2, partitions: [0, 0, 0, 0], offsets: [0, 1, 2, 3], replicas: 1 });
    // read back over HTTP: the same bytes, in the same convention
    const http = await getJson(`${node.url}/v1/topics/jt/records?partition=0&offset=0`);
    expect(http.records.map((x: Frame) => x.value)).toEqual(['hello', NOT_UTF8.toString('base64'), 'tuple', '{"n":1}']);
    expect(http.records[1].valueEncoding).toBe('base64');
    expect(http.records[0].headers).toEqual({ task: 'a' });
  });

  it('tails with pushes under credit, records as HTTP record objects', async () => {
    c.send({ op: 'subscribe', id: 3, topic: 'jt', partition: 0, from: 'earliest', credit: 6 });
    expect(await c.take((f) => f.id === 3)).toMatchObject({ op: 'res', id: 3 });
    // 6 bytes of credit: 'k1'+'hello'+'task'+'a' (12) overshoots by the one record a push may
    const first = await c.take((f) => f.op === 'records' && f.sub === 3);
    expect(first.records).toEqual([{ offset: 0, timestamp: expect.any(Number), key: 'k1', value: 'hello', headers: { task: 'a' } }]);
    expect(first.bytes).toBe(12);
    // no credit left: nothing more until some is granted
    await new Promise((r) => setTimeout(r, 300));
    expect(c.frames.filter((f) => f.op === 'records')).toEqual([]);
    c.send({ op: 'credit', sub: 3, bytes: 1 << 20 });
    const seen: Frame[] = [];
    while (seen.length < 3) seen.push(...(await c.take((f) => f.op === 'records' && f.sub === 3)).records);
    expect(seen[0]).toMatchObject({ offset: 1, key: null, value: NOT_UTF8.toString('base64'), valueEncoding: 'base64' });
    expect(Buffer.from(seen[0].value, 'base64')).toEqual(NOT_UTF8);
    expect(seen[1]).toMatchObject({ offset: 2, key: 'k2', value: 'tuple' });
    expect(seen[2]).toMatchObject({ offset: 3, value: '{"n":1}' });
    // a live push: produced after the tail caught up
    await c.request({ op: 'produce', id: 4, topic: 'jt', partition: 0, records: [{ value: 'live' }] });
    const live = await c.take((f) => f.op === 'records' && f.sub === 3);
    expect(live.records[0]).toMatchObject({ offset: 4, value: 'live' });
    expect(await c.request({ op: 'unsubscribe', id: 5, sub: 3 })).toMatchObject({ op: 'res', id: 5 });
  });

  it('puts and gets KV values, text and binary, and scans them', async () => {
    expect(await c.request({ op: 'kv.put', id: 10, ks: 'jk', key: 'a', value: 'text' })).toMatchObject({ op: 'res', id: 10, replicas: 1 });
    const bin = Buffer.from([0, 1, 2, 0xff]);
    const binKey = Buffer.from([0xc3, 0x28]); // not UTF-8
    expect(await c.request({ op: 'kv.put', id: 11, ks: 'jk', key: binKey.toString('base64'), keyEncoding: 'base64', value: bin.toString('base64'), valueEncoding: 'base64' }))
      .toMatchObject({ op: 'res', id: 11 });
    expect(await c.request({ op: 'kv.get', id: 12, ks: 'jk', key: 'a' })).toMatchObject({ found: true, value: 'text' });
    const g = await c.request({ op: 'kv.get', id: 13, ks: 'jk', key: binKey.toString('base64'), keyEncoding: 'base64' });
    expect(g).toMatchObject({ found: true, valueEncoding: 'base64' });
    expect(Buffer.from(g.value, 'base64')).toEqual(bin);
    expect(Number.isInteger(g.version)).toBe(true);
    expect(await c.request({ op: 'kv.get', id: 14, ks: 'jk', key: 'missing' })).toEqual({ op: 'res', id: 14, found: false });
    const s = await c.request({ op: 'kv.scan', id: 15, ks: 'jk', limit: 1 });
    expect(s.items).toEqual([{ key: 'a', value: 'text', version: expect.any(Number) }]);
    expect(s.next).toBe('a');
    const s2 = await c.request({ op: 'kv.scan', id: 16, ks: 'jk', after: s.next });
    expect(s2.items).toEqual([{ key: binKey.toString('base64'), keyEncoding: 'base64', value: bin.toString('base64'), valueEncoding: 'base64', version: expect.any(Number) }]);
    // the HTTP API sees the same bytes
    const res = await fetch(`${node.url}/v1/kv/jk/a`);
    expect(await res.text()).toBe('text');
  });

  it('answers errors as err frames with the catalogue code, and metadata ops work', async () => {
    expect(await c.request({ op: 'kv.put', id: 20, ks: 'bad name', key: 'k', value: 'v' }))
      .toMatchObject({ op: 'err', id: 20, code: 'INVALID_NAME', retryable: false });
    expect(await c.request({ op: 'produce', id: 21, topic: 'nosuch', records: [{ value: 'x' }] })).toMatchObject({ op: 'err', id: 21, code: 'TOPIC_NOT_FOUND' });
    expect(await c.request({ op: 'kv.put', id: 22, ks: 'jk', key: 'k', value: '%%%', valueEncoding: 'base64' })).toMatchObject({ op: 'err', id: 22, code: 'INVALID_ARGUMENT' });
    expect(await c.request({ op: 'kv.put', id: 23, ks: 'jk', key: 'k', value: 'v', valueEncoding: 'hex' })).toMatchObject({ op: 'err', id: 23, code: 'INVALID_ARGUMENT' });
    expect(await c.request({ op: 'kv.put', id: 24, ks: 'jk', key: '\ud800', value: 'v' })).toMatchObject({ op: 'err', id: 24, code: 'INVALID_UTF8' });
    expect(await c.request({ op: 'nope', id: 25 })).toMatchObject({ op: 'err', id: 25, code: 'UNKNOWN_OP' });
    const t = await c.request({ op: 'topic', id: 26, topic: 'jt' });
    expect(t).toMatchObject({ name: 'jt', partitionCount: 2 });
    expect(t.partitions[0]).toMatchObject({ partition: 0, startOffset: 0, endOffset: 5 });
  });

  it('answers a bad JSON frame and a binary frame with BAD_REQUEST, and the connection survives', async () => {
    c.send('{"op":"kv.get", id: 1');
    const bad = await c.take((f) => f.op === 'err' && f.id === 0);
    expect(bad.code).toBe('BAD_REQUEST');
    expect(bad.message).toMatch(/not JSON/);
    c.send('[1,2]');
    expect((await c.take((f) => f.op === 'err' && f.id === 0)).message).toMatch(/JSON object/);
    c.ws.send(Buffer.from([0x81, 0xa2, 0x6f, 0x70])); // binary on a JSON connection
    expect((await c.take((f) => f.op === 'err' && f.id === 0)).message).toMatch(/binary frames/);
    expect(await c.request({ op: 'kv.get', id: 30, ks: 'jk', key: 'a' })).toMatchObject({ op: 'res', found: true, value: 'text' });
    expect(c.closed).toBeUndefined();
  });

  it('drops a connection whose text message is not UTF-8 (a WebSocket rule, below the protocol: no err frame)', async () => {
    const d = await JsonSocket.open(node.url);
    d.ws.send(NOT_UTF8, { binary: false });
    await expect(d.take(() => false, 5_000)).rejects.toThrow(/closed 1006/);
    expect(d.frames).toEqual([]);
  });

  it('answers kv.put and kv.delete with acks none at once, version 0 (produce sends nothing)', async () => {
    expect(await c.request({ op: 'kv.put', id: 40, ks: 'jk', key: 'quiet', value: 'v', acks: 'none' })).toMatchObject({ op: 'res', version: 0, replicas: 0 });
    expect(await c.request({ op: 'kv.delete', id: 41, ks: 'jk', key: 'quiet', acks: 'none' })).toMatchObject({ op: 'res', version: 0, replicas: 0, existed: false });
    expect(await c.request({ op: 'produce', id: 42, topic: 'nope-jt', records: [{ value: 'x' }] })).toMatchObject({ op: 'err', code: 'TOPIC_NOT_FOUND' });
    // credit has no reply: a malformed one is an err of id 0, one for an ended subscription is ignored
    c.send({ op: 'credit', sub: 424242, bytes: 10 });
    c.send({ op: 'credit', sub: 424242, bytes: -1 });
    expect(await c.take((f) => f.op === 'err' && f.id === 0)).toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('closes after 8 undecodable frames in a row with the catalogue close code', async () => {
    const d = await JsonSocket.open(node.url);
    for (let i = 0; i < 8; i++) d.send('not json');
    await expect(d.take(() => false, 5_000)).rejects.toThrow(/closed 4100/);
  });

  it('keeps msgpack as the default, names it by subprotocol too, and never echoes an unknown one', async () => {
    const unpackr = new Unpackr({ useRecords: false });
    for (const protocols of [[], ['chicago.msgpack']]) {
      const m = await JsonSocket.open(node.url, protocols);
      expect(m.ws.protocol).toBe(protocols[0] === 'chicago.msgpack' ? 'chicago.msgpack' : '');
      m.send('{"op":"hello","id":1,"versions":[1]}'); // text on a msgpack connection
      const f = await m.take((x) => x.binary !== undefined);
      expect(unpackr.unpack(f.binary)).toMatchObject({ op: 'err', id: 0, code: 'BAD_REQUEST', message: expect.stringMatching(/chicago\.json/) });
      m.ws.close();
    }
    // an offer of none of ours gets no subprotocol (msgpack): browsers accept that, `ws` refuses it
    await expect(JsonSocket.open(node.url, ['other'])).rejects.toThrow(/no subprotocol/);
    // the first of ours the client offers wins
    const j = await JsonSocket.open(node.url, ['other', 'chicago.json', 'chicago.msgpack']);
    expect(j.ws.protocol).toBe('chicago.json');
    j.ws.close();
  });
});

describe('the JSON codec (time-boxed fuzz)', () => {
  const opts = { numRuns: 2000, interruptAfterTimeLimit: 2000 };
  const check = (text: string) => {
    const p = parseJsonClientFrame(Buffer.from(text));
    if (!p.ok) expect(p.error).toBeInstanceOf(ChicagoError);
  };

  it('never throws on arbitrary text or near-valid frames', () => {
    fc.assert(fc.property(fc.string({ maxLength: 200 }), check), opts);
    const field = fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true }), fc.constant(null), fc.boolean(),
      fc.array(fc.oneof(fc.string(), fc.constant(null), fc.dictionary(fc.constantFrom('value', 'key', 'headers', 'valueEncoding', 'keyEncoding', '__proto__'), fc.oneof(fc.string(), fc.constant('base64'), fc.dictionary(fc.string(), fc.string()))))),
      fc.dictionary(fc.string(), fc.string()));
    const ops = fc.constantFrom('hello', 'produce', 'kv.put', 'kv.get', 'kv.delete', 'kv.scan', 'subscribe', 'credit', 'commit', 'group.delete', '__proto__');
    const frame = fc.record({ op: ops, id: fc.oneof(fc.nat(), fc.constant(1)) }).chain((base) =>
      fc.dictionary(fc.constantFrom('ks', 'key', 'value', 'prefix', 'after', 'keyEncoding', 'valueEncoding', 'prefixEncoding', 'topic', 'records', 'partition', 'from', 'credit', 'group', '__proto__'), field)
        .map((fields) => ({ ...fields, ...base })));
    fc.assert(fc.property(frame, (f) => check(JSON.stringify(f))), opts);
  });

  it('round-trips any bytes: what a reply carries decodes to what was stored', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      const out = JSON.parse(encodeJsonFrame({ op: 'res', id: 1, found: true, value: b }).toString());
      const back = out.valueEncoding === 'base64' ? Buffer.from(out.value, 'base64') : Buffer.from(out.value, 'utf8');
      expect(back).toEqual(Buffer.from(b));
      const req = parseJsonClientFrame(Buffer.from(JSON.stringify({ op: 'kv.put', id: 2, ks: 'k', key: 'x', value: out.value, ...(out.valueEncoding ? { valueEncoding: out.valueEncoding } : {}) })));
      expect(req.ok && req.frame.op === 'kv.put' && Buffer.from(req.frame.value)).toEqual(Buffer.from(b));
    }), opts);
  });
});
