// The benchmark harness: the open-loop generator's bookkeeping, and one tiny real run against a
// spawned node to check the result shape of CONTRACT.md. Not a performance assertion.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { newHistogram, recordUs, runOpenLoop, summarize, type OpenLoopOptions } from '../bench/openloop.js';
import { mergeParts, toPart } from '../bench/generators.js';
import { repoRoot } from '../bench/proc.js';
import { parsePerfTest } from '../bench/kafka-compare.js';
import { slow } from './helpers/slow.js';

const base: OpenLoopOptions = {
  opsPerSecond: 200,
  durationS: 0.5,
  warmupS: 0,
  weight: 1,
  maxOutstanding: 1000,
  // deadlines for answers that come in 5 ms or at once
  timeoutMs: slow(2000),
  drainMs: slow(2000),
  pacing: 'ticker',
};

describe('open loop', () => {
  it('sends on the fixed schedule and times from the intended send', async () => {
    // answers after at least 5 ms of wall time (a lone setTimeout(5) may fire early: libuv times it
    // from the loop's cached clock, which a busy loop leaves behind)
    const answerIn5ms = async () => { const t0 = performance.now(); while (performance.now() - t0 < 5) await new Promise((res) => setTimeout(res, 1)); };
    const r = await runOpenLoop({ ...base, warmupS: 0.2 }, answerIn5ms);
    expect(r.intended).toBe(100);
    expect(r.sent).toBe(100);
    expect(r.acked).toBe(100);
    expect(r.errors).toBe(0);
    const l = summarize(r.latency);
    expect(l.p50).toBeGreaterThanOrEqual(5000);
    expect(l.p50).toBeLessThanOrEqual(l.p99);
    expect(r.latency.totalCount).toBe(100);
  });

  it('weights records, counts rejections, and keeps the schedule when answers stall', async () => {
    const r = await runOpenLoop({ ...base, weight: 10 }, (k) => (k % 4 === 0 ? Promise.reject(new Error('no')) : Promise.resolve()));
    expect(r.intended).toBe(1000);
    expect(r.errorsByKind.rejected).toBe(250);
    expect(r.acked).toBe(750);
    expect(r.latency.totalCount).toBe(750);
  });

  it('counts sends due while the outstanding cap is full, and unanswered ones as timeouts', async () => {
    const r = await runOpenLoop(
      { ...base, maxOutstanding: 10, timeoutMs: 10_000, drainMs: 200 },
      () => new Promise(() => undefined),
    );
    expect(r.intended).toBe(100);
    expect(r.sent).toBe(10);
    expect(r.acked).toBe(0);
    expect(r.errorsByKind.outstandingCap).toBe(90);
    expect(r.errorsByKind.timeout).toBe(10);
    expect(r.errors).toBe(100);
  });

  it('does not let a stall lower the offered rate (coordinated omission)', async () => {
    // every answer arrives only at t = 300 ms: early sends wait long, and that wait is latency
    const t0 = Date.now();
    const r = await runOpenLoop({ ...base, pacing: 'timer' }, () =>
      new Promise((res) => setTimeout(res, Math.max(0, 300 - (Date.now() - t0)))),
    );
    expect(r.sent).toBe(100);
    expect(summarize(r.latency).max).toBeGreaterThan(250_000);
  });
});

describe('several generators (--generators)', () => {
  it('split the schedule: every operation exactly once, warmup and measured window as one generator', async () => {
    const opts = { ...base, opsPerSecond: 1000, durationS: 0.3, warmupS: 0.05 };
    const seen: number[] = [];
    const startAbsMs = performance.timeOrigin + performance.now() + 20;
    const parts = await Promise.all(
      [0, 1, 2].map((index) => runOpenLoop({ ...opts, slice: { index, of: 3, startAbsMs } }, async (k) => { seen.push(k); })),
    );
    // 50 warmup + 300 measured operations, none twice, none left out
    expect(seen.length).toBe(350);
    expect(new Set(seen).size).toBe(350);
    expect(Math.max(...seen)).toBe(349);
    expect(parts.map((p) => p.intended)).toEqual([100, 100, 100]);
    const m = mergeParts(parts.map((p) => toPart(p, 0, {})));
    expect(m.intended).toBe(300);
    expect(m.sent).toBe(300);
    expect(m.acked).toBe(300);
    expect(m.latency.totalCount).toBe(300);
    // the window is the schedule's: 300 operations at 1000/s take ~0.3 s, not a third of it
    expect(m.elapsedS).toBeGreaterThanOrEqual(0.299);
    expect(m.elapsedS).toBeLessThan(slow(2));
  });

  it('merge counts, errors and the histograms (percentiles of the whole, not of one part)', () => {
    const part = (fast: number, slowOnes: number, rejected: number, startAbsMs: number, endAbsMs: number) => {
      const latency = newHistogram();
      recordUs(latency, 1000, fast);
      if (slowOnes > 0) recordUs(latency, 50_000, slowOnes);
      const sendLag = newHistogram();
      recordUs(sendLag, 10);
      const acked = fast + slowOnes;
      return toPart({
        intended: acked + rejected, sent: acked + rejected, acked, errors: rejected,
        errorsByKind: { rejected, timeout: 0, outstandingCap: 0 }, errorSamples: rejected ? ['rejected: no'] : [],
        latency, sendLag, elapsedS: 1, ackedPerSecond: acked, maxOutstandingSeen: 3, measureStartAbsMs: startAbsMs, endAbsMs,
      }, 0.5, { replicasSeen: 1 });
    };
    // alone, part a has p99 1 ms and part b p50 50 ms; together 2 % are slow: p50 1 ms, p99 50 ms
    const m = mergeParts([part(990, 0, 4, 1000, 3000), part(0, 20, 6, 1000.5, 3500)]);
    expect(m.acked).toBe(1010);
    expect(m.intended).toBe(1020);
    expect(m.errors).toBe(10);
    expect(m.errorsByKind.rejected).toBe(10);
    expect(m.errorSamples).toEqual(['rejected: no', 'rejected: no']);
    expect(m.maxOutstandingSeen).toBe(6);
    expect(m.latency.totalCount).toBe(1010);
    expect(m.sendLag.totalCount).toBe(2);
    const l = summarize(m.latency);
    expect(l.p50).toBeGreaterThanOrEqual(999);
    expect(l.p50).toBeLessThanOrEqual(1001);
    expect(l.p90).toBeLessThanOrEqual(1001);
    expect(l.p99).toBeGreaterThanOrEqual(49_950);
    expect(l.max).toBeGreaterThanOrEqual(49_950);
    expect(l.max).toBeLessThanOrEqual(50_050);
    // from the earliest start to the latest end
    expect(m.elapsedS).toBeCloseTo(2.5, 6);
    expect(m.ackedPerSecond).toBeCloseTo(1010 / 2.5, 6);
  });
});

describe('kafka-compare', () => {
  it("reads kafka-producer-perf-test's summary line, each percentile from its own column", () => {
    const out = [
      '2001 records sent, 400.1 records/sec (0.08 MB/sec), 3.1 ms avg latency, 120.0 ms max latency.',
      '4000 records sent, 952.149489 records/sec (0.19 MB/sec), 300.10 ms avg latency, 611.00 ms max latency, 493 ms 50th, 560 ms 95th, 564 ms 99th, 580 ms 99.9th.',
    ].join('\n');
    expect(parsePerfTest(out)).toEqual({
      sent: 4000,
      rate: 952.149489,
      latencyUs: { p50: 493_000, p90: 560_000, p99: 564_000, p999: 580_000, max: 611_000 },
    });
    expect(parsePerfTest(out.split('\n')[0]!)).toBeUndefined();
  });
});

const mainJs = join(repoRoot(), 'dist', 'bench', 'main.js');
const nodeJs = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');

describe.skipIf(!existsSync(mainJs) || !existsSync(nodeJs))('chicago bench (spawned node)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chicago-bench-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const bench = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [mainJs, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
      child.once('exit', (code) => resolve({ code, stderr }));
    });

  it('kv-put writes the result object of CONTRACT.md', async () => {
    const file = join(dir, 'kv-put.json');
    const { code, stderr } = await bench(['kv-put', '--spawn', '--rate', '200', '--duration', '1', '--warmup', '0', '--json', file]);
    expect(code, stderr).toBe(0);
    const r = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    for (const k of ['scenario', 'nodes', 'replicas', 'rate', 'durationS', 'sent', 'acked', 'errors', 'latencyUs', 'node', 'cpus']) {
      expect(r, k).toHaveProperty(k);
    }
    expect(r.scenario).toBe('kv-put');
    expect(r.rate).toBe(200);
    expect(r.durationS).toBe(1);
    expect(r.sent).toBe(200);
    expect(r.acked).toBe(200);
    expect(r.errors).toBe(0);
    expect(r.node).toBe(process.version);
    const lat = r.latencyUs as Record<string, number>;
    for (const p of ['p50', 'p90', 'p99', 'p999', 'max']) expect(typeof lat[p]).toBe('number');
    expect(lat.p50).toBeGreaterThan(0);
    expect(lat.p50).toBeLessThanOrEqual(lat.p99);
    expect(lat.p99).toBeLessThanOrEqual(lat.max);
    // what each put cost the node, by thread: the gateway thread works and wakes for every put
    const perPut = (r.extra as { perPut: Record<string, { cpuUs: number; wakeups: number }> }).perPut;
    expect(perPut.main.cpuUs).toBeGreaterThan(0);
    expect(perPut.main.wakeups).toBeGreaterThan(0);
    expect(perPut.all.cpuUs).toBeGreaterThanOrEqual(perPut.main.cpuUs);
  });

  it('produce-tail measures delivery to a live subscriber', async () => {
    const file = join(dir, 'produce-tail.json');
    const { code, stderr } = await bench(['produce-tail', '--spawn', '--rate', '200', '--duration', '1', '--warmup', '0', '--json', file]);
    expect(code, stderr).toBe(0);
    const r = JSON.parse(readFileSync(file, 'utf8')) as { sent: number; acked: number; errors: number; extra: { producerAcked: number } };
    expect(r.sent).toBe(200);
    expect(r.extra.producerAcked).toBe(200);
    expect(r.acked).toBe(200);
    expect(r.errors).toBe(0);
  });

  it('noop --generators 2 runs the schedule on two threads and reports one result', async () => {
    const file = join(dir, 'noop-2.json');
    const { code, stderr } = await bench(['noop', '--generators', '2', '--rate', '2000', '--duration', '0.5', '--warmup', '0.1', '--json', file]);
    expect(code, stderr).toBe(0);
    const r = JSON.parse(readFileSync(file, 'utf8')) as { intended: number; sent: number; acked: number; errors: number; latencyUs: { p50: number; max: number }; extra: { generators: number; generatorElu: number[] } };
    expect(r.intended).toBe(1000);
    expect(r.sent).toBe(1000);
    expect(r.acked).toBe(1000);
    expect(r.errors).toBe(0);
    expect(r.extra.generators).toBe(2);
    expect(r.extra.generatorElu).toHaveLength(2);
    expect(r.latencyUs.p50).toBeLessThanOrEqual(r.latencyUs.max);
  });

  it('produce --generators 2 encodes through a Producer per thread and counts every record once', async () => {
    const file = join(dir, 'produce-2.json');
    const { code, stderr } = await bench(['produce', '--spawn', '--generators', '2', '--rate', '2000', '--batch', '100', '--duration', '0.5', '--warmup', '0.1', '--json', file]);
    expect(code, stderr).toBe(0);
    const r = JSON.parse(readFileSync(file, 'utf8')) as { intended: number; sent: number; acked: number; errors: number; server: { cpuPct: number }; extra: { generatorElu: number[] } };
    expect(r.intended).toBe(1000);
    expect(r.sent).toBe(1000);
    expect(r.acked).toBe(1000);
    expect(r.errors).toBe(0);
    expect(r.extra.generatorElu).toHaveLength(2);
    expect(r.server.cpuPct).toBeGreaterThan(0);
  });

  it('rejects an unknown scenario', async () => {
    const { code, stderr } = await bench(['nope']);
    expect(code).toBe(1);
    expect(stderr).toMatch(/unknown bench scenario/);
  });
});

const guardJs = join(repoRoot(), 'dist', 'bench', 'guard.js');
const isRoot = process.getuid?.() === 0;

// bench/guard.ts in miniature: the guard (producer → node → guard → nft in a namespace) and, when
// Debian's fail2ban is installed, fail2ban on the same lines. Shape and completeness, not speed.
describe.skipIf(!existsSync(guardJs) || !existsSync(nodeJs))('bench:guard (small)', () => {
  it('measures line → nft set, the 5k lines/s flood and throughput for each tool', async (ctx) => {
    if (!isRoot) ctx.skip('bench:guard needs root for network namespaces and nftables');
    const tools = ['guard-direct', ...(existsSync('/usr/bin/fail2ban-server') ? ['fail2ban'] : [])];
    if (tools.length === 1) console.log('fail2ban is not installed (scripts/bench-guard-deps.sh): the guard only');
    const out = mkdtempSync(join(tmpdir(), 'chicago-bench-guard-test-'));
    try {
      const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [guardJs, '--only', tools.join(','), '--attackers', '5', '--gap-ms', '50', '--throughput-lines', '1000',
          '--throughput-max-s', '10', '--flood-max-s', '5', '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
        child.once('exit', (c) => resolve({ code: c, stderr }));
      });
      expect(code, stderr).toBe(0);
      const file = readdirSync(out).find((f) => f.startsWith('guard-') && f.endsWith('.json'))!;
      const r = JSON.parse(readFileSync(join(out, file), 'utf8')) as { sides: Array<{ tool: string; error?: string; latency: { attackers: number; enforced: number; us: { p50: number; max: number } }; flood: { enforcedAfterUs: number | null; linesAfterTrigger: number }; throughput: { complete: boolean; linesPerCpuS: number; rssMB: number } }> };
      expect(r.sides.map((s) => s.tool)).toEqual(tools);
      for (const s of r.sides) {
        expect(s.error, s.tool).toBeUndefined();
        expect(s.latency.enforced, s.tool).toBe(5);
        expect(s.latency.us.p50, s.tool).toBeGreaterThan(0);
        expect(s.latency.us.p50, s.tool).toBeLessThanOrEqual(s.latency.us.max);
        expect(s.flood.enforcedAfterUs, s.tool).not.toBe(null);
        expect(s.throughput.complete, s.tool).toBe(true);
        expect(s.throughput.rssMB, s.tool).toBeGreaterThan(0);
      }
      expect(readFileSync(join(out, 'guard.md'), 'utf8')).toMatch(/line → enforced p50 ms/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, slow(60_000));
});
