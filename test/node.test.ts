// A real single node process with real RocksDB, driven over HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import WebSocket from 'ws';
import { http } from './helpers/http.js';
import { waitUntil } from './helpers/bridge.js';
import { SLOWDOWN, slow } from './helpers/slow.js';

let node: NodeHandle;
const call = (method: string, path: string, body?: unknown, headers?: Record<string, string>) => http(node.url, method, path, body, headers);

beforeAll(async () => {
  // Maintenance runs only when a test asks for it, so retention and TTL results are deterministic.
  node = await startNode({ env: { CHICAGO_MAINTENANCE_INTERVAL_MS: '3600000' } });
});
afterAll(async () => { await node?.stop(); });

describe('key-value over HTTP', () => {
  it('puts, gets, scans and deletes with versions', async () => {
    const a = await call('PUT', '/v1/kv/app/user%2F1', 'alice');
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ replicas: 1 });
    const b = await call('PUT', '/v1/kv/app/user%2F1', 'alice2');
    expect(b.body.version).toBeGreaterThan(a.body.version);
    const g = await call('GET', '/v1/kv/app/user%2F1');
    expect(g.text).toBe('alice2');
    expect(Number(g.headers.get('x-chicago-version'))).toBe(b.body.version);
    for (const k of ['user/2', 'user/3', 'other']) await call('PUT', `/v1/kv/app/${encodeURIComponent(k)}`, k);
    const s = await call('GET', '/v1/kv/app?prefix=user%2F&limit=2');
    expect(s.body.items.map((i: any) => i.key)).toEqual(['user/1', 'user/2']);
    const s2 = await call('GET', `/v1/kv/app?prefix=user%2F&limit=2&after=${encodeURIComponent(s.body.next)}`);
    expect(s2.body.items.map((i: any) => i.key)).toEqual(['user/3']);
    expect(s2.body.next).toBeUndefined();
    const d = await call('DELETE', '/v1/kv/app/user%2F1');
    expect(d.body).toMatchObject({ existed: true });
    expect((await call('GET', '/v1/kv/app/user%2F1')).status).toBe(404);
    expect((await call('DELETE', '/v1/kv/app/user%2F1')).body).toMatchObject({ existed: false });
  });

  it('pages a scan past a key that is not UTF-8: its base64 `next` goes back with afterEncoding', async () => {
    // such keys are written over the WebSocket (a JSON frame with keyEncoding here)
    const ws = new WebSocket(node.url.replace('http', 'ws') + '/v1/ws', ['chicago.json']);
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const replies: Array<Record<string, unknown>> = [];
    ws.on('message', (m: Buffer) => replies.push(JSON.parse(m.toString())));
    const raw = [Buffer.from([0xff, 0x00]), Buffer.from([0xff, 0x01])];
    raw.forEach((k, i) => ws.send(JSON.stringify({ op: 'kv.put', id: i + 1, ks: 'rawkeys', key: k.toString('base64'), keyEncoding: 'base64', value: `v${i}` })));
    await waitUntil('the two puts answered', () => replies.length === 2, slow(10_000));
    ws.close();
    expect(replies.every((r) => r.op === 'res')).toBe(true);
    await call('PUT', '/v1/kv/rawkeys/a', 'text');
    const keys: string[] = [];
    let query = 'limit=1';
    for (let page = 0; page < 5; page++) {
      const r = await call('GET', `/v1/kv/rawkeys?${query}`);
      expect(r.status).toBe(200);
      keys.push(...r.body.items.map((i: any) => i.key));
      if (r.body.next === undefined) break;
      query = `limit=1&after=${encodeURIComponent(r.body.next)}${r.body.nextEncoding ? `&afterEncoding=${r.body.nextEncoding}` : ''}`;
    }
    expect(keys).toEqual(['a', '/wA=', '/wE=']);
    const p = await call('GET', `/v1/kv/rawkeys?prefix=${encodeURIComponent(Buffer.from([0xff]).toString('base64'))}&prefixEncoding=base64`);
    expect(p.body.items.map((i: any) => i.value)).toEqual(['v0', 'v1']);
    expect((await call('GET', '/v1/kv/rawkeys?after=YQ&afterEncoding=base64')).body.error.code).toBe('INVALID_ARGUMENT');
  });

  /** Every key of keyspace `ks`, page by page (at most `pagesMax`), each page checked by `check`. */
  async function scanPages(ks: string, pagesMax: number, check: (items: any[], next: string | undefined) => void): Promise<string[]> {
    const seen: string[] = [];
    let after = '';
    for (let page = 0; page < pagesMax; page++) {
      const r = await call('GET', `/v1/kv/${ks}?limit=1000${after}`);
      expect(r.status).toBe(200);
      check(r.body.items, r.body.next);
      seen.push(...r.body.items.map((i: any) => i.key));
      if (r.body.next === undefined) break;
      after = `&after=${encodeURIComponent(r.body.next)}`;
    }
    return seen;
  }

  it('cuts a scan page of large values at scanBytesMax and pages on with next, every key once', async () => {
    // 3 MiB values: a page stops past 6 MiB of them (one answer of all of them was unbounded)
    const value = Buffer.alloc(3 * 1024 * 1024, 'v');
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (const k of keys) expect((await call('PUT', `/v1/kv/bigscan/${k}`, value)).status).toBe(200);
    expect(await scanPages('bigscan', keys.length + 1, (items) => expect(items.length).toBeLessThanOrEqual(3))).toEqual(keys);
  });

  it('pages a scan of values larger than a partition\'s share of the page (1 MiB, 8 partitions): every key once, no empty page with next', async () => {
    const value = Buffer.alloc(1024 * 1024, 'm');
    const keys = Array.from({ length: 12 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    for (const k of keys) expect((await call('PUT', `/v1/kv/midscan/${k}`, value)).status).toBe(200);
    expect(await scanPages('midscan', keys.length + 1, (items, next) => { if (next !== undefined) expect(items.length).toBeGreaterThan(0); })).toEqual(keys);
  });

  it('a scan page does not end early at an expired key after a large value: every live key once', async () => {
    const { kvPartition } = await import('../src/runtime/hash.js');
    const part = (k: string) => kvPartition('ttlscan', Buffer.from(k), 8);
    // in one partition: a large value, an expired key after it, then small keys
    const after = (prefix: string, n: number) => Array.from({ length: 200 }, (_, i) => `${prefix}${i}`).filter((k) => part(k) === part('a')).slice(0, n);
    const [expired] = after('a', 1);
    const small = after('b', 2);
    expect((await call('PUT', '/v1/kv/ttlscan/a', Buffer.alloc(4 * 1024 * 1024, 'v'))).status).toBe(200);
    expect((await call('PUT', `/v1/kv/ttlscan/${expired}?ttl=1`, 'gone')).status).toBe(200);
    for (const k of small) expect((await call('PUT', `/v1/kv/ttlscan/${k}`, 'x')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    const seen: string[] = [];
    let next = '';
    for (let page = 0; page < 5; page++) {
      const r = await call('GET', `/v1/kv/ttlscan${next}`);
      seen.push(...r.body.items.map((i: any) => i.key));
      if (r.body.next === undefined) break;
      next = `?after=${encodeURIComponent(r.body.next)}`;
    }
    expect(seen).toEqual(['a', ...small.sort()]);
  });

  it('takes gzip request bodies (content-encoding: gzip), inflated within the body limit', async () => {
    const { gzipSync } = await import('node:zlib');
    const { limits } = await import('../src/runtime/limits.js');
    await call('POST', '/v1/topics', { name: 'gzipped', partitions: 1 });
    const records = Array.from({ length: 500 }, (_, i) => ({ value: `line ${i} ${'x'.repeat(100)}` }));
    const ok = await call('POST', '/v1/topics/gzipped/records', gzipSync(JSON.stringify(records)), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.records).toHaveLength(500);
    const back = await call('GET', '/v1/topics/gzipped/records?offset=499');
    expect(back.body.records.map((r: any) => r.value)).toEqual([`line 499 ${'x'.repeat(100)}`]);
    const kv = await call('PUT', '/v1/kv/app/gz', gzipSync('packed value'), { 'content-encoding': 'gzip' });
    expect(kv.status).toBe(200);
    expect((await call('GET', '/v1/kv/app/gz')).text).toBe('packed value');
    // not gzip; a bomb that inflates past the body limit; an encoding the node does not speak
    const bad = await call('POST', '/v1/topics/gzipped/records', Buffer.from('not gzip at all'), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect([bad.status, bad.body.error.code]).toEqual([400, 'BAD_REQUEST']);
    const bomb = gzipSync(Buffer.alloc(limits.httpBodyBytesMax + 1024, 0x20));
    expect(bomb.length).toBeLessThan(1024 * 1024);
    const big = await call('POST', '/v1/topics/gzipped/records', bomb, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect([big.status, big.body.error.code]).toEqual([413, 'BATCH_TOO_LARGE']);
    const br = await call('POST', '/v1/topics/gzipped/records', Buffer.from('[]'), { 'content-type': 'application/json', 'content-encoding': 'br' });
    expect([br.status, br.body.error.code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    // nothing of the refused bodies was stored
    expect((await call('GET', '/v1/topics/gzipped')).body.partitions[0].endOffset).toBe(500);
  });

  it('acks=none is accepted, not done: 202 for KV puts and deletes, as for produce', async () => {
    const put = await call('PUT', '/v1/kv/app/fire%2F1?acks=none', 'v');
    expect(put.status).toBe(202);
    expect(put.body).toMatchObject({ version: 0, replicas: 0 });
    await waitUntil('the acks=none put to land', async () => (await call('GET', '/v1/kv/app/fire%2F1')).text === 'v', 5_000, 20);
    const del = await call('DELETE', '/v1/kv/app/fire%2F1?acks=none');
    expect(del.status).toBe(202);
    await waitUntil('the acks=none delete to land', async () => (await call('GET', '/v1/kv/app/fire%2F1')).status === 404, 5_000, 20);
    expect((await call('PUT', '/v1/kv/app/fire%2F2?acks=one', 'v')).status).toBe(200);
  });

  it('keeps binary values intact', async () => {
    const bytes = new Uint8Array([0, 255, 1, 254, 0x80]);
    await call('PUT', '/v1/kv/bin/k', bytes);
    const res = await fetch(`${node.url}/v1/kv/bin/k`);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(bytes);
  });

  it('hides an expired key at once and sweeps it from disk', async () => {
    // The ttl is how long the test may take to read the key back before it expires: a deadline,
    // so it scales (whole seconds); the pause after it only has to pass the expiry.
    const ttlS = Math.ceil(SLOWDOWN);
    await call('PUT', `/v1/kv/ttl/short?ttl=${ttlS}`, 'x');
    expect((await call('GET', '/v1/kv/ttl/short')).status).toBe(200);
    await call('PUT', '/v1/kv/ttl/long?ttl=3600', 'y');
    await new Promise((r) => setTimeout(r, ttlS * 1000 + 100));
    expect((await call('GET', '/v1/kv/ttl/short')).status).toBe(404);
    expect((await call('GET', '/v1/kv/ttl?limit=10')).body.items.map((i: any) => i.key)).toEqual(['long']);
    const m = await call('POST', '/v1/admin/maintain');
    expect(m.body.expired).toBeGreaterThanOrEqual(1);
    expect((await call('GET', '/v1/kv/ttl/long')).text).toBe('y');
  });
});

describe('streams over HTTP', () => {
  it('appends in order with gap-free offsets per partition and reads them back', async () => {
    expect((await call('POST', '/v1/topics', { name: 'orders', partitions: 3 })).status).toBe(201);
    const recs = Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 5}`, value: `v${i}`, headers: { task: `t${i % 2}` } }));
    const p = await call('POST', '/v1/topics/orders/records', recs);
    expect(p.status).toBe(200);
    const perPartition = new Map<number, number[]>();
    p.body.records.forEach((r: any) => perPartition.set(r.partition, [...(perPartition.get(r.partition) ?? []), r.offset]));
    for (const offsets of perPartition.values()) expect(offsets).toEqual(offsets.map((_, i) => i));
    // Same key → same partition, order kept.
    for (let tp = 0; tp < 3; tp++) {
      const f = await call('GET', `/v1/topics/orders/records?partition=${tp}&offset=0`);
      const expected = recs.filter((_, i) => p.body.records[i].partition === tp).map((r) => r.value);
      expect(f.body.records.map((r: any) => r.value)).toEqual(expected);
      expect(f.body.nextOffset).toBe(expected.length);
    }
    const d = await call('GET', '/v1/topics/orders');
    expect(d.body.partitions.reduce((n: number, x: any) => n + x.endOffset, 0)).toBe(30);
  });

  it('takes one record batch as the body (application/vnd.chicago.record-batch), and a live tail gets its records', async () => {
    const { encodeBatch, BATCH_CONTENT_TYPE } = await import('../src/protocol/batch.js');
    const { connect } = await import('../src/client/index.js');
    const type = { 'content-type': BATCH_CONTENT_TYPE };
    await call('POST', '/v1/topics', { name: 'binary', partitions: 1 });
    await call('POST', '/v1/topics', { name: 'binkeyed', partitions: 3 });
    const client = await connect({ url: node.url });
    try {
      // the tail is live once the first record (JSON) reaches it; the batch's records come after it
      const live = client.tail('binary', 0, { from: { offset: 0 } });
      const it = live[Symbol.asyncIterator]();
      await call('POST', '/v1/topics/binary/records', [{ value: 'json' }]);
      expect((await it.next()).value).toMatchObject({ offset: 0 });
      const batch = encodeBatch([
        { value: Buffer.from('a') },
        { value: Buffer.from([0xff, 0x00]), key: Buffer.from('k'), headers: { host: 'h', seq: '2' } },
      ]);
      const p = await call('POST', '/v1/topics/binary/records?producerId=bin&sequence=0', batch, type);
      expect(p.status, p.text).toBe(200);
      expect(p.body.records).toEqual([{ partition: 0, offset: 1 }, { partition: 0, offset: 2 }]);
      // a retry of the same sequence is recognised, the bytes are not appended twice
      const again = await call('POST', '/v1/topics/binary/records?producerId=bin&sequence=0', batch, type);
      expect(again.body).toMatchObject({ duplicate: true, records: [{ offset: 1 }, { offset: 2 }] });
      const back = await call('GET', '/v1/topics/binary/records?offset=1');
      expect(back.body.records.map((r: any) => [r.offset, r.value, r.key ?? null, r.headers])).toEqual([
        [1, 'a', null, {}], [2, Buffer.from([0xff, 0]).toString('base64'), 'k', { host: 'h', seq: '2' }],
      ]);
      expect(back.body.nextOffset).toBe(3);
      const first = await it.next();
      expect(first.value).toMatchObject({ offset: 1 });
      expect(Buffer.from(first.value.value).toString()).toBe('a');
      const second = await it.next();
      expect(second.value).toMatchObject({ offset: 2, headers: { host: 'h', seq: '2' } });
      await it.return?.();
      // keyed records of a topic of several partitions are placed by key, as the JSON body's are
      const keyed = encodeBatch(Array.from({ length: 12 }, (_, i) => ({ key: Buffer.from(`k${i % 4}`), value: Buffer.from(`v${i}`) })));
      const k = await call('POST', '/v1/topics/binkeyed/records', keyed, type);
      expect(k.status, k.text).toBe(200);
      const json = await call('POST', '/v1/topics/binkeyed/records', Array.from({ length: 4 }, (_, i) => ({ key: `k${i}`, value: 'j' })));
      for (let i = 0; i < 4; i++) expect(k.body.records[i].partition).toBe(json.body.records[i].partition);
      // hostile bytes: a clear refusal from the catalogue, the node stays up
      const broken = Buffer.from(batch);
      broken[broken.length - 1] ^= 0xff;
      const bad = await call('POST', '/v1/topics/binary/records', broken, type);
      expect([bad.status, bad.body.error.code]).toEqual([400, 'INVALID_BATCH']);
      const short = await call('POST', '/v1/topics/binary/records', Buffer.from('hello'), type);
      expect([short.status, short.body.error.code]).toEqual([400, 'INVALID_BATCH']);
      expect((await call('GET', '/v1/topics/binary/records?offset=0')).body.nextOffset).toBe(3);
    } finally {
      client.close();
    }
  });

  it('finds the first record at or after a timestamp, and the newest records within a byte budget', async () => {
    await call('POST', '/v1/topics', { name: 'timed', partitions: 1 });
    await call('POST', '/v1/topics/timed/records', [{ value: 'old1' }, { value: 'old2' }]);
    await new Promise((r) => setTimeout(r, 30));
    const mid = Date.now();
    await new Promise((r) => setTimeout(r, 5));
    await call('POST', '/v1/topics/timed/records', [{ value: 'new1' }]);
    await call('POST', '/v1/topics/timed/records', [{ value: 'new2' }]);
    const since = await call('GET', `/v1/topics/timed/records?since=${mid}`);
    expect(since.body.records.map((r: any) => r.value)).toEqual(['new1', 'new2']);
    expect(since.body.records[0].offset).toBe(2);
    const future = await call('GET', `/v1/topics/timed/records?since=${Date.now() + 60_000}`);
    expect(future.body.records).toEqual([]);
    const tail = await call('GET', '/v1/topics/timed/records?tailBytes=8');
    expect(tail.body.records.map((r: any) => r.value)).toEqual(['new1', 'new2']);
  });

  it('limits a read by maxRecords and maxBytes but always returns one record', async () => {
    await call('POST', '/v1/topics', { name: 'limits', partitions: 1 });
    await call('POST', '/v1/topics/limits/records', Array.from({ length: 10 }, (_, i) => ({ value: 'x'.repeat(100) + i })));
    expect((await call('GET', '/v1/topics/limits/records?maxRecords=3')).body.records).toHaveLength(3);
    expect((await call('GET', '/v1/topics/limits/records?maxBytes=250')).body.records).toHaveLength(2);
    const one = await call('GET', '/v1/topics/limits/records?maxBytes=1&offset=4');
    expect(one.body.records.map((r: any) => r.offset)).toEqual([4]);
    expect(one.body.nextOffset).toBe(5);
  });

  it('long-polls until a record arrives', async () => {
    await call('POST', '/v1/topics', { name: 'poll', partitions: 1 });
    const started = Date.now();
    const pending = call('GET', '/v1/topics/poll/records?offset=0&waitMs=5000');
    // Not a guess the result depends on: a poll that reaches the node after the append finds the
    // record at offset 0 at once. The pause only makes it likely that the append wakes a waiting poll.
    await new Promise((r) => setTimeout(r, 100));
    await call('POST', '/v1/topics/poll/records', [{ value: 'hello' }]);
    const got = await pending;
    expect(got.body.records.map((r: any) => r.value)).toEqual(['hello']);
    expect(Date.now() - started).toBeLessThan(3000);
    const empty = await call('GET', '/v1/topics/poll/records?offset=1&waitMs=200');
    expect(empty.body.records).toEqual([]);
  });

  it('treats a retried idempotent update as one append', async () => {
    await call('POST', '/v1/topics', { name: 'idem', partitions: 4 });
    const body = [{ value: 'a' }, { value: 'b' }];
    const first = await call('POST', '/v1/topics/idem/records?producerId=prod-1&sequence=0', body);
    const retry = await call('POST', '/v1/topics/idem/records?producerId=prod-1&sequence=0', body);
    expect(retry.body.records).toEqual(first.body.records);
    expect(retry.body.duplicate).toBe(true);
    const d = await call('GET', '/v1/topics/idem');
    expect(d.body.partitions.reduce((n: number, x: any) => n + x.endOffset, 0)).toBe(2);
  });

  it('commits group offsets durably and reports lag in records and seconds', async () => {
    await call('POST', '/v1/topics', { name: 'lagging', partitions: 1 });
    await call('POST', '/v1/topics/lagging/records', Array.from({ length: 5 }, (_, i) => ({ value: `v${i}` })));
    expect((await call('POST', '/v1/groups/g1/offsets', { topic: 'lagging', partition: 0, offset: 2 })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));
    const o = await call('GET', '/v1/groups/g1/offsets?topic=lagging');
    expect(o.body.offsets).toHaveLength(1);
    expect(o.body.offsets[0]).toMatchObject({ topic: 'lagging', partition: 0, offset: 2, endOffset: 5, lagRecords: 3 });
    expect(o.body.offsets[0].lagSeconds).toBeGreaterThanOrEqual(1);
    expect((await call('POST', '/v1/groups/g1/offsets', { topic: 'lagging', partition: 0, offset: 6 })).status).toBe(416);
  });

  it('applies retention by size, by time and until a group has committed, reclaiming whole batches', async () => {
    // The time retention is also how long 'fresh' may take to get from its append to the
    // maintenance run and still be kept: a deadline, so it scales. The pause passes it for a and b.
    const retentionMs = slow(200);
    await call('POST', '/v1/topics', { name: 'bysize', partitions: 1, retention: { bytes: 300 } });
    for (let i = 0; i < 10; i++) await call('POST', '/v1/topics/bysize/records', [{ value: 'x'.repeat(100) }]);
    await call('POST', '/v1/topics', { name: 'bytime', partitions: 1, retention: { ms: retentionMs } });
    await call('POST', '/v1/topics/bytime/records', [{ value: 'a' }, { value: 'b' }]);
    await call('POST', '/v1/topics', { name: 'delivered', partitions: 1, retention: { untilGroup: 'bridge' } });
    for (let i = 0; i < 4; i++) await call('POST', '/v1/topics/delivered/records', [{ value: `d${i}` }]);
    await call('POST', '/v1/groups/bridge/offsets', { topic: 'delivered', partition: 0, offset: 3 });
    await new Promise((r) => setTimeout(r, retentionMs + 50));
    await call('POST', '/v1/topics/bytime/records', [{ value: 'fresh' }]);
    await call('POST', '/v1/admin/maintain');

    const size = (await call('GET', '/v1/topics/bysize')).body.partitions[0];
    expect(size).toMatchObject({ startOffset: 7, endOffset: 10, bytes: 300 });
    const time = (await call('GET', '/v1/topics/bytime')).body.partitions[0];
    expect(time).toMatchObject({ startOffset: 2, endOffset: 3 });
    const delivered = (await call('GET', '/v1/topics/delivered')).body.partitions[0];
    expect(delivered).toMatchObject({ startOffset: 3, endOffset: 4 });
    const read = await call('GET', '/v1/topics/delivered/records?offset=0');
    expect(read.status).toBe(416);
    expect((await call('GET', '/v1/topics/delivered/records')).body.records.map((r: any) => r.value)).toEqual(['d3']);
  });

  it('alters a topic\'s retention: a rule set later applies at the next maintenance, null removes one, the rest stays', async () => {
    await call('POST', '/v1/topics', { name: 'altered', partitions: 1, retention: { ms: 86_400_000 } });
    for (let i = 0; i < 10; i++) await call('POST', '/v1/topics/altered/records', [{ value: 'x'.repeat(100) }]);
    const a = await call('PATCH', '/v1/topics/altered', { retention: { bytes: 300 } });
    expect(a.status, a.text).toBe(200);
    expect(a.body).toMatchObject({ name: 'altered', partitionCount: 1, retention: { ms: 86_400_000, bytes: 300 } });
    await call('POST', '/v1/admin/maintain');
    expect((await call('GET', '/v1/topics/altered')).body.partitions[0]).toMatchObject({ startOffset: 7, endOffset: 10 });
    const b = await call('PATCH', '/v1/topics/altered', { retention: { ms: null, untilGroup: 'g-alter' } });
    expect(b.body.retention).toEqual({ bytes: 300, untilGroup: 'g-alter' });
    expect((await call('GET', '/v1/topics/altered')).body.retention).toEqual({ bytes: 300, untilGroup: 'g-alter' });
    for (const [body, code] of [[{ retention: { bytes: 0 } }, 'INVALID_ARGUMENT'], [{ retention: { forever: 1 } }, 'INVALID_ARGUMENT'], [{ replicas: 9 }, 'INVALID_ARGUMENT'], [{ retention: { ms: 1 }, name: 'x' }, 'INVALID_ARGUMENT'], [{}, 'BAD_REQUEST'], [{ partitions: 0 }, 'INVALID_ARGUMENT'], [{ partitions: 'x' }, 'INVALID_ARGUMENT'], [{ retention: 5 }, 'INVALID_ARGUMENT']] as const) {
      const r = await call('PATCH', '/v1/topics/altered', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.code).toBe(code);
    }
    expect((await call('PATCH', '/v1/topics/no-such', { retention: { ms: 1 } })).status).toBe(404);
  });

  it('deletes a topic and lets a new one of the same name start at offset 0', async () => {
    await call('POST', '/v1/topics', { name: 'reborn', partitions: 1 });
    await call('POST', '/v1/topics/reborn/records', [{ value: 'a' }, { value: 'b' }]);
    expect((await call('DELETE', '/v1/topics/reborn')).status).toBe(204);
    expect((await call('GET', '/v1/topics/reborn')).status).toBe(404);
    await call('POST', '/v1/topics', { name: 'reborn', partitions: 1 });
    const p = await call('POST', '/v1/topics/reborn/records', [{ value: 'c' }]);
    expect(p.body.records[0].offset).toBe(0);
    expect((await call('GET', '/v1/topics/reborn/records')).body.records.map((r: any) => r.value)).toEqual(['c']);
  });
});

describe('bad input gets a clear error and changes nothing', () => {
  const bad: Array<[string, string, string, unknown, number, string, Record<string, string>?]> = [
    ['bad keyspace name', 'PUT', '/v1/kv/bad%20name/k', 'v', 400, 'INVALID_NAME'],
    ['keyspace too long', 'PUT', `/v1/kv/${'a'.repeat(200)}/k`, 'v', 400, 'INVALID_NAME'],
    ['key too long', 'PUT', `/v1/kv/ks/${'k'.repeat(5000)}`, 'v', 400, 'INVALID_KEY'],
    ['bad ttl', 'PUT', '/v1/kv/ks/k?ttl=-5', 'v', 400, 'INVALID_ARGUMENT'],
    ['bad acks', 'PUT', '/v1/kv/ks/k?acks=maybe', 'v', 400, 'INVALID_ARGUMENT'],
    ['topic bad json', 'POST', '/v1/topics', '{"name":', 400, 'BAD_REQUEST', { 'content-type': 'application/json' }],
    ['topic as a form', 'POST', '/v1/topics', '{"name":"plain"}', 415, 'UNSUPPORTED_MEDIA_TYPE', { 'content-type': 'multipart/form-data; boundary=x' }],
    ['text/plain from a browser', 'POST', '/v1/topics', '{"name":"plain"}', 415, 'UNSUPPORTED_MEDIA_TYPE', { 'content-type': 'text/plain', 'sec-fetch-site': 'same-origin' }],
    ['records as a form', 'POST', '/v1/topics/orders/records', '[{"value":"x"}]', 415, 'UNSUPPORTED_MEDIA_TYPE', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['topic unknown field', 'POST', '/v1/topics', { name: 'x', colour: 'red' }, 400, 'INVALID_ARGUMENT'],
    ['topic too many partitions', 'POST', '/v1/topics', { name: 'x', partitions: 100000 }, 400, 'INVALID_ARGUMENT'],
    ['records not an array', 'POST', '/v1/topics/orders/records', { value: 'x' }, 400, 'BAD_REQUEST'],
    ['record without value', 'POST', '/v1/topics/orders/records', [{ key: 'x' }], 400, 'BAD_REQUEST'],
    ['non-string header', 'POST', '/v1/topics/orders/records', [{ value: 'x', headers: { a: 1 } }], 400, 'INVALID_ARGUMENT'],
    ['unknown topic', 'POST', '/v1/topics/nope/records', [{ value: 'x' }], 404, 'TOPIC_NOT_FOUND'],
    ['negative offset', 'GET', '/v1/topics/orders/records?offset=-1', undefined, 400, 'INVALID_OFFSET'],
    ['huge offset', 'GET', '/v1/topics/orders/records?offset=99999999999999999999', undefined, 400, 'INVALID_OFFSET'],
    ['offset past end', 'GET', '/v1/topics/orders/records?partition=0&offset=1000', undefined, 416, 'OFFSET_OUT_OF_RANGE'],
    ['no partition of three', 'GET', '/v1/topics/orders/records?offset=0', undefined, 400, 'BAD_REQUEST'],
    ['no such partition', 'GET', '/v1/topics/orders/records?partition=9', undefined, 404, 'PARTITION_NOT_FOUND'],
    ['bad since', 'GET', '/v1/topics/orders/records?since=yesterday-ish', undefined, 400, 'INVALID_ARGUMENT'],
    // one start only: neither silently wins
    ['offset and from', 'GET', '/v1/topics/orders/records?partition=0&offset=0&from=latest', undefined, 400, 'INVALID_ARGUMENT'],
    ['since and tailBytes', 'GET', '/v1/topics/orders/records?partition=0&since=1h&tailBytes=10', undefined, 400, 'INVALID_ARGUMENT'],
    // the code a read of that partition gives
    ['produce to no such partition', 'POST', '/v1/topics/orders/records?partition=9', [{ value: 'x' }], 404, 'PARTITION_NOT_FOUND'],
    ['a key path that is not UTF-8', 'GET', '/v1/kv/ks/%FF%FE', undefined, 400, 'INVALID_UTF8'],
    // not read as U+FFFD, another prefix than the one sent (bytes go as prefixEncoding=base64)
    ['a query value that is not UTF-8', 'GET', '/v1/kv/ks?prefix=%FF', undefined, 400, 'INVALID_UTF8'],
    ['unknown route', 'GET', '/v2/nothing', undefined, 404, 'ROUTE_NOT_FOUND'],
    ['wrong method', 'PATCH', '/v1/topics', undefined, 405, 'METHOD_NOT_ALLOWED'],
    ['bad percent-encoding', 'GET', '/v1/kv/ks/%E0%A4%A', undefined, 400, 'BAD_REQUEST'],
    ['bad group body', 'POST', '/v1/groups/g/offsets', '[]', 400, 'BAD_REQUEST', { 'content-type': 'application/json' }],
    ['topic without a name', 'POST', '/v1/topics', {}, 400, 'BAD_REQUEST'],
    ['/v1/ws without an upgrade', 'GET', '/v1/ws', undefined, 400, 'BAD_REQUEST'],
    ['unknown console file', 'GET', '/ui/nope.js', undefined, 404, 'ROUTE_NOT_FOUND'],
    // nothing to append is refused over HTTP as in a WebSocket produce, not acknowledged with replicas 0
    ['no records', 'POST', '/v1/topics/orders/records', [], 400, 'INVALID_ARGUMENT'],
    ['no NDJSON lines', 'POST', '/v1/topics/orders/records', '\n', 400, 'INVALID_ARGUMENT', { 'content-type': 'application/x-ndjson' }],
    ['sequence without producerId', 'POST', '/v1/topics/orders/records?partition=0&sequence=3', [{ value: 'x' }], 400, 'BAD_REQUEST'],
    ['producerId without sequence', 'POST', '/v1/topics/orders/records?partition=0&producerId=p', [{ value: 'x' }], 400, 'BAD_REQUEST'],
    // a batch naming itself (or a later one) as its predecessor would wait on itself
    ['previousSequence not below sequence', 'POST', '/v1/topics/orders/records?partition=0&producerId=p&sequence=5&previousSequence=5', [{ value: 'x' }], 400, 'INVALID_ARGUMENT'],
    // JSON integers are JSON numbers (docs/security.md, Strict parsing), and unknown fields are refused
    ['commit offset as a string', 'POST', '/v1/groups/g/offsets', { topic: 'orders', partition: 0, offset: '0' }, 400, 'INVALID_OFFSET'],
    ['commit without offset', 'POST', '/v1/groups/g/offsets', { topic: 'orders', partition: 0 }, 400, 'INVALID_OFFSET'],
    ['commit without topic', 'POST', '/v1/groups/g/offsets', { partition: 0, offset: 0 }, 400, 'BAD_REQUEST'],
    ['commit unknown field', 'POST', '/v1/groups/g/offsets', { topic: 'orders', partition: 0, offset: 0, member: 'm' }, 400, 'INVALID_ARGUMENT'],
    ['commit past the end', 'POST', '/v1/groups/g/offsets', { topic: 'orders', partition: 0, offset: 1_000_000 }, 416, 'OFFSET_OUT_OF_RANGE'],
    // a misspelt query parameter is refused, not ignored (it would read from the start, or wait for no one)
    ['misspelt fetch parameter', 'GET', '/v1/topics/orders/records?partition=0&ofset=3', undefined, 400, 'INVALID_ARGUMENT'],
    ['misspelt produce parameter', 'POST', '/v1/topics/orders/records?partition=0&ack=all', [{ value: 'x' }], 400, 'INVALID_ARGUMENT'],
    ['misspelt scan parameter', 'GET', '/v1/kv/ks?prefx=a', undefined, 400, 'INVALID_ARGUMENT'],
    ['a parameter on a route that takes none', 'GET', '/v1/topics/orders?partition=0', undefined, 400, 'INVALID_ARGUMENT'],
    // the route reads one value: which one would be a guess
    ['a parameter given twice', 'GET', '/v1/topics/orders/records?partition=0&partition=1', undefined, 400, 'INVALID_ARGUMENT'],
  ];
  for (const [name, method, path, body, status, code, headers] of bad) {
    it(name, async () => {
      const r = await call(method, path, body, headers);
      expect(r.status).toBe(status);
      expect(r.body.error).toMatchObject({ code, retryable: false });
      expect(typeof r.body.error.message).toBe('string');
    });
  }

  it('rejects invalid UTF-8 JSON and malformed NDJSON', async () => {
    const r = await call('POST', '/v1/topics/orders/records', new Uint8Array([0x5b, 0xff, 0x5d]));
    expect(r.body.error.code).toBe('INVALID_UTF8');
    const n = await call('POST', '/v1/topics/orders/records', '{"value":"ok"}\n{"value":', { 'content-type': 'application/x-ndjson' });
    expect(n.body.error.code).toBe('BAD_REQUEST');
    const good = await call('POST', '/v1/topics/orders/records?partition=0', '{"value":"n1"}\n{"value":"n2"}\n', { 'content-type': 'application/x-ndjson' });
    expect(good.body.records).toHaveLength(2);
  });

  it('stores bytes that are not UTF-8 sent as base64 and returns them flagged; refuses bad base64', async () => {
    await call('POST', '/v1/topics', { name: 'raw', partitions: 1 });
    const bytes = Buffer.from([0x61, 0xff, 0xfe, 0x00, 0x62]);
    const r = await call('POST', '/v1/topics/raw/records', [{ value: bytes.toString('base64'), valueEncoding: 'base64', key: Buffer.from([0xc3]).toString('base64'), keyEncoding: 'base64' }]);
    expect(r.status).toBe(200);
    const back = await call('GET', '/v1/topics/raw/records?offset=0');
    expect(back.body.records[0]).toMatchObject({ value: bytes.toString('base64'), valueEncoding: 'base64', key: 'ww==', keyEncoding: 'base64' });
    for (const bad of [{ value: 'a b', valueEncoding: 'base64' }, { value: 'YQ', valueEncoding: 'base64' }, { value: 'YQ==', valueEncoding: 'hex' }, { value: 1, valueEncoding: 'base64' }]) {
      const e = await call('POST', '/v1/topics/raw/records', [bad]);
      expect(e.status).toBe(400);
      expect(e.body.error.code).toBe('INVALID_ARGUMENT');
    }
    expect((await call('GET', '/v1/topics/raw')).body.partitions[0].endOffset).toBe(1);
  });

  it('refuses an update over 20 MB whole, storing none of it', async () => {
    await call('POST', '/v1/topics', { name: 'big', partitions: 1 });
    const chunk = 'y'.repeat(3_000_000);
    const body = Array.from({ length: 7 }, () => ({ value: chunk }));
    const r = await call('POST', '/v1/topics/big/records', body);
    expect(r.status).toBe(413);
    expect(r.body.error.code).toBe('BATCH_TOO_LARGE');
    expect((await call('GET', '/v1/topics/big')).body.partitions[0].endOffset).toBe(0);
    const ok = await call('POST', '/v1/topics/big/records', body.slice(0, 2));
    expect(ok.status).toBe(200);
  });

  it('parses large batches off the gateway thread with the same rules', async () => {
    await call('POST', '/v1/topics', { name: 'large', partitions: 1 });
    const records = Array.from({ length: 2000 }, (_, i) => ({ value: `record-${i}-${'z'.repeat(200)}`, headers: { task: 'bulk' } }));
    const ok = await call('POST', '/v1/topics/large/records', records);
    expect(ok.body.records).toHaveLength(2000);
    expect(ok.body.records[1999]).toEqual({ partition: 0, offset: 1999 });
    const asJson = { 'content-type': 'application/json' };
    const broken = JSON.stringify(records).slice(0, -2);
    expect((await call('POST', '/v1/topics/large/records', broken, asJson)).body.error.code).toBe('BAD_REQUEST');
    const badField = JSON.stringify([...records, { value: 'x', partition: 3 }]);
    expect((await call('POST', '/v1/topics/large/records', badField, asJson)).body.error.code).toBe('INVALID_ARGUMENT');
    expect((await call('GET', '/v1/topics/large')).body.partitions[0].endOffset).toBe(2000);
  });

  it('still serves after all of that', async () => {
    expect((await call('GET', '/v1/health')).body.status).toBe('ok');
    expect((await call('GET', '/v1/topics/orders')).body.partitions.length).toBe(3);
  });
});

describe('observability', () => {
  it('exposes Prometheus metrics with request, stream and event-loop series', async () => {
    const m = await call('GET', '/metrics');
    expect(m.status).toBe(200);
    for (const name of ['chicago_requests_total', 'chicago_request_duration_seconds_bucket', 'chicago_stream_end_offset', 'chicago_event_loop_delay_seconds', 'chicago_group_lag_records', 'chicago_process_process_cpu_seconds_total', 'chicago_process_nodejs_heap_size_used_bytes']) {
      expect(m.text).toContain(name);
    }
    // prom-client's lag probe is left out: its own timer would wake the main thread 10 times a second
    expect(m.text).not.toContain('nodejs_eventloop_lag');
  });

  it('reports each thread\'s event-loop delay beyond the sampling interval: near 0 when idle, not 100 ms', async () => {
    await call('GET', '/metrics'); // starts a fresh sampling window
    await new Promise((r) => setTimeout(r, 500));
    const m = await call('GET', '/metrics');
    const p50 = [...m.text.matchAll(/^chicago_event_loop_delay_seconds\{thread="([^"]+)",quantile="0.5"\} (\S+)$/gm)].map((x) => [x[1], Number(x[2])] as const);
    expect(p50.map(([t]) => t)).toEqual(expect.arrayContaining(['main', 'worker-0']));
    for (const [thread, seconds] of p50) expect(seconds, thread).toBeLessThan(0.05);
  });

  it('reports partitions, epochs and sequences in status', async () => {
    const s = await call('GET', '/v1/status');
    expect(s.body.state).toBe('up');
    expect(s.body.partitions.length).toBe(8);
    expect(s.body.partitions.every((p: any) => p.epoch === 1)).toBe(true);
  });
});

describe('data dir format', () => {
  it('reads a format 1 dir and marks it 4 (record batches, stored once, in their own column family); refuses a format it does not know and a cluster node\'s dir', async () => {
    const { mkdtemp, readFile, writeFile, rm } = await import('node:fs/promises');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-format-'));
    const meta = path.join(dir, 'chicago.json');
    try {
      let n = await startNode({ dataDir: dir });
      await http(n.url, 'POST', '/v1/topics', { name: 'f', partitions: 1 });
      await http(n.url, 'POST', '/v1/topics/f/records', [{ value: 'before' }]);
      await n.stop();
      expect(JSON.parse(await readFile(meta, 'utf8')).format).toBe(4);
      await writeFile(meta, JSON.stringify({ ...JSON.parse(await readFile(meta, 'utf8')), format: 1 }));
      n = await startNode({ dataDir: dir });
      expect(JSON.parse(await readFile(meta, 'utf8')).format).toBe(4);
      await http(n.url, 'POST', '/v1/topics/f/records', [{ value: 'after' }]);
      expect((await http(n.url, 'GET', '/v1/topics/f/records?offset=0')).body.records.map((r: any) => r.value)).toEqual(['before', 'after']);
      await n.stop();
      const fourMeta = JSON.parse(await readFile(meta, 'utf8'));
      expect(fourMeta.cluster).toBe(false);
      await writeFile(meta, JSON.stringify({ ...fourMeta, cluster: true }));
      await expect(startNode({ dataDir: dir, startTimeoutMs: 20_000 })).rejects.toThrow(/made by a cluster node; a single node needs a data dir of its own/);
      await writeFile(meta, JSON.stringify({ ...fourMeta, format: 99 }));
      await expect(startNode({ dataDir: dir, startTimeoutMs: 20_000 })).rejects.toThrow(/has format 99, this build reads 1, 2, 3, 4/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
