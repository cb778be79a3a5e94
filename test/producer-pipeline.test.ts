// The producer's pipelining (maxInFlight): unit cases over a fake session whose "node" is the real
// partition transition (test controls when each request arrives and what it answers), then a real
// node killed with -9 mid-stream.
import { decodeBatch, validateBatch } from '../src/protocol/batch.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChicagoClient } from '../src/client/index.js';
import { Producer, type RecordPosition } from '../src/client/producer.js';
import type { Reply, RequestBody, Session } from '../src/client/session.js';
import { ChicagoError, type ErrorCode } from '../src/runtime/errors.js';
import { initialState, step, type PartitionState, type WireRecord } from '../src/actors/partition.js';
import { epoch, partitionId, seq } from '../src/runtime/ids.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';
import { countersIn, expectExactlyOnceInOrder } from './helpers/produced.js';

type ProduceBody = Extract<RequestBody, { op: 'produce' }>;
interface Held { body: ProduceBody; resolve(r: Reply): void; reject(e: ChicagoError): void }

/** A session whose produce requests wait in `held` until the test delivers or fails them. */
class FakeSession {
  isUp = true;
  isClosed = false;
  /** as a node that takes record batches: the producer sends each batch's records as one */
  serverFeatures = ['batch'];
  readonly held: Held[] = [];
  /** every request as it was sent, in order */
  readonly sent: ProduceBody[] = [];
  state: PartitionState = initialState(partitionId(0), epoch(1), seq(0));
  /** the node's previousSequence rule: off proves the test sees what the rule prevents */
  rule = true;

  onUp(): () => void { return () => undefined; }
  request(body: RequestBody): Promise<Reply> {
    const b = body as ProduceBody;
    this.sent.push(b);
    return new Promise((resolve, reject) => this.held.push({ body: b, resolve, reject }));
  }

  /** Runs the oldest held request on the partition and answers it. */
  deliver(): void {
    const h = this.held.shift()!;
    const b = h.body;
    // the bytes as the node receives them (a copy: the node stamps its own)
    const batch = b.batch ? Buffer.from(b.batch) : undefined;
    const records: WireRecord[] = batch ? decodeBatch(batch).records : b.records!.map(([v, k, hd]) => [k ?? null, v, hd ?? null]);
    const r = step(this.state, {
      op: 'produce', topicId: 1, tp: b.partition ?? 0, ...(batch ? { batch, batchBytes: validateBatch(batch).recordBytes } : { records }), producerId: b.producerId, sequence: b.sequence,
      ...(this.rule && b.previousSequence !== undefined ? { previousSequence: b.previousSequence } : {}),
    }, 1000);
    this.state = r.state;
    if (r.reply.ok && !(r.reply.res as { duplicate: boolean }).duplicate) this.order.push(...records.map(([, v]) => Buffer.from(v).toString()));
    if (!r.reply.ok) return h.reject(new ChicagoError(r.reply.code as ErrorCode, ...r.reply.args));
    const res = r.reply.res as { base: number; count: number };
    h.resolve({ op: 'res', id: 0, partitions: records.map(() => b.partition ?? 0), offsets: records.map((_, j) => res.base + j) } as Reply);
  }

  /** Answers the oldest held request with `code` without running it. */
  fail(code: ErrorCode, ...args: unknown[]): void {
    this.held.shift()!.reject(new ChicagoError(code, ...args));
  }

  /** the values appended to the partition, in offset order */
  readonly order: string[] = [];
}

const settle = () => new Promise((r) => setTimeout(r, 0));
/** Waits (bounded) until the producer has sent `n` requests in all. */
async function sentCount(f: FakeSession, n: number): Promise<void> {
  const deadline = Date.now() + slow(2_000);
  while (f.sent.length < n) {
    if (Date.now() > deadline) throw new Error(`producer sent ${f.sent.length} requests, expected ${n}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Answers every request the producer sends until it has sent `atLeast` and has nothing in flight (bounded). */
async function drain(f: FakeSession, p: Producer<'acked'>, atLeast = 0): Promise<void> {
  for (let turns = 0; f.sent.length < atLeast || f.held.length > 0 || p.stats().inFlightBatches > 0; turns++) {
    if (turns > 1_000) throw new Error(`producer still sending after 1000 turns (${f.sent.length} requests)`);
    if (f.held.length) f.deliver();
    await settle();
  }
}

/** One record per batch: a batchBytesMax of 1 seals each at once. */
function pipelined(f: FakeSession, maxInFlight = 5): Producer<'acked'> {
  return new Producer(f as unknown as Session, { lingerMs: 0, batchBytesMax: 1, maxInFlight, deliveryTimeoutMs: slow(5_000) });
}

function sendAll(p: Producer<'acked'>, n: number, partition: number | undefined): Array<Promise<RecordPosition | ChicagoError>> {
  return Array.from({ length: n }, (_, i) => p.send('t', { value: `r${i}`, partition }).catch((e: ChicagoError) => e));
}

describe('producer pipelining (fake session, real partition transition)', () => {
  it('keeps up to maxInFlight batches in flight, each naming the one before it', async () => {
    const f = new FakeSession();
    const p = pipelined(f);
    const acks = sendAll(p, 8, 0);
    await sentCount(f, 5);
    await settle();
    expect(f.held.length).toBe(5); // a sixth waits for a slot
    expect(f.sent.map((b) => [b.sequence, b.previousSequence])).toEqual([[0, undefined], [1, 0], [2, 1], [3, 2], [4, 3]]);
    expect(new Set(f.sent.map((b) => b.producerId)).size).toBe(1);
    await drain(f, p, 8);
    expect((await Promise.all(acks)).map((r) => (r as RecordPosition).offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(p.stats()).toMatchObject({ inFlightBatchesPeak: 5, inFlightBatches: 0, errors: 0 });
  });

  it('maxInFlight 1, and a stream the node places, keep one batch in flight without previousSequence', async () => {
    for (const [maxInFlight, partition] of [[1, 0], [5, undefined]] as const) {
      const f = new FakeSession();
      const p = pipelined(f, maxInFlight);
      const acks = sendAll(p, 4, partition);
      for (let i = 0; i < 4; i++) {
        await sentCount(f, i + 1);
        await settle();
        expect(f.held.length).toBe(1);
        f.deliver();
      }
      await Promise.all(acks);
      expect(f.sent.every((b) => b.previousSequence === undefined)).toBe(true);
      expect(f.order).toEqual(['r0', 'r1', 'r2', 'r3']);
    }
  });

  /**
   * Batch 1 fails on its way (OVERLOADED: not run) while 2..4 reach the partition. With the node's
   * rule, the producer resends 1 before 2, 3, 4 and the log keeps send order. Without the rule the
   * same producer's batches land out of order: the check sees what the rule prevents.
   */
  async function failOneOfFive(rule: boolean): Promise<{ order: string[]; resent: number[]; results: Array<RecordPosition | ChicagoError> }> {
    const f = new FakeSession();
    f.rule = rule;
    const p = pipelined(f);
    const acks = sendAll(p, 5, 0);
    await sentCount(f, 5);
    f.deliver(); // 0 appended
    f.fail('OVERLOADED', 'test'); // 1 never ran
    f.deliver(); f.deliver(); f.deliver(); // 2, 3, 4: refused with SEQUENCE_GAP (rule) or appended
    await sentCount(f, 6);
    await settle();
    const first = f.sent.length;
    await drain(f, p);
    const results = await Promise.all(acks);
    return { order: f.order, resent: f.sent.slice(5).map((b) => b.sequence!), results: results.slice(0, first) };
  }

  it('resends a failed batch before the ones behind it: the log keeps send order (planted: without the node rule it does not)', async () => {
    const ok = await failOneOfFive(true);
    expect(ok.resent).toEqual([1, 2, 3, 4]);
    expect(ok.order).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
    expect(ok.results.map((r) => (r as RecordPosition).offset)).toEqual([0, 1, 2, 3, 4]);

    const planted = await failOneOfFive(false);
    expect(planted.order).not.toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
    expect(planted.order.slice(0, 2)).toEqual(['r0', 'r2']);
  });

  it('a reply lost after the append (OUTCOME_UNKNOWN) is resent and recognised as a duplicate, never appended twice', async () => {
    const f = new FakeSession();
    const p = pipelined(f);
    const acks = sendAll(p, 3, 0);
    await sentCount(f, 3);
    const lost = f.held[0]!;
    // run batch 0 but lose its reply
    f.held[0] = { ...lost, resolve: () => undefined, reject: () => undefined };
    f.deliver();
    lost.reject(new ChicagoError('OUTCOME_UNKNOWN', 'produce: connection lost'));
    f.deliver(); f.deliver(); // 1 and 2 appended behind it
    await sentCount(f, 4);
    await drain(f, p);
    expect((await Promise.all(acks)).map((r) => (r as RecordPosition).offset)).toEqual([0, 1, 2]);
    expect(f.order).toEqual(['r0', 'r1', 'r2']);
    expect(f.sent.slice(3).map((b) => b.sequence)).toEqual([0]);
  });

  it('a partition that forgot the producer refuses a linked batch once; it goes again without the link', async () => {
    const f = new FakeSession();
    const p = pipelined(f);
    const acks = sendAll(p, 2, 0);
    await sentCount(f, 2);
    f.deliver();
    await settle();
    f.state.producers.clear(); // the partition's LRU dropped the producer
    f.deliver(); // batch 1, previousSequence 0: SEQUENCE_GAP
    await sentCount(f, 3);
    expect(f.sent[2]).toMatchObject({ sequence: 1 });
    expect(f.sent[2]!.previousSequence).toBeUndefined();
    f.deliver();
    expect((await Promise.all(acks)).map((r) => (r as RecordPosition).offset)).toEqual([0, 1]);
    expect(f.order).toEqual(['r0', 'r1']);
  });

  it('a batch that fails for good rejects the batches behind it in flight; later sends start a fresh producerId', async () => {
    const f = new FakeSession();
    const p = pipelined(f);
    const acks = sendAll(p, 4, 0);
    await sentCount(f, 4);
    f.deliver(); // 0 appended
    f.fail('FORBIDDEN', 'test'); // 1: for good
    f.deliver(); f.deliver(); // 2, 3: SEQUENCE_GAP behind the failed 1 (retryable, but they name 1)
    const results = await Promise.all(acks);
    expect((results[0] as RecordPosition).offset).toBe(0);
    for (const r of results.slice(1)) expect(r).toMatchObject({ code: 'FORBIDDEN' });
    const oldId = f.sent[0]!.producerId;
    const next = p.send('t', { value: 'r4', partition: 0 });
    await sentCount(f, 5);
    expect(f.sent[4]!.producerId).not.toBe(oldId);
    expect(f.sent[4]).toMatchObject({ sequence: 0 });
    expect(f.sent[4]!.previousSequence).toBeUndefined();
    f.deliver();
    expect(await next).toMatchObject({ offset: 1 });
    expect(f.order).toEqual(['r0', 'r4']);
    expect(p.stats()).toMatchObject({ errors: 3, inFlightBatches: 0 });
  });
});

describe('producer pipelining against a real node killed with -9', () => {
  let node: NodeHandle;
  beforeAll(async () => { node = await startNode(); }, slow(30_000));
  afterAll(async () => { await node?.stop(); });

  it('every acknowledged record is in the partition exactly once, in send order', async () => {
    expect((await http(node.url, 'POST', '/v1/topics', { name: 'pipe', partitions: 2, replicas: 1, retention: {} })).status).toBeLessThan(300);
    const client = await ChicagoClient.connect({ url: node.url, backoffMinMs: 20, backoffMaxMs: 200, connectTimeoutMs: slow(20_000) });
    try {
      const p = client.producer({ lingerMs: 0, batchBytesMax: 64, maxInFlight: 5, deliveryTimeoutMs: slow(20_000) });
      const acked = new Map<number, Set<number>>([[0, new Set()], [1, new Set()]]);
      const failed: string[] = [];
      const sends: Array<Promise<void>> = [];
      let n = 0;
      let killed = false;
      const started = Date.now();
      const stopAt = started + slow(8_000);
      // bounded by count and time; the node is killed and restarted a third of the way in
      while (n < 6_000 && Date.now() < stopAt) {
        for (let j = 0; j < 20; j++, n++) {
          const partition = n % 2;
          const i = n;
          sends.push(p.send('pipe', { value: `v${i}`, headers: { n: String(i) }, partition }).then(
            () => { acked.get(partition)!.add(i); },
            (e: ChicagoError) => { failed.push(`${i}: ${e.code}`); },
          ));
        }
        if (!killed && n >= 2_000) {
          killed = true;
          await node.kill('SIGKILL');
          node = await node.restart();
        }
        await new Promise((r) => setTimeout(r, 1));
      }
      await p.flush(slow(25_000));
      await Promise.all(sends);
      expect(killed).toBe(true);
      const stats = p.stats();
      const ackedAll = acked.get(0)!.size + acked.get(1)!.size;
      console.log(`producer-pipeline: ${n} sent, ${ackedAll} acked, ${failed.length} failed, ${stats.retried} resent, peak ${stats.inFlightBatchesPeak} batches in flight, ${Date.now() - started} ms`);
      expect(stats.inFlightBatchesPeak).toBeGreaterThan(1);
      expect(stats.retried, 'the kill caught batches in flight').toBeGreaterThan(0);
      expect(ackedAll + failed.length).toBe(n);
      // records sent after the restart made it too
      expect([...acked.get(0)!, ...acked.get(1)!].some((i) => i > 2_100)).toBe(true);
      for (const partition of [0, 1]) {
        const got = await countersIn(node.url, 'pipe', partition);
        expectExactlyOnceInOrder(got, acked.get(partition)!);
        expect(got.every((i) => i % 2 === partition)).toBe(true);
      }
      // The client's view: a failed record is one whose outcome it could not learn in time.
      expect(failed.filter((f) => !/OUTCOME_UNKNOWN|TIMEOUT/.test(f))).toEqual([]);
    } finally {
      client.close();
    }
  }, slow(60_000));
});
