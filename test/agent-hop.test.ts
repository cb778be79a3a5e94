// The agent's file → node hop on the latency path (the guard's input). A line read while the spool's
// last commit is in its fdatasync starts a commit of its own that overlaps it (Spool.commit), and the
// records right after an idle shipper's last batch take their batch's range in that same commit, so
// a line waits for one fdatasync, not for the rest of another one first and then a second one for its
// range. End to end: lines appended to a followed file every few milliseconds (as an nginx access log
// under an attack) reach a tailing consumer within a bound.
import { afterEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChicagoClient } from '../src/client/index.js';
import { type IdleShipper, recsCount, Spool } from '../src/agent/spool.js';
import { startAgent } from './helpers/agent.js';
import { waitUntil } from './helpers/bridge.js';
import { startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

/** pairs of appends in the overlap check */
const PAIRS = 30;
/** A's value: 256 KiB to write back per commit, so its fdatasync takes long enough to be overlapped */
const PAD = 'p'.repeat(256 * 1024);
/** the end-to-end check: WINDOWS windows of LINES lines, one every LINE_GAP_MS; the best window's p50 is
 *  held to the bound (a machine busy for a moment slows one window; a slower path slows them all) */
const WINDOWS = 5;
const LINES = 60;
const LINE_GAP_MS = 3;
/**
 * appended to the file → delivered to a tail, p50 (idle machine: about 2–3 ms: a watch event, one
 * fdatasync, one produce, the tail's push); a second fdatasync, a linger or a poll shows up above it
 */
const HOP_P50_MS = 6;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const p = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))];

describe('agent: file → node on the latency path', () => {
  it(`an append made during the last commit's fdatasync starts its own commit at once, and takes the next batch range`, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'chicago-agent-hop-spool-'));
    const { spool } = Spool.open({ dir, quotaBytes: 64 * 1024 * 1024, segmentBytes: 16 * 1024 * 1024 });
    cleanups.push(() => {
      spool.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const commits: Array<{ recs: Array<{ from: number; to: number }>; startUs: number; writtenUs: number; syncedUs: number }> = [];
    spool.onTiming = (t) => commits.push(t);
    const recs = (v: string[]) => ({ t: 'recs' as const, task: 't', topic: 'x', seq: spool.takeSeq('t', v.length), h: {}, v });
    let overlapped = 0;
    let slowSyncs = 0;
    for (let i = 0; i < PAIRS; i++) {
      const n0 = commits.length;
      // an idle shipper whose last batch ends right before A; it may take one batch more
      const offer: IdleShipper = { after: (spool.next.get('t') ?? 0) - 1, cut: (e) => recsCount(e), notBeforeMs: 0, more: 1 };
      spool.offerSend('t', offer);
      // A carries enough bytes that its fdatasync has pages to write, even on a disk that syncs a tiny append at once
      const a = spool.append([recs([`a${i}${PAD}`])]);
      // A's commit has started (a check phase) and its fdatasync runs; B comes now
      await tick();
      await tick();
      const b = spool.append([recs([`b${i}`])]);
      await Promise.all([a, b]);
      spool.withdrawSend('t');
      const [ca, cb] = [commits[n0], commits[n0 + 1]];
      expect(cb, `pair ${i}: A and B went in one commit`).toBeDefined();
      // only an fdatasync that takes longer than the turns above can be overlapped
      if (ca.syncedUs - ca.writtenUs < 300) continue;
      slowSyncs++;
      if (cb.startUs < ca.syncedUs) overlapped++;
    }
    console.log(`agent hop: B's commit started during A's fdatasync in ${overlapped} of ${slowSyncs} pairs (fdatasync ≥ 0.3 ms)`);
    expect(slowSyncs, 'no fdatasync took 0.3 ms: this disk (tmpfs?) cannot show an overlap').toBeGreaterThan(0);
    // with one commit at a time none overlaps; a moment of the machine's load may let A's return first
    expect(overlapped).toBeGreaterThanOrEqual(Math.ceil(slowSyncs / 2));
    // every A and B took a range of its own, in order, in its own commit: none waits for the shipper to cut one
    const sends = spool.sends.get('t') ?? [];
    expect(sends).toHaveLength(2 * PAIRS);
    expect(sends.map((r) => r.from)).toEqual(Array.from({ length: 2 * PAIRS }, (_, k) => k));
    expect(spool.records('t').map((r) => r.value)).toEqual(Array.from({ length: PAIRS }, (_, i) => [`a${i}${PAD}`, `b${i}`]).flat());
  });

  it("a shipper's offer made while a range rides in a commit still in flight starts after that range: the next records take theirs in their own commit", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'chicago-agent-hop-riding-'));
    const { spool } = Spool.open({ dir, quotaBytes: 64 * 1024 * 1024, segmentBytes: 16 * 1024 * 1024 });
    cleanups.push(() => {
      spool.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const commits: Array<{ recs: Array<{ from: number; to: number }>; startUs: number; syncedUs: number }> = [];
    spool.onTiming = (t) => commits.push(t);
    const recs = (v: string[]) => ({ t: 'recs' as const, task: 't', topic: 'x', seq: spool.takeSeq('t', v.length), h: {}, v });
    const lastSent = (): number => (spool.sends.get('t') ?? []).at(-1)?.to ?? -1;
    const sent = (seq: number): boolean => (spool.sends.get('t') ?? []).some((r) => r.from <= seq && seq <= r.to);
    const commitOf = (seq: number) => commits.find((c) => c.recs.some((r) => r.from <= seq && seq <= r.to))!;
    let checked = 0;
    let missed = 0;
    for (let i = 0; i < PAIRS; i++) {
      // an idle shipper with room for four batches: A takes a range, B (overlapping A's commit) the next
      spool.offerSend('t', { after: lastSent(), cut: (e) => recsCount(e), notBeforeMs: 0, more: 3 });
      const ra = recs([`a${i}`]);
      const a = spool.append([ra]);
      await tick();
      await tick();
      // B's commit writes enough that it is still in flight when C comes, even on a fast disk
      const rb = recs([`b${i}${PAD}`]);
      const b = spool.append([rb]);
      await a;
      // A applied wakes the shipper: it withdraws and offers again from what it knows, without B's
      // range while B's commit is in flight (as Shipper.run does)
      spool.withdrawSend('t');
      spool.offerSend('t', { after: lastSent(), cut: (e) => recsCount(e), notBeforeMs: 0, more: 2 });
      const rc = recs([`c${i}`]);
      const c = spool.append([rc]);
      await Promise.all([b, c]);
      spool.withdrawSend('t');
      // C's commit started while B's range was riding in B's: C must have taken the range after it
      if (commitOf(rc.seq).startUs < commitOf(rb.seq).syncedUs) {
        checked++;
        if (!sent(rc.seq)) missed++;
      }
      // the shipper cuts what took no range in a commit of its own
      if (!sent(rc.seq)) await spool.append([{ t: 'send', task: 't', from: rc.seq, to: rc.seq }]);
      expect(sent(ra.seq) && sent(rb.seq), `pair ${i}: A and B took their ranges`).toBe(true);
    }
    console.log(`agent hop: C's commit started while B's range rode in ${checked} of ${PAIRS} pairs; C took no range in ${missed}`);
    expect(checked, 'B was never in flight when C was committed: nothing was checked').toBeGreaterThan(0);
    expect(missed).toBe(0);
  });

  it(`lines appended every ${LINE_GAP_MS} ms reach a tailing consumer within ${HOP_P50_MS} ms at p50 in the best of ${WINDOWS} windows (slowdown-scaled)`, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'chicago-agent-hop-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const node = await startNode();
    cleanups.push(async () => void (await node.stop()));
    const topic = 'hop-access';
    const res = await fetch(`${node.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: topic, partitions: 1 }) });
    expect(res.ok).toBe(true);
    mkdirSync(path.join(dir, 'logs'));
    const file = path.join(dir, 'logs', 'access.json');
    writeFileSync(file, '');
    const cfg = path.join(dir, 'agent.yaml');
    // the guard's setting (docs/agent.md, "Access logs for the guard"): a line leaves as soon as it is read
    writeFileSync(cfg, [`node: { url: ${node.url} }`, 'host: hop', `spool: { dir: ${path.join(dir, 'spool')} }`, 'batch: { lingerMs: 0 }', 'logLevel: info', 'sources:', `  - { task: web, paths: [${file}], topic: ${topic} }`].join('\n') + '\n');
    const agent = startAgent(cfg);
    cleanups.push(async () => {
      agent.proc.kill('SIGTERM');
      await agent.exited;
    });
    const client = await ChicagoClient.connect({ url: node.url, clientName: 'agent-hop' });
    const tail = client.tail(topic, 0, { from: 'earliest' });
    cleanups.push(async () => {
      await tail.close();
      client.close();
    });
    const arrived = new Map<string, number>();
    void (async () => {
      for await (const r of tail) arrived.set(r.value.toString('utf8'), performance.now());
    })().catch(() => undefined);
    // the agent follows the file and its producer is ready: a warm-up line arrives
    appendFileSync(file, 'warm 0\n');
    await waitUntil('the warm-up line at the tail', () => arrived.has('warm 0'), slow(15_000), 10);
    const p50s: number[] = [];
    for (let w = 0; w < WINDOWS; w++) {
      const line = (i: number): string => `{"remote_addr":"198.18.7.${i % 250}","w":${w},"n":${i}}`;
      const written: number[] = [];
      const t0 = performance.now();
      for (let i = 0; i < LINES && performance.now() - t0 < slow(5_000); i++) {
        appendFileSync(file, `${line(i)}\n`);
        written.push(performance.now());
        await new Promise((r) => setTimeout(r, LINE_GAP_MS));
      }
      expect(written).toHaveLength(LINES);
      await waitUntil(`window ${w}: every line at the tail`, () => written.every((_, i) => arrived.has(line(i))), slow(10_000), 5);
      const took = written.map((t, i) => arrived.get(line(i))! - t);
      p50s.push(p(took, 0.5));
      console.log(`agent hop: window ${w}: appended → at the tail, ms: p50 ${p(took, 0.5).toFixed(2)} p90 ${p(took, 0.9).toFixed(2)} max ${p(took, 1).toFixed(2)} (${LINES} lines, one every ${LINE_GAP_MS} ms)`);
    }
    const best = Math.min(...p50s);
    expect(best, `best window p50 ${best.toFixed(2)} ms`).toBeLessThan(slow(HOP_P50_MS));
  });
});
