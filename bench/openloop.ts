// Open-loop load generator. The schedule of intended send times is fixed before the first send:
// op k is due at t0 + k * interval, whatever happened to op k-1. Latency is taken from the
// INTENDED time, so a stalled server (or a stalled generator) shows up as latency instead of
// silently lowering the offered rate (coordinated omission).
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';

/** Microseconds; 1 µs .. 1 h, 3 significant digits. The pure-JS build: no WebAssembly needed. */
export function newHistogram(): Histogram {
  return hdr.build({
    bitBucketSize: 64,
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: 3,
    useWebAssembly: false,
    autoResize: false,
  });
}

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
  return {
    p50: h.getValueAtPercentile(50),
    p90: h.getValueAtPercentile(90),
    p99: h.getValueAtPercentile(99),
    p999: h.getValueAtPercentile(99.9),
    max: h.maxValue,
  };
}

/** A monotonic clock in microseconds (fractional). */
export const nowUs = (): number => performance.now() * 1000;

export function recordUs(h: Histogram, us: number, count = 1): void {
  const v = Math.max(1, Math.min(3_600_000_000, Math.round(us)));
  if (count === 1) h.recordValue(v);
  else h.recordValueWithCount(v, count);
}

/**
 * One scheduled operation. `fromUs` (on the `nowUs()` clock) is what its latency is measured
 * from: its due time, or its actual send when that was earlier (ticker pacing). Resolve when the
 * server acknowledged it; reject on a server or transport error.
 */
export type Op = (index: number, fromUs: number) => Promise<unknown>;

/**
 * How the generator waits for the next due time.
 * - `ticker` (default): a worker thread sleeps in Atomics.wait until each due time (due times
 *   closer than TICK_EARLY_US share one wake-up) and posts a tick; the main thread blocks in the event
 *   loop as usual, so answers are read the moment they arrive. A tick sends everything due within
 *   the next TICK_EARLY_US; a send that leaves early is timed from when it actually left (never
 *   from a later intended time), so early sends cannot flatter the server. Little CPU.
 * - `spin`: re-check on every event-loop turn (setImmediate). Lag ~µs; burns one core, which on
 *   a 2-core machine is taken from the server under test.
 * - `timer`: a 1 ms timer plus a check after every completion. Cheapest; lag up to ~1 ms.
 */
export type Pacing = 'ticker' | 'spin' | 'timer';

/** the ticker thread, as an eval'd CommonJS script (no file to locate in dist/) */
const TICKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { startAbsMs, intervalMs, total, minGapMs, oversleepMs, earlyMs, ctl: buf } = workerData;
const ctl = new Int32Array(buf);
const origin = performance.timeOrigin;
let k = 0;
let lastPost = -Infinity;
while (k < total && Atomics.load(ctl, 0) === 0) {
  const d = Math.max(startAbsMs + k * intervalMs, lastPost + minGapMs);
  const wait = d - (origin + performance.now()) - oversleepMs;
  if (wait > 0) { Atomics.wait(ctl, 0, 0, Math.min(wait, 50)); if (d - (origin + performance.now()) > earlyMs) continue; }
  const now = origin + performance.now();
  parentPort.postMessage(0);
  lastPost = now;
  // the main thread sends everything due up to now + earlyMs
  while (k < total && startAbsMs + k * intervalMs <= now + earlyMs) k++;
}
`;

/** ticker pacing sends operations due within this many µs of the tick */
const TICK_EARLY_US = 200;

interface Ticker {
  stop(): Promise<void>;
}

function startTicker(startUs: number, intervalUs: number, total: number, onTick: () => void): Ticker {
  const ctl = new SharedArrayBuffer(4);
  const w = new Worker(TICKER_SOURCE, {
    eval: true,
    workerData: {
      // absolute ms (timeOrigin + now) so both threads share one clock
      startAbsMs: performance.timeOrigin + startUs / 1000,
      intervalMs: intervalUs / 1000,
      total,
      minGapMs: TICK_EARLY_US / 1000,
      // Atomics.wait overshoots by ~80 µs here (timer slack + VM): wake that much earlier
      oversleepMs: 0.08,
      earlyMs: TICK_EARLY_US / 1000,
      ctl,
    },
  });
  w.on('message', onTick);
  w.unref();
  return {
    stop: async () => {
      const c = new Int32Array(ctl);
      Atomics.store(c, 0, 1);
      Atomics.notify(c, 0);
      await w.terminate();
    },
  };
}

export interface OpenLoopOptions {
  /** operations per second (an operation may stand for `weight` records) */
  opsPerSecond: number;
  durationS: number;
  /** run the same schedule this long first; nothing from it is counted */
  warmupS: number;
  /** records per operation: counts and histogram weights are in records */
  weight: number;
  /**
   * Most operations outstanding at once. An operation due while the cap is full is not sent and
   * is counted as an error of kind `outstandingCap` — the generator never waits for room.
   */
  maxOutstanding: number;
  /** an operation unanswered this long is counted as a `timeout` error (and no longer occupies the cap) */
  timeoutMs: number;
  /** after the last due time, wait this long at most for answers still outstanding */
  drainMs: number;
  /**
   * Scheduling precision (see `Pacing`). `spin` re-checks the schedule on every event-loop turn (setImmediate):
   * sub-100 µs send lag, but the generator burns one core. `timer` checks on a 1 ms timer and after
   * every completion: cheap, and at high rates completions keep the lag small; at low rates the
   * lag (counted in the latency, as it must be) reaches ~1 ms.
   */
  pacing: Pacing;
  /** called after every completion, so that a scenario can drive other work off the same loop */
  onTick?: () => void;
  /**
   * Run only every `of`-th operation of the schedule, starting at `index` (one generator of
   * several, bench/generators.ts), with the schedule's t0 at `startAbsMs` (performance.timeOrigin +
   * performance.now(), a clock every thread shares). The rate, warmup and duration stay those of the whole
   * schedule; `op` gets the schedule's index.
   */
  slice?: LoopSlice;
}

export interface LoopSlice {
  index: number;
  of: number;
  startAbsMs: number;
}

export interface ErrorCounts {
  /** the server or transport answered with an error */
  rejected: number;
  /** no answer within timeoutMs (or before the drain ended) */
  timeout: number;
  /** never sent: the outstanding cap was full at its due time */
  outstandingCap: number;
}

export interface OpenLoopResult {
  /** records whose due time fell in the measured window (sent + never sent because of the cap) */
  intended: number;
  sent: number;
  acked: number;
  errors: number;
  errorsByKind: ErrorCounts;
  /** first error messages, for the operator */
  errorSamples: string[];
  /** ack latency from the intended send time, µs, weighted by records */
  latency: Histogram;
  /** how late the generator itself issued sends (actual − intended), µs, per operation */
  sendLag: Histogram;
  /** wall time of the measured window, from its first due time to its last answer */
  elapsedS: number;
  /** records acked per second of the measured window */
  ackedPerSecond: number;
  maxOutstandingSeen: number;
  /** the measured window's first due time and its end, on the shared clock (merging generators) */
  measureStartAbsMs: number;
  endAbsMs: number;
}

interface Pending {
  /** latency is measured from here: the intended time, or the actual send if that was earlier */
  fromUs: number;
  measured: boolean;
}

export async function runOpenLoop(opts: OpenLoopOptions, op: Op): Promise<OpenLoopResult> {
  if (!(opts.opsPerSecond > 0)) throw new Error(`rate must be > 0 (got ${opts.opsPerSecond})`);
  if (!(opts.durationS > 0)) throw new Error(`duration must be > 0 (got ${opts.durationS})`);
  if (!(opts.maxOutstanding >= 1)) throw new Error('maxOutstanding must be ≥ 1');
  const intervalUs = 1e6 / opts.opsPerSecond;
  const warmupOps = warmupOpCount(opts);
  const measuredOps = Math.max(1, Math.round(opts.durationS * opts.opsPerSecond));
  const slice = opts.slice ?? { index: 0, of: 1, startAbsMs: NaN };
  if (!(Number.isInteger(slice.of) && slice.of >= 1 && Number.isInteger(slice.index) && slice.index >= 0 && slice.index < slice.of)) {
    throw new Error(`bad schedule slice ${slice.index} of ${slice.of}`);
  }
  // this generator's operations: local k is the schedule's operation k * of + index
  const global = (k: number): number => k * slice.of + slice.index;
  const countBelow = (n: number): number => Math.max(0, Math.ceil((n - slice.index) / slice.of));
  const totalOps = countBelow(warmupOps + measuredOps);
  const localWarmupOps = countBelow(warmupOps);
  const w = opts.weight;

  const { latency, sendLag, errorsByKind, errorSamples } = newTally();
  let sent = 0;
  let acked = 0;
  let lastAnswerUs = 0;
  let maxOutstandingSeen = 0;
  // insertion order == due order, so the oldest entries come first (timeout sweep stops early)
  const pending = new Map<number, Pending>();

  // Start a little in the future so that setup work does not make the first sends late.
  const t0 = opts.slice ? (slice.startAbsMs - performance.timeOrigin) * 1000 : nowUs() + 5_000;
  const due = (k: number): number => t0 + global(k) * intervalUs;
  const measureStartUs = t0 + warmupOps * intervalUs;
  let next = 0;
  let done = false;
  let wake: (() => void) | undefined;

  const fail = (kind: keyof ErrorCounts, err: unknown): void => {
    errorsByKind[kind] += w;
    if (errorSamples.length < 5) errorSamples.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`);
  };

  const issue = (k: number, intended: number, now: number): void => {
    const measured = k >= localWarmupOps;
    if (pending.size >= opts.maxOutstanding) {
      if (measured) fail('outstandingCap', `cap ${opts.maxOutstanding} full`);
      return;
    }
    if (measured) {
      sent += w;
      recordUs(sendLag, Math.max(0, now - intended));
    }
    const p: Pending = { fromUs: Math.min(intended, now), measured };
    pending.set(k, p);
    if (pending.size > maxOutstandingSeen) maxOutstandingSeen = pending.size;
    let promise: Promise<unknown>;
    try {
      promise = op(global(k), p.fromUs);
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.then(
      () => {
        const t = nowUs();
        if (pending.delete(k) && p.measured) {
          acked += w;
          recordUs(latency, t - p.fromUs, w);
          lastAnswerUs = t;
        }
        afterCompletion();
      },
      (err: unknown) => {
        const t = nowUs();
        if (pending.delete(k) && p.measured) {
          fail('rejected', err);
          lastAnswerUs = t;
        }
        afterCompletion();
      },
    );
  };

  const horizonUs = opts.pacing === 'ticker' ? TICK_EARLY_US : 0;
  const pump = (): void => {
    const now = nowUs();
    while (next < totalOps && due(next) <= now + horizonUs) {
      issue(next, due(next), now);
      next++;
    }
  };

  const afterCompletion = (): void => {
    pump();
    opts.onTick?.();
    if (next >= totalOps && pending.size === 0) wake?.();
  };

  const sweepTimeouts = (limitUs: number): void => {
    for (const [k, p] of pending) {
      if (p.fromUs + opts.timeoutMs * 1000 > limitUs) break;
      pending.delete(k);
      if (p.measured) fail('timeout', `no answer within ${opts.timeoutMs} ms`);
    }
  };
  const sweeper = setInterval(() => sweepTimeouts(nowUs()), 100);

  let ticker: Ticker | undefined;
  await new Promise<void>((resolve) => {
    const loop = (): void => {
      if (done) return;
      pump();
      if (next >= totalOps) {
        resolve();
        return;
      }
      if (opts.pacing === 'spin') setImmediate(loop);
      else if (opts.pacing === 'timer') setTimeout(loop, Math.max(0, Math.floor((due(next) - nowUs()) / 1000)));
      // ticker: the next tick calls loop
    };
    if (opts.pacing === 'ticker') {
      ticker = startTicker(due(0), intervalUs * slice.of, totalOps, loop);
      // a safety net should a tick get lost: never stall longer than 5 ms
      const net = setInterval(() => {
        if (done || next >= totalOps) clearInterval(net);
        else loop();
      }, 5);
    } else {
      loop();
    }
  });
  await ticker?.stop();

  // Drain: answers still outstanding get until drainMs (and each its own timeout).
  if (pending.size > 0) {
    await new Promise<void>((resolve) => {
      wake = resolve;
      const t = setTimeout(resolve, opts.drainMs);
      t.unref?.();
    });
  }
  done = true;
  clearInterval(sweeper);
  for (const [, p] of pending) if (p.measured) fail('timeout', `still outstanding after the ${opts.drainMs} ms drain`);
  pending.clear();

  const endUs = Math.max(lastAnswerUs, totalOps > 0 ? due(totalOps - 1) : measureStartUs);
  return windowResult(
    { intended: (totalOps - localWarmupOps) * w, sent, acked, errorsByKind, errorSamples, latency, sendLag, maxOutstandingSeen },
    performance.timeOrigin + measureStartUs / 1000,
    performance.timeOrigin + endUs / 1000,
  );
}

/** Empty histograms and error counts for one run (or a merge of several). */
export function newTally(): Pick<OpenLoopResult, 'latency' | 'sendLag' | 'errorsByKind' | 'errorSamples'> {
  return { latency: newHistogram(), sendLag: newHistogram(), errorsByKind: { rejected: 0, timeout: 0, outstandingCap: 0 }, errorSamples: [] };
}

/** A result from its counts and its measured window (ms on the clock every thread shares). */
export function windowResult(
  r: Omit<OpenLoopResult, 'errors' | 'elapsedS' | 'ackedPerSecond' | 'measureStartAbsMs' | 'endAbsMs'>,
  measureStartAbsMs: number,
  endAbsMs: number,
): OpenLoopResult {
  const elapsedS = Math.max(1e-6, (endAbsMs - measureStartAbsMs) / 1000);
  const e = r.errorsByKind;
  return { ...r, errors: e.rejected + e.timeout + e.outstandingCap, elapsedS, ackedPerSecond: r.acked / elapsedS, measureStartAbsMs, endAbsMs };
}

/** Operations of the warmup part of a schedule (indexes below this are not measured). */
export function warmupOpCount(opts: Pick<OpenLoopOptions, 'warmupS' | 'opsPerSecond'>): number {
  return Math.round(opts.warmupS * opts.opsPerSecond);
}
