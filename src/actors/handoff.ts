// A leader's side of a planned leadership hand-off, as a pure transition: the worker runs it over
// its replica and the wall clock, test/sim runs it over the simulated ones. The coordinator's side
// (whether to hand off, and to whom) is src/cluster/decide.ts `handOffTarget`.
//
// The leader fences itself (refuses writes, which the routing node retries at the new leader)
// until its successor holds every entry it has and no write of its waits for copies; then the
// record change may land. The hand-off belongs to the epoch it started in: a view that ends that
// term (a failover, a newer record) ends it too, so a fence never outlives the leadership it guards.
import assert from 'node:assert/strict';
import type { NodeId } from '../runtime/ids.js';
import type { Replica } from './replica.js';

/** what the hand-off reads of the leading replica */
export interface LeaderSide {
  role: string;
  epoch: number;
  seq: number;
  /** writes applied here that wait for more copies */
  pending: number;
  /** the highest seq `n` acknowledged; -1 for none */
  matched(n: NodeId): number;
}

/** What a hand-off reads of a replica. */
export function leaderSide(r: Replica): LeaderSide {
  return { role: r.role, epoch: r.state.epoch, seq: r.state.seq, pending: r.pending.length, matched: (n) => r.matched.get(n) ?? -1 };
}

/**
 * May a fenced leader hand its leadership to `to` now? Once `to` holds every entry it has and no
 * write waits for its copies: as a follower it learns of its pending writes' confirmation only
 * while it stays in the replica set, and a move drops it right after (they would end
 * OUTCOME_UNKNOWN though its successor confirms them).
 */
export function successorReady(l: LeaderSide, to: NodeId): boolean {
  return l.role === 'leader' && l.matched(to) >= l.seq && l.pending === 0;
}

export interface HandOff {
  to: NodeId;
  /** the term it hands over */
  epoch: number;
  /** waiting for the successor until then; ready once it holds everything */
  waitUntilMs: number;
  /** the fence's end: past it the leader takes writes again even if the record never changed */
  fenceUntilMs: number;
  ready: boolean;
}

export type HandOffInput =
  | { type: 'start'; to: NodeId; nowMs: number; waitMs: number; fenceMs: number; leader: LeaderSide }
  /** look again (an ack arrived, time passed) */
  | { type: 'poll'; nowMs: number; leader: LeaderSide }
  /** the record change it was for did not happen */
  | { type: 'release' };

export type HandOffEffect =
  /** the replica refuses writes until `untilMs` (replica.ts `fence`) */
  | { kind: 'fence'; to: NodeId; untilMs: number }
  | { kind: 'unfence' }
  /** the successor holds everything: the record change may go now; the fence stays up until it lands */
  | { kind: 'ready' }
  /** it gave up: the successor did not catch up in time, or the term it handed over ended */
  | { kind: 'failed'; why: 'not-leader' | 'timed-out' };

export interface HandOffStep { state: HandOff | undefined; effects: HandOffEffect[] }

export function handOffStep(state: HandOff | undefined, m: HandOffInput): HandOffStep {
  switch (m.type) {
    case 'start': {
      if (m.leader.role !== 'leader') return { state, effects: [{ kind: 'failed', why: 'not-leader' }] };
      assert.ok(m.fenceMs >= m.waitMs, 'a hand-off fence lasts at least as long as its wait');
      const next: HandOff = { to: m.to, epoch: m.leader.epoch, waitUntilMs: m.nowMs + m.waitMs, fenceUntilMs: m.nowMs + m.fenceMs, ready: false };
      const effects: HandOffEffect[] = [{ kind: 'fence', to: m.to, untilMs: next.fenceUntilMs }];
      const polled = handOffStep(next, { type: 'poll', nowMs: m.nowMs, leader: m.leader });
      return { state: polled.state, effects: [...effects, ...polled.effects] };
    }
    case 'poll': {
      if (!state) return { state, effects: [] };
      const l = m.leader;
      // a newer term: the fence went with the leadership it guarded (replica.ts adoptView)
      const ended = l.role !== 'leader' || l.epoch !== state.epoch;
      if (state.ready) return { state: ended ? undefined : state, effects: [] };
      if (ended) return { state: undefined, effects: [{ kind: 'failed', why: 'not-leader' }] };
      if (successorReady(l, state.to)) return { state: { ...state, ready: true }, effects: [{ kind: 'ready' }] };
      if (m.nowMs >= state.waitUntilMs) return { state: undefined, effects: [{ kind: 'unfence' }, { kind: 'failed', why: 'timed-out' }] };
      return { state, effects: [] };
    }
    case 'release':
      return { state: undefined, effects: [{ kind: 'unfence' }] };
  }
}
