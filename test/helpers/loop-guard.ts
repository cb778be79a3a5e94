// Runs in every test file (vitest setupFiles): fails the file when something held its worker's
// event loop for too long. vitest's worker answers its RPCs on that loop with a fixed 60 s timeout,
// so a long synchronous stretch fails the whole run ("Timeout calling onTaskUpdate") on a busy
// machine even though every test passed. Long computations yield (test/sim/seeds.ts: yieldToLoop).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, expect } from 'vitest';

/** a third of vitest's worker RPC timeout: room for the machine to be three times slower */
const LOOP_BLOCK_MAX_MS = 20_000;

const delay = monitorEventLoopDelay({ resolution: 20 });
delay.enable();

afterAll(() => {
  delay.disable();
  const maxMs = delay.max / 1e6;
  if (process.env.CHICAGO_TEST_LOOP_REPORT) console.log(`event loop: longest block ${maxMs.toFixed(0)} ms in ${expect.getState().testPath}`);
  if (maxMs > LOOP_BLOCK_MAX_MS) {
    throw new Error(`this file blocked its worker's event loop for ${maxMs.toFixed(0)} ms (limit ${LOOP_BLOCK_MAX_MS} ms): yield in long synchronous work`);
  }
});
