// The agent ships to a 3-node cluster (N=3) while the leader of its partition is killed -9 and
// restarted: 0 missing, 0 duplicated, seq gap-free (the idempotent producer across a leader change).
// The long version (more cycles, agent kills too) is test/long/agent-kill-long.test.ts.
import { describe, expect, it } from 'vitest';
import { clusterKillRun } from './helpers/agent-cluster.js';
import { slow } from './helpers/slow.js';

describe('agent: a 3-node cluster loses the leader of the agent partition', () => {
  it('kill -9 of the leader while shipping: 0 missing, 0 duplicated, seq gap-free', async () => {
    const r = await clusterKillRun({ cycles: 1, rate: 1000, gapMs: 2500, log: (s) => console.log(s) });
    console.log(`agent cluster kill: ${r.kills.length} leader kills (${r.kills.join(', ')}), ${r.lines} lines in ${r.seconds.toFixed(1)} s`);
    expect(r.kills.length).toBe(1);
    expect(r.lines).toBeGreaterThan(2000);
    for (const c of r.checks) {
      expect(c.missing, `${c.task}: missing lines`).toEqual([]);
      expect(c.duplicated, `${c.task}: duplicated lines`).toEqual([]);
      expect(c.seqGaps, `${c.task}: seq gap-free from 0`).toBe('');
      expect(c.records).toBe(r.lines);
    }
  }, slow(120_000));
});
