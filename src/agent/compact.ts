// After a burst of reading (1,000 files found at start, a backlog) the agent's heap keeps the pages it
// grew to until enough allocation brings the next full collection, which an idle agent never does: a
// few megabytes of its RSS for as long as it stays idle. Once the sources read nothing for a check
// interval after a burst, one full collection hands them back (tens of ms, at most once a minute).
import v8 from 'node:v8';
import vm from 'node:vm';
import { mallocTrim } from '../runtime/malloc-trim.js';

/** how often the agent looks whether it went idle */
export const COMPACT_CHECK_MS = 2_000;
/** the least time between two compactions */
export const COMPACT_INTERVAL_MS_MIN = 60_000;
/** bytes read since the last compaction that make one worth it when the agent goes idle */
export const COMPACT_AFTER_BYTES = 64 * 1024;

export interface CompactState { readAtLastCheck: number; readAtLastCompact: number; lastCompactMs: number }

/** Whether to collect now: idle since the last check, after a burst, and not too soon after the last one. */
export function decideCompact(st: CompactState, input: { read: number; nowMs: number }): { state: CompactState; compact: boolean } {
  const idle = input.read === st.readAtLastCheck;
  const burst = input.read - st.readAtLastCompact >= COMPACT_AFTER_BYTES;
  const due = input.nowMs - st.lastCompactMs >= COMPACT_INTERVAL_MS_MIN;
  const compact = idle && burst && due;
  return {
    state: { readAtLastCheck: input.read, readAtLastCompact: compact ? input.read : st.readAtLastCompact, lastCompactMs: compact ? input.nowMs : st.lastCompactMs },
    compact,
  };
}

/** V8's full collection, as `--expose-gc` would give it (the flag set now exposes it to a new context). */
function fullGc(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/** Checks every COMPACT_CHECK_MS; `read` is the bytes the agent's sources read so far. Returns a stop function. */
export function startIdleCompaction(read: () => number, onCompact: (ms: number) => void = () => {}, trimAfter = process.env.CHICAGO_AGENT_MALLOC_TRIM !== '0'): () => void {
  const gc = fullGc();
  // starting is a burst of its own (modules, config): the first idle check compacts
  let st: CompactState = { readAtLastCheck: read(), readAtLastCompact: read() - COMPACT_AFTER_BYTES, lastCompactMs: -Infinity };
  const timer = setInterval(() => {
    const d = decideCompact(st, { read: read(), nowMs: Date.now() });
    st = d.state;
    if (!d.compact) return;
    const t0 = performance.now();
    // the second collection hands back what the first one's compaction freed
    gc();
    gc();
    // and glibc hands back the pages those collections freed
    if (trimAfter) mallocTrim();
    onCompact(performance.now() - t0);
  }, COMPACT_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
