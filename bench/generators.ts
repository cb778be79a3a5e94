// Several generators for one open-loop schedule (`--generators N`): N worker threads, each with
// its own event loop, its own client connections and every N-th operation of the schedule
// (operation k runs on generator k % N at the schedule's own due time), so one thread's CPU does
// not bound the offered rate. Their histograms (HdrHistogram, encoded) and counts are merged into
// one result; latency stays ack − intended send time on a clock the threads share.
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import hdr from 'hdr-histogram-js';
import { newTally, runOpenLoop, windowResult, type ErrorCounts, type Op, type OpenLoopOptions, type OpenLoopResult } from './openloop.js';
import { openDriver, type ChicagoDriver, type DriverOptions } from './targets.js';

/** What each generator sends; plain data, so that it crosses to a worker thread. */
export type GeneratorTask =
  | { kind: 'noop' }
  | { kind: 'produce'; driver: DriverOptions; topic: string; batch: number; recordBytes: number; partitions: number };

/** What a task reports besides the loop's counts. */
export interface TaskExtra {
  /** produce: the most replicas an ack reported */
  replicasSeen?: number;
}

export interface OpenTask {
  op: Op;
  extra(): TaskExtra;
  close(): Promise<void>;
}

/** An ASCII value of `bytes` bytes (the HTTP path sends values as JSON strings). */
export function asciiValue(bytes: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) b[i] = 97 + ((i * 7 + seed) % 26);
  return b;
}

/** Connects what the task needs (the same code in-process and in a generator thread). */
export async function openTask(task: GeneratorTask): Promise<OpenTask> {
  if (task.kind === 'noop') {
    // resolves on the next event-loop turn: the harness floor
    return { op: () => new Promise<void>((res) => setImmediate(res)), extra: () => ({}), close: async () => undefined };
  }
  // distinct buffers per slot so nothing downstream can alias one record to another
  const values = Array.from({ length: task.batch }, (_, i) => asciiValue(task.recordBytes, i));
  const driver: ChicagoDriver = await openDriver(task.driver);
  let replicasSeen = 0;
  return {
    op: async () => {
      const a = await driver.produce(task.topic, values, task.partitions);
      if (a.replicas > replicasSeen) replicasSeen = a.replicas;
    },
    extra: () => ({ replicasSeen }),
    close: () => driver.close(),
  };
}

/** One generator's result as it crosses threads: counts, and histograms as compressed base64. */
export interface GeneratorPart {
  intended: number;
  sent: number;
  acked: number;
  errorsByKind: ErrorCounts;
  errorSamples: string[];
  latency: string;
  sendLag: string;
  maxOutstandingSeen: number;
  measureStartAbsMs: number;
  endAbsMs: number;
  /** busy share of the generator thread's event loop over its run, 0..1 */
  elu: number;
  extra: TaskExtra;
}

export function toPart(r: OpenLoopResult, elu: number, extra: TaskExtra): GeneratorPart {
  return {
    intended: r.intended,
    sent: r.sent,
    acked: r.acked,
    errorsByKind: r.errorsByKind,
    errorSamples: r.errorSamples,
    latency: hdr.encodeIntoCompressedBase64(r.latency),
    sendLag: hdr.encodeIntoCompressedBase64(r.sendLag),
    maxOutstandingSeen: r.maxOutstandingSeen,
    measureStartAbsMs: r.measureStartAbsMs,
    endAbsMs: r.endAbsMs,
    elu,
    extra,
  };
}

/**
 * The generators' parts as one result: counts summed, histograms added, the measured window from
 * the schedule's first measured due time to the last answer of any generator. maxOutstandingSeen
 * is the sum of each generator's peak (an upper bound on the peak of the whole).
 */
export function mergeParts(parts: GeneratorPart[]): OpenLoopResult {
  if (parts.length === 0) throw new Error('no generator results to merge');
  const { latency, sendLag, errorsByKind, errorSamples } = newTally();
  let intended = 0;
  let sent = 0;
  let acked = 0;
  let maxOutstandingSeen = 0;
  let start = Infinity;
  let end = -Infinity;
  for (const p of parts) {
    intended += p.intended;
    sent += p.sent;
    acked += p.acked;
    maxOutstandingSeen += p.maxOutstandingSeen;
    for (const k of Object.keys(errorsByKind) as Array<keyof ErrorCounts>) errorsByKind[k] += p.errorsByKind[k];
    for (const e of p.errorSamples) if (errorSamples.length < 5) errorSamples.push(e);
    latency.add(hdr.decodeFromCompressedBase64(p.latency, 64, false));
    sendLag.add(hdr.decodeFromCompressedBase64(p.sendLag, 64, false));
    start = Math.min(start, p.measureStartAbsMs);
    end = Math.max(end, p.endAbsMs);
  }
  return windowResult({ intended, sent, acked, errorsByKind, errorSamples, latency, sendLag, maxOutstandingSeen }, start, end);
}

export interface LoadResult {
  loop: OpenLoopResult;
  extra: TaskExtra;
  /** per generator thread (none when the schedule ran in-process) */
  generatorElu?: number[];
}

/** a generator thread that does not connect within this long fails the run */
const GENERATOR_READY_MS = 30_000;
/** the schedule's t0 is this far after the last generator is ready, so none starts late */
const GENERATOR_START_LEAD_MS = 50;

/**
 * Runs the schedule of `opts` for `task`: in this thread when `generators` is 1, else split over
 * that many generator threads that start together once all have connected. `onStart` is called
 * once everything is connected, just before the schedule starts (to start meters there).
 */
export async function runLoad(task: GeneratorTask, opts: OpenLoopOptions, generators: number, onStart?: () => void): Promise<LoadResult> {
  if (generators <= 1) {
    const t = await openTask(task);
    try {
      onStart?.();
      const loop = await runOpenLoop(opts, t.op);
      return { loop, extra: t.extra() };
    } finally {
      await t.close();
    }
  }
  const { onTick: _ignored, ...plain } = opts;
  const workers = Array.from({ length: generators }, (_, index) =>
    new Worker(new URL('./generator-worker.js', import.meta.url), {
      workerData: { task, opts: plain, index, of: generators },
    }),
  );
  // a generator exits once it has posted its result and closed its connections
  const posted = new Set<Worker>();
  const failed = new Promise<never>((_, reject) => {
    for (const w of workers) {
      w.once('error', reject);
      w.once('exit', (code) => {
        if (!posted.has(w)) reject(new Error(`generator thread exited (${code}) before its result`));
      });
    }
  });
  failed.catch(() => undefined);
  const next = (w: Worker, type: string): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const on = (m: Record<string, unknown>): void => {
        if (m.type !== type) return;
        if (type === 'result') posted.add(w);
        w.off('message', on);
        resolve(m);
      };
      w.on('message', on);
    });
  try {
    const ready = Promise.all(workers.map((w) => next(w, 'ready')));
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`generators not ready within ${GENERATOR_READY_MS} ms`)), GENERATOR_READY_MS);
    });
    try {
      await Promise.race([ready, failed, slow]);
    } finally {
      clearTimeout(timer);
    }
    const results = Promise.all(workers.map((w) => next(w, 'result')));
    const startAbsMs = performance.timeOrigin + performance.now() + GENERATOR_START_LEAD_MS;
    onStart?.();
    for (const w of workers) w.postMessage({ type: 'go', startAbsMs });
    const parts = (await Promise.race([results, failed])).map((m) => m.part as GeneratorPart);
    const extra: TaskExtra = {};
    for (const p of parts) {
      if (p.extra.replicasSeen !== undefined) extra.replicasSeen = Math.max(extra.replicasSeen ?? 0, p.extra.replicasSeen);
    }
    return { loop: mergeParts(parts), extra, generatorElu: parts.map((p) => Math.round(p.elu * 1000) / 1000) };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
