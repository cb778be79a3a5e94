// An in-memory NodeApi for gateway and client tests: one node, topics created on first produce,
// idempotent producers, credit-respecting tails, and hooks to inject faults between steps.
import { decodeBatch, validateBatch, type CheckedBatch } from '../../src/protocol/batch.js';
import uWS from 'uWebSockets.js';
import pino from 'pino';
import { ChicagoError } from '../../src/runtime/errors.js';
import { offset, seq } from '../../src/runtime/ids.js';
import type {
  GroupOffset, KvEntry, NodeApi, ProduceOptions, ProduceRecord, ProduceResult, StartPosition,
  StoredRecord, Tail, TailSink,
} from '../../src/protocol/api.js';
import { storedRecordBytes } from '../../src/protocol/frames.js';
import { attachWebSocket, type WebSocketEndpoint } from '../../src/gateway/ws.js';

export const PARTITIONS = 2;

interface FakeTail { topic: string; partition: number; next: number; credit: number; sink: TailSink; cancelled: boolean; grants: number[]; pushedBytes: number }

export class FakeNodeApi implements NodeApi {
  readonly logs = new Map<string, StoredRecord[][]>();
  readonly kv = new Map<string, KvEntry>();
  readonly groups = new Map<string, number>();
  readonly tails: FakeTail[] = [];
  readonly producers = new Map<string, { sequence: number; result: ProduceResult }>();
  private seqNo = 0;
  private rr = 0;
  /** runs after a produce is appended and before it resolves: throw or close sockets here */
  afterProduce?: (topic: string, result: ProduceResult) => void | Promise<void>;
  /** delays every produce by this much */
  produceDelayMs = 0;
  /** while set, every produce waits for it */
  produceGate: Promise<void> | undefined;

  log(topic: string, partition: number): StoredRecord[] {
    let parts = this.logs.get(topic);
    if (!parts) {
      parts = Array.from({ length: PARTITIONS }, () => []);
      this.logs.set(topic, parts);
    }
    return parts[partition];
  }

  async kvPut(ks: string, key: Uint8Array, value: Uint8Array) {
    const version = seq(++this.seqNo);
    this.kv.set(`${ks}/${Buffer.from(key).toString('hex')}`, { key: Buffer.from(key), value: Buffer.from(value), version });
    return { version, replicas: 1 };
  }
  async kvGet(ks: string, key: Uint8Array) { return this.kv.get(`${ks}/${Buffer.from(key).toString('hex')}`); }
  async kvDelete(ks: string, key: Uint8Array) {
    const existed = this.kv.delete(`${ks}/${Buffer.from(key).toString('hex')}`);
    return { version: seq(++this.seqNo), replicas: 1, existed };
  }
  async kvScan(ks: string, opts: { prefix?: Uint8Array; after?: Uint8Array; limit: number }) {
    const items = [...this.kv.entries()]
      .filter(([k]) => k.startsWith(`${ks}/`))
      .map(([, e]) => e)
      .filter((e) => !opts.prefix || Buffer.from(e.key).subarray(0, opts.prefix.length).equals(opts.prefix))
      .filter((e) => !opts.after || Buffer.compare(e.key, opts.after) > 0)
      .sort((a, b) => Buffer.compare(a.key, b.key));
    const page = items.slice(0, opts.limit);
    return { items: page, next: items.length > opts.limit ? page[page.length - 1].key : undefined };
  }

  async createTopic(): Promise<never> { throw new ChicagoError('INTERNAL', 'not in fake'); }
  async listTopics() { return []; }
  async describeTopic(name: string): Promise<never> { throw new ChicagoError('TOPIC_NOT_FOUND', name); }
  async deleteTopic() {}

  /** batches sent as bytes, counted so tests can tell which way a producer sent */
  batchesReceived = 0;

  async produceBatch(topic: string, batch: Uint8Array | CheckedBatch, opts: ProduceOptions): Promise<ProduceResult> {
    const bytes = batch instanceof Uint8Array ? batch : batch.bytes;
    if (batch instanceof Uint8Array) validateBatch(bytes);
    this.batchesReceived++;
    return this.produce(topic, decodeBatch(bytes).records.map(([key, value, headers]) => ({ key: key ?? undefined, value, headers: headers ?? undefined })), opts);
  }

  async produce(topic: string, records: ProduceRecord[], opts: ProduceOptions): Promise<ProduceResult> {
    if (this.produceDelayMs > 0) await new Promise((r) => setTimeout(r, this.produceDelayMs));
    if (this.produceGate) await this.produceGate;
    if (topic === 'missing') throw new ChicagoError('TOPIC_NOT_FOUND', topic);
    if (opts.producerId !== undefined) {
      const prev = this.producers.get(opts.producerId);
      if (prev && opts.sequence! <= prev.sequence) return { ...prev.result, duplicate: true };
      if (prev && opts.sequence !== prev.sequence + 1) throw new ChicagoError('OUT_OF_ORDER_SEQUENCE', opts.producerId, opts.sequence, prev.sequence + 1);
    }
    const out: ProduceResult['records'] = [];
    for (const r of records) {
      const p = opts.partition ?? (this.rr++ % PARTITIONS);
      const log = this.log(topic, p);
      const rec: StoredRecord = { partition: p, offset: offset(log.length), timestampMs: Date.now(), key: r.key, value: r.value, headers: r.headers ?? {} };
      log.push(rec);
      out.push({ partition: p, offset: rec.offset });
    }
    const result: ProduceResult = { records: opts.acks === 'none' ? [] : out, replicas: 1 };
    if (opts.producerId !== undefined) this.producers.set(opts.producerId, { sequence: opts.sequence!, result });
    for (const t of this.tails) if (t.topic === topic) this.pump(t);
    await this.afterProduce?.(topic, result);
    return result;
  }

  async fetch(): Promise<never> { throw new ChicagoError('INTERNAL', 'not in fake'); }

  async tail(topic: string, partition: number, from: StartPosition, creditBytes: number, sink: TailSink): Promise<Tail> {
    if (topic === 'missing') throw new ChicagoError('TOPIC_NOT_FOUND', topic);
    const log = this.log(topic, partition);
    const next = from.kind === 'offset' ? from.offset : from.kind === 'latest' ? log.length : 0;
    const t: FakeTail = { topic, partition, next, credit: creditBytes, sink, cancelled: false, grants: [], pushedBytes: 0 };
    this.tails.push(t);
    queueMicrotask(() => this.pump(t));
    return {
      grant: (bytes) => { t.grants.push(bytes); t.credit += bytes; this.pump(t); },
      cancel: () => { t.cancelled = true; },
    };
  }

  /** Push what the credit allows; a record larger than the credit waits for more. */
  private pump(t: FakeTail): void {
    if (t.cancelled) return;
    const log = this.log(t.topic, t.partition);
    const batch: StoredRecord[] = [];
    while (t.next < log.length && batch.length < 1000) {
      const size = storedRecordBytes(log[t.next]);
      if (size > t.credit) break;
      t.credit -= size;
      t.pushedBytes += size;
      batch.push(log[t.next++]);
    }
    if (batch.length > 0) t.sink.push(batch);
  }

  async commitOffset(group: string, topic: string, partition: number, off: number) {
    this.groups.set(`${group}/${topic}/${partition}`, off);
  }
  // membership is tested against a real node (test/groups.test.ts)
  async groupJoin(): Promise<never> { throw new ChicagoError('UNKNOWN_OP', 'join (fake node)'); }
  async groupHeartbeat(): Promise<never> { throw new ChicagoError('UNKNOWN_OP', 'heartbeat (fake node)'); }
  async groupLeave(): Promise<never> { throw new ChicagoError('UNKNOWN_OP', 'leave (fake node)'); }
  async groupMembers(): Promise<never> { throw new ChicagoError('UNKNOWN_OP', 'members (fake node)'); }
  async groupDelete(): Promise<never> { throw new ChicagoError('UNKNOWN_OP', 'group.delete (fake node)'); }

  async groupOffsets(group: string, topic?: string): Promise<GroupOffset[]> {
    const out: GroupOffset[] = [];
    for (const [k, off] of this.groups) {
      const [g, t, p] = k.split('/');
      if (g !== group || (topic && t !== topic)) continue;
      const end = this.log(t, Number(p)).length;
      out.push({ topic: t, partition: Number(p), offset: offset(off), committedAtMs: 0, endOffset: offset(end), lagRecords: end - off, lagSeconds: 0 });
    }
    return out;
  }
  async status(): Promise<never> { throw new ChicagoError('INTERNAL', 'not in fake'); }
}

export interface FakeServer { api: FakeNodeApi; ws: WebSocketEndpoint; port: number; url: string; stop(): void }

/** A uWS app on an ephemeral port with only the WebSocket endpoint attached. */
export function startFakeServer(api = new FakeNodeApi()): Promise<FakeServer> {
  const app = uWS.App();
  const ws = attachWebSocket(app, { api, log: pino({ level: 'silent' }) });
  return new Promise((resolve, reject) => {
    app.listen('127.0.0.1', 0, (token) => {
      if (!token) return reject(new Error('listen failed'));
      const port = uWS.us_socket_local_port(token as unknown as uWS.us_socket);
      resolve({
        api, ws, port, url: `http://127.0.0.1:${port}`,
        stop: () => { ws.closeAll(); uWS.us_listen_socket_close(token); },
      });
    });
  });
}
