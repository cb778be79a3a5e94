// The long deterministic simulation: many more seeds and longer fault phases than test/sim.test.ts.
//   SIM_LONG_SEEDS=20000 SIM_LONG_STEPS=3000 SIM_LONG_FIRST=100000 npx vitest run -c vitest.long.config.ts test/long/sim-long.test.ts
// Optional: SIM_LONG_COPIES=mixed (N=3 on 4–5 replicas, the shape of a view during a move),
// SIM_LONG_RETRIES=0 (no idempotent retries, which are on by default: finding F1), SIM_LONG_SINGLE=1
// (partitions of one copy moving between nodes).
// Every failing seed is printed with its trace and the command that replays it (test/sim.test.ts).
import { describe, expect, it } from 'vitest';
import { formatFailure } from '../sim/world.js';
import { kindOf, longOptions, runSeeds } from '../sim/seeds.js';

const SEEDS = Number(process.env.SIM_LONG_SEEDS ?? 10_000);
const STEPS = Number(process.env.SIM_LONG_STEPS ?? 2_000);
const FIRST = Number(process.env.SIM_LONG_FIRST ?? 1_000_001);
const MAX_FAILURES = Number(process.env.SIM_LONG_MAX_FAILURES ?? 20);

describe('long deterministic simulation', () => {
  it(`${SEEDS} seeds × ${STEPS} steps from seed ${FIRST}`, async () => {
    const run = await runSeeds(FIRST, SEEDS, {
      ...longOptions,
      steps: STEPS,
      copies: process.env.SIM_LONG_COPIES === 'mixed' ? 'mixed' : undefined,
      retries: process.env.SIM_LONG_RETRIES !== '0',
      single: process.env.SIM_LONG_SINGLE === '1',
    }, MAX_FAILURES);
    const kinds = new Map<string, number[]>();
    for (const f of run.failures) kinds.set(kindOf(f), [...(kinds.get(kindOf(f)) ?? []), f.seed]);
    console.log(`sim-long: ${SEEDS} seeds, ${run.events} events, ${(run.ms / 1000).toFixed(1)} s; ${JSON.stringify(run.stats)}`);
    for (const [k, seeds] of kinds) console.log(`${seeds.length}× ${k}: seeds ${seeds.join(', ')}`);
    expect(run.failures.map((f) => f.seed), run.failures.slice(0, 3).map(formatFailure).join('\n\n')).toEqual([]);
  }, 24 * 3600_000);
});
