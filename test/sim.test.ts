// Deterministic simulation of one replicated partition (test/sim/world.ts): the real replication
// transition under seeded message loss, duplication, reordering, delay, partitions, crashes and
// restarts, with a coordinator model doing CAS failover and in-sync maintenance, and invariants
// checked after every event. A failing seed replays exactly with the command printed with it:
//   SIM_SEED=123 SIM_STEPS=500 npx vitest run test/sim.test.ts     (full trace of that one seed;
//   also SIM_NODES, SIM_COPIES=<n>|mixed, SIM_RETRIES=1, SIM_STRICT=1, SIM_QUIESCE_MS, SIM_PLANT, SIM_MOVES=0, SIM_ANTI_ENTROPY=0, SIM_SINGLE=1)
//   SIM_SEEDS=5000 SIM_STEPS=600 npx vitest run test/sim.test.ts
import { describe, expect, it } from 'vitest';
import { formatFailure, runSeed, PLANTS, type Plant, type SimOptions } from './sim/world.js';
import { longOptions, regressions, runSeeds, report, statsOfFirst, yieldToLoop, type SeedRun } from './sim/seeds.js';
import { slow } from './helpers/slow.js';

const SEEDS = Number(process.env.SIM_SEEDS ?? 1000);
const STEPS = Number(process.env.SIM_STEPS ?? 500);
const FIRST = Number(process.env.SIM_FIRST ?? 1);
/** seeds of partitions of one copy (N = 1) moving between nodes */
const SINGLE_SEEDS = Number(process.env.SIM_SINGLE_SEEDS ?? 300);

const base: Omit<SimOptions, 'seed'> = { steps: STEPS };

if (process.env.SIM_SEED) {
  const seed = Number(process.env.SIM_SEED);
  describe(`simulation replay of seed ${seed}`, () => {
    it('replays with the full trace', () => {
      const env = process.env;
      const opts: SimOptions = {
        ...base, seed, fullTrace: true,
        nodes: env.SIM_NODES ? Number(env.SIM_NODES) : undefined,
        copies: env.SIM_COPIES === 'mixed' ? 'mixed' : env.SIM_COPIES ? Number(env.SIM_COPIES) : undefined,
        retries: env.SIM_RETRIES === '1',
        strictRecovery: env.SIM_STRICT === '1',
        quiesceMs: env.SIM_QUIESCE_MS ? Number(env.SIM_QUIESCE_MS) : undefined,
        plant: PLANTS.includes(env.SIM_PLANT as Plant) ? env.SIM_PLANT as Plant : undefined,
        moves: env.SIM_MOVES !== '0',
        antiEntropy: env.SIM_ANTI_ENTROPY !== '0',
        single: env.SIM_SINGLE === '1',
      };
      const r = runSeed(opts);
      console.log(r.ok ? `seed ${seed} ok [${r.config}] ${JSON.stringify(r.stats)}\n${r.trace.join('\n')}` : formatFailure(r));
      expect(r.ok, r.violation).toBe(true);
    });
  });
} else {
  describe('deterministic simulation of partition replication', () => {
    /** the main run: a seed's run is deterministic, so a later test reads its first seeds' stats instead of running them again */
    let main: Promise<SeedRun> | undefined;

    it(`holds every invariant for ${SEEDS} seeds × ${STEPS} steps`, async () => {
      main = runSeeds(FIRST, SEEDS, base, 3);
      const run = await main;
      console.log(`simulation: ${SEEDS} seeds, ${run.events} events, ${run.ms.toFixed(0)} ms`);
      expect(run.failures.map((f) => f.seed), report(run)).toEqual([]);
    }, slow(180_000));

    it(`holds them for ${SINGLE_SEEDS} seeds of a partition of one copy moving between nodes, whose log has gaps`, async () => {
      const run = await runSeeds(FIRST, SINGLE_SEEDS, { ...base, single: true }, 3);
      console.log(`simulation (N = 1): ${SINGLE_SEEDS} seeds, ${run.events} events, ${run.ms.toFixed(0)} ms; ${JSON.stringify(run.stats)}`);
      expect(run.failures.map((f) => f.seed), report(run)).toEqual([]);
      // moves ([A] → [B,A] → [B]), full copies, a dropped node's stale copy coming back, catch-ups stopped at a gap
      for (const k of ['moves', 'handOffs', 'snapshots', 'crashes', 'staleReturns', 'gapStops', 'okAll', 'okOne']) expect(run.stats[k], k).toBeGreaterThan(0);
    }, slow(120_000));

    it('replays a seed exactly: same seed, same trace', async () => {
      for (const seed of [3, 77, 1234]) {
        await yieldToLoop();
        const a = runSeed({ ...base, seed, fullTrace: true });
        const b = runSeed({ ...base, seed, fullTrace: true });
        expect(b.traceHash).toBe(a.traceHash);
        expect(b.trace).toEqual(a.trace);
        expect(b.stats).toEqual(a.stats);
        // every other run is untraced (no trace line formatted): it must be the same run
        expect(runSeed({ ...base, seed }).stats).toEqual(a.stats);
      }
      expect(runSeed({ ...base, seed: 3, fullTrace: true }).traceHash).not.toBe(runSeed({ ...base, seed: 4, fullTrace: true }).traceHash);
    });

    it('does inject the faults it claims (crashes, failovers, snapshots, losses, writes acked on a hinted copy)', async () => {
      const stats = (main && statsOfFirst(await main, 100)) ?? (await runSeeds(FIRST, 100, base, 100)).stats;
      for (const k of ['crashes', 'restarts', 'failovers', 'isrChanges', 'snapshots', 'dropped', 'okAll', 'okOne', 'unknown', 'hinted', 'handOffs', 'divergences', 'repairs']) {
        expect(stats[k], k).toBeGreaterThan(0);
      }
    });

    it('holds them with idempotent producers retrying and strict recovery checks (F1, F2)', async () => {
      const run = await runSeeds(FIRST, 200, { ...base, retries: true, strictRecovery: true }, 1);
      expect(run.failures.map((f) => f.seed), report(run)).toEqual([]);
    });

    it('holds them for the seeds that found bugs in the long run', async () => {
      for (const { seed, steps, copies, single, nodes, long } of regressions) {
        await yieldToLoop();
        const r = runSeed(single ? { ...(long ? longOptions : {}), seed, steps, single, nodes } : { ...longOptions, seed, steps, copies, moves: false, antiEntropy: false });
        expect(r.ok, r.ok ? '' : formatFailure(r)).toBe(true);
      }
    });

    it('catches a planted bug: a checker that never fails proves nothing', async () => {
      // a leader that answers acks=all as soon as it wrote locally is caught by invariant 4
      const early = await runSeeds(FIRST, 50, { ...base, plant: 'ack-early' }, 1);
      expect(early.failures.length).toBeGreaterThan(0);
      expect(early.failures[0].violation).toMatch(/^invariant 4: .*answered ok replicas=\d+ but only/);
    });

    it('catches a planted dirty read: a leader showing readers what it has not confirmed', async () => {
      const dirty = await runSeeds(FIRST, 200, { ...base, plant: 'read-applied' }, 1);
      expect(dirty.failures.length).toBeGreaterThan(0);
      expect(dirty.failures[0].violation).toMatch(/^invariant 6: /);
    });

    it('catches a planted in-sync bug: the decisions in src/cluster/decide.ts fed a leader that sees laggards as caught up', async () => {
      const eager = await runSeeds(FIRST, 1000, { ...base, plant: 'join-early' }, 1);
      expect(eager.failures.length).toBeGreaterThan(0);
      expect(eager.failures[0].violation).toMatch(/^invariant \d+: /);
    });

    it('catches a planted hand-off bug: leadership handed to a replica that is not caught up', async () => {
      const laggard = await runSeeds(FIRST, 300, { ...base, plant: 'handoff-laggard' }, 1);
      expect(laggard.failures.length).toBeGreaterThan(0);
      expect(laggard.failures[0].violation).toMatch(/^invariant \d+: /);
    });

    it('catches a planted refusal bug: a replica that a full copy replaces refuses its pending writes, though the copy holds some', async () => {
      const refused = await runSeeds(FIRST, 300, { ...base, plant: 'refuse-copied' }, 1);
      expect(refused.failures.length).toBeGreaterThan(0);
      expect(refused.failures[0].violation).toMatch(/^invariant 7: .*answered NOT_LEADER/);
    });

    it('catches a planted gap bug: catch-up that checks only where the log starts resends across a gap (N = 1)', async () => {
      const gap = await runSeeds(FIRST, SINGLE_SEEDS, { ...base, single: true, plant: 'resend-gap' }, 1);
      expect(gap.failures.length).toBeGreaterThan(0);
      expect(gap.failures[0].violation).toMatch(/^invariant 8: .*a hole in the log/);
    });

    it('catches a planted log bug: a leader of a partition of N = 1 that writes no log entry while a move gives it followers', async () => {
      const skip = await runSeeds(FIRST, 100, { ...base, single: true, plant: 'log-skip' }, 1);
      expect(skip.failures.length).toBeGreaterThan(0);
      expect(skip.failures[0].violation).toMatch(/^invariant 3: .* with no log entry/);
    });

    it('catches a planted anti-entropy bug: followers that compare the leader\'s digests with themselves never repair a divergence', async () => {
      const blind = await runSeeds(FIRST, 300, { ...base, plant: 'digest-blind' }, 1);
      expect(blind.failures.length).toBeGreaterThan(0);
      expect(blind.failures[0].violation).toMatch(/^(invariant 5: .* digest differs|no convergence)/);
    });
  });
}
