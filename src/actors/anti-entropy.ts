// Anti-entropy: a leader sends digests of its state, range by range, to its followers; a follower
// compares its own once it reaches the same seq and, when a range differs, asks its leader for a
// fresh copy (a `diverged` nack). Pure: the worker runs these over RocksDB and its timers,
// test/sim over its in-memory store, so the simulator's divergence and repair are this code.
import { createHash } from 'node:crypto';
import * as K from '../storage/keys.js';
import { diskCodec } from '../runtime/codec.js';
import type { NodeId } from '../runtime/ids.js';
import type { DigestCheck, DigestReply } from './messages.js';
import type { Storage } from './storage.js';
import type { TimeIndexValue } from './partition.js';

/** entries hashed per digest slice: a few milliseconds of the worker's time */
export const DIGEST_SLICE_ENTRIES = 1_024;
const KIND_NAMES = new Map<number, string>(Object.entries(K.Kind).map(([name, kind]) => [kind, name]));

/**
 * Digests of everything the partition's state machine owns (not the replica-local log and meta),
 * one per kind of key, so replicas at the same seq must match range by range. One slice of entries
 * per next(): the caller yields to other work between slices (a whole partition can take seconds);
 * a store whose iterator pins the state it started at (RocksDB's) gives the state at `at`.
 */
export function* digestSlices(store: Pick<Storage, 'iterate'>, at: { partition: number; seq: number; epoch: number }, sliceEntries = DIGEST_SLICE_ENTRIES): Generator<void, DigestReply> {
  const whole = createHash('sha256');
  const ranges: Record<string, string> = {};
  let keys = 0;
  let kind: number = K.Kind.kv;
  let h = createHash('sha256');
  const closeKind = () => {
    const name = KIND_NAMES.get(kind)!;
    ranges[name] = h.digest('hex');
    whole.update(ranges[name]);
    kind++;
    h = createHash('sha256');
  };
  for (const [k, v] of store.iterate(K.digestRange)) {
    while (k[0] > kind) closeKind();
    h.update(k);
    h.update(k[0] === K.Kind.timeIndex ? timeIndexDigested(v) : v);
    if (++keys % sliceEntries === 0) yield;
  }
  while (kind <= K.digestKindLast) closeKind();
  return { ...at, digest: whole.digest('hex'), ranges, keys };
}

/** msgpack's fixarray of 3: a time-index value that names the seq which appended its batch */
const FIXARRAY_3 = 0x93;

/**
 * A time-index value as digests see it: its count and bytes, without the seq. Builds before the
 * seq was recorded write the pair alone, and a cluster mid-upgrade holds both forms of the same
 * entries: that difference is no divergence to repair with a full copy.
 */
function timeIndexDigested(v: Buffer): Buffer {
  if (v[0] !== FIXARRAY_3) return v;
  const [count, bytes] = diskCodec.decode<TimeIndexValue>(v);
  return diskCodec.encode([count, bytes]);
}

/** what anti-entropy reads of a replica */
export interface ReplicaSide {
  role: string;
  epoch: number;
  seq: number;
  replicas: readonly NodeId[];
  /** the last copy installed (acks and nacks name it) */
  copy: number;
  /** a copy is being received: the state is not this replica's own yet */
  installing: boolean;
  /** a digest of it is being computed (one at a time) */
  digesting: boolean;
}

/** Leader side: should it digest now? Only a leader with followers. */
export function shouldDigest(r: ReplicaSide): boolean {
  return r.role === 'leader' && r.replicas.length > 1;
}

/** Leader side: the checks its finished digest becomes, one per follower; none if it no longer leads that term. */
export function digestChecks(r: ReplicaSide, self: NodeId, d: DigestReply): Array<{ to: NodeId; msg: DigestCheck }> {
  if (r.role !== 'leader' || r.epoch !== d.epoch) return [];
  return r.replicas.filter((to) => to !== self).map((to) => ({ to, msg: { t: 'digest', p: d.partition, epoch: d.epoch, leader: self, seq: d.seq, ranges: d.ranges } }));
}

/** Follower side: a leader's check waiting for this replica to reach its seq, or its own digest under way. */
export interface Comparison {
  check?: DigestCheck;
  /** its own digest is being computed for this check, over the copy it had then */
  comparing?: { check: DigestCheck; copy: number };
}

export type CompareInput =
  | { type: 'check'; check: DigestCheck; replica: ReplicaSide }
  /** the replica moved (applied entries, installed a copy): a waiting check may be due */
  | { type: 'progress'; replica: ReplicaSide }
  /** its own digest, asked for by a `digest` effect */
  | { type: 'digested'; mine: DigestReply; replica: ReplicaSide };

export type CompareEffect =
  /** compute this replica's digest now (its state at the check's seq) and answer `digested` */
  | { kind: 'digest' }
  /** every range matched */
  | { kind: 'matched' }
  /** ranges differ: ask the leader for a fresh copy */
  | { kind: 'diverged'; ranges: string[]; nack: { to: NodeId; msg: { t: 'nack'; p: number; epoch: number; from: NodeId; seq: number; reason: 'diverged'; copy: number } } };

export function compareStep(c: Comparison, m: CompareInput, self: NodeId): { state: Comparison; effects: CompareEffect[] } {
  const r = m.replica;
  switch (m.type) {
    case 'check':
    case 'progress': {
      const check = m.type === 'check' ? m.check : c.check;
      if (!check) return { state: c, effects: [] };
      // moved on (a newer term, past its seq, a copy arriving): the next round compares
      if (check.epoch !== r.epoch || r.seq > check.seq || r.installing) return { state: { ...c, check: undefined }, effects: [] };
      if (r.seq < check.seq || c.comparing || r.digesting) return { state: { ...c, check }, effects: [] }; // not there yet
      return { state: { check: undefined, comparing: { check, copy: r.copy } }, effects: [{ kind: 'digest' }] };
    }
    case 'digested': {
      const cmp = c.comparing;
      if (!cmp) return { state: c, effects: [] };
      const state = { check: c.check };
      const differ = Object.keys(cmp.check.ranges).filter((k) => cmp.check.ranges[k] !== m.mine.ranges[k]);
      if (differ.length === 0) return { state, effects: [{ kind: 'matched' }] };
      if (r.epoch !== cmp.check.epoch || r.copy !== cmp.copy || r.installing) return { state, effects: [] }; // replaced meanwhile
      const msg = { t: 'nack' as const, p: m.mine.partition, epoch: r.epoch, from: self, seq: r.seq, reason: 'diverged' as const, copy: cmp.copy };
      return { state, effects: [{ kind: 'diverged', ranges: differ, nack: { to: cmp.check.leader, msg } }] };
    }
  }
}
