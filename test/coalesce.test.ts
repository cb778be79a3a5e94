// coalescePeer merges the replication messages of one worker flush. A follower must end up exactly
// where the unmerged messages would have left it, and the leader must learn the same from the acks.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { coalescePeer, createReplica, handle, type Effect, type Entry, type PeerMessage, type Replica, type ReplicaView } from '../src/actors/replica.js';
import { initialState } from '../src/actors/partition.js';
import { limits } from '../src/runtime/limits.js';
import { epoch, nodeId, partitionId, seq, type NodeId } from '../src/runtime/ids.js';

const L = nodeId('leader');
const F = nodeId('follower');
const G = nodeId('other');
const view: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F], live: [L, F], copies: 2, isr: [L, F], version: 1 };

function entry(s: number, value = 'v'): Entry {
  return { seq: s, epoch: 2, now: 1000 + s, cmd: { op: 'kvPut', ks: 'ks', key: Buffer.from(`k${s}`), value: Buffer.from(value) } };
}
function append(prevSeq: number, entries: Entry[], p = 0, to: NodeId = F): { to: NodeId; msg: PeerMessage } {
  return { to, msg: { t: 'append', p, epoch: 2, leader: L, prevSeq, prevEpoch: prevSeq === 0 ? 0 : 2, entries, at: 0 } };
}
function ack(s: number, p = 0, to: NodeId = L): { to: NodeId; msg: PeerMessage } {
  return { to, msg: { t: 'ack', p, epoch: 2, from: F, seq: s, end: s, copy: 0 } };
}

function follower(): Replica {
  const r = createReplica(F, initialState(partitionId(0), epoch(2), seq(0)), view);
  handle(r, { type: 'view', view }, 0);
  return r;
}

/** The follower's state and its last ack after receiving these messages. */
function deliver(msgs: Array<{ to: NodeId; msg: PeerMessage }>): { seq: number; lastAck: PeerMessage | undefined; writes: number } {
  const r = follower();
  let lastAck: PeerMessage | undefined;
  let writes = 0;
  for (const { msg } of msgs) {
    for (const e of handle(r, { type: 'peer', msg }, 0) as Effect[]) {
      if (e.kind === 'send') lastAck = e.msg;
      if (e.kind === 'write') writes += e.ops.length;
    }
  }
  return { seq: r.state.seq, lastAck, writes };
}

describe('coalescePeer', () => {
  it('merges a chain of appends to one follower into one, and a follower ends up in the same place', () => {
    const msgs = [append(0, [entry(1)]), append(1, [entry(2)]), append(2, []), append(2, [entry(3)])];
    const merged = coalescePeer(msgs);
    expect(merged).toHaveLength(1);
    expect((merged[0].msg as Extract<PeerMessage, { t: 'append' }>).entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(deliver(merged)).toEqual(deliver(msgs));
    expect(deliver(merged).seq).toBe(3);
  });

  it('keeps apart what does not chain: another epoch, a gap, another partition or node, the caps', () => {
    const gap = [append(0, [entry(1)]), append(2, [entry(3)])];
    expect(coalescePeer(gap)).toHaveLength(2);
    const otherEpoch = [append(0, [entry(1)]), { to: F, msg: { ...append(1, [entry(2)]).msg, epoch: 3 } as PeerMessage }];
    expect(coalescePeer(otherEpoch)).toHaveLength(2);
    const interleaved = [append(0, [entry(1)]), append(0, [entry(1)], 1), append(0, [entry(1)], 0, G), append(1, [entry(2)])];
    const out = coalescePeer(interleaved);
    expect(out.map((o) => `${o.to}/${o.msg.p}`)).toEqual(['follower/0', 'follower/1', 'other/0']);
    const big = 'x'.repeat(limits.catchUpBytesMax / 2);
    expect(coalescePeer([append(0, [entry(1, big)]), append(1, [entry(2, big)])])).toHaveLength(2);
    const many = Array.from({ length: limits.catchUpEntriesMax + 1 }, (_, i) => append(i, [entry(i + 1)]));
    expect(coalescePeer(many).map((o) => (o.msg as Extract<PeerMessage, { t: 'append' }>).entries.length)).toEqual([limits.catchUpEntriesMax, 1]);
  });

  it('keeps only the latest of consecutive acks to one leader, never an older one after a newer one', () => {
    expect(coalescePeer([ack(1), ack(2), ack(3)])).toEqual([ack(3)]);
    expect(coalescePeer([ack(3), ack(2)])).toEqual([ack(3), ack(2)]);
    expect(coalescePeer([ack(1), ack(2, 1), ack(3)])).toEqual([ack(3), ack(2, 1)]);
    const otherCopy = { to: L, msg: { ...ack(2).msg, copy: 7 } as PeerMessage };
    expect(coalescePeer([ack(1), otherCopy])).toHaveLength(2);
  });

  it('any split of a run of writes into appends delivers the same follower state, merged or not', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 40 }), (sizes) => {
      const msgs: Array<{ to: NodeId; msg: PeerMessage }> = [];
      let s = 0;
      for (const n of sizes) {
        msgs.push(append(s, Array.from({ length: n }, (_, i) => entry(s + i + 1))));
        s += n;
      }
      const merged = coalescePeer(msgs);
      expect(merged.length).toBeLessThanOrEqual(msgs.length);
      expect(deliver(merged)).toEqual(deliver(msgs));
      expect(deliver(merged).seq).toBe(s);
    }));
  });
});
