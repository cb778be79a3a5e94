// Large buffers a request copies and drops (a WebSocket frame, an HTTP body) count against V8's
// old-generation limit until a GC frees them, and a thread that allocates little else seldom
// scavenges: at 200 produce batches/s of 200 KB the gateway thread ran a mark-compact every
// ~200 ms (a pause of several ms each, on the thread every request passes through) to free a few
// MB of such copies. A scavenge frees them as well, at a fraction of the cost: one is requested
// once this many bytes were copied since the last (limits.youngGcAfterCopiedBytes).
import v8 from 'node:v8';
import vm from 'node:vm';
import { limits } from './limits.js';

type MinorGc = (opts: { type: 'minor' }) => void;

let gc: MinorGc | undefined | null;
let copied = 0;
let scheduled = false;

function minorGc(): MinorGc | undefined {
  if (gc === undefined) {
    try {
      // exposes gc() to contexts made from now on (a process-wide flag: workers started later see
      // a global gc() too), not to the ones running
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as MinorGc;
    } catch {
      gc = null;
    }
  }
  return gc ?? undefined;
}

/** `bytes` were copied into a buffer of their own that dies with its request. */
export function copiedShortLived(bytes: number): void {
  copied += bytes;
  if (copied < limits.youngGcAfterCopiedBytes || scheduled) return;
  copied = 0;
  const run = minorGc();
  if (!run) return;
  scheduled = true;
  // after the current batch of I/O callbacks, not inside one
  setImmediate(() => {
    scheduled = false;
    try {
      run({ type: 'minor' });
    } catch {
      gc = null; // a V8 whose gc() refuses these options: V8 schedules its own GCs, as without this
    }
  });
}

/** The semi-space a server thread gets, in MiB; 0 leaves V8's default (limits.serverSemiSpaceMb). */
export function serverSemiSpaceMb(): number {
  const raw = process.env.CHICAGO_SERVER_SEMI_SPACE_MB;
  const env = raw ? Number(raw) : NaN;
  return Number.isInteger(env) && env >= 0 ? env : limits.serverSemiSpaceMb;
}

/** A partition worker's young generation for `resourceLimits`: two semi-spaces and a large-object space of one. */
export function workerYoungGenerationMb(): number | undefined {
  const semi = serverSemiSpaceMb();
  return semi > 0 ? 3 * semi : undefined;
}
