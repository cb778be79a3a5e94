// The node's one RocksDB database: a column family per node partition plus `default` for the
// node's own catalog. Opened and closed on the main thread only; workers attach by handle and
// must never close it (PLATFORM.md: closing from a worker crashes the process).
import type { ChainedBatch, Column, RocksLevel as Rocks } from '@nxtedition/rocksdb';
import { limits } from '../runtime/limits.js';
import { requireCjs } from '../runtime/require.js';
import { Kind } from './keys.js';

export type Range = { gte: Uint8Array; lt: Uint8Array; reverse?: boolean };
export type Entry = [key: Buffer, value: Buffer];

const { RocksLevel } = requireCjs('@nxtedition/rocksdb') as typeof import('@nxtedition/rocksdb');
type RocksLevel = Rocks;

const ENCODING = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const;
const WRITE_SYNC = { sync: true } as const;
const WRITE_NO_SYNC = { sync: false } as const;

export function columnName(partition: number): string { return `p${partition}`; }
/**
 * The family of a partition's record batches (key kind `batch`). Apart from the rest of the
 * partition, a stream's batches arrive in key order, so flushed files do not overlap: RocksDB moves
 * each to the base level without rewriting it, and rewrites it once more only to compress it into
 * the level below (L0 and the base level are stored uncompressed, the binding's fixed choice for
 * `compaction: 'level'`). In the partition's family every flushed file spanned the metadata and
 * index keys written beside each batch, and each compaction rewrote them all.
 */
export function batchColumnName(partition: number): string { return `b${partition}`; }

/** The memtable budget of each column family for a node whose memory.maxBytes is `maxBytes`. */
export function memtableBudgetBytes(maxBytes: number): number {
  return Math.min(limits.memtableBudgetBytesMax, Math.max(limits.memtableBudgetBytesMin, Math.floor(maxBytes / 16)));
}

/**
 * Column options sized from memory.maxBytes. RocksDB's defaults (a 64 MiB write buffer, two of
 * them, per family) let memtables alone outgrow a small cap; the binding sets a write buffer only
 * through `memtableMemoryBudget` with `compaction: 'level'` (write buffer = budget/4, at most six,
 * two merged per flush; L0/L1 uncompressed), and gives every family its own block cache.
 */
export function columnOptions(maxBytes: number): object {
  const budget = memtableBudgetBytes(maxBytes);
  return { compaction: 'level', memtableMemoryBudget: budget, cacheSize: Math.floor(budget * limits.blockCacheShareOfMemtable) };
}

export async function openDatabase(dir: string, partitions: number, memoryMaxBytes: number): Promise<RocksLevel> {
  const options = columnOptions(memoryMaxBytes);
  const columns: Record<string, object> = { default: options };
  for (let p = 0; p < partitions; p++) {
    columns[columnName(p)] = options;
    columns[batchColumnName(p)] = options;
  }
  // walCompression off: the binding's default compresses every write's log record with zstd on
  // the writing thread (the partition worker), the largest share of its CPU per produced record;
  // the log is short-lived (dropped once its memtable is flushed), so its bytes cost little disk.
  const db = new RocksLevel(dir, { columns, createIfMissing: true, walCompression: false, ...ENCODING });
  await db.open();
  for (let p = 0; p < partitions; p++) await moveBatchesToOwnFamily(db, p);
  return db;
}

/** The store of partition `p`: its family, with its record batches in a family of their own. */
export function partitionStore(db: RocksLevel, p: number): ColumnStore {
  return new ColumnStore(db, db.columns[columnName(p)], db.columns[batchColumnName(p)]);
}

const BATCHES: Range = { gte: Buffer.from([Kind.batch]), lt: Buffer.from([Kind.batch + 1]) };

/**
 * Data dirs of format 3 and older keep record batches in the partition's family: move them to the
 * batch family, a bounded slice per atomic write (each batch is in one family or the other at every
 * point, so an interrupted move resumes at the next open). Empty after the first open: one seek.
 */
async function moveBatchesToOwnFamily(db: RocksLevel, p: number): Promise<void> {
  const from = new ColumnStore(db, db.columns[columnName(p)]);
  const to = { column: db.columns[batchColumnName(p)] };
  const b = db.batch();
  let bytes = 0;
  let moved = 0;
  try {
    // a few at a time: a batch may be megabytes
    for (const [k, v] of from.iterate(BATCHES, 8)) {
      b._put(k, v, to);
      b._del(k, from.columnOptions);
      moved++;
      bytes += k.length + v.length;
      // no fsync: a move lost in a crash leaves its batches where they were, as the next open finds them
      if (bytes >= limits.writeBatchKeptBytesMax) { b._writeSync(WRITE_NO_SYNC); b._clear(); bytes = 0; }
    }
    if (bytes > 0) b._writeSync(WRITE_NO_SYNC);
  } finally {
    void b.close();
  }
  // One range tombstone over the moved keys' own: the seek of each later open skips them at once
  // rather than one by one until compaction drops them. Written after the moves, so it covers no batch.
  if (moved > 0) await from.clear(BATCHES);
}

export async function attachDatabase(handle: bigint): Promise<RocksLevel> {
  const db = new RocksLevel(handle, { ...ENCODING });
  await db.open();
  return db;
}

/**
 * Synchronous reads and writes on one column family, on the calling thread; keys of kind `batch`
 * go to `batches` (a family of their own, or the same one). A range spanning both reads as one.
 */
export class ColumnStore {
  /** the options object batch writes pass for this column, allocated once */
  readonly columnOptions: { readonly column: Column };
  /** the same for keys of kind `batch` */
  readonly batchOptions: { readonly column: Column };
  constructor(private readonly db: RocksLevel, readonly column: Column, readonly batches: Column = column) {
    this.columnOptions = { column };
    this.batchOptions = batches === column ? this.columnOptions : { column: batches };
  }

  /** the write options of the family that holds `key` */
  optionsFor(key: Uint8Array): { readonly column: Column } {
    return key[0] === Kind.batch ? this.batchOptions : this.columnOptions;
  }

  get(key: Uint8Array): Buffer | undefined {
    return this.db._getManySync([key], this.optionsFor(key))[0];
  }

  /** `range` cut where the batch kind begins and ends, each piece with its family, in iteration order */
  private pieces(range: Range): Array<[Column, Range]> {
    if (this.batches === this.column) return [[this.column, range]];
    const out: Array<[Column, Range]> = [];
    const piece = (column: Column, gte: Uint8Array, lt: Uint8Array): void => {
      if (Buffer.compare(gte, lt) < 0) out.push([column, { gte, lt, reverse: range.reverse }]);
    };
    piece(this.column, range.gte, min(range.lt, BATCHES.gte));
    piece(this.batches, max(range.gte, BATCHES.gte), min(range.lt, BATCHES.lt));
    piece(this.column, max(range.gte, BATCHES.lt), range.lt);
    return range.reverse ? out.reverse() : out;
  }

  /** Up to `limit` entries of a range, in key order (or reverse). */
  range(range: Range, limit: number): Entry[] {
    const out: Entry[] = [];
    for (const e of this.iterate(range, Math.min(limit, 1000))) {
      out.push(e);
      if (out.length >= limit) break;
    }
    return out;
  }

  /**
   * Lazily walks a range in chunks; stopping early closes the iterators. A RocksDB iterator reads
   * the store as it was when it was created, so the iterators of every family the range spans are
   * created together: a walk that runs over several turns (a snapshot copy) sees one point in time.
   */
  *iterate(range: Range, chunk = 256): Generator<Entry> {
    const its: Array<ReturnType<RocksLevel['iterator']>> = [];
    try {
      for (const [column, r] of this.pieces(range)) {
        its.push(this.db.iterator({ column, gte: r.gte, lt: r.lt, reverse: r.reverse ?? false, keys: true, values: true }));
      }
      for (const it of its) {
        for (;;) {
          const { rows, finished } = it._nextvSync(chunk, {});
          for (let i = 0; i < rows.length; i += 2) yield [rows[i], rows[i + 1]];
          if (finished || rows.length === 0) break;
        }
      }
    } finally {
      for (const it of its) void it.close();
    }
  }

  /**
   * Deletes a range. The binding has no range delete inside a write batch, so the families are
   * cleared one after the other, in the order whose crash between them does no harm: first the
   * partition's family, the whole range in one range delete (no meta, stream or log entry outlives
   * the rest of its range), then the batch family. A crash between the two leaves only batches no
   * stream names; a follower's digest then differs from its leader's and it takes a fresh copy,
   * whose first part clears them.
   */
  async clear(range: Range): Promise<void> {
    const { gte, lt } = range;
    const cleared: Array<Promise<void>> = [];
    const batchGte = max(gte, BATCHES.gte);
    const batchLt = min(lt, BATCHES.lt);
    const inBatches = Buffer.compare(batchGte, batchLt) < 0;
    // a range inside the batch kind has nothing in the partition's family (moved at open)
    const onlyBatches = inBatches && this.batches !== this.column && Buffer.compare(gte, BATCHES.gte) >= 0 && Buffer.compare(lt, BATCHES.lt) <= 0;
    if (!onlyBatches) cleared.push(this.db.clear({ column: this.column, gte, lt }));
    if (inBatches && this.batches !== this.column) cleared.push(this.db.clear({ column: this.batches, gte: batchGte, lt: batchLt }));
    await Promise.all(cleared);
  }
}

function min(a: Uint8Array, b: Uint8Array): Uint8Array { return Buffer.compare(a, b) <= 0 ? a : b; }
function max(a: Uint8Array, b: Uint8Array): Uint8Array { return Buffer.compare(a, b) >= 0 ? a : b; }

/**
 * One native write batch, reused for every group commit of the calling thread. Puts and deletes go
 * straight to the native batch: abstract-level's wrapper validates and re-encodes every key and
 * value, copies the options and keeps its own log of every op, which cost more than the write.
 * Keys and values must be Buffers or Uint8Arrays (they always are here).
 */
export class BatchWriter {
  private batch: ChainedBatch;
  /** operations in the open batch */
  ops = 0;
  /** key and value bytes in the open batch */
  private bytes = 0;
  constructor(private readonly db: RocksLevel) { this.batch = db.batch(); }

  put(store: ColumnStore, key: Uint8Array, value: Uint8Array): void {
    this.batch._put(key, value, store.optionsFor(key));
    this.ops++;
    this.bytes += key.length + value.length;
  }

  del(store: ColumnStore, key: Uint8Array): void {
    this.batch._del(key, store.optionsFor(key));
    this.ops++;
    this.bytes += key.length;
  }

  /** Write everything atomically (fsynced if `sync`); the batch is empty afterwards, written or not. */
  write(sync: boolean): void {
    try {
      this.batch._writeSync(sync ? WRITE_SYNC : WRITE_NO_SYNC);
    } finally {
      // Clearing keeps the native batch's capacity: after a large one, start a new batch so the
      // thread does not hold its largest batch ever (the old one is freed when collected).
      if (this.bytes > limits.writeBatchKeptBytesMax) {
        void this.batch.close();
        this.batch = this.db.batch();
      } else {
        this.batch._clear();
      }
      this.ops = 0;
      this.bytes = 0;
    }
  }
}
