// The /v1/ws server side, driven frame by frame with a raw `ws` socket against a fake NodeApi.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { limits } from '../src/runtime/limits.js';
import { closeCodeOf } from '../src/protocol/frames.js';
import { waitUntil } from './helpers/bridge.js';
import { startFakeServer, type FakeServer } from './helpers/fake-node-api.js';
import { slow } from './helpers/slow.js';

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });
type Frame = Record<string, any>;

class Raw {
  readonly frames: Frame[] = [];
  private waiters: Array<() => void> = [];
  closed: { code: number; reason: string } | undefined;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => { this.frames.push(unpackr.unpack(data)); this.poke(); });
    ws.on('close', (code, reason) => { this.closed = { code, reason: reason.toString() }; this.poke(); });
    ws.on('error', () => undefined);
  }
  static open(url: string): Promise<Raw> {
    const ws = new WebSocket(url.replace('http', 'ws') + '/v1/ws', { maxPayload: 200 * 1024 * 1024 });
    return new Promise((resolve, reject) => { ws.once('open', () => resolve(new Raw(ws))); ws.once('error', reject); });
  }
  send(frame: Frame): void { this.ws.send(packr.pack(frame)); }
  private poke(): void { for (const w of this.waiters.splice(0)) w(); }
  /** Wait for (and remove) the first frame matching `pred`, for at most `idleMs` scaled by the test slowdown. */
  async take(pred: (f: Frame) => boolean, idleMs = 5_000): Promise<Frame> {
    const deadline = Date.now() + slow(idleMs);
    for (;;) {
      const i = this.frames.findIndex(pred);
      if (i >= 0) return this.frames.splice(i, 1)[0];
      if (this.closed) throw new Error(`closed ${this.closed.code} ${this.closed.reason}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a frame');
      await new Promise<void>((r) => { const t = setTimeout(r, left); this.waiters.push(() => { clearTimeout(t); r(); }); });
    }
  }
  reply(id: number): Promise<Frame> { return this.take((f) => f.id === id && (f.op === 'res' || f.op === 'err')); }
  async request(frame: Frame): Promise<Frame> { this.send(frame); return this.reply(frame.id); }
  /** `idleMs` is scaled by the test slowdown */
  async waitClosed(idleMs = 5_000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + slow(idleMs);
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    if (!this.closed) throw new Error('not closed');
    return this.closed;
  }
}

let server: FakeServer;
beforeAll(async () => { server = await startFakeServer(); });
afterAll(() => server.stop());

describe('hello and requests', () => {
  it('negotiates the version and advertises limits', async () => {
    const c = await Raw.open(server.url);
    const r = await c.request({ op: 'hello', id: 1, versions: [1] });
    expect(r).toMatchObject({ op: 'res', id: 1, version: 1, limits: { frameBytesMax: limits.frameBytesMax } });
    expect(await c.request({ op: 'hello', id: 2, versions: [1] })).toMatchObject({ op: 'err', code: 'BAD_REQUEST' });
    const d = await Raw.open(server.url);
    expect(await d.request({ op: 'hello', id: 1, versions: [7, 8] })).toMatchObject({ op: 'err', code: 'INVALID_ARGUMENT' });
    c.ws.close(); d.ws.close();
  });

  it('produces with acks all, one and none', async () => {
    const c = await Raw.open(server.url);
    const all = await c.request({ op: 'produce', id: 5, topic: 'acks', acks: 'all', partition: 0, records: [[Buffer.from('a')], [Buffer.from('b'), 'k1', { h: 'v' }]] });
    expect(all).toMatchObject({ op: 'res', id: 5, partitions: [0, 0], offsets: [0, 1], replicas: 1 });
    const one = await c.request({ op: 'produce', id: 6, topic: 'acks', acks: 'one', partition: 0, records: [['c']] });
    expect(one.offsets).toEqual([2]);
    c.send({ op: 'produce', id: 7, topic: 'acks', acks: 'none', partition: 0, records: [['d']] });
    // acks=none gets no reply on success: a later request's reply arrives, and the record is there.
    await c.request({ op: 'kv.get', id: 8, ks: 'x', key: 'k' });
    expect(c.frames.find((f) => f.id === 7)).toBeUndefined();
    expect(server.api.log('acks', 0).map((r) => Buffer.from(r.value).toString())).toEqual(['a', 'b', 'c', 'd']);
    expect(server.api.log('acks', 0)[1].headers).toEqual({ h: 'v' });
    // but a failed acks=none produce is reported
    expect(await c.request({ op: 'produce', id: 9, topic: 'missing', acks: 'none', records: [['x']] })).toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    c.ws.close();
  });

  it('does kv put, get, delete and paged scan', async () => {
    const c = await Raw.open(server.url);
    for (let i = 0; i < 5; i++) {
      expect(await c.request({ op: 'kv.put', id: 10 + i, ks: 'ks1', key: `k${i}`, value: Buffer.from(`v${i}`) })).toMatchObject({ op: 'res', replicas: 1 });
    }
    const got = await c.request({ op: 'kv.get', id: 20, ks: 'ks1', key: 'k3' });
    expect(got).toMatchObject({ found: true });
    expect(Buffer.from(got.value).toString()).toBe('v3');
    expect(await c.request({ op: 'kv.get', id: 21, ks: 'ks1', key: 'nope' })).toMatchObject({ op: 'res', found: false });
    expect(await c.request({ op: 'kv.delete', id: 22, ks: 'ks1', key: 'k0' })).toMatchObject({ existed: true });
    const page = await c.request({ op: 'kv.scan', id: 23, ks: 'ks1', limit: 2 });
    expect(page.items.map((i: any[]) => Buffer.from(i[0]).toString())).toEqual(['k1', 'k2']);
    const rest = await c.request({ op: 'kv.scan', id: 24, ks: 'ks1', after: page.next });
    expect(rest.items.map((i: any[]) => Buffer.from(i[0]).toString())).toEqual(['k3', 'k4']);
    c.ws.close();
  });

  it('commits and reads group offsets', async () => {
    const c = await Raw.open(server.url);
    await c.request({ op: 'produce', id: 1, topic: 'grp', partition: 1, records: [['a'], ['b']] });
    expect(await c.request({ op: 'commit', id: 2, group: 'g1', topic: 'grp', partition: 1, offset: 1 })).toMatchObject({ op: 'res' });
    const r = await c.request({ op: 'offsets', id: 3, group: 'g1', topic: 'grp' });
    expect(r.offsets).toEqual([expect.objectContaining({ topic: 'grp', partition: 1, offset: 1, lagRecords: 1 })]);
    c.ws.close();
  });
});

describe('stopping', () => {
  it('answers the requests in flight before closing, and refuses new ones as SHUTTING_DOWN', async () => {
    const own = await startFakeServer();
    // The produce is held at the node until released, and the test knows when it got there.
    let release!: () => void;
    own.api.produceGate = new Promise<void>((r) => { release = r; });
    let producing = false;
    const produce = own.api.produce.bind(own.api);
    own.api.produce = (...a) => { producing = true; return produce(...a); };
    try {
      const c = await Raw.open(own.url);
      c.send({ op: 'produce', id: 1, topic: 'slow', acks: 'all', partition: 0, records: [['a']] });
      await waitUntil('the produce to be running', () => producing, 5_000, 5);
      let drained = false;
      const draining = own.ws.drain(slow(5_000)).then(() => { drained = true; });
      expect(await c.request({ op: 'kv.get', id: 2, ks: 'x', key: 'k' })).toMatchObject({ op: 'err', code: 'SHUTTING_DOWN' });
      // it waits for the produce: still draining while the produce is held (here for 150 ms)
      await new Promise((r) => setTimeout(r, 150));
      expect(drained).toBe(false);
      release();
      await draining;
      expect(await c.reply(1)).toMatchObject({ op: 'res', offsets: [0] });
      own.ws.closeAll();
      expect((await c.waitClosed()).code).toBe(closeCodeOf('SHUTTING_DOWN'));
    } finally {
      release();
      own.stop();
    }
  });
});

describe('bad frames', () => {
  it('answers each with the right code and keeps the connection', async () => {
    const c = await Raw.open(server.url);
    const cases: Array<[Frame, string]> = [
      [{ op: 'teleport', id: 1 }, 'UNKNOWN_OP'],
      [{ op: 'kv.put', id: 2, ks: 'bad name!', key: 'k', value: 'v' }, 'INVALID_NAME'],
      [{ op: 'kv.put', id: 3, ks: 'ks', key: '', value: 'v' }, 'INVALID_KEY'],
      [{ op: 'kv.put', id: 4, ks: 'ks', key: 'x'.repeat(limits.keyBytesMax + 1), value: 'v' }, 'INVALID_KEY'],
      [{ op: 'kv.get', id: 5, ks: 'ks', key: 42 }, 'BAD_REQUEST'],
      [{ op: 'produce', id: 6, topic: 't', acks: 'most', records: [['v']] }, 'INVALID_ARGUMENT'],
      [{ op: 'produce', id: 7, topic: 't', records: [] }, 'INVALID_ARGUMENT'],
      [{ op: 'produce', id: 8, topic: 't', records: [['v']], producerId: 'p' }, 'BAD_REQUEST'],
      [{ op: 'subscribe', id: 9, topic: 't', partition: 0, from: { offset: -1 }, credit: 10 }, 'INVALID_OFFSET'],
      [{ op: 'kv.put', id: 10, ks: 'ks', key: 'k', value: 'v', ttl: 0 }, 'INVALID_ARGUMENT'],
      [{ op: 'unsubscribe', id: 11, sub: 999 }, 'NOT_FOUND'],
      [{ op: 'produce', id: 12, topic: 'missing', records: [['v']] }, 'TOPIC_NOT_FOUND'],
    ];
    for (const [frame, code] of cases) {
      expect(await c.request(frame), JSON.stringify(frame).slice(0, 80)).toMatchObject({ op: 'err', id: frame.id, code });
    }
    c.ws.send(Buffer.from([0xc1])); // never-used msgpack byte
    expect(await c.take((f) => f.op === 'err' && f.id === 0)).toMatchObject({ code: 'BAD_REQUEST', retryable: false });
    c.ws.send('{"op":"hello"}'); // text frame
    expect(await c.take((f) => f.op === 'err' && f.id === 0)).toMatchObject({ code: 'BAD_REQUEST' });
    c.ws.send(packr.pack([1, 2, 3])); // decodes, but is not a map
    expect(await c.take((f) => f.op === 'err' && f.id === 0)).toMatchObject({ code: 'BAD_REQUEST' });
    expect(await c.request({ op: 'kv.put', id: 99, ks: 'ks', key: 'k', value: 'v' })).toMatchObject({ op: 'res' });
    expect(c.closed).toBeUndefined();
    c.ws.close();
  });

  it('closes after too many undecodable frames in a row', async () => {
    const c = await Raw.open(server.url);
    for (let i = 0; i < limits.wsBadFramesInARowMax; i++) c.ws.send(Buffer.from([0xc1, i]));
    const closed = await c.waitClosed();
    expect(closed.code).toBe(closeCodeOf('BAD_REQUEST'));
    expect(c.frames.filter((f) => f.op === 'err')).toHaveLength(limits.wsBadFramesInARowMax);
  });

  it('rejects an oversize batch in a frame, and cuts a frame over frameBytesMax', async () => {
    const c = await Raw.open(server.url);
    // 5 × 4 MB: over batchBytesMax (< 20 MB), still under frameBytesMax with the envelope
    const records = Array.from({ length: 5 }, () => [Buffer.alloc(4_000_000)]);
    expect(await c.request({ op: 'produce', id: 1, topic: 'big', records })).toMatchObject({ code: 'BATCH_TOO_LARGE' });
    expect(await c.request({ op: 'kv.put', id: 2, ks: 'ks', key: 'k', value: Buffer.alloc(limits.valueBytesMax + 1) })).toMatchObject({ code: 'VALUE_TOO_LARGE' });
    expect(c.closed).toBeUndefined();
    c.ws.send(Buffer.alloc(limits.frameBytesMax + 1));
    const closed = await c.waitClosed(10_000);
    // uWS drops the connection without a close frame; the client sees an abnormal closure
    expect(closed.code).toBe(1006);
  });

  it('bounds requests in flight per connection with OVERLOADED', async () => {
    let open!: () => void;
    server.api.produceGate = new Promise<void>((r) => { open = r; });
    try {
      const c = await Raw.open(server.url);
      const n = limits.connectionInFlightMax + 5;
      for (let id = 1; id <= n; id++) c.send({ op: 'produce', id, topic: 'slow', acks: 'all', records: [['v']] });
      const overloaded = await c.take((f) => f.op === 'err' && f.code === 'OVERLOADED', 15_000);
      expect(overloaded.retryable).toBe(true);
      expect(overloaded.id).toBeGreaterThan(limits.connectionInFlightMax);
      open();
      expect(await c.reply(1)).toMatchObject({ op: 'res' });
      c.ws.close();
    } finally {
      server.api.produceGate = undefined;
      open();
    }
  });
});

describe('tail flow control', () => {
  const rec = (n: number) => Buffer.alloc(1000, n % 256);

  it('never pushes more than the credit, and continues as credit is granted', async () => {
    const c = await Raw.open(server.url);
    for (let i = 0; i < 20; i++) await c.request({ op: 'produce', id: 1000 + i, topic: 'credit', partition: 0, records: [[rec(i)]] });
    c.send({ op: 'subscribe', id: 1, topic: 'credit', partition: 0, from: 'earliest', credit: 4500 });
    await c.reply(1);
    // The server pushes as it handles the subscribe and the credit, before it handles the next
    // frame, and one socket keeps order: a later request's reply comes after every such push.
    const barrier = (id: number) => c.request({ op: 'kv.get', id, ks: 'x', key: 'barrier' });
    await barrier(900);
    const pushed = () => c.frames.filter((f) => f.op === 'records').flatMap((f) => f.records);
    expect(pushed()).toHaveLength(4); // 4 × 1000 bytes fit in 4500
    expect(c.frames.filter((f) => f.op === 'records').every((f) => f.bytes <= 4500)).toBe(true);
    c.send({ op: 'credit', sub: 1, bytes: 10_000 });
    await barrier(901);
    expect(pushed().map((r: any[]) => r[0])).toEqual(Array.from({ length: 14 }, (_, i) => i));
    expect(await c.request({ op: 'unsubscribe', id: 2, sub: 1 })).toMatchObject({ op: 'res' });
    c.ws.close();
  });

  // Also the regression test for pushes sent from inside uWS's drain callback: the last 2–4 MiB then
  // stayed in the node's socket buffer, unsent, in one run in four or more on a busy machine.
  it('passes credit to the node a window at a time, holds it while the socket is backed up, and loses nothing', async () => {
    const c = await Raw.open(server.url);
    const size = 64 * 1024;
    const count = 384; // 24 MiB
    const topic = 'backpressure';
    c.send({ op: 'subscribe', id: 1, topic, partition: 0, from: 'earliest', credit: 32 * 1024 * 1024 });
    await c.reply(1);
    (c.ws as any)._socket.pause(); // stop reading: the server's send buffer fills
    const p = await Raw.open(server.url);
    for (let i = 0; i < count; i += 32) {
      await p.request({ op: 'produce', id: i + 1, topic, partition: 0, records: Array.from({ length: 32 }, () => [Buffer.alloc(size)]) });
    }
    const tail = server.api.tails.find((t) => t.topic === topic)!;
    const granted = () => tail.credit + tail.pushedBytes; // initial credit (0) plus every grant
    // the node never holds more unused credit for the connection than its window
    expect(granted() - tail.pushedBytes).toBeLessThanOrEqual(limits.wsConnectionCreditBytes);
    const before = tail.grants.length;
    c.send({ op: 'credit', sub: 1, bytes: 1024 * 1024 });
    // c reads nothing now, so no reply tells when the credit was handled; the server handles c's
    // frames in order, and a put sent after the credit shows at the node once it is handled.
    c.send({ op: 'kv.put', id: 2, ks: 'backpressure', key: `after-credit-${topic}`, value: 'v' });
    await waitUntil('the server to handle the credit', async () => (await server.api.kvGet('backpressure', Buffer.from(`after-credit-${topic}`))) !== undefined, 5_000, 10);
    expect(tail.grants.length).toBe(before); // held: the socket is above wsPushPauseBytes
    (c.ws as any)._socket.resume();
    const deadline = Date.now() + slow(10_000);
    const offsets = () => c.frames.filter((f) => f.op === 'records').flatMap((f) => f.records.map((r: any[]) => r[0]));
    while (offsets().length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const state = () => JSON.stringify({
      received: offsets().length, tailNext: tail.next, tailCredit: tail.credit, pushedBytes: tail.pushedBytes,
      grants: tail.grants.length, granted: tail.grants.reduce((a, b) => a + b, 0), closed: c.closed,
      clientPaused: (c.ws as any)._socket.isPaused?.(), bufferedInClient: (c.ws as any)._socket.readableLength,
    });
    expect(offsets(), state()).toEqual(Array.from({ length: count }, (_, i) => i));
    expect(tail.grants.length).toBeGreaterThan(before); // released on drain
    expect(tail.grants.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(33 * 1024 * 1024);
    expect(c.closed).toBeUndefined();
    c.ws.close(); p.ws.close();
  });

  it('makes the node read at most one window for a socket that is never read, however many subscriptions it opens', async () => {
    const topic = 'never-read';
    const p = await Raw.open(server.url);
    for (let i = 0; i < 8; i++) {
      await p.request({ op: 'produce', id: i + 1, topic, partition: 0, records: Array.from({ length: 32 }, () => [Buffer.alloc(64 * 1024)]) });
    }
    const c = await Raw.open(server.url);
    (c.ws as any)._socket.pause();
    for (let i = 1; i <= 64; i++) c.send({ op: 'subscribe', id: i, topic, partition: 0, from: 'earliest', credit: 64 * 1024 * 1024 });
    c.send({ op: 'kv.put', id: 100, ks: 'never-read', key: 'subscribed', value: 'v' });
    await waitUntil('the subscriptions to be handled', async () => (await server.api.kvGet('never-read', Buffer.from('subscribed'))) !== undefined, 5_000, 10);
    await new Promise((r) => setTimeout(r, 200));
    const tails = server.api.tails.filter((t) => t.topic === topic);
    expect(tails).toHaveLength(64);
    const read = tails.reduce((n, t) => n + t.pushedBytes + t.credit, 0);
    // a window plus at most one record per subscription of overshoot
    expect(read).toBeLessThanOrEqual(limits.wsConnectionCreditBytes + 64 * 64 * 1024 + 64 * 100);
    c.ws.terminate();
    await waitUntil('every tail to be cancelled', () => tails.every((t) => t.cancelled), 5_000, 10);
    p.ws.close();
  });

  it('ends a subscription the node refuses and reports unknown topics', async () => {
    const c = await Raw.open(server.url);
    expect(await c.request({ op: 'subscribe', id: 1, topic: 'missing', partition: 0, from: 'latest', credit: 10 })).toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    c.ws.close();
  });

  it('cancels tails when the connection closes', async () => {
    const c = await Raw.open(server.url);
    await c.request({ op: 'subscribe', id: 1, topic: 'cancel', partition: 0, from: 'latest', credit: 10 });
    const t = server.api.tails.find((x) => x.topic === 'cancel')!;
    c.ws.close();
    await c.waitClosed();
    await waitUntil('the server to cancel the tail', () => t.cancelled, 5_000, 10);
  });
});
