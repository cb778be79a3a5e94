// Open-loop load generator. The schedule of intended send times is fixed before the first send:
// op k is due at t0 + k * interval, whatever happened to op k-1. Latency is taken from the
// INTENDED time, so a stalled server (or a stalled generator) shows up as latency instead of
// silently lowering the offered rate (coordinated omission).
import { performance } from 'node:perf_hooks';
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
 * One scheduled operation. `intendedUs` is its due time on the `nowUs()` clock. Resolve when the
 * server acknowledged it; reject on a server or transport error.
 */
export type Op = (index: number, intendedUs: number) => Promise<unknown>;

/**
 * How the generator waits for the next due time.
 * - `spin`: re-check on every event-loop turn (setImmediate). Lag ~µs; burns one core.
 * - `sleep`: when the next send is under 2 ms away, block the thread in Atomics.wait until it is
 *   due (at most 200 µs at a time), then poll I/O with setImmediate. Lag ~50–100 µs at a fraction
 *   of spin's CPU; answers that arrive during the nap wait ≤ 200 µs, and that wait counts as latency.
 * - `timer`: a 1 ms timer plus a check after every completion. Cheapest; lag up to ~1 ms at low rates.
 */
export type Pacing = 'spin' | 'sleep' | 'timer';

const napCell = new Int32Array(new SharedArrayBuffer(4));
/** blocks this thread for `us` microseconds (Atomics.wait on a cell nobody notifies) */
function nap(us: number): void {
  if (us > 0) Atomics.wait(napCell, 0, 0, us / 1000);
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
}

interface Pending {
  intendedUs: number;
  measured: boolean;
}

export async function runOpenLoop(opts: OpenLoopOptions, op: Op): Promise<OpenLoopResult> {
  if (!(opts.opsPerSecond > 0)) throw new Error(`rate must be > 0 (got ${opts.opsPerSecond})`);
  if (!(opts.durationS > 0)) throw new Error(`duration must be > 0 (got ${opts.durationS})`);
  if (!(opts.maxOutstanding >= 1)) throw new Error('maxOutstanding must be ≥ 1');
  const intervalUs = 1e6 / opts.opsPerSecond;
  const warmupOps = warmupOpCount(opts);
  const measuredOps = Math.max(1, Math.round(opts.durationS * opts.opsPerSecond));
  const totalOps = warmupOps + measuredOps;
  const w = opts.weight;

  const latency = newHistogram();
  const sendLag = newHistogram();
  const errorsByKind: ErrorCounts = { rejected: 0, timeout: 0, outstandingCap: 0 };
  const errorSamples: string[] = [];
  let sent = 0;
  let acked = 0;
  let lastAnswerUs = 0;
  let maxOutstandingSeen = 0;
  // insertion order == due order, so the oldest entries come first (timeout sweep stops early)
  const pending = new Map<number, Pending>();

  // Start a little in the future so that setup work does not make the first sends late.
  const t0 = nowUs() + 5_000;
  const due = (k: number): number => t0 + k * intervalUs;
  const measureStartUs = due(warmupOps);
  let next = 0;
  let done = false;
  let wake: (() => void) | undefined;

  const fail = (kind: keyof ErrorCounts, err: unknown): void => {
    errorsByKind[kind] += w;
    if (errorSamples.length < 5) errorSamples.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`);
  };

  const issue = (k: number, intended: number, now: number): void => {
    const measured = k >= warmupOps;
    if (pending.size >= opts.maxOutstanding) {
      if (measured) fail('outstandingCap', `cap ${opts.maxOutstanding} full`);
      return;
    }
    if (measured) {
      sent += w;
      recordUs(sendLag, now - intended);
    }
    const p: Pending = { intendedUs: intended, measured };
    pending.set(k, p);
    if (pending.size > maxOutstandingSeen) maxOutstandingSeen = pending.size;
    let promise: Promise<unknown>;
    try {
      promise = op(k, intended);
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.then(
      () => {
        const t = nowUs();
        if (pending.delete(k) && p.measured) {
          acked += w;
          recordUs(latency, t - p.intendedUs, w);
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

  const pump = (): void => {
    const now = nowUs();
    while (next < totalOps && due(next) <= now) {
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
      if (p.intendedUs + opts.timeoutMs * 1000 > limitUs) break;
      pending.delete(k);
      if (p.measured) fail('timeout', `no answer within ${opts.timeoutMs} ms`);
    }
  };
  const sweeper = setInterval(() => sweepTimeouts(nowUs()), 100);

  await new Promise<void>((resolve) => {
    const loop = (): void => {
      if (done) return;
      pump();
      if (next >= totalOps) {
        resolve();
        return;
      }
      if (opts.pacing === 'spin') {
        setImmediate(loop);
      } else if (opts.pacing === 'sleep' && due(next) - nowUs() < 2000) {
        nap(Math.min(200, due(next) - nowUs()));
        setImmediate(loop);
      } else {
        const waitMs = (due(next) - nowUs()) / 1000;
        setTimeout(loop, Math.max(0, Math.floor(waitMs)));
      }
    };
    loop();
  });

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

  const endUs = Math.max(lastAnswerUs, due(totalOps - 1));
  const elapsedS = Math.max(1e-6, (endUs - measureStartUs) / 1e6);
  const errors = errorsByKind.rejected + errorsByKind.timeout + errorsByKind.outstandingCap;
  return {
    intended: measuredOps * w,
    sent,
    acked,
    errors,
    errorsByKind,
    errorSamples,
    latency,
    sendLag,
    elapsedS,
    ackedPerSecond: acked / elapsedS,
    maxOutstandingSeen,
  };
}

/** Operations of the warmup part of a schedule (indexes below this are not measured). */
export function warmupOpCount(opts: Pick<OpenLoopOptions, 'warmupS' | 'opsPerSecond'>): number {
  return Math.round(opts.warmupS * opts.opsPerSecond);
}
