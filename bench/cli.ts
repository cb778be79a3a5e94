// `chicago bench SCENARIO …`: the CLI (src/cli) calls runBench; `node dist/bench/main.js` too.
import { parseBenchArgs } from './args.js';
import { humanSummary, writeResult, type BenchResult } from './result.js';
import { benchIdle } from './scenarios/idle.js';
import { benchNoop } from './scenarios/noop.js';
import { benchKv } from './scenarios/kv.js';
import { benchProduce } from './scenarios/produce.js';
import { benchProduceTail } from './scenarios/produce-tail.js';
import { benchClusterKvPut } from './scenarios/cluster-kv.js';
import { benchClusterProduce } from './scenarios/cluster-produce.js';
import { benchClusterFailover } from './scenarios/cluster-failover.js';
import { benchClusterRebalance } from './scenarios/cluster-rebalance.js';
import { benchClusterIdle } from './scenarios/cluster-idle.js';

/**
 * Runs one scenario, prints the result object (CONTRACT.md "Benchmark output") on stdout, writes
 * it to --json FILE, and a human summary on stderr. Throws on a setup failure (node not reachable,
 * bad flags); a run with errors still resolves — the errors are in the result.
 */
export async function runBench(scenario: string, argv: string[]): Promise<void> {
  const args = parseBenchArgs(scenario, argv);
  let res: BenchResult;
  switch (args.scenario) {
    case 'kv-put':
    case 'kv-get':
      res = await benchKv(args);
      break;
    case 'produce':
      res = await benchProduce(args);
      break;
    case 'produce-tail':
      res = await benchProduceTail(args);
      break;
    case 'idle':
      res = await benchIdle(args);
      break;
    case 'noop':
      res = await benchNoop(args);
      break;
    case 'cluster-kv-put':
      res = await benchClusterKvPut(args);
      break;
    case 'cluster-produce':
      res = await benchClusterProduce(args);
      break;
    case 'cluster-failover':
      res = await benchClusterFailover(args);
      break;
    case 'cluster-rebalance':
      res = await benchClusterRebalance(args);
      break;
    case 'cluster-idle':
      res = await benchClusterIdle(args);
      break;
  }
  writeResult(res, args.json);
  if (!args.quiet) process.stderr.write(humanSummary(res));
}
