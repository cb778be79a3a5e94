// Deterministic simulation of one replicated partition (test/sim/world.ts): the real replication
// transition under seeded message loss, duplication, reordering, delay, partitions, crashes and
// restarts, with a coordinator model doing CAS failover and in-sync maintenance, and invariants
// checked after every event. A failing seed replays exactly:
//   SIM_SEED=123 npx vitest run test/sim.test.ts          (full trace of that one seed)
//   SIM_SEEDS=5000 SIM_STEPS=600 npx vitest run test/sim.test.ts
import { describe, expect, it } from 'vitest';
import { formatFailure, runSeed, type SimOptions } from './sim/world.js';
import { runSeeds, report } from './sim/seeds.js';

const SEEDS = Number(process.env.SIM_SEEDS ?? 1000);
const STEPS = Number(process.env.SIM_STEPS ?? 500);
const FIRST = Number(process.env.SIM_FIRST ?? 1);

/**
 * Seeds that fail today with the default options, each an open finding (F1–F5, described in
 * test/sim/world.ts's header). They are skipped below, one test each, and left out of the sweep.
 */
const FINDING: Record<string, string> = {
  F4: 'F4 a follower acks, then a stale snapshot rolls it back: the leader counts the ack',
  F5: 'F5 an abandoned snapshot install is never restarted: no convergence',
};
/** seed → finding, for the default options at 500 steps (SIM_STEPS changes which seeds fail) */
export const KNOWN: Record<number, string> = STEPS === 500 ? {
  2: 'F4', 120: 'F5', 127: 'F4', 141: 'F4', 160: 'F5', 185: 'F5', 246: 'F4', 329: 'F4', 373: 'F4',
  374: 'F4', 387: 'F5', 428: 'F4', 471: 'F4', 495: 'F4', 516: 'F4', 545: 'F4', 578: 'F4', 583: 'F4',
  602: 'F5', 611: 'F5', 626: 'F4', 695: 'F4', 707: 'F4', 730: 'F4', 732: 'F4', 740: 'F5', 742: 'F4',
  751: 'F4', 757: 'F4', 764: 'F4', 793: 'F4', 889: 'F5', 908: 'F4', 914: 'F5', 957: 'F5', 982: 'F4',
} : {};

const base: Omit<SimOptions, 'seed'> = { steps: STEPS };

if (process.env.SIM_SEED) {
  const seed = Number(process.env.SIM_SEED);
  describe(`simulation replay of seed ${seed}`, () => {
    it('replays with the full trace', () => {
      const opts: SimOptions = {
        ...base, seed, fullTrace: true,
        retries: process.env.SIM_RETRIES === '1', strictRecovery: process.env.SIM_STRICT === '1', faithfulInstall: process.env.SIM_FAITHFUL === '1',
      };
      const r = runSeed(opts);
      console.log(r.ok ? `seed ${seed} ok [${r.config}] ${JSON.stringify(r.stats)}\n${r.trace.join('\n')}` : formatFailure(r));
      expect(r.ok, r.violation).toBe(true);
    });
  });
} else {
  describe('deterministic simulation of partition replication', () => {
    it(`holds every invariant for ${SEEDS} seeds × ${STEPS} steps`, () => {
      const seeds = Array.from({ length: SEEDS }, (_, i) => FIRST + i).filter((s) => !(s in KNOWN));
      const t0 = performance.now();
      const failures = [];
      let events = 0;
      for (const seed of seeds) {
        const r = runSeed({ ...base, seed });
        events += r.stats.events;
        if (!r.ok) failures.push(r);
        if (failures.length >= 3) break;
      }
      const ms = performance.now() - t0;
      console.log(`simulation: ${seeds.length} seeds, ${events} events, ${ms.toFixed(0)} ms`);
      expect(failures.map((f) => f.seed), failures.map(formatFailure).join('\n\n')).toEqual([]);
    }, 180_000);

    it('replays a seed exactly: same seed, same trace', () => {
      for (const seed of [3, 77, 1234]) {
        const a = runSeed({ ...base, seed, fullTrace: true });
        const b = runSeed({ ...base, seed, fullTrace: true });
        expect(b.traceHash).toBe(a.traceHash);
        expect(b.trace).toEqual(a.trace);
        expect(b.stats).toEqual(a.stats);
      }
      expect(runSeed({ ...base, seed: 3 }).traceHash).not.toBe(runSeed({ ...base, seed: 4 }).traceHash);
    });

    it('does inject the faults it claims (crashes, failovers, snapshots, losses)', () => {
      const run = runSeeds(FIRST, 100, base, 100);
      for (const k of ['crashes', 'restarts', 'failovers', 'isrChanges', 'snapshots', 'dropped', 'okAll', 'okOne', 'unknown']) {
        expect(run.stats[k], k).toBeGreaterThan(0);
      }
    });

    it('catches a planted bug: a checker that never fails proves nothing', () => {
      // the replica count of an answer is checked against the stores when it is given (F1)
      const r = runSeed({ ...base, seed: 24, retries: true });
      expect(r.ok).toBe(false);
      expect(r.violation).toMatch(/^invariant 4: .* acks=all answered ok with replicas=1/);
      // and the per-step log check catches a replica whose memory outlived its store (F3)
      const f3 = runSeed({ seed: 15, steps: 300, faithfulInstall: true });
      expect(f3.violation).toMatch(/^invariant 3: n1 at seq 34 has no log entry/);
    });
  });

  describe('known violations (skipped until fixed; see the simulation report)', () => {
    for (const [seed, what] of Object.entries(KNOWN)) {
      it.skip(`seed ${seed}: ${FINDING[what]}`, () => {
        const r = runSeed({ ...base, seed: Number(seed) });
        expect(r.ok, r.ok ? '' : formatFailure(r)).toBe(true);
      });
    }
    it.skip('F1 seed 24 (retries on): an idempotent retry of an acks=all produce is answered ok with replicas=1', () => {
      const r = runSeed({ ...base, seed: 24, retries: true });
      expect(r.ok, r.ok ? '' : formatFailure(r)).toBe(true);
    });
    it.skip('F2 seed 4 (strict recovery): createReplica adopts a newer epoch without writing it to disk', () => {
      const r = runSeed({ ...base, seed: 4, strictRecovery: true });
      expect(r.ok, r.ok ? '' : formatFailure(r)).toBe(true);
    });
    it.skip('F3 seed 15, 300 steps (faithful install): an abandoned install leaves the replica running over a wiped store', () => {
      const r = runSeed({ seed: 15, steps: 300, faithfulInstall: true });
      expect(r.ok, r.ok ? '' : formatFailure(r)).toBe(true);
    });
  });
}
