// A follower installing a full copy of its partition from the leader, part by part. The worker runs
// it over RocksDB, the simulator (test/sim) over its in-memory store: both are a CopyHost.
import { seq, type NodeId } from '../runtime/ids.js';
import * as K from '../storage/keys.js';
import { initialState, metaOp, type Op, type PartitionState } from './partition.js';
import { hintRange, type PeerMessage, type Replica, type ReplicaView } from './replica.js';
import type { SnapshotAck } from './messages.js';

/**
 * A copy none of whose parts arrived for this long is abandoned (the leader sends a new one): more
 * than the widest gap between parts (limits.copyPartIntervalMsMax) plus a lost part's resend.
 */
export const INSTALL_STALL_MS = 5_000;

export interface Installing { from: NodeId; copy: number; nextPart: number; lastPartAtMs: number; meta?: Buffer }

/** the partition's side of a copy: its replica, store and links */
export interface CopyHost {
  readonly self: NodeId;
  readonly replica: Replica;
  installing?: Installing;
  /** no complete copy is held (durable as K.installingKey): never electable */
  incomplete: boolean;
  /** this node proposes the replica to lead `epoch` */
  readonly claim?: { epoch: number; untilMs: number };
  nowMs(): number;
  /** writes queued so far land before what follows */
  flush(): void;
  /** deletes a range before the next read */
  clear(range: { gte: Uint8Array; lt: Uint8Array }): void;
  apply(ops: Op[]): void;
  /** swaps in a replica of `state` under `view`, keeping the current one's hinted entries (newer than any copy) */
  replace(state: PartitionState, view: ReplicaView): void;
  /** the state the store holds (recovery.ts loadState) */
  load(): PartitionState;
  send(to: NodeId, msg: PeerMessage | SnapshotAck): void;
}

export interface CopyPart {
  epoch: number;
  from: NodeId;
  copy: number;
  part: number;
  last: boolean;
  entries: Iterable<readonly [Uint8Array, Uint8Array]>;
}

export type PartOutcome = 'ignored' | 'abandoned' | 'accepted' | 'installed';

/**
 * One part of a copy. Part 0 starts over from empty: until the copy is complete the partition holds
 * nothing it may claim, in memory or on disk, so a crash mid-copy restarts empty, never with a
 * partial copy under the leader's position. A part out of order abandons the copy. The last part
 * writes the meta, clears the installing mark and loads the state.
 */
export function receivePart(h: CopyHost, c: CopyPart): PartOutcome {
  const r = h.replica;
  if (c.epoch < r.state.epoch) return 'ignored';
  // Its node is proposing it to lead a newer epoch, as it is: a copy now would wipe it.
  if (c.part === 0 && h.claim && c.epoch < h.claim.epoch && h.nowMs() < h.claim.untilMs) return 'ignored';
  if (c.part === 0) {
    h.flush();
    h.clear(K.copyRange);
    h.replace(initialState(r.state.id, r.state.epoch, seq(0)), r.view);
    h.apply([metaOp(h.replica.state), { type: 'put', key: K.installingKey, value: Buffer.alloc(0) }]);
    h.installing = { from: c.from, copy: c.copy, nextPart: 0, lastPartAtMs: h.nowMs() };
    h.incomplete = true;
  }
  const inst = h.installing;
  if (!inst || c.part !== inst.nextPart || c.copy !== inst.copy) {
    // out of order: the leader starts over when it next probes
    return abandonCopy(h) ? 'abandoned' : 'ignored';
  }
  inst.nextPart++;
  inst.lastPartAtMs = h.nowMs();
  h.send(c.from, { t: 'snapAck', p: h.replica.state.id, from: h.self, copy: c.copy, part: c.part });
  const ops: Op[] = [];
  for (const [key, value] of c.entries) {
    const k = Buffer.from(key);
    if (k.equals(K.metaKey)) inst.meta = Buffer.from(value); // written last, with the final part
    else ops.push({ type: 'put', key: k, value: Buffer.from(value) });
  }
  if (ops.length > 0) h.apply(ops);
  if (!c.last) return 'accepted';
  if (inst.meta) h.apply([{ type: 'put', key: K.metaKey, value: inst.meta }]);
  h.apply([{ type: 'del', key: K.installingKey }]);
  h.flush();
  h.installing = undefined;
  h.incomplete = false;
  h.replace(h.load(), { ...h.replica.view, epoch: c.epoch as ReplicaView['epoch'], leader: c.from });
  h.replica.copy = c.copy;
  const s = h.replica.state;
  h.send(c.from, { t: 'ack', p: s.id, epoch: s.epoch, from: h.self, seq: s.seq, end: s.seq, copy: c.copy, hint: hintRange(h.replica) });
  h.flush();
  return 'installed';
}

/**
 * A copy that stopped arriving (a part lost, its sender no longer leads): back to empty, still
 * incomplete, and the sender is told, which starts a new copy. False when no copy was in progress.
 */
export function abandonCopy(h: CopyHost): boolean {
  if (!h.installing) return false;
  const { from, copy } = h.installing;
  h.installing = undefined;
  h.flush(); // parts still in the open batch land before the clear, not on top of it
  h.clear(K.contentRange);
  h.replace(initialState(h.replica.state.id, h.replica.state.epoch, seq(0)), h.replica.view);
  h.apply([metaOp(h.replica.state)]);
  h.replica.copy = copy; // reporting the copy it gave up on lets its leader start a new one
  askForCopy(h, from);
  return true;
}

/** A stalled copy is abandoned (called on every tick). */
export function abandonStalledCopy(h: CopyHost): boolean {
  return h.installing !== undefined && h.nowMs() - h.installing.lastPartAtMs > INSTALL_STALL_MS && abandonCopy(h);
}

export function askForCopy(h: CopyHost, to: NodeId): void {
  const s = h.replica.state;
  h.send(to, { t: 'nack', p: s.id, epoch: s.epoch, from: h.self, seq: s.seq, reason: 'diverged', copy: h.replica.copy, hint: hintRange(h.replica) });
}
