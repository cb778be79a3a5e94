// Stage times of the latency paths (the agent's watch event, read, spool commit, request, answer; the
// guard's decision and nft change), logged at level trace: CLOCK_MONOTONIC in µs, the same clock in every
// process of the machine, so a bench can place a line's write, each stage and the firewall's change on one time line.

/** CLOCK_MONOTONIC now, in µs. */
export const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);
