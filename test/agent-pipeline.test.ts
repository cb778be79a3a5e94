// The agent's pipelined shipping against a real node, through a recording HTTP proxy in this process
// (it sees each produce's sequence and previousSequence, and how many are in flight at once, and can
// refuse one or lose its answer): batches of an unkeyed task are in flight together, each naming the
// one before it; a batch refused or lost in the middle of the window, and a node killed -9 with
// several in flight, leave the topic exactly once and in seq order.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type AgentProc, readTopic, startAgent, topicReader, type TopicRecord } from './helpers/agent.js';
import { waitUntil } from './helpers/bridge.js';
import { PipelinedProduces } from '../src/gateway/pipelined.js';
import { limits } from '../src/runtime/limits.js';
import { BATCH_CONTENT_TYPE } from '../src/protocol/batch.js';
import { batchOf, duplicateOf, nodeRequest, RawBatch } from '../src/agent/shipper.js';
import { decodeSegment } from '../src/agent/spool.js';
import { type NodeHandle, startNode } from './helpers/launcher.js';

interface Produce { sequence: number; previous?: number; status?: number; code?: string; type?: string }
type Verdict = 'forward' | 'refuse' | 'lose';

/** Forwards to the node; records every produce; `decide` may refuse one (503) or lose its answer. */
class RecordingProxy {
  target: string;
  inFlight = 0;
  peak = 0;
  readonly produces: Produce[] = [];
  /** called per produce with its index and the number in flight, this one included */
  decide: (n: number, inFlight: number) => Verdict = () => 'forward';
  /** delay before a produce is forwarded: batches stay in flight long enough to overlap */
  holdMs = 0;
  /** answers a record-batch body 415, as a node that predates them does */
  refuseBatches = false;
  private readonly server: http.Server;
  url = '';

  constructor(target: string) {
    this.target = target;
    this.server = http.createServer((req, res) => void this.handle(req, res));
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const u = new URL(req.url ?? '/', 'http://x');
    const isProduce = req.method === 'POST' && u.pathname.endsWith('/records') && u.searchParams.has('sequence');
    let p: Produce | undefined;
    let verdict: Verdict = 'forward';
    if (isProduce) {
      const prev = u.searchParams.get('previousSequence');
      p = { sequence: Number(u.searchParams.get('sequence')), ...(prev !== null ? { previous: Number(prev) } : {}), type: req.headers['content-type'] };
      this.produces.push(p);
      this.inFlight++;
      this.peak = Math.max(this.peak, this.inFlight);
      verdict = this.decide(this.produces.length - 1, this.inFlight);
    }
    try {
      if (this.holdMs > 0 && isProduce) await new Promise((r) => setTimeout(r, this.holdMs));
      if (this.refuseBatches && isProduce && p!.type === BATCH_CONTENT_TYPE) {
        p!.status = 415;
        res.writeHead(415, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: `${p!.type}; expected application/json`, retryable: false } }));
        return;
      }
      if (verdict === 'refuse') {
        // answered late: the batches behind it reach the node first
        await new Promise((r) => setTimeout(r, 150));
        p!.status = 503;
        res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'UNAVAILABLE', message: 'refused by the test proxy', retryable: true } }));
        return;
      }
      let status = 502;
      let body = '';
      try {
        const r = await fetch(this.target + (req.url ?? '/'), {
          method: req.method,
          headers: req.headers['content-type'] ? { 'content-type': req.headers['content-type'] } : {},
          ...(chunks.length > 0 ? { body: Buffer.concat(chunks) } : {}),
        });
        status = r.status;
        body = await r.text();
      } catch (err) {
        body = JSON.stringify({ error: { code: 'UNAVAILABLE', message: `proxy: ${(err as Error).message}`, retryable: true } });
      }
      if (p) {
        p.status = status;
        if (status >= 400) p.code = (JSON.parse(body || '{}') as { error?: { code?: string } }).error?.code;
      }
      // the node stored it (or not): the agent never hears
      if (verdict === 'lose') return void res.socket?.destroy();
      res.writeHead(status, { 'content-type': 'application/json' }).end(body);
    } finally {
      if (isProduce) this.inFlight--;
    }
  }
}

let node: NodeHandle;
const agents: AgentProc[] = [];
const proxies: RecordingProxy[] = [];

beforeAll(async () => {
  node = await startNode({ dataDir: await mkdtemp(path.join(os.tmpdir(), 'chicago-agent-pipe-node-')) });
});

afterAll(async () => {
  for (const a of agents) a.proc.kill('SIGKILL');
  for (const p of proxies) await p.close();
  await node?.stop();
});

/** A pre-written file of n numbered lines, an agent shipping it through a new proxy. */
async function setup(name: string, n: number): Promise<{ proxy: RecordingProxy; config: string; topic: string }> {
  const proxy = new RecordingProxy(node.url);
  await proxy.listen();
  proxies.push(proxy);
  const dir = await mkdtemp(path.join(os.tmpdir(), `chicago-agent-pipe-${name}-`));
  await mkdir(path.join(dir, 'logs'));
  let text = '';
  for (let i = 0; i < n; i++) text += `${name} ${i} INFO some payload text\n`;
  await writeFile(path.join(dir, 'logs', 'a.log'), text);
  const topic = `agent-pipe-${name}`;
  const config = path.join(dir, 'agent.yaml');
  await writeFile(config, [
    `node: { url: ${proxy.url}, timeoutMs: 3000 }`,
    'host: pipehost',
    'spool: { dir: ./spool }',
    'pollIntervalMs: 50',
    // small batches: many of them, so several are in flight
    'batch: { maxRecords: 200, lingerMs: 0, inFlightMax: 4 }',
    'retry: { minMs: 20, maxMs: 200 }',
    'topicPartitions: 3',
    'sources:',
    '  - task: pipe',
    '    paths: [./logs/a.log]',
    `    topic: ${topic}`,
  ].join('\n'));
  return { proxy, config, topic };
}

async function running(config: string): Promise<AgentProc> {
  const a = startAgent(config);
  agents.push(a);
  await a.stdout.waitFor(/"msg":"agent running"/, 10_000);
  return a;
}

/** Every line once, and the task's records in the partition in seq order 0..n-1. */
function expectExactlyOnceInOrder(recs: TopicRecord[], n: number): void {
  const mine = recs.filter((r) => r.headers.task === 'pipe');
  expect(new Set(mine.map((r) => r.partition)).size, 'one partition').toBe(1);
  const seqs = mine.map((r) => Number(r.headers.seq));
  const lines = mine.map((r) => Number(r.value.split(' ')[1]));
  const dup = seqs.length - new Set(seqs).size;
  expect(dup, 'duplicated records').toBe(0);
  // offset order is seq order is line order: no batch overtook another
  expect(seqs, 'seq order').toEqual([...Array(n).keys()]);
  expect(lines).toEqual([...Array(n).keys()]);
}

async function shipped(topic: string, n: number): Promise<TopicRecord[]> {
  let recs: TopicRecord[] = [];
  const poll = topicReader(node.url, topic);
  await waitUntil(`${n} records in ${topic}`, async () => {
    recs = await poll().catch(() => []);
    return recs.length >= n;
  }, 20_000, 100);
  // a late duplicate would show now
  await new Promise((r) => setTimeout(r, 300));
  return readTopic(node.url, topic);
}

describe('agent: pipelined shipping', () => {
  it('the node hands a producer\'s pipelined batches to the partition in the order they arrived, whatever order their parses end in', async () => {
    const p = new PipelinedProduces();
    const order: string[] = [];
    const a = p.arrive('p\0t\u00000', '0');
    const b = p.arrive('p\0t\u00000', '10');
    const other = p.arrive('q\0t\u00000', '20');
    // b's (inline) parse ends first: it waits for a, which it names; another producer's batch does not
    const bGoes = b.after('0').then(() => order.push('b'));
    await other.after('10').then(() => order.push('other'));
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['other']);
    order.push('a');
    a.done();
    await bGoes;
    b.done();
    expect(order).toEqual(['other', 'a', 'b']);
    // a predecessor that is not being parsed here (answered, or never came): no wait
    await p.arrive('p\0t\u00000', '30').after('10');
    await p.arrive('p\0t\u00000', '40').after('999');
  });

  it('the first request of a producer+sequence holds the place (a second one, before authentication, cannot take it), and a wait is bounded', async () => {
    const p = new PipelinedProduces();
    const real = p.arrive('p\0t\u00000', '0');
    const other = p.arrive('p\0t\u00000', '0');
    const next = p.arrive('p\0t\u00000', '1');
    let went = false;
    const waiting = next.after('0').then(() => { went = true; });
    // the second one giving up does not release the successor of the first
    other.done();
    await new Promise((r) => setTimeout(r, 20));
    expect(went).toBe(false);
    real.done();
    await waiting;
    expect(went).toBe(true);
    // a predecessor that never ends: the wait ends after producePredecessorWaitMs
    const wait = limits.producePredecessorWaitMs;
    (limits as { producePredecessorWaitMs: number }).producePredecessorWaitMs = 50;
    try {
      p.arrive('q\0t\u00000', '0');
      const t0 = Date.now();
      await p.arrive('q\0t\u00000', '1').after('0');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    } finally {
      (limits as { producePredecessorWaitMs: number }).producePredecessorWaitMs = wait;
    }
  });

  it('a produce answer is read for its duplicate flag without parsing it, as the node writes it', async () => {
    const cfg = { url: node.url, timeoutMs: 3000 } as Parameters<typeof nodeRequest>[0];
    const signal = AbortSignal.timeout(5000);
    await nodeRequest(cfg, 'POST', '/v1/topics', { name: 'agent-pipe-dup', partitions: 1 }, signal);
    const recs = Array.from({ length: 50 }, (_, i) => ({ task: 'd', seq: i, topic: 'agent-pipe-dup', value: `dup ${i}`, headers: { host: 'h' } }));
    const route = '/v1/topics/agent-pipe-dup/records?partition=0&producerId=dup-test&sequence=0&acks=all';
    const batch = batchOf(recs);
    const first = (await nodeRequest(cfg, 'POST', route, new RawBatch(batch), signal, true)) as string;
    const again = (await nodeRequest(cfg, 'POST', route, new RawBatch(batch), signal, true)) as string;
    expect([duplicateOf(first), duplicateOf(again)]).toEqual([false, true]);
    // the parsed answer says the same
    expect([(JSON.parse(first) as { duplicate?: boolean }).duplicate, (JSON.parse(again) as { duplicate?: boolean }).duplicate]).toEqual([undefined, true]);
  });

  it('a node that refuses record-batch bodies (415) gets the same batches as JSON: exactly once, in order', async () => {
    const N = 2_000;
    const { proxy, config, topic } = await setup('json', N);
    proxy.refuseBatches = true;
    const a = await running(config);
    expectExactlyOnceInOrder(await shipped(topic, N), N);
    // the first batch (and any sent beside it) refused, resent as JSON with the same sequence; JSON from then on
    expect(proxy.produces[0]).toMatchObject({ type: BATCH_CONTENT_TYPE, status: 415 });
    // only batches already in flight beside the first (inFlightMax 4) go as record batches
    const binary = proxy.produces.filter((p) => p.type === BATCH_CONTENT_TYPE);
    expect(binary.length).toBeLessThanOrEqual(4);
    expect(binary.every((p) => p.status === 415)).toBe(true);
    for (const r of binary) expect(proxy.produces.some((p) => p.sequence === r.sequence && p.type === 'application/json' && p.status === 200)).toBe(true);
    await a.stdout.waitFor(/refuses record-batch bodies/, 1_000);
    a.proc.kill('SIGKILL');
  });

  it('keeps several batches of a task in flight, each naming the one sent before it', async () => {
    const N = 20_000;
    const { proxy, config, topic } = await setup('pipelined', N);
    proxy.holdMs = 5;
    const a = await running(config);
    expectExactlyOnceInOrder(await shipped(topic, N), N);
    const withPrev = proxy.produces.filter((p) => p.previous !== undefined);
    console.log(`agent pipeline: ${proxy.produces.length} produces, ${withPrev.length} with previousSequence, up to ${proxy.peak} in flight, ` +
      `${proxy.produces.filter((p) => p.code === 'SEQUENCE_GAP').length} refused as out of order by the node`);
    expect(proxy.peak, 'batches in flight at once').toBeGreaterThan(1);
    expect(withPrev.length).toBeGreaterThan(N / 200 / 2);
    // a batch names the batch before it in seq order: the one whose range ends right before its own
    const seqs = [...new Set(proxy.produces.map((p) => p.sequence))].sort((x, y) => x - y);
    for (const p of withPrev) expect(p.previous, `batch ${p.sequence}`).toBe(seqs[seqs.indexOf(p.sequence) - 1]);
    a.proc.kill('SIGKILL');
    // a backlog's full batches are cut together: several ranges in one spool append (one fdatasync)
    const spool = path.join(path.dirname(config), 'spool');
    let most = 0;
    for (const f of (await readdir(spool)).filter((x) => x.endsWith('.wal'))) {
      for (const e of decodeSegment(await readFile(path.join(spool, f))).entries) {
        most = Math.max(most, e.t === 'all' ? e.es.filter((x) => x.t === 'send').length : e.t === 'send' ? 1 : 0);
      }
    }
    expect(most, 'batch ranges in one spool append').toBeGreaterThan(1);
  });

  it('a batch refused, and another whose answer is lost, in the middle of the window, then the node killed -9 with batches in flight: exactly once, in seq order', async () => {
    const N = 30_000;
    const { proxy, config, topic } = await setup('refused', N);
    proxy.holdMs = 10;
    let refused = -1;
    let lost = -1;
    let killAt = Infinity;
    proxy.decide = (n, inFlight) => {
      // a batch sent with one ahead of it in flight: refused (answered after those behind it were sent);
      // a later one: stored, its answer lost
      if (refused < 0 && n > 4 && inFlight === 2) { refused = n; return 'refuse'; }
      if (refused >= 0 && lost < 0 && n > refused + 8 && inFlight >= 3) { lost = n; killAt = n + 10; return 'lose'; }
      return 'forward';
    };
    const a = await running(config);
    // the node dies while batches are in flight through it
    await waitUntil('batches in flight after the lost answer', () => proxy.produces.length >= killAt && proxy.inFlight >= 2, 20_000, 5);
    const inFlightAtKill = proxy.inFlight;
    await node.kill('SIGKILL');
    node = await node.restart();
    proxy.target = node.url;
    expectExactlyOnceInOrder(await shipped(topic, N), N);
    const gaps = proxy.produces.filter((p) => p.code === 'SEQUENCE_GAP').length;
    const seqRefused = proxy.produces[refused].sequence;
    const seqLost = proxy.produces[lost].sequence;
    console.log(`agent pipeline faults: batch ${seqRefused} refused, batch ${seqLost} answer lost, node killed with ${inFlightAtKill} in flight; ` +
      `${proxy.produces.length} produces, ${gaps} SEQUENCE_GAP`);
    // the refused batch and the lost one were sent again, the refused one first without a predecessor
    const again = (seq: number) => proxy.produces.filter((p) => p.sequence === seq);
    expect(again(seqRefused).length).toBeGreaterThan(1);
    expect(again(seqLost).length).toBeGreaterThan(1);
    expect(proxy.produces.slice(refused + 1).find((p) => p.sequence === seqRefused)?.previous).toBeUndefined();
    // a batch behind the refused one that reached the node before its resend named it and was
    // refused (SEQUENCE_GAP), never appended ahead of it
    const resent = proxy.produces.findIndex((p, i) => i > refused && p.sequence === seqRefused);
    const behind = proxy.produces.slice(refused + 1, resent).filter((p) => p.previous === seqRefused && p.status !== undefined && p.status < 500);
    for (const p of behind) expect(p.code, `batch ${p.sequence} sent behind the refused one`).toBe('SEQUENCE_GAP');
    a.proc.kill('SIGKILL');
  });
});

