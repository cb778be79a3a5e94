// One knob for how slow this machine may be. Every deadline a test waits on (a process to start,
// a condition to hold, a test or hook to finish) is its idle-machine value times CHICAGO_TEST_SLOWDOWN,
// so a busy machine makes the suite slower, never red. It scales deadlines only: what a test asserts
// (counts, orders, latency bounds it measures) is never scaled.
//   default 3 — a 2-core machine with both cores burned by other processes runs this suite about
//   2–3× slower than idle; a deadline only costs time when something is wrong.
const raw = process.env.CHICAGO_TEST_SLOWDOWN;
const parsed = raw === undefined || raw === '' ? 3 : Number(raw);
if (!Number.isFinite(parsed) || parsed < 1 || parsed > 100) {
  throw new Error(`CHICAGO_TEST_SLOWDOWN must be a number from 1 to 100, got ${JSON.stringify(raw)}`);
}

export const SLOWDOWN = parsed;

/** a deadline of `ms` on an idle machine, scaled for this one */
export const slow = (ms: number): number => Math.round(ms * SLOWDOWN);
