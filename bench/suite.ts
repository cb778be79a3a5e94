// The benchmark suite: each scenario in its own process against a fresh node (--spawn),
// results in bench/results/*.json, and bench/results/table.md with Redis ratios and the targets.
//
//   node dist/bench/suite.js [--out DIR] [--duration S] [--warmup S] [--only a,b] [--quick] [--produce-generators N]
//
// kv-put and kv-get run Chicago and Redis in the same invocation (same generator, same rate).
// produce climbs through increasing rates and keeps the highest that meets p99 ≤ 10 ms with no
// errors and ≥ 97 % of the offered rate achieved, from --produce-generators generator threads (default 2),
// beside the noop floor of those same threads at the climb's top rate.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { MachineSampler, machineInfo, repoRoot } from './proc.js';
import { ensureRedisServer } from './redis.js';
import type { BenchResult } from './result.js';
import { renderTable } from './report.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'produce-rates': { type: 'string' },
    'produce-generators': { type: 'string' },
    'quiet-wait-s': { type: 'string' },
  },
});

const root = repoRoot();
const outDir = resolve(values.out ?? join(root, 'bench', 'results'));
const durationS = Number(values.duration ?? (values.quick ? 3 : 10));
const warmupS = Number(values.warmup ?? (values.quick ? 1 : 2));
const only = values.only?.split(',').map((s) => s.trim());
const produceRates = (values['produce-rates'] ?? '100000,200000,300000,400000,500000').split(',').map(Number);
const produceGenerators = String(Math.max(1, Math.floor(Number(values['produce-generators'] ?? 2))));
const quietWaitS = Number(values['quiet-wait-s'] ?? 60);
const main = join(root, 'dist', 'bench', 'main.js');

const log = (s: string): void => {
  process.stderr.write(`[bench] ${s}\n`);
};

/** Waits (bounded) until the machine is nearly idle: other work on 2 cores ruins latency numbers. */
async function waitQuiet(): Promise<void> {
  const until = Date.now() + quietWaitS * 1000;
  for (;;) {
    const m = new MachineSampler();
    await new Promise((r) => setTimeout(r, 2000));
    const load = m.stop();
    if (!load || load.busyPct < 25) return;
    if (Date.now() > until) {
      log(`machine still busy (${load.busyPct} % of a core used by others); running anyway — see "machine" in the JSON`);
      return;
    }
    log(`machine busy (${load.busyPct} % of a core); waiting for it to calm down`);
  }
}

const wanted = (name: string): boolean => !only || only.some((o) => name.startsWith(o));

async function run(name: string, scenario: string, flags: string[]): Promise<BenchResult | undefined> {
  if (!wanted(name)) return undefined;
  await waitQuiet();
  const file = join(outDir, `${name}.json`);
  const args = [main, scenario, ...(scenario === 'noop' ? [] : ['--spawn']), '--duration', String(durationS), '--warmup', String(warmupS), '--json', file, ...flags];
  log(`${name}: chicago bench ${args.slice(1).join(' ')}`);
  const code = await new Promise<number>((res) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('exit', (c) => res(c ?? 1));
  });
  if (code !== 0 || !existsSync(file)) {
    log(`${name}: failed (exit ${code})`);
    return undefined;
  }
  return JSON.parse(readFileSync(file, 'utf8')) as BenchResult;
}

async function main_(): Promise<void> {
  if (!existsSync(main)) throw new Error(`${main} missing: npm run build first`);
  mkdirSync(outDir, { recursive: true });
  ensureRedisServer(log);
  const results: Array<{ name: string; r: BenchResult }> = [];
  const keep = (name: string, r: BenchResult | undefined): BenchResult | undefined => {
    if (r) results.push({ name, r });
    return r;
  };

  keep('noop-10k', await run('noop-10k', 'noop', ['--rate', '10000']));
  keep('kv-put-10k', await run('kv-put-10k', 'kv-put', ['--rate', '10000', '--baseline', 'redis']));
  keep('kv-get-10k', await run('kv-get-10k', 'kv-get', ['--rate', '10000', '--keys', '20000', '--baseline', 'redis']));

  // produce: climb; the best passing rate is the headline, every step is in the table
  {
    const top = String(Math.max(...produceRates));
    keep('produce-noop', await run('produce-noop', 'noop', ['--rate', top, '--batch', '1000', '--generators', produceGenerators]));
    for (const rate of produceRates) {
      const name = `produce-${rate / 1000}k`;
      if (!wanted(name)) continue;
      const r = await run(name, 'produce', ['--rate', String(rate), '--batch', '1000', '--record-bytes', '200', '--generators', produceGenerators]);
      keep(name, r);
      const ok =
        r !== undefined &&
        r.errors === 0 &&
        r.latencyUs.p99 <= 10_000 &&
        (r.achievedRate ?? 0) >= 0.97 * rate;
      if (!ok) {
        log(`${name}: does not sustain ${rate} rec/s with p99 ≤ 10 ms; stopping the climb`);
        break;
      }
    }
  }

  keep('produce-tail-10k', await run('produce-tail-10k', 'produce-tail', ['--rate', '10000']));
  // 30 s to settle: V8's memory reducer runs up to three full GCs in each isolate in the first ~25 s after a
  // start, a one-off that is not the idle cost
  keep('idle', await run('idle', 'idle', ['--duration', String(Math.max(durationS, 10)), '--warmup', '30']));

  const table = renderTable(results, machineInfo());
  writeFileSync(join(outDir, 'table.md'), table);
  process.stdout.write(table);
  log(`wrote ${results.length} results and table.md to ${outDir}`);
}

main_().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench suite: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
