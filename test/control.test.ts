// The controller's round, stand-ins, and the failover and shedding proposals as pure functions of
// the records, the members and this node's perception (src/cluster/placement.ts, decide.ts):
// cluster.ts applies them by CAS, and test/sim drives the same functions.
import { describe, expect, it } from 'vitest';
import type { PartitionRecord } from '../src/cluster/layout.js';
import { controlRound, plannedRecord, rank, replicasFor, withStandIns, MOVES_AT_ONCE, type PlacementInputs } from '../src/cluster/placement.js';
import { failoverProposal, shedProposal, type Perception } from '../src/cluster/decide.js';
import { epoch, nodeId, type NodeId } from '../src/runtime/ids.js';

const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map(nodeId);
const all = [a, b, c, d, e];

function inputs(silent: NodeId[] = [], live: NodeId[] = all, leaving: NodeId[] = []): PlacementInputs {
  const s = new Set(silent);
  return { live, leaving, silent: s, healthy: live.filter((n) => !s.has(n)) };
}
const rec = (leader: NodeId, replicas: NodeId[], isr: NodeId[] = replicas, ep = 3): PartitionRecord => ({ epoch: epoch(ep), leader, replicas, isr });
/** the final record of partition p under placement over `live`: nothing left to do */
const settled = (p: number, n: number, live: NodeId[] = all) => {
  const t = replicasFor(p, live, n);
  return rec(t[0], t);
};
const see = (silent: NodeId[], positions: Record<string, [number, number]> = {}): Perception => ({
  alive: (n) => !silent.includes(n),
  positionOf: (n) => positions[n] ?? [10, 0],
});

describe('the controller round (placement.ts controlRound)', () => {
  it('is run by the lowest healthy node only', () => {
    const records = [{ partition: 0, record: rec(a, [a, b, c, d, e], [a]) }];
    const changes = (self: NodeId, silent: NodeId[] = []) => controlRound(records, inputs(silent), 3, self);
    expect(changes(a).length).toBe(1);
    expect(changes(b)).toEqual([]);
    expect(changes(b, [a]).length).toBe(1); // a suspected: b is the lowest healthy node
    expect(controlRound(records, inputs([], []), 3, a)).toEqual([]);
  });

  it('proposes nothing for partitions already placed', () => {
    const records = Array.from({ length: 16 }, (_, p) => ({ partition: p, record: settled(p, 3) }));
    expect(controlRound(records, inputs(), 3, a)).toEqual([]);
  });

  it('never moves leadership: a live leader hands it over, failover replaces a silent one', () => {
    // every target replica in sync, led by one the target drops: placement moves leadership
    const p = 5;
    const t = replicasFor(p, all, 3);
    const off = all.find((n) => !t.includes(n))!;
    const record = rec(off, [...t, off]);
    const planned = plannedRecord(p, record, inputs(), 3);
    expect(planned.leader).toBe(t[0]);
    expect(planned.epoch).toBe(record.epoch + 1);
    const asController = (silent: NodeId[]) => controlRound([{ partition: p, record }], inputs(silent), 3, all.filter((n) => !silent.includes(n))[0]);
    expect(asController([])).toEqual([]); // its leader hands it over (decide.ts handOffTarget)
    // silent: an in-sync replica may hold a partial copy (an install under way), which failover
    // would not elect; the controller leaves it to failover
    expect(asController([off])).toEqual([]);
    const next = failoverProposal(p, record, t[0], see([off]), inputs([off]), 3);
    expect(next?.leader).toBe(t[0]);
    expect(failoverProposal(p, record, t[0], see([off], { [t[0]]: [10, 1] }), inputs([off]), 3)).toBeUndefined(); // its copy is incomplete
  });

  it(`starts at most ${MOVES_AT_ONCE} move at once, but never holds back a stand-in`, () => {
    // two partitions whose target lacks node e, with a node that joined: both moves start, throttled to one
    const four = [a, b, c, d];
    const ps = Array.from({ length: 64 }, (_, p) => p).filter((p) => replicasFor(p, all, 2).includes(e)).slice(0, 2);
    expect(ps).toHaveLength(2);
    const records = ps.map((p) => ({ partition: p, record: settled(p, 2, four) }));
    const first = controlRound(records, inputs(), 2, a);
    expect(first.map((x) => x.partition)).toEqual([ps[0]]);
    expect(first[0].next.replicas).toContain(e);
    expect(first[0].next.isr).not.toContain(e);
    // one moving already: the other waits
    const moving = [{ partition: ps[0], record: first[0].next }, records[1]];
    expect(controlRound(moving, inputs(), 2, a).map((x) => x.partition)).not.toContain(ps[1]);
    // a replica of the waiting one falls silent: its stand-in comes anyway
    const silent = records[1].record.replicas.find((n) => n !== a)!;
    const withSilent = controlRound(moving, inputs([silent]), 2, a).find((x) => x.partition === ps[1]);
    expect(withSilent?.next.replicas).toContain(silent); // the silent replica keeps its place
    expect(withSilent!.next.replicas.filter((n) => n !== silent).length).toBeGreaterThanOrEqual(2);
  });
});

describe('stand-ins (placement.ts withStandIns)', () => {
  it('adds healthy nodes in rank order until N are reachable, keeping the silent replica and earlier stand-ins', () => {
    const p = 9;
    const current = settled(p, 3);
    const [x] = current.replicas;
    const healthy = all.filter((n) => n !== x);
    const next = withStandIns(p, current, current, healthy, new Set([x]), 3);
    const spare = rank(p, healthy).find((n) => !current.replicas.includes(n))!;
    expect(next.replicas).toEqual([...current.replicas, spare]);
    expect(next.isr).toEqual(current.isr);
    // the stand-in stays while the replica is silent, whatever placement plans
    expect(withStandIns(p, current, next, healthy, new Set([x]), 3).replicas).toEqual(next.replicas);
    // nothing silent, or enough reachable: the plan as it is
    expect(withStandIns(p, current, next, all, new Set(), 3)).toBe(current);
    expect(withStandIns(p, next, next, healthy, new Set([x]), 3)).toBe(next);
  });
});

describe('failover and shedding proposals (decide.ts)', () => {
  it('the furthest in-sync follower takes over with the next epoch and a stand-in for the silent leader', () => {
    const p = 2;
    const r = rec(a, [a, b, c], [a, b, c]);
    const pos = { b: [12, 0] as [number, number], c: [10, 0] as [number, number] };
    expect(failoverProposal(p, r, c, see([a], pos), inputs([a]), 3)).toBeUndefined(); // b is ahead
    const next = failoverProposal(p, r, b, see([a], pos), inputs([a]), 3)!;
    expect(next.leader).toBe(b);
    expect(next.epoch).toBe(r.epoch + 1);
    expect(next.isr).toEqual([b, c]);
    expect(next.replicas.slice(0, 3)).toEqual([a, b, c]);
    expect(next.replicas).toHaveLength(4);
    expect([d, e]).toContain(next.replicas[3]);
    // the leader is alive: nothing to propose
    expect(failoverProposal(p, r, b, see([], pos), inputs(), 3)).toBeUndefined();
    // no healthy node outside the set: no stand-in
    expect(failoverProposal(p, r, b, see([a], pos), inputs([a], [a, b, c]), 3)!.replicas).toEqual([a, b, c]);
  });

  it('a leader sheds its silent followers with stand-ins in the same record, and only a leader does', () => {
    const p = 4;
    const r = rec(a, [a, b, c], [a, b, c]);
    const out = shedProposal(p, r, a, see([c]), inputs([c]), 3)!;
    expect(out.shed).toEqual([c]);
    expect(out.next.isr).toEqual([a, b]);
    expect(out.next.epoch).toBe(r.epoch);
    expect(out.next.replicas.slice(0, 3)).toEqual([a, b, c]);
    expect(out.next.replicas).toHaveLength(4);
    expect(shedProposal(p, r, b, see([c]), inputs([c]), 3)).toBeUndefined();
    expect(shedProposal(p, r, a, see([]), inputs(), 3)).toBeUndefined();
  });
});
