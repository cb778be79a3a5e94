import { defineConfig } from 'vitest/config';

// `npm test` is the quick suite (well under 30 minutes on 2 cores); long fault and load suites
// live under test/long and run through their own npm scripts.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/long/**', 'node_modules/**', 'dist/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});
