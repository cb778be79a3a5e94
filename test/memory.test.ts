// memory.maxBytes against floods on a real node: acks=none produce of 1 MB frames from several
// WebSocket connections, and large HTTP bodies in parallel. The node refuses what does not fit
// (retryable OVERLOADED) instead of buffering it, serves afterwards and gives every buffered byte
// back. With CHICAGO_TEST_RSS=1 (the long suite runs it) it also holds resident memory to the cap
// plus the margin below, the bound docs/security.md ("Memory") states.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { http } from './helpers/http.js';
import { startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

const MiB = 1024 * 1024;
const CAP = 64 * MiB;
/**
 * What a node holds besides what it buffers (docs/security.md, "Memory"), for this one: the runtime
 * (code, V8 heaps, threads) 160 MiB; memtables of the 5 column families the flood fills (each
 * partition's batch family, and the default), 1.5 × their 16 MiB budget each, 120 MiB (the
 * partitions' other families take a few small entries per batch: little in one flood); the two
 * parse threads' heaps, 2 × 96 MiB; garbage the main and
 * worker threads (min(cpus, 4) of them) have not collected yet, about 96 MiB each. Peaks
 * measured 635–700 MiB on 2 cores.
 */
const MARGIN = 160 * MiB + 5 * 24 * MiB + 2 * 96 * MiB + (1 + Math.min(os.cpus().length, 4)) * 96 * MiB;
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

/** enough to pass the cap several times over; the long suite sends more */
const FRAMES_PER_CONNECTION = process.env.CHICAGO_TEST_RSS === '1' ? 250 : 100;
const BODIES = process.env.CHICAGO_TEST_RSS === '1' ? 20 : 8;
const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

describe('memory.maxBytes (a real node, floods)', () => {
  it('keeps RSS under the cap plus a margin while acks=none floods and big bodies arrive; refuses with OVERLOADED; serves afterwards', async () => {
    const node = await startNode({ env: { CHICAGO_MEMORY_MAX_BYTES: String(CAP) } });
    try {
      await http(node.url, 'POST', '/v1/topics', { name: 'flood', partitions: 4 });
      const baseline = rssOf(node.pid);
      let peak = baseline;
      const sampler = setInterval(() => { peak = Math.max(peak, rssOf(node.pid)); }, 20);
      const value = Buffer.alloc(MiB - 1024, 0x61);
      const deadline = Date.now() + slow(20_000);
      const flood = async (conn: number) => {
        const ws = new WebSocket(node.url.replace('http', 'ws') + '/v1/ws');
        await new Promise((r) => ws.once('open', r));
        const errors: string[] = [];
        ws.on('message', (d: Buffer) => { const f = unpackr.unpack(d); if (f.op === 'err') errors.push(f.code); });
        ws.send(packr.pack({ op: 'hello', id: 1, versions: [1] }));
        for (let i = 0; i < FRAMES_PER_CONNECTION && Date.now() < deadline; i++) {
          ws.send(packr.pack({ op: 'produce', id: 10 + i, topic: 'flood', acks: 'none', records: [[value]] }));
          // bounded: never more than 16 MB queued in this client's socket
          while (ws.bufferedAmount > 16 * MiB) await new Promise((r) => setTimeout(r, 1));
        }
        await new Promise((r) => setTimeout(r, 200));
        ws.close();
        return errors;
      };
      const bodies = async () => {
        const body = JSON.stringify(Array.from({ length: 16 }, () => ({ value: 'b'.repeat(MiB - 100) })));
        // all at once: BODIES × 16 MiB in flight together pass the cap however fast the node drains
        // them (sent one after another, a node that keeps up, or a client slowed by a busy machine, never
        // reaches it)
        return Promise.all(Array.from({ length: BODIES }, async () => (await http(node.url, 'POST', '/v1/topics/flood/records?acks=one', body, { 'content-type': 'application/json' })).status));
      };
      const results = await Promise.all([flood(1), flood(2), flood(3), flood(4), bodies(), bodies()]);
      clearInterval(sampler);
      const refusedWs = results.slice(0, 4).flat() as string[];
      const codes = results.slice(4).flat() as number[];
      console.log(`memory: baseline ${(baseline / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB, cap ${CAP / MiB} MiB; ws errors ${JSON.stringify(Object.fromEntries(refusedWs.map((c) => [c, refusedWs.filter((x) => x === c).length])))}; http ${JSON.stringify(codes)}`);
      if (process.env.CHICAGO_TEST_RSS === '1') expect(peak).toBeLessThan(CAP + MARGIN);
      for (const code of codes) expect([200, 429]).toContain(code);
      for (const code of refusedWs) expect(code).toBe('OVERLOADED');
      expect(codes.filter((c) => c === 429).length + refusedWs.length).toBeGreaterThan(0);
      // the node still serves, and its buffers are given back
      expect((await http(node.url, 'PUT', '/v1/kv/after/flood', 'ok')).status).toBe(200);
      const m = (await http(node.url, 'GET', '/metrics')).text;
      await expect.poll(async () => Number(/chicago_memory_buffered_bytes (\d+)/.exec((await http(node.url, 'GET', '/metrics')).text)?.[1]), { timeout: slow(5_000) }).toBe(0);
      expect(m).toMatch(/chicago_memory_refused \d+/);
    } finally {
      await node.stop();
    }
  }, slow(120_000));

  it('counts HTTP answers their clients do not read: past the cap the next large answer is OVERLOADED, and all is given back when those clients go', async () => {
    const node = await startNode({ env: { CHICAGO_MEMORY_MAX_BYTES: String(CAP) } });
    const readers: net.Socket[] = [];
    try {
      // 16 answers of this size, asked for and never read, fill the cap but 40 KiB (the socket takes a
      // little of each; the rest waits in the node, counted)
      const share = 4 * MiB - 2560;
      expect((await http(node.url, 'PUT', '/v1/kv/big/v', Buffer.alloc(share, 0x76))).status).toBe(200);
      expect((await http(node.url, 'POST', '/v1/topics', { name: 'answered', partitions: 1 })).status).toBe(201);
      const { port } = new URL(node.url);
      for (let i = 0; i < 20; i++) {
        const s = net.connect(Number(port), '127.0.0.1');
        s.on('error', () => {});
        s.pause();
        s.write('GET /v1/kv/big/v HTTP/1.1\r\nHost: chicago\r\n\r\n');
        readers.push(s);
      }
      const buffered = async () => Number(/chicago_memory_buffered_bytes (\d+)/.exec((await http(node.url, 'GET', '/metrics')).text)?.[1]);
      await expect.poll(buffered, { timeout: slow(5_000) }).toBe(16 * share);
      const refused = await http(node.url, 'GET', '/v1/kv/big/v');
      expect([refused.status, refused.body?.error?.code]).toEqual([429, 'OVERLOADED']);
      // A write's answer is never refused: the write is done, and OVERLOADED would have it sent again.
      // Its 28 KB body fits in what is left; its 59 KB answer does not.
      const body = JSON.stringify(Array.from({ length: 2000 }, () => ({ value: 'x' })));
      const produced = await http(node.url, 'POST', '/v1/topics/answered/records', body, { 'content-type': 'application/json' });
      expect([produced.status, produced.body?.records?.length]).toEqual([200, 2000]);
      for (const s of readers) s.destroy();
      await expect.poll(buffered, { timeout: slow(5_000) }).toBe(0);
      expect((await http(node.url, 'GET', '/v1/topics/answered')).body.partitions[0].endOffset).toBe(2000);
      const served = await http(node.url, 'GET', '/v1/kv/big/v');
      expect([served.status, served.text.length]).toEqual([200, share]);

      // A WebSocket that asks for 30 of them and does not read is cut off (SLOW_CONSUMER); uWS still
      // holds what it left unsent until its close times out, and that still counts
      const ws = new WebSocket(node.url.replace('http', 'ws') + '/v1/ws');
      await new Promise((r) => ws.once('open', r));
      ws.send(packr.pack({ op: 'hello', id: 1, versions: [1] }));
      await new Promise((r) => ws.once('message', r));
      (ws as unknown as { _socket: net.Socket })._socket.pause();
      for (let i = 0; i < 30; i++) ws.send(packr.pack({ op: 'kv.get', id: 10 + i, ks: 'big', key: 'v' }));
      await node.stdout.waitFor(/"code":"SLOW_CONSUMER".*"msg":"closing websocket"/, slow(10_000));
      expect(await buffered()).toBeGreaterThan(CAP / 2);
      expect((await http(node.url, 'GET', '/v1/kv/big/v')).status).toBe(429);
      ws.terminate();
    } finally {
      for (const s of readers) s.destroy();
      await node.stop();
    }
  }, slow(30_000));
});
