// Focused cases of the replication transition (src/actors/replica.ts) that the simulator found.
import { describe, expect, it } from 'vitest';
import { createReplica, handle, type Effect, type PeerMessage, type ReplicaView } from '../src/actors/replica.js';
import { initialState } from '../src/actors/partition.js';
import { epoch, nodeId, partitionId, seq } from '../src/runtime/ids.js';

const L = nodeId('leader');
const F = nodeId('follower');
const view: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F], live: [L, F], copies: 2, isr: [L], version: 1 };

describe('replica transition', () => {
  it('a leader restarted within its epoch never reuses a copy id a follower already holds', () => {
    // The follower installed copy `held` from this leader before it restarted (same epoch 2).
    const held = 2 * 2 ** 20 + 3;
    const leader = createReplica(L, initialState(partitionId(0), epoch(2), seq(0)), view);
    handle(leader, { type: 'view', view }, 0);
    const report = (s: number, end: number): PeerMessage => ({ t: 'ack', p: 0, epoch: 2, from: F, seq: s, end, copy: held });
    // Ahead of its leader (a history this one never wrote): it gets a copy.
    const effects = handle(leader, { type: 'peer', msg: report(0, 5) }, 10) as Effect[];
    const snap = effects.find((e) => e.kind === 'snapshot');
    expect(snap && snap.kind === 'snapshot' && snap.copy).toBeGreaterThan(held);
    // Until it reports that copy, what it says about the one it held does not count.
    handle(leader, { type: 'peer', msg: report(0, 0) }, 20);
    expect(leader.matched.has(F)).toBe(false);
  });
});
