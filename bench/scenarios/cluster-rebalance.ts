// cluster-rebalance: --load-keys keys of --record-bytes (default 1M × 256 B in the run script) are
// written (acks=all, round robin over the nodes), the nodes are left to settle (their CPU below
// 15 % each: the load's compactions done, at most 3 min), then a light foreground kv-put load at
// --rate runs for --duration s (the baseline), then — the same load still running — a node joins
// (`--move join`), leaves with SIGTERM (`leave`), or both in turn (`both`: join, then the
// leave of another node, on the same data). For each move:
//   moveMs        from the change (spawn of the new node / SIGTERM) until every partition is back on
//                 N in-sync replicas, the placement includes the new node (join) or no longer names
//                 the leaver (leave) and no node reports partitions moving (GET /v1/status of every
//                 node and its /metrics, once a second from the baseline on: every phase is watched
//                 alike; so the end is seen up to a second late)
//   bytesMoved    Σ chicago_rebalance_snapshot_bytes_sent over the nodes, after − before
//   p99 during the move ÷ p99 of the baseline (the issue: ≤ 2×)
//   timeline      the foreground second by second (p50, p99, max, errors; second 0 = the change)
//   replicasAgree once the load stops, every replica's digest of every partition equals its
//                 leader's (keysOnLeaders: the keys they hold in all)
// The foreground load runs as back-to-back open-loop segments of 5 s (same generator); each
// operation's latency (from its intended send time) is filed under the phase its intended time
// fell in.
import type { BenchArgs } from '../args.js';
import type { BenchCluster } from '../cluster.js';
import { readProc } from '../proc.js';
import { newHistogram, recordUs, runOpenLoop, summarize, nowUs, type LatencySummary, type Op, type OpenLoopResult } from '../openloop.js';
import { fromLoop, type BenchResult } from './cluster-result.js';
import { asciiValue, loopOptions } from './common.js';
import { MultiDriver, clog, clusterMeters, keyOf, loadKeys, sleep, uptime, withCluster } from './cluster-common.js';

const SEGMENT_S = 5;
/** how often the benchmark polls placement, status and metrics (in every phase alike) */
const OBSERVE_MS = 1000;
const SNAPSHOT_METRIC = 'chicago_rebalance_snapshot_bytes_sent';
const SETTLED_CPU_PCT_PER_NODE = 15;
const SETTLE_MAX_S = 180;

type Phase = LatencySummary & { errors: number; ops: number; errorSamples?: string[] };

interface MoveResult {
  move: 'join' | 'leave';
  node: string;
  moveMs: number;
  /** join: the new node serving; leave: the process gone */
  nodeStartMs?: number;
  leaverExitMs?: number;
  /** after the move and the load: every replica's digest equals its leader's (GET …/digest) */
  replicasAgree: boolean;
  keysOnLeaders: number;
  bytesMoved: number;
  logicalBytes: number;
  bytesMovedPerLogical: number;
  partitionsChanged: number;
  partitions: number;
  baseline: Phase;
  during: Phase;
  after: LatencySummary & { ops: number };
  p99Ratio: number;
  p999Ratio: number;
  uptimeBefore: string;
  uptimeAfter: string;
  nodesCpuPctDuring?: number;
  /** the foreground by second from the move's start (negative: the baseline), to tell a steady tail from bursts */
  timeline: Array<{ s: number; ops: number; p50: number; p99: number; max: number; errors: number }>;
}

/** Foreground load in segments until stop() and the current segment ends; latencies by intended time. */
function foreground(args: BenchArgs, d: MultiDriver, value: Buffer): {
  samples: { from: Float64Array; lat: Float64Array; n: number };
  /** failed writes: when each was due, and why it failed */
  errors: Array<{ fromUs: number; message: string }>;
  loops: OpenLoopResult[];
  stop(): Promise<void>;
} {
  let cap = 1 << 16;
  const s = { from: new Float64Array(cap), lat: new Float64Array(cap), n: 0 };
  const errors: Array<{ fromUs: number; message: string }> = [];
  const loops: OpenLoopResult[] = [];
  let stopping = false;
  let base = 0;
  const op: Op = (k, fromUs) =>
    d.kvPut(args.keyspace, keyOf(base + k, args.keys), value).then(
      (r) => {
        const lat = nowUs() - fromUs;
        if (s.n === cap) {
          cap *= 2;
          const f = new Float64Array(cap);
          f.set(s.from);
          s.from = f;
          const l = new Float64Array(cap);
          l.set(s.lat);
          s.lat = l;
        }
        s.from[s.n] = fromUs;
        s.lat[s.n] = lat;
        s.n++;
        return r;
      },
      (e: unknown) => {
        errors.push({ fromUs, message: (e as Error).message });
        throw e;
      },
    );
  const done = (async () => {
    while (!stopping) {
      const r = await runOpenLoop(loopOptions({ ...args, durationS: SEGMENT_S, warmupS: 0, drainMs: 5000, timeoutMs: 5000 }, args.rate, 1), op);
      base += Math.round(SEGMENT_S * args.rate);
      loops.push(r);
    }
  })();
  return {
    samples: s,
    errors,
    loops,
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

/** The foreground by whole second of intended send time, from `fromUs` to `toUs`, second 0 at `zeroUs`. */
function timeline(s: { from: Float64Array; lat: Float64Array; n: number }, errors: Array<{ fromUs: number; message: string }>, zeroUs: number, fromUs: number, toUs: number): MoveResult['timeline'] {
  const out: MoveResult['timeline'] = [];
  for (let t = fromUs; t < toUs; t += 1e6) {
    const p = phase(s, errors, t, Math.min(t + 1e6, toUs));
    out.push({ s: Math.round((t - zeroUs) / 1e6), ops: p.ops, p50: p.p50, p99: p.p99, max: p.max, errors: p.errors });
  }
  return out;
}

function phase(s: { from: Float64Array; lat: Float64Array; n: number }, errors: Array<{ fromUs: number; message: string }>, fromUs: number, toUs: number): Phase {
  const h = newHistogram();
  for (let i = 0; i < s.n; i++) if (s.from[i]! >= fromUs && s.from[i]! < toUs) recordUs(h, s.lat[i]!);
  const failed = errors.filter((e) => e.fromUs >= fromUs && e.fromUs < toUs);
  return { ...summarize(h), errors: failed.length, ops: h.totalCount, ...(failed.length ? { errorSamples: [...new Set(failed.map((e) => e.message))].slice(0, 5) } : {}) };
}

/**
 * One round of what the benchmark asks the nodes (placement and status of every node, the
 * snapshot counter); whether the move is done. The same round runs, once a second, through the
 * baseline, the move and after it, so that every phase pays for being watched alike.
 */
async function observe(c: BenchCluster, move: 'join' | 'leave', node: string | undefined): Promise<string | undefined> {
  const [views] = await Promise.all([c.views(), c.sampleMetric(SNAPSHOT_METRIC)]);
  const t = await c.table(views);
  const why = c.unsettled(t);
  if (why) return why;
  if (node === undefined) return 'no move yet';
  const named = [...t.values()].some((p) => p.replicas.includes(node));
  if (move === 'join' && !named) return `${node} holds no replica yet`;
  if (move === 'leave' && named) return `${node} still named in a replica set`;
  for (const [id, v] of views) if (v.moving > 0) return `${id}: ${v.moving} partitions moving`;
  return undefined;
}

/** Rounds of observe() once a second until stop(); `why` is the last round's answer. */
function observer(c: BenchCluster, move: 'join' | 'leave') {
  const state: { node?: string; why: string | undefined; stopping: boolean } = { why: 'not observed yet', stopping: false };
  const loop = (async () => {
    while (!state.stopping) {
      const t0 = performance.now();
      const node = state.node;
      const why = await observe(c, move, node).catch((e: Error) => e.message);
      if (node === state.node) state.why = why; // a round begun before the move began says nothing of it
      await sleep(Math.max(0, OBSERVE_MS - (performance.now() - t0)));
    }
  })();
  return { state, stop: async () => { state.stopping = true; await loop; } };
}

/**
 * Wait until the nodes are quiet (the compactions a bulk load leaves behind have run): their CPU
 * summed over a second below SETTLED_CPU_PCT_PER_NODE each, at most SETTLE_MAX_S. A baseline taken
 * while they compact would flatter the ratio.
 */
async function settle(c: BenchCluster): Promise<void> {
  const t0 = performance.now();
  const pids = c.running().map((n) => n.pid);
  const cpuS = (): number => pids.reduce((a, pid) => a + (readProc(pid)?.cpuS ?? 0), 0);
  let pct = Infinity;
  while (performance.now() - t0 < SETTLE_MAX_S * 1000) {
    const before = cpuS();
    await sleep(1000);
    pct = (cpuS() - before) * 100;
    if (pct < SETTLED_CPU_PCT_PER_NODE * pids.length) break;
  }
  clog(`nodes settled after ${Math.round((performance.now() - t0) / 1000)} s (CPU ${Math.round(pct)} % over the last second)`);
}

async function oneMove(args: BenchArgs, c: BenchCluster, move: 'join' | 'leave', value: Buffer, logicalBytes: number): Promise<MoveResult> {
  await c.waitReady(120_000);
  const before = new Map([...(await c.table()).values()].map((p) => [p.id, [...p.replicas].sort().join(',')]));
  const d = await MultiDriver.open(args, c.running());
  const uptimeBefore = uptime();
  clog(`${move}: foreground kv-put ${args.rate}/s acks=${args.acks}; baseline ${args.durationS} s; ${uptimeBefore}`);
  const fg = foreground(args, d, value);
  const obs = observer(c, move);
  const tBase0 = nowUs();
  await sleep(args.durationS * 1000);
  const bytes0 = await c.sumMetric(SNAPSHOT_METRIC);
  const tMove0 = nowUs();
  const meters = clusterMeters(c.running().map((n) => n.pid));
  let node: string;
  let nodeStartMs: number | undefined;
  let leaverExit: Promise<number> | undefined;
  let leaverExitMs: number | undefined;
  if (move === 'join') {
    const n = await c.addNode();
    node = n.id;
    nodeStartMs = Math.round((nowUs() - tMove0) / 1000);
    clog(`  ${node} serving after ${nodeStartMs} ms (${n.url})`);
  } else {
    // leave a node that is not the first (the bench asks the first for the status)
    node = c.running()[c.running().length - 1]!.id;
    d.exclude(node);
    leaverExit = c.leave(node, 15 * 60_000).then((ms) => (leaverExitMs = Math.round(ms))); // past leaveHandOffMs
    clog(`  SIGTERM ${node}`);
  }
  // the observer polls; a leaver exits once its replacements are in sync: that is part of the move
  obs.state.node = node;
  obs.state.why = 'not observed yet';
  let lastLog = performance.now();
  const deadline = performance.now() + 30 * 60_000;
  const why = () => (move === 'leave' && leaverExitMs === undefined ? 'leaver still running' : obs.state.why);
  while (why() !== undefined) {
    if (performance.now() - lastLog > 5000) {
      lastLog = performance.now();
      const mb = Math.round((c.sampledSum(SNAPSHOT_METRIC) - bytes0) / 1e6);
      clog(`  ${Math.round((nowUs() - tMove0) / 1e6)} s: not done: ${why()} (${mb} MB of snapshots so far)`);
    }
    if (performance.now() > deadline) throw new Error(`move ${move} not done in 30 min: ${why()}`);
    await sleep(100);
  }
  const tMove1 = nowUs();
  const moveMs = Math.round((tMove1 - tMove0) / 1000);
  const { perNodeCpuPct, ...m } = meters.stop();
  await leaverExit;
  const bytes1 = await c.sumMetric(SNAPSHOT_METRIC);
  clog(`  ${move} of ${node} done in ${moveMs} ms; ${Math.round((bytes1 - bytes0) / 1e6)} MB of snapshots; load runs 5 s more`);
  await sleep(SEGMENT_S * 1000);
  await Promise.all([fg.stop(), obs.stop()]);
  await d.close();
  const tEnd = nowUs();
  const after = new Map([...(await c.table()).values()].map((p) => [p.id, [...p.replicas].sort().join(',')]));
  let changed = 0;
  for (const [p, r] of after) if (before.get(p) !== r) changed++;
  // the copies are complete: every replica of every partition holds what its leader holds
  const check = await c.compareReplicas();
  clog(`  replicas ${check.agree ? 'agree' : 'DIFFER'}: ${check.keys} keys on the leaders${check.agree ? '' : `; ${check.differ.slice(0, 5).join('; ')}`}`);
  const baseline = phase(fg.samples, fg.errors, tBase0 + 1e6, tMove0);
  const during = phase(fg.samples, fg.errors, tMove0, tMove1);
  const afterPh = phase(fg.samples, fg.errors, tMove1, tEnd);
  const r: MoveResult = {
    move,
    node,
    moveMs,
    ...(nodeStartMs !== undefined ? { nodeStartMs } : {}),
    ...(leaverExitMs !== undefined ? { leaverExitMs } : {}),
    bytesMoved: bytes1 - bytes0,
    logicalBytes,
    bytesMovedPerLogical: Math.round(((bytes1 - bytes0) / logicalBytes) * 100) / 100,
    partitionsChanged: changed,
    replicasAgree: check.agree,
    keysOnLeaders: check.keys,
    partitions: after.size,
    baseline,
    during,
    after: afterPh,
    p99Ratio: baseline.p99 > 0 ? Math.round((during.p99 / baseline.p99) * 100) / 100 : 0,
    p999Ratio: baseline.p999 > 0 ? Math.round((during.p999 / baseline.p999) * 100) / 100 : 0,
    uptimeBefore,
    uptimeAfter: uptime(),
    ...(m.server ? { nodesCpuPctDuring: m.server.cpuPct } : {}),
    timeline: timeline(fg.samples, fg.errors, tMove0, tBase0, tEnd),
  };
  clog(`  baseline p99 ${baseline.p99} µs (p99.9 ${baseline.p999}), during p99 ${during.p99} µs (p99.9 ${during.p999}, max ${during.max}, errors ${during.errors}${during.errorSamples ? `: ${during.errorSamples.join(' | ')}` : ''}) → ×${r.p99Ratio}; nodes CPU during ${m.server?.cpuPct} % [${perNodeCpuPct}]`);
  return r;
}

export async function benchClusterRebalance(args: BenchArgs): Promise<BenchResult> {
  const value = asciiValue(args.recordBytes);
  const uptimeBefore = uptime();
  return withCluster(args, async (c) => {
    const n = args.cluster.loadKeys;
    const loader = await MultiDriver.open(args, c.running());
    clog(`loading ${n} keys of ${args.recordBytes} B (acks=${args.acks}); ${uptime()}`);
    const ld = await (async () => {
      try {
        return await loadKeys(loader, args.keyspace, n, value, 512, (k) => clog(`  ${k} keys`));
      } finally {
        await loader.close();
      }
    })();
    clog(`loaded in ${ld.seconds.toFixed(1)} s (${Math.round(n / ld.seconds)} keys/s, ${ld.errors} retried errors)`);
    await settle(c);
    const logicalBytes = n * (args.recordBytes + 9);
    // the foreground load overwrites the loaded keys (--keys of them), so the data does not grow
    const fgArgs: BenchArgs = { ...args, keys: Math.min(args.keys, n) };
    const moves: MoveResult[] = [];
    const kinds: Array<'join' | 'leave'> = args.cluster.move === 'both' ? ['join', 'leave'] : [args.cluster.move];
    for (const k of kinds) moves.push(await oneMove(fgArgs, c, k, value, logicalBytes));
    const head = moves[0]!;
    const missed: string[] = [];
    for (const mv of moves) if (mv.p99Ratio > 2) missed.push(`${mv.move}: p99 during the move ×${mv.p99Ratio} of baseline > ×2`);
    for (const mv of moves) if (mv.during.errors > 0) missed.push(`${mv.move}: ${mv.during.errors} errors during the move`);
    const empty: OpenLoopResult = { intended: 0, sent: 0, acked: 0, errors: 0, errorsByKind: { rejected: 0, timeout: 0, outstandingCap: 0 }, errorSamples: [], latency: newHistogram(), sendLag: newHistogram(), elapsedS: 1, ackedPerSecond: 0, maxOutstandingSeen: 0, measureStartAbsMs: 0, endAbsMs: 0 };
    const res = fromLoop(args, 'chicago', empty, { via: args.via, acks: args.acks, recordBytes: args.recordBytes });
    const { errors: _e, ops: _o, ...during } = head.during;
    res.latencyUs = during;
    res.acked = moves.reduce((a, m) => a + m.during.ops, 0);
    res.sent = res.acked + moves.reduce((a, m) => a + m.during.errors, 0);
    res.errors = moves.reduce((a, m) => a + m.during.errors, 0);
    res.nodes = args.cluster.nodes;
    res.replicas = args.replicas;
    res.goal = { text: 'rebalance (join / leave of one node): foreground p99 during the move ≤ 2× its baseline', met: missed.length === 0, ...(missed.length ? { missedBy: missed } : {}) };
    res.extra = {
      loadKeys: n,
      loadSeconds: Math.round(ld.seconds * 10) / 10,
      loadKeysPerS: Math.round(n / ld.seconds),
      logicalBytes,
      foregroundRate: args.rate,
      moves,
      note: 'latencyUs = the foreground load during the first move; each move has baseline/during/after in extra.moves',
      uptimeBefore,
      uptimeAfter: uptime(),
    };
    return res;
  });
}
