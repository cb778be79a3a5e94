// One generator thread of bench/generators.ts: connects, says ready, runs its slice of the
// schedule from the shared start time, and posts its counts and encoded histograms.
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { openTask, toPart, type GeneratorTask } from './generators.js';
import { runOpenLoop, type OpenLoopOptions } from './openloop.js';

interface Data { task: GeneratorTask; opts: OpenLoopOptions; index: number; of: number }

async function main(): Promise<void> {
  const port = parentPort!;
  const { task, opts, index, of } = workerData as Data;
  const t = await openTask(task);
  const startAbsMs = await new Promise<number>((resolve) => {
    const on = (m: { type: string; startAbsMs: number }): void => {
      if (m.type !== 'go') return;
      port.off('message', on);
      resolve(m.startAbsMs);
    };
    port.on('message', on);
    port.postMessage({ type: 'ready' });
  });
  const elu0 = performance.eventLoopUtilization();
  try {
    const r = await runOpenLoop({ ...opts, slice: { index, of, startAbsMs } }, t.op);
    const elu = performance.eventLoopUtilization(elu0).utilization;
    port.postMessage({ type: 'result', part: toPart(r, elu, t.extra()) });
  } finally {
    await t.close();
  }
}

main().catch((e: unknown) => {
  // the error event carries it to runLoad
  throw e;
});
