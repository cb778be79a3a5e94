// The event-loop delay of the calling thread. By default a monitor samples it every RESOLUTION_MS:
// Node's histogram records each whole interval between its timer callbacks, so the delay is what
// exceeds the interval (an idle loop reads 0 ms, not 100). A thread that runs a periodic task
// anyway measures it there instead (fedBy): how late each run of that task came, with no timer
// of the monitor's own to wake the thread.
import { createHistogram, monitorEventLoopDelay, type IntervalHistogram, type RecordableHistogram } from 'node:perf_hooks';

const RESOLUTION_MS = 100;

export interface LoopDelayMs { p50: number; p99: number; max: number }

export class LoopDelay {
  private histogram: IntervalHistogram | RecordableHistogram;
  /** what every recorded value includes besides the delay: the monitor's interval, or nothing */
  private baseMs = RESOLUTION_MS;

  constructor() {
    const monitor = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
    monitor.enable();
    this.histogram = monitor;
  }

  /** From now on the caller records the delay (late()) on each run of its periodic task; the monitor stops. */
  fedBy(): void {
    if (this.baseMs === 0) return;
    (this.histogram as IntervalHistogram).disable();
    this.histogram = createHistogram();
    this.baseMs = 0;
  }

  /** A periodic task ran `ms` after it was due (fedBy). */
  late(ms: number): void {
    if (this.baseMs !== 0) return;
    (this.histogram as RecordableHistogram).record(Math.max(1, Math.round(ms * 1e6)));
  }

  /** The delay since the last take (or since start), in ms; the next window starts now. */
  take(): LoopDelayMs {
    const out = this.peek();
    this.histogram.reset();
    return out;
  }

  /** The delay since the last take, in ms, leaving the window open (a status read, not the scrape). */
  peek(): LoopDelayMs {
    const h = this.histogram;
    const excess = (ns: number) => (Number.isFinite(ns) && h.count > 0 ? Math.max(0, ns / 1e6 - this.baseMs) : 0);
    return { p50: excess(h.percentile(50)), p99: excess(h.percentile(99)), max: excess(h.max) };
  }
}
