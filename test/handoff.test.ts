// The leadership hand-off as pure decisions: the coordinator's (src/cluster/decide.ts
// handOffTarget: when, and to whom) and the leader's (src/actors/handoff.ts: the fence, what the
// successor must hold, the epoch it belongs to). test/sim.test.ts runs both under faults.
import { describe, expect, it } from 'vitest';
import { handOffTarget, HAND_OFF_LAG_MAX, HAND_OFF_RETRY_MS } from '../src/cluster/decide.js';
import { handOffStep, successorReady, type LeaderSide } from '../src/actors/handoff.js';
import { epoch, nodeId } from '../src/runtime/ids.js';
import type { PartitionRecord } from '../src/cluster/layout.js';

const [A, B, C] = [nodeId('a'), nodeId('b'), nodeId('c')];
const rec: PartitionRecord = { epoch: epoch(4), leader: A, replicas: [A, B, C], isr: [A, B, C] };
const planned: PartitionRecord = { epoch: epoch(5), leader: B, replicas: [B, A, C], isr: [B, A, C] };
const view = (o: Partial<Parameters<typeof handOffTarget>[3]> = {}) => ({ silent: () => false, seq: 500, matched: () => 500, failedAtMs: undefined, nowMs: 10_000, ...o });

describe('handOffTarget (coordinator side)', () => {
  it('hands a live, in-sync, close successor the next epoch', () => {
    expect(handOffTarget(rec, planned, A, view())).toBe(planned);
  });
  it('does not hand off from a node that does not lead, or to itself', () => {
    expect(handOffTarget(rec, planned, B, view())).toBeUndefined();
    expect(handOffTarget(rec, { ...planned, leader: A, epoch: epoch(4) }, A, view())).toBeUndefined();
  });
  it('never to a replica outside the in-sync set, a silent one, or one far behind', () => {
    expect(handOffTarget({ ...rec, isr: [A, C] }, planned, A, view())).toBeUndefined();
    expect(handOffTarget(rec, planned, A, view({ silent: (n) => n === B }))).toBeUndefined();
    expect(handOffTarget(rec, planned, A, view({ matched: () => 500 - HAND_OFF_LAG_MAX - 1 }))).toBeUndefined();
    expect(handOffTarget(rec, planned, A, view({ matched: () => 500 - HAND_OFF_LAG_MAX }))).toBe(planned);
  });
  it('only into a term of its own, and not right after one timed out', () => {
    expect(handOffTarget(rec, { ...planned, epoch: epoch(4) }, A, view())).toBeUndefined();
    expect(handOffTarget(rec, planned, A, view({ failedAtMs: 10_000 - HAND_OFF_RETRY_MS + 1 }))).toBeUndefined();
    expect(handOffTarget(rec, planned, A, view({ failedAtMs: 10_000 - HAND_OFF_RETRY_MS }))).toBe(planned);
  });
});

describe('handOffStep (leader side)', () => {
  const side = (o: Partial<LeaderSide> = {}): LeaderSide => ({ role: 'leader', epoch: 4, seq: 10, pending: 0, matched: () => 9, ...o });
  it('fences, waits for the successor to hold everything with nothing pending, then stays fenced', () => {
    let s = handOffStep(undefined, { type: 'start', to: B, nowMs: 0, waitMs: 150, fenceMs: 2000, leader: side() });
    expect(s.effects).toEqual([{ kind: 'fence', to: B, untilMs: 2000 }]);
    s = handOffStep(s.state, { type: 'poll', nowMs: 10, leader: side({ matched: () => 10, pending: 1 }) });
    expect(s.effects).toEqual([]);
    expect(successorReady(side({ matched: () => 10, pending: 1 }), B)).toBe(false);
    s = handOffStep(s.state, { type: 'poll', nowMs: 20, leader: side({ matched: () => 10 }) });
    expect(s.effects).toEqual([{ kind: 'ready' }]);
    s = handOffStep(s.state, { type: 'poll', nowMs: 30, leader: side({ matched: () => 10 }) });
    expect(s.effects).toEqual([]);
    expect(s.state?.ready).toBe(true);
    // the record change landed: the view makes it a follower, and the hand-off is over
    s = handOffStep(s.state, { type: 'poll', nowMs: 40, leader: side({ role: 'follower', epoch: 5 }) });
    expect(s).toEqual({ state: undefined, effects: [] });
  });
  it('gives up and takes writes again when the successor is not there in time', () => {
    let s = handOffStep(undefined, { type: 'start', to: B, nowMs: 0, waitMs: 150, fenceMs: 2000, leader: side() });
    s = handOffStep(s.state, { type: 'poll', nowMs: 150, leader: side() });
    expect(s).toEqual({ state: undefined, effects: [{ kind: 'unfence' }, { kind: 'failed', why: 'timed-out' }] });
  });
  it('belongs to the epoch it started in: a failover meanwhile ends it', () => {
    let s = handOffStep(undefined, { type: 'start', to: B, nowMs: 0, waitMs: 150, fenceMs: 2000, leader: side() });
    s = handOffStep(s.state, { type: 'poll', nowMs: 5, leader: side({ epoch: 6, matched: () => 10 }) });
    expect(s).toEqual({ state: undefined, effects: [{ kind: 'failed', why: 'not-leader' }] });
  });
  it('a follower does not start one; a release unfences', () => {
    expect(handOffStep(undefined, { type: 'start', to: B, nowMs: 0, waitMs: 150, fenceMs: 2000, leader: side({ role: 'follower' }) }).effects).toEqual([{ kind: 'failed', why: 'not-leader' }]);
    const s = handOffStep(undefined, { type: 'start', to: B, nowMs: 0, waitMs: 150, fenceMs: 2000, leader: side({ matched: () => 10 }) });
    expect(s.effects).toEqual([{ kind: 'fence', to: B, untilMs: 2000 }, { kind: 'ready' }]);
    expect(handOffStep(s.state, { type: 'release' })).toEqual({ state: undefined, effects: [{ kind: 'unfence' }] });
  });
});
