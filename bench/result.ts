// The result object of CONTRACT.md ("Benchmark output") plus the details a reader needs to trust it.
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { BenchArgs } from './args.js';
import { summarize, type LatencySummary, type OpenLoopResult } from './openloop.js';
import { machineInfo, round1, type ProcUsage } from './proc.js';

export interface Goal {
  /** the issue's target, in words */
  text: string;
  met: boolean;
  /** why not, when not */
  missedBy?: string[];
}

export type BenchTarget = 'chicago' | 'redis' | 'redis-wait' | 'etcd';

export interface BenchResult {
  // ---- CONTRACT.md fields
  scenario: string;
  nodes: number;
  replicas: number;
  /** offered rate: operations/s (kv) or records/s (produce) */
  rate: number;
  durationS: number;
  sent: number;
  acked: number;
  errors: number;
  latencyUs: LatencySummary;
  node: string;
  cpus: { model: string; count: number };
  // ---- extras
  /** what was driven: Chicago, one Redis, or a replicated anchor (bench/anchors.ts) */
  target: BenchTarget;
  via?: 'ws' | 'http';
  /** acked per second of the measured window (records/s for produce) */
  achievedRate?: number;
  warmupS?: number;
  acks?: string;
  recordBytes?: number;
  batchRecords?: number;
  connections?: number;
  /** due in the measured window; sent + never sent because of the cap */
  intended?: number;
  errorsByKind?: Record<string, number>;
  errorSamples?: string[];
  /** the generator's own lateness (actual − intended send), per operation */
  sendLagUs?: LatencySummary;
  pacing?: string;
  maxOutstanding?: number;
  maxOutstandingSeen?: number;
  /** CPU of the bench process itself, % of one core */
  benchCpuPct?: number;
  /** the server process under load (spawned node, --pid, or redis) */
  server?: ProcUsage & { pid: number; version?: string };
  /** whole-machine CPU during the window; otherPct = used by neither the bench nor the server */
  machine?: { busyPct: number; loadAvg1: number; otherPct: number };
  /** a few of the node's own metrics after the run (event-loop delay etc.) */
  serverMetrics?: string[];
  /** the same schedule against the baseline, run in the same invocation */
  baseline?: BenchResult;
  /** this ÷ baseline for each latency percentile */
  ratioToBaseline?: LatencySummary;
  /** the same schedule against each replicated anchor (cluster-kv-put), in the same invocation */
  anchors?: Partial<Record<'redis-wait' | 'etcd', BenchResult>>;
  /** this ÷ that anchor for each latency percentile */
  ratioToAnchors?: Partial<Record<'redis-wait' | 'etcd', LatencySummary>>;
  /** the target set against the replicated anchors, when any ran */
  anchorsGoal?: Goal;
  goal?: Goal;
  /** scenario-specific extras (produce-tail's ack latency, idle's samples …) */
  extra?: Record<string, unknown>;
  cpuPct?: number;
  rssMB?: number;
  timestamp: string;
  gitRev?: string;
  platform: string;
  memGiB: number;
}

export function baseResult(args: BenchArgs, target: BenchTarget): Omit<BenchResult, 'sent' | 'acked' | 'errors' | 'latencyUs'> {
  const m = machineInfo();
  return {
    scenario: args.scenario,
    nodes: 1,
    replicas: args.replicas,
    rate: args.rate,
    durationS: args.durationS,
    node: m.node,
    cpus: m.cpus,
    target,
    timestamp: new Date().toISOString(),
    ...(m.gitRev === undefined ? {} : { gitRev: m.gitRev }),
    platform: m.platform,
    memGiB: m.memGiB,
  };
}

/** A run that sends nothing (an idle node or cluster): the base result with zero traffic. */
export function idleResult(args: BenchArgs, target: BenchTarget): BenchResult {
  return { ...baseResult(args, target), rate: 0, sent: 0, acked: 0, errors: 0, latencyUs: { p50: 0, p90: 0, p99: 0, p999: 0, max: 0 }, warmupS: args.warmupS };
}

export function fromLoop(
  args: BenchArgs,
  target: BenchTarget,
  r: OpenLoopResult,
  extra: Partial<BenchResult> = {},
): BenchResult {
  return {
    ...baseResult(args, target),
    sent: r.sent,
    acked: r.acked,
    errors: r.errors,
    latencyUs: summarize(r.latency),
    achievedRate: Math.round(r.ackedPerSecond),
    warmupS: args.warmupS,
    intended: r.intended,
    errorsByKind: { ...r.errorsByKind },
    ...(r.errorSamples.length > 0 ? { errorSamples: r.errorSamples } : {}),
    sendLagUs: summarize(r.sendLag),
    pacing: args.pacing,
    maxOutstanding: args.maxOutstanding,
    maxOutstandingSeen: r.maxOutstandingSeen,
    ...extra,
  };
}

export function ratio(a: LatencySummary, b: LatencySummary): LatencySummary {
  const d = (x: number, y: number): number => (y > 0 ? Math.round((x / y) * 100) / 100 : 0);
  return { p50: d(a.p50, b.p50), p90: d(a.p90, b.p90), p99: d(a.p99, b.p99), p999: d(a.p999, b.p999), max: d(a.max, b.max) };
}

/** The issue's targets for this 2-core machine, single node. */
export function evaluateGoal(r: BenchResult): Goal | undefined {
  if (r.target !== 'chicago') return undefined;
  const missed: string[] = [];
  const lat = r.latencyUs;
  const over = (what: string, got: number, limit: number, unit: string): void => {
    if (got > limit) missed.push(`${what} ${fmt(got)} ${unit} > ${fmt(limit)} ${unit} (×${round1(got / limit)})`);
  };
  const noErrors = (): void => {
    if (r.errors > 0) missed.push(`${r.errors} errors`);
  };
  switch (r.scenario) {
    case 'kv-put':
      over('p99', lat.p99, 1000, 'µs');
      over('p99.9', lat.p999, 3000, 'µs');
      noErrors();
      if (r.rate < 10_000) missed.push(`offered ${r.rate}/s < 10000/s`);
      return { text: 'kv-put at 10k/s: p99 ≤ 1 ms, p99.9 ≤ 3 ms', met: missed.length === 0, ...(missed.length ? { missedBy: missed } : {}) };
    case 'produce': {
      over('p99 ack', lat.p99, 10_000, 'µs');
      noErrors();
      // an open loop's achieved rate trails the offered one by the sends still due at the window's end
      const got = r.achievedRate ?? 0;
      if (r.rate < 300_000) missed.push(`offered ${fmt(r.rate)} rec/s < 300000 rec/s`);
      else if (got < r.rate * 0.99) missed.push(`achieved ${fmt(got)} rec/s < 99 % of the offered ${fmt(r.rate)} rec/s`);
      return { text: 'produce 200 B batched: ≥ 300k records/s with p99 ack ≤ 10 ms', met: missed.length === 0, ...(missed.length ? { missedBy: missed } : {}) };
    }
    case 'produce-tail':
      over('p99.9', lat.p999, 2000, 'µs');
      noErrors();
      if (r.rate < 10_000) missed.push(`offered ${r.rate}/s < 10000/s`);
      return { text: 'produce-tail at 10k records/s: p99.9 ≤ 2 ms', met: missed.length === 0, ...(missed.length ? { missedBy: missed } : {}) };
    case 'idle': {
      const cpu = r.cpuPct ?? Infinity;
      const rss = r.rssMB ?? Infinity;
      if (cpu > 1) missed.push(`CPU ${cpu} % > 1 %`);
      if (rss > 150) missed.push(`RSS ${rss} MB > 150 MB`);
      return { text: 'idle node: ≤ 1 % CPU, ≤ 150 MB RSS', met: missed.length === 0, ...(missed.length ? { missedBy: missed } : {}) };
    }
    default:
      return undefined;
  }
}

export const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(1));

export function writeResult(r: BenchResult, file: string | undefined): void {
  const text = `${JSON.stringify(r, null, 2)}\n`;
  if (file) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
  }
  process.stdout.write(text);
}

export function humanSummary(r: BenchResult): string {
  const l = r.latencyUs;
  const lines = [
    `${r.scenario} → ${r.target}${r.via ? ` (${r.via})` : ''}: offered ${fmt(r.rate)}/s for ${r.durationS}s, achieved ${fmt(r.achievedRate ?? 0)}/s`,
    `  sent ${r.sent}  acked ${r.acked}  errors ${r.errors}${r.errors ? ` ${JSON.stringify(r.errorsByKind)}` : ''}`,
    `  latency µs  p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  p99.9 ${l.p999}  max ${l.max}`,
  ];
  if (r.sendLagUs) lines.push(`  generator send lag µs  p99 ${r.sendLagUs.p99}  max ${r.sendLagUs.max}  (bench CPU ${r.benchCpuPct ?? '?'} %)`);
  const stages = r.extra?.stages as { receiptAfterAckUs: LatencySummary; receivedBeforeAck: number; slowest: { ackShareMedian: number } } | undefined;
  const ack = r.extra?.ackLatencyUs as LatencySummary | undefined;
  if (stages && ack) {
    const a = stages.receiptAfterAckUs;
    lines.push(`  producer ack µs  p50 ${ack.p50}  p99 ${ack.p99}  p99.9 ${ack.p999}; receipt after ack µs  p50 ${a.p50}  p99 ${a.p99}  p99.9 ${a.p999} (${stages.receivedBeforeAck} before it); slowest 0.1 %: ${Math.round(stages.slowest.ackShareMedian * 100)} % of their latency had passed at the ack`);
  }
  if (r.server) lines.push(`  server pid ${r.server.pid}: CPU ${r.server.cpuPct} %  RSS ${r.server.rssMB} MB`);
  const perPut = r.extra?.perPut as Record<string, { cpuUs: number; wakeups: number }> | undefined;
  if (perPut) lines.push(`  per put (µs of CPU / wake-ups): ${Object.entries(perPut).map(([k, v]) => `${k} ${v.cpuUs} / ${v.wakeups}`).join(', ')}`);
  if (r.machine) {
    lines.push(`  machine: busy ${r.machine.busyPct} % (other processes ${r.machine.otherPct} %), load ${r.machine.loadAvg1}`);
    if (r.machine.otherPct > 20) lines.push('  WARNING: other processes used the CPU during this run; its numbers are not representative');
  }
  if (r.baseline) {
    const b = r.baseline.latencyUs;
    lines.push(`  baseline ${r.baseline.target}: p50 ${b.p50}  p99 ${b.p99}  p99.9 ${b.p999}  max ${b.max}  errors ${r.baseline.errors}`);
    if (r.ratioToBaseline) lines.push(`  ratio chicago÷${r.baseline.target}: ${JSON.stringify(r.ratioToBaseline)}`);
  }
  for (const [name, a] of Object.entries(r.anchors ?? {})) {
    const b = a.latencyUs;
    lines.push(`  anchor ${name}: achieved ${fmt(a.achievedRate ?? 0)}/s  p50 ${b.p50}  p99 ${b.p99}  p99.9 ${b.p999}  max ${b.max}  errors ${a.errors}`);
    const q = r.ratioToAnchors?.[name as 'redis-wait' | 'etcd'];
    if (q) lines.push(`  ratio chicago÷${name}: ${JSON.stringify(q)}`);
  }
  for (const g of [r.goal, r.anchorsGoal]) if (g) lines.push(`  goal: ${g.text} → ${g.met ? 'MET' : `MISSED: ${(g.missedBy ?? []).join('; ')}`}`);
  return `${lines.join('\n')}\n`;
}
