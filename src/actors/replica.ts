// Replication of one partition, as a pure transition: handle(replica, message, now) → effects.
// The leader orders every write (the partition `step` assigns its seq), stores it as a log entry
// and sends it to the other replicas; a follower fences out stale epochs and applies entries
// strictly in seq order, so every replica runs the same commands on the same state. No I/O here:
// the worker executes the effects, and test/sim runs the same code under a seeded simulator.
import assert from 'node:assert/strict';
import type { Epoch, NodeId } from '../runtime/ids.js';
import type { ErrorCode } from '../runtime/errors.js';
import { diskCodec } from '../runtime/codec.js';
import * as K from '../storage/keys.js';
import { limits } from '../runtime/limits.js';
import { batchBaseOffset, batchCrc } from '../protocol/batch.js';
import { copiesOp, metaOp, recordBytes, step, streamKeyOf, type Command, type Op, type PartitionState, type ProduceResult, type Reply } from './partition.js';

export type Acks = 'none' | 'one' | 'all';

/** One replicated mutation: everything a follower needs to reproduce the leader's step exactly. */
export interface Entry { seq: number; epoch: number; now: number; cmd: Command }

export type PeerMessage =
  /**
   * entries after (prevSeq, prevEpoch); empty entries probe a follower's position; `at`: when sent,
   * on the leader's clock; `hw`: the leader's watermark then, held by `hwCopies` replicas (a former
   * leader answers its pending writes from them); `rev`: the revision of the partition record the
   * leader's view comes from (ReplicaView.rev; absent from a leader that does not know it)
   */
  | { t: 'append'; p: number; epoch: number; leader: NodeId; prevSeq: number; prevEpoch: number; entries: Entry[]; at: number; hw?: number; hwCopies?: number; rev?: number }
  /**
   * `seq`: the follower holds the leader's history up to here (verified by this message's
   * prevSeq/prevEpoch and entries); `end`: its own last seq, which may be further and unverified;
   * `echo`: the `at` of the append answered (absent: it answers none, as after a full copy).
   */
  | { t: 'ack'; p: number; epoch: number; from: NodeId; seq: number; end: number; copy: number; echo?: number; hint?: HintRange }
  /**
   * `copy` (on acks too): the last full copy this replica installed or gave up on; `hint` (on acks
   * too): the entries of its epoch it holds past its log (Hints), first and last seq
   */
  | { t: 'nack'; p: number; epoch: number; from: NodeId; seq: number; reason: 'stale-epoch' | 'gap' | 'diverged'; copy: number; echo?: number; hint?: HintRange };

export type AppendMessage = Extract<PeerMessage, { t: 'append' }>;
export type HintRange = [first: number, last: number];

/**
 * Entries a follower holds past a gap in its log (hinted handoff, as Dynamo's): a replica still
 * catching up, such as a stand-in for a failed one, keeps what its leader sends meanwhile on disk
 * and reports it, so the leader counts it as a holder of those writes at once: acks=all writes
 * keep N copies through a failover without waiting for the partition's history to be copied.
 * They continue the leader's log of `epoch` after (prevSeq, prevEpoch), and are applied once
 * this replica's own log reaches them. `full`: limits.hintBytesMax was reached; what follows
 * waits for the gap to close. On disk an entry stays until the replica's log passes its seq, even
 * once the run is forgotten (a newer epoch): a leader may have counted it just before, and an
 * entry it confirmed is in every later leader's log at that seq, so the log then holds it too.
 */
export interface Hints { epoch: number; prevSeq: number; prevEpoch: number; entries: Entry[]; bytes: number; full: boolean }

export type Role = 'leader' | 'follower' | 'none';

export interface ReplicaView {
  /** the epoch, leader and replica set the coordinator last told this replica */
  epoch: Epoch;
  leader: NodeId | null;
  replicas: NodeId[];
  /** replicas currently reachable, as the failure detector sees them */
  live: NodeId[];
  /** healthy nodes outside the replica set: one can stand in for an unreachable replica (default 0) */
  spares?: number;
  /** copies an acks=all write needs (the replication factor N); during a move `replicas` has more */
  copies: number;
  /** replicas that may be elected leader (they hold every acked write) */
  isr: NodeId[];
  /**
   * Which of its node's views this is: the coordinator numbers them in the order it hands them
   * out, and they arrive in that order. A leader reports the one it holds, so the coordinator knows
   * its replica has taken a decision in (cluster.ts maintainInSync).
   */
  version: number;
  /**
   * The partition record's revision in etcd (its modRevision) this view comes from; absent: unknown
   * (a node without a coordinator). Record revisions grow with every change, so a view of a lower
   * revision than the replica has seen is older news (see staleView).
   */
  rev?: number;
}

/**
 * `epoch`: which epoch wrote the entry at `seq` (a leader that steps down checks its successor kept
 * it); `retry`: a retry of an earlier write at or before `seq` (holdersThrough counts its copies)
 */
interface PendingWrite { id: number; seq: number; epoch: number; acks: Acks; deadlineMs: number; res: unknown; retry?: boolean }

export interface Replica {
  readonly self: NodeId;
  state: PartitionState;
  role: Role;
  view: ReplicaView;
  /** leader only: the highest seq each follower holds (from its acks) */
  matched: Map<NodeId, number>;
  /** leader only: when each follower's position last advanced */
  progressAtMs: Map<NodeId, number>;
  /**
   * leader only: per follower, the latest send time (this leader's clock) of an append it has
   * answered in this epoch: the read lease runs from there. Not the time the answer arrived: an
   * answer held up on a cut link arrives after its sender may have started a failover.
   */
  answeredAt: Map<NodeId, number>;
  /** leader only: when each follower was last sent anything */
  sentAtMs: Map<NodeId, number>;
  /**
   * leader only: the last gap fill sent to each follower (from which seq, and when). A follower
   * behind nacks every live append until the fill lands; each nack must not send the log again.
   */
  filling: Map<NodeId, { fromSeq: number; atMs: number }>;
  /** leader only: the next gap fill of a follower outside the in-sync set, held for its turn (CATCH_UP_PART_MS) */
  fillDue: Map<NodeId, number>;
  /**
   * leader only: the full copy last started for each follower (its id, and when). Anything the
   * follower says about an older copy does not count until it reports this one (or
   * SNAPSHOT_ACK_TIMEOUT_MS passes): an ack sent before the install may cover entries the install
   * then removes.
   */
  copying: Map<NodeId, { id: number; atMs: number }>;
  /** follower: id of the last full copy installed (or abandoned) here; 0 after a restart */
  copy: number;
  /** follower: entries held past a gap in its log (see Hints) */
  hints: Hints | undefined;
  /** follower: the seqs hinted entries may occupy on disk (this run's and forgotten ones') */
  hintsOnDisk: HintRange | undefined;
  /** leader only: what each follower last reported holding past its log (its Hints) */
  hinted: Map<NodeId, HintRange>;
  /**
   * leader: the high watermark, the highest seq every in-sync replica holds. Failover elects only
   * in-sync replicas, so nothing up to here can be lost: readers see up to here and no further,
   * and acks=all writes are confirmed up to here. A follower joins the in-sync set only once it
   * holds this much while the leader already counts it (see cluster.ts maintainInSync).
   */
  confirmedSeq: number;
  /**
   * leader: its seq when it took office. Its predecessor's watermark is unknown, and entries it
   * holds above it were never shown to a reader, so it answers no read until they are confirmed.
   */
  readBarrier: number;
  /**
   * leader: its writes above confirmedSeq, oldest first, with the row (KV key, group offset) or
   * stream each changed: the row's stored bytes after it (null: deleted), the stream's end after it
   */
  unconfirmed: Array<{ seq: number; key: string; rowAfter?: Buffer | null; endAfter?: number; bytes: number }>;
  /** leader: about the memory `unconfirmed` and `hidden` hold (limits.unconfirmedBytesMax) */
  unconfirmedBytes: number;
  /**
   * leader: each row or stream with unconfirmed writes: the last one's seq, and what readers see
   * meanwhile: the row's confirmed bytes (null: absent), the stream's confirmed end.
   */
  hidden: Map<string, { lastSeq: number; row?: Buffer | null; visibleEnd?: number }>;
  /** leader only: writes applied here that wait for more copies, in seq order */
  pending: PendingWrite[];
  /**
   * leader only: it is handing leadership to `to` and refuses writes until `untilMs` (they did not
   * run: NOT_LEADER), so that its successor can hold every entry it has before it takes over.
   */
  fence: { to: NodeId; untilMs: number } | undefined;
  /**
   * When this replica last answered an append from a leader (its own clock); until its first
   * message after a start, unknown (it may have answered one just before it went down).
   */
  answeredLeaderAtMs: number | undefined;
  /**
   * leader: no read before this time. A leader it answered may hold a read lease until
   * READ_LEASE_MS after that answer (if their link healed just as this one was elected, it
   * answered appends sent while it was already deciding).
   */
  readsFromMs: number;
  /**
   * The highest partition record revision this replica has seen: in the views it took, or in a
   * leader's appends it accepted (that leader's view). A view from an older record is ignored.
   */
  seenRev: number;
}

/** A follower whose position has not moved for this long while behind is probed for it. */
export const PROBE_AFTER_MS = 200;
/** A leader hears from every electable follower at least this often (probes keep it so). */
export const HEARTBEAT_MS = 100;
/**
 * A tick beats to a follower it last sent to at least this long ago: over half of HEARTBEAT_MS, so
 * ticks HEARTBEAT_MS apart beat every time, even after one that ran late or a little early, and
 * ticks half as far apart every other time.
 */
const BEAT_AFTER_MS = HEARTBEAT_MS / 2 + 1;
/**
 * A leader answers reads only while every other in-sync replica has answered an append it sent
 * within this time: each of them heard from it since, so none can have started a failover (that
 * takes 300 ms of silence, 225 ms for a leader whose process is gone), and no newer leader can
 * have acknowledged a write this one lacks.
 */
export const READ_LEASE_MS = 200;
/**
 * A follower outside the in-sync set gets at most one catch-up message (limits.catchUpEntriesMax,
 * catchUpBytesMax) per this, as a full copy sends one part per worker tick.
 */
export const CATCH_UP_PART_MS = 50;
/**
 * a full copy of which no part was acknowledged (copyProgress), nor its install, in this time is
 * presumed lost; a paced copy of a large partition takes minutes, and its follower's reports stay
 * stale (it may not be asked for a second copy) as long as parts arrive
 */
export const SNAPSHOT_ACK_TIMEOUT_MS = 10_000;

export type Effect =
  | { kind: 'write'; ops: Op[] }
  | { kind: 'reply'; id: number; reply: Reply; replicas?: number }
  | { kind: 'send'; to: NodeId; msg: PeerMessage }
  /**
   * read log entries after fromSeq (up to limits.catchUpEntriesMax) and send them to `to`, sent at
   * `at`; snapshot if the log no longer has them
   */
  | { kind: 'resend'; to: NodeId; fromSeq: number; at: number }
  /** stream a full copy of this partition to `to` (its history diverged or is too old) */
  | { kind: 'snapshot'; to: NodeId; copy: number }
  /** this replica's role changed; the runtime starts or stops leader-only work */
  | { kind: 'role'; role: Role }
  /** this node no longer holds the partition: remove its copy */
  | { kind: 'drop' }
  /** leader: readers of these streams may now see up to `end` (tails and long polls wake) */
  | { kind: 'visible'; streams: Array<[skey: string, end: number, epoch: number]> };

export type ReplicaMessage =
  /** `prior`: the stored bytes of the command's row (rowOf) when needsPrior says so; null: none */
  | { type: 'write'; id: number; cmd: Command; acks: Acks; timeoutMs: number; prior?: Buffer | null }
  | { type: 'peer'; msg: PeerMessage }
  | { type: 'view'; view: ReplicaView }
  | { type: 'tick' }
  /** hand leadership to `to`: refuse writes until `untilMs` (see Replica.fence) */
  | { type: 'fence'; to: NodeId; untilMs: number }
  /** the hand-off is off: take writes again */
  | { type: 'unfence' }
  /** the log no longer reaches back to what `to` needs: it gets a full copy */
  | { type: 'logMissing'; to: NodeId }
  /** `to` took a part of copy `copy`: it is alive, and SNAPSHOT_ACK_TIMEOUT_MS counts from now */
  | { type: 'copyProgress'; to: NodeId; copy: number };

/**
 * A replica of `state`, as yet without a role. The caller then hands it its view as a message
 * (`handle(r, { type: 'view', view })`), so that adopting a newer epoch also writes it to disk.
 */
export function createReplica(self: NodeId, state: PartitionState, view: ReplicaView): Replica {
  return {
    self, state, role: 'none', view: { ...view, epoch: state.epoch, leader: null },
    matched: new Map(), progressAtMs: new Map(), answeredAt: new Map(), sentAtMs: new Map(), filling: new Map(), fillDue: new Map(), copying: new Map(), pending: [], fence: undefined,
    copy: 0, hints: undefined, hintsOnDisk: undefined, hinted: new Map(), confirmedSeq: 0, readBarrier: 0, unconfirmed: [], unconfirmedBytes: 0, hidden: new Map(), answeredLeaderAtMs: undefined, readsFromMs: 0, seenRev: 0,
  };
}

/** Which epoch wrote `seq` (0 for seq 0: the empty history every replica shares). */
export function epochOf(s: PartitionState, seq: number): number {
  if (seq <= 0) return 0;
  let e = 0;
  for (const [epoch, first] of s.epochs) {
    if (first > seq) break;
    e = epoch;
  }
  return e;
}

/**
 * A log entry on disk: msgpack, except a produce of a record batch, which is a tag byte msgpack
 * never uses, the entry without its batch (u32 length, msgpack), then the batch's bytes as they are.
 */
const ENTRY_WITH_BATCH_TAG = 0xc1;
const ENTRY_HEAD_BYTES = 5;

export function encodeEntry(e: Entry): Buffer {
  const c = e.cmd;
  if (c.op !== 'produce' || !c.batch) return diskCodec.encode(e);
  const { batch, ...cmd } = c;
  const head = diskCodec.encode({ ...e, cmd });
  const out = Buffer.allocUnsafe(ENTRY_HEAD_BYTES + head.length + batch.length);
  out[0] = ENTRY_WITH_BATCH_TAG;
  out.writeUInt32BE(head.length, 1);
  out.set(head, ENTRY_HEAD_BYTES);
  out.set(batch, ENTRY_HEAD_BYTES + head.length);
  return out;
}

export function decodeEntry(v: Uint8Array): Entry {
  if (v[0] !== ENTRY_WITH_BATCH_TAG) return diskCodec.decode<Entry>(v);
  const n = new DataView(v.buffer, v.byteOffset + 1, 4).getUint32(0);
  const e = diskCodec.decode<Entry>(v.subarray(ENTRY_HEAD_BYTES, ENTRY_HEAD_BYTES + n));
  assert.equal(e.cmd.op, 'produce', 'only a produce carries a batch beside its entry');
  (e.cmd as Extract<Command, { op: 'produce' }>).batch = v.subarray(ENTRY_HEAD_BYTES + n);
  return e;
}

/**
 * A log entry as the log stores it: a produce's batch is not repeated there. The stream already
 * holds those bytes under the batch's base offset, stamped, so the entry names them (base, length,
 * CRC) and a resend reads them back from the stream. Hinted entries and messages carry the bytes.
 */
export function encodeLogEntry(e: Entry): Buffer {
  const c = e.cmd;
  if (c.op !== 'produce' || !c.batch) return encodeEntry(e);
  const { batch, ...cmd } = c;
  const ref: BatchRef = [batchBaseOffset(batch), batch.length, batchCrc(batch)];
  return encodeEntry({ ...e, cmd: { ...cmd, ref } as Command });
}

/** where a log entry's batch is in its stream: base offset, length, CRC (they must all match) */
type BatchRef = [base: number, length: number, crc: number];

/**
 * A log entry read back from a partition's store, its batch from the stream when the log names it
 * (encodeLogEntry); undefined when retention (or a dropped stream) removed that batch: the entry
 * can no longer be resent, and a follower that needs it gets a full copy.
 */
export function readLogEntry(v: Uint8Array, store: { get(key: Uint8Array): Buffer | undefined }): Entry | undefined {
  const e = decodeEntry(v);
  const c = e.cmd as Extract<Command, { op: 'produce' }> & { ref?: BatchRef };
  if (c.op !== 'produce' || !c.ref) return e;
  const [base, length, crc] = c.ref;
  const batch = store.get(K.batchKey(c.topicId, c.tp, base));
  if (!batch || batch.length !== length || batchCrc(batch) !== crc) return undefined;
  const { ref: _ref, ...cmd } = c;
  return { ...e, cmd: { ...cmd, batch } };
}

/** Is this stored log entry one that carries its batch (the form the log stored before it named them)? */
export function carriesBatch(v: Uint8Array): boolean { return v[0] === ENTRY_WITH_BATCH_TAG; }

const EPOCH_HISTORY_MAX = 256;

/**
 * Is this view from an older partition record than one the replica has already seen? A node's
 * views come from its own etcd watch, which can lag while its peer links work: its leader's appends
 * then come from a newer record than its views. Acting on the older one could drop a copy a newer
 * record keeps (and that replica may already be in the in-sync set), or take back a role; the
 * views of the newer record follow.
 */
export function staleView(r: Replica, view: ReplicaView): boolean {
  return view.rev !== undefined && view.rev < r.seenRev;
}

function replyError(id: number, code: ErrorCode, ...args: unknown[]): Effect {
  return { kind: 'reply', id, reply: { ok: false, code, args } };
}

export function handle(r: Replica, m: ReplicaMessage, nowMs: number): Effect[] {
  r.answeredLeaderAtMs ??= nowMs;
  switch (m.type) {
    case 'write': return write(r, m, nowMs);
    case 'peer': return peer(r, m.msg, nowMs);
    case 'view': {
      if (staleView(r, m.view)) return [];
      const out: Effect[] = [];
      adoptView(r, m.view, out, nowMs);
      r.seenRev = Math.max(r.seenRev, m.view.rev ?? 0);
      return out;
    }
    case 'tick': return tick(r, nowMs);
    case 'fence':
      if (r.role === 'leader') r.fence = { to: m.to, untilMs: m.untilMs };
      return [];
    case 'unfence':
      r.fence = undefined;
      return [];
    case 'logMissing': return r.role === 'leader' ? copyTo(r, m.to, nowMs) : [];
    case 'copyProgress': {
      const current = r.copying.get(m.to);
      if (current?.id === m.copy) current.atMs = nowMs;
      return [];
    }
  }
}

/**
 * Copies an acks=all write needs: N. A replica set smaller than N (too few nodes) cannot give
 * them, and such writes fail fast rather than being acked on fewer.
 */
function needed(r: Replica): number { return r.view.copies; }

/**
 * Copies that hold everything through `seq`: this leader plus every follower whose log reaches it
 * (hinted entries hold only their own seqs).
 */
function holdersThrough(r: Replica, seq: number): number {
  let n = 1;
  for (const f of r.view.replicas) if (f !== r.self && (r.matched.get(f) ?? -1) >= seq) n++;
  return n;
}

/** Copies that hold `seq`: this leader plus every follower that acked it or reported it hinted. */
function holders(r: Replica, seq: number): number {
  let n = 1;
  for (const f of r.view.replicas) {
    if (f === r.self) continue;
    const hint = r.hinted.get(f);
    if ((r.matched.get(f) ?? -1) >= seq || (hint !== undefined && hint[0] <= seq && seq <= hint[1])) n++;
  }
  return n;
}

/**
 * An acks=all write is confirmed once N replicas hold it AND every in-sync replica does (it is
 * under the watermark): failover elects only in-sync replicas, so whichever wins holds every
 * confirmed write. A silent in-sync replica holds confirmations up until its leader removes it
 * from the set (after 300 ms).
 */
function confirmed(r: Replica, seq: number, retry = false): boolean {
  return seq <= r.confirmedSeq && (retry ? holdersThrough : holders)(r, seq) >= needed(r);
}

/** what one unconfirmed write costs beyond the bytes it holds, about */
const UNCONFIRMED_ENTRY_BYTES = 64;

/** Raise the watermark to what every in-sync replica holds; release what readers may now see. */
function advanceWatermark(r: Replica, out: Effect[]): void {
  let hw: number = r.state.seq;
  for (const n of r.view.isr) if (n !== r.self) hw = Math.min(hw, r.matched.get(n) ?? -1);
  if (hw <= r.confirmedSeq) return;
  const barrierPassed = r.confirmedSeq < r.readBarrier && hw >= r.readBarrier;
  r.confirmedSeq = hw;
  const streams = new Set<string>();
  let done = 0;
  for (; done < r.unconfirmed.length && r.unconfirmed[done].seq <= hw; done++) {
    const u = r.unconfirmed[done];
    r.unconfirmedBytes -= u.bytes;
    if (u.endAfter !== undefined) streams.add(u.key.slice(1));
    const h = r.hidden.get(u.key);
    if (!h) continue; // released with an earlier one: its last write is confirmed too
    if (h.lastSeq <= hw) r.hidden.delete(u.key);
    else if (u.endAfter !== undefined) h.visibleEnd = u.endAfter;
    else h.row = u.rowAfter;
  }
  if (done > 0) r.unconfirmed.splice(0, done);
  if (barrierPassed) for (const skey of r.state.streams.keys()) streams.add(skey);
  if (streams.size > 0) out.push({ kind: 'visible', streams: [...streams].map((skey) => [skey, visibleEnd(r, skey), r.state.epoch]) });
}

/**
 * The stored row a command changes, when readers must keep seeing its confirmed bytes until the
 * command is confirmed (the runtime reads them first: the write message's `prior`).
 */
export function rowOf(cmd: Command): Buffer | undefined {
  switch (cmd.op) {
    case 'kvPut': case 'kvDel': case 'kvExpire': return K.kvKey(cmd.ks, cmd.key);
    case 'commit': case 'uncommit': return K.groupKey(cmd.group, cmd.topicId, cmd.tp);
    default: return undefined;
  }
}

/** Does a write of this row need its prior bytes read (it is the row's first unconfirmed write)? */
export function needsPrior(r: Replica, row: Buffer): boolean {
  return r.role === 'leader' && hidesWrites(r) && !r.hidden.has(rowKeyString(row));
}

/** A leader alone in the in-sync set confirms its writes as it makes them. */
function hidesWrites(r: Replica): boolean { return r.view.isr.some((n) => n !== r.self); }

function rowKeyString(row: Buffer): string { return `r${row.toString('latin1')}`; }

/** Hide a leader's new write from readers until the watermark passes it. */
function hideUntilConfirmed(r: Replica, cmd: Command, seq: number, ops: Op[], streamEndBefore: number, prior: Buffer | null | undefined): void {
  if (cmd.op === 'produce') {
    const skey = streamKeyOf(cmd.topicId, cmd.tp);
    const endAfter = r.state.streams.get(skey)?.end ?? 0;
    const key = `s${skey}`;
    r.unconfirmed.push({ seq, key, endAfter, bytes: UNCONFIRMED_ENTRY_BYTES });
    r.unconfirmedBytes += UNCONFIRMED_ENTRY_BYTES;
    const h = r.hidden.get(key);
    if (h) h.lastSeq = seq;
    else r.hidden.set(key, { lastSeq: seq, visibleEnd: streamEndBefore });
    return;
  }
  const row = rowOf(cmd);
  if (!row) return; // trims and stream drops: readers see their effect at once, as retention allows
  const op = ops.find((o) => o.type !== 'delRange' && o.key.equals(row));
  if (!op) return; // the row did not change
  const key = rowKeyString(row);
  const rowAfter = op.type === 'put' ? op.value : null;
  const h = r.hidden.get(key);
  if (!h) assert.ok(prior !== undefined, 'the runtime reads a row before its first unconfirmed write');
  const bytes = UNCONFIRMED_ENTRY_BYTES + key.length + (rowAfter?.length ?? 0) + (h ? 0 : prior?.length ?? 0);
  r.unconfirmed.push({ seq, key, rowAfter, bytes });
  r.unconfirmedBytes += bytes;
  if (h) h.lastSeq = seq;
  else r.hidden.set(key, { lastSeq: seq, row: prior });
}

function write(r: Replica, m: Extract<ReplicaMessage, { type: 'write' }>, nowMs: number): Effect[] {
  if (r.role !== 'leader') return [replyError(m.id, 'NOT_LEADER', r.state.id, r.view.leader ?? 'unknown')];
  if (r.fence && nowMs < r.fence.untilMs) return [replyError(m.id, 'NOT_LEADER', r.state.id, `${r.fence.to} (leadership moving)`)];
  if (m.acks === 'all') {
    // Fail fast only when no node can stand in for the unreachable replicas: otherwise the
    // coordinator adds one within the failover window, and the write waits for it.
    const live = r.view.replicas.filter((n) => n === r.self || r.view.live.includes(n)).length;
    if (live + (r.view.spares ?? 0) < needed(r)) return [replyError(m.id, 'NOT_ENOUGH_REPLICAS', r.state.id, live, needed(r))];
  }
  if (hidesWrites(r) && r.unconfirmedBytes >= limits.unconfirmedBytesMax) {
    return [replyError(m.id, 'OVERLOADED', `the unconfirmed-write buffer of partition ${r.state.id}`, `${r.unconfirmedBytes} bytes`)];
  }
  const before = r.state.seq;
  const cmd = m.cmd;
  const streamEndBefore = cmd.op === 'produce' ? r.state.streams.get(streamKeyOf(cmd.topicId, cmd.tp))?.end ?? 0 : 0;
  const { ops, reply } = step(r.state, cmd, nowMs);
  if (r.state.seq === before) {
    // A retry the partition recognised: it is as safe as the original write, which may still be
    // gathering its copies, so the answer waits for the same confirmation.
    const duplicate = reply.ok && (reply.res as { duplicate?: boolean } | null)?.duplicate === true;
    // Its original is somewhere up to the last seq: what holds everything through it holds that.
    if (duplicate && m.acks === 'all' && !confirmed(r, r.state.seq, true)) {
      r.pending.push({ id: m.id, seq: r.state.seq, epoch: epochOf(r.state, r.state.seq), acks: 'all', deadlineMs: nowMs + m.timeoutMs, res: reply.res, retry: true });
      return [];
    }
    return [{ kind: 'reply', id: m.id, reply, replicas: duplicate ? holdersThrough(r, r.state.seq) : 1 }]; // rejected or a no-op: nothing to replicate
  }
  assert.equal(r.state.seq, before + 1, 'a write takes exactly one sequence number');
  const entry: Entry = { seq: r.state.seq, epoch: r.state.epoch, now: nowMs, cmd: asBatch(cmd, ops) };
  // The log is for followers catching up. The one copy of a partition of N = 1 (a single node) has
  // none, and a replica that joins it (a move) finds the log short of its position and gets a full
  // copy (catch-up.ts). A set of N > 1 shrunk to one regains replicas: the one that returns catches
  // up from the log, and a stand-in gets the tail its pending writes are in as hints (adoptView).
  const alone = r.view.replicas.length === 1 && needed(r) <= 1;
  if (!alone) ops.push({ type: 'put', key: K.logKey(entry.seq), value: encodeLogEntry(entry) });
  const out: Effect[] = [{ kind: 'write', ops }];
  if (hidesWrites(r)) hideUntilConfirmed(r, cmd, entry.seq, ops, streamEndBefore, m.prior);
  else advanceWatermark(r, out); // alone in the in-sync set: visible at once
  // One message for every follower: the runtime encodes it once for all of them.
  let msg: AppendMessage | undefined;
  for (const f of followers(r)) {
    r.sentAtMs.set(f, nowMs);
    msg ??= { t: 'append', p: r.state.id, epoch: r.state.epoch, leader: r.self, prevSeq: before, prevEpoch: epochOf(r.state, before), entries: [entry], at: nowMs, ...watermark(r) };
    out.push({ kind: 'send', to: f, msg });
  }
  if (reply.ok && cmd.op === 'produce' && entry.seq > r.confirmedSeq) (reply.res as ProduceResult).hiddenIn = r.state.epoch;
  if (!reply.ok || m.acks !== 'all' || confirmed(r, entry.seq)) {
    out.push({ kind: 'reply', id: m.id, reply, replicas: m.acks === 'none' ? 0 : holders(r, entry.seq) });
  } else {
    r.pending.push({ id: m.id, seq: entry.seq, epoch: entry.epoch, acks: m.acks, deadlineMs: nowMs + m.timeoutMs, res: reply.res });
  }
  return out;
}

/**
 * A produce of records replicates as the batch the leader stored: followers store those bytes as
 * they are, and the log names them like any other batch (encodeLogEntry). Exported for the
 * simulator's checker, which keeps the entries a replica held alone wrote no log for.
 */
export function asBatch(cmd: Command, ops: Op[]): Command {
  if (cmd.op !== 'produce' || cmd.batch || !cmd.records) return cmd;
  const put = ops.find((o) => o.type === 'put' && o.key[0] === K.Kind.batch);
  if (put?.type !== 'put') return cmd;
  const { records, ...rest } = cmd;
  return { ...rest, batch: put.value, batchBytes: records.reduce((n, rec) => n + recordBytes(rec), 0) };
}

/**
 * Send a follower the log after `fromSeq`, unless that very fill left recently (PROBE_AFTER_MS).
 * One outside the in-sync set (a replica moving in, a stand-in) gets a part per CATCH_UP_PART_MS
 * at most, the pace of a full copy: moves must not crowd out the foreground.
 */
function fillGap(r: Replica, to: NodeId, fromSeq: number, nowMs: number): Effect[] {
  const last = r.filling.get(to);
  if (last && last.fromSeq === fromSeq && nowMs - last.atMs < PROBE_AFTER_MS) return [];
  if (last && !r.view.isr.includes(to) && nowMs - last.atMs < CATCH_UP_PART_MS) {
    r.fillDue.set(to, fromSeq); // sent by a tick
    return [];
  }
  r.fillDue.delete(to);
  r.filling.set(to, { fromSeq, atMs: nowMs });
  return [{ kind: 'resend', to, fromSeq, at: nowMs }];
}

/** A follower's report of its hinted entries replaces the last one. Did it change? */
function noteHints(r: Replica, from: NodeId, hint: HintRange | undefined): boolean {
  const prev = r.hinted.get(from);
  if (prev?.[0] === hint?.[0] && prev?.[1] === hint?.[1]) return false;
  if (hint) r.hinted.set(from, hint);
  else r.hinted.delete(from);
  return true;
}

function noteAnswered(r: Replica, from: NodeId, echo: number | undefined): void {
  if (echo !== undefined && echo > (r.answeredAt.get(from) ?? -Infinity)) r.answeredAt.set(from, echo);
}

function followers(r: Replica): NodeId[] { return r.view.replicas.filter((n) => n !== r.self); }

function peer(r: Replica, msg: PeerMessage, nowMs: number): Effect[] {
  switch (msg.t) {
    case 'append': return append(r, msg, nowMs);
    case 'ack': {
      if (r.role !== 'leader' || msg.epoch !== r.state.epoch) return [];
      noteAnswered(r, msg.from, msg.echo);
      // Hinted entries survive full copies: a report of them counts even while one installs.
      const hintsChanged = noteHints(r, msg.from, msg.hint);
      if (stale(r, msg.from, msg.copy, nowMs)) return hintsChanged ? settle(r) : []; // may predate the copy being installed
      if (msg.end > r.state.seq) return copyTo(r, msg.from, nowMs); // ahead of its leader: a history this leader never wrote
      // A follower reports what it holds now. On one ordered link that only goes back when its copy
      // was wiped (dropped, reinstalled): believe it, or a wiped replica would count as a holder.
      const prev = r.matched.get(msg.from) ?? -1;
      r.matched.set(msg.from, msg.seq);
      if (msg.seq > prev) r.progressAtMs.set(msg.from, nowMs);
      // It holds entries past what this message verified: send them, so it checks them against ours.
      const verify: Effect[] = msg.end > msg.seq ? [{ kind: 'resend', to: msg.from, fromSeq: msg.seq, at: nowMs }] : [];
      // It answers a gap fill and is still behind: the next part goes now, not at the next probe.
      const fill = r.filling.get(msg.from);
      const more = verify.length === 0 && fill && msg.echo === fill.atMs && msg.seq > fill.fromSeq && msg.seq < r.state.seq ? fillGap(r, msg.from, msg.seq, nowMs) : [];
      return [...verify, ...more, ...settle(r)];
    }
    case 'nack': {
      if (msg.epoch > r.state.epoch) return stepDown(r, msg.epoch as Epoch, nowMs);
      if (r.role !== 'leader') return [];
      const settled: Effect[] = [];
      if (msg.epoch === r.state.epoch) {
        noteAnswered(r, msg.from, msg.echo);
        if (noteHints(r, msg.from, msg.hint)) settled.push(...settle(r));
      }
      if (stale(r, msg.from, msg.copy, nowMs)) return settled;
      if ((r.matched.get(msg.from) ?? -1) > msg.seq) r.matched.set(msg.from, msg.seq);
      // No copy to the successor of a hand-off under way: it holds every entry, may lead any moment
      // (a copy would wipe it first), and anti-entropy compares again once either side leads.
      if (r.fence?.to === msg.from && nowMs < r.fence.untilMs && msg.seq >= r.state.seq) return settled;
      if (msg.reason === 'diverged' || msg.seq > r.state.seq) return [...settled, ...copyTo(r, msg.from, nowMs)];
      if (msg.reason === 'gap') return [...settled, ...fillGap(r, msg.from, msg.seq, nowMs)];
      return settled;
    }
  }
}

function append(r: Replica, msg: AppendMessage, nowMs: number): Effect[] {
  const s = r.state;
  const nack = (reason: 'stale-epoch' | 'gap' | 'diverged'): Effect[] =>
    [{ kind: 'send', to: msg.leader, msg: { t: 'nack', p: s.id, epoch: s.epoch, from: r.self, seq: s.seq, reason, copy: r.copy, echo: msg.at, hint: hintRange(r) } }];
  if (msg.epoch < s.epoch) return nack('stale-epoch');
  // This leader's record counts this replica in: a view of an older record must not remove it.
  if (msg.rev !== undefined && msg.rev > r.seenRev) r.seenRev = msg.rev;
  r.answeredLeaderAtMs = nowMs; // what follows answers it, and so extends its read lease
  const out: Effect[] = [];
  if (msg.epoch > s.epoch || r.role !== 'follower' || r.view.leader !== msg.leader) {
    // A leader of a newer epoch (or the one the coordinator named) speaks: follow it.
    adoptView(r, { ...r.view, epoch: msg.epoch as Epoch, leader: msg.leader }, out, nowMs);
  }
  const ops: Op[] = [];
  const hintsApplied = applyHints(r, ops); // a full copy may have brought its log up to them
  if (msg.prevSeq > s.seq) {
    // Behind: keep what this message carries (hinted handoff) while the gap is filled.
    ops.push(...keepHints(r, msg));
    return [...out, ...(ops.length ? [{ kind: 'write', ops } as Effect] : []), ...nack('gap')];
  }
  if (epochOf(s, msg.prevSeq) !== msg.prevEpoch) return [...out, ...(ops.length ? [{ kind: 'write', ops } as Effect] : []), ...nack('diverged')];
  // Only what this message matched or applied is vouched for; entries held past it (say, from an
  // older leader) are reported as `end` and checked when the leader sends its own.
  let verified = msg.prevSeq;
  for (const e of msg.entries) {
    if (e.seq <= s.seq) {
      if (epochOf(s, e.seq) !== e.epoch) return [...out, ...(ops.length ? [{ kind: 'write', ops } as Effect] : []), ...nack('diverged')];
      verified = e.seq;
      continue; // a resend of what we hold
    }
    if (e.seq !== s.seq + 1) break; // the rest arrives after the gap is filled
    if (e.epoch > (s.epochs.at(-1)?.[0] ?? 0)) recordEpoch(s, e.epoch, e.seq);
    const stepped = step(s, e.cmd, e.now);
    assert.equal(s.seq, e.seq, 'a replicated entry reproduces its sequence');
    ops.push(...stepped.ops, { type: 'put', key: K.logKey(e.seq), value: encodeLogEntry(e) });
    verified = e.seq;
  }
  // Hinted entries continue this leader's log from where it now matches (the same epoch at the
  // same seq): vouched for as well, with everything before them.
  if (applyHints(r, ops) || hintsApplied) verified = Math.max(verified, s.seq);
  if (ops.length) out.push({ kind: 'write', ops });
  if (r.pending.length > 0 && msg.hw !== undefined) out.push(...settleFromSuccessor(r, Math.min(verified, msg.hw), msg.hwCopies ?? 0));
  out.push({ kind: 'send', to: msg.leader, msg: { t: 'ack', p: s.id, epoch: s.epoch, from: r.self, seq: verified, end: s.seq, copy: r.copy, echo: msg.at, hint: hintRange(r) } });
  return out;
}

/**
 * A replica without a complete copy (one is installing, or it waits for one) keeps what its
 * leader appends meanwhile as hints, and acks where its log is (nothing it may claim): the copy
 * fills the gap. A nack would ask the leader to fill it, and to start a copy over once the one
 * under way is old.
 */
export function holdDuringCopy(r: Replica, msg: AppendMessage): Effect[] {
  const s = r.state;
  const ops = keepHints(r, msg);
  return [
    ...(ops.length > 0 ? [{ kind: 'write', ops } as Effect] : []),
    { kind: 'send', to: msg.leader, msg: { t: 'ack', p: s.id, epoch: s.epoch, from: r.self, seq: s.seq, end: s.seq, copy: r.copy, echo: msg.at, hint: hintRange(r) } },
  ];
}

/** What a follower reports of its hinted entries: the first and last seq it holds. */
export function hintRange(r: Replica): HintRange | undefined {
  const h = r.hints;
  return h && h.epoch === r.state.epoch && h.entries.length > 0 ? [h.entries[0].seq, lastHinted(h)] : undefined;
}

/**
 * Keep the entries of an append past this replica's log as hints: a run continuing the leader's
 * log, extended by each later append that joins it. A run is only replaced by one of a newer
 * epoch; its entries count for writes already answered.
 */
export function keepHints(r: Replica, msg: AppendMessage): Op[] {
  if (msg.entries.length === 0 || msg.epoch !== r.state.epoch || msg.prevSeq <= r.state.seq) return [];
  if (r.hints && r.hints.epoch !== msg.epoch) r.hints = undefined;
  const h = r.hints ??= { epoch: msg.epoch, prevSeq: msg.prevSeq, prevEpoch: msg.prevEpoch, entries: [], bytes: 0, full: false };
  const last = lastHinted(h);
  if (h.full || msg.prevSeq > last || msg.prevSeq < h.prevSeq) return []; // not contiguous with the run
  const ops: Op[] = [];
  for (const e of msg.entries) {
    if (e.seq <= last) continue;
    const value = encodeEntry(e);
    if (h.bytes + value.length > limits.hintBytesMax) { h.full = true; break; }
    h.entries.push(e);
    h.bytes += value.length;
    ops.push({ type: 'put', key: K.hintKey(e.seq), value });
    r.hintsOnDisk = r.hintsOnDisk ? [Math.min(r.hintsOnDisk[0], e.seq), Math.max(r.hintsOnDisk[1], e.seq)] : [e.seq, e.seq];
  }
  if (ops.length > 0) {
    const header: HintHeader = { epoch: h.epoch, prevSeq: h.prevSeq, prevEpoch: h.prevEpoch, last: lastHinted(h) };
    ops.push({ type: 'put', key: K.hintHeaderKey, value: diskCodec.encode(header) });
  }
  return ops;
}

/** The last seq a run holds (where it attaches, while it holds none). */
function lastHinted(h: Hints): number {
  return h.entries.length > 0 ? h.entries[h.entries.length - 1].seq : h.prevSeq;
}

/** On disk, a run's header says where it attaches and where it ends (older entries may follow). */
interface HintHeader { epoch: number; prevSeq: number; prevEpoch: number; last: number }

/** Stop reporting and applying the run; its entries stay on disk until the log passes them. */
function forgetHints(r: Replica, ops: Op[]): void {
  if (!r.hints) return;
  r.hints = undefined;
  ops.push({ type: 'del', key: K.hintHeaderKey });
}

/**
 * Apply the hinted entries that continue this replica's log once it has reached them (the same
 * epoch at the same seq); forget them once its log holds them all. Removes what the log passed
 * from disk. Did it apply any?
 */
function applyHints(r: Replica, ops: Op[]): boolean {
  const h = r.hints;
  const s = r.state;
  let applied = false;
  if (h && h.epoch !== s.epoch) forgetHints(r, ops);
  else if (h && h.entries.length === 0) r.hints = undefined; // full before its first entry
  else if (h && s.seq >= h.prevSeq) {
    const first = h.entries[0].seq;
    const lastSeq = lastHinted(h);
    if (s.seq >= lastSeq) forgetHints(r, ops);
    else if (epochOf(s, s.seq) === (s.seq === h.prevSeq ? h.prevEpoch : h.entries[s.seq - first].epoch)) {
      for (const e of h.entries) {
        if (e.seq <= s.seq) continue;
        if (e.epoch > (s.epochs.at(-1)?.[0] ?? 0)) recordEpoch(s, e.epoch, e.seq);
        const stepped = step(s, e.cmd, e.now);
        assert.equal(s.seq, e.seq, 'a hinted entry reproduces its sequence');
        ops.push(...stepped.ops, { type: 'put', key: K.logKey(e.seq), value: encodeLogEntry(e) });
      }
      forgetHints(r, ops);
      applied = true;
    }
    // else its log differs from its leader's where they attach: a full copy comes, then they apply
  }
  const disk = r.hintsOnDisk;
  if (disk && s.seq >= disk[0]) {
    const through = Math.min(s.seq, disk[1]);
    // A range delete runs after the batch: it only covers seqs at or below the log, and this
    // batch puts hints only above it.
    ops.push({ type: 'delRange', gte: K.hintKey(disk[0]), lt: K.hintKey(through + 1) });
    r.hintsOnDisk = through >= disk[1] ? undefined : [through + 1, disk[1]];
  }
  return applied;
}

/**
 * A restarted replica's hinted entries, as keepHints left them on disk: the run its header
 * describes, and the seqs any entries occupy (`entries` in seq order).
 */
export function restoreHints(r: Replica, header: Uint8Array | undefined, entries: Iterable<[seq: number, value: Uint8Array]>): void {
  const run = header && diskCodec.decode<HintHeader>(header);
  const h: Hints | undefined = run && { epoch: run.epoch, prevSeq: run.prevSeq, prevEpoch: run.prevEpoch, entries: [], bytes: 0, full: false };
  r.hints = undefined;
  r.hintsOnDisk = undefined;
  for (const [seq, value] of entries) {
    r.hintsOnDisk = r.hintsOnDisk ? [r.hintsOnDisk[0], seq] : [seq, seq];
    if (!h || !run || seq <= run.prevSeq || seq > run.last) continue;
    if (seq !== lastHinted(h) + 1) continue; // a run is contiguous
    h.entries.push(decodeEntry(value));
    h.bytes += value.length;
  }
  if (h && h.entries.length > 0) r.hints = h;
}

/** Raise the watermark and answer the pending writes that now have enough copies. */
function settle(r: Replica): Effect[] {
  const out: Effect[] = [];
  advanceWatermark(r, out);
  while (r.pending.length > 0) {
    const w = r.pending[0];
    if (!confirmed(r, w.seq, w.retry)) break;
    const n = (w.retry ? holdersThrough : holders)(r, w.seq);
    r.pending.shift();
    out.push({ kind: 'reply', id: w.id, reply: { ok: true, res: w.res }, replicas: n });
  }
  return out;
}

/**
 * Whether the replica has work its host's ticks move along — writes waiting for copies, gaps to
 * fill, followers behind — and so wants them at their short period. Without any, ticks only send
 * heartbeats, which HEARTBEAT_MS apart suffice for.
 */
export function wantsQuickTicks(r: Replica): boolean {
  if (r.pending.length > 0) return true;
  if (r.role !== 'leader') return false;
  if (r.fillDue.size > 0) return true;
  for (const f of r.view.replicas) if (f !== r.self && (r.matched.get(f) ?? -1) < r.state.seq) return true;
  return false;
}

function tick(r: Replica, nowMs: number): Effect[] {
  const out: Effect[] = [];
  // Writes that could not gather their copies in time were applied here but not confirmed.
  while (r.pending.length > 0 && r.pending[0].deadlineMs <= nowMs) {
    const w = r.pending.shift()!;
    const why = r.role === 'leader' ? `reached ${holders(r, w.seq)} of ${needed(r)} replicas in time` : 'leadership moved before it was confirmed';
    out.push({ kind: 'reply', id: w.id, reply: { ok: false, code: 'OUTCOME_UNKNOWN', args: [`seq ${w.seq} ${why}`] } });
  }
  if (r.role === 'leader') {
    for (const [f, fromSeq] of r.fillDue) {
      if (r.view.replicas.includes(f) && (r.matched.get(f) ?? -1) <= fromSeq) out.push(...fillGap(r, f, fromSeq, nowMs));
      else r.fillDue.delete(f); // it moved on (or away) meanwhile
    }
    // Probe every follower that is behind and not moving (lost messages, a restart): it answers
    // with its position, and a gap is filled from the log.
    let probe: AppendMessage | undefined;
    for (const f of followers(r)) {
      const lagging = (r.matched.get(f) ?? -1) < r.state.seq && nowMs - (r.progressAtMs.get(f) ?? 0) >= PROBE_AFTER_MS;
      // An idle follower still hears from its leader, which keeps the leader's read lease.
      const quiet = nowMs - (r.sentAtMs.get(f) ?? 0) >= BEAT_AFTER_MS;
      if (lagging || quiet) {
        if (lagging) r.progressAtMs.set(f, nowMs);
        r.sentAtMs.set(f, nowMs);
        probe ??= { t: 'append', p: r.state.id, epoch: r.state.epoch, leader: r.self, prevSeq: r.state.seq, prevEpoch: epochOf(r.state, r.state.seq), entries: [], at: nowMs, ...watermark(r) };
        out.push({ kind: 'send', to: f, msg: probe });
      }
    }
  }
  return out;
}

function recordEpoch(s: PartitionState, epoch: number, firstSeq: number): void {
  const last = s.epochs.at(-1);
  assert.ok(!last || epoch >= last[0], 'epochs never decrease');
  if (last && last[0] === epoch) return;
  s.epochs.push([epoch, firstSeq]);
  if (s.epochs.length > EPOCH_HISTORY_MAX) s.epochs.shift();
}

/** Take a newer view from the coordinator (or a newer leader); never go back to an older epoch. */
function adoptView(r: Replica, view: ReplicaView, out: Effect[], nowMs: number): void {
  const s = r.state;
  if (view.epoch < s.epoch) return; // stale news
  const newEpoch = view.epoch > s.epoch;
  const wasLeader = r.role === 'leader';
  const before = r.view.replicas;
  r.view = view;
  // A node that left the replica set may come back empty: forget what it held.
  for (const n of [...r.matched.keys()]) if (!view.replicas.includes(n)) r.matched.delete(n);
  for (const n of [...r.hinted.keys()]) if (!view.replicas.includes(n)) r.hinted.delete(n);
  const role: Role = view.leader === r.self ? 'leader' : view.replicas.includes(r.self) ? 'follower' : 'none';
  if (newEpoch) {
    s.epoch = view.epoch;
    const ops = [metaOp(s)];
    forgetHints(r, ops); // a newer leader's log may differ from the one they continue
    out.push({ kind: 'write', ops });
  }
  if (role === 'leader' && (!wasLeader || newEpoch)) {
    // Writes pending from its earlier term whose entries it no longer holds are lost (or unknown).
    out.push(...failPending(r, 'leadership moved', (w) => w.seq > s.seq || epochOf(s, w.seq) !== w.epoch));
    // A new term: entries it writes from now on carry this epoch.
    recordEpoch(s, s.epoch, s.seq + 1);
    out.push({ kind: 'write', ops: [metaOp(s)] });
    r.matched = new Map();
    r.hinted = new Map();
    r.progressAtMs = new Map();
    r.answeredAt = new Map();
    r.sentAtMs = new Map();
    r.filling = new Map();
    r.fillDue = new Map();
    r.fence = undefined;
    r.copying = new Map();
    r.readBarrier = s.seq;
    // A partition held by this node alone had no other leader to wait out.
    r.readsFromMs = view.replicas.some((n) => n !== r.self) ? (r.answeredLeaderAtMs ?? nowMs) + READ_LEASE_MS : 0;
    r.unconfirmed = [];
    r.unconfirmedBytes = 0;
    r.hidden = new Map();
    if (s.copies.epoch === s.epoch) {
      // Its own earlier run in this epoch (a restart): the copies it sent may still be arriving.
      for (const [n, id] of s.copies.to) r.copying.set(n as NodeId, { id, atMs: nowMs });
    } else s.copies = { epoch: s.epoch, last: s.epoch * COPIES_PER_EPOCH, to: [] };
  }
  if (wasLeader && role !== 'leader') {
    // Its pending writes stay: if its successor keeps and confirms them, they are answered from the
    // successor's appends (append: hw); else their deadline answers them OUTCOME_UNKNOWN.
    r.unconfirmed = [];
    r.unconfirmedBytes = 0;
    r.hidden = new Map();
  }
  // Removed from the replica set by the coordinator (not just told of a leader): the copy goes.
  if (r.role !== 'none' && role === 'none' && view.leader !== null && !view.replicas.includes(r.self)) out.push({ kind: 'drop' });
  if (role !== r.role || newEpoch) out.push({ kind: 'role', role });
  r.role = role;
  if (role === 'leader') out.push(...settle(r));
  if (role === 'leader' && wasLeader && !newEpoch && r.pending.length > 0) {
    // A replica added meanwhile (a stand-in) gets the log tail the pending writes are in at once:
    // it keeps it as hints, so they need not wait for its whole history. The tail is contiguous
    // with the appends that follow, which it keeps as well.
    const fromSeq = Math.max(r.pending[0].seq - 1, s.seq - limits.catchUpEntriesMax, 0);
    for (const n of view.replicas) if (n !== r.self && !before.includes(n)) out.push({ kind: 'resend', to: n, fromSeq, at: nowMs });
  }
}

/**
 * Copy ids grow across leaders (epoch first), so a follower's report of the copy it holds orders it
 * against every copy any leader started.
 */
const COPIES_PER_EPOCH = 2 ** 20;

/** Send a follower a full copy; until it reports installing it, nothing it says counts. */
function copyTo(r: Replica, to: NodeId, nowMs: number): Effect[] {
  r.matched.delete(to);
  const current = r.copying.get(to);
  if (current && nowMs - current.atMs < SNAPSHOT_ACK_TIMEOUT_MS) return []; // one at a time
  const ledger = r.state.copies;
  const id = ++ledger.last;
  assert.ok(id < (r.state.epoch + 1) * COPIES_PER_EPOCH, 'copy ids stay within their epoch');
  ledger.to = [...ledger.to.filter(([n]) => n !== to), [to, id]];
  r.copying.set(to, { id, atMs: nowMs });
  // On disk before the copy leaves: a restart must neither reuse its id nor forget it was sent.
  return [{ kind: 'write', ops: [copiesOp(r.state)] }, { kind: 'snapshot', to, copy: id }];
}

/**
 * Is this report from before the follower took the copy last started for it? Once it reports that
 * copy (installed, or given up on), the copy is no longer pending.
 */
function stale(r: Replica, from: NodeId, copy: number, nowMs: number): boolean {
  const current = r.copying.get(from);
  if (!current) return false;
  if (copy < current.id && nowMs - current.atMs < SNAPSHOT_ACK_TIMEOUT_MS) return true;
  r.copying.delete(from);
  return false;
}

function stepDown(r: Replica, epoch: Epoch, nowMs: number): Effect[] {
  const out: Effect[] = [];
  adoptView(r, { ...r.view, epoch, leader: null }, out, nowMs);
  return out;
}

/** Answer every pending write OUTCOME_UNKNOWN (the replica is being replaced, or its term ended). */
export function failPending(r: Replica, why: string, which: (w: PendingWrite) => boolean = () => true): Effect[] {
  const out: Effect[] = [];
  r.pending = r.pending.filter((w) => {
    if (!which(w)) return true;
    out.push({ kind: 'reply', id: w.id, reply: { ok: false, code: 'OUTCOME_UNKNOWN', args: [`seq ${w.seq}: ${why}`] } });
    return false;
  });
  return out;
}

/**
 * A former leader's pending writes, answered from its successor's log: through `through` its log
 * matches the successor's, which holds it under its watermark on `copies` replicas and on every
 * in-sync one. A write whose entry is there was kept and is confirmed; one whose seq holds another
 * term's entry there (a full copy replaced its own) can never be applied, as every later leader is
 * elected from the in-sync set: NOT_LEADER, which the routing node retries.
 */
function settleFromSuccessor(r: Replica, through: number, copies: number): Effect[] {
  const out: Effect[] = [];
  r.pending = r.pending.filter((w) => {
    if (w.seq > through) return true;
    if (epochOf(r.state, w.seq) !== w.epoch) {
      out.push(replyError(w.id, 'NOT_LEADER', r.state.id, `${r.view.leader ?? 'unknown'} (seq ${w.seq} went to a newer leader's entry)`));
      return false;
    }
    if (copies < needed(r)) return true;
    out.push({ kind: 'reply', id: w.id, reply: { ok: true, res: w.res }, replicas: copies });
    return false;
  });
  return out;
}

/**
 * What a leader's appends tell its followers: its watermark and how many replicas hold everything
 * through it (a former leader answers pending writes below it from that count), and the record
 * revision of its view (a follower then ignores views of older records: staleView).
 */
export function watermark(r: Replica): { hw: number; hwCopies: number; rev?: number } {
  const hw = r.confirmedSeq;
  const hwCopies = holdersThrough(r, hw);
  return r.view.rev === undefined ? { hw, hwCopies } : { hw, hwCopies, rev: r.view.rev };
}

/**
 * May this replica answer a read now? Only a leader whose read lease holds (every other in-sync
 * replica answered an append sent within READ_LEASE_MS, so no newer leader can exist) and whose
 * watermark has reached what it held when it took office. A follower, or a replica still catching
 * up, never answers.
 */
export function canServeReads(r: Replica, nowMs: number): boolean {
  if (r.role !== 'leader' || r.confirmedSeq < r.readBarrier || nowMs < r.readsFromMs) return false;
  for (const f of r.view.isr) {
    if (f === r.self) continue;
    if (nowMs - (r.answeredAt.get(f) ?? -Infinity) > READ_LEASE_MS) return false;
  }
  return true;
}

/** The end of a stream that readers may see: where its first unconfirmed append starts. */
export function visibleEnd(r: Replica, skey: string): number {
  const end = r.state.streams.get(skey)?.end ?? 0;
  return Math.min(end, r.hidden.get(`s${skey}`)?.visibleEnd ?? end);
}

/** What readers see of a stored row: its confirmed bytes (null: absent), or undefined: as stored. */
export function visibleRow(r: Replica, row: Buffer): Buffer | null | undefined {
  return r.hidden.size === 0 ? undefined : r.hidden.get(rowKeyString(row))?.row;
}

/** Rows with unconfirmed writes whose confirmed bytes readers see instead (for scans). */
export function* hiddenRows(r: Replica): Generator<[row: Buffer, confirmed: Buffer | null]> {
  for (const [key, h] of r.hidden) if (key[0] === 'r') yield [Buffer.from(key.slice(1), 'latin1'), h.row ?? null];
}

/**
 * The replication messages of one flush, fewer: consecutive appends to one follower become one
 * append (what a resend from the log would send, within the same entry and byte caps), and an ack
 * that a later one to the same leader supersedes is dropped (acks are cumulative). Messages of
 * one partition to one node keep their order; nothing else needs one.
 */
export function coalescePeer<M extends { t: string; p: number }>(out: Array<{ to: NodeId; msg: M }>): Array<{ to: NodeId; msg: M }> {
  if (out.length < 2) return out;
  const res: Array<{ to: NodeId; msg: M }> = [];
  const bytes: number[] = [];
  /** `${to}/${p}` → index in res of the last message for that replica */
  const last = new Map<string, number>();
  for (const o of out) {
    const key = `${o.to}/${o.msg.p}`;
    const i = last.get(key);
    const prev = i === undefined ? undefined : res[i].msg as unknown as PeerMessage;
    const next = o.msg as unknown as PeerMessage;
    if (prev?.t === 'append' && next.t === 'append' && prev.epoch === next.epoch && prev.leader === next.leader) {
      const tail = prev.entries.at(-1);
      const nextBytes = next.entries.reduce((n, e) => n + entryBytes(e), 0);
      if (next.prevSeq === (tail?.seq ?? prev.prevSeq) && next.prevEpoch === (tail?.epoch ?? prev.prevEpoch)
        && prev.entries.length + next.entries.length <= limits.catchUpEntriesMax && bytes[i!] + nextBytes <= limits.catchUpBytesMax) {
        res[i!] = { to: o.to, msg: { ...prev, entries: [...prev.entries, ...next.entries] } as unknown as M };
        bytes[i!] += nextBytes;
        continue;
      }
    }
    if (prev?.t === 'ack' && next.t === 'ack' && prev.epoch === next.epoch && prev.copy === next.copy && next.seq >= prev.seq) {
      res[i!] = o;
      continue;
    }
    last.set(key, res.length);
    res.push(o);
    bytes.push(next.t === 'append' ? next.entries.reduce((n, e) => n + entryBytes(e), 0) : 0);
  }
  return res;
}

/** About what an entry adds to a message, to keep appends within catchUpBytesMax. */
export function entryBytes(e: Entry): number {
  const c = e.cmd;
  switch (c.op) {
    case 'kvPut': return 64 + c.key.length + c.value.length;
    case 'produce': return c.batch ? 64 + c.batch.length : c.records!.reduce((n, r) => n + 16 + recordBytes(r), 64);
    case 'trim': return 64 + 16 * c.removed.length;
    default: return 64;
  }
}
