// The pure group decisions (src/node/groups.ts): assignment properties, and the membership state
// machine's ownership rule (a partition changes owner only through "no owner").
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { assign, commitRefusal, emptyGroup, partitionKey, step, type GroupEvent, type GroupState, type PartitionKey } from '../src/node/groups.js';
import { memberId, type MemberId } from '../src/runtime/ids.js';
import { Packr } from 'msgpackr';
import { parseClientFrame } from '../src/protocol/frames.js';

const parts = (n: number, topic = 't') => Array.from({ length: n }, (_, i) => partitionKey(topic, i));
const m = (s: string) => memberId(s);

describe('assign', () => {
  const arb = fc.record({
    members: fc.uniqueArray(fc.stringMatching(/^[a-z]{1,4}$/), { minLength: 1, maxLength: 12 }),
    partitions: fc.integer({ min: 0, max: 64 }),
    previousSeed: fc.array(fc.tuple(fc.stringMatching(/^[a-z]{1,4}$/), fc.integer({ min: 0, max: 80 })), { maxLength: 100 }),
  });

  it('is disjoint, complete, balanced and sticky', () => {
    fc.assert(fc.property(arb, ({ members, partitions, previousSeed }) => {
      const ps = parts(partitions);
      const previous = new Map<MemberId, PartitionKey[]>();
      for (const [who, p] of previousSeed) {
        const k = partitionKey('t', p);
        if ([...previous.values()].some((l) => l.includes(k))) continue; // a previous assignment is disjoint too
        previous.set(m(who), [...(previous.get(m(who)) ?? []), k]);
      }
      const out = assign(members.map(m), ps, previous);
      const all = [...out.values()].flat();
      expect(new Set(all).size).toBe(all.length); // disjoint
      expect([...all].sort()).toEqual([...ps].sort()); // complete
      const sizes = [...out.values()].map((l) => l.length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1); // balanced
      const floor = Math.floor(ps.length / members.length);
      for (const who of members) {
        const before = (previous.get(m(who)) ?? []).filter((p) => ps.includes(p));
        const kept = out.get(m(who))!.filter((p) => before.includes(p)).length;
        expect(kept).toBeGreaterThanOrEqual(Math.min(before.length, floor)); // sticky
      }
    }), { numRuns: 500 });
  });

  it('moves only what it must when a member joins or leaves', () => {
    const three = assign([m('a'), m('b'), m('c')], parts(12), new Map());
    const four = assign([m('a'), m('b'), m('c'), m('d')], parts(12), three);
    const moved = parts(12).filter((p) => ![...four].some(([who, l]) => l.includes(p) && three.get(who)?.includes(p)));
    expect(moved.length).toBe(3); // d's share, nothing else
    const two = assign([m('a'), m('c')], parts(12), three);
    for (const who of [m('a'), m('c')]) for (const p of three.get(who)!) expect(two.get(who)).toContain(p);
  });
});

describe('membership', () => {
  const join = (s: GroupState, who: string, nowMs: number, n = 6) => step(s, { kind: 'join', member: m(who), topics: ['t'], partitions: parts(n), sessionTimeoutMs: 300, nowMs });
  const hb = (s: GroupState, who: string, nowMs: number, generation = s.generation) => step(s, { kind: 'heartbeat', member: m(who), generation, nowMs });
  const tick = (s: GroupState, nowMs: number, busy: PartitionKey[] = []) => step(s, { kind: 'tick', nowMs, busy: new Set(busy) });
  const owners = (s: GroupState) => new Map([...s.owner]);

  it('a heartbeat carrying more partitions (topic alter) starts a generation that assigns them', () => {
    let s = join(join(emptyGroup(100, 0), 'a', 0, 2).state, 'b', 1, 2).state;
    s = hb(hb(s, 'a', 2).state, 'b', 2).state;
    const g = s.generation;
    expect(s.owner.size).toBe(2);
    // the same partitions: nothing changes
    expect(step(s, { kind: 'heartbeat', member: m('a'), generation: g, nowMs: 3, partitions: parts(2) }).state.generation).toBe(g);
    const r = step(s, { kind: 'heartbeat', member: m('a'), generation: g, nowMs: 3, partitions: parts(4) });
    expect(r.reply).toMatchObject({ ok: true, view: { renewed: false } });
    s = r.state;
    expect(s.generation).toBeGreaterThan(g);
    expect(s.partitions).toEqual(parts(4));
    // the new partitions had no owner: granted at once, without taking any from their owner
    expect(s.owner.size).toBe(4);
    expect(s.owner.get(partitionKey('t', 0))).toBeDefined();
    expect([...s.target.values()].map((l) => l.length).sort()).toEqual([2, 2]);
  });

  it('hands a partition over only after its owner released it', () => {
    let s = join(emptyGroup(100, 0), 'a', 0).state;
    expect(s.owner.size).toBe(6);
    const g1 = s.generation;
    s = join(s, 'b', 10).state;
    expect(s.generation).toBeGreaterThan(g1);
    // b's share still belongs to a: nobody reads it twice
    expect([...s.owner.values()].every((o) => o === 'a')).toBe(true);
    const stale = commitRefusal(s, m('a'), g1, partitionKey('t', 0));
    expect(stale?.code).toBe('FENCED');
    // a's heartbeat with the old generation: told to give up 3 partitions, still owns them
    const r = hb(s, 'a', 20, g1);
    expect(r.reply).toMatchObject({ ok: true, view: { renewed: false } });
    expect(r.reply!.ok && r.reply!.view.assigned.length).toBe(3);
    s = r.state;
    expect(s.owner.size).toBe(6);
    // a acknowledges with the current generation: released, then granted to b
    s = hb(s, 'a', 30).state;
    const counts = [...s.owner.values()].reduce((c, o) => c.set(o, (c.get(o) ?? 0) + 1), new Map<string, number>());
    expect(counts).toEqual(new Map([['a', 3], ['b', 3]]));
  });

  it('expires a silent member and grants its partitions, not while a commit of one is in flight', () => {
    let s = join(emptyGroup(0, 0), 'a', 0).state;
    s = join(s, 'b', 0).state;
    s = hb(s, 'a', 0).state;
    s = hb(s, 'b', 0).state;
    const bs = [...s.owner].filter(([, o]) => o === 'b').map(([p]) => p);
    expect(bs.length).toBe(3);
    s = hb(s, 'a', 250).state;
    let r = tick(s, 301, [bs[0]]);
    expect(r.effects).toContainEqual({ kind: 'removed', member: 'b', reason: 'expired' });
    s = r.state;
    expect(s.owner.has(bs[0])).toBe(false); // busy: not granted yet
    expect(s.owner.get(bs[1])).toBe('a');
    r = tick(s, 320);
    expect(r.state.owner.get(bs[0])).toBe('a');
  });

  it('leave releases at once; a new coordinator grants nothing during its hold', () => {
    let s = join(emptyGroup(0, 1000), 'a', 800).state;
    expect(s.owner.size).toBe(0);
    s = tick(s, 999).state;
    expect(s.owner.size).toBe(0);
    s = join(s, 'b', 999).state;
    s = tick(s, 1000).state;
    expect(s.owner.size).toBe(6);
    s = step(s, { kind: 'leave', member: m('b'), nowMs: 1001 }).state;
    expect([...s.owner.values()].every((o) => o === 'a')).toBe(true);
    expect(s.owner.size).toBe(6);
  });

  it('never gives one partition two owners, whatever the events (property)', () => {
    const who = fc.constantFrom('a', 'b', 'c', 'd');
    const ev = fc.oneof(
      fc.record({ kind: fc.constant('join' as const), who }),
      fc.record({ kind: fc.constant('heartbeat' as const), who, stale: fc.boolean() }),
      fc.record({ kind: fc.constant('leave' as const), who }),
      fc.record({ kind: fc.constant('tick' as const), busy: fc.integer({ min: 0, max: 7 }) }),
    );
    fc.assert(fc.property(fc.array(fc.tuple(ev, fc.integer({ min: 0, max: 200 })), { maxLength: 80 }), (events) => {
      let s = emptyGroup(0, 0);
      let now = 0;
      // what each member was last told it may read: at most one member may believe it reads a partition
      const reading = new Map<string, Set<PartitionKey>>();
      for (const [e, dt] of events) {
        now += dt;
        let event: GroupEvent;
        if (e.kind === 'join') event = { kind: 'join', member: m(e.who), topics: ['t'], partitions: parts(8), sessionTimeoutMs: 300, nowMs: now };
        else if (e.kind === 'heartbeat') event = { kind: 'heartbeat', member: m(e.who), generation: e.stale ? s.generation - 1 : s.generation, nowMs: now };
        else if (e.kind === 'leave') event = { kind: 'leave', member: m(e.who), nowMs: now };
        else event = { kind: 'tick', nowMs: now, busy: new Set([partitionKey('t', e.busy)]) };
        const r = step(s, event);
        s = r.state;
        for (const x of r.effects) if (x.kind === 'removed') reading.delete(x.member);
        if (r.reply?.ok) reading.set(r.reply.view.member, new Set(r.reply.view.assigned));
        if (event.kind === 'leave' && r.reply?.ok) reading.delete(event.member);
        // a member's belief is a subset of what it owns
        for (const [mem, set] of reading) for (const p of set) {
          if (s.owner.get(p) !== mem) {
            // it is being revoked: it still owns it until it acknowledges, so another owner is impossible
            expect(s.owner.get(p) === undefined || s.owner.get(p) === mem).toBe(true);
          }
        }
        const owned = [...s.owner.values()];
        for (const o of owned) expect(s.members.has(o)).toBe(true);
      }
    }), { numRuns: 300 });
  });
});

describe('membership frames', () => {
  const packr = new Packr({ useRecords: false });
  const parse = (o: Record<string, unknown>) => parseClientFrame(packr.pack(o));
  it('validate join, heartbeat and fenced commit', () => {
    expect(parse({ op: 'join', id: 1, group: 'g', topics: ['t'], sessionTimeoutMs: 500 })).toMatchObject({ ok: true, frame: { op: 'join', topics: ['t'], sessionTimeoutMs: 500 } });
    expect(parse({ op: 'join', id: 1, group: 'g', topics: [] })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(parse({ op: 'join', id: 1, group: 'g', topics: ['t'], sessionTimeoutMs: 100 })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(parse({ op: 'heartbeat', id: 2, group: 'g', member: 'm-1', generation: 7 })).toMatchObject({ ok: true, frame: { generation: 7 } });
    expect(parse({ op: 'heartbeat', id: 2, group: 'g', member: 'a b', generation: 7 })).toMatchObject({ ok: false, error: { code: 'INVALID_NAME' } });
    expect(parse({ op: 'commit', id: 3, group: 'g', topic: 't', partition: 0, offset: 5, member: 'm' })).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(parse({ op: 'commit', id: 3, group: 'g', topic: 't', partition: 0, offset: 5, member: 'm', generation: 2 })).toMatchObject({ ok: true, frame: { member: 'm', generation: 2 } });
  });
});
