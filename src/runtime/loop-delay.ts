// The event-loop delay of the calling thread, sampled every RESOLUTION_MS. Node's histogram records
// each whole interval between its timer callbacks, so the delay is what exceeds the interval: an
// idle loop reads 0 ms, not 100.
import { monitorEventLoopDelay } from 'node:perf_hooks';

const RESOLUTION_MS = 100;

export interface LoopDelayMs { p50: number; p99: number; max: number }

export class LoopDelay {
  private readonly histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });

  constructor() { this.histogram.enable(); }

  /** The delay since the last take (or since start), in ms. */
  take(): LoopDelayMs {
    const h = this.histogram;
    const excess = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns / 1e6 - RESOLUTION_MS) : 0);
    const out = { p50: excess(h.percentile(50)), p99: excess(h.percentile(99)), max: excess(h.max) };
    h.reset();
    return out;
  }
}
