// Runs ranges of seeds and collects failures; shared by test/sim.test.ts, the long suite and the
// command line (`npx tsx`-free: `node --import ... ` is not needed, vitest runs it).
import { formatFailure, runSeed, type SimOptions, type SimResult } from './world.js';

/** how the long suite (test/long/sim-long.test.ts) runs each seed */
export const longOptions = { retries: true, strictRecovery: true, quiesceMs: 20_000 } satisfies Partial<SimOptions>;

/**
 * Seeds that found a bug, replayed in test/sim.test.ts with the options that found it (world.ts
 * lists the findings): the long run's (longOptions, no moves, no anti-entropy), or with `single`
 * the one-copy mode's defaults (with `long` too: longOptions).
 */
export const regressions: ReadonlyArray<{ finding: string; seed: number; steps: number; copies?: 'mixed'; single?: true; nodes?: number; long?: true }> = [
  { finding: 'F6', seed: 1001522, steps: 2000, copies: 'mixed' },
  { finding: 'F7', seed: 3001909, steps: 2000 },
  { finding: 'F7', seed: 3003007, steps: 2000 },
  { finding: 'F8', seed: 4000823, steps: 2000, copies: 'mixed' },
  { finding: 'F8', seed: 4002217, steps: 2000, copies: 'mixed' },
  { finding: 'F9', seed: 5000004, steps: 2000, copies: 'mixed' },
  { finding: 'F10', seed: 5002472, steps: 2000, copies: 'mixed' },
  { finding: 'F12', seed: 563, steps: 500, single: true },
  { finding: 'F12', seed: 638, steps: 500, single: true },
  { finding: 'F13', seed: 532, steps: 500, single: true },
  { finding: 'F13', seed: 652, steps: 500, single: true },
  { finding: 'F13', seed: 285, steps: 500, single: true, nodes: 3 },
  // the checker's own gap: a retry's count of a copy a move dropped (holdersOfBatch), found by the long one-copy run
  { finding: 'checker', seed: 1000546, steps: 2000, single: true, long: true },
];

export interface SeedRun {
  seeds: number; failures: SimResult[]; ms: number; events: number; stats: Record<string, number>;
  /** each seed's stats, in seed order, up to where the run stopped */
  bySeed: Array<Record<string, number>>;
}

/** the stats of a run's first `count` seeds summed, or undefined when it stopped before them */
export function statsOfFirst(run: SeedRun, count: number): Record<string, number> | undefined {
  if (run.bySeed.length < count) return undefined;
  const stats: Record<string, number> = {};
  for (const s of run.bySeed.slice(0, count)) for (const [k, v] of Object.entries(s)) stats[k] = (stats[k] ?? 0) + v;
  return stats;
}

/** a turn of the event loop: vitest's worker answers its RPCs there */
export const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Runs seeds first..first+count-1, yielding to the event loop after each one. A test that holds
 * its thread longer than vitest's fixed 60 s worker RPC timeout (easily, on a busy machine) makes
 * the run fail with "Timeout calling onTaskUpdate" although every seed passed.
 */
export async function runSeeds(first: number, count: number, opts: Omit<SimOptions, 'seed'>, stopAfter = 5): Promise<SeedRun> {
  const t0 = performance.now();
  const failures: SimResult[] = [];
  const stats: Record<string, number> = {};
  const bySeed: Array<Record<string, number>> = [];
  let events = 0;
  for (let seed = first; seed < first + count; seed++) {
    const r = runSeed({ ...opts, seed });
    events += r.stats.events;
    bySeed.push(r.stats);
    for (const [k, v] of Object.entries(r.stats)) stats[k] = (stats[k] ?? 0) + v;
    if (!r.ok) {
      failures.push(r);
      if (failures.length >= stopAfter) break;
    }
    await yieldToLoop();
  }
  return { seeds: count, failures, ms: performance.now() - t0, events, stats, bySeed };
}

export function report(run: SeedRun): string {
  return run.failures.map(formatFailure).join('\n\n');
}

/** a violation's first line, for grouping failures by kind */
export function kindOf(r: SimResult): string {
  return (r.violation ?? '').split('\n')[0].replace(/#\d+|n\d|\d+/g, '·');
}
