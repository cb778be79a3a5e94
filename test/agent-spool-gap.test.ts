// The spool's commit gap: readers' appends that follow a commit closely, and that the reader does not
// wait for, share the next fdatasync instead of each making one; anything else (an append its caller
// waits for, a batch's range, an ack, a producer) commits at once and takes the waiting records with
// it, and a shipper's planned cut brings the commit forward.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { recordEntries } from '../src/agent/records.js';
import { Spool } from '../src/agent/spool.js';
import { limits } from '../src/runtime/limits.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function openSpool(): { spool: Spool; commits: () => number } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chicago-spool-gap-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const { spool } = Spool.open({ dir, quotaBytes: 64 << 20, segmentBytes: 16 << 20 });
  cleanups.push(() => spool.close());
  let n = 0;
  spool.onTiming = () => { n++; };
  return { spool, commits: () => n };
}

/** Runs `fn` with a commit gap of a minute: records that nothing brings forward would wait that long. */
async function withMinuteGap(fn: () => Promise<void>): Promise<void> {
  const gap = limits.agentSpoolCommitGapMs;
  (limits as { agentSpoolCommitGapMs: number }).agentSpoolCommitGapMs = 60_000;
  try {
    await fn();
  } finally {
    (limits as { agentSpoolCommitGapMs: number }).agentSpoolCommitGapMs = gap;
  }
}

const line = (spool: Spool, i: number) => recordEntries(spool, 'h', 't', 'logs', [{ value: `line ${i}`, source: '/x.log', timeMs: 0 }]);

describe('agent spool commit gap', () => {
  it('reads 1 ms apart share commits: at most one per gap, every record durable and in order', async () => {
    const { spool, commits } = openSpool();
    const done: Array<Promise<void>> = [];
    const reads = 40;
    const started = performance.now();
    for (let i = 0; i < reads; i++) {
      done.push(spool.append([...line(spool, i), { t: 'ck', key: 'f', ck: null }], true));
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(done);
    const ms = performance.now() - started;
    // one commit per read without the gap; with it, about one per gap (+1 for the first)
    expect(commits()).toBeLessThanOrEqual(Math.ceil(ms / limits.agentSpoolCommitGapMs) + 1);
    expect(spool.records('t').map((r) => r.value)).toEqual(Array.from({ length: reads }, (_, i) => `line ${i}`));
  });

  it('an append of another kind, or one its caller waits for, commits at once, with the records waiting for the gap', async () => {
    const { spool, commits } = openSpool();
    await spool.append(line(spool, 0)); // a commit just began: the next reads wait for the gap
    const before = commits();
    const waiting = spool.append(line(spool, 1), true);
    const urgent = spool.append([{ t: 'ack', task: 't', to: 0 }]);
    await Promise.all([waiting, urgent]);
    expect(commits()).toBe(before + 1);
    expect(spool.acked.get('t')).toBe(0);
    // an append its caller waits for does not wait for the gap
    await withMinuteGap(() => spool.append(line(spool, 2)));
    expect(commits()).toBe(before + 2);
  });

  it('a shipper cut planned within the gap brings the commit forward', async () => {
    const { spool, commits } = openSpool();
    await spool.append(line(spool, 0));
    const before = commits();
    const t0 = performance.now();
    await withMinuteGap(async () => {
      const p = spool.append(line(spool, 1), true);
      spool.expectCut('t', Date.now() + limits.agentSpoolCommitLeadMs); // due now
      await p;
    });
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(commits()).toBe(before + 1);
  });

  it("another task's waiting shipper does not bring these records' commit forward", async () => {
    const { spool, commits } = openSpool();
    await spool.append(line(spool, 0));
    const before = commits();
    await withMinuteGap(async () => {
      // a quiet task's shipper, offered long ago, waits for records of its own
      spool.offerSend('quiet', { after: -1, cut: () => 1, notBeforeMs: 0 });
      spool.expectCut('quiet', Date.now() - 1000);
      const p = spool.append(line(spool, 1), true);
      await new Promise((r) => setTimeout(r, 200));
      expect(commits()).toBe(before);
      spool.expectCut('t', Date.now() + limits.agentSpoolCommitLeadMs); // this task's cut is due: now it goes
      await p;
      expect(commits()).toBe(before + 1);
    });
    spool.withdrawSend('quiet');
  });
});
