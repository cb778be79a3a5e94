// Markdown table of the cluster benchmarks (issue 3 "Benchmark"), from bench/results/cluster-*.json:
//   node dist/bench/scenarios/cluster-table.js [DIR]   → DIR/cluster-table.md (and stdout)
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from '../result.js';

const ms = (us: number | undefined): string =>
  us === undefined || us === null ? '–' : us >= 100_000 ? `${Math.round(us / 1000)}` : (us / 1000).toFixed(us >= 10_000 ? 1 : 2);
const x = (n: number | undefined): string => (n === undefined || n === 0 ? '–' : `×${n.toFixed(2)}`);
const load = (s: unknown): string => {
  const m = /load average: ([\d.]+)/.exec(String(s ?? ''));
  return m ? m[1]! : '?';
};
const goal = (r: BenchResult): string => (r.goal ? (r.goal.met ? 'met' : `**missed**: ${(r.goal.missedBy ?? []).join('; ')}`) : '');
const n1 = (n: unknown): string => (typeof n === 'number' && Number.isFinite(n) ? String(Math.round(n)) : n === null ? '> window' : '–');

export function renderClusterTable(results: Array<{ name: string; r: BenchResult }>): string {
  const first = results[0]?.r;
  const lines: string[] = [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${first ? `${first.cpus.count} × ${first.cpus.model}, ${first.memGiB} GiB, Node ${first.node}${first.gitRev ? `, commit ${first.gitRev}` : ''}` : '?'}.`,
    'A private etcd and 4 `chicago server --etcd` nodes on 127.0.0.2–5 of the same 2-core machine, N = 3, acks=all, open-loop load',
    '(latency from the intended send time). "load" is the 1-minute load average (`uptime`) when the row started: the machine is shared.',
    '',
  ];
  const kv = results.filter(({ r }) => r.scenario === 'cluster-kv-put').sort((a, b) => a.r.rate - b.r.rate);
  if (kv.length) {
    lines.push(
      '### kv-put (200 B values, target p99 ≤ 1 ms, p99.9 ≤ 5 ms)',
      '',
      '| run | via | offered | achieved | p50 ms | p99 ms | p99.9 ms | max ms | errors | Redis p50 / p99 / p99.9 ms | Chicago ÷ Redis p50 / p99 / p99.9 | CPU nodes / bench | load | target |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const { name, r } of kv) {
      const l = r.latencyUs;
      const b = r.baseline;
      lines.push(
        `| ${name} | ${r.via ?? ''} | ${r.rate}/s | ${r.achievedRate ?? '–'}/s | ${ms(l.p50)} | ${ms(l.p99)} | ${ms(l.p999)} | ${ms(l.max)} | ${r.errors} | ` +
          `${b ? `${ms(b.latencyUs.p50)} / ${ms(b.latencyUs.p99)} / ${ms(b.latencyUs.p999)}` : '–'} | ` +
          `${b ? `${x(r.ratioToBaseline?.p50)} / ${x(r.ratioToBaseline?.p99)} / ${x(r.ratioToBaseline?.p999)}` : '–'} | ` +
          `${r.server?.cpuPct ?? '?'} % / ${r.benchCpuPct ?? '?'} % | ${load(r.extra?.uptimeBefore)} | ${goal(r)} |`,
      );
    }
    lines.push('');
  }
  const anchored = kv.filter(({ r }) => r.anchors && Object.keys(r.anchors).length > 0).sort((a, b) => a.r.rate - b.r.rate);
  if (anchored.length) lines.push(...renderAnchors(anchored));
  for (const { name, r } of results.filter(({ r }) => r.scenario === 'cluster-produce')) {
    const steps = (r.extra?.steps ?? []) as Array<{ rate: number; achievedRate: number; latencyUs: BenchResult['latencyUs']; errors: number; passes: boolean; nodesCpuPct?: number; uptime?: string }>;
    lines.push(
      `### produce, acks=all (${name}: batches of ${r.batchRecords} × ${r.recordBytes} B, topic of ${String(r.extra?.topicPartitions)} partitions × N=${r.replicas})`,
      '',
      `Highest rate with p99 ≤ 10 ms (no errors, ≥ 97 % achieved): **${r.extra?.bestAchievedRate ? `${r.extra.bestAchievedRate} records/s` : 'none of the tried rates'}**.`,
      '',
      '| offered rec/s | achieved rec/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | CPU nodes | load | p99 ≤ 10 ms |',
      '|---|---|---|---|---|---|---|---|---|---|',
      ...steps.map(
        (s) =>
          `| ${s.rate} | ${s.achievedRate} | ${ms(s.latencyUs.p50)} | ${ms(s.latencyUs.p99)} | ${ms(s.latencyUs.p999)} | ${ms(s.latencyUs.max)} | ${s.errors} | ${s.nodesCpuPct ?? '?'} % | ${load(s.uptime)} | ${s.passes ? 'yes' : 'no'} |`,
      ),
      '',
    );
  }
  for (const { name, r } of results.filter(({ r }) => r.scenario === 'cluster-failover')) {
    const e = r.extra ?? {};
    const kills = (e.kills ?? []) as Array<Record<string, unknown>>;
    const g = e.gapMs as { median: number; max: number } | undefined;
    const lg = e.longestAckGapMs as { median: number; max: number } | undefined;
    const vg = e.victimPartitionsMaxGapMs as { median: number; max: number } | undefined;
    lines.push(
      `### failover (${name}: kv-put ${r.rate}/s acks=all, kill -9 of a partition's leader, ${kills.length} times; target ≤ 500 ms)`,
      '',
      `Gap kill → next acked write on the chosen partition: median **${n1(g?.median)} ms**, max **${n1(g?.max)} ms**; ` +
        `worst partition of the victim: median ${n1(vg?.median)} ms, max ${n1(vg?.max)} ms; longest interval with no ack at all: median ${n1(lg?.median)} ms, max ${n1(lg?.max)} ms. ${goal(r)}`,
      '',
      '| # | partition | victim (led) | gap to any ack ms | gap, first write sent after the kill, ms (headline) | worst victim partition ms | longest ack gap ms | errors | cluster whole again after restart ms | load |',
      '|---|---|---|---|---|---|---|---|---|---|',
      ...kills.map(
        (k) =>
          `| ${String(k.repeat)} | ${String(k.partition)} | ${String(k.victim)} (${(k.victimPartitions as number[]).join(',')}) | ${n1(k.gapMs)} | ${n1(k.gapSentAfterMs)} | ${n1(k.victimPartitionsMaxGapMs)} | ${n1(k.longestAckGapMs)} | ${String(k.errors)} | ${String(k.readyAgainMs)} | ${load(k.uptime)} |`,
      ),
      '',
    );
  }
  for (const { name, r } of results.filter(({ r }) => r.scenario === 'cluster-rebalance')) {
    const e = r.extra ?? {};
    const moves = (e.moves ?? []) as Array<Record<string, any>>;
    lines.push(
      `### rebalance (${name}: ${String(e.loadKeys)} keys × ${r.recordBytes} B loaded in ${String(e.loadSeconds)} s; foreground kv-put ${String(e.foregroundRate)}/s acks=all; target p99 during ≤ 2× before)`,
      '',
      '| move | until all partitions on N in-sync ms | partitions changed | bytes moved (snapshots) | ÷ logical data | p99 before ms | p99 during ms | ratio | p99.9 before / during ms | errors during | load | target |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|',
      ...moves.map(
        (m) =>
          `| ${m.move} ${m.node} | ${m.moveMs} | ${m.partitionsChanged}/${m.partitions} | ${(m.bytesMoved / 1e6).toFixed(1)} MB | ${m.bytesMovedPerLogical} | ${ms(m.baseline.p99)} | ${ms(m.during.p99)} | ×${m.p99Ratio} | ${ms(m.baseline.p999)} / ${ms(m.during.p999)} | ${m.during.errors} | ${load(m.uptimeBefore)} | ${m.p99Ratio <= 2 && m.during.errors === 0 ? 'met' : '**missed**'} |`,
      ),
      '',
    );
  }
  return lines.join('\n');
}

const SYSTEM: Record<string, string> = {
  chicago: 'Chicago, 4 nodes, N=3, acks=all',
  redis: 'Redis, one process (no replica)',
  'redis-wait': 'Redis primary + 2 replicas, `SET` then `WAIT 2`',
  etcd: 'etcd, 3 members, `put`',
};

/** One block of rows per kv-put run: Chicago, then each system it was compared with, then the target. */
export function renderAnchors(runs: Array<{ name: string; r: BenchResult }>): string[] {
  const lines = [
    '### kv-put against the replicated anchors (same generator, schedule, keys and values, one after the other)',
    '',
    "Target (issue 16): Chicago's p99 ≤ 2× Redis+WAIT 2's and ≤ etcd's, at 500/s and 2k/s.",
    '',
    '| run | offered | system | achieved | p50 ms | p99 ms | p99.9 ms | max ms | errors | Chicago ÷ this p50 / p99 / p99.9 | CPU (servers) | load |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const { name, r } of runs) {
    const row = (label: string, sys: BenchResult, q?: { p50: number; p99: number; p999: number }, first = false): string => {
      const l = sys.latencyUs;
      return (
        `| ${first ? name : ''} | ${first ? `${r.rate}/s` : ''} | ${label} | ${sys.achievedRate ?? '–'}/s | ${ms(l.p50)} | ${ms(l.p99)} | ${ms(l.p999)} | ${ms(l.max)} | ${sys.errors} | ` +
        `${q ? `${x(q.p50)} / ${x(q.p99)} / ${x(q.p999)}` : ''} | ${sys.server?.cpuPct ?? '?'} % | ${load(sys.extra?.uptimeBefore)} |`
      );
    };
    lines.push(row(SYSTEM.chicago!, r, undefined, true));
    if (r.baseline) lines.push(row(SYSTEM.redis!, r.baseline, r.ratioToBaseline));
    for (const [anchor, a] of Object.entries(r.anchors ?? {})) {
      lines.push(row(SYSTEM[anchor] ?? anchor, a, r.ratioToAnchors?.[anchor as keyof typeof r.ratioToAnchors]));
    }
    if (r.anchorsGoal) lines.push(`| | | target: ${r.anchorsGoal.met ? 'met' : `**missed**: ${(r.anchorsGoal.missedBy ?? []).join('; ')}`} | | | | | | | | | |`);
  }
  lines.push('');
  return lines;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const dir = process.argv[2] ?? 'bench/results';
  const results = readdirSync(dir)
    .filter((f) => f.startsWith('cluster-') && f.endsWith('.json'))
    .sort()
    .map((f) => ({ name: f.replace(/\.json$/, ''), r: JSON.parse(readFileSync(join(dir, f), 'utf8')) as BenchResult }));
  const md = renderClusterTable(results);
  writeFileSync(join(dir, 'cluster-table.md'), md);
  process.stdout.write(md);
}
