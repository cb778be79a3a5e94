// Consumer group membership and partition assignment as pure decisions: (state, event) →
// (state, effects, reply). The coordinator (group-coordinator.ts) owns the clock, timers and the
// commit writes; nothing here does I/O.
//
// Two maps per group: `target` (who should own a partition: sticky, balanced, from `assign`) and
// `owner` (who does own it now). A partition changes owner only through "no owner": its old
// owner releases it (a heartbeat at the current generation after it stopped reading and
// committed), leaves, or expires; only then is it granted to its target. So two live members
// never own one partition at once, and a member may commit only for partitions it owns.
import assert from 'node:assert/strict';
import { generation as gen, type Generation, type MemberId } from '../runtime/ids.js';

/** `topic/partition`: sorts by topic, then numerically by partition (zero-padded). */
export type PartitionKey = string;
export const partitionKey = (topic: string, tp: number): PartitionKey => `${topic}/${String(tp).padStart(4, '0')}`;
export function parsePartitionKey(k: PartitionKey): { topic: string; partition: number } {
  const i = k.lastIndexOf('/');
  return { topic: k.slice(0, i), partition: Number(k.slice(i + 1)) };
}

/**
 * Sticky balanced assignment over sorted members and sorted partitions. Every member gets
 * ⌊P/N⌋ or ⌈P/N⌉ partitions; members that keep more of their previous partitions get the larger
 * shares; each keeps its previous partitions up to its share; the rest go out in sorted order to
 * members (sorted by id) below their share. Disjoint and complete by construction.
 */
export function assign(
  members: readonly MemberId[], partitions: readonly PartitionKey[], previous: ReadonlyMap<MemberId, readonly PartitionKey[]>,
): Map<MemberId, PartitionKey[]> {
  const ids = [...new Set(members)].sort();
  const out = new Map<MemberId, PartitionKey[]>(ids.map((m) => [m, []]));
  if (ids.length === 0) return out;
  const all = [...new Set(partitions)].sort();
  const exists = new Set(all);
  const claimed = new Set<PartitionKey>();
  const kept = new Map<MemberId, PartitionKey[]>();
  for (const m of ids) {
    const mine = [...new Set(previous.get(m) ?? [])].filter((p) => exists.has(p) && !claimed.has(p)).sort();
    mine.forEach((p) => claimed.add(p));
    kept.set(m, mine);
  }
  const base = Math.floor(all.length / ids.length);
  const extra = all.length % ids.length;
  const byKept = [...ids].sort((a, b) => kept.get(b)!.length - kept.get(a)!.length || (a < b ? -1 : 1));
  const quota = new Map<MemberId, number>(byKept.map((m, i) => [m, base + (i < extra ? 1 : 0)]));
  const taken = new Set<PartitionKey>();
  for (const m of ids) {
    for (const p of kept.get(m)!.slice(0, quota.get(m)!)) {
      out.get(m)!.push(p);
      taken.add(p);
    }
  }
  const rest = all.filter((p) => !taken.has(p));
  let i = 0;
  for (const m of ids) {
    const list = out.get(m)!;
    while (list.length < quota.get(m)!) list.push(rest[i++]);
    list.sort();
  }
  assert.equal(i, rest.length, 'every partition is assigned');
  return out;
}

export interface MemberState {
  readonly id: MemberId;
  readonly sessionTimeoutMs: number;
  /** the last join, or heartbeat at the current generation: what keeps the session alive */
  lastSeenMs: number;
}

export interface GroupState {
  generation: Generation;
  /** the group's topics, sorted; every member subscribes to all of them */
  topics: string[];
  partitions: PartitionKey[];
  members: Map<MemberId, MemberState>;
  target: Map<MemberId, PartitionKey[]>;
  owner: Map<PartitionKey, MemberId>;
  /** no partition is granted before this (a new coordinator waits out the old one's sessions) */
  grantsFromMs: number;
}

export type GroupEvent =
  | { kind: 'join'; member: MemberId; topics: string[]; partitions: PartitionKey[]; sessionTimeoutMs: number; nowMs: number }
  /** `partitions`: the topics' partitions now, when known; a count grown by `topic alter` reassigns */
  | { kind: 'heartbeat'; member: MemberId; generation: number; nowMs: number; partitions?: PartitionKey[] }
  | { kind: 'leave'; member: MemberId; nowMs: number }
  /** time passes: expire silent members, grant released partitions not `busy` (a commit in flight) */
  | { kind: 'tick'; nowMs: number; busy: ReadonlySet<PartitionKey> };

export type GroupEffect =
  | { kind: 'removed'; member: MemberId; reason: 'left' | 'expired' }
  | { kind: 'generation'; generation: Generation };

export interface MemberView {
  member: MemberId;
  generation: Generation;
  /** partitions this member owns and keeps: read these */
  assigned: PartitionKey[];
  /** false when the generation the member sent was stale: it must act on `assigned`, then heartbeat again */
  renewed: boolean;
}

export type GroupReply = { ok: true; view: MemberView } | { ok: false; code: 'UNKNOWN_MEMBER' | 'INVALID_ARGUMENT'; detail: string };

export interface GroupStep { state: GroupState; effects: GroupEffect[]; reply?: GroupReply }

export function emptyGroup(firstGeneration: number, grantsFromMs: number): GroupState {
  assert.ok(Number.isSafeInteger(firstGeneration) && firstGeneration >= 0, 'a generation is a safe integer');
  return { generation: gen(firstGeneration), topics: [], partitions: [], members: new Map(), target: new Map(), owner: new Map(), grantsFromMs };
}

/** What a member may read: the partitions it owns that stay its own. */
export function viewOf(s: GroupState, m: MemberId, renewed: boolean): MemberView {
  const target = new Set(s.target.get(m) ?? []);
  const assigned = [...s.owner].filter(([p, o]) => o === m && target.has(p)).map(([p]) => p).sort();
  return { member: m, generation: s.generation, assigned, renewed };
}

/** May `member` at `generation` commit for `partition`? Undefined when yes, else the refusal. */
export function commitRefusal(s: GroupState, member: MemberId, generation: number, partition: PartitionKey): { code: 'UNKNOWN_MEMBER' | 'FENCED'; detail: string } | undefined {
  if (!s.members.has(member)) return { code: 'UNKNOWN_MEMBER', detail: member };
  if (generation !== s.generation) return { code: 'FENCED', detail: `generation ${generation} is not the current ${s.generation}` };
  if (s.owner.get(partition) !== member) return { code: 'FENCED', detail: `member ${member} does not own ${partition}` };
  return undefined;
}

export function step(prev: GroupState, ev: GroupEvent): GroupStep {
  const s: GroupState = { ...prev, members: new Map(prev.members), target: new Map(prev.target), owner: new Map(prev.owner) };
  const effects: GroupEffect[] = [];
  const before = s.generation;
  let reply: GroupReply | undefined;
  switch (ev.kind) {
    case 'join': {
      const topics = [...new Set(ev.topics)].sort();
      if (s.members.size > 0 && !(s.members.size === 1 && s.members.has(ev.member)) && topics.join('\n') !== s.topics.join('\n')) {
        return { state: prev, effects, reply: { ok: false, code: 'INVALID_ARGUMENT', detail: `members of one group subscribe to the same topics: [${s.topics.join(', ')}]` } };
      }
      const known = s.members.get(ev.member);
      s.members.set(ev.member, { id: ev.member, sessionTimeoutMs: ev.sessionTimeoutMs, lastSeenMs: ev.nowMs });
      const partitions = [...new Set(ev.partitions)].sort();
      if (!known || partitions.join('\n') !== s.partitions.join('\n')) {
        s.topics = topics;
        s.partitions = partitions;
        for (const p of [...s.owner.keys()]) if (!partitions.includes(p)) s.owner.delete(p);
        retarget(s);
      }
      settle(s, ev.nowMs, new Set());
      reply = { ok: true, view: viewOf(s, ev.member, true) };
      break;
    }
    case 'heartbeat': {
      const m = s.members.get(ev.member);
      if (!m) return { state: prev, effects, reply: { ok: false, code: 'UNKNOWN_MEMBER', detail: ev.member } };
      const partitions = ev.partitions === undefined ? undefined : [...new Set(ev.partitions)].sort();
      if (partitions !== undefined && partitions.join('\n') !== s.partitions.join('\n')) {
        // A new generation: the member's stale heartbeat is answered with the new assignment.
        s.partitions = partitions;
        for (const p of [...s.owner.keys()]) if (!partitions.includes(p)) s.owner.delete(p);
        retarget(s);
        settle(s, ev.nowMs, new Set());
      }
      const renewed = ev.generation === s.generation;
      if (renewed) {
        // An acknowledgement: the member has stopped reading what it no longer keeps.
        m.lastSeenMs = ev.nowMs;
        s.members.set(m.id, m);
        const keep = new Set(s.target.get(m.id) ?? []);
        for (const [p, o] of [...s.owner]) if (o === m.id && !keep.has(p)) s.owner.delete(p);
        settle(s, ev.nowMs, new Set());
      }
      reply = { ok: true, view: viewOf(s, m.id, renewed) };
      break;
    }
    case 'leave': {
      if (!s.members.has(ev.member)) return { state: prev, effects, reply: { ok: false, code: 'UNKNOWN_MEMBER', detail: ev.member } };
      remove(s, ev.member, 'left', effects);
      retarget(s);
      settle(s, ev.nowMs, new Set());
      reply = { ok: true, view: { member: ev.member, generation: s.generation, assigned: [], renewed: false } };
      break;
    }
    case 'tick': {
      let gone = false;
      for (const m of [...s.members.values()]) {
        if (ev.nowMs - m.lastSeenMs > m.sessionTimeoutMs) {
          remove(s, m.id, 'expired', effects);
          gone = true;
        }
      }
      if (gone) retarget(s);
      settle(s, ev.nowMs, ev.busy);
      break;
    }
  }
  if (s.generation !== before) effects.push({ kind: 'generation', generation: s.generation });
  checkInvariants(s);
  return { state: s, effects, reply };
}

function remove(s: GroupState, m: MemberId, reason: 'left' | 'expired', effects: GroupEffect[]): void {
  s.members.delete(m);
  s.target.delete(m);
  for (const [p, o] of [...s.owner]) if (o === m) s.owner.delete(p);
  effects.push({ kind: 'removed', member: m, reason });
}

function retarget(s: GroupState): void {
  s.target = assign([...s.members.keys()], s.partitions, s.target);
  bump(s);
}

/** Grant every partition without an owner to its target, unless held back. */
function settle(s: GroupState, nowMs: number, busy: ReadonlySet<PartitionKey>): void {
  if (nowMs < s.grantsFromMs) return;
  let granted = false;
  for (const [m, ps] of s.target) {
    for (const p of ps) {
      if (s.owner.has(p) || busy.has(p)) continue;
      s.owner.set(p, m);
      granted = true;
    }
  }
  if (granted) bump(s);
}

function bump(s: GroupState): void {
  s.generation = gen(s.generation + 1);
  assert.ok(Number.isSafeInteger(s.generation), 'generations stay exact');
}

function checkInvariants(s: GroupState): void {
  for (const [p, o] of s.owner) {
    assert.ok(s.members.has(o), `partition ${p} is owned by a member`);
    assert.ok(s.partitions.includes(p), `owned partition ${p} belongs to the group`);
  }
  assert.ok(s.members.size === s.target.size || s.members.size === 0, 'every member has a target');
}
