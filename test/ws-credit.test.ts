// One WebSocket connection, many tails: credit that idle tails hold in the node must not starve a
// busy one, and credit of ended subscriptions comes back to the connection. (A guard reading four
// partitions, with every record in one of them, once received nothing: the idle tails and the
// decisions tail had taken the connection's whole window.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChicagoClient, type TailStream } from '../src/client/index.js';
import { limits } from '../src/runtime/limits.js';
import { type NodeHandle, startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

const IDLE = 6;
const BIG_TOPIC = 'credit-big';
let node: NodeHandle;
let client: ChicagoClient;

async function first(tail: TailStream, ms: number): Promise<number> {
  const t = setTimeout(() => void tail.return(), ms);
  const r = await tail.next();
  clearTimeout(t);
  return r.done ? -1 : r.value.offset;
}

/** Reads `n` records or gives up after `ms`; returns how many arrived. */
async function drain(tail: TailStream, n: number, ms: number): Promise<number> {
  let got = 0;
  const t = setTimeout(() => void tail.return(), ms);
  for await (const _ of tail) if (++got >= n) break;
  clearTimeout(t);
  return got;
}

beforeAll(async () => {
  node = await startNode();
  const res = await fetch(`${node.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'credit', partitions: IDLE + 1 }) });
  expect(res.status).toBe(201);
  const big = await fetch(`${node.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: BIG_TOPIC, partitions: 4 }) });
  expect(big.status).toBe(201);
  client = await ChicagoClient.connect({ url: node.url });
}, slow(20_000));

afterAll(async () => {
  client?.close();
  await node?.stop();
});

describe('subscriber credit on one connection', () => {
  it('idle tails holding the window do not starve a busy tail; ended tails give their credit back', async () => {
    const producer = client.producer({ lingerMs: 1 });
    // idle tails that together were granted more than the connection's window; each proves it is
    // subscribed (and holds its credit in the node) by reading one small record
    const creditBytes = Math.ceil(limits.wsConnectionCreditBytes / (IDLE - 2));
    const idle: TailStream[] = [];
    for (let p = 0; p < IDLE; p++) {
      const tail = client.tail('credit', p, { from: 'earliest', creditBytes });
      idle.push(tail);
      await producer.send('credit', { value: 'hello', partition: p });
      const t0 = Date.now();
      const got = await first(tail, slow(5000));
      if (got !== 0) console.log(`idle ${p}: ${got} after ${Date.now() - t0} ms`);
      expect(got).toBe(0);
    }
    // subscriptions that end with unused credit, many times over: the window must not leak
    for (let i = 0; i < 5; i++) {
      const t = client.tail('credit', 0, { from: 'earliest', creditBytes: limits.wsConnectionCreditBytes });
      expect(await first(t, slow(5000))).toBe(0);
      await t.return();
    }
    // then a busy partition: several windows' worth of records must all arrive
    const busy = client.tail('credit', IDLE, { from: 'earliest' });
    const value = 'x'.repeat(10_000);
    const n = Math.ceil((2 * limits.wsConnectionCreditBytes) / 10_000);
    for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => producer.send('credit', { value, partition: IDLE })));
    expect(await drain(busy, n, slow(15_000))).toBe(n);
    await producer.close();
    for (const t of idle) await t.return();
  }, slow(40_000));

  it('records larger than a tail\'s share of the window pass one after another (the overshoot is paid from later grants)', async () => {
    const tails = [0, 1, 2, 3].map((p) => client.tail(BIG_TOPIC, p, { from: 'earliest' }));
    const producer = client.producer({ lingerMs: 1 });
    const values = ['a', 'x'.repeat(1024 * 1024), 'y'.repeat(1000), 'z'.repeat(1024 * 1024), 'w'.repeat(2000), 'c'];
    for (const value of values) await producer.send(BIG_TOPIC, { value, partition: 3, headers: { host: 'web', task: 'nginx' } });
    expect(await drain(tails[3], values.length, slow(10_000))).toBe(values.length);
    await producer.close();
    for (const t of tails) await t.return();
  }, slow(30_000));
});
