// @nxtedition/rocksdb ships no types; this declares the subset Chicago uses.
declare module '@nxtedition/rocksdb' {
  export type Column = { readonly __column: unique symbol };
  export interface RangeOptions {
    column?: Column;
    gt?: Uint8Array; gte?: Uint8Array; lt?: Uint8Array; lte?: Uint8Array;
    reverse?: boolean; limit?: number; keys?: boolean; values?: boolean;
  }
  export interface RocksIterator {
    _nextvSync(size: number, options: object): { rows: Buffer[]; finished: boolean };
    close(): Promise<void>;
  }
  export interface ChainedBatch {
    put(key: Uint8Array, value: Uint8Array, options?: { column?: Column }): this;
    del(key: Uint8Array, options?: { column?: Column }): this;
    readonly length: number;
    _writeSync(options: { sync?: boolean }): void;
    /** the native operations under put/del/clear, without abstract-level's validation and op log */
    _put(key: Uint8Array, value: Uint8Array, options: { column?: Column }): void;
    _del(key: Uint8Array, options: { column?: Column }): void;
    _clear(): void;
    close(): Promise<void>;
  }
  export interface RocksOptions {
    columns?: Record<string, object>;
    keyEncoding?: 'buffer'; valueEncoding?: 'buffer';
    createIfMissing?: boolean;
    parallelism?: number;
    walTTL?: number; walSizeLimit?: number;
    [k: string]: unknown;
  }
  export class RocksLevel {
    constructor(locationOrHandle: string | bigint, options?: RocksOptions);
    readonly status: 'opening' | 'open' | 'closing' | 'closed';
    readonly handle: bigint;
    readonly columns: Record<string, Column>;
    open(): Promise<void>;
    close(): Promise<void>;
    batch(): ChainedBatch;
    iterator(options?: RangeOptions): RocksIterator;
    clear(options: RangeOptions): Promise<void>;
    _getManySync(keys: Uint8Array[], options?: { column?: Column }): Array<Buffer | undefined>;
    getProperty(property: string): string;
  }
}
