// Focused cases of the replication transition (src/actors/replica.ts) that the simulator found.
import { describe, expect, it } from 'vitest';
import { createReplica, handle, type Effect, type PeerMessage, type ReplicaView } from '../src/actors/replica.js';
import { initialState, type Command } from '../src/actors/partition.js';
import { epoch, nodeId, partitionId, seq } from '../src/runtime/ids.js';

const L = nodeId('leader');
const F = nodeId('follower');
const view: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F], live: [L, F], copies: 2, isr: [L], version: 1 };

describe('replica transition', () => {
  it('a leader restarted within its epoch neither reuses a copy id nor counts reports older than the copy it sent', () => {
    // Before the restart it sent copy `sent` to the follower (its ledger is on disk, as loaded).
    const sent = 2 * 2 ** 20 + 3;
    const state = initialState(partitionId(0), epoch(2), seq(0));
    state.copies = { epoch: 2, last: sent, to: [[F, sent]] };
    const leader = createReplica(L, state, view);
    handle(leader, { type: 'view', view }, 0);
    const report = (copy: number, s: number, end: number): PeerMessage => ({ t: 'ack', p: 0, epoch: 2, from: F, seq: s, end, copy });
    // An ack from before the follower took that copy (still queued on its link) does not count.
    handle(leader, { type: 'peer', msg: report(0, 0, 0) }, 10);
    expect(leader.matched.has(F)).toBe(false);
    // Once it reports that copy it counts: ahead of its leader, it gets a new copy, with a new id
    // written down before it leaves.
    const effects = handle(leader, { type: 'peer', msg: report(sent, 0, 5) }, 20) as Effect[];
    const snap = effects.find((e) => e.kind === 'snapshot');
    expect(snap && snap.kind === 'snapshot' && snap.copy).toBe(sent + 1);
    expect(effects.findIndex((e) => e.kind === 'write')).toBeLessThan(effects.indexOf(snap!));
  });

  it('a leader that steps down answers its pending writes once its successor has confirmed them, and only then', () => {
    const G = nodeId('g');
    const three: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F, G], live: [L, F, G], copies: 3, isr: [L, F, G], version: 1 };
    const put: Command = { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') };
    const stepDown = () => {
      const old = createReplica(L, initialState(partitionId(0), epoch(2), seq(0)), three);
      handle(old, { type: 'view', view: three }, 0);
      expect(handle(old, { type: 'write', id: 7, cmd: put, acks: 'all', timeoutMs: 1000, prior: null }, 10).some((e) => e.kind === 'reply')).toBe(false);
      // F takes over in epoch 3; L hears of it and follows.
      expect(handle(old, { type: 'view', view: { ...three, epoch: epoch(3), leader: F, isr: [F, G], version: 2 } }, 20).some((e) => e.kind === 'reply')).toBe(false);
      return old;
    };
    const fromF = (prevEpoch: number, hwCopies: number): PeerMessage => ({ t: 'append', p: 0, epoch: 3, leader: F, prevSeq: 1, prevEpoch, entries: [], at: 30, hw: 1, hwCopies });
    const replies = (effects: Effect[]) => effects.filter((e) => e.kind === 'reply');

    // F kept L's entry (seq 1 of epoch 2) and confirmed it on 3 replicas: the writer hears ok, 3.
    const kept = stepDown();
    expect(replies(handle(kept, { type: 'peer', msg: fromF(2, 2) }, 30))).toEqual([]); // 2 copies are not N
    expect(replies(handle(kept, { type: 'peer', msg: fromF(2, 3) }, 40))).toEqual([{ kind: 'reply', id: 7, reply: { ok: true, res: { version: 1 } }, replicas: 3 }]);

    // F's seq 1 is another entry: L's write was lost, and its deadline says so, never ok.
    const lost = stepDown();
    expect(replies(handle(lost, { type: 'peer', msg: fromF(3, 3) }, 30))).toEqual([]);
    const late = replies(handle(lost, { type: 'tick' }, 1011));
    expect(late).toHaveLength(1);
    expect(late[0].kind === 'reply' && !late[0].reply.ok && late[0].reply.code).toBe('OUTCOME_UNKNOWN');
  });
});
