// What the replication code reads from a partition's column family: RocksDB's ColumnStore in the
// worker, an in-memory store in the simulator (test/sim), so both run the same recovery and
// catch-up code.
export interface Storage {
  get(key: Uint8Array): Buffer | undefined;
  /** [key, value] pairs of [gte, lt) in key order; stopping early is allowed */
  iterate(range: { gte: Uint8Array; lt: Uint8Array }): Iterable<[Buffer, Buffer]>;
  /** deletes [gte, lt) before the next read sees the store */
  clear(range: { gte: Uint8Array; lt: Uint8Array }): unknown;
}
