// An idle cluster node wakes for its periodic checks and its peers' heartbeats, not for polls:
// failover looks between checks only when a member has been silent long enough to matter, the
// controller and the heartbeat ride the checks, and replica positions come from a shared board.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { slow } from './helpers/slow.js';

/** Voluntary context switches of a process's main thread: about one per wake-up. */
function mainThreadWakeups(pid: number): number {
  const status = readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8');
  return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1]);
}

let cluster: Cluster;
beforeAll(async () => { cluster = await startCluster({ nodes: 3, partitions: 4, replicas: 3 }); }, slow(120_000));
afterAll(async () => { await cluster?.teardown(); });

describe('an idle cluster', () => {
  it('wakes each node\'s main thread fewer than 50 times a second', async () => {
    // per node, about 20/s on a busy shared box: checks with heartbeats (10/s) at the wall clock's
    // 100 ms marks, which peers' heartbeats, the disk check and the lease keep-alives mostly share
    // (runtime/aligned-timer.ts); etcd's answers. A failover poll every 25 ms alone would add 40/s,
    // a timer at a phase of its own (a loop-delay monitor) 10/s
    await new Promise((r) => setTimeout(r, slow(1_000)));
    const pids = cluster.live().map((n) => n.handle.pid);
    const before = pids.map(mainThreadWakeups);
    const windowMs = 3_000;
    await new Promise((r) => setTimeout(r, windowMs));
    const perSecond = pids.map((p, i) => (mainThreadWakeups(p) - before[i]!) / (windowMs / 1000));
    console.log(`idle cluster: main-thread wake-ups per second per node ${perSecond.map((w) => w.toFixed(0)).join(', ')}`);
    for (const w of perSecond) expect(w).toBeLessThan(50);
    // and it is still a cluster that notices silence: every partition has its three replicas in sync
    const s = await cluster.status();
    expect(s.partitions.every((p) => p.isr.length === 3 && p.leader !== null)).toBe(true);
  });
});
