// Standalone entry: `node dist/bench/main.js SCENARIO [flags]` (same as `chicago bench …`).
import { runBench } from './cli.js';

const [scenario = '--help', ...rest] = process.argv.slice(2);
runBench(scenario, rest).then(
  // handles (sockets, timers) of a finished run must not keep the process alive
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`chicago bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
