// The processes a test file started and that may still run: killed when the file ends
// (test/helpers/scratch.ts), when the test process exits, or when it is signalled (vitest ends its
// fork workers with SIGTERM, which skips 'exit' handlers: kill the children, then die of the signal).
import type { ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();

const killLive = () => {
  for (const p of live) p.kill('SIGKILL');
};
process.once('exit', killLive);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    killLive();
    process.kill(process.pid, sig);
  });
}

/** a child whose spawn failed has no pid and nothing to kill */
const running = (p: ChildProcess) => p.pid !== undefined && p.exitCode === null && p.signalCode === null;

/** Kills `proc` with the test file (its end, an exit or a signal), through the one shared handler: a listener per child would pile up. */
export function killOnExit(proc: ChildProcess): void {
  live.add(proc);
  proc.once('close', () => live.delete(proc));
}

/** SIGKILL every child still running and wait (at most `waitMs`) until they are gone, so none writes into a directory being removed. */
export async function killChildren(waitMs: number): Promise<void> {
  const left = [...live].filter(running);
  live.clear();
  const gone = left.map((p) => new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
    if (!running(p)) resolve();
  }));
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(gone), new Promise<void>((resolve) => { timer = setTimeout(resolve, waitMs); })]);
  clearTimeout(timer);
}
