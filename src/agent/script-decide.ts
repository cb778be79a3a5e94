// Pure decisions of the script runner: is a command well formed, may it run now, may a schedule tick
// start a run, how output is cut into records and capped, what a finished run's status is.
// No I/O here: scripts.ts reads files, spawns processes and writes the spool.
import assert from 'node:assert/strict';

/** A command record on `agent.commands.<host>`, as `chicago agent run` writes it. */
export interface ScriptCommand {
  id: string;
  script: string;
  args: string[];
  requestedAtMs: number;
  expiresAtMs: number;
}

export const COMMAND_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;
export const SCRIPT_NAME_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
export const ARGS_MAX = 64;
export const ARG_BYTES_MAX = 4096;

/** The command in a record's value, or why it is not one. */
export function parseCommand(value: string): ScriptCommand | { error: string } {
  let o: unknown;
  try {
    o = JSON.parse(value);
  } catch {
    return { error: 'the command is not JSON' };
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return { error: 'the command is not a JSON object' };
  const c = o as Record<string, unknown>;
  if (typeof c.id !== 'string' || !COMMAND_ID_RE.test(c.id)) return { error: 'id must be 1-128 of [A-Za-z0-9._-]' };
  if (typeof c.script !== 'string' || !SCRIPT_NAME_RE.test(c.script)) return { error: 'script must be a script name ([A-Za-z0-9._-], not starting with a dot)' };
  const args = c.args ?? [];
  if (!Array.isArray(args) || args.length > ARGS_MAX || !args.every((a) => typeof a === 'string' && Buffer.byteLength(a) <= ARG_BYTES_MAX && !a.includes('\0'))) {
    return { error: `args must be at most ${ARGS_MAX} strings of at most ${ARG_BYTES_MAX} bytes without NUL` };
  }
  const requestedAtMs = typeof c.requestedAt === 'string' ? Date.parse(c.requestedAt) : NaN;
  const expiresAtMs = typeof c.expiresAt === 'string' ? Date.parse(c.expiresAt) : NaN;
  if (!Number.isFinite(requestedAtMs) || !Number.isFinite(expiresAtMs)) return { error: 'requestedAt and expiresAt must be ISO times' };
  return { id: c.id, script: c.script, args: args as string[], requestedAtMs, expiresAtMs };
}

export interface RunnerState {
  /** runs going on now, all triggers */
  running: number;
  /** schedules with a run going on now */
  busySchedules: ReadonlySet<string>;
  /** ticks skipped per schedule since its last run started */
  skipped: ReadonlyMap<string, number>;
}

export const initialRunnerState = (): RunnerState => ({ running: 0, busySchedules: new Set(), skipped: new Map() });

export type Verdict =
  | { kind: 'run' }
  /** answered with one final record, never run */
  | { kind: 'refused'; status: 'refused' | 'expired' | 'busy' | 'invalid'; reason: string };

export interface CommandContext {
  nowMs: number;
  /** whether remote commands may run now (config, or the node's token check for 'auto') */
  remote: { allowed: boolean; why: string };
  /** names that may run: the allow list and the built-ins */
  allowed: ReadonlySet<string>;
  runsMax: number;
}

/** Whether a command may run; the order of the checks is the order of the reasons a user sees. */
export function judgeCommand(state: RunnerState, cmd: ScriptCommand, ctx: CommandContext): Verdict {
  if (cmd.expiresAtMs <= ctx.nowMs) {
    return { kind: 'refused', status: 'expired', reason: `the command expired at ${new Date(cmd.expiresAtMs).toISOString()}, ${ctx.nowMs - cmd.expiresAtMs} ms before this agent read it` };
  }
  if (!ctx.remote.allowed) return { kind: 'refused', status: 'refused', reason: ctx.remote.why };
  if (!ctx.allowed.has(cmd.script)) return { kind: 'refused', status: 'refused', reason: `script ${cmd.script} is not on this agent's allow list` };
  if (state.running >= ctx.runsMax) return { kind: 'refused', status: 'busy', reason: `${state.running} runs are going on (scripts.runsMax ${ctx.runsMax}); try again later` };
  return { kind: 'run' };
}

/** A schedule's tick: starts a run, or is skipped (and counted) while the schedule's last run goes on or all run slots are taken. */
export function judgeTick(state: RunnerState, schedule: string, runsMax: number): { state: RunnerState; run: boolean; skippedBefore: number; why?: string } {
  if (state.busySchedules.has(schedule) || state.running >= runsMax) {
    const skipped = new Map(state.skipped);
    skipped.set(schedule, (skipped.get(schedule) ?? 0) + 1);
    const why = state.busySchedules.has(schedule) ? 'its previous run is still going on' : `all ${runsMax} run slots are taken`;
    return { state: { ...state, skipped }, run: false, skippedBefore: 0, why };
  }
  const skipped = new Map(state.skipped);
  const skippedBefore = skipped.get(schedule) ?? 0;
  skipped.delete(schedule);
  const busySchedules = new Set(state.busySchedules).add(schedule);
  return { state: { running: state.running + 1, busySchedules, skipped }, run: true, skippedBefore };
}

export function startRun(state: RunnerState): RunnerState {
  return { ...state, running: state.running + 1 };
}

export function endRun(state: RunnerState, schedule?: string): RunnerState {
  assert.ok(state.running > 0, 'a run ends only after it started');
  const busySchedules = new Set(state.busySchedules);
  if (schedule !== undefined) busySchedules.delete(schedule);
  return { ...state, running: state.running - 1, busySchedules };
}

/** Whether a script's bytes are the allowlisted ones; the refusal text when not. */
export function checkDigest(name: string, file: string, actual: string, expected: string): string | undefined {
  if (actual === expected) return undefined;
  return `script ${name} (${file}) has sha256 ${actual}, the allow list says ${expected}: refused (was it edited after it was allowlisted?)`;
}

// ---- output: cut into records, capped ----

export type Stream = 'stdout' | 'stderr';

export interface Chunk { stream: Stream; data: Buffer }

export interface OutputState {
  /** bytes kept (shipped) so far, both streams */
  keptBytes: number;
  /** bytes read past the cap and dropped */
  droppedBytes: number;
  /** output not yet cut into a record */
  pending: { stream: Stream; data: Buffer } | undefined;
}

export interface OutputLimits { capBytes: number; chunkBytes: number }

export const initialOutput = (): OutputState => ({ keptBytes: 0, droppedBytes: 0, pending: undefined });

/**
 * Takes bytes the script wrote: past the cap they are dropped (and counted); what is kept joins the
 * pending chunk, which is cut into records of at most chunkBytes, at the last newline when there is
 * one. A switch of stream closes the other stream's pending chunk first, so records keep the order
 * the bytes arrived in.
 */
export function takeOutput(st: OutputState, stream: Stream, data: Buffer, lim: OutputLimits): { state: OutputState; chunks: Chunk[] } {
  const room = Math.max(0, lim.capBytes - st.keptBytes);
  const kept = data.length <= room ? data : data.subarray(0, room);
  const droppedBytes = st.droppedBytes + (data.length - kept.length);
  const chunks: Chunk[] = [];
  let pending = st.pending;
  if (pending && pending.stream !== stream) {
    chunks.push(pending);
    pending = undefined;
  }
  if (kept.length > 0) {
    let buf = pending ? Buffer.concat([pending.data, kept]) : kept;
    while (buf.length >= lim.chunkBytes) {
      const nl = buf.lastIndexOf(0x0a, lim.chunkBytes - 1);
      const cut = nl >= 0 ? nl + 1 : lim.chunkBytes;
      chunks.push({ stream, data: buf.subarray(0, cut) });
      buf = buf.subarray(cut);
    }
    pending = buf.length > 0 ? { stream, data: buf } : undefined;
  }
  assert.ok(pending === undefined || pending.data.length < lim.chunkBytes, 'a pending chunk is below chunkBytes');
  return { state: { keptBytes: st.keptBytes + kept.length, droppedBytes, pending }, chunks };
}

/** Closes the pending chunk (its linger passed, or the script ended). */
export function flushOutput(st: OutputState): { state: OutputState; chunks: Chunk[] } {
  return { state: { ...st, pending: undefined }, chunks: st.pending ? [st.pending] : [] };
}

// ---- the end of a run ----

export type RunStatus = 'ok' | 'failed' | 'timeout' | 'error' | 'interrupted' | 'refused' | 'expired' | 'busy' | 'invalid';

export interface RunEnd {
  status: RunStatus;
  exitCode: number | null;
  signal: string | null;
}

/** A finished process's status: a timeout wins over how it died (it died because it was killed). */
export function runStatus(code: number | null, signal: string | null, timedOut: boolean): RunEnd {
  if (timedOut) return { status: 'timeout', exitCode: code, signal };
  return { status: code === 0 ? 'ok' : 'failed', exitCode: code, signal };
}

/** `chicago agent run`'s exit code for a final record (docs/agent.md lists them). */
export function cliExitCode(status: RunStatus, exitCode: number | null, signal: string | null, signalNumber: (s: string) => number | undefined): number {
  switch (status) {
    case 'ok': return 0;
    case 'failed':
      if (exitCode !== null) return exitCode;
      return 128 + (signal ? signalNumber(signal) ?? 0 : 0);
    case 'timeout': return 124;
    case 'expired': return 125;
    case 'refused': case 'invalid': return 126;
    case 'busy': case 'interrupted': return 75;
    case 'error': return 70;
  }
}
