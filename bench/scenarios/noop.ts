// noop: the generator alone — each operation resolves on the next event-loop turn. Its latency is
// the floor this machine and harness add to every other scenario (scheduling, GC, VM pauses);
// with --generators N it runs on the same N generator threads that produce uses.
import type { BenchArgs } from '../args.js';
import { runLoad } from '../generators.js';
import { fromLoop, type BenchResult } from '../result.js';
import { loopOptions, startMeters } from './common.js';

export async function benchNoop(args: BenchArgs): Promise<BenchResult> {
  let meters: ReturnType<typeof startMeters> | undefined;
  const { loop, generatorElu } = await runLoad({ kind: 'noop' }, loopOptions(args, args.rate / args.batch, args.batch), args.generators, () => {
    meters = startMeters(undefined);
  });
  const res = fromLoop(args, 'chicago', loop, {
    ...meters!.stop(),
    extra: { note: 'no server: the harness floor', generators: args.generators, ...(generatorElu ? { generatorElu } : {}) },
  });
  res.nodes = 0;
  res.replicas = 0;
  return res;
}
