// Decisions: `decide(state, input, nowMs)` → effects. One decision per target (an address or a
// prefix): a new alert for a target already banned extends its decision instead of adding one;
// repeat offenders get longer bans (base × factor^(n−1), capped); new automatic bans are capped
// per minute (manual ones are not). No I/O: the caller stores and enforces the effects.
import assert from 'node:assert/strict';
import { LruMap } from './bucket.js';
import type { Alert } from './detect.js';
import type { Allowlist } from './ip.js';

export interface Decision {
  target: string;
  scope: 'ip' | 'prefix';
  v6: boolean;
  scenario: string;
  detail: string;
  origin: 'guard' | 'manual';
  createdMs: number;
  untilMs: number;
  /** this target's offense number within the escalation memory (1 = first) */
  offense: number;
  /** the triggering event's time, for the latency metric; absent for manual and restored ones */
  eventMs?: number;
}

export interface DecisionPolicy {
  escalation: { factor: number; maxMs: number; memoryMs: number };
  newBansPerMinuteMax: number;
  /** targets whose offense count is remembered; the least recently banned is forgotten first */
  offendersMax: number;
  /** an extension shorter than this is not worth an effect (the enforcers' timeouts are rounded to seconds) */
  extendMinMs: number;
}

export interface DecisionState {
  policy: DecisionPolicy;
  allowlist: Allowlist;
  active: Map<string, Decision>;
  offenses: LruMap<{ count: number; lastMs: number }>;
  /** times of the automatic bans of the last minute, oldest first (at most newBansPerMinuteMax) */
  recentBansMs: number[];
}

export type Effect =
  | { type: 'ban'; decision: Decision }
  | { type: 'extend'; decision: Decision }
  | { type: 'unban'; decision: Decision }
  | { type: 'dry'; alert: Alert; durationMs: number }
  | { type: 'capped'; alert: Alert }
  | { type: 'allowlisted'; target: string };

export type Input =
  | { kind: 'alert'; alert: Alert; durationMs: number }
  | { kind: 'manual'; target: string; scope: 'ip' | 'prefix'; v6: boolean; durationMs: number; reason: string }
  | { kind: 'unban'; target: string }
  /** a decision read back from the store (restart) or made elsewhere (another guard, the CLI) */
  | { kind: 'restore'; decision: Decision };

export function newDecisions(policy: DecisionPolicy, allowlist: Allowlist): DecisionState {
  assert.ok(policy.escalation.factor >= 1 && policy.newBansPerMinuteMax >= 0, 'decision policy');
  return { policy, allowlist, active: new Map(), offenses: new LruMap(policy.offendersMax), recentBansMs: [] };
}

export function decide(state: DecisionState, input: Input, nowMs: number): Effect[] {
  if (input.kind === 'unban') {
    const d = state.active.get(input.target);
    if (!d) return [];
    state.active.delete(input.target);
    return [{ type: 'unban', decision: d }];
  }
  // no decision covers an allowlisted address: not one from the CLI, another guard or the store either
  const target = input.kind === 'restore' ? input.decision.target : input.kind === 'manual' ? input.target : input.alert.target;
  if (state.allowlist.has(target)) return [{ type: 'allowlisted', target }];
  if (input.kind === 'restore') {
    const d = input.decision;
    if (d.untilMs <= nowMs) return [];
    const cur = state.active.get(d.target);
    if (cur && cur.untilMs >= d.untilMs) return [];
    state.active.set(d.target, d);
    return [{ type: cur ? 'extend' : 'ban', decision: d }];
  }
  if (input.kind === 'manual') {
    const cur = state.active.get(input.target);
    const d: Decision = {
      target: input.target, scope: input.scope, v6: input.v6, scenario: 'manual', detail: input.reason, origin: 'manual',
      createdMs: cur?.createdMs ?? nowMs, untilMs: nowMs + input.durationMs, offense: cur?.offense ?? 1,
    };
    state.active.set(d.target, d);
    return [{ type: cur ? 'extend' : 'ban', decision: d }];
  }
  const { alert } = input;
  const p = state.policy;
  const cur = state.active.get(alert.target);
  if (cur && cur.untilMs > nowMs) {
    // the same offender again while banned: longer, never a second decision
    const untilMs = nowMs + escalated(p, input.durationMs, cur.offense);
    if (untilMs - cur.untilMs < p.extendMinMs) return [];
    const d = { ...cur, untilMs, eventMs: alert.eventMs };
    state.active.set(d.target, d);
    return [{ type: 'extend', decision: d }];
  }
  if (alert.dryRun) return [{ type: 'dry', alert, durationMs: escalated(p, input.durationMs, offenseNumber(state, alert.target, nowMs)) }];
  while (state.recentBansMs.length > 0 && state.recentBansMs[0] <= nowMs - 60_000) state.recentBansMs.shift();
  if (state.recentBansMs.length >= p.newBansPerMinuteMax) return [{ type: 'capped', alert }];
  state.recentBansMs.push(nowMs);
  const offense = offenseNumber(state, alert.target, nowMs);
  state.offenses.set(alert.target, { count: offense, lastMs: nowMs });
  const d: Decision = {
    target: alert.target, scope: alert.scope, v6: alert.v6, scenario: alert.scenario, detail: alert.detail, origin: 'guard',
    createdMs: nowMs, untilMs: nowMs + escalated(p, input.durationMs, offense), offense, eventMs: alert.eventMs,
  };
  state.active.set(d.target, d);
  assert.ok(state.recentBansMs.length <= p.newBansPerMinuteMax, 'the ban cap holds');
  return [{ type: 'ban', decision: d }];
}

function offenseNumber(state: DecisionState, target: string, nowMs: number): number {
  const o = state.offenses.get(target);
  if (!o || nowMs - o.lastMs > state.policy.escalation.memoryMs) return 1;
  return o.count + 1;
}

export function escalated(p: DecisionPolicy, baseMs: number, offense: number): number {
  return Math.min(p.escalation.maxMs, Math.round(baseMs * p.escalation.factor ** Math.max(0, offense - 1)));
}

/** Drops decisions that have run out (the enforcers' own timeouts already lifted them). */
export function expire(state: DecisionState, nowMs: number): Decision[] {
  const out: Decision[] = [];
  for (const [k, d] of state.active) {
    if (d.untilMs <= nowMs) {
      state.active.delete(k);
      out.push(d);
    }
  }
  return out;
}
