import { defineConfig } from 'vitest/config';

// Long fault and load suites (test/long): one file at a time, no per-test deadline of the quick
// suite; each file sets its own timeout from its environment knobs.
export default defineConfig({
  test: {
    include: ['test/long/**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    setupFiles: ['test/helpers/loop-guard.ts', 'test/helpers/scratch.ts'],
    testTimeout: 3_600_000,
    hookTimeout: 300_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 1, minForks: 1 } },
    fileParallelism: false,
    reporters: ['default'],
  },
});
