// noop: the generator alone — each operation resolves on the next event-loop turn. Its latency is
// the floor this machine and harness add to every other scenario (scheduling, GC, VM pauses).
import type { BenchArgs } from '../args.js';
import { runOpenLoop } from '../openloop.js';
import { fromLoop, type BenchResult } from '../result.js';
import { loopOptions, startMeters } from './common.js';

export async function benchNoop(args: BenchArgs): Promise<BenchResult> {
  const meters = startMeters(undefined);
  const r = await runOpenLoop(loopOptions(args, args.rate, 1), () => new Promise<void>((res) => setImmediate(res)));
  const res = fromLoop(args, 'chicago', r, { ...meters.stop(), extra: { note: 'no server: the harness floor' } });
  res.nodes = 0;
  res.replicas = 0;
  return res;
}
