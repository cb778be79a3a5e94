// Focused cases of the replication transition (src/actors/replica.ts) that the simulator found.
import { describe, expect, it } from 'vitest';
import { createReplica, handle, type Effect, type PeerMessage, type ReplicaView } from '../src/actors/replica.js';
import { initialState } from '../src/actors/partition.js';
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
});
