// The cluster's partition table in etcd: `meta` (the partition count, fixed at creation) and one
// `partitions/<p>` record per partition. Records change only by compare-and-swap on their mod
// revision, so two nodes can never both install a leader for one partition in one epoch.
import { EventEmitter } from 'node:events';
import { ChicagoError } from '../runtime/errors.js';
import type { NodeId } from '../runtime/ids.js';
import { type Coordination, type PrefixMirror, type Stored, decode, encode, revision } from './etcd.js';
import { LayoutError, type MetaRecord, type PartitionRecord, keys, parseMeta, parsePartition, partitionProblem } from './layout.js';
import { initialRecord } from './placement.js';

/** a partition count the config schema accepts; the stored one wins over config */
const PARTITIONS_MAX = 4096;
/** records created per transaction; etcd's default --max-txn-ops is 128 */
const CREATE_BATCH = 32;

export interface PartitionEntry { partition: number; record: PartitionRecord; modRevision: number }

export type CasResult =
  | { ok: true; modRevision: number }
  /** someone else changed it first: the record as it is now (undefined: it does not exist) */
  | { ok: false; current: PartitionEntry | undefined };

interface TableEvents {
  /** partitions whose record changed, in revision order; `revision`: the table reflects etcd up to it */
  updates: [updates: PartitionEntry[], revision: number];
  warning: [err: Error];
}

function partitionOf(key: string): number {
  const p = Number(key.slice(keys.partitionsPrefix.length));
  if (!Number.isSafeInteger(p) || p < 0 || keys.partition(p) !== key) throw new LayoutError(key, 'not a partition key');
  return p;
}

const sameRecord = (a: PartitionRecord, b: PartitionRecord) => encode(a) === encode(b);

function entry(key: string, s: Stored<PartitionRecord>): PartitionEntry {
  return { partition: partitionOf(key), record: s.value, modRevision: s.modRevision };
}

export class PartitionTable extends EventEmitter<TableEvents> {
  private mirror: PrefixMirror<PartitionRecord> | undefined;

  constructor(private readonly coord: Coordination) { super(); }

  /**
   * Creates `meta` with `partitions` if absent, in one transaction; returns what is stored. The
   * stored count wins over the caller's: the partition count is fixed when the cluster is created.
   */
  async ensureMeta(partitions: number, nowMs = Date.now()): Promise<MetaRecord> {
    if (!Number.isSafeInteger(partitions) || partitions < 1 || partitions > PARTITIONS_MAX) {
      throw new ChicagoError('INVALID_ARGUMENT', 'partition count', partitions);
    }
    const meta: MetaRecord = { partitions, createdAtMs: nowMs };
    const kv = this.coord.kv;
    const res = await this.coord.call('create meta', (o) =>
      kv.if(keys.meta, 'Create', '==', 0).then(kv.put(keys.meta).value(encode(meta))).else(kv.get(keys.meta)).options(o).commit());
    if (res.succeeded) return meta;
    const stored = res.responses[0]?.response_range?.kvs[0];
    if (!stored) throw new ChicagoError('INTERNAL', 'meta exists but was not returned');
    const m = decode(keys.meta, stored, parseMeta).value;
    if (m.partitions > PARTITIONS_MAX) throw new ChicagoError('INTERNAL', `stored partition count ${m.partitions} is out of range`);
    return m;
  }

  /** Every partition record, read now (not from the watch cache). */
  async load(): Promise<{ revision: number; entries: PartitionEntry[] }> {
    const { revision: rev, entries } = await this.coord.listJson(keys.partitionsPrefix, parsePartition);
    return { revision: rev, entries: [...entries].map(([k, s]) => entry(k, s)).sort((a, b) => a.partition - b.partition) };
  }

  /**
   * Creates the records of partitions 0..P-1 that do not exist yet, each with epoch 1 and its
   * rendezvous replica set over `liveNodes`. Create-if-absent: concurrent starters agree on the
   * first writer's record. Returns how many this call created.
   */
  async initialize(P: number, liveNodes: readonly NodeId[], n: number): Promise<number> {
    if (!Number.isSafeInteger(P) || P < 1 || P > PARTITIONS_MAX) throw new ChicagoError('INVALID_ARGUMENT', 'partition count', P);
    if (liveNodes.length === 0) throw new ChicagoError('NOT_READY', 'no live node to place partitions on');
    const existing = new Set((await this.load()).entries.map((e) => e.partition));
    const missing: number[] = [];
    for (let p = 0; p < P; p++) if (!existing.has(p)) missing.push(p);
    let created = 0;
    for (let i = 0; i < missing.length; i += CREATE_BATCH) {
      const batch = missing.slice(i, i + CREATE_BATCH);
      if (await this.createAll(batch, liveNodes, n)) { created += batch.length; continue; }
      // A concurrent starter got some of them first: one by one, so the rest still get created.
      for (const p of batch) if (await this.createAll([p], liveNodes, n)) created++;
    }
    return created;
  }

  private async createAll(ps: number[], liveNodes: readonly NodeId[], n: number): Promise<boolean> {
    const kv = this.coord.kv;
    const [first, ...rest] = ps;
    let txn = kv.if(keys.partition(first), 'Create', '==', 0);
    for (const p of rest) txn = txn.and(keys.partition(p), 'Create', '==', 0);
    const puts = ps.map((p) => kv.put(keys.partition(p)).value(encode(initialRecord(p, liveNodes, n))));
    const res = await this.coord.call(`create partitions ${first}..${ps[ps.length - 1]}`, (o) => txn.then(...puts).options(o).commit());
    if (res.succeeded) {
      const rev = revision(res.header.revision);
      for (const p of ps) this.mirror?.applyLocal(keys.partition(p), initialRecord(p, liveNodes, n), rev);
    }
    return res.succeeded;
  }

  /**
   * Calls `updates` with every record, then with each change (list, then watch from that
   * revision). The cache also serves get() and speeds up casUpdate().
   */
  async watch(): Promise<void> {
    if (this.mirror) throw new Error('partition table: watch() twice');
    const m = this.coord.mirror(keys.partitionsPrefix, parsePartition);
    this.mirror = m;
    m.on('warning', (err) => this.emit('warning', err));
    m.on('changes', (changes, rev) => {
      const updates: PartitionEntry[] = [];
      for (const c of changes) {
        if (c.value === undefined) {
          this.emit('warning', new LayoutError(c.key, 'partition record deleted; only CAS updates are allowed'));
          continue;
        }
        updates.push({ partition: partitionOf(c.key), record: c.value, modRevision: c.modRevision });
      }
      this.emit('updates', updates, rev);
    });
    try {
      await m.start();
    } catch (err) {
      this.mirror = undefined;
      throw err;
    }
  }

  /** The cached record (after watch()). */
  get(p: number): PartitionEntry | undefined {
    const key = keys.partition(p);
    const s = this.mirror?.get(key);
    return s ? entry(key, s) : undefined;
  }

  /**
   * Replaces partition p's record if it still has mod revision `expectedModRevision` (0: if it
   * does not exist). The epoch must not decrease; a caller asking for that has a bug and gets an
   * exception. A timeout is resolved by reading back: etcd holds `next` → it happened; someone
   * else's record → lost; still the expected record, or the read fails → OUTCOME_UNKNOWN (a retry
   * with the same arguments is safe: it reports success if the first attempt landed).
   */
  async casUpdate(p: number, expectedModRevision: number, next: PartitionRecord): Promise<CasResult> {
    const problem = partitionProblem(next);
    if (problem) throw new Error(`partition table: bad record for partition ${p}: ${problem}`);
    if (!Number.isSafeInteger(expectedModRevision) || expectedModRevision < 0) throw new Error(`partition table: bad revision ${expectedModRevision}`);
    const key = keys.partition(p);

    // The record at a given mod revision never changes, so a cache hit at that revision is exact.
    let prev: PartitionRecord | undefined;
    if (expectedModRevision > 0) {
      const cached = this.mirror?.get(key);
      if (cached?.modRevision === expectedModRevision) prev = cached.value;
      else {
        const now = await this.coord.getJson(key, parsePartition);
        if (now?.modRevision !== expectedModRevision) return this.lost(key, expectedModRevision, next, now);
        prev = now.value;
      }
      if (next.epoch < prev.epoch) {
        throw new Error(`partition table: epoch of partition ${p} would go from ${prev.epoch} back to ${next.epoch}`);
      }
    }

    const kv = this.coord.kv;
    const cmp = expectedModRevision === 0 ? kv.if(key, 'Create', '==', 0) : kv.if(key, 'Mod', '==', expectedModRevision);
    let res;
    try {
      res = await this.coord.call(`cas ${key}`, (o) => cmp.then(kv.put(key).value(encode(next))).else(kv.get(key)).options(o).commit());
    } catch (err) {
      return this.afterUnknown(key, expectedModRevision, next, err);
    }
    if (res.succeeded) {
      const rev = revision(res.header.revision);
      if (rev <= expectedModRevision) throw new Error(`partition table: revision went back from ${expectedModRevision} to ${rev}`);
      this.mirror?.applyLocal(key, next, rev);
      return { ok: true, modRevision: rev };
    }
    const kvNow = res.responses[0]?.response_range?.kvs[0];
    return this.lost(key, expectedModRevision, next, kvNow && decode(key, kvNow, parsePartition));
  }

  /** The compare failed. If etcd holds exactly `next`, an earlier attempt of this same swap landed. */
  private lost(key: string, expected: number, next: PartitionRecord, now: Stored<PartitionRecord> | undefined): CasResult {
    if (now && now.modRevision > expected && sameRecord(now.value, next)) return { ok: true, modRevision: now.modRevision };
    return { ok: false, current: now && entry(key, now) };
  }

  private async afterUnknown(key: string, expected: number, next: PartitionRecord, cause: unknown): Promise<CasResult> {
    if (!(cause instanceof ChicagoError) || cause.code !== 'COORDINATION_UNAVAILABLE') throw cause;
    let now: Stored<PartitionRecord> | undefined;
    try {
      now = await this.coord.getJson(key, parsePartition);
    } catch {
      throw new ChicagoError('OUTCOME_UNKNOWN', `CAS of ${key}: ${cause.message}`);
    }
    // Unchanged: the swap may still land (etcd does not cancel a proposed write on a deadline).
    if ((now?.modRevision ?? 0) === expected) throw new ChicagoError('OUTCOME_UNKNOWN', `CAS of ${key}: ${cause.message}`);
    // Changed: ours landed, or someone else's did and ours never can (mod revisions only grow).
    return this.lost(key, expected, next, now);
  }

  async close(): Promise<void> {
    await this.mirror?.close();
  }
}
