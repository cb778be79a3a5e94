// Rendezvous placement: deterministic, and it moves only what a membership change forces.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PartitionRecord } from '../src/cluster/layout.js';
import { initialRecord, movedPartitions, planPartition, planPlacement, rank, replicasFor } from '../src/cluster/placement.js';
import { type NodeId, epoch, nodeId } from '../src/runtime/ids.js';
import { murmur3, murmur3Text } from '../src/runtime/hash.js';

const idArb = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/).map(nodeId);
const nodesArb = (min: number, max: number) => fc.uniqueArray(idArb, { minLength: min, maxLength: max });

/** k distinct node ids plus one more, the joiner */
const clusterArb = fc.record({ n: fc.integer({ min: 1, max: 4 }), extra: fc.integer({ min: 0, max: 6 }) })
  .chain(({ n, extra }) => nodesArb(n + extra + 1, n + extra + 1).map((ids) => ({ n, old: ids.slice(1), joiner: ids[0] })));

const targets = (P: number, live: NodeId[], n: number) => Array.from({ length: P }, (_, p) => ({ replicas: replicasFor(p, live, n) }));

describe('rank', () => {
  it('is deterministic and ignores the order of its input', () => {
    fc.assert(fc.property(fc.nat(100_000), nodesArb(1, 12), fc.integer(), (p, nodes, salt) => {
      const shuffled = [...nodes].sort((a, b) => ((a.charCodeAt(0) ^ salt) & 7) - ((b.charCodeAt(0) ^ salt) & 7) || (a < b ? 1 : -1));
      const r = rank(p, nodes);
      expect(rank(p, shuffled)).toEqual(r);
      expect(rank(p, nodes)).toEqual(r);
      expect([...r].sort()).toEqual([...nodes].sort());
    }));
  });

  it('ranks each pair of nodes the same way whatever else is in the set', () => {
    fc.assert(fc.property(fc.nat(10_000), nodesArb(3, 10), (p, nodes) => {
      const full = rank(p, nodes);
      const sub = rank(p, nodes.slice(1));
      expect(sub).toEqual(full.filter((x) => x !== nodes[0]));
    }));
  });

  it('scores the UTF-8 bytes of `partition\\0nodeId` for any id: non-ASCII, or longer than the buffer scores are encoded into', () => {
    const utf8 = new TextEncoder();
    const score = (p: number, id: string) => murmur3(utf8.encode(`${p}\0${id}`));
    const anyId = fc.oneof(fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }), fc.string({ minLength: 250, maxLength: 400, unit: 'grapheme' }));
    fc.assert(fc.property(fc.nat(100_000), fc.uniqueArray(anyId, { minLength: 2, maxLength: 6 }), (p, ids) => {
      const want = [...ids].sort((a, b) => score(p, b) - score(p, a) || (a < b ? -1 : a > b ? 1 : 0));
      expect(rank(p, ids.map(nodeId))).toEqual(want);
    }));
  });

  it('is pinned: the hash of `partition\\0nodeId` must never change', () => {
    expect(rank(0, ['n1', 'n2', 'n3', 'n4'].map(nodeId))).toEqual(['n1', 'n3', 'n4', 'n2']);
    expect(replicasFor(7, ['a', 'b', 'c', 'd', 'e'].map(nodeId), 3)).toEqual(['a', 'c', 'e']);
  });

  it('rejects duplicate ids and bad arguments', () => {
    expect(() => rank(0, ['a', 'a'].map(nodeId))).toThrow(/duplicate/);
    expect(() => rank(-1, [nodeId('a')])).toThrow(/partition/);
    expect(() => replicasFor(0, [nodeId('a')], 0)).toThrow(/replication factor/);
  });
});

describe('minimal disruption', () => {
  it('a joining node takes a slot only where it outranks a holder, and displaces exactly that one', () => {
    fc.assert(fc.property(clusterArb, fc.integer({ min: 1, max: 200 }), ({ n, old, joiner }, P) => {
      const live = [...old, joiner];
      const before = targets(P, old, n);
      const after = targets(P, live, n);
      const m = movedPartitions(before, after);
      let expected = 0;
      for (let p = 0; p < P; p++) {
        const b = before[p].replicas;
        const a = after[p].replicas;
        const added = a.filter((x) => !b.includes(x));
        const removed = b.filter((x) => !a.includes(x));
        if (!a.includes(joiner)) {
          expect(a).toEqual(b);
          continue;
        }
        expected++;
        expect(added).toEqual([joiner]);
        // With fewer than n nodes before, the joiner fills a free slot; otherwise it evicts the
        // lowest-ranked holder, which it outranks.
        if (old.length < n) expect(removed).toEqual([]);
        else {
          expect(removed).toEqual([b[b.length - 1]]);
          const r = rank(p, live);
          expect(r.indexOf(joiner)).toBeLessThan(r.indexOf(removed[0]));
        }
      }
      expect(m.slotsAdded).toBe(expected);
      expect(m.partitions).toBe(expected);
    }));
  });

  it('moves about N·P/(k+1) slots when one node joins k', () => {
    const P = 2048;
    for (const [k, n] of [[3, 3], [4, 3], [6, 3], [9, 2], [5, 1]]) {
      const old = Array.from({ length: k }, (_, i) => nodeId(`node-${i + 1}`));
      const live = [...old, nodeId(`node-${k + 1}`)];
      const m = movedPartitions(targets(P, old, n), targets(P, live, n), () => 1000);
      const ideal = (n * P) / (k + 1);
      expect(Math.abs(m.slotsAdded - ideal) / ideal, `k=${k} n=${n}: moved ${m.slotsAdded}, ideal ${ideal}`).toBeLessThan(0.12);
      expect(m.slotsRemoved).toBe(m.slotsAdded);
      expect(m.bytes).toBe(m.slotsAdded * 1000);
    }
  });

  it('a leaving node frees only its own slots, each taken by the next-ranked node', () => {
    fc.assert(fc.property(clusterArb, fc.integer({ min: 1, max: 200 }), ({ n, old, joiner }, P) => {
      const before = [...old, joiner];
      const gone = before[P % before.length];
      const after = before.filter((x) => x !== gone);
      const b = targets(P, before, n);
      const a = targets(P, after, n);
      for (let p = 0; p < P; p++) {
        if (!b[p].replicas.includes(gone)) {
          expect(a[p].replicas).toEqual(b[p].replicas);
          continue;
        }
        expect(b[p].replicas.filter((x) => !a[p].replicas.includes(x))).toEqual([gone]);
        const added = a[p].replicas.filter((x) => !b[p].replicas.includes(x));
        expect(added.length).toBe(after.length >= n ? 1 : 0);
      }
      const m = movedPartitions(b, a);
      expect(m.slotsRemoved).toBe(b.filter((x) => x.replicas.includes(gone)).length);
    }));
  });
});

describe('planPlacement', () => {
  const inSync = (r: PartitionRecord): PartitionRecord => ({ ...r, isr: [...r.replicas] });

  it('reaches the target in two steps on a join, keeping the old copies until the new ones are in sync', () => {
    fc.assert(fc.property(clusterArb, fc.integer({ min: 1, max: 64 }), ({ n, old, joiner }, P) => {
      const live = [...old, joiner];
      const start = planPlacement(P, old, n, []);
      for (const [p, r] of start.entries()) expect(r).toEqual(initialRecord(p, old, n));

      const moving = planPlacement(P, live, n, start);
      for (let p = 0; p < P; p++) {
        const target = replicasFor(p, live, n);
        const [was, now] = [start[p], moving[p]];
        if (!target.includes(joiner)) { expect(now).toBe(was); continue; }
        // Every old in-sync copy is still there and still the isr; the leader has not moved.
        expect(now.replicas.slice(0, target.length)).toEqual(target);
        expect(now.isr).toEqual(now.replicas.filter((x) => was.isr.includes(x)));
        expect(now.leader).toBe(was.leader);
        expect(now.epoch).toBe(was.epoch);
      }

      // The leader adds the newcomers to the isr once they caught up; then the move completes, in
      // one step, or two where leadership moves off a replica it drops: never both at once.
      const caught = moving.map(inSync);
      const handedOver = planPlacement(P, live, n, caught);
      for (let p = 0; p < P; p++) {
        const leaderDropped = !handedOver[p].replicas.includes(caught[p].leader);
        expect(leaderDropped, `partition ${p}: leadership moved and its old replica dropped in one step`).toBe(false);
        if (handedOver[p].leader !== caught[p].leader) expect(handedOver[p].isr).toContain(caught[p].leader);
      }
      const done = planPlacement(P, live, n, handedOver);
      for (let p = 0; p < P; p++) {
        const target = replicasFor(p, live, n);
        expect(done[p].replicas).toEqual(target);
        expect(done[p].isr).toEqual(target);
        expect(done[p].leader).toBe(target[0]);
        expect(done[p].epoch).toBe(done[p].leader === start[p].leader ? start[p].epoch : start[p].epoch + 1);
      }
      // A fixpoint: nothing more to do.
      const again = planPlacement(P, live, n, done);
      for (let p = 0; p < P; p++) expect(again[p]).toBe(done[p]);
      expect(movedPartitions(start, done).slotsAdded).toBe(movedPartitions(targets(P, old, n), targets(P, live, n)).slotsAdded);
    }));
  });

  it('drops a dead node at once and moves leadership to the next in-sync replica with epoch + 1', () => {
    fc.assert(fc.property(clusterArb, fc.integer({ min: 1, max: 64 }), ({ n, old, joiner }, P) => {
      const all = [...old, joiner];
      const start = planPlacement(P, all, n, []);
      const live = all.filter((x) => x !== joiner);
      const next = planPlacement(P, live, n, start);
      for (let p = 0; p < P; p++) {
        const was = start[p];
        if (!was.replicas.includes(joiner)) continue;
        if (was.isr.length === 1) { expect(next[p]).toBe(was); continue; } // nothing live holds it
        expect(next[p].isr).not.toContain(joiner);
        expect(next[p].replicas).not.toContain(joiner);
        expect(next[p].epoch).toBe(was.leader === joiner ? was.epoch + 1 : was.epoch);
        expect(next[p].leader).not.toBe(joiner);
        expect(next[p].replicas.slice(0, Math.min(n, live.length))).toEqual(replicasFor(p, live, n));
      }
    }));
  });

  it('never lowers an epoch and never leaves the leader outside the isr', () => {
    const stepArb = fc.tuple(fc.nat(7), fc.boolean(), fc.boolean());
    fc.assert(fc.property(nodesArb(1, 8), fc.array(stepArb, { maxLength: 12 }), fc.integer({ min: 1, max: 3 }), (nodes, steps, n) => {
      let live = [...nodes];
      let rec = planPartition(3, live, n, undefined);
      for (const [i, join, caughtUp] of steps) {
        const x = nodes[i % nodes.length];
        live = join ? [...new Set([...live, x])] : live.filter((y) => y !== x || live.length === 1);
        const next = planPartition(3, live, n, rec);
        expect(next.epoch).toBeGreaterThanOrEqual(rec.epoch);
        expect(next.isr).toContain(next.leader);
        rec = caughtUp ? inSync(next) : next;
      }
    }));
  });

  it('rejects a broken current record', () => {
    const bad = { epoch: epoch(1), leader: nodeId('x'), replicas: [nodeId('a')], isr: [nodeId('a')] };
    expect(() => planPartition(0, [nodeId('a')], 1, bad)).toThrow(/leader x must be in the isr/);
  });
});

describe('murmur3Text', () => {
  it('hashes the UTF-8 bytes of any string, around and past its buffer (lone surrogates as U+FFFD)', () => {
    const pieces = ['a', 'é', '€', '😀', '\ud800', '\udfff'];
    for (const n of [0, 1, 1364, 1365, 1366, 1400, 5000]) {
      for (const p of pieces) {
        const s = 'x'.repeat(Math.max(0, n - p.length)) + p;
        expect(murmur3Text(s), `${n} ${JSON.stringify(p)}`).toBe(murmur3(Buffer.from(s, 'utf8')));
      }
    }
  });
});
