// An idle node sleeps: timers that only matter while there is work run only then.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { GroupCoordinator } from '../src/node/group-coordinator.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

/** Voluntary context switches of the process's main thread: one per sleep, so about one per wake-up. */
function mainThreadWakeups(pid: number): number {
  const status = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8');
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1]);
}

describe('idle timers', () => {
  it('the group coordinator ticks only while it coordinates a group', async () => {
    vi.useFakeTimers();
    const gc = new GroupCoordinator({
      log: pino({ level: 'silent' }),
      now: () => Date.now(),
      leadership: () => ({ leads: true, epoch: 1 }),
      partitionsOf: () => 1,
      commit: async () => undefined,
      deleteOffsets: async () => 0,
    }, Date.now() - 10_000);
    try {
      expect(vi.getTimerCount()).toBe(0);
      await gc.handle(0, { op: 'groupJoin', group: 'g', topics: ['t'], sessionTimeoutMs: 1_000 });
      expect(vi.getTimerCount()).toBe(1);
      // the member's session runs out, the group empties and the tick stops itself
      await vi.advanceTimersByTimeAsync(5_000);
      expect(await gc.handle(0, { op: 'groupDescribe', group: 'g' })).toMatchObject({ members: [] });
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      gc.stop();
      vi.useRealTimers();
    }
  });

  describe('a node with nothing to do', () => {
    let node: NodeHandle;
    beforeAll(async () => { node = await startNode(); });
    afterAll(async () => { await node?.stop(); });

    it('wakes its main thread fewer than 40 times a second', async () => {
      // its own timers: disk check (4/s), two event-loop delay monitors (10/s each), worker deadlines (1/s)
      await new Promise((r) => setTimeout(r, slow(1_000)));
      const before = mainThreadWakeups(node.pid);
      const windowMs = 3_000;
      await new Promise((r) => setTimeout(r, windowMs));
      const perSecond = (mainThreadWakeups(node.pid) - before) / (windowMs / 1000);
      expect(perSecond).toBeLessThan(40);
    });
  });
});
