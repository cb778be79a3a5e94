// Placement of cluster partitions on nodes by rendezvous hashing: pure functions, no I/O.
// Rendezvous gives minimal disruption for free: a node joining takes a slot only where it outranks
// a current holder, and a node leaving frees only the slots it held.
import { murmur3Text } from '../runtime/hash.js';
import { type NodeId, epoch } from '../runtime/ids.js';
import { type PartitionRecord, partitionProblem } from './layout.js';

// rank() scores every node of every partition each controller round: murmur3Text encodes into a
// reused buffer (an allocation per score cost 3–4× the hash)
function score(partition: number, node: NodeId): number {
  return murmur3Text(`${partition}\0${node}`);
}

function checkPartition(partition: number): void {
  if (!Number.isSafeInteger(partition) || partition < 0) throw new Error(`placement: bad partition ${partition}`);
}

/** Every node, best first: highest murmur3(`partition\0nodeId`), ties by node id. */
export function rank(partition: number, nodes: readonly NodeId[]): NodeId[] {
  checkPartition(partition);
  if (new Set(nodes).size !== nodes.length) throw new Error('placement: duplicate node ids');
  return nodes
    .map((id) => ({ id, s: score(partition, id) }))
    .sort((a, b) => b.s - a.s || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map((x) => x.id);
}

/** The partition's target replica set: the first `n` live nodes by rank (fewer if fewer are live). */
export function replicasFor(partition: number, liveNodes: readonly NodeId[], n: number): NodeId[] {
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`placement: replication factor ${n} must be >= 1`);
  return rank(partition, liveNodes).slice(0, n);
}

/** The record a partition gets when the cluster creates it: nothing to copy, so all are in sync. */
export function initialRecord(partition: number, liveNodes: readonly NodeId[], n: number): PartitionRecord {
  const replicas = replicasFor(partition, liveNodes, n);
  if (replicas.length === 0) throw new Error(`placement: no live node for partition ${partition}`);
  return { epoch: epoch(1), leader: replicas[0], replicas, isr: [...replicas] };
}

const sameList = (a: readonly NodeId[], b: readonly NodeId[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * The next record of one partition on its way to the target set over `liveNodes`.
 *
 * - Nothing in sync is live: returned unchanged. Moving would lose acked data; the caller decides.
 * - Every target node is in sync: the final record, `replicas = isr = target`, led by the first-ranked;
 *   if that moves leadership off a live replica the target drops, first a record that moves it and
 *   keeps that replica, then the final one.
 * - Otherwise a move is in progress: `replicas` is the target plus the live in-sync copies it
 *   replaces (they keep serving until the newcomers catch up and are added to the isr by the leader),
 *   and the leader stays where it is while it is live and in sync.
 *
 * The epoch grows by one exactly when the leader changes. The unchanged input object is returned
 * when nothing changes, so callers can skip the CAS.
 */
export function planPartition(
  partition: number,
  liveNodes: readonly NodeId[],
  n: number,
  current: PartitionRecord | undefined,
  /** nodes that take no new replicas but keep serving theirs until replaced (leaving nodes) */
  draining: readonly NodeId[] = [],
): PartitionRecord {
  if (!current) return initialRecord(partition, liveNodes, n);
  const problem = partitionProblem(current);
  if (problem) throw new Error(`placement: partition ${partition}: ${problem}`);
  const live = new Set([...liveNodes, ...draining]);
  const liveIsr = current.isr.filter((x) => live.has(x));
  if (liveIsr.length === 0) return current;

  const target = replicasFor(partition, liveNodes, n);
  const caughtUp = target.every((t) => liveIsr.includes(t));
  // A move that ends with a new leader hands leadership over one round before it drops the old
  // leader's copy: that replica answers its pending writes once its successor confirms them, which
  // it can no longer learn once removed (they would end OUTCOME_UNKNOWN).
  const handOver = caughtUp && !target.includes(current.leader) && liveIsr.includes(current.leader);
  const replicas = handOver ? [...target, current.leader] : caughtUp ? target : [...target, ...liveIsr.filter((x) => !target.includes(x))];
  const isr = replicas.filter((x) => liveIsr.includes(x));
  const leader = !caughtUp && isr.includes(current.leader) ? current.leader : isr[0];

  if (leader === current.leader && sameList(replicas, current.replicas) && sameList(isr, current.isr)) return current;
  const next: PartitionRecord = { epoch: epoch(leader === current.leader ? current.epoch : current.epoch + 1), leader, replicas, isr };
  const bad = partitionProblem(next);
  if (bad) throw new Error(`placement: planned partition ${partition}: ${bad}`);
  if (next.epoch < current.epoch) throw new Error(`placement: epoch of partition ${partition} would decrease`);
  return next;
}

/** `planPartition` for every partition `0..P-1`; `current[p]` is partition p's record, if any. */
export function planPlacement(
  P: number,
  liveNodes: readonly NodeId[],
  n: number,
  current: ReadonlyArray<PartitionRecord | undefined>,
): PartitionRecord[] {
  if (!Number.isSafeInteger(P) || P < 1) throw new Error(`placement: partition count ${P} must be >= 1`);
  if (current.length > P) throw new Error(`placement: ${current.length} records for ${P} partitions`);
  const out: PartitionRecord[] = [];
  for (let p = 0; p < P; p++) out.push(planPartition(p, liveNodes, n, current[p]));
  return out;
}

/** What the controller and the failover see of the members: placement's inputs. */
export interface PlacementInputs {
  /** registered members that take replicas ('joining', 'up'), sorted */
  live: readonly NodeId[];
  /** members draining their replicas: they keep serving until replaced */
  leaving: readonly NodeId[];
  /** live members this node suspects (silent past the suspicion bar) */
  silent: ReadonlySet<NodeId>;
  /** live members not suspected, sorted: the lowest is the controller */
  healthy: readonly NodeId[];
}

/**
 * Keep N reachable copies while replicas are silent: stand-ins already added stay, more are taken
 * in rendezvous order from healthy nodes. The silent replicas stay in the set, so a pause costs a
 * temporary copy, never the paused node's own data.
 */
export function withStandIns(p: number, planned: PartitionRecord, current: PartitionRecord, healthy: readonly NodeId[], silent: ReadonlySet<NodeId>, n: number): PartitionRecord {
  const reachable = planned.replicas.filter((x) => !silent.has(x));
  if (reachable.length >= n || silent.size === 0) return planned;
  const candidates = [
    ...current.replicas.filter((x) => healthy.includes(x) && !planned.replicas.includes(x)),
    ...rank(p, healthy).filter((x) => !planned.replicas.includes(x) && !current.replicas.includes(x)),
  ];
  const add = candidates.slice(0, n - reachable.length);
  return add.length === 0 ? planned : { ...planned, replicas: [...planned.replicas, ...add] };
}

/** The record placement wants next for partition `p`: rendezvous over the live nodes, with stand-ins for silent replicas. */
export function plannedRecord(p: number, current: PartitionRecord, inputs: PlacementInputs, n: number): PartitionRecord {
  return withStandIns(p, planPartition(p, inputs.live, n, current, inputs.leaving), current, inputs.healthy, inputs.silent, n);
}

/** partitions the controller starts moving at once: rebalancing never swamps the foreground */
export const MOVES_AT_ONCE = 1;

/** one record change the controller proposes (by compare-and-swap on the record it was planned from) */
export interface ControlChange { partition: number; next: PartitionRecord; reason: string }

const sameRecord = (a: PartitionRecord, b: PartitionRecord) =>
  a.epoch === b.epoch && a.leader === b.leader && sameList(a.replicas, b.replicas) && sameList(a.isr, b.isr);

/**
 * One round of the controller: only the lowest healthy node acts (so two controllers rarely race,
 * and CAS makes a race harmless). Each partition's record moves toward `plannedRecord`, except:
 * - a move of leadership: the controller never moves it. A live leader hands it over itself
 *   (decide.ts handOffTarget), so its pending writes are answered before it steps down; a silent
 *   or gone one is replaced by failover (decide.ts failoverProposal), which elects only a replica
 *   whose copy is complete and furthest ahead, and which claims it first. An in-sync replica may
 *   be installing a copy: made leader by placement's rank alone, it would lead from a partial store;
 * - a move that would start while MOVES_AT_ONCE partitions are already moving (replicas outside
 *   the in-sync set), unless it brings a stand-in for a silent replica: copies are throttled,
 *   lost redundancy is not.
 * `records`: the partitions' current records (a partition with no record is left out).
 */
export function controlRound(
  records: ReadonlyArray<{ readonly partition: number; readonly record: PartitionRecord }>,
  inputs: PlacementInputs,
  n: number,
  self: NodeId,
): ControlChange[] {
  const { silent, healthy } = inputs;
  if (healthy.length === 0 || healthy[0] !== self) return [];
  const reason = silent.size > 0 ? `placement; silent: ${[...silent].join(',')}` : 'placement';
  let moving = records.filter(({ record: r }) => r.replicas.length !== r.isr.length).length;
  const out: ControlChange[] = [];
  for (const { partition, record } of records) {
    const next = plannedRecord(partition, record, inputs, n);
    if (sameRecord(next, record)) continue;
    if (next.leader !== record.leader) continue; // handed over by the leader, or failover's
    const starts = record.replicas.length === record.isr.length && next.replicas.length !== next.isr.length;
    const standIn = silent.size > 0 && next.replicas.some((x) => !record.replicas.includes(x));
    if (starts && moving >= MOVES_AT_ONCE && !standIn) continue; // throttled
    if (starts) moving++;
    if (next.epoch < record.epoch) throw new Error(`placement: epoch of partition ${partition} would decrease`);
    out.push({ partition, next, reason });
  }
  return out;
}

export interface Move { partition: number; add: NodeId[]; remove: NodeId[] }
export interface Movement {
  /** partitions whose replica set changes */
  partitions: number;
  /** copies to create: each is a full transfer of the partition's data */
  slotsAdded: number;
  /** copies to delete once the move is done */
  slotsRemoved: number;
  /** Σ bytesOf(p) over added copies (0 without `bytesOf`) */
  bytes: number;
  moves: Move[];
}

/** What it takes to go from `before` to `after` (indexed by partition; a missing entry holds nothing). */
export function movedPartitions(
  before: ReadonlyArray<{ readonly replicas: readonly NodeId[] } | undefined>,
  after: ReadonlyArray<{ readonly replicas: readonly NodeId[] } | undefined>,
  bytesOf: (partition: number) => number = () => 0,
): Movement {
  const m: Movement = { partitions: 0, slotsAdded: 0, slotsRemoved: 0, bytes: 0, moves: [] };
  const count = Math.max(before.length, after.length);
  for (let p = 0; p < count; p++) {
    const b = before[p]?.replicas ?? [];
    const a = after[p]?.replicas ?? [];
    const add = a.filter((x) => !b.includes(x));
    const remove = b.filter((x) => !a.includes(x));
    if (add.length === 0 && remove.length === 0) continue;
    m.partitions++;
    m.slotsAdded += add.length;
    m.slotsRemoved += remove.length;
    m.bytes += add.length * bytesOf(p);
    m.moves.push({ partition: p, add, remove });
  }
  return m;
}
