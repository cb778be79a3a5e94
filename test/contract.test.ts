// The NodeApi contract, one set of behaviours run against every way in: the node in this process,
// HTTP, the WebSocket client, and the WebSocket client against a 3-node cluster. Each subject
// answers with the same positions, versions, duplicates and error codes, so an interface that
// drifts from the others fails here.
import { encodeBatch } from '../src/protocol/batch.js';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ChicagoClient } from '../src/client/index.js';
import { Session } from '../src/client/session.js';
import { recordPartition } from '../src/runtime/hash.js';
import { startCluster } from './helpers/cluster.js';
import { startEarly } from './helpers/early.js';
import { repoRoot, startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

interface InRecord { key?: Buffer; value: Buffer; headers?: Record<string, string> }
interface OutRecord extends InRecord { offset: number }
interface ProduceOpts { partition?: number; producerId?: string; sequence?: number; previousSequence?: number }

/** one way into a node; every method rejects with an error carrying the catalogue's `code` */
interface Subject {
  readonly replicas: number;
  kvPut(ks: string, key: Buffer, value: Buffer): Promise<{ version: number; replicas: number }>;
  kvGet(ks: string, key: Buffer): Promise<{ value: Buffer; version: number } | undefined>;
  kvDelete(ks: string, key: Buffer): Promise<{ existed: boolean; version: number }>;
  kvScan(ks: string, opts: { prefix?: Buffer; after?: Buffer; limit: number }): Promise<{ keys: string[]; next?: Buffer }>;
  createTopic(name: string, partitions: number): Promise<void>;
  endOffsets(topic: string): Promise<number[]>;
  produce(topic: string, records: InRecord[], opts?: ProduceOpts): Promise<{ positions: Array<{ partition: number; offset: number }>; duplicate: boolean; replicas: number }>;
  read(topic: string, partition: number, from: number, max: number): Promise<OutRecord[]>;
  commit(group: string, topic: string, partition: number, offset: number): Promise<void>;
  offsets(group: string, topic: string): Promise<Array<{ partition: number; offset: number; lagRecords: number }>>;
  groupDelete(group: string): Promise<{ removed: number }>;
  close(): Promise<void>;
}

class CodedError extends Error {
  constructor(readonly code: string, message: string) { super(message); }
}

// ---- the node in this process (dist: its worker threads load compiled files) ----------------------

async function inProcess(): Promise<Subject> {
  const { ChicagoNode } = await import(path.join(repoRoot, 'dist/src/node/node.js')) as typeof import('../src/node/node.js');
  const { loadConfig } = await import(path.join(repoRoot, 'dist/src/runtime/config.js')) as typeof import('../src/runtime/config.js');
  const { createLogger } = await import(path.join(repoRoot, 'dist/src/runtime/log.js')) as typeof import('../src/runtime/log.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chicago-contract-'));
  const node = await ChicagoNode.start(loadConfig({ flags: { dataDir: dir, partitions: 8, workers: 2 } }), createLogger('silent'));
  return {
    replicas: 1,
    kvPut: (ks, key, value) => node.kvPut(ks, key, value, { acks: 'all' }).then((r) => ({ version: Number(r.version), replicas: r.replicas })),
    kvGet: async (ks, key) => {
      const e = await node.kvGet(ks, key);
      return e && { value: Buffer.from(e.value), version: Number(e.version) };
    },
    kvDelete: (ks, key) => node.kvDelete(ks, key, { acks: 'all' }).then((r) => ({ existed: r.existed, version: Number(r.version) })),
    kvScan: async (ks, opts) => {
      const r = await node.kvScan(ks, { limit: opts.limit, ...(opts.prefix ? { prefix: opts.prefix } : {}), ...(opts.after ? { after: opts.after } : {}) });
      return { keys: r.items.map((i) => Buffer.from(i.key).toString()), ...(r.next ? { next: Buffer.from(r.next) } : {}) };
    },
    createTopic: async (name, partitions) => { await node.createTopic({ name, partitions } as never); },
    endOffsets: async (topic) => (await node.describeTopic(topic)).partitionsInfo!.map((p) => Number(p.endOffset)),
    produce: async (topic, records, opts = {}) => {
      const r = await node.produce(topic, records.map((x) => ({ value: x.value, ...(x.key ? { key: x.key } : {}), ...(x.headers ? { headers: x.headers } : {}) })), { acks: 'all', ...opts });
      return { positions: r.records.map((p) => ({ partition: p.partition, offset: Number(p.offset) })), duplicate: r.duplicate === true, replicas: r.replicas };
    },
    read: async (topic, partition, from, max) => {
      const r = await node.fetch(topic, partition, { from: { kind: 'offset', offset: from }, maxRecords: max, maxBytes: 1 << 20, waitMs: 0 });
      return r.records.map((x) => ({ offset: Number(x.offset), value: Buffer.from(x.value), ...(x.key ? { key: Buffer.from(x.key) } : {}), ...(x.headers ? { headers: x.headers } : {}) }));
    },
    commit: (group, topic, partition, offset) => node.commitOffset(group, topic, partition, offset),
    offsets: async (group, topic) => (await node.groupOffsets(group, topic)).map((o) => ({ partition: o.partition, offset: Number(o.offset), lagRecords: o.lagRecords })),
    groupDelete: (group) => node.groupDelete(group),
    close: async () => { await node.stop(); rmSync(dir, { recursive: true, force: true }); },
  };
}

// ---- HTTP ------------------------------------------------------------------------------------------

function overHttp(url: string): Subject {
  const call = async (method: string, route: string, body?: unknown): Promise<any> => {
    const res = await fetch(url + route, { method, ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}) });
    const text = await res.text();
    const json = text ? JSON.parse(text) : {};
    if (!res.ok) throw new CodedError(json.error?.code ?? `HTTP_${res.status}`, `${method} ${route}: ${text}`);
    return json;
  };
  const b64 = (b: Buffer) => b.toString('base64');
  const bytes = (v: string, enc?: string) => Buffer.from(v, enc === 'base64' ? 'base64' : 'utf8');
  const q = (o: Record<string, unknown>) => Object.entries(o).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${encodeURIComponent(String(v))}`).join('&');
  return {
    replicas: 1,
    kvPut: async (ks, key, value) => {
      const r = await fetch(`${url}/v1/kv/${ks}/${encodeURIComponent(key.toString())}`, { method: 'PUT', body: value, headers: { 'content-type': 'application/octet-stream' } });
      const j = await r.json() as any;
      if (!r.ok) throw new CodedError(j.error.code, JSON.stringify(j));
      return { version: j.version, replicas: j.replicas };
    },
    kvGet: async (ks, key) => {
      const r = await fetch(`${url}/v1/kv/${ks}/${encodeURIComponent(key.toString())}`);
      if (r.status === 404) return undefined;
      if (!r.ok) throw new CodedError(((await r.json()) as any).error.code, 'kv get');
      return { value: Buffer.from(await r.arrayBuffer()), version: Number(r.headers.get('x-chicago-version') ?? r.headers.get('etag')?.replace(/"/g, '')) };
    },
    kvDelete: async (ks, key) => {
      const j = await call('DELETE', `/v1/kv/${ks}/${encodeURIComponent(key.toString())}`);
      return { existed: j.existed, version: j.version };
    },
    kvScan: async (ks, opts) => {
      const j = await call('GET', `/v1/kv/${ks}?${q({ prefix: opts.prefix?.toString(), after: opts.after?.toString(), limit: opts.limit })}`);
      return { keys: j.items.map((i: any) => i.key), ...(j.next !== undefined ? { next: Buffer.from(j.next) } : {}) };
    },
    createTopic: async (name, partitions) => { await call('POST', '/v1/topics', { name, partitions }); },
    endOffsets: async (topic) => (await call('GET', `/v1/topics/${topic}`)).partitions.map((p: any) => p.endOffset),
    produce: async (topic, records, opts = {}) => {
      const body = records.map((r) => ({ value: b64(r.value), valueEncoding: 'base64', ...(r.key ? { key: b64(r.key), keyEncoding: 'base64' } : {}), ...(r.headers ? { headers: r.headers } : {}) }));
      const j = await call('POST', `/v1/topics/${topic}/records?${q({ acks: 'all', ...opts })}`, body);
      return { positions: j.records, duplicate: j.duplicate === true, replicas: j.replicas };
    },
    read: async (topic, partition, from, max) => {
      const j = await call('GET', `/v1/topics/${topic}/records?${q({ partition, offset: from, maxRecords: max })}`);
      return j.records.map((r: any) => ({
        offset: r.offset, value: bytes(r.value, r.valueEncoding),
        ...(r.key !== undefined && r.key !== null ? { key: bytes(r.key, r.keyEncoding) } : {}),
        ...(r.headers && Object.keys(r.headers).length ? { headers: r.headers } : {}),
      }));
    },
    commit: async (group, topic, partition, offset) => { await call('POST', `/v1/groups/${group}/offsets`, { topic, partition, offset }); },
    offsets: async (group, topic) => (await call('GET', `/v1/groups/${group}/offsets?topic=${topic}`)).offsets.map((o: any) => ({ partition: o.partition, offset: o.offset, lagRecords: o.lagRecords })),
    groupDelete: async (group) => ({ removed: (await call('DELETE', `/v1/groups/${group}`)).removed }),
    close: async () => {},
  };
}

// ---- the WebSocket client (topic admin over HTTP, as the client has none) ----------------------------

async function overWs(url: string, replicas: number): Promise<Subject> {
  const client = await ChicagoClient.connect({ url });
  const session = await Session.open({ url, connectTimeoutMs: 10_000, requestTimeoutMs: 30_000, backoffMinMs: 50, backoffMaxMs: 2_000, clientName: 'contract' });
  const admin = overHttp(url);
  return {
    replicas,
    kvPut: (ks, key, value) => client.kv.put(ks, key, value),
    kvGet: (ks, key) => client.kv.get(ks, key),
    kvDelete: (ks, key) => client.kv.delete(ks, key),
    kvScan: async (ks, opts) => {
      const r = await client.kv.scan(ks, { limit: opts.limit, ...(opts.prefix ? { prefix: opts.prefix } : {}), ...(opts.after ? { after: opts.after } : {}) });
      return { keys: r.items.map((i) => i.key.toString()), ...(r.next ? { next: r.next } : {}) };
    },
    createTopic: admin.createTopic,
    endOffsets: async (topic) => (await client.topic(topic)).partitions.map((p) => p.endOffset),
    produce: async (topic, records, opts = {}) => {
      // the raw op (the client's producer picks its own sequences), with the records as one record
      // batch, as the client's producer sends them (HTTP and in-process cover the other forms)
      const r = await session.request({
        op: 'produce', topic, acks: 'all', ...opts,
        batch: encodeBatch(records.map((x) => ({ value: x.value, key: x.key, headers: x.headers }))),
      } as never, 'write');
      const parts = r.partitions as number[];
      return { positions: (r.offsets as number[]).map((offset, i) => ({ partition: parts[i], offset })), duplicate: r.duplicate === true, replicas: r.replicas as number };
    },
    read: async (topic, partition, from, max) => {
      const out: OutRecord[] = [];
      const end = (await client.topic(topic)).partitions[partition].endOffset;
      if (from >= end) return out;
      const tail = client.tail(topic, partition, { from: { offset: from } });
      for await (const r of tail) {
        out.push({ offset: r.offset, value: r.value, ...(r.key ? { key: r.key } : {}), ...(r.headers && Object.keys(r.headers).length ? { headers: r.headers } : {}) });
        if (out.length >= max || r.offset + 1 >= end) break;
      }
      return out;
    },
    commit: (group, topic, partition, offset) => client.commitOffset(group, topic, partition, offset),
    offsets: async (group, topic) => (await client.groupOffsets(group, topic)).map((o) => ({ partition: o.partition, offset: Number(o.offset), lagRecords: o.lagRecords })),
    groupDelete: (group) => client.groups.delete(group),
    close: async () => { client.close(); session.close(); },
  };
}

// ---- the WebSocket in JSON mode, raw, as a browser page speaks it (topic admin over HTTP) -----------

async function overJsonWs(url: string): Promise<Subject> {
  const ws = new WebSocket(url.replace('http', 'ws') + '/v1/ws', 'chicago.json');
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const waiting = new Map<number, (f: any) => void>();
  const subs = new Map<number, (f: any) => void>();
  ws.on('message', (d: Buffer) => {
    const f = JSON.parse(d.toString());
    if (f.op === 'records' || f.op === 'end') subs.get(f.sub)?.(f);
    else waiting.get(f.id)?.(f);
  });
  let nextId = 1;
  const request = (frame: Record<string, unknown>): Promise<any> => {
    const id = nextId++;
    const reply = new Promise<any>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to ${String(frame.op)}`)), slow(30_000));
      waiting.set(id, (f) => {
        clearTimeout(timer);
        waiting.delete(id);
        if (f.op === 'err') reject(new CodedError(f.code, f.message));
        else resolve(f);
      });
    });
    ws.send(JSON.stringify({ ...frame, id }));
    return reply;
  };
  const b64 = (b: Buffer) => b.toString('base64');
  const bytes = (v: string, enc?: string) => Buffer.from(v, enc === 'base64' ? 'base64' : 'utf8');
  const admin = overHttp(url);
  return {
    replicas: 1,
    kvPut: async (ks, key, value) => {
      const r = await request({ op: 'kv.put', ks, key: b64(key), keyEncoding: 'base64', value: b64(value), valueEncoding: 'base64' });
      return { version: r.version, replicas: r.replicas };
    },
    kvGet: async (ks, key) => {
      const r = await request({ op: 'kv.get', ks, key: b64(key), keyEncoding: 'base64' });
      return r.found ? { value: bytes(r.value, r.valueEncoding), version: r.version } : undefined;
    },
    kvDelete: async (ks, key) => {
      const r = await request({ op: 'kv.delete', ks, key: key.toString() });
      return { existed: r.existed, version: r.version };
    },
    kvScan: async (ks, opts) => {
      const r = await request({ op: 'kv.scan', ks, limit: opts.limit, ...(opts.prefix ? { prefix: opts.prefix.toString() } : {}), ...(opts.after ? { after: opts.after.toString() } : {}) });
      return { keys: r.items.map((i: any) => i.key), ...(r.next !== undefined ? { next: bytes(r.next, r.nextEncoding) } : {}) };
    },
    createTopic: admin.createTopic,
    endOffsets: async (topic) => (await request({ op: 'topic', topic })).partitions.map((p: any) => p.endOffset),
    produce: async (topic, records, opts = {}) => {
      const r = await request({
        op: 'produce', topic, acks: 'all', ...opts,
        records: records.map((x) => ({ value: b64(x.value), valueEncoding: 'base64', ...(x.key ? { key: b64(x.key), keyEncoding: 'base64' } : {}), ...(x.headers ? { headers: x.headers } : {}) })),
      });
      return { positions: (r.offsets as number[]).map((offset, i) => ({ partition: r.partitions[i], offset })), duplicate: r.duplicate === true, replicas: r.replicas };
    },
    read: async (topic, partition, from, max) => {
      const end = (await request({ op: 'topic', topic })).partitions[partition].endOffset;
      const out: OutRecord[] = [];
      if (from >= end) return out;
      const sub = nextId;
      const done = new Promise<void>((resolve) => subs.set(sub, (f) => {
        for (const r of f.records ?? []) {
          if (out.length < max) {
            out.push({
              offset: r.offset, value: bytes(r.value, r.valueEncoding),
              ...(r.key !== null ? { key: bytes(r.key, r.keyEncoding) } : {}),
              ...(Object.keys(r.headers).length ? { headers: r.headers } : {}),
            });
          }
        }
        if (f.op === 'end' || out.length >= max || out[out.length - 1]?.offset + 1 >= end) resolve();
      }));
      await request({ op: 'subscribe', topic, partition, from: { offset: from }, credit: 1 << 20 });
      await done;
      subs.delete(sub);
      await request({ op: 'unsubscribe', sub }).catch(() => undefined);
      return out;
    },
    commit: async (group, topic, partition, offset) => { await request({ op: 'commit', group, topic, partition, offset }); },
    offsets: async (group, topic) => (await request({ op: 'offsets', group, topic })).offsets.map((o: any) => ({ partition: o.partition, offset: o.offset, lagRecords: o.lagRecords })),
    groupDelete: async (group) => ({ removed: (await request({ op: 'group.delete', group })).removed }),
    close: async () => { ws.close(); },
  };
}

// ---- the contract ------------------------------------------------------------------------------------

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
const B = (s: string) => Buffer.from(s);

function contract(name: string, open: () => Promise<Subject>): void {
  describe(name, () => {
    let s: Subject;
    beforeAll(async () => { s = await open(); }, slow(120_000));
    afterAll(async () => { await s?.close(); });
    const id = `c${Math.random().toString(36).slice(2, 8)}`;

    it('KV: versions grow, reads return the last write, delete says whether the key existed', async () => {
      const ks = `${id}kv`;
      expect(await s.kvGet(ks, B('missing'))).toBeUndefined();
      const a = await s.kvPut(ks, B('k'), B('one'));
      const b = await s.kvPut(ks, B('k'), Buffer.from([0, 0xff, 0xfe, 10]));
      expect(a.replicas).toBe(s.replicas);
      expect(b.version).toBeGreaterThan(a.version);
      expect(await s.kvGet(ks, B('k'))).toEqual({ value: Buffer.from([0, 0xff, 0xfe, 10]), version: b.version });
      const d = await s.kvDelete(ks, B('k'));
      expect(d.existed).toBe(true);
      expect(d.version).toBeGreaterThan(b.version);
      expect((await s.kvDelete(ks, B('k'))).existed).toBe(false);
      expect(await s.kvGet(ks, B('k'))).toBeUndefined();
    });

    it('KV: a scan pages through a prefix in key order', async () => {
      const ks = `${id}scan`;
      for (const k of ['a/3', 'a/1', 'b/1', 'a/2']) await s.kvPut(ks, B(k), B(k));
      const first = await s.kvScan(ks, { prefix: B('a/'), limit: 2 });
      expect(first.keys).toEqual(['a/1', 'a/2']);
      expect(first.next).toBeDefined();
      const second = await s.kvScan(ks, { prefix: B('a/'), after: first.next, limit: 2 });
      expect(second.keys).toEqual(['a/3']);
    });

    it('streams: keyed records land by murmur3(key), offsets are contiguous, reads return bytes and headers as written', async () => {
      const t = `${id}-keyed`;
      await s.createTopic(t, 4);
      const recs: InRecord[] = Array.from({ length: 12 }, (_, i) => ({ key: B(`user-${i % 3}`), value: Buffer.from([i, 0xff, 0x00]), headers: { n: String(i) } }));
      const r = await s.produce(t, recs);
      expect(r.replicas).toBe(s.replicas);
      expect(r.positions.map((p) => p.partition)).toEqual(recs.map((x) => recordPartition(x.key!, 4)));
      const byPartition = new Map<number, number[]>();
      r.positions.forEach((p) => byPartition.set(p.partition, [...(byPartition.get(p.partition) ?? []), p.offset]));
      for (const offs of byPartition.values()) expect(offs).toEqual(offs.map((_, i) => offs[0] + i));
      const p0 = r.positions[0].partition;
      const got = await s.read(t, p0, 0, 100);
      const want = recs.filter((_, i) => r.positions[i].partition === p0);
      expect(got.map((g) => ({ key: g.key, value: g.value, headers: g.headers }))).toEqual(want.map((w) => ({ key: w.key, value: w.value, headers: w.headers })));
      const ends = await s.endOffsets(t);
      expect(ends.reduce((a, b) => a + b, 0)).toBe(12);
    });

    it('idempotent produce: a resend is a duplicate with the first positions; an old forgotten sequence is refused', async () => {
      const t = `${id}-idem`;
      await s.createTopic(t, 1);
      const pid = `${id}-producer`;
      const first = await s.produce(t, [{ value: B('a') }, { value: B('b') }], { partition: 0, producerId: pid, sequence: 5 });
      const again = await s.produce(t, [{ value: B('a') }, { value: B('b') }], { partition: 0, producerId: pid, sequence: 5 });
      expect(first.duplicate).toBe(false);
      expect(again).toMatchObject({ duplicate: true, positions: first.positions });
      for (let q = 6; q < 16; q++) await s.produce(t, [{ value: B(String(q)) }], { partition: 0, producerId: pid, sequence: q });
      expect(await code(s.produce(t, [{ value: B('old') }], { partition: 0, producerId: pid, sequence: 1 }))).toBe('OUT_OF_ORDER_SEQUENCE');
      expect((await s.endOffsets(t))[0]).toBe(12);
    });

    it('pipelined produce: a batch whose predecessor is not stored is refused with SEQUENCE_GAP and appends nothing', async () => {
      const t = `${id}-pipe`;
      await s.createTopic(t, 2);
      const pid = `${id}-pipeliner`;
      expect(await code(s.produce(t, [{ value: B('second') }], { partition: 1, producerId: pid, sequence: 2, previousSequence: 1 }))).toBe('SEQUENCE_GAP');
      await s.produce(t, [{ value: B('first') }], { partition: 1, producerId: pid, sequence: 1 });
      await s.produce(t, [{ value: B('second') }], { partition: 1, producerId: pid, sequence: 2, previousSequence: 1 });
      expect((await s.read(t, 1, 0, 10)).map((r) => r.value.toString())).toEqual(['first', 'second']);
      // the order it asks for is per partition: without one named, a multi-partition topic refuses it
      expect(await code(s.produce(t, [{ value: B('x') }], { producerId: pid, sequence: 3, previousSequence: 2 }))).toBe('INVALID_ARGUMENT');
    });

    it('groups: a commit shows as the group offset with its lag', async () => {
      const t = `${id}-grp`;
      await s.createTopic(t, 1);
      await s.produce(t, [1, 2, 3, 4, 5].map((i) => ({ value: B(String(i)) })), { partition: 0 });
      await s.commit(`${id}-g`, t, 0, 2);
      expect(await s.offsets(`${id}-g`, t)).toEqual([{ partition: 0, offset: 2, lagRecords: 3 }]);
      // a group without members can be deleted: its offsets go, and then it is unknown
      expect(await s.groupDelete(`${id}-g`)).toEqual({ removed: 1 });
      expect(await s.offsets(`${id}-g`, t)).toEqual([]);
      expect(await code(s.groupDelete(`${id}-g`))).toBe('NOT_FOUND');
    });

    it('errors: the same codes whichever way in', async () => {
      expect(await code(s.produce(`${id}-nosuch`, [{ value: B('x') }]))).toBe('TOPIC_NOT_FOUND');
      expect(await code(s.createTopic('bad name!', 1))).toBe('INVALID_NAME');
      const t = `${id}-err`;
      await s.createTopic(t, 1);
      expect(await code(s.createTopic(t, 1))).toBe('TOPIC_EXISTS');
      expect(await code(s.produce(t, [{ value: B('x') }], { partition: 3 }))).toMatch(/^(INVALID_ARGUMENT|PARTITION_NOT_FOUND)$/);
      expect(await code(s.kvPut('bad ks!', B('k'), B('v')))).toBe('INVALID_NAME');
    });
  });
}

// the node and the cluster, started with the file
const singleNode = startEarly(() => startNode(), (n) => n.stop());
const clusterOnce = startEarly(() => startCluster({ nodes: 3, partitions: 8, replicas: 3 }), (c) => c.teardown());

contract('in-process node', inProcess);
contract('HTTP', async () => overHttp((await singleNode()).url));
contract('WebSocket client', async () => overWs((await singleNode()).url, 1));
contract('WebSocket JSON mode', async () => overJsonWs((await singleNode()).url));
contract('WebSocket client, 3-node cluster', async () => overWs((await clusterOnce()).targets()[0].url, 3));
