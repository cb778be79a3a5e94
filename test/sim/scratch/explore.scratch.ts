import { it } from 'vitest';
import { runSeeds, kindOf } from '../seeds.js';
import { formatFailure } from '../world.js';
it('explore', () => {
  const first = Number(process.env.FIRST ?? 1), count = Number(process.env.COUNT ?? 200), steps = Number(process.env.STEPS ?? 300);
  const copies = process.env.COPIES === 'mixed' ? 'mixed' : undefined;
  const run = runSeeds(first, count, { steps, copies, retries: process.env.RETRIES !== '0' }, 1000);
  const kinds = new Map<string, number[]>();
  for (const f of run.failures) { const k = kindOf(f); kinds.set(k, [...(kinds.get(k) ?? []), f.seed]); }
  console.log(`seeds=${count} ms=${run.ms.toFixed(0)} events=${run.events} failures=${run.failures.length}`, JSON.stringify(run.stats));
  for (const [k, s] of kinds) console.log(`${s.length}x ${k}  seeds ${s.slice(0, 12).join(',')}`);
  if (process.env.SHOW) { const f = run.failures.find((x) => x.seed === Number(process.env.SHOW)) ?? run.failures[0]; if (f) console.log(formatFailure(f)); }
}, 600000);
