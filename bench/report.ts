// Markdown table of bench results (for the README), from the suite or from JSON files:
//   node dist/bench/report.js bench/results > table.md
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { machineInfo, type MachineInfo } from './proc.js';
import type { BenchResult } from './result.js';

const ms = (us: number): string => (us >= 100_000 ? `${Math.round(us / 1000)}` : (us / 1000).toFixed(us >= 10_000 ? 1 : 2));
const rate = (n: number | undefined): string =>
  n === undefined ? '–' : n >= 1000 ? `${(n / 1000).toFixed(n >= 100_000 ? 0 : 1)}k/s` : `${n}/s`;
const x = (n: number | undefined): string => (n === undefined || n === 0 ? '–' : `×${n.toFixed(2)}`);

function row(name: string, r: BenchResult): string {
  const l = r.latencyUs;
  const b = r.baseline;
  const goal = r.goal ? (r.goal.met ? `met (${r.goal.text})` : `**missed**: ${(r.goal.missedBy ?? []).join('; ')}`) : '';
  const other = r.machine && r.machine.otherPct > 20 ? ` ⚠ other load ${r.machine.otherPct} %` : '';
  const cells = [
    name,
    rate(r.rate),
    rate(r.achievedRate),
    ms(l.p50),
    ms(l.p90),
    ms(l.p99),
    ms(l.p999),
    ms(l.max),
    String(r.errors),
    b ? `${ms(b.latencyUs.p50)} / ${ms(b.latencyUs.p99)} / ${ms(b.latencyUs.p999)}` : '',
    b ? `${x(r.ratioToBaseline?.p50)} / ${x(r.ratioToBaseline?.p99)} / ${x(r.ratioToBaseline?.p999)}` : '',
    r.server ? `${r.server.cpuPct} % / ${r.benchCpuPct ?? '?'} %` : '',
    goal + other,
  ];
  return `| ${cells.join(' | ')} |`;
}

export function renderTable(results: Array<{ name: string; r: BenchResult }>, m: MachineInfo = machineInfo()): string {
  const load = results.filter(({ r }) => r.scenario !== 'idle');
  const idle = results.filter(({ r }) => r.scenario === 'idle');
  const lines = [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${m.cpus.count} × ${m.cpus.model}, ${m.memGiB} GiB, Node ${m.node}` +
      `${m.gitRev ? `, commit ${m.gitRev}` : ''}. Single node, fresh data dir per row, open loop (latency from the intended send time).`,
    '',
    '| scenario | offered | achieved | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | Redis p50 / p99 / p99.9 ms | Chicago ÷ Redis p50 / p99 / p99.9 | CPU node / bench | target |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...load.map(({ name, r }) => row(name, r)),
  ];
  for (const { r } of idle) {
    lines.push(
      '',
      `Idle node (${r.durationS} s after ${r.warmupS ?? 0} s settle): CPU ${r.cpuPct} % of one core, RSS ${r.rssMB} MB` +
        ` (max ${r.server?.rssMaxMB ?? '?'} MB, ${r.server?.threads ?? '?'} threads) — ${r.goal?.met ? 'target met' : `**target missed**: ${(r.goal?.missedBy ?? []).join('; ')}`}.`,
    );
  }
  const withBase = load.find(({ r }) => r.baseline);
  if (withBase?.r.baseline) {
    const b = withBase.r.baseline;
    lines.push(
      '',
      `Redis: ${b.server?.version ?? 'redis-server'}, driven by ioredis through the same generator at the same rate, ` +
        'one connection (commands pipelined), started fresh by the bench on a free loopback port.',
    );
  }
  const produce = load.filter(({ r }) => r.scenario === 'produce');
  if (produce.length > 0) {
    const best = produce
      .filter(({ r }) => r.errors === 0 && r.latencyUs.p99 <= 10_000 && (r.achievedRate ?? 0) >= 0.97 * r.rate)
      .sort((a, b) => (b.r.achievedRate ?? 0) - (a.r.achievedRate ?? 0))[0];
    lines.push(
      '',
      best
        ? `produce: highest sustained rate with p99 ack ≤ 10 ms: ${rate(best.r.achievedRate)} (${best.name}; batches of ${best.r.batchRecords} × ${best.r.recordBytes} B).`
        : 'produce: no tried rate sustained p99 ack ≤ 10 ms without errors.',
    );
  }
  lines.push(
    '',
    'noop = the generator alone (an operation that resolves on the next event-loop turn): the floor that ' +
      'this machine and harness put under every other row (produce-noop: the produce rows\' generator threads and batches at the top rate). Latency columns: kv = request → ack; produce = batch due time → ack, weighted by records; ' +
      'produce-tail = record due time → receipt by a live WebSocket subscriber. "CPU" is % of one core ' +
      '(the machine has two) for the node process (all threads) and for the load generator.',
    '',
  );
  return lines.join('\n');
}

// CLI: render from a directory of result files
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = process.argv[2] ?? 'bench/results';
  const results = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ name: f.replace(/\.json$/, ''), r: JSON.parse(readFileSync(join(dir, f), 'utf8')) as BenchResult }));
  process.stdout.write(renderTable(results));
}
