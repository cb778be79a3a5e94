// Stage times of the latency path (a line's watch event, read, spool commit, request, answer), logged
// at level trace: CLOCK_MONOTONIC in µs, the same clock in every process of the machine, so a bench
// can place a line's write, the agent's stages and the firewall's change on one time line.

/** CLOCK_MONOTONIC now, in µs. */
export const nowUs = (): number => Number(process.hrtime.bigint() / 1000n);
