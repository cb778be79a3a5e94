// The history of a concurrent workload against a cluster, and the checker that reads it afterwards.
//
// Every operation is recorded at invoke and at completion with its outcome: `ok` (the node answered
// with success), `fail` (the node answered with an error that means "not applied"), or `unknown`
// (a timeout, a cut connection, OUTCOME_UNKNOWN: it may or may not have been applied). An operation
// that never completes stays `unknown` with completeMs = Infinity.
//
// check() is pure: it takes the history plus the final state read after healing and convergence,
// and returns every violation it finds. Values are unique per key (KV) and per topic (streams), so
// each observed value names exactly one write.
import { http } from './http.js';
import { slow } from './slow.js';

export type Outcome = 'ok' | 'fail' | 'unknown';

export interface KvPut { type: 'kv-put'; key: string; value: string; version?: number; replicas?: number }
export interface KvGet { type: 'kv-get'; key: string; found?: boolean; value?: string; version?: number }
export interface Produce {
  type: 'produce';
  topic: string;
  values: string[];
  /** the ack: one position per value, in the same order */
  records?: Array<{ partition: number; offset: number }>;
  replicas?: number;
}
export interface StreamRead {
  type: 'read';
  topic: string;
  partition: number;
  fromOffset: number;
  records?: Array<{ offset: number; value: string }>;
  /** the partition's end (next offset to be written) as the read saw it */
  endOffset?: number;
  /** the node answered OFFSET_OUT_OF_RANGE for fromOffset */
  outOfRange?: boolean;
}
export type OpBody = KvPut | KvGet | Produce | StreamRead;

export type Op = OpBody & {
  id: number;
  client: number;
  /** the node asked */
  node: string;
  invokeMs: number;
  /** Infinity while (or if forever) pending */
  completeMs: number;
  outcome: Outcome;
  error?: string;
};

type OpOf<T extends OpBody['type']> = Extract<OpBody, { type: T }>;

/** One monotonic clock for the history and the nemesis log. */
export const now = (): number => performance.now();

export class History {
  readonly ops: Op[] = [];

  invoke<T extends OpBody['type']>(client: number, node: string, body: OpOf<T>): Op & OpOf<T> {
    const op = { ...body, id: this.ops.length, client, node, invokeMs: now(), completeMs: Infinity, outcome: 'unknown' as Outcome } as Op & OpOf<T>;
    this.ops.push(op);
    return op;
  }

  complete<T extends OpBody['type']>(op: Op & { type: T }, outcome: Outcome, fields: Partial<OpOf<T>> & { error?: string } = {}): void {
    if (op.completeMs !== Infinity) throw new Error(`op ${op.id} completed twice`);
    Object.assign(op, fields);
    op.outcome = outcome;
    op.completeMs = now();
  }
}

// ---------------------------------------------------------------------------------------------
// Final state, read after the faults are healed and the replicas have converged.

export interface FinalKvRead { key: string; node: string; found: boolean; value?: string; version?: number }
export interface FinalLog { topic: string; partition: number; startOffset: number; records: Array<{ offset: number; value: string }> }
export interface ReplicaDigests {
  partition: number;
  copies: Array<{ node: string; seq: number; digest: string }>;
  /** how many copies the placement asks for; fewer is a violation */
  expectedCopies?: number;
}
export interface FinalState {
  kv: FinalKvRead[];
  logs: FinalLog[];
  replicas: ReplicaDigests[];
}

export interface CheckOptions {
  /** an ok write must report at least this many replicas (acks=all); omit to skip */
  expectedReplicas?: number;
  /** violations listed per kind in the text report */
  listPerKind?: number;
}

export const VIOLATION_KINDS = [
  'lost-write', // an acked KV write is not in the final state
  'stale-read', // a read that began after an acked write completed returned something older
  'phantom-value', // a value nobody wrote (or wrote only later) was read
  'failed-write-visible', // a write answered with a definite failure was applied
  'dishonest-ack', // an ok ack reporting fewer replicas than asked for
  'stream-lost', // an acked record is not in the final log
  'stream-duplicate', // one value twice, or one offset twice
  'stream-gap', // offsets skip
  'stream-reorder', // order differs from append order, or an acked record moved
  'stream-phantom', // a record nobody produced
  'stream-stale-read', // a read that began after an acked append did not see it
  'stream-read-diverged', // a read saw a record that the final log does not hold at that offset
  'replica-divergence', // replicas of a partition differ
  'under-replicated', // fewer copies than the placement asks for
  'incomplete', // the final state lacks what the check needs; the run proves nothing
] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

export interface Violation { kind: ViolationKind; message: string; ops: number[] }

export interface Report {
  ok: boolean;
  violations: Violation[];
  counts: Partial<Record<ViolationKind, number>>;
  stats: Record<string, number>;
  /** operations that did not succeed, by `type:outcome:error` */
  errors: Record<string, number>;
  /** per error, in how many distinct seconds of the run some operation ended with it (how long it lasted) */
  errorSeconds: Record<string, number>;
  text: string;
}

export function describeOp(op: Op): string {
  const t = `[${op.invokeMs.toFixed(0)}..${op.completeMs === Infinity ? '∞' : op.completeMs.toFixed(0)} ms]`;
  const base = `#${op.id} c${op.client}@${op.node} ${t} ${op.outcome}`;
  switch (op.type) {
    case 'kv-put':
      return `${base} put ${op.key}=${op.value}${op.version !== undefined ? ` v${op.version}` : ''}${op.error ? ` (${op.error})` : ''}`;
    case 'kv-get':
      return `${base} get ${op.key} → ${op.found === false ? 'absent' : `${op.value} v${op.version}`}${op.error ? ` (${op.error})` : ''}`;
    case 'produce':
      return `${base} produce ${op.topic} [${op.values.join(',')}]${op.records ? ` at ${op.records.map((r) => `${r.partition}:${r.offset}`).join(',')}` : ''}${op.error ? ` (${op.error})` : ''}`;
    case 'read':
      return `${base} read ${op.topic}/${op.partition}@${op.fromOffset} → ${op.outOfRange ? 'out of range' : `${op.records?.length ?? 0} records, end ${op.endOffset}`}${op.error ? ` (${op.error})` : ''}`;
  }
}

export function check(ops: readonly Op[], final: FinalState, opts: CheckOptions = {}): Report {
  const violations: Violation[] = [];
  const add = (kind: ViolationKind, message: string, ...vops: Op[]) =>
    violations.push({ kind, message: vops.length ? `${message}\n      ${vops.map(describeOp).join('\n      ')}` : message, ops: vops.map((o) => o.id) });

  checkAcks(ops, opts, add);
  checkKv(ops, final.kv, add);
  checkStreams(ops, final.logs, add);
  checkReplicas(final.replicas, add);

  const counts: Partial<Record<ViolationKind, number>> = {};
  for (const v of violations) counts[v.kind] = (counts[v.kind] ?? 0) + 1;
  const stats: Record<string, number> = { ops: ops.length };
  for (const op of ops) stats[`${op.type}:${op.outcome}`] = (stats[`${op.type}:${op.outcome}`] ?? 0) + 1;
  stats.ackedRecords = ops.reduce((n, o) => n + (o.type === 'produce' && o.outcome === 'ok' ? o.values.length : 0), 0);
  stats.finalKvReads = final.kv.length;
  stats.finalRecords = final.logs.reduce((n, l) => n + l.records.length, 0);
  stats.partitionsCompared = final.replicas.length;
  stats.replicaCopiesCompared = final.replicas.reduce((n, r) => n + r.copies.length, 0);
  stats.replicaSeqMax = final.replicas.reduce((n, r) => Math.max(n, ...r.copies.map((c) => c.seq)), 0);
  const errors: Record<string, number> = {};
  const seconds = new Map<string, Set<number>>();
  for (const op of ops) {
    if (op.outcome === 'ok' || !op.error) continue;
    errors[`${op.type}:${op.outcome}:${op.error}`] = (errors[`${op.type}:${op.outcome}:${op.error}`] ?? 0) + 1;
    if (!seconds.has(op.error)) seconds.set(op.error, new Set());
    seconds.get(op.error)!.add(Math.floor(op.invokeMs / 1000));
  }
  const errorSeconds = Object.fromEntries([...seconds].map(([e, s]) => [e, s.size]));
  return { ok: violations.length === 0, violations, counts, stats, errors, errorSeconds, text: render(violations, counts, stats, opts.listPerKind ?? 20) };
}

type Add = (kind: ViolationKind, message: string, ...ops: Op[]) => void;

function render(violations: Violation[], counts: Partial<Record<ViolationKind, number>>, stats: Record<string, number>, perKind: number): string {
  const lines = [
    `checker: ${violations.length} violation(s)`,
    `  history: ${Object.entries(stats).map(([k, v]) => `${k}=${v}`).join(' ')}`,
  ];
  for (const kind of VIOLATION_KINDS) {
    const of = violations.filter((v) => v.kind === kind);
    if (of.length === 0) continue;
    lines.push(`  ${kind}: ${counts[kind]}`);
    for (const v of of.slice(0, perKind)) lines.push(`    - ${v.message}`);
    if (of.length > perKind) lines.push(`    … ${of.length - perKind} more`);
  }
  return lines.join('\n');
}

function checkAcks(ops: readonly Op[], opts: CheckOptions, add: Add): void {
  if (opts.expectedReplicas === undefined) return;
  for (const op of ops) {
    if (op.outcome !== 'ok' || (op.type !== 'kv-put' && op.type !== 'produce')) continue;
    if (op.replicas === undefined || op.replicas < opts.expectedReplicas) {
      add('dishonest-ack', `write acked with replicas=${op.replicas}, expected ≥ ${opts.expectedReplicas}`, op);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// KV: puts with unique values per key; gets during the run; final reads from every node.

function checkKv(ops: readonly Op[], finals: readonly FinalKvRead[], add: Add): void {
  const puts = new Map<string, Array<Op & KvPut>>();
  const gets: Array<Op & KvGet> = [];
  for (const op of ops) {
    if (op.type === 'kv-put') {
      if (!puts.has(op.key)) puts.set(op.key, []);
      puts.get(op.key)!.push(op);
    } else if (op.type === 'kv-get' && op.outcome === 'ok') gets.push(op);
  }
  const byValue = new Map<string, Op & KvPut>();
  for (const [key, list] of puts) {
    for (const p of list) {
      const k = `${key}\u0000${p.value}`;
      if (byValue.has(k)) add('incomplete', `workload wrote the value ${p.value} to ${key} twice; values must be unique`, byValue.get(k)!, p);
      byValue.set(k, p);
    }
  }
  const acked = (key: string) => (puts.get(key) ?? []).filter((p) => p.outcome === 'ok');

  /** The write an observation names: null for "absent" (the initial state), undefined when nobody wrote it. */
  const writer = (key: string, found: boolean, value: string | undefined): (Op & KvPut) | null | undefined =>
    !found ? null : byValue.get(`${key}\u0000${value}`);

  /**
   * W is strictly older than P: W completed before P was invoked (absent is older than everything).
   * A put whose outcome is unknown never completed as far as anyone knows: it may take effect at any
   * time after it began (a forwarded write can land after its client gave up), so only versions
   * can order it.
   */
  const older = (w: (Op & KvPut) | null, p: Op & KvPut) => w === null || (w.outcome !== 'unknown' && w.completeMs < p.invokeMs);

  // Per key, acked puts by completion time with running maxima of invoke time and version, so each
  // get finds "the newest put acked before it began" in O(log n) (long runs have 10^5 gets).
  const index = new Map<string, { complete: number[]; byInvoke: Array<Op & KvPut>; byVersion: Array<(Op & KvPut) | undefined> }>();
  for (const [key] of puts) {
    const list = acked(key).sort((a, b) => a.completeMs - b.completeMs);
    const byInvoke: Array<Op & KvPut> = [];
    const byVersion: Array<(Op & KvPut) | undefined> = [];
    list.forEach((p, i) => {
      byInvoke.push(i > 0 && byInvoke[i - 1].invokeMs > p.invokeMs ? byInvoke[i - 1] : p);
      const prev = i > 0 ? byVersion[i - 1] : undefined;
      byVersion.push(p.version !== undefined && (prev?.version === undefined || p.version > prev.version) ? p : prev);
    });
    index.set(key, { complete: list.map((p) => p.completeMs), byInvoke, byVersion });
  }

  for (const g of gets) {
    const w = writer(g.key, g.found !== false, g.value);
    if (w === undefined) {
      add('phantom-value', `get ${g.key} returned ${g.value}, which no put wrote`, g);
      continue;
    }
    if (w && w.outcome === 'fail') add('failed-write-visible', `get ${g.key} saw a put that was answered as failed`, w, g);
    if (w && w.invokeMs > g.completeMs) add('phantom-value', `get ${g.key} saw a value whose put began after the get ended`, w, g);
    // Every put acked before the get began must be visible, or something not older than it.
    const ix = index.get(g.key);
    if (!ix) continue;
    let lo = 0;
    let hi = ix.complete.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ix.complete[mid] < g.invokeMs) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) continue;
    const newest = ix.byInvoke[lo - 1]; // the put acked before the get that began last
    const highest = ix.byVersion[lo - 1];
    let stale: (Op & KvPut) | undefined;
    if (newest !== w && older(w, newest)) stale = newest;
    else if (highest && highest !== w && g.version !== undefined && g.version < highest.version!) stale = highest;
    if (stale) {
      add('stale-read', `get ${g.key} began after an acked put completed but returned ${w ? `the older ${w.value}` : 'absent'}`, stale, ...(w ? [w] : []), g);
    }
  }

  const finalsByKey = new Map<string, FinalKvRead[]>();
  for (const f of finals) {
    if (!finalsByKey.has(f.key)) finalsByKey.set(f.key, []);
    finalsByKey.get(f.key)!.push(f);
  }
  for (const [key] of puts) {
    const reads = finalsByKey.get(key) ?? [];
    if (reads.length === 0) {
      if (acked(key).length > 0) add('incomplete', `no final read of ${key}, which has acked puts`);
      continue;
    }
    const shown = new Set(reads.map((r) => (r.found ? `${r.value} v${r.version}` : 'absent')));
    if (shown.size > 1) add('replica-divergence', `final reads of ${key} disagree between nodes: ${reads.map((r) => `${r.node}=${r.found ? `${r.value} v${r.version}` : 'absent'}`).join(', ')}`);
    for (const r of reads) {
      const w = writer(key, r.found, r.value);
      const where = `final read of ${key} at ${r.node}`;
      if (w === undefined) {
        add('phantom-value', `${where} returned ${r.value}, which no put wrote`);
        continue;
      }
      if (w && w.outcome === 'fail') add('failed-write-visible', `${where} holds a put that was answered as failed`, w);
      let lost: (Op & KvPut) | undefined;
      for (const p of acked(key)) {
        if (p === w) continue;
        const byTime = older(w, p);
        const byVersion = r.version !== undefined && p.version !== undefined && r.version <= p.version;
        if ((byTime || byVersion) && (!lost || p.completeMs > lost.completeMs)) lost = p;
      }
      if (lost) add('lost-write', `${where} returned ${w ? `${w.value} v${r.version}` : 'absent'}; the acked put below is lost`, lost, ...(w ? [w] : []));
    }
  }
  for (const [key, reads] of finalsByKey) {
    if (puts.has(key)) continue;
    for (const r of reads) if (r.found) add('phantom-value', `final read of ${key} at ${r.node} returned ${r.value}, but nobody wrote ${key}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Streams: produce batches with unique values per topic; reads during the run; the final logs.

interface Position { partition: number; offset: number }

function checkStreams(ops: readonly Op[], logs: readonly FinalLog[], add: Add): void {
  const produces = new Map<string, Array<Op & Produce>>();
  const reads: Array<Op & StreamRead> = [];
  for (const op of ops) {
    if (op.type === 'produce') {
      if (!produces.has(op.topic)) produces.set(op.topic, []);
      produces.get(op.topic)!.push(op);
    } else if (op.type === 'read' && op.outcome === 'ok') reads.push(op);
  }
  const topics = new Set([...produces.keys(), ...logs.map((l) => l.topic), ...reads.map((r) => r.topic)]);
  for (const topic of topics) {
    checkTopic(
      topic,
      produces.get(topic) ?? [],
      reads.filter((r) => r.topic === topic),
      logs.filter((l) => l.topic === topic),
      add,
    );
  }
}

function checkTopic(topic: string, produces: Array<Op & Produce>, reads: Array<Op & StreamRead>, logs: FinalLog[], add: Add): void {
  const writerOf = new Map<string, Op & Produce>();
  for (const p of produces) {
    for (const v of p.values) {
      if (writerOf.has(v)) add('incomplete', `workload produced the value ${v} to ${topic} twice; values must be unique`, writerOf.get(v)!, p);
      writerOf.set(v, p);
    }
  }

  // The final logs: contiguous offsets, each value once, each value produced by someone.
  const logOf = new Map<number, FinalLog>();
  const at = new Map<string, string>(); // "p:o" → value
  const placed = new Map<string, Position>(); // value → where the final log holds it
  for (const log of logs) {
    if (logOf.has(log.partition)) add('incomplete', `two final logs of ${topic}/${log.partition}`);
    logOf.set(log.partition, log);
    let expected = log.startOffset;
    for (const rec of log.records) {
      const here = `${topic}/${log.partition}:${rec.offset}`;
      if (rec.offset > expected) add('stream-gap', `${topic}/${log.partition}: offsets ${expected}..${rec.offset - 1} are missing (next record is ${rec.offset})`);
      else if (rec.offset < expected) add('stream-duplicate', `${topic}/${log.partition}: offset ${rec.offset} appears again after ${expected - 1}`);
      expected = rec.offset + 1;
      at.set(`${log.partition}:${rec.offset}`, rec.value);
      const before = placed.get(rec.value);
      if (before) {
        add('stream-duplicate', `value ${rec.value} is at ${topic}/${before.partition}:${before.offset} and again at ${here}`, ...(writerOf.has(rec.value) ? [writerOf.get(rec.value)!] : []));
        continue;
      }
      placed.set(rec.value, { partition: log.partition, offset: rec.offset });
      const w = writerOf.get(rec.value);
      if (!w) add('stream-phantom', `${here} holds ${rec.value}, which nobody produced`);
      else if (w.outcome === 'fail') add('failed-write-visible', `${here} holds ${rec.value} from a produce answered as failed`, w);
    }
  }

  // Every acked record is where its ack said, and appends keep real-time order per partition.
  const ackedBatches = new Map<number, Array<{ op: Op & Produce; min: number; max: number }>>();
  for (const p of produces) {
    if (p.outcome !== 'ok') continue;
    if (!p.records || p.records.length !== p.values.length) {
      add('incomplete', `acked produce has ${p.records?.length ?? 0} positions for ${p.values.length} values`, p);
      continue;
    }
    const perPartition = new Map<number, number[]>();
    p.values.forEach((v, i) => {
      const pos = p.records![i];
      if (!perPartition.has(pos.partition)) perPartition.set(pos.partition, []);
      perPartition.get(pos.partition)!.push(pos.offset);
      const log = logOf.get(pos.partition);
      if (!log) {
        add('incomplete', `no final log of ${topic}/${pos.partition}, which has acked records`, p);
        return;
      }
      if (pos.offset < log.startOffset) return; // trimmed by retention: nothing to compare
      const there = placed.get(v);
      if (!there) add('stream-lost', `acked record ${v} (${topic}/${pos.partition}:${pos.offset}) is not in the final log`, p);
      else if (there.partition !== pos.partition || there.offset !== pos.offset) {
        add('stream-reorder', `acked record ${v} was acked at ${topic}/${pos.partition}:${pos.offset} but is at ${there.partition}:${there.offset}`, p);
      }
    });
    for (const [partition, offsets] of perPartition) {
      for (let i = 1; i < offsets.length; i++) {
        if (offsets[i] !== offsets[i - 1] + 1) {
          add('stream-reorder', `one batch got non-consecutive offsets in ${topic}/${partition}: ${offsets.join(',')}`, p);
          break;
        }
      }
      if (!ackedBatches.has(partition)) ackedBatches.set(partition, []);
      ackedBatches.get(partition)!.push({ op: p, min: Math.min(...offsets), max: Math.max(...offsets) });
    }
  }
  for (const [partition, batches] of ackedBatches) {
    batches.sort((a, b) => a.min - b.min);
    // A batch at a higher offset must not have completed before a lower-offset batch was invoked.
    let latest: (typeof batches)[number] | undefined; // the lower-offset batch invoked last
    for (let i = 0; i < batches.length; i++) {
      const b = batches[i];
      if (i > 0 && b.min <= batches[i - 1].max) {
        add('stream-duplicate', `two acked batches share offsets in ${topic}/${partition}`, batches[i - 1].op, b.op);
      }
      if (latest && b.op.completeMs < latest.op.invokeMs) {
        add('stream-reorder', `${topic}/${partition}: a batch acked before another was sent got the higher offset`, b.op, latest.op);
      }
      if (!latest || b.op.invokeMs > latest.op.invokeMs) latest = b;
    }
  }

  // Reads during the run: what they saw stays at its offset; they see every append acked before they began.
  const ackedByPartition = new Map<number, Array<{ completeMs: number; offset: number; op: Op & Produce }>>();
  for (const [partition, batches] of ackedBatches) {
    const list = batches.map((b) => ({ completeMs: b.op.completeMs, offset: b.max, op: b.op })).sort((a, b) => a.completeMs - b.completeMs);
    for (let i = 1; i < list.length; i++) if (list[i].offset < list[i - 1].offset) list[i] = { ...list[i - 1], completeMs: list[i].completeMs };
    ackedByPartition.set(partition, list); // prefix maximum of the acked offset by completion time
  }
  for (const r of reads) {
    const recs = r.records ?? [];
    for (let i = 0; i < recs.length; i++) {
      const rec = recs[i];
      const expectedOffset = i === 0 ? r.fromOffset : recs[i - 1].offset + 1;
      if (i === 0 ? rec.offset < r.fromOffset : rec.offset !== expectedOffset) {
        add(rec.offset > expectedOffset ? 'stream-gap' : 'stream-reorder', `read of ${topic}/${r.partition} returned offset ${rec.offset} where ${expectedOffset} was next`, r);
        break;
      }
      const final = at.get(`${r.partition}:${rec.offset}`);
      const log = logOf.get(r.partition);
      if (log && rec.offset < log.startOffset) continue;
      if (final !== rec.value) {
        add('stream-read-diverged', `read saw ${rec.value} at ${topic}/${r.partition}:${rec.offset}; the final log has ${final ?? 'nothing'} there`, ...(writerOf.has(rec.value) ? [writerOf.get(rec.value)!] : []), r);
      }
    }
    const acked = ackedByPartition.get(r.partition);
    if (!acked) continue;
    let lo = 0;
    let hi = acked.length; // first entry completed at or after the read began
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (acked[mid].completeMs < r.invokeMs) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) continue;
    const must = acked[lo - 1]; // highest offset acked before the read began
    const lastSeen = recs.length ? recs[recs.length - 1].offset : -1;
    // Without the end the read saw (a full page), only its records tell, and they may stop early.
    if (!r.outOfRange && r.endOffset === undefined) continue;
    const stale = r.outOfRange ? r.fromOffset <= must.offset : Math.max(r.endOffset! - 1, lastSeen) < must.offset;
    if (stale) {
      add('stream-stale-read', `read of ${topic}/${r.partition} ended before offset ${must.offset}, acked before the read began`, must.op, r);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Replicas: every copy of a partition has the same seq and digest.

function checkReplicas(replicas: readonly ReplicaDigests[], add: Add): void {
  for (const r of replicas) {
    if (r.expectedCopies !== undefined && r.copies.length < r.expectedCopies) {
      add('under-replicated', `partition ${r.partition} has ${r.copies.length} copies (${r.copies.map((c) => c.node).join(',')}), expected ${r.expectedCopies}`);
    }
    const distinct = new Set(r.copies.map((c) => `${c.seq}/${c.digest}`));
    if (distinct.size > 1) {
      add('replica-divergence', `partition ${r.partition} copies differ: ${r.copies.map((c) => `${c.node} seq ${c.seq} digest ${c.digest}`).join('; ')}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The workload: concurrent clients doing KV puts/gets, produces and reads against live nodes.

export interface Target { id: string; url: string }

export interface WorkloadOptions {
  /** the nodes to send to, asked before every operation (membership changes during a run) */
  targets: () => Target[];
  clients?: number;
  keyspace?: string;
  keys?: number;
  topic?: string;
  topicPartitions?: number;
  /** relative weights */
  mix?: { put: number; get: number; produce: number; read: number };
  acks?: 'all' | 'one';
  requestTimeoutMs?: number;
  /** pause between a client's operations */
  pauseMs?: number;
  maxBatch?: number;
}

/**
 * Error codes that mean "not applied". Anything else (OUTCOME_UNKNOWN, TIMEOUT, INTERNAL, a cut
 * connection) leaves the outcome unknown. A node that answers one of these after applying a write
 * is caught by the checker as failed-write-visible.
 */
export const DEFINITE_FAILURES = new Set([
  'BAD_REQUEST', 'INVALID_NAME', 'INVALID_KEY', 'VALUE_TOO_LARGE', 'BATCH_TOO_LARGE', 'INVALID_ARGUMENT',
  'NOT_FOUND', 'TOPIC_NOT_FOUND', 'PARTITION_NOT_FOUND', 'ROUTE_NOT_FOUND',
  'NOT_ENOUGH_REPLICAS', 'NOT_READY', 'OVERLOADED', 'SHUTTING_DOWN', 'NOT_LEADER',
]);

export function classifyError(status: number, body: unknown): { outcome: Outcome; error: string } {
  const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
  if (typeof code === 'string') return { outcome: DEFINITE_FAILURES.has(code) ? 'fail' : 'unknown', error: code };
  return { outcome: 'unknown', error: `HTTP ${status}` };
}

export interface Workload {
  /** stops the clients and waits for their last operations */
  stop(): Promise<void>;
  /** keys the workload may have written */
  keys: string[];
  topic: string;
  keyspace: string;
}

export function startWorkload(history: History, opts: WorkloadOptions): Workload {
  const clients = opts.clients ?? 8;
  const keyspace = opts.keyspace ?? 'nem';
  const keys = Array.from({ length: opts.keys ?? 24 }, (_, i) => `k${i}`);
  const topic = opts.topic ?? 'nem';
  const partitions = opts.topicPartitions ?? 4;
  const mix = opts.mix ?? { put: 4, get: 3, produce: 3, read: 2 };
  const total = mix.put + mix.get + mix.produce + mix.read;
  const acks = opts.acks ?? 'all';
  const timeoutMs = opts.requestTimeoutMs ?? 5000;
  const pauseMs = opts.pauseMs ?? 5;
  const maxBatch = opts.maxBatch ?? 3;
  /** highest offset known to be acked per partition (shared by the clients): where reads start */
  const known = new Array<number>(partitions).fill(-1);
  let running = true;

  const request = async (url: string, method: string, path: string, body?: string, headers: Record<string, string> = {}) => {
    const res = await fetch(url + path, { method, body, headers, signal: AbortSignal.timeout(timeoutMs) });
    const buf = Buffer.from(await res.arrayBuffer());
    return { status: res.status, headers: res.headers, text: buf.toString('utf8') };
  };
  const json = (text: string): any => {
    try {
      return JSON.parse(text);
    } catch {
      return undefined;
    }
  };

  const client = async (c: number) => {
    let n = 0;
    while (running) {
      const targets = opts.targets();
      if (targets.length === 0) {
        await sleep(50);
        continue;
      }
      const t = targets[Math.floor(Math.random() * targets.length)];
      let pick = Math.random() * total;
      const seq = n++;
      if ((pick -= mix.put) < 0) {
        const key = keys[Math.floor(Math.random() * keys.length)];
        const op = history.invoke(c, t.id, { type: 'kv-put', key, value: `c${c}-${seq}` });
        try {
          const r = await request(t.url, 'PUT', `/v1/kv/${keyspace}/${key}?acks=${acks}`, op.value);
          const b = json(r.text);
          if (r.status === 200) history.complete(op, 'ok', { version: b?.version, replicas: b?.replicas });
          else history.complete(op, ...outcomeOf(r.status, b));
        } catch (err) {
          history.complete(op, ...outcomeOfThrow(err));
        }
      } else if ((pick -= mix.get) < 0) {
        const key = keys[Math.floor(Math.random() * keys.length)];
        const op = history.invoke(c, t.id, { type: 'kv-get', key });
        try {
          const r = await request(t.url, 'GET', `/v1/kv/${keyspace}/${key}`);
          const b = json(r.text);
          if (r.status === 200) {
            history.complete(op, 'ok', { found: true, value: r.text, version: numberOr(r.headers.get('x-chicago-version')) });
          } else if (r.status === 404 && b?.error?.code === 'NOT_FOUND') history.complete(op, 'ok', { found: false });
          else history.complete(op, 'fail', { error: classifyError(r.status, b).error });
        } catch (err) {
          history.complete(op, 'fail', { error: errName(err) });
        }
      } else if ((pick -= mix.produce) < 0) {
        const values = Array.from({ length: 1 + Math.floor(Math.random() * maxBatch) }, (_, i) => `c${c}-${seq}-${i}`);
        const op = history.invoke(c, t.id, { type: 'produce', topic, values });
        try {
          const r = await request(t.url, 'POST', `/v1/topics/${topic}/records?acks=${acks}`, JSON.stringify(values.map((value) => ({ value }))), {
            'content-type': 'application/json',
          });
          const b = json(r.text);
          if (r.status === 200 && Array.isArray(b?.records)) {
            const records = (b.records as Position[]).map((x) => ({ partition: x.partition, offset: x.offset }));
            for (const x of records) known[x.partition] = Math.max(known[x.partition] ?? -1, x.offset);
            history.complete(op, 'ok', { records, replicas: b.replicas });
          } else history.complete(op, ...outcomeOf(r.status, b));
        } catch (err) {
          history.complete(op, ...outcomeOfThrow(err));
        }
      } else {
        const partition = Math.floor(Math.random() * partitions);
        const fromOffset = Math.max(0, known[partition] - 20);
        const maxRecords = 100;
        const op = history.invoke(c, t.id, { type: 'read', topic, partition, fromOffset });
        try {
          const r = await request(t.url, 'GET', `/v1/topics/${topic}/records?partition=${partition}&offset=${fromOffset}&maxRecords=${maxRecords}`);
          const b = json(r.text);
          if (r.status === 200 && Array.isArray(b?.records)) {
            const records = (b.records as Array<{ offset: number; value: unknown }>).map((x) => ({ offset: x.offset, value: String(x.value) }));
            const endOffset = typeof b.endOffset === 'number' ? b.endOffset : records.length < maxRecords ? b.nextOffset : undefined;
            history.complete(op, 'ok', { records, endOffset });
          } else if (r.status === 416 && b?.error?.code === 'OFFSET_OUT_OF_RANGE') history.complete(op, 'ok', { outOfRange: true });
          else history.complete(op, 'fail', { error: classifyError(r.status, b).error });
        } catch (err) {
          history.complete(op, 'fail', { error: errName(err) });
        }
      }
      if (pauseMs > 0) await sleep(pauseMs);
    }
  };
  const done = Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  return {
    keys,
    topic,
    keyspace,
    async stop() {
      running = false;
      await done;
    },
  };
}

function outcomeOf(status: number, body: unknown): [Outcome, { error: string }] {
  const { outcome, error } = classifyError(status, body);
  return [outcome, { error }];
}

/** A refused connection never carried the request: a definite failure. Anything else may have. */
function outcomeOfThrow(err: unknown): [Outcome, { error: string }] {
  const error = errName(err);
  return [error === 'ECONNREFUSED' ? 'fail' : 'unknown', { error }];
}

function errName(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string } };
  return e.cause?.code ?? e.name ?? String(err);
}

function numberOr(s: string | null): number | undefined {
  return s === null || s === '' ? undefined : Number(s);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Reading the final state from the nodes.

/** Reads every key from every target, and every partition's whole log from the first target that answers. */
export async function readFinal(targets: Target[], w: Pick<Workload, 'keys' | 'keyspace' | 'topic'>, topicPartitions: number): Promise<Omit<FinalState, 'replicas'>> {
  const kv: FinalKvRead[] = [];
  for (const t of targets) {
    await Promise.all(
      w.keys.map(async (key) => {
        const r = await retry(() => http(t.url, 'GET', `/v1/kv/${w.keyspace}/${key}`), (x) => x.status === 200 || x.status === 404);
        if (r.status === 404) kv.push({ key, node: t.id, found: false });
        else kv.push({ key, node: t.id, found: true, value: r.text, version: numberOr(r.headers.get('x-chicago-version')) });
      }),
    );
  }
  const logs: FinalLog[] = [];
  for (let partition = 0; partition < topicPartitions; partition++) {
    let lastErr: unknown;
    let log: FinalLog | undefined;
    for (const t of targets) {
      try {
        log = await readLog(t.url, w.topic, partition);
        break;
      } catch (err) {
        lastErr = err;
      }
    }
    if (!log) throw new Error(`could not read ${w.topic}/${partition} from any node: ${(lastErr as Error)?.message}`);
    logs.push(log);
  }
  return { kv, logs };
}

async function readLog(url: string, topic: string, partition: number): Promise<FinalLog> {
  const records: FinalLog['records'] = [];
  const first = await retry(() => http(url, 'GET', `/v1/topics/${topic}/records?partition=${partition}&from=earliest&maxRecords=1`), (x) => x.status === 200);
  const startOffset: number = first.body.startOffset ?? 0;
  for (let next = startOffset; ;) {
    const r = await retry(() => http(url, 'GET', `/v1/topics/${topic}/records?partition=${partition}&offset=${next}&maxRecords=5000`), (x) => x.status === 200 || x.status === 416);
    if (r.status === 416) break; // past the end
    const batch = r.body.records as Array<{ offset: number; value: unknown }>;
    if (batch.length === 0) break;
    for (const x of batch) records.push({ offset: x.offset, value: String(x.value) });
    next = r.body.nextOffset;
  }
  return { topic, partition, startOffset, records };
}

/** Retries transient failures (the cluster may still be settling); throws with the last answer. */
async function retry<T extends { status: number; text: string }>(f: () => Promise<T>, good: (r: T) => boolean, idleMs = 20_000): Promise<T> {
  const deadlineMs = slow(idleMs);
  const end = Date.now() + deadlineMs;
  let last = '';
  while (Date.now() < end) {
    try {
      const r = await f();
      if (good(r)) return r;
      last = `HTTP ${r.status} ${r.text.slice(0, 200)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`no good answer within ${deadlineMs} ms (last: ${last})`);
}
