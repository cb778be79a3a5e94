import { defineConfig } from 'vitest/config';
import { slow } from './test/helpers/slow.js';
import SlowestFirst from './test/helpers/sequencer.js';
import { IN_PROCESS_FILES } from './test/helpers/in-process.js';

const EXCLUDE = ['test/long/**', 'node_modules/**', 'dist/**'];

// `npm test` is the quick suite (≤ 5 minutes idle on 2 cores, ≤ 10 with both cores busy); long
// fault and load suites live under test/long and run through their own npm scripts. Deadlines
// scale with CHICAGO_TEST_SLOWDOWN (test/helpers/slow.ts).
export default defineConfig({
  test: {
    setupFiles: ['test/helpers/loop-guard.ts', 'test/helpers/scratch.ts'],
    testTimeout: slow(60_000),
    hookTimeout: slow(120_000),
    expect: { poll: { timeout: slow(1_000) } },
    pool: 'forks',
    poolOptions: {
      // three forks on two cores: about half of a file's time is waiting (services starting, polls,
      // timeouts), which a third fork fills
      forks: { maxForks: 3, minForks: 1 },
      // the pure in-process files (test/helpers/in-process.ts) one after another in one thread
      threads: { isolate: false, maxThreads: 1, minThreads: 1 },
    },
    sequence: { sequencer: SlowestFirst },
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'in-process', include: IN_PROCESS_FILES, pool: 'threads' } },
      { extends: true, test: { name: 'processes', include: ['test/**/*.test.ts'], exclude: [...EXCLUDE, ...IN_PROCESS_FILES] } },
    ],
  },
});
