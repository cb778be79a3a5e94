// The etcd layout of docs/cluster.md: key names under `/chicago/<cluster>/` and the JSON records
// stored there. Every record read from etcd is checked here, so a corrupt or foreign value fails
// loudly at the edge instead of deep inside placement or replication.
import { type Epoch, type NodeId, epoch as toEpoch, nodeId as toNodeId } from '../runtime/ids.js';
import type { RetentionSpec } from '../protocol/api.js';
import type { TopicMeta } from './coordinator.js';

/** Node ids and topic names become etcd key segments: no '/', same rule as config's nodeId. */
const SEGMENT = /^[A-Za-z0-9._-]{1,128}$/;

export const keys = {
  meta: 'meta',
  nodesPrefix: 'nodes/',
  node: (id: NodeId) => `nodes/${segment(id)}`,
  partitionsPrefix: 'partitions/',
  partition: (p: number) => `partitions/${p}`,
  topicsPrefix: 'topics/',
  topic: (name: string) => `topics/${segment(name)}`,
  topicSeq: 'topicSeq',
} as const;

function segment(s: string): string {
  if (!SEGMENT.test(s)) throw new Error(`layout: "${s}" cannot be an etcd key segment`);
  return s;
}

export interface MetaRecord { partitions: number; createdAtMs: number }

export type NodeState = 'joining' | 'up' | 'leaving';
export interface NodeRecord { id: NodeId; url: string; state: NodeState; startedAtMs: number }

export interface PartitionRecord {
  /** leadership term; only grows */
  epoch: Epoch;
  /** the first-ranked in-sync replica when it was elected; always a member of `isr` */
  leader: NodeId;
  /** every node holding (or receiving) a copy, in rendezvous rank order of the target set first */
  replicas: NodeId[];
  /** replicas that hold every acked entry; a subset of `replicas`, never empty */
  isr: NodeId[];
}

export type TopicRecord = TopicMeta;

/** A record that breaks the layout's rules; a bug or a foreign writer, never a transient fault. */
export class LayoutError extends Error {
  constructor(key: string, why: string) {
    super(`etcd key ${key}: ${why}`);
    this.name = 'LayoutError';
  }
}

type Json = Record<string, unknown>;

function object(key: string, v: unknown): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new LayoutError(key, 'not a JSON object');
  return v as Json;
}

function int(key: string, o: Json, field: string, min: number): number {
  const v = o[field];
  if (!Number.isSafeInteger(v) || (v as number) < min) throw new LayoutError(key, `${field} must be an integer >= ${min}`);
  return v as number;
}

function ids(key: string, o: Json, field: string): NodeId[] {
  const v = o[field];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && SEGMENT.test(x))) {
    throw new LayoutError(key, `${field} must be a list of node ids`);
  }
  if (new Set(v).size !== v.length) throw new LayoutError(key, `${field} has duplicates`);
  return v.map((x: string) => toNodeId(x));
}

export function parseMeta(key: string, v: unknown): MetaRecord {
  const o = object(key, v);
  return { partitions: int(key, o, 'partitions', 1), createdAtMs: int(key, o, 'createdAtMs', 0) };
}

const NODE_STATES: readonly NodeState[] = ['joining', 'up', 'leaving'];

export function parseNode(key: string, v: unknown): NodeRecord {
  const o = object(key, v);
  if (typeof o.id !== 'string' || `nodes/${o.id}` !== key) throw new LayoutError(key, 'id does not match the key');
  if (typeof o.url !== 'string' || !/^https?:\/\//.test(o.url)) throw new LayoutError(key, 'url must be http(s)://host:port');
  if (!NODE_STATES.includes(o.state as NodeState)) throw new LayoutError(key, `state must be one of ${NODE_STATES.join('|')}`);
  return { id: toNodeId(o.id), url: o.url, state: o.state as NodeState, startedAtMs: int(key, o, 'startedAtMs', 0) };
}

export function parsePartition(key: string, v: unknown): PartitionRecord {
  const o = object(key, v);
  const rec: PartitionRecord = {
    epoch: toEpoch(int(key, o, 'epoch', 1)),
    leader: toNodeId(String(o.leader)),
    replicas: ids(key, o, 'replicas'),
    isr: ids(key, o, 'isr'),
  };
  const why = partitionProblem(rec);
  if (why) throw new LayoutError(key, why);
  return rec;
}

/** The invariants of a partition record; undefined when it is sound. */
export function partitionProblem(r: PartitionRecord): string | undefined {
  if (!Number.isSafeInteger(r.epoch) || r.epoch < 1) return `epoch ${r.epoch} must be an integer >= 1`;
  if (r.isr.length === 0) return 'isr must not be empty';
  if (new Set(r.replicas).size !== r.replicas.length) return 'replicas has duplicates';
  if (new Set(r.isr).size !== r.isr.length) return 'isr has duplicates';
  if (!r.isr.every((n) => r.replicas.includes(n))) return 'isr must be a subset of replicas';
  if (!r.isr.includes(r.leader)) return `leader ${r.leader} must be in the isr`;
  return undefined;
}

function retention(key: string, v: unknown): RetentionSpec {
  const o = object(key, v ?? {});
  const out: RetentionSpec = {};
  if (o.ms !== undefined) out.ms = int(key, o, 'ms', 0);
  if (o.bytes !== undefined) out.bytes = int(key, o, 'bytes', 0);
  if (o.untilGroup !== undefined) {
    if (typeof o.untilGroup !== 'string') throw new LayoutError(key, 'retention.untilGroup must be a string');
    out.untilGroup = o.untilGroup;
  }
  return out;
}

export function parseTopic(key: string, v: unknown): TopicRecord {
  const o = object(key, v);
  if (typeof o.name !== 'string' || `topics/${o.name}` !== key) throw new LayoutError(key, 'name does not match the key');
  return {
    id: int(key, o, 'id', 1),
    name: o.name,
    partitions: int(key, o, 'partitions', 1),
    replicas: int(key, o, 'replicas', 1),
    retention: retention(key, o.retention),
    createdAtMs: int(key, o, 'createdAtMs', 0),
  };
}

export function parseTopicSeq(key: string, v: unknown): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new LayoutError(key, 'must be an integer >= 0');
  return v as number;
}
