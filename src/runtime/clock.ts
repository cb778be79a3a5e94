// Time is an input: actors get `now` in each message, so a simulator can drive it.
export interface Clock {
  /** wall-clock milliseconds since the epoch */
  nowMs(): number;
  /** monotonic microseconds, for latency only */
  monoUs(): number;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monoUs: () => Number(process.hrtime.bigint() / 1000n),
};
