import { defineConfig } from 'vitest/config';
import { slow } from './test/helpers/slow.js';
import SlowestFirst from './test/helpers/sequencer.js';

// `npm test` is the quick suite (≤ 5 minutes idle on 2 cores, ≤ 10 with both cores busy); long
// fault and load suites live under test/long and run through their own npm scripts. Deadlines
// scale with CHICAGO_TEST_SLOWDOWN (test/helpers/slow.ts).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/long/**', 'node_modules/**', 'dist/**'],
    setupFiles: ['test/helpers/loop-guard.ts', 'test/helpers/scratch.ts'],
    testTimeout: slow(60_000),
    hookTimeout: slow(120_000),
    expect: { poll: { timeout: slow(1_000) } },
    pool: 'forks',
    // three forks on two cores: about half of a file's time is waiting (services starting, polls,
    // timeouts), which a third fork fills
    poolOptions: { forks: { maxForks: 3, minForks: 1 } },
    sequence: { sequencer: SlowestFirst },
    reporters: ['default'],
  },
});
