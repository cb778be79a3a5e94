// A diagnostic for the cluster write path: with CHICAGO_HOP_TIMES=DIR, each thread of a node (the
// gateway's worker handles, each partition worker) records when a write passes its points, as
// wall-clock microseconds (performance.timeOrigin + now, comparable across threads and processes
// of one machine), and writes its rows to DIR/<node>-<thread>.json every few seconds.
// bench/hop-times.ts joins the files into per-hop percentiles. Off (the default) it costs one
// check of a constant per point.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { limits } from './limits.js';

const DIR = process.env.CHICAGO_HOP_TIMES;
const DUMP_EVERY_MS = 3_000;

/** a point a write passes: its name, then the keys that join it to the other threads' rows */
export type HopRow = [point: string, atUs: number, ...keys: Array<number | string>];

export class HopTimes {
  static readonly enabled = DIR !== undefined && DIR !== '';
  private rows: HopRow[] = [];
  private dumped = 0;
  private file: string | undefined;

  /** `thread` names the file once the node's id is known */
  start(node: string, thread: string): void {
    if (!HopTimes.enabled || this.file) return;
    this.file = join(DIR!, `${node}-${thread}.json`);
    setInterval(() => this.dump(), DUMP_EVERY_MS).unref();
  }

  /** Full policy: past limits.hopTimesRowsMax rows the rest are not recorded (a run's first rows are kept). */
  note(point: string, ...keys: Array<number | string>): void {
    if (this.rows.length < limits.hopTimesRowsMax) this.rows.push([point, nowUs(), ...keys]);
  }

  private dump(): void {
    if (!this.file || this.rows.length === this.dumped) return;
    this.dumped = this.rows.length;
    writeFileSync(this.file, JSON.stringify(this.rows));
  }
}

export function nowUs(): number { return Math.round((performance.timeOrigin + performance.now()) * 1000); }
