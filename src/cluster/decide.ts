// The coordinator's decisions about one partition, as pure functions of its record in etcd, this
// node's perception of the others and its own replica's position. cluster.ts runs them on a timer
// and applies the result by compare-and-swap; test/sim runs the same functions under a seeded
// simulator, so what the simulator proves is this code.
import type { NodeId } from '../runtime/ids.js';
import type { ReplicaView } from '../actors/replica.js';
import type { PartitionRecord } from './layout.js';
import { withStandIns, type PlacementInputs } from './placement.js';

/** A follower that has not reached where its leader was this long ago leaves the in-sync set. */
export const ISR_LAG_MS = 1_000;

/** what this node perceives of another node, for one partition */
export interface Perception {
  /** a member that has spoken recently */
  alive(n: NodeId): boolean;
  /** `[seq, incomplete ? 1 : 0]` of n's replica, as last sampled or heard; undefined: not known */
  positionOf(n: NodeId): readonly [number, number] | undefined;
}

/** the leading replica's position, as its worker reports it */
export interface LeaderPosition {
  seq: number;
  /** the highest seq each follower acknowledged; -1 for none */
  matched(n: NodeId): number;
  /** the highest seq confirmed to acks=all writers */
  confirmedSeq: number;
  /** the version of the view the replica holds */
  view: number;
}

/**
 * Failover: the leader is silent or gone. Among the live in-sync replicas with a complete copy,
 * the one furthest ahead (then the first in the set) takes over with the next epoch, and the silent
 * leader leaves the in-sync set. Every in-sync replica holds every confirmed write, so whichever
 * wins keeps them all. Returns the record this node proposes, or undefined when it is not the one.
 */
export function electSelf(rec: PartitionRecord, self: NodeId, see: Perception): PartitionRecord | undefined {
  if (!rec.isr.includes(self) || see.alive(rec.leader)) return undefined;
  let best: { node: NodeId; seq: number } | undefined;
  for (const n of rec.isr) {
    if (n === rec.leader || !see.alive(n)) continue;
    const pos = see.positionOf(n);
    if (!pos || pos[1] === 1) continue; // unknown, or its copy is incomplete: not electable
    if (!best || pos[0] > best.seq) best = { node: n, seq: pos[0] };
  }
  if (best?.node !== self) return undefined;
  return { ...rec, epoch: (rec.epoch + 1) as PartitionRecord['epoch'], leader: self, isr: rec.isr.filter((n) => n !== rec.leader) };
}

/** A leader's followers in the in-sync set that have gone silent: dropped at failover speed. */
export function silentFollowers(rec: PartitionRecord, self: NodeId, see: Perception): NodeId[] {
  return rec.isr.filter((n) => n !== self && !see.alive(n));
}

/** `silent` joined to the members this node suspects, and the healthy members left: withStandIns's inputs. */
function standInInputs(inputs: PlacementInputs, silent: readonly NodeId[]): { silent: Set<NodeId>; healthy: NodeId[] } {
  const all = new Set([...silent, ...inputs.silent]);
  return { silent: all, healthy: inputs.live.filter((n) => !all.has(n)) };
}

/**
 * The record this node proposes when it takes over partition `p` (electSelf), with a stand-in for
 * the silent leader in the same swap rather than a controller round later: acks=all writes have N
 * copies again as soon as it has caught up. Undefined when this node is not the one to take over.
 */
export function failoverProposal(
  p: number, rec: PartitionRecord, self: NodeId, see: Perception, inputs: PlacementInputs, n: number,
): PartitionRecord | undefined {
  const elected = electSelf(rec, self, see);
  if (!elected) return undefined;
  const { silent, healthy } = standInInputs(inputs, [rec.leader]);
  const next = withStandIns(p, elected, rec, healthy, silent, n);
  if (next.epoch !== rec.epoch + 1 || next.leader !== self) throw new Error(`failover of partition ${p}: a proposal must lead the next epoch`);
  return next;
}

/**
 * A leader drops silent or gone followers from the in-sync set at failover speed, not at the
 * in-sync round's, with their stand-ins in the same swap: its writes wait on neither for long.
 * Undefined when none of its in-sync followers is silent.
 */
export function shedProposal(
  p: number, rec: PartitionRecord, self: NodeId, see: Perception, inputs: PlacementInputs, n: number,
): { next: PartitionRecord; shed: NodeId[] } | undefined {
  if (rec.leader !== self) return undefined;
  const shed = silentFollowers(rec, self, see);
  if (shed.length === 0) return undefined;
  const { silent, healthy } = standInInputs(inputs, shed);
  const next = withStandIns(p, { ...rec, isr: rec.isr.filter((x) => !shed.includes(x)) }, rec, healthy, silent, n);
  if (!next.isr.includes(self) || next.epoch !== rec.epoch) throw new Error(`shedding followers of partition ${p}: the leader and its epoch stay`);
  return { next, shed };
}

/** Appends a leader's sampled seq and keeps the last 2 × lagMs of them. */
export function recordSeq(history: Array<[atMs: number, seq: number]>, nowMs: number, seq: number, lagMs: number): void {
  history.push([nowMs, seq]);
  while (history.length > 0 && nowMs - history[0][0] > 2 * lagMs) history.shift();
}

/** The leader's seq lagMs ago (the newest sample at least that old), if it has one. */
export function seqAgo(history: ReadonlyArray<[number, number]>, nowMs: number, lagMs: number): number | undefined {
  return history.filter(([t]) => nowMs - t >= lagMs).at(-1)?.[1];
}

function judges(pos: LeaderPosition, past: number | undefined, see: Perception) {
  const incomplete = (n: NodeId) => see.positionOf(n)?.[1] === 1;
  return {
    incomplete,
    inSync: (n: NodeId) => see.alive(n) && !incomplete(n) && pos.matched(n) >= pos.seq,
    /** silent, incomplete, or not yet where the leader was lagMs ago */
    failing: (n: NodeId) => !see.alive(n) || incomplete(n) || (past !== undefined && pos.matched(n) < past),
  };
}

/**
 * Joining takes two steps. First the leader counts a follower that holds everything it has (`add`:
 * the caller puts it in the view the replica counts, then remembers that view's version), and stops
 * counting a joiner that fell silent, incomplete or behind (`drop`), so a slow joiner never holds
 * confirmations up. `pending`: the joiners counted so far, with the view version that added them.
 */
export function joiningChanges(
  rec: PartitionRecord, pos: LeaderPosition, pending: ReadonlyMap<NodeId, number>, past: number | undefined, see: Perception,
): { add: NodeId[]; drop: NodeId[] } {
  const j = judges(pos, past, see);
  const add = rec.replicas.filter((n) => !rec.isr.includes(n) && !pending.has(n) && j.inSync(n));
  const drop = [...pending.keys()].filter((n) => rec.isr.includes(n) || j.failing(n));
  return { add, drop };
}

/**
 * Second step, and leaving: the in-sync set the leader writes. A joiner is in once the replica holds
 * the view that added it (an older view may count it too, from before it last left, but a later one
 * that drops it may still be on its way) and it holds every confirmed write; a follower that is
 * silent, incomplete or behind where the leader was lagMs ago is out. Failover can then only pick a
 * replica holding every confirmed write. Undefined when nothing changes.
 */
export function inSyncChange(
  rec: PartitionRecord, self: NodeId, pos: LeaderPosition, pending: ReadonlyMap<NodeId, number>, past: number | undefined, see: Perception,
): { isr: NodeId[]; joined: NodeId[]; left: NodeId[] } | undefined {
  const j = judges(pos, past, see);
  const joined = [...pending].filter(([n, v]) => pos.view >= v && pos.matched(n) >= pos.confirmedSeq).map(([n]) => n);
  const left = rec.isr.filter((n) => n !== self && j.failing(n));
  if (joined.length === 0 && left.length === 0) return undefined;
  const isr = rec.replicas.filter((n) => (rec.isr.includes(n) && !left.includes(n)) || joined.includes(n));
  return { isr, joined, left };
}

/**
 * A planned leadership move: the leader refuses writes (each is retried by the node that routed
 * it, at the new leader) for at most this long while its successor catches up on its last entries
 * and its pending writes are confirmed, and gives up if they are not...
 */
export const HAND_OFF_WAIT_MS = 150;
/**
 * ...then until the record change lands, at most this long in all: a change slower than that (etcd
 * stalled) would let it take writes its successor lacks, which end OUTCOME_UNKNOWN
 */
export const HAND_OFF_FENCE_MS = 2_000;
/** ...tried only when the successor was at most this many entries behind at the last sample */
export const HAND_OFF_LAG_MAX = 100;
/** ...and not again for this long after one that timed out, so a slow successor cannot keep writes refused */
export const HAND_OFF_RETRY_MS = 1_000;

/** what the leader knows when it considers handing over */
export interface HandOffView {
  /** suspected by this node's failure detector */
  silent(n: NodeId): boolean;
  /** the leader's seq at the last sample, and the highest seq each follower acknowledged (-1: none) */
  seq: number;
  matched(n: NodeId): number;
  /** when its last hand-off of this partition timed out, if one did */
  failedAtMs: number | undefined;
  nowMs: number;
}

/**
 * Placement moves leadership off a live leader (a move ends, the leader is leaving, the preferred
 * leader changed): the leader hands it over itself, rather than the controller moving it under
 * it. It may start a hand-off (src/actors/handoff.ts fences it until the successor holds every
 * entry it has) when the planned leader is a live member of the in-sync set — it then holds every
 * confirmed write, whatever else the fence waits for — close behind, and no hand-off of this
 * partition timed out just now. The successor leads a term of its own (epoch + 1), so anything
 * the old leader still sends is fenced out by epoch. Returns the record to propose once the
 * successor is ready, or undefined: no hand-off now.
 */
export function handOffTarget(rec: PartitionRecord, planned: PartitionRecord, self: NodeId, v: HandOffView): PartitionRecord | undefined {
  if (rec.leader !== self || planned.leader === self) return undefined;
  const to = planned.leader;
  if (v.silent(to) || !rec.isr.includes(to) || !planned.isr.includes(to)) return undefined;
  if (planned.epoch !== rec.epoch + 1) return undefined; // not a move of leadership placement made
  if (v.matched(to) < v.seq - HAND_OFF_LAG_MAX) return undefined;
  if (v.nowMs - (v.failedAtMs ?? -Infinity) < HAND_OFF_RETRY_MS) return undefined;
  return planned;
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** Two views that differ at most in their version (and record revision): a replica needs no new one. */
export function sameView(a: Omit<ReplicaView, 'version'>, b: Omit<ReplicaView, 'version'>): boolean {
  return a.epoch === b.epoch && a.leader === b.leader && a.copies === b.copies && (a.spares ?? 0) === (b.spares ?? 0)
    && sameList(a.replicas, b.replicas) && sameList(a.live, b.live) && sameList(a.isr, b.isr);
}
