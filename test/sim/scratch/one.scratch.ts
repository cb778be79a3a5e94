import { it } from 'vitest';
import { runSeed, formatFailure } from '../world.js';
it('one', () => {
  const r = runSeed({ seed: Number(process.env.SEED ?? 1), steps: Number(process.env.STEPS ?? 300), fullTrace: !!process.env.FULL, copies: process.env.COPIES === 'mixed' ? 'mixed' : undefined });
  console.log(r.ok ? `ok ${JSON.stringify(r.stats)} ${r.config} t=${r.simMs}` : formatFailure(r).split('\n').slice(0, Number(process.env.LINES ?? 200)).join('\n'));
}, 600000);
