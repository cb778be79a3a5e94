// The guard's memory at a high line rate: a node, the guard started as users start it (bin/chicago.js,
// with its malloc settings and V8 young-generation cap), fed lines from more distinct addresses than
// limits.ipsMax as fast as a producer writes them. Its peak RSS (the kernel's VmHWM) stays under the
// target, whatever the rate: per-address state is fixed at start, the tail is bounded by its credit,
// and the young generation is capped. Its peak while starting has a bound of its own, lower: a start
// that pays for more (a library loaded for one call) shows there before the bound at load hides it.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChicagoClient } from '../src/client/index.js';
import { binPath, type NodeHandle, OutputRing, repoRoot, startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';
import { waitUntil } from './helpers/bridge.js';

const TOPIC = 'gmem-access';
const IPS_MAX = 100_000;
/**
 * distinct addresses, one line each: 1.5 × the default ipsMax, so the table fills and evicts a third
 * of what it saw; test/long/guard-memory-long.test.ts feeds 2.5 × (GMEM_IPS)
 */
const IPS = Number(process.env.GMEM_IPS ?? 150_000);
const RSS_MB_MAX = 150;
/** the peak before the first line: modules, CRS, warm-up, connecting (100–105 MB; 137–144 while fetch loaded undici) */
const START_PEAK_MB_MAX = 125;

let node: NodeHandle;
let dir = '';
const procs: ChildProcess[] = [];

beforeAll(async () => {
  node = await startNode();
  dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-guard-mem-'));
  const res = await fetch(`${node.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: TOPIC, partitions: 1 }) });
  expect(res.ok, await res.text()).toBe(true);
}, slow(60_000));

afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await node?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** user + system CPU seconds of a process (/proc/PID/stat, clock ticks of 10 ms) */
const cpuS = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const status = (pid: number, field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;

function line(i: number, msec: number): string {
  return JSON.stringify({
    msec: (msec / 1000).toFixed(3), remote_addr: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` /* 24 bits: every line its own address */, request_method: 'GET',
    request_uri: `/products?id=${i % 997}`, server_protocol: 'HTTP/1.1', status: '200', request_time: '0.001',
    http_user_agent: 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', http_referer: '-', host: 'shop.example',
    body_bytes_sent: '512', connection_requests: '1',
  });
}

describe('guard memory at a high line rate', () => {
  it(`stays under ${RSS_MB_MAX} MB RSS fed ${IPS} distinct addresses as fast as they come (ipsMax ${IPS_MAX})`, async () => {
    const config = path.join(dir, 'guard.yaml');
    await writeFile(config, [
      `node: { url: ${node.url} }`,
      'guardId: gmem',
      'inputs:',
      `  - { topic: ${TOPIC}, format: nginx, from: earliest }`,
      `limits: { ipsMax: ${IPS_MAX} }`,
      'metrics: { host: 127.0.0.1, port: 0 }',
    ].join('\n') + '\n');
    // as users start it: bin/chicago.js (no NODE_OPTIONS of this process's)
    const env = { ...process.env, NODE_OPTIONS: process.env.GMEM_NODE_OPTIONS ?? '' };
    delete env.CHICAGO_GUARD_SEMI_SPACE_MB;
    const guard = spawn(binPath, ['guard', '--config', config], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(guard);
    const out = new OutputRing();
    guard.stdout!.setEncoding('utf8').on('data', (c: string) => out.feed(c));
    guard.stderr!.setEncoding('utf8').on('data', (c: string) => out.feed(c));
    await out.waitFor(/"msg":"partitions assigned"/, slow(30_000));
    const metricsUrl = (JSON.parse(out.text().split('\n').find((l) => l.includes('"msg":"metrics listening"'))!) as { metrics: string }).metrics;
    const metric = async (name: string): Promise<number> => {
      const text = await (await fetch(metricsUrl)).text();
      return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);
    };
    const warmed = out.text().split('\n').find((l) => l.includes('"msg":"warmed up"'));
    expect(warmed, 'the guard warms its path before reading').toBeDefined();
    const rssStart = status(guard.pid!, 'VmRSS');
    const peakStart = status(guard.pid!, 'VmHWM');
    const cpu0 = cpuS(guard.pid!);

    const client = await ChicagoClient.connect({ url: node.url, clientName: 'gmem-producer' });
    const producer = client.producer({ lingerMs: 1 });
    const t0 = performance.now();
    try {
      // in slices, each acknowledged before the next: the producer's buffer is bounded
      const now = Date.now();
      for (let i = 0; i < IPS; i += 5000) {
        const sends: Array<Promise<unknown>> = [];
        for (let k = i; k < Math.min(IPS, i + 5000); k++) sends.push(Promise.resolve(producer.send(TOPIC, { value: line(k, now), partition: 0 })));
        await Promise.all(sends);
      }
    } finally {
      await producer.close().catch(() => undefined);
      client.close();
    }
    await waitUntil('the guard to have read every line', async () => (await metric('guard_lines_total')) >= IPS, slow(60_000), 100);
    const seconds = (performance.now() - t0) / 1000;
    const peak = status(guard.pid!, 'VmHWM');
    const cpu = cpuS(guard.pid!) - cpu0;
    const tracked = await metric('guard_tracked_ips');
    process.stderr.write(`guard memory: RSS at start ${rssStart.toFixed(1)} MB (peak so far ${peakStart.toFixed(1)}), peak ${peak.toFixed(1)} MB; ${IPS} lines in ${seconds.toFixed(1)} s (${Math.round(IPS / seconds)}/s, ${Math.round(IPS / cpu)} per guard CPU-second), ${tracked} addresses tracked; warm-up ${(({ lines, crsRequests, ms }) => `${lines} lines, ${crsRequests} CRS requests in ${ms} ms`)(JSON.parse(warmed!) as { lines: number; crsRequests: number; ms: number })}\n`);
    expect(tracked).toBeLessThanOrEqual(IPS_MAX);
    expect(peakStart, 'peak RSS before reading').toBeLessThanOrEqual(START_PEAK_MB_MAX);
    expect(peak).toBeLessThanOrEqual(RSS_MB_MAX);
  }, slow(120_000));
});
