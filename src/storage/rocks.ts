// The node's one RocksDB database: a column family per node partition plus `default` for the
// node's own catalog. Opened and closed on the main thread only; workers attach by handle and
// must never close it (PLATFORM.md: closing from a worker crashes the process).
import { RocksLevel, type ChainedBatch, type Column } from '@nxtedition/rocksdb';
import { limits } from '../runtime/limits.js';

export type Range = { gte: Uint8Array; lt: Uint8Array; reverse?: boolean };
export type Entry = [key: Buffer, value: Buffer];

const ENCODING = { keyEncoding: 'buffer', valueEncoding: 'buffer' } as const;

export function columnName(partition: number): string { return `p${partition}`; }

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
  for (let p = 0; p < partitions; p++) columns[columnName(p)] = options;
  // walCompression off: the binding's default compresses every write's log record with zstd on
  // the writing thread (the partition worker), the largest share of its CPU per produced record;
  // the log is short-lived (dropped once its memtable is flushed), so its bytes cost little disk.
  const db = new RocksLevel(dir, { columns, createIfMissing: true, walCompression: false, ...ENCODING });
  await db.open();
  return db;
}

export async function attachDatabase(handle: bigint): Promise<RocksLevel> {
  const db = new RocksLevel(handle, { ...ENCODING });
  await db.open();
  return db;
}

/** Synchronous reads and writes on one column family, on the calling thread. */
export class ColumnStore {
  /** the options object batch writes pass for this column, allocated once */
  readonly columnOptions: { readonly column: Column };
  constructor(private readonly db: RocksLevel, readonly column: Column) {
    this.columnOptions = { column };
  }

  get(key: Uint8Array): Buffer | undefined {
    return this.db._getManySync([key], { column: this.column })[0];
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

  /** Lazily walks a range in chunks; stopping early closes the iterator. */
  *iterate(range: Range, chunk = 256): Generator<Entry> {
    const it = this.db.iterator({ column: this.column, gte: range.gte, lt: range.lt, reverse: range.reverse ?? false, keys: true, values: true });
    try {
      for (;;) {
        const { rows, finished } = it._nextvSync(chunk, {});
        for (let i = 0; i < rows.length; i += 2) yield [rows[i], rows[i + 1]];
        if (finished || rows.length === 0) return;
      }
    } finally {
      void it.close();
    }
  }

  async clear(range: Range): Promise<void> {
    await this.db.clear({ column: this.column, gte: range.gte, lt: range.lt });
  }
}

const WRITE_SYNC = { sync: true } as const;
const WRITE_NO_SYNC = { sync: false } as const;

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
    this.batch._put(key, value, store.columnOptions);
    this.ops++;
    this.bytes += key.length + value.length;
  }

  del(store: ColumnStore, key: Uint8Array): void {
    this.batch._del(key, store.columnOptions);
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
