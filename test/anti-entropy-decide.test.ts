// Anti-entropy's decisions (src/actors/anti-entropy.ts), pure: when a follower compares a leader's
// digests, and what a difference leads to. test/anti-entropy.test.ts proves the same on a real
// cluster; test/sim.test.ts under faults (the planted `digest-blind` must be caught there).
import { describe, expect, it } from 'vitest';
import { compareStep, digestChecks, digestSlices, shouldDigest, type ReplicaSide } from '../src/actors/anti-entropy.js';
import type { DigestCheck, DigestReply } from '../src/actors/messages.js';
import { nodeId } from '../src/runtime/ids.js';
import * as K from '../src/storage/keys.js';

const [L, F] = [nodeId('l'), nodeId('f')];
const side = (o: Partial<ReplicaSide> = {}): ReplicaSide => ({ role: 'follower', epoch: 3, seq: 10, replicas: [L, F], copy: 0, installing: false, digesting: false, ...o });
const check: DigestCheck = { t: 'digest', p: 1, epoch: 3, leader: L, seq: 10, ranges: { kv: 'a', batch: 'b' } };
const mine = (ranges: Record<string, string>): DigestReply => ({ partition: 1, seq: 10, epoch: 3, digest: '', ranges, keys: 0 });

describe('anti-entropy decisions', () => {
  it('a leader with followers digests and sends each follower a check of its term', () => {
    expect(shouldDigest(side({ role: 'leader' }))).toBe(true);
    expect(shouldDigest(side({ role: 'leader', replicas: [L] }))).toBe(false);
    expect(digestChecks(side({ role: 'leader' }), L, mine({ kv: 'a' }))).toEqual([{ to: F, msg: { t: 'digest', p: 1, epoch: 3, leader: L, seq: 10, ranges: { kv: 'a' } } }]);
    expect(digestChecks(side({ role: 'leader', epoch: 4 }), L, mine({ kv: 'a' }))).toEqual([]);
  });
  it('a follower compares once at the check\'s seq, and asks for a copy when a range differs', () => {
    let s = compareStep({}, { type: 'check', check, replica: side({ seq: 8 }) }, F);
    expect(s.effects).toEqual([]);
    expect(s.state.check).toBe(check);
    s = compareStep(s.state, { type: 'progress', replica: side({ seq: 10, digesting: true }) }, F);
    expect(s.effects).toEqual([]);
    s = compareStep(s.state, { type: 'progress', replica: side({ seq: 10 }) }, F);
    expect(s.effects).toEqual([{ kind: 'digest' }]);
    const d = compareStep(s.state, { type: 'digested', mine: mine({ kv: 'x', batch: 'b' }), replica: side({ seq: 12 }) }, F);
    expect(d.effects).toEqual([{ kind: 'diverged', ranges: ['kv'], nack: { to: L, msg: { t: 'nack', p: 1, epoch: 3, from: F, seq: 12, reason: 'diverged', copy: 0 } } }]);
    expect(compareStep(s.state, { type: 'digested', mine: mine({ kv: 'a', batch: 'b' }), replica: side() }, F).effects).toEqual([{ kind: 'matched' }]);
  });
  it('drops a check it moved past, and a difference found over a copy since replaced', () => {
    expect(compareStep({}, { type: 'check', check, replica: side({ seq: 11 }) }, F).state.check).toBeUndefined();
    expect(compareStep({}, { type: 'check', check, replica: side({ epoch: 4 }) }, F).state.check).toBeUndefined();
    expect(compareStep({}, { type: 'check', check, replica: side({ installing: true }) }, F).state.check).toBeUndefined();
    const s = compareStep({}, { type: 'check', check, replica: side() }, F);
    expect(compareStep(s.state, { type: 'digested', mine: mine({ kv: 'x' }), replica: side({ copy: 7 }) }, F).effects).toEqual([]);
  });
  it('digests range by range over any store, so one changed key shows in its own range', () => {
    const rows = (v: string): Array<[Buffer, Buffer]> => [[K.kvKey('ks', Buffer.from('k')), Buffer.from(v)]];
    const run = (entries: Array<[Buffer, Buffer]>) => {
      const job = digestSlices({ iterate: () => entries }, { partition: 1, seq: 1, epoch: 1 }, 1);
      for (;;) { const r = job.next(); if (r.done) return r.value; }
    };
    const [a, b] = [run(rows('1')), run(rows('2'))];
    expect(a.keys).toBe(1);
    expect(Object.keys(a.ranges).filter((k) => a.ranges[k] !== b.ranges[k])).toEqual(['kv']);
  });
});
