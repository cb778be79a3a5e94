// A diagnostic for the cluster write path: with CHICAGO_HOP_TIMES=DIR, each thread of a node (the
// gateway's worker handles, each partition worker) records when a write passes its points, as
// wall-clock microseconds (performance.timeOrigin + now, comparable across threads and processes
// of one machine), and appends its new rows to DIR/<node>-<thread>.json every few seconds and as
// the node stops, one JSON array a line (each append costs what it adds: a rewrite of every row so
// far would stall the thread being measured longer at each dump). bench/hop-times.ts joins the
// files into per-hop percentiles. Off (the default) it costs one check of a constant per point.
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { limits } from './limits.js';

const DIR = process.env.CHICAGO_HOP_TIMES;
const DUMP_EVERY_MS = 3_000;
const STALL_SAMPLE_MS = 2;
const STALL_MIN_US = 2_000;
const STALL_TASK_MIN_US = 300;

/** a point a write passes: its name, then the keys that join it to the other threads' rows */
export type HopRow = [point: string, atUs: number, ...keys: Array<number | string>];

export class HopTimes {
  static readonly enabled = DIR !== undefined && DIR !== '';
  /** rows not yet appended to the file */
  private rows: HopRow[] = [];
  private recorded = 0;
  private file: string | undefined;

  /** `thread` names the file once the node's id is known; an earlier run's file of that name is emptied */
  start(node: string, thread: string): void {
    if (!HopTimes.enabled || this.file) return;
    this.file = join(DIR!, `${node}-${thread}.json`);
    mkdirSync(DIR!, { recursive: true });
    writeFileSync(this.file, '');
    setInterval(() => this.dump(), DUMP_EVERY_MS).unref();
    // a timer every STALL_SAMPLE_MS: a turn that came that much later marks a busy thread
    let last = performance.now();
    setInterval(() => {
      const now = performance.now();
      const lateUs = Math.round((now - last - STALL_SAMPLE_MS) * 1000);
      if (lateUs >= STALL_MIN_US) this.note('stall', lateUs);
      last = now;
    }, STALL_SAMPLE_MS).unref();
    // GC pauses of this thread, at their end: [gc, atUs, kind, durUs]
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = ((e as unknown as { detail?: { kind?: number } }).detail)?.kind ?? 0;
        if (this.recorded >= limits.hopTimesRowsMax) return;
        this.recorded++;
        this.rows.push(['gc', Math.round((performance.timeOrigin + e.startTime + e.duration) * 1000), kind, Math.round(e.duration * 1000)]);
      }
    }).observe({ entryTypes: ['gc'] });
  }

  /** Runs a periodic task, noting its name and duration when it takes STALL_TASK_MIN_US or more. */
  task<T>(name: string, fn: () => T): T {
    if (!HopTimes.enabled) return fn();
    const t0 = performance.now();
    try { return fn(); } finally {
      const us = Math.round((performance.now() - t0) * 1000);
      if (us >= STALL_TASK_MIN_US) this.note('task', name, us);
    }
  }

  /** Full policy: past limits.hopTimesRowsMax rows the rest are not recorded (a run's first rows are kept). */
  note(point: string, ...keys: Array<number | string>): void {
    if (this.recorded >= limits.hopTimesRowsMax) return;
    this.recorded++;
    this.rows.push([point, nowUs(), ...keys]);
  }

  /** appends the rows noted since the last dump */
  dump(): void {
    if (!this.file || this.rows.length === 0) return;
    const rows = this.rows;
    this.rows = [];
    appendFileSync(this.file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  }
}

export function nowUs(): number { return Math.round((performance.timeOrigin + performance.now()) * 1000); }
