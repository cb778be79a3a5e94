// The TypeScript client against the real /v1/ws server code and a fake NodeApi with fault hooks.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChicagoClient, type TailRecord } from '../src/client/index.js';
import { ChicagoError } from '../src/runtime/errors.js';
import { Session } from '../src/client/session.js';
import { waitUntil } from './helpers/bridge.js';
import { startFakeServer, type FakeServer } from './helpers/fake-node-api.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';

let server: FakeServer;
const clients: ChicagoClient[] = [];
const connect = async (opts = {}) => {
  const c = await ChicagoClient.connect({ url: server.url, backoffMinMs: 10, backoffMaxMs: 50, ...opts });
  clients.push(c);
  return c;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const caught = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e as ChicagoError);

beforeAll(async () => { server = await startFakeServer(); });
afterAll(() => server.stop());
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  server.api.afterProduce = undefined;
  server.api.produceDelayMs = 0;
});

describe('connection', () => {
  it('fails to connect with a clear deadline error', async () => {
    const err = await caught(ChicagoClient.connect({ url: 'http://127.0.0.1:1', connectTimeoutMs: slow(300) }));
    expect(err).toBeInstanceOf(ChicagoError);
    expect(err).toMatchObject({ code: 'TIMEOUT' });
    expect(err!.message).toMatch(/connecting to http:\/\/127.0.0.1:1.*ECONNREFUSED/);
  });

  it('a session to a leader\'s node gives up at its first refused dial (the router then goes through the seed)', async () => {
    const opts = { url: 'http://127.0.0.1:1', connectTimeoutMs: 10_000, requestTimeoutMs: 1_000, backoffMinMs: 50, backoffMaxMs: 1_000, clientName: 'test' };
    const t0 = Date.now();
    const err = await caught(Session.open(opts, { firstDialOnly: true }));
    expect(err).toMatchObject({ code: 'NOT_READY' });
    expect(err!.message).toMatch(/ECONNREFUSED/);
    expect(Date.now() - t0).toBeLessThan(2_000); // not the 10 s connect deadline
  });

  it('times out reads with TIMEOUT and unanswered writes with OUTCOME_UNKNOWN', async () => {
    // Both timers run in this process: the client's 150 ms, started first, always fires first.
    const c = await connect({ requestTimeoutMs: 150 });
    const get = server.api.kvGet.bind(server.api);
    const put = server.api.kvPut.bind(server.api);
    server.api.kvGet = async (...a) => { await sleep(400); return get(...a); };
    server.api.kvPut = async (...a) => { await sleep(400); return put(...a); };
    try {
      expect(await caught(c.kv.get('ks', 'k'))).toMatchObject({ code: 'TIMEOUT' });
      expect(await caught(c.kv.put('ks', 'k', 'v'))).toMatchObject({ code: 'OUTCOME_UNKNOWN' });
    } finally {
      server.api.kvGet = get;
      server.api.kvPut = put;
    }
  });
});

describe('kv', () => {
  it('puts, gets, deletes and scans', async () => {
    const c = await connect();
    const put = await c.kv.put('cfg', 'a', 'one', { ttlSeconds: 60 });
    expect(put.replicas).toBe(1);
    await c.kv.put('cfg', Buffer.from('b'), Buffer.from([0, 1, 2]));
    expect((await c.kv.get('cfg', 'a'))?.value.toString()).toBe('one');
    expect((await c.kv.get('cfg', 'b'))?.value).toEqual(Buffer.from([0, 1, 2]));
    expect(await c.kv.get('cfg', 'zzz')).toBeUndefined();
    const scan = await c.kv.scan('cfg', { limit: 10 });
    expect(scan.items.map((i) => i.key.toString())).toEqual(['a', 'b']);
    expect((await c.kv.delete('cfg', 'a')).existed).toBe(true);
    expect(await c.kv.get('cfg', 'a')).toBeUndefined();
    expect(await caught(c.kv.put('bad name', 'k', 'v'))).toMatchObject({ code: 'INVALID_NAME' });
  });

  it('re-sends a read caught by a dropped connection, and reports a write as OUTCOME_UNKNOWN', async () => {
    const c = await connect();
    await c.kv.put('drop', 'k', 'v');
    const get = server.api.kvGet.bind(server.api);
    const put = server.api.kvPut.bind(server.api);
    let drops = 0;
    server.api.kvGet = async (...a) => { if (drops++ === 0) server.ws.closeAll(); return get(...a); };
    server.api.kvPut = async (...a) => { const r = await put(...a); server.ws.closeAll(); return r; };
    try {
      expect((await c.kv.get('drop', 'k'))?.value.toString()).toBe('v');
      expect(drops).toBe(2);
      const err = await caught(c.kv.put('drop', 'k2', 'v2'));
      expect(err).toMatchObject({ code: 'OUTCOME_UNKNOWN' });
      expect(err!.message).toMatch(/SHUTTING_DOWN/);
    } finally {
      server.api.kvGet = get;
      server.api.kvPut = put;
    }
    expect((await c.kv.get('drop', 'k2'))?.value.toString()).toBe('v2'); // it was applied: hence "unknown", not "failed"
  });
});

describe('producer', () => {
  it('batches acked sends and returns each record position', async () => {
    const c = await connect();
    const p = c.producer({ lingerMs: 5 });
    const results = await Promise.all(Array.from({ length: 500 }, (_, i) => p.send('batched', { value: `v${i}`, partition: 1 })));
    expect(results.map((r) => r.offset)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(results.every((r) => r.partition === 1)).toBe(true);
    expect(p.stats()).toMatchObject({ sent: 500, acked: 500, dropped: 0, errors: 0, bufferedBytes: 0 });
    await p.close();
    expect(await caught(p.send('batched', { value: 'late' }))).toMatchObject({ code: 'BAD_REQUEST' });
  });

  it('sendMany: one promise for many records, in order across batches, beside single sends', async () => {
    const c = await connect();
    // 20 records of 10 bytes per batch: a call of 50 spans three batches, and singles share them
    const p = c.producer({ lingerMs: 5, batchBytesMax: 200 });
    const requests: number[] = [];
    server.api.afterProduce = (topic, r) => { if (topic === 'many') requests.push(r.records.length); };
    const value = (i: number) => `m${String(i).padStart(9, '0')}`;
    const single = p.send('many', { value: 'single-a', partition: 0 });
    const many = p.sendMany('many', Array.from({ length: 50 }, (_, i) => ({ value: value(i), partition: 0 })));
    const after = p.send('many', { value: 'single-b', partition: 0 });
    const [a, positions, b] = await Promise.all([single, many, after]);
    expect(a.offset).toBe(0);
    expect(positions.map((r) => r.offset)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(positions.every((r) => r.partition === 0)).toBe(true);
    expect(b.offset).toBe(51);
    expect(requests.length).toBeGreaterThanOrEqual(3);
    expect(requests.reduce((x, y) => x + y, 0)).toBe(52);
    expect(p.stats()).toMatchObject({ sent: 52, acked: 52, errors: 0, bufferedBytes: 0 });
    // a record refused up front rejects the call; the ones before it are still sent
    const tooBig = 'x'.repeat(5 * 1024 * 1024);
    expect(await caught(p.sendMany('many', [{ value: 'before', partition: 0 }, { value: tooBig, partition: 0 }, { value: 'never', partition: 0 }]))).toMatchObject({ code: 'VALUE_TOO_LARGE' });
    await p.flush();
    expect(p.stats()).toMatchObject({ sent: 53, acked: 53 });
    expect(await p.sendMany('many', [])).toEqual([]);
    // a batch of the call that fails for good rejects it with that error (its records span two batches)
    const errorsBefore = p.stats().errors;
    expect(await caught(p.sendMany('missing', Array.from({ length: 30 }, (_, i) => ({ value: value(i), partition: 0 }))))).toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    await p.flush();
    expect(p.stats().errors - errorsBefore).toBe(30);
    await p.close();
  });

  it('with lingerMs 0, records sent while a batch is in flight go together in the next one', async () => {
    const c = await connect();
    const p = c.producer({ lingerMs: 0 });
    const requests: number[] = [];
    server.api.produceDelayMs = 20;
    server.api.afterProduce = (_topic, r) => { requests.push(r.records.length); };
    const first = p.send('streamed', { value: 'first', partition: 0 });
    await new Promise((r) => setImmediate(r)); // the first goes out alone at the end of its task
    const rest = Array.from({ length: 200 }, (_, i) => p.send('streamed', { value: `v${i}`, partition: 0 }));
    const results = await Promise.all([first, ...rest]);
    expect(results.map((r) => r.offset)).toEqual(Array.from({ length: 201 }, (_, i) => i));
    // one record alone (nothing was in flight), then everything that queued behind it
    expect(requests).toEqual([1, 200]);
    await p.close();
  });

  it('with lingerMs 0, records sent in one loop go out as one batch, at the end of the task', async () => {
    const c = await connect();
    const p = c.producer({ lingerMs: 0 });
    const requests: number[] = [];
    server.api.afterProduce = (topic, r) => { if (topic === 'looped') requests.push(r.records.length); };
    await Promise.all(Array.from({ length: 10 }, (_, i) => p.send('looped', { value: `v${i}`, partition: 0 })));
    expect(requests).toEqual([10]);
    await p.close();
  });

  it('retries an idempotent batch with the same sequence after the reply was lost', async () => {
    const c = await connect();
    let dropped = 0;
    server.api.afterProduce = (topic) => { if (topic === 'idem' && dropped++ < 2) server.ws.closeAll(); };
    const p = c.producer({ lingerMs: 1 });
    const wave = (from: number) => Promise.all(Array.from({ length: 10 }, (_, i) => p.send('idem', { key: `k${from + i}`, value: `v${from + i}`, partition: 0 })));
    // Each wave is one batch whose first reply is lost; the retry is answered from the node's memory.
    const results = [...await wave(0), ...await wave(10)];
    expect(dropped).toBe(2);
    expect(server.api.log('idem', 0)).toHaveLength(20); // appended once despite the retries
    expect(results.map((r) => r.offset)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(p.stats()).toMatchObject({ sent: 20, acked: 20, errors: 0 });
  });

  it('without idempotence reports a lost reply as OUTCOME_UNKNOWN', async () => {
    const c = await connect();
    server.api.afterProduce = () => server.ws.closeAll();
    const p = c.producer({ idempotent: false });
    expect(await caught(p.send('nonidem', { value: 'v', partition: 0 }))).toMatchObject({ code: 'OUTCOME_UNKNOWN' });
    expect(p.stats()).toMatchObject({ sent: 1, acked: 0, errors: 1 });
  });

  it('rejects when the acked buffer is full', async () => {
    const c = await connect();
    server.api.produceDelayMs = 100;
    const p = c.producer({ bufferBytesMax: 1000, batchBytesMax: 500 });
    const sends = Array.from({ length: 20 }, () => caught(p.send('full', { value: Buffer.alloc(100) })));
    const errs = (await Promise.all(sends)).filter(Boolean);
    expect(errs.length).toBe(10);
    expect(errs[0]).toMatchObject({ code: 'OVERLOADED', retryable: true });
    // one refusal shared while the buffer stays full: no error built per refused record
    expect(new Set(errs).size).toBe(1);
    await p.flush();
    // drained: sends are taken again, and a later overload is a refusal of its own
    expect(await p.send('full', { value: Buffer.alloc(100) })).toMatchObject({ partition: expect.any(Number) });
    const later = (await Promise.all(Array.from({ length: 20 }, () => caught(p.send('full', { value: Buffer.alloc(100) }))))).filter(Boolean);
    expect(later.length).toBeGreaterThan(0);
    expect(later[0]).not.toBe(errs[0]);
  });

  it('best-effort never blocks, drops when full and counts', async () => {
    const c = await connect();
    server.api.produceDelayMs = 50;
    const p = c.producer({ mode: 'best-effort', acks: 'one', bufferBytesMax: 10_000, batchBytesMax: 2_000 });
    for (let i = 0; i < 100; i++) expect(p.send('lossy', { value: Buffer.alloc(1000) })).toBeUndefined();
    await p.flush();
    const s = p.stats();
    expect(s.dropped).toBe(90);
    expect(s.sent).toBe(10);
    expect(s.acked).toBe(10);
    expect(s.sent + s.dropped).toBe(100);
  });

  it('best-effort with acks=none counts failures the server reports', async () => {
    const c = await connect();
    const p = c.producer({ mode: 'best-effort', acks: 'none' });
    p.send('missing', { value: 'x' });
    p.send('lossy-none', { value: 'y', partition: 0 });
    await p.flush();
    // acks=none: the failure comes back later, in its own frame
    await waitUntil('the server to report the failed send', () => p.stats().errors > 0 && server.api.log('lossy-none', 0).length > 0, 5_000, 10);
    expect(p.stats()).toMatchObject({ sent: 2, errors: 1, dropped: 0 });
    expect(server.api.log('lossy-none', 0)).toHaveLength(1);
  });
});

describe('tail', () => {
  async function take(it: AsyncIterator<TailRecord>, n: number): Promise<TailRecord[]> {
    const out: TailRecord[] = [];
    const stallMs = slow(5_000);
    while (out.length < n) {
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`stalled after ${out.length} (${stallMs} ms)`)), stallMs); });
      const r = await Promise.race([it.next(), stalled]).finally(() => clearTimeout(timer));
      if (r.done) break;
      out.push(r.value);
    }
    return out;
  }

  it('streams under credit and resumes after a reconnect without gaps or duplicates', async () => {
    const c = await connect();
    const p = c.producer({ lingerMs: 0 });
    await Promise.all(Array.from({ length: 50 }, (_, i) => p.send('resume', { value: Buffer.alloc(500, i), partition: 0 })));
    const t = c.tail('resume', 0, { from: 'earliest', creditBytes: 2_000 });
    const first = await take(t, 10);
    server.ws.closeAll();
    await Promise.all(Array.from({ length: 50 }, (_, i) => p.send('resume', { value: Buffer.alloc(500, i), partition: 0 })));
    const rest = await take(t, 90);
    expect([...first, ...rest].map((r) => r.offset)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const fakeTails = server.api.tails.filter((x) => x.topic === 'resume');
    expect(fakeTails.length).toBeGreaterThanOrEqual(2);
    await t.close();
  });

  it('commits consumed offsets for a group and starts from them', async () => {
    const c = await connect();
    const p = c.producer({ lingerMs: 0 });
    await Promise.all(Array.from({ length: 40 }, (_, i) => p.send('grouped', { value: `v${i}`, partition: 1 })));
    const t1 = c.tail('grouped', 1, { from: 'earliest', group: 'readers', commitIntervalMs: 20 });
    await take(t1, 25);
    // an interval commit of what next() has confirmed (records 0..23); earlier ones commit less
    await waitUntil('an interval commit of 24', async () => ((await c.groupOffsets('readers', 'grouped'))[0]?.offset ?? 0) >= 24, 5_000, 10);
    expect(await c.groupOffsets('readers', 'grouped')).toEqual([expect.objectContaining({ partition: 1, offset: 24 })]);
    await t1.close(); // the record in hand (24) counts as consumed
    expect(await c.groupOffsets('readers', 'grouped')).toEqual([expect.objectContaining({ partition: 1, offset: 25 })]);
    const t2 = c.tail('grouped', 1, { from: 'earliest', group: 'readers' });
    const next = await take(t2, 1);
    expect(next[0].offset).toBe(25);
    await t2.close();
  });

  it('ends with the error for a topic that does not exist', async () => {
    const c = await connect();
    const t = c.tail('missing', 0, { from: 'earliest' });
    expect(await caught(t.next())).toMatchObject({ code: 'TOPIC_NOT_FOUND' });
  });
});

describe('against a real node process', () => {
  let node: NodeHandle;
  beforeAll(async () => { node = await startNode(); });
  afterAll(async () => { await node?.stop(); });

  it('answers topic metadata over /v1/ws: the list, and one topic with its partitions, offsets and leaders', async () => {
    const c = await ChicagoClient.connect({ url: node.url });
    clients.push(c);
    await http(node.url, 'POST', '/v1/topics', { name: 'metatopic', partitions: 3, replicas: 1, retention: {} });
    const p = c.producer({ lingerMs: 0 });
    for (let i = 0; i < 5; i++) await p.send('metatopic', { value: `v${i}`, partition: i % 3 });
    await p.close();
    expect((await c.topics()).find((t) => t.name === 'metatopic')).toMatchObject({ name: 'metatopic', partitions: 3, replicas: 1 });
    const t = await c.topic('metatopic');
    expect(t).toMatchObject({ name: 'metatopic', partitionCount: 3, replicas: 1 });
    expect(t.partitions.map((x) => [x.partition, x.startOffset, x.endOffset])).toEqual([[0, 0, 2], [1, 0, 2], [2, 0, 1]]);
    for (const x of t.partitions) expect(typeof x.leader).toBe('string');
    expect(await caught(c.topic('no-such-topic'))).toMatchObject({ code: 'TOPIC_NOT_FOUND' });
  });

  it('does kv, acked produce and a credit-limited tail over /v1/ws', async () => {
    const c = await ChicagoClient.connect({ url: node.url });
    clients.push(c);
    const put = await c.kv.put('real', 'k', 'v1');
    expect(put.version).toBeGreaterThan(0);
    expect((await c.kv.get('real', 'k'))?.value.toString()).toBe('v1');
    const created = await http(node.url, 'POST', '/v1/topics', { name: 'realtopic', partitions: 1, replicas: 1, retention: {} });
    expect(created.status).toBeLessThan(300);
    const p = c.producer({ lingerMs: 2 });
    const res = await Promise.all(Array.from({ length: 200 }, (_, i) => p.send('realtopic', { value: Buffer.alloc(100, i), partition: 0 })));
    expect(res.map((r) => r.offset)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const t = c.tail('realtopic', 0, { from: 'earliest', creditBytes: 2_000, group: 'realgroup' });
    const got: number[] = [];
    for await (const r of t) {
      got.push(r.offset);
      if (got.length === 200) break;
    }
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(await c.groupOffsets('realgroup', 'realtopic')).toEqual([expect.objectContaining({ partition: 0, offset: 200 })]);
  });
});
