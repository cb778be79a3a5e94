// Focused cases of the replication transition (src/actors/replica.ts) that the simulator found.
import { describe, expect, it } from 'vitest';
import { createReplica, handle, wantsQuickTicks, type Effect, type Entry, type PeerMessage, type ReplicaView } from '../src/actors/replica.js';
import { leaderSide, successorReady } from '../src/actors/handoff.js';
import * as K from '../src/storage/keys.js';
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

  it('a copy that keeps progressing is never presumed lost: its follower is not sent a second one however long it takes', () => {
    const state = initialState(partitionId(0), epoch(2), seq(0));
    const leader = createReplica(L, state, view);
    handle(leader, { type: 'view', view }, 0);
    const first = handle(leader, { type: 'logMissing', to: F }, 0).find((e) => e.kind === 'snapshot');
    expect(first?.kind === 'snapshot').toBe(true);
    const copy = first!.kind === 'snapshot' ? first!.copy : -1;
    // A paced copy of a large partition: a part acked every second for a minute. Meanwhile the
    // installing follower acks live appends with its old copy id and an empty log.
    const installingAck: PeerMessage = { t: 'ack', p: 0, epoch: 2, from: F, seq: 0, end: 0, copy: 0 };
    for (let t = 1000; t <= 60_000; t += 1000) {
      handle(leader, { type: 'copyProgress', to: F, copy }, t);
      const effects = handle(leader, { type: 'peer', msg: installingAck }, t + 1);
      expect(leader.matched.has(F)).toBe(false);
      expect(effects.some((e) => e.kind === 'snapshot')).toBe(false);
      expect(handle(leader, { type: 'logMissing', to: F }, t + 2).some((e) => e.kind === 'snapshot')).toBe(false);
    }
    // Progress of an older copy says nothing of this one: silent for SNAPSHOT_ACK_TIMEOUT_MS, it is lost.
    handle(leader, { type: 'copyProgress', to: F, copy: copy - 1 }, 65_000);
    handle(leader, { type: 'peer', msg: installingAck }, 70_001);
    expect(leader.matched.get(F)).toBe(0);
    const second = handle(leader, { type: 'logMissing', to: F }, 70_002).find((e) => e.kind === 'snapshot');
    expect(second?.kind === 'snapshot' && second.copy).toBe(copy + 1);
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

  /**
   * L writes seqs 1 and 2 in epoch 2, both pending; F took over in epoch 3 holding only seq 1, then
   * wrote its own seq 2. L gets a full copy of F, which keeps L's pending writes (install.ts through
   * worker.ts replaceReplica).
   */
  function copiedFormerLeader() {
    const G = nodeId('g');
    const three: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F, G], live: [L, F, G], copies: 3, isr: [L, F, G], version: 1 };
    const put: Command = { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') };
    const next: ReplicaView = { ...three, epoch: epoch(3), leader: F, isr: [F, G], version: 2 };
    const old = createReplica(L, initialState(partitionId(0), epoch(2), seq(0)), three);
    handle(old, { type: 'view', view: three }, 0);
    handle(old, { type: 'write', id: 7, cmd: put, acks: 'all', timeoutMs: 1000, prior: null }, 10);
    handle(old, { type: 'write', id: 8, cmd: put, acks: 'all', timeoutMs: 1000, prior: null }, 11);
    handle(old, { type: 'view', view: next }, 20);
    // F's log: seq 1 of epoch 2 (L's), seq 2 of epoch 3 (its own).
    // (its seq 1 is written here as epoch 2's leader: the same seq and epoch, so the same entry)
    const successor = createReplica(F, initialState(partitionId(0), epoch(2), seq(0)), { ...three, leader: F });
    handle(successor, { type: 'view', view: { ...three, leader: F } }, 0);
    handle(successor, { type: 'write', id: 1, cmd: put, acks: 'one', timeoutMs: 1000, prior: null }, 10);
    handle(successor, { type: 'view', view: next }, 20);
    handle(successor, { type: 'write', id: 2, cmd: put, acks: 'one', timeoutMs: 1000, prior: null }, 21);
    expect(successor.state.seq).toBe(2);
    const copied = createReplica(L, structuredClone(successor.state), next);
    copied.pending = old.pending;
    handle(copied, { type: 'view', view: next }, 30);
    return { copied, three };
  }

  it('a former leader that a full copy replaced answers its pending writes from its successor: kept ones ok, overwritten ones NOT_LEADER', () => {
    const { copied } = copiedFormerLeader();
    const fromF = (hw: number, hwCopies: number): PeerMessage => ({ t: 'append', p: 0, epoch: 3, leader: F, prevSeq: 2, prevEpoch: 3, entries: [], at: 40, hw, hwCopies });
    const replies = (effects: Effect[]) => effects.filter((e) => e.kind === 'reply');
    // Nothing is answered before F's watermark covers it.
    expect(replies(handle(copied, { type: 'peer', msg: fromF(0, 3) }, 40))).toEqual([]);
    // Seq 1 (L's entry) confirmed on 3: ok. Seq 2 holds F's own entry: L's write there never runs.
    const answered = replies(handle(copied, { type: 'peer', msg: fromF(2, 3) }, 50));
    expect(answered).toHaveLength(2);
    expect(answered[0]).toEqual({ kind: 'reply', id: 7, reply: { ok: true, res: { version: 1 } }, replicas: 3 });
    expect(answered[1].kind === 'reply' && answered[1].id === 8 && !answered[1].reply.ok && answered[1].reply.code).toBe('NOT_LEADER');
    expect(copied.pending).toEqual([]);
  });

  it('a former leader that a full copy replaced and that leads again never confirms its pending writes with another term\'s entries', () => {
    const { copied, three } = copiedFormerLeader();
    // F fails before its appends answer them; L leads alone in epoch 4, so seqs 1 and 2 confirm at once.
    const alone: ReplicaView = { ...three, epoch: epoch(4), leader: L, live: [L], isr: [L], copies: 1, version: 3 };
    const answered = handle(copied, { type: 'view', view: alone }, 40).filter((e) => e.kind === 'reply');
    expect(answered).toHaveLength(2);
    const of = (id: number) => answered.find((e) => e.kind === 'reply' && e.id === id);
    expect(of(7)).toEqual({ kind: 'reply', id: 7, reply: { ok: true, res: { version: 1 } }, replicas: 1 });
    // seq 2 holds F's entry: L's write there is not confirmed by it (the new term fails it)
    const lost = of(8);
    expect(lost?.kind === 'reply' && !lost.reply.ok && lost.reply.code).toBe('OUTCOME_UNKNOWN');
    expect(copied.pending).toEqual([]);
  });

  it('a follower behind its leader keeps new writes as hints that count at once, and applies them when its log reaches them', () => {
    const S = nodeId('stand-in');
    const two: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F], live: [L, F], copies: 2, isr: [L, F], version: 1 };
    // F's partner failed: S stands in, with N = 3 and nothing of the partition's history yet.
    const three: ReplicaView = { ...two, replicas: [L, F, S], live: [L, F, S], copies: 3, version: 2 };
    const start = (self: typeof L, view: ReplicaView) => {
      const r = createReplica(self, initialState(partitionId(0), epoch(2), seq(0)), view);
      handle(r, { type: 'view', view }, 0);
      return r;
    };
    const [leader, follower, standIn] = [start(L, two), start(F, two), start(S, three)];
    const sends = (effects: Effect[], to: typeof L) => effects.flatMap((e) => e.kind === 'send' && e.to === to ? [e.msg] : []);
    const replies = (effects: Effect[]) => effects.flatMap((e) => e.kind === 'reply' && e.reply.ok ? [[e.id, e.replicas]] : []);
    const deliver = (to: ReturnType<typeof start>, msgs: PeerMessage[], at: number) => msgs.flatMap((msg) => handle(to, { type: 'peer', msg }, at));
    const put = (k: string): Command => ({ op: 'kvPut', ks: 'ks', key: Buffer.from(k), value: Buffer.from('v') });

    // The history: writes 1–3 on L and F.
    const history: Entry[] = [];
    for (let id = 1; id <= 3; id++) {
      const out = handle(leader, { type: 'write', id, cmd: put(`k${id}`), acks: 'all', timeoutMs: 5000, prior: null }, id);
      for (const m of sends(out, F)) if (m.t === 'append') history.push(...m.entries);
      expect(replies(deliver(leader, sends(deliver(follower, sends(out, F), id), L), id))).toEqual([[id, 2]]);
    }
    handle(leader, { type: 'view', view: three }, 4);
    handle(follower, { type: 'view', view: three }, 4);
    // Write 4 reaches both. The stand-in cannot apply it (its log is empty) but keeps it, on disk,
    // and says so: with the follower's ack that makes 3 holders, and write 4 is answered, 3.
    const out4 = handle(leader, { type: 'write', id: 4, cmd: put('k4'), acks: 'all', timeoutMs: 5000, prior: null }, 5);
    expect(replies(deliver(leader, sends(deliver(follower, sends(out4, F), 5), L), 5))).toEqual([]);
    const kept = deliver(standIn, sends(out4, S), 5);
    expect(kept.some((e) => e.kind === 'write' && e.ops.some((o) => o.type === 'put' && o.key.equals(K.hintKey(4))))).toBe(true);
    const report = sends(kept, L);
    expect(report).toMatchObject([{ t: 'nack', reason: 'gap', seq: 0, hint: [4, 4] }]);
    const answered = deliver(leader, report, 6);
    expect(replies(answered)).toEqual([[4, 3]]);
    expect(answered.some((e) => e.kind === 'resend' && e.to === S && e.fromSeq === 0)).toBe(true);

    // The gap fill brings its log to 3; it applies its hint after it and acks 4.
    const fill: PeerMessage = { t: 'append', p: 0, epoch: 2, leader: L, prevSeq: 0, prevEpoch: 0, entries: history, at: 7 };
    const filled = deliver(standIn, [fill], 7);
    expect(standIn.state.seq).toBe(4);
    expect(standIn.hints).toBeUndefined();
    const ops = filled.flatMap((e) => e.kind === 'write' ? e.ops : []);
    expect(ops.some((o) => o.type === 'put' && o.key.equals(K.logKey(4)))).toBe(true);
    expect(ops.some((o) => o.type === 'delRange' && o.gte.equals(K.hintKey(4)) && o.lt.equals(K.hintKey(5)))).toBe(true);
    expect(standIn.hintsOnDisk).toBeUndefined();
    const ack = sends(filled, L);
    expect(ack).toMatchObject([{ t: 'ack', seq: 4, end: 4 }]);
    expect(ack[0].t === 'ack' && ack[0].hint).toBeFalsy();
    deliver(leader, ack, 8);
    expect(leader.matched.get(S)).toBe(4);
    expect(leader.hinted.has(S)).toBe(false);
    // It holds what the follower holds: every key, and the same epochs at the same seqs.
    for (const k of ['k1', 'k2', 'k3', 'k4']) expect(ops.some((o) => o.type === 'put' && o.key.equals(K.kvKey('ks', Buffer.from(k)))), k).toBe(true);
    expect(standIn.state.epochs).toEqual(follower.state.epochs);
  });

  it('a newer epoch forgets hints, which stay on disk until the log passes them (a leader may have counted them)', () => {
    const S = nodeId('stand-in');
    const v: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, S], live: [L, S], copies: 2, isr: [L], version: 1 };
    const standIn = createReplica(S, initialState(partitionId(0), epoch(2), seq(0)), v);
    handle(standIn, { type: 'view', view: v }, 0);
    const put = (n: number, e: number): Entry => ({ seq: n, epoch: e, now: 1, cmd: { op: 'kvPut', ks: 'ks', key: Buffer.from(`k${n}`), value: Buffer.from('v') } });
    handle(standIn, { type: 'peer', msg: { t: 'append', p: 0, epoch: 2, leader: L, prevSeq: 1, prevEpoch: 2, entries: [put(2, 2)], at: 1 } }, 1);
    expect(standIn.hints?.entries.map((e) => e.seq)).toEqual([2]);
    const next = { ...v, epoch: epoch(3), leader: F, replicas: [F, S], version: 2 };
    const ops = (effects: Effect[]) => effects.flatMap((e) => e.kind === 'write' ? e.ops : []);
    const forgot = ops(handle(standIn, { type: 'view', view: next }, 2));
    expect(standIn.hints).toBeUndefined();
    expect(forgot.some((o) => o.type === 'del' && o.key.equals(K.hintHeaderKey))).toBe(true);
    expect(forgot.some((o) => (o.type === 'del' && o.key.equals(K.hintKey(2))) || o.type === 'delRange')).toBe(false);
    expect(standIn.hintsOnDisk).toEqual([2, 2]);
    // F's log reaches past seq 2: the old hint goes.
    const caughtUp = ops(handle(standIn, { type: 'peer', msg: { t: 'append', p: 0, epoch: 3, leader: F, prevSeq: 0, prevEpoch: 0, entries: [put(1, 2), put(2, 2), put(3, 3)], at: 3 } }, 3));
    expect(standIn.state.seq).toBe(3);
    expect(caughtUp.some((o) => o.type === 'delRange' && o.gte.equals(K.hintKey(2)) && o.lt.equals(K.hintKey(3)))).toBe(true);
    expect(standIn.hintsOnDisk).toBeUndefined();
  });

  it('with a replica unreachable, a write fails fast unless a node can stand in; the stand-in gets the pending tail as hints', () => {
    const G = nodeId('gone');
    const S = nodeId('stand-in');
    const v: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F, G], live: [L, F], copies: 3, isr: [L, F], version: 1 };
    const put: Command = { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') };
    const start = (self: typeof L, view: ReplicaView) => {
      const r = createReplica(self, initialState(partitionId(0), epoch(2), seq(0)), view);
      handle(r, { type: 'view', view }, 0);
      return r;
    };
    const failed = (effects: Effect[]) => effects.flatMap((e) => e.kind === 'reply' && !e.reply.ok ? [e.reply.code] : []);
    expect(failed(handle(start(L, v), { type: 'write', id: 1, cmd: put, acks: 'all', timeoutMs: 5000, prior: null }, 1))).toEqual(['NOT_ENOUGH_REPLICAS']);

    const withSpare = { ...v, spares: 1 };
    const leader = start(L, withSpare);
    const standIn = start(S, { ...withSpare, replicas: [L, F, G, S], version: 2 });
    const out = handle(leader, { type: 'write', id: 2, cmd: put, acks: 'all', timeoutMs: 5000, prior: null }, 1);
    expect(out.some((e) => e.kind === 'reply')).toBe(false); // it waits for a stand-in
    const entries = out.flatMap((e) => e.kind === 'send' && e.to === F && e.msg.t === 'append' ? e.msg.entries : []);
    expect(handle(leader, { type: 'peer', msg: { t: 'ack', p: 0, epoch: 2, from: F, seq: 1, end: 1, copy: 0 } }, 2).some((e) => e.kind === 'reply')).toBe(false);
    // The coordinator adds S: the leader sends it the tail holding write 2 at once.
    const added = handle(leader, { type: 'view', view: { ...withSpare, replicas: [L, F, G, S], live: [L, F, S], spares: 0, version: 2 } }, 3);
    expect(added).toContainEqual({ kind: 'resend', to: S, fromSeq: 0, at: 3 });
    const kept = handle(standIn, { type: 'peer', msg: { t: 'append', p: 0, epoch: 2, leader: L, prevSeq: 0, prevEpoch: 0, entries, at: 3 } }, 4);
    const ack = kept.flatMap((e) => e.kind === 'send' ? [e.msg] : []);
    expect(ack).toMatchObject([{ t: 'ack', seq: 1 }]); // its log was empty: it applies it outright
    const answered = handle(leader, { type: 'peer', msg: ack[0] }, 5);
    expect(answered.flatMap((e) => e.kind === 'reply' && e.reply.ok ? [[e.id, e.replicas]] : [])).toEqual([[2, 3]]);
  });

  it('a leader handing over sends its successor no copy: it may lead any moment, and a copy wipes it first', () => {
    const leader = createReplica(L, initialState(partitionId(0), epoch(2), seq(0)), view);
    handle(leader, { type: 'view', view }, 0);
    const diverged: PeerMessage = { t: 'nack', p: 0, epoch: 2, from: F, seq: 0, reason: 'diverged', copy: 0 };
    handle(leader, { type: 'fence', to: F, untilMs: 100 }, 10);
    expect(handle(leader, { type: 'peer', msg: diverged }, 20).some((e) => e.kind === 'snapshot')).toBe(false);
    handle(leader, { type: 'unfence' }, 30);
    expect(handle(leader, { type: 'peer', msg: diverged }, 40).some((e) => e.kind === 'snapshot')).toBe(true);
  });

  it('a leader handing over refuses writes (they did not run) until its fence ends', () => {
    const leader = createReplica(L, initialState(partitionId(0), epoch(2), seq(0)), view);
    handle(leader, { type: 'view', view }, 0);
    const put: Command = { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') };
    handle(leader, { type: 'fence', to: F, untilMs: 100 }, 10);
    const refused = handle(leader, { type: 'write', id: 1, cmd: put, acks: 'one', timeoutMs: 1000, prior: null }, 50);
    expect(refused).toMatchObject([{ kind: 'reply', id: 1, reply: { ok: false, code: 'NOT_LEADER' } }]);
    expect(leader.state.seq).toBe(0);
    const taken = handle(leader, { type: 'write', id: 2, cmd: put, acks: 'one', timeoutMs: 1000, prior: null }, 100);
    expect(taken.some((e) => e.kind === 'reply' && e.reply.ok)).toBe(true);
    expect(leader.state.seq).toBe(1);
    // A hand-off whose record change did not happen is released before its fence ends.
    handle(leader, { type: 'fence', to: F, untilMs: 2000 }, 200);
    expect(handle(leader, { type: 'write', id: 3, cmd: put, acks: 'one', timeoutMs: 1000, prior: null }, 210)).toMatchObject([{ reply: { ok: false, code: 'NOT_LEADER' } }]);
    handle(leader, { type: 'unfence' }, 220);
    expect(handle(leader, { type: 'write', id: 4, cmd: put, acks: 'one', timeoutMs: 1000, prior: null }, 230).some((e) => e.kind === 'reply' && e.reply.ok)).toBe(true);
  });
  it('a leader hands over only once its successor holds every entry and no write of its waits for copies', () => {
    const G = nodeId('g');
    const three: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F, G], live: [L, F, G], copies: 3, isr: [L, F, G], version: 1 };
    const leader = createReplica(L, initialState(partitionId(0), epoch(2), seq(0)), three);
    handle(leader, { type: 'view', view: three }, 0);
    const put: Command = { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') };
    const ack = (from: typeof L, s: number): PeerMessage => ({ t: 'ack', p: 0, epoch: 2, from, seq: s, end: s, copy: 0 });
    handle(leader, { type: 'write', id: 1, cmd: put, acks: 'all', timeoutMs: 1000, prior: null }, 10);
    handle(leader, { type: 'fence', to: F, untilMs: 2000 }, 20);
    expect(successorReady(leaderSide(leader), F)).toBe(false);
    // F, the successor, holds everything; G lags, so write 1 still waits. Handed over now, the
    // move would drop this replica before F's confirmation reached it: OUTCOME_UNKNOWN.
    handle(leader, { type: 'peer', msg: ack(F, 1) }, 30);
    expect(leader.pending.map((w) => w.id)).toEqual([1]);
    expect(successorReady(leaderSide(leader), F)).toBe(false);
    const answered = handle(leader, { type: 'peer', msg: ack(G, 1) }, 40);
    expect(answered).toMatchObject([{ kind: 'reply', id: 1, reply: { ok: true }, replicas: 3 }]);
    expect(successorReady(leaderSide(leader), F)).toBe(true);
    expect(successorReady(leaderSide(leader), G)).toBe(true);
  });

  it('a view from an older partition record than its leader\'s appends neither drops the copy nor changes the role', () => {
    // The record: rev 3 makes L leader of epoch 2 over [L, F]; rev 4 removes F; rev 5 adds it back.
    // F's own watch lags: it holds rev 3 while L's appends come from rev 5.
    const at = (rev: number, replicas: typeof L[]): ReplicaView => ({ ...view, replicas, live: replicas, isr: [L], version: rev, rev });
    const f = createReplica(F, initialState(partitionId(0), epoch(2), seq(0)), at(3, [L, F]));
    handle(f, { type: 'view', view: at(3, [L, F]) }, 0);
    expect(f.role).toBe('follower');
    const entry: Entry = { seq: 1, epoch: 2, now: 1, cmd: { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') } };
    const append: PeerMessage = { t: 'append', p: 0, epoch: 2, leader: L, prevSeq: 0, prevEpoch: 0, entries: [entry], at: 10, hw: 0, hwCopies: 1, rev: 5 };
    expect(handle(f, { type: 'peer', msg: append }, 10)).toContainEqual(expect.objectContaining({ kind: 'send', msg: expect.objectContaining({ t: 'ack', seq: 1 }) }));
    expect(f.seenRev).toBe(5);
    // The late view of rev 4 (F removed) arrives: it is older than what L's appends showed.
    const late = handle(f, { type: 'view', view: at(4, [L]) }, 20);
    expect(late).toEqual([]);
    expect(f.role).toBe('follower');
    expect(f.view.rev).toBe(3);
    expect(f.state.seq).toBe(1);
    // Rev 5 arrives and is taken; a later record that does remove F drops its copy.
    expect(handle(f, { type: 'view', view: at(5, [L, F]) }, 30).some((e) => e.kind === 'drop')).toBe(false);
    expect(f.view.rev).toBe(5);
    expect(handle(f, { type: 'view', view: at(6, [L]) }, 40)).toContainEqual({ kind: 'drop' });
    expect(f.role).toBe('none');
  });

  it('a view without a record revision (a leader or coordinator that does not send one) is taken as before', () => {
    const f = createReplica(F, initialState(partitionId(0), epoch(2), seq(0)), view);
    handle(f, { type: 'peer', msg: { t: 'append', p: 0, epoch: 2, leader: L, prevSeq: 0, prevEpoch: 0, entries: [], at: 10, rev: 5 } }, 10);
    expect(handle(f, { type: 'view', view: { ...view, replicas: [L], live: [L] } }, 20)).toContainEqual({ kind: 'drop' });
  });

  it('a leader\'s appends carry the record revision of its view, and only when it knows one', () => {
    const leader = createReplica(L, initialState(partitionId(0), epoch(2), seq(0)), view);
    handle(leader, { type: 'view', view }, 0);
    const put: Command = { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') };
    const sent = (out: Effect[]) => out.flatMap((e) => e.kind === 'send' && e.msg.t === 'append' ? [e.msg] : []);
    expect(sent(handle(leader, { type: 'write', id: 1, cmd: put, acks: 'one', timeoutMs: 1000, prior: null }, 10))[0]).not.toHaveProperty('rev');
    handle(leader, { type: 'view', view: { ...view, version: 2, rev: 7 } }, 20);
    expect(sent(handle(leader, { type: 'write', id: 2, cmd: put, acks: 'one', timeoutMs: 1000, prior: null }, 30))[0]).toMatchObject({ rev: 7 });
  });

  it('an idle leader beats every tick about HEARTBEAT_MS apart, and wants quick ticks only while work is in flight', () => {
    const put: Command = { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') };
    const leader = createReplica(L, initialState(partitionId(0), epoch(2), seq(0)), view);
    handle(leader, { type: 'view', view }, 0);
    const beats = (now: number) => handle(leader, { type: 'tick' }, now).filter((e) => e.kind === 'send').length;
    expect(beats(1_000)).toBe(1);
    expect(beats(1_050)).toBe(0); // 50 ms ticks: every other one beats
    expect(beats(1_099)).toBe(1); // a little short of 100 ms by the wall clock: the next would be 200 ms on
    // 100 ms ticks beat every time, the one after a tick that ran late included (70 ms on)
    expect(beats(1_230)).toBe(1);
    expect(beats(1_300)).toBe(1);
    expect(wantsQuickTicks(leader)).toBe(true); // a follower it has not heard from yet may be behind
    handle(leader, { type: 'peer', msg: { t: 'ack', p: 0, epoch: 2, from: F, seq: 0, end: 0, copy: 0 } }, 1_301);
    expect(wantsQuickTicks(leader)).toBe(false);
    handle(leader, { type: 'write', id: 1, cmd: put, acks: 'all', timeoutMs: 1000, prior: null }, 1_310);
    expect(wantsQuickTicks(leader)).toBe(true); // a write waits for its copy
    handle(leader, { type: 'peer', msg: { t: 'ack', p: 0, epoch: 2, from: F, seq: 1, end: 1, copy: 0 } }, 1_320);
    expect(leader.pending).toHaveLength(0);
    expect(wantsQuickTicks(leader)).toBe(false);
    const follower = createReplica(F, initialState(partitionId(0), epoch(2), seq(0)), view);
    handle(follower, { type: 'view', view }, 0);
    expect(wantsQuickTicks(follower)).toBe(false);
  });
});
