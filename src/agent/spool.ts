// The agent's write-ahead log. Segments of records `u32 length | u32 crc32 | JSON`; a record whose
// length or CRC does not check is a torn write (kill -9 mid-append) and is cut off on recovery.
// File checkpoints go in the same append as the records read before them, so one fdatasync commits
// both: a checkpoint never points past what the spool holds; an append is one spool record, so a torn
// write keeps records and checkpoint together or neither (never records the file is read for again). Every segment starts with a snapshot of
// the state (producers, sequences, acks, checkpoints), so older segments can go once every record in
// them is acknowledged — and an ack is only used for that after its own append was synced.
import { closeSync, fdatasync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, unlinkSync, writeSync, writevSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
// CRC-32 (zlib's polynomial, the same values): a few times faster than node:zlib's on a read's bytes
import { crc32 } from '@node-rs/crc32';
import { limits } from '../runtime/limits.js';
import { nowUs } from '../runtime/timing.js';
import { DataDirInUseError, lockDataDir } from '../storage/dir-lock.js';

export const RECORD_HEADER_BYTES = 8;
/** one spool record: one append (a read of at most 1 MiB as records, JSON escapes up to 6× for control bytes, is below this) */
export const SPOOL_RECORD_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Text of the records not yet acknowledged that the spool holds in memory (values and headers, about);
 * above it readers pause as when the quota is reached: a backlog waits in the files, not in the heap
 * (a record costs about three times its text in the heap).
 */
export const PENDING_MEMORY_BYTES_MAX = 16 * 1024 * 1024;
/** what a record's headers other than its source add to its text, about */
const RECORD_HEADERS_BYTES = 128;

export interface FileCkpt {
  task: string;
  /** the watched path the file was found at (its rotated copies are looked for beside it) */
  path: string;
  dev: number;
  ino: number;
  /** the next byte to read after a restart (the start of a pending multiline event) */
  offset: number;
  headLen: number;
  headHash: string;
  /** the hash of the up to 1 KiB before offset */
  tailHash: string;
  /** pieces already shipped of an over-long line the offset is inside (absent: at a line start) */
  cut?: number;
}

export interface ShipRecord {
  task: string;
  seq: number;
  topic: string;
  /** the record's text, or its bytes in base64 when `enc` says so (bytes that are not UTF-8) */
  value: string;
  enc?: 'base64';
  /** the record's headers; seq is added when it is shipped (records of one append may share this object) */
  headers: Record<string, string>;
  /** the record's key (the node places keyed records by it) */
  key?: string;
  /** the value is ASCII: its byte length is its length */
  ascii?: true;
}

export interface Producer { id: string; partition: number }

/**
 * A shipper with nothing to send (see Spool.offerSend): the append that holds the task's records right
 * after `after` takes their batch's range, and the ack `ack` not durable yet, in the same fdatasync.
 */
export interface IdleShipper {
  /** the last seq of the shipper's last batch (in flight or acknowledged) */
  after: number;
  ack?: number;
  /** how many of the entry's records (from the first) the batch takes: the shipper's own cut */
  cut: (e: RecsEntry) => number;
  /** no batch is cut before (the shipper's linger) */
  notBeforeMs: number;
  /**
   * batches the shipper may take after this one: the next commit's records right after this batch
   * take the next range (a commit that starts while this one's fdatasync runs, before the shipper sees it)
   */
  more?: number;
}

/**
 * Records of one task with consecutive seqs from `seq`, in one spool entry: the headers they all share
 * once (`h`), then per record its value and only the headers it does not share (`x`); seq is a header
 * of every record. One JSON body and one CRC per batch instead of per line.
 */
export interface RecsEntry {
  t: 'recs';
  task: string;
  topic: string;
  seq: number;
  h: Record<string, string>;
  v: string[];
  /** per record, the headers not in `h` (absent when there are none) */
  x?: Array<Record<string, string> | null>;
  /** indexes of the values held as base64 (bytes that are not UTF-8) */
  b64?: number[];
  /** per record, its key (null: none; absent when no record has one) */
  k?: Array<string | null>;
  /** every value is ASCII text (a file read that was all ASCII): spooled as raw bytes, shipped without measuring or encoding */
  a?: 1;
  /**
   * the values as byte ranges of one buffer instead of `v` (which is then empty): ASCII lines of a
   * file read, kept as the bytes they were read as (no string and no object per line)
   */
  vb?: ValueBytes;
}

/**
 * Values as ranges of one buffer: value i is data[starts[i], ends[i]). `lease`: data is a view of a
 * pooled read buffer (buffers.ts), released once the records leave the pending records (acknowledged):
 * nothing reads the bytes after that.
 */
export interface ValueBytes { data: Buffer; starts: Uint32Array; ends: Uint32Array; lease?: { release(): void } }

/** How many records a 'recs' entry holds. */
export function recsCount(e: RecsEntry): number {
  return e.vb ? e.vb.starts.length : e.v.length;
}

/** The values of an entry whose values are bytes (vb): none as strings. */
export const NO_VALUES: string[] = [];

export type Entry =
  /** one record per entry: still read from older segments, no longer written */
  | ({ t: 'rec' } & ShipRecord)
  | RecsEntry
  | { t: 'ck'; key: string; ck: FileCkpt | null }
  /** a non-file source's position (a journald cursor), committed with the records read before it */
  | { t: 'cur'; key: string; cursor: string | null }
  | { t: 'prod'; task: string; id: string; partition: number }
  | { t: 'send'; task: string; from: number; to: number }
  | { t: 'ack'; task: string; to: number }
  /** the entries of one append as one spool record: a torn write keeps all of them or none (records without their checkpoint would be read again) */
  | { t: 'all'; es: Entry[] }
  /** sends: per task, the batches in flight in order (a spool written before pipelining holds one range, not a list) */
  | { t: 'snap'; producers: Record<string, Producer>; next: Record<string, number>; acked: Record<string, number>; ckpts: Record<string, FileCkpt>; cursors?: Record<string, string>; sends: Record<string, SendRange[] | SendRange> };

/** A batch's seq range: written to the spool before the batch is sent. */
export interface SendRange { from: number; to: number }

/** Text bytes of records [i, j) of e in memory, about (values and headers). */
function textBytes(e: RecsEntry, i: number, j: number): number {
  if (j <= i) return 0;
  let values = 0;
  if (e.vb) values = e.vb.ends[j - 1] - e.vb.starts[i];
  else for (let k = i; k < j; k++) values += e.v[k].length;
  return values + (j - i) * ((e.h.source?.length ?? 0) + RECORD_HEADERS_BYTES);
}

/** Record k's headers: the shared ones, or those merged with its own (a new object). */
export function headersAt(e: RecsEntry, k: number): Record<string, string> {
  const x = e.x?.[k];
  return x ? { ...e.h, ...x } : e.h;
}

/** Record k's value as text: Latin-1 of its bytes (ASCII), its text, or undefined when it is bytes held as base64. */
export function valueText(e: RecsEntry, k: number): string | undefined {
  if (e.vb) return e.vb.data.toString('latin1', e.vb.starts[k], e.vb.ends[k]);
  if (e.b64?.includes(k)) return undefined;
  return e.v[k];
}

/**
 * The records of a 'recs' entry as objects (tests, the JSON body for an old node, alert patterns):
 * the shipper's own path reads the entry as it is. Records without headers of their own share one
 * headers object, which holds no seq: the shipper adds each record's seq header when it builds the request.
 */
export function recordsOf(e: RecsEntry, from = 0, to = recsCount(e)): ShipRecord[] {
  const out: ShipRecord[] = new Array<ShipRecord>(to - from);
  const b64 = e.b64 ? new Set(e.b64) : undefined;
  // records whose own headers are one object (a level shared in memory) share the merged headers too
  let lastX: Record<string, string> | undefined;
  let lastHeaders = e.h;
  for (let i = from; i < to; i++) {
    const seq = e.seq + i;
    const x = e.x?.[i];
    let headers = e.h;
    if (x) {
      if (x !== lastX) {
        lastX = x;
        lastHeaders = { ...e.h, ...x };
      }
      headers = lastHeaders;
    }
    const value = e.vb ? e.vb.data.toString('latin1', e.vb.starts[i], e.vb.ends[i]) : e.v[i];
    const r: ShipRecord = b64?.has(i) ? { task: e.task, seq, topic: e.topic, value, enc: 'base64', headers }
      : e.a ? { task: e.task, seq, topic: e.topic, value, headers, ascii: true } : { task: e.task, seq, topic: e.topic, value, headers };
    const key = e.k?.[i];
    if (typeof key === 'string') r.key = key;
    out[i - from] = r;
  }
  return out;
}

/** Records [i, j) of a 'recs' entry. */
export interface Span { e: RecsEntry; i: number; j: number }

/**
 * A task's records not acknowledged yet, in seq order, as the entries they were appended in (no
 * object per record): the first entry's records before `skip` are acknowledged.
 */
export class PendingRecords {
  private readonly blocks: RecsEntry[] = [];
  private skip = 0;
  /** records held */
  length = 0;

  /** the first record's seq (NaN when none) */
  get firstSeq(): number {
    return this.blocks.length === 0 ? Number.NaN : this.blocks[0].seq + this.skip;
  }

  /** the last record's seq (NaN when none) */
  get lastSeq(): number {
    const b = this.blocks[this.blocks.length - 1];
    return b === undefined ? Number.NaN : b.seq + recsCount(b) - 1;
  }

  /** e's records from index `from` on, right after the last one held. */
  push(e: RecsEntry, from: number): void {
    const n = recsCount(e);
    if (from >= n) return;
    if (this.length > 0 && this.lastSeq + 1 !== e.seq + from) throw new Error(`spool: task ${e.task} seq ${e.seq + from} follows ${this.lastSeq}`);
    if (this.length === 0) {
      this.blocks.length = 0;
      this.skip = from;
    }
    this.blocks.push(e);
    this.length += n - from;
  }

  /** Drops the records up to seq `to`; their text bytes (about). */
  dropTo(to: number): number {
    let freed = 0;
    let k = 0;
    while (k < this.blocks.length && this.length > 0) {
      const b = this.blocks[k];
      const n = recsCount(b);
      const upto = Math.min(n, to - b.seq + 1);
      if (upto <= this.skip) break;
      freed += textBytes(b, this.skip, upto);
      this.length -= upto - this.skip;
      if (upto < n) {
        this.skip = upto;
        break;
      }
      this.skip = 0;
      k++;
    }
    if (k > 0) {
      // every record of these is acknowledged: their read buffers may be reused
      for (let i = 0; i < k; i++) this.blocks[i].vb?.lease?.release();
      this.blocks.splice(0, k);
    }
    return freed;
  }

  /** The records with seqs from..to (clipped to those held), as ranges of their entries. */
  spans(from: number, to: number): Span[] {
    const out: Span[] = [];
    // the first entry that holds `from` or a later seq, by bisection: a trickle of small reads behind a
    // slow node leaves thousands of entries, and the shipper asks on every turn
    let lo = 0;
    let hi = this.blocks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const b = this.blocks[mid];
      if (b.seq + recsCount(b) - 1 < from) lo = mid + 1;
      else hi = mid;
    }
    for (let k = lo; k < this.blocks.length; k++) {
      const e = this.blocks[k];
      const lo = Math.max(k === 0 ? this.skip : 0, from - e.seq);
      const hi = Math.min(recsCount(e), to - e.seq + 1);
      if (lo < hi) out.push({ e, i: lo, j: hi });
      if (e.seq + hi - 1 >= to) break;
    }
    return out;
  }

  /** The first record's headers (undefined when none). */
  firstHeaders(): Record<string, string> | undefined {
    return this.length === 0 ? undefined : headersAt(this.blocks[0], this.skip);
  }

  /** Every record as an object (tests, slow paths). */
  toArray(): ShipRecord[] {
    return this.spans(this.firstSeq, this.lastSeq).flatMap((s) => recordsOf(s.e, s.i, s.j));
  }
}

/**
 * A spool record's body is JSON (it starts with `{`), or for an append whose records are ASCII text
 * (RecsEntry.a) this binary form: `0x00 | u32 LE metaLength | meta JSON | values`, where meta is the
 * entry with each such RecsEntry's `v` replaced by `vl` (the values' lengths) and values are their
 * bytes back to back. Hand-written because JSON's escape scan of every line was the spool's main cost
 * per line; a value's bytes are copied as they are.
 */
const BINARY_BODY = 0x00;
/**
 * The form for entries whose values are byte ranges (RecsEntry.vb, the lines of an ASCII file read):
 * `0x01 | u32 LE metaLength | meta JSON | per such entry: u32 LE starts[n], u32 LE ends[n], raw bytes`,
 * where meta holds each such entry without `v` and with `vn` (n) and `rl` (raw length); value i is
 * raw[starts[i], ends[i]). The raw bytes are the read's, newlines included, written from its buffer (no copy).
 */
const RANGES_BODY = 0x01;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** The ASCII 'recs' entries of an entry (itself, or those inside an 'all'), in order. */
function asciiRecs(e: Entry, bytes: boolean): RecsEntry[] | undefined {
  const want = (x: Entry): x is RecsEntry => x.t === 'recs' && (bytes ? x.vb !== undefined : x.a === 1);
  if (e.t === 'recs') return want(e) ? [e] : undefined;
  if (e.t !== 'all') return undefined;
  let out: RecsEntry[] | undefined;
  for (const x of e.es) if (want(x)) (out ??= []).push(x);
  return out;
}

function metaOf(e: Entry): Entry {
  const lens = (r: RecsEntry): Entry => {
    const { v, ...rest } = r;
    const vl = new Array<number>(v.length);
    for (let i = 0; i < v.length; i++) vl[i] = v[i].length;
    return { ...rest, vl } as unknown as Entry;
  };
  if (e.t === 'recs') return lens(e);
  if (e.t === 'all') return { t: 'all', es: e.es.map((x) => (x.t === 'recs' && x.a ? lens(x) : x)) };
  return e;
}

function rangesMetaOf(e: Entry): Entry {
  const meta = (r: RecsEntry): Entry => {
    const { v: _v, vb, ...rest } = r;
    return { ...rest, vn: vb!.starts.length, rl: vb!.data.length } as unknown as Entry;
  };
  if (e.t === 'recs') return e.vb ? meta(e) : e;
  if (e.t === 'all') return { t: 'all', es: e.es.map((x) => (x.t === 'recs' && x.vb ? meta(x) : x)) };
  return e;
}

function withHeader(out: Buffer): Buffer {
  out.writeUInt32LE(out.length - RECORD_HEADER_BYTES, 0);
  out.writeUInt32LE(crc32(out.subarray(RECORD_HEADER_BYTES)), 4);
  return out;
}

function encodeBinary(e: Entry, recs: RecsEntry[]): Buffer {
  const meta = JSON.stringify(metaOf(e));
  const metaLen = Buffer.byteLength(meta);
  let valueBytes = 0;
  for (const r of recs) for (let i = 0; i < r.v.length; i++) valueBytes += r.v[i].length;
  const len = 5 + metaLen + valueBytes;
  if (len > SPOOL_RECORD_BYTES_MAX) throw new Error(`spool record of ${len} bytes exceeds ${SPOOL_RECORD_BYTES_MAX}`);
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + len);
  out[RECORD_HEADER_BYTES] = BINARY_BODY;
  out.writeUInt32LE(metaLen, RECORD_HEADER_BYTES + 1);
  let pos = RECORD_HEADER_BYTES + 5;
  pos += out.write(meta, pos, metaLen, metaLen === meta.length ? 'latin1' : 'utf8');
  // ASCII: the values' Latin-1 bytes are their UTF-8; joined, they are one copy instead of one call per value
  for (const r of recs) {
    const all = r.v.join('');
    pos += out.write(all, pos, all.length, 'latin1');
  }
  if (pos !== out.length) throw new Error(`spool encoder wrote ${pos} of ${out.length} bytes`);
  return withHeader(out);
}

function u32Bytes(a: Uint32Array): Buffer {
  if (LITTLE_ENDIAN) return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  const out = Buffer.allocUnsafe(4 * a.length);
  for (let i = 0; i < a.length; i++) out.writeUInt32LE(a[i], 4 * i);
  return out;
}

/**
 * The RANGES_BODY form as the parts of one spool record, written with one writev: the values' bytes
 * are written from the read they are ranges of (no copy), and the records keep pointing there.
 */
function encodeRanges(e: Entry, recs: RecsEntry[]): Buffer[] {
  const meta = JSON.stringify(rangesMetaOf(e));
  const metaLen = Buffer.byteLength(meta);
  let len = 5 + metaLen;
  for (const r of recs) len += 8 * r.vb!.starts.length + r.vb!.data.length;
  if (len > SPOOL_RECORD_BYTES_MAX) throw new Error(`spool record of ${len} bytes exceeds ${SPOOL_RECORD_BYTES_MAX}`);
  const head = Buffer.allocUnsafe(RECORD_HEADER_BYTES + 5 + metaLen);
  head.writeUInt32LE(len, 0);
  head[RECORD_HEADER_BYTES] = RANGES_BODY;
  head.writeUInt32LE(metaLen, RECORD_HEADER_BYTES + 1);
  head.write(meta, RECORD_HEADER_BYTES + 5, metaLen, metaLen === meta.length ? 'latin1' : 'utf8');
  const parts: Buffer[] = [head];
  let crc = crc32(head.subarray(RECORD_HEADER_BYTES));
  for (const r of recs) {
    const vb = r.vb!;
    for (const b of [u32Bytes(vb.starts), u32Bytes(vb.ends), vb.data] as Buffer[]) {
      parts.push(b);
      crc = crc32(b, crc);
    }
  }
  head.writeUInt32LE(crc, 4);
  return parts;
}

/** A binary body back to its entry (the values as strings again). Throws when it does not add up. */
function decodeBinary(body: Buffer): Entry {
  const metaLen = body.readUInt32LE(1);
  const e = JSON.parse(body.toString('utf8', 5, 5 + metaLen)) as Entry;
  let pos = 5 + metaLen;
  const values = (r: RecsEntry & { vl?: number[] }): void => {
    const vl = r.vl;
    if (!Array.isArray(vl)) throw new Error('binary spool record without value lengths');
    const v = new Array<string>(vl.length);
    for (let i = 0; i < vl.length; i++) {
      if (pos + vl[i] > body.length) throw new Error('binary spool record values run past its end');
      v[i] = body.toString('latin1', pos, pos + vl[i]);
      pos += vl[i];
    }
    delete r.vl;
    r.v = v;
  };
  if (e.t === 'recs') values(e);
  else if (e.t === 'all') for (const x of e.es) if (x.t === 'recs' && x.a) values(x);
  if (pos !== body.length) throw new Error('binary spool record has bytes after its values');
  return e;
}

/** A RANGES_BODY back to its entry: values as ranges of a copy of their bytes (not of the segment read at recovery). */
function decodeRanges(body: Buffer): Entry {
  const metaLen = body.readUInt32LE(1);
  const e = JSON.parse(body.toString('utf8', 5, 5 + metaLen)) as Entry;
  let pos = 5 + metaLen;
  const ranges = (r: RecsEntry & { vn?: number; rl?: number }): void => {
    const n = r.vn;
    const rl = r.rl;
    if (!Number.isInteger(n) || !Number.isInteger(rl) || n! < 0 || rl! < 0) throw new Error('ranges spool record without counts');
    if (pos + 8 * n! + rl! > body.length) throw new Error('ranges spool record runs past its end');
    const starts = new Uint32Array(n!);
    const ends = new Uint32Array(n!);
    for (let i = 0; i < n!; i++) starts[i] = body.readUInt32LE(pos + 4 * i);
    pos += 4 * n!;
    for (let i = 0; i < n!; i++) ends[i] = body.readUInt32LE(pos + 4 * i);
    pos += 4 * n!;
    for (let i = 0; i < n!; i++) if (starts[i] > ends[i] || ends[i] > rl!) throw new Error('ranges spool record has a value outside its bytes');
    const data = Buffer.from(body.subarray(pos, pos + rl!));
    pos += rl!;
    delete r.vn;
    delete r.rl;
    r.v = NO_VALUES;
    r.vb = { data, starts, ends };
  };
  if (e.t === 'recs') ranges(e);
  else if (e.t === 'all') for (const x of e.es) if (x.t === 'recs' && (x as { vn?: number }).vn !== undefined) ranges(x);
  if (pos !== body.length) throw new Error('ranges spool record has bytes after its values');
  return e;
}

/** A spool record as parts to write back to back (one Buffer for all but the RANGES_BODY form). */
export function encodeEntryParts(e: Entry): Buffer[] {
  const ranges = asciiRecs(e, true);
  return ranges ? encodeRanges(e, ranges) : [encodeEntry(e)];
}

export function encodeEntry(e: Entry): Buffer {
  const ranges = asciiRecs(e, true);
  if (ranges) return Buffer.concat(encodeRanges(e, ranges));
  const recs = asciiRecs(e, false);
  if (recs) return encodeBinary(e, recs);
  const json = JSON.stringify(e);
  // the JSON written once, straight after its header (no second copy)
  const len = Buffer.byteLength(json);
  if (len > SPOOL_RECORD_BYTES_MAX) throw new Error(`spool record of ${len} bytes exceeds ${SPOOL_RECORD_BYTES_MAX}`);
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + len);
  // as many bytes as chars: ASCII, whose UTF-8 is its Latin-1 (a plain copy rather than an encode)
  out.write(json, RECORD_HEADER_BYTES, len, len === json.length ? 'latin1' : 'utf8');
  return withHeader(out);
}

/** The whole records of a segment and where the valid part ends (a torn or corrupt tail starts there). */
export function decodeSegment(buf: Buffer): { entries: Entry[]; validBytes: number } {
  const entries: Entry[] = [];
  let pos = 0;
  while (pos + RECORD_HEADER_BYTES <= buf.length) {
    const len = buf.readUInt32LE(pos);
    const crc = buf.readUInt32LE(pos + 4);
    if (len > SPOOL_RECORD_BYTES_MAX || pos + RECORD_HEADER_BYTES + len > buf.length) break;
    const body = buf.subarray(pos + RECORD_HEADER_BYTES, pos + RECORD_HEADER_BYTES + len);
    if (crc32(body) !== crc) break;
    let e: Entry;
    try {
      e = body[0] === BINARY_BODY ? decodeBinary(body) : body[0] === RANGES_BODY ? decodeRanges(body) : JSON.parse(body.toString('utf8')) as Entry;
    } catch {
      break;
    }
    entries.push(e);
    pos += RECORD_HEADER_BYTES + len;
  }
  return { entries, validBytes: pos };
}

interface Segment { n: number; file: string; bytes: number; maxSeq: Map<string, number> }

/** A write of queued appends whose fdatasync may still run. */
interface Commit { batch: Array<{ entries: Entry[]; resolve: () => void; reject: (e: Error) => void }>; bytes: number; synced: boolean; startUs: number; writtenUs: number; syncedUs: number; rode?: string[] }

export interface SpoolOptions { dir: string; quotaBytes: number; segmentBytes: number }

export interface RecoveryReport { segments: number; entries: number; tornBytes: number; pending: number }

/**
 * The state the spool holds, rebuilt from its segments on open; changed only through append().
 * Appends are applied to this state once they are durable.
 */
export class Spool {
  readonly producers = new Map<string, Producer>();
  /** the next seq per task (taken by appends that may not be durable yet) */
  readonly next = new Map<string, number>();
  /**
   * the next seq per task after the durable records: what a snapshot holds. A segment rolled while
   * appends wait for the next fdatasync would otherwise make their seqs durable without their records:
   * a kill -9 then, and the lines read again under new seqs leave a gap.
   */
  private readonly durableNext = new Map<string, number>();
  /** the highest acknowledged seq per task (durable) */
  readonly acked = new Map<string, number>();
  readonly ckpts = new Map<string, FileCkpt>();
  readonly cursors = new Map<string, string>();
  /**
   * per task, the batches that were (perhaps) sent and not acknowledged, in seq order: resent exactly
   * so, in this order, with the same sequences (a pipelining shipper has several in flight)
   */
  readonly sends = new Map<string, SendRange[]>();
  /** records not yet acknowledged, per task, in seq order (bounded by the quota) */
  readonly pending = new Map<string, PendingRecords>();
  /** A task's pending records as objects (tests, slow paths). */
  records(task: string): ShipRecord[] {
    return this.pending.get(task)?.toArray() ?? [];
  }
  private segments: Segment[] = [];
  /** text bytes of the records in `pending`, about */
  private pendingBytes = 0;
  private fd = -1;
  private queue: Array<{ entries: Entry[]; resolve: () => void; reject: (e: Error) => void }> = [];
  /** a commit of the queue is set for the next check phase */
  private scheduled = false;
  /** a commit of readers' appends is set for a time (the commit gap); an urgent append brings it forward */
  private deferred: { timer: NodeJS.Timeout; dueMs: number } | undefined;
  /** the queue holds an append its caller waits for, or an entry other than records, offsets and cursors: it commits at once */
  private queueUrgent = false;
  /** record bytes in the queue, about */
  private queueBytes = 0;
  /** the tasks of the records in the queue: only their shippers' plans bring its commit forward */
  private readonly queueTasks = new Set<string>();
  private lastCommitMs = 0;
  /** per task, when its lingering shipper cuts its next batch: a deferred commit lands before it */
  private readonly cuts = new Map<string, number>();
  /** commits written and not applied yet, in order (their fdatasyncs run on the thread pool) */
  private readonly commits: Commit[] = [];
  /** fdatasyncs not returned yet (after fail() they outlive their commits) */
  private syncing = 0;
  /** where the next commit is written in the live segment (seg.bytes counts only applied ones) */
  private writePos = 0;
  /** the live segment is full: it rolls once its commits are applied */
  private rollDue = false;
  private closed = false;
  /** called after an append made records durable */
  onRecords: (task: string) => void = () => {};
  /** set to have each commit's stage times (µs, timing.ts) with the record ranges it made durable, in commit order */
  onTiming?: (t: { recs: Array<{ task: string; from: number; to: number }>; startUs: number; writtenUs: number; syncedUs: number; bytes: number }) => void;
  private readonly listeners = new Set<() => void>();
  /** shippers waiting for records, per task */
  private readonly idle = new Map<string, IdleShipper>();
  /**
   * Per task, the ranges an idle shipper's offer put in commits not applied yet: the shipper learns of
   * them when they are, so an offer it makes meanwhile starts after them (withSends).
   */
  private readonly riding = new Map<string, { to: number; count: number; keyed: boolean }>();

  private constructor(private readonly opts: SpoolOptions) {}

  static open(opts: SpoolOptions): { spool: Spool; report: RecoveryReport } {
    mkdirSync(opts.dir, { recursive: true });
    // one agent per spool: a second one would append its own seqs and ship the first one's records
    let unlock: () => void;
    try {
      unlock = lockDataDir(opts.dir, 'spool dir');
    } catch (err) {
      if (err instanceof DataDirInUseError && err.kind === 'live') err.message += ' (one agent per spool.dir)';
      throw err;
    }
    const s = new Spool(opts);
    s.unlock = unlock;
    try {
      const report = s.recover();
      return { spool: s, report };
    } catch (err) {
      unlock();
      throw err;
    }
  }

  /** releases the spool dir's lock (taken by open) */
  private unlock?: () => void;

  get bytes(): number {
    let n = 0;
    for (const seg of this.segments) n += seg.bytes;
    return n;
  }

  /** Bytes left under the quota. */
  room(): number {
    return Math.max(0, this.opts.quotaBytes - this.bytes);
  }

  /** Readers pause while this is true. */
  full(): boolean {
    return this.bytes >= this.opts.quotaBytes || this.pendingBytes >= PENDING_MEMORY_BYTES_MAX;
  }

  /** Wakes when space was freed. */
  onFreed(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** The next `count` seqs of a task (the first returned), taken now; the records must be appended in this turn (seqs are gap-free only if every taken seq is appended). */
  takeSeq(task: string, count = 1): number {
    const n = this.next.get(task) ?? 0;
    this.next.set(task, n + count);
    return n;
  }

  /** A stable producer for a task: made once, kept in the spool. */
  producerFor(task: string, host: string, partitions: number): { producer: Producer; entry?: Entry } {
    const p = this.producers.get(task);
    if (p) return { producer: p };
    const id = `agent.${host}.${task}.${randomBytes(6).toString('hex')}`.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 128);
    const partition = crc32(Buffer.from(id)) % partitions;
    const producer = { id, partition };
    this.producers.set(task, producer);
    return { producer, entry: { t: 'prod', task, id, partition } };
  }

  /**
   * The task's shipper waits for records: the next append holding the records right after `s.after`
   * also writes their batch's range (and the ack s.ack) — one fdatasync before the batch is sent
   * instead of two. The range is durable with its records or not at all, so a resend after a crash is
   * the same batch. Withdrawn by withdrawSend() or by the first append that takes it.
   */
  offerSend(task: string, s: IdleShipper): void {
    this.idle.set(task, s);
    if (this.deferred) this.schedule();
  }

  withdrawSend(task: string): void {
    this.idle.delete(task);
  }

  /** Entries with the range (and ack) of an idle shipper whose next records they hold; `rode` gets their tasks. */
  private withSends(entries: Entry[], rode: string[]): Entry[] {
    let out = entries;
    for (const e of entries) {
      if (e.t !== 'recs') continue;
      const s = this.idle.get(e.task);
      const count = recsCount(e);
      if (!s || count === 0 || Date.now() < s.notBeforeMs) continue;
      // an offer made before the shipper saw the ranges riding in commits still in flight (it withdraws
      // and offers again whenever it wakes) starts after them, with their room taken
      let after = s.after;
      let more = s.more ?? 0;
      const r = this.riding.get(e.task);
      if (r && r.to > after) {
        if (r.keyed || r.count > more) continue;
        after = r.to;
        more -= r.count;
      }
      // only the records right after the shipper's last batch: a record before them is unsent yet
      if (e.seq !== after + 1) continue;
      this.idle.delete(e.task);
      const n = Math.max(1, Math.min(count, s.cut(e)));
      out = [...(s.ack !== undefined ? [{ t: 'ack' as const, task: e.task, to: s.ack }] : []), ...out, { t: 'send', task: e.task, from: e.seq, to: e.seq + n - 1 }];
      rode.push(e.task);
      this.riding.set(e.task, { to: e.seq + n - 1, count: (r?.count ?? 0) + 1, keyed: !!e.k });
      // a whole unkeyed batch: the records after it, in a commit that overlaps this one, take the next
      // range (a keyed batch goes alone; the shipper withdraws this once it sees the batch)
      if (more > 0 && n === count && !e.k) this.idle.set(e.task, { after: e.seq + n - 1, cut: s.cut, notBeforeMs: s.notBeforeMs, more: more - 1 });
    }
    return out;
  }

  /**
   * Writes entries and fdatasyncs them (group commit with whatever else is queued); resolves once durable.
   * `deferrable`: records (with offsets or cursors) whose reader goes on without waiting for them; they
   * may wait for the commit gap. An append its caller waits for commits at once: nothing else would
   * join it meanwhile.
   */
  append(entries: Entry[], deferrable = false): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the spool is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ entries, resolve, reject });
      if (!deferrable) this.queueUrgent = true;
      for (const e of entries) {
        if (e.t === 'recs') {
          this.queueBytes += textBytes(e, 0, recsCount(e));
          this.queueTasks.add(e.task);
        }
        else if (e.t !== 'ck' && e.t !== 'cur') this.queueUrgent = true;
      }
      this.schedule();
    });
  }

  /**
   * A commit of what is queued, in the next check phase (appends made in this turn go together), or,
   * for readers' appends alone, once the commit gap since the last commit has passed.
   */
  private schedule(): void {
    if (this.scheduled || this.queue.length === 0 || this.commits.length >= limits.agentSpoolCommitsInFlightMax || this.rollDue) return;
    const dueMs = this.commitDueMs();
    const now = Date.now();
    if (dueMs > now) {
      if (this.deferred && this.deferred.dueMs <= dueMs) return;
      if (this.deferred) clearTimeout(this.deferred.timer);
      this.deferred = { dueMs, timer: setTimeout(() => { this.deferred = undefined; this.schedule(); }, dueMs - now) };
      return;
    }
    if (this.deferred) { clearTimeout(this.deferred.timer); this.deferred = undefined; }
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.commit();
    });
  }

  /** When the queue commits: at once, unless it holds only readers' appends that no shipper waits to send. */
  private commitDueMs(): number {
    if (this.queueUrgent || this.closed || this.queueBytes >= limits.agentSpoolCommitEarlyBytes) return 0;
    // at most one gap from now, also after the wall clock stepped back
    let due = Math.min(this.lastCommitMs, Date.now()) + limits.agentSpoolCommitGapMs;
    for (const task of this.queueTasks) {
      // a shipper waiting for these records sends them with this commit: no later than it may
      const idle = this.idle.get(task);
      if (idle) due = Math.min(due, idle.notBeforeMs);
      const cut = this.cuts.get(task);
      if (cut !== undefined) due = Math.min(due, cut - limits.agentSpoolCommitLeadMs);
    }
    return due;
  }

  /** A task's shipper cuts its next batch at `atMs` (undefined: no cut planned): records read before then go in it. */
  expectCut(task: string, atMs: number | undefined): void {
    if (atMs === undefined) this.cuts.delete(task);
    else this.cuts.set(task, atMs);
    if (this.deferred) this.schedule();
  }

  /** Fails every append queued or in flight: a spool that cannot write stops the agent (nothing may be checkpointed that is not in it). */
  private fail(err: Error): void {
    if (this.deferred) { clearTimeout(this.deferred.timer); this.deferred = undefined; }
    const e = new Error(`spool: ${err.message}`);
    for (const c of this.commits.splice(0)) for (const b of c.batch) b.reject(e);
    for (const q of this.queue.splice(0)) q.reject(e);
    this.closed = true;
    this.closeFd();
  }

  /**
   * One write + one fdatasync of the queued appends. The fdatasync runs off the main thread, so reading
   * and encoding the next appends go on meanwhile; up to agentSpoolCommitsInFlightMax commits overlap
   * (the next starts during an fdatasync instead of after it), and they are applied in order, each once
   * its own fdatasync and every one before it are done.
   */
  private commit(): void {
    if (this.queue.length === 0 || this.rollDue) return;
    if (this.closed) {
      // the commits in flight still take effect when their fdatasync returns
      for (const q of this.queue.splice(0)) q.reject(new Error('spool: the spool is closed'));
      return;
    }
    const batch = this.queue;
    this.queue = [];
    this.queueUrgent = false;
    this.queueBytes = 0;
    this.queueTasks.clear();
    this.lastCommitMs = Date.now();
    const startUs = this.onTiming ? nowUs() : 0;
    // an idle shipper's range is taken now, not when the append was queued: records queued while
    // the last fdatasync ran find the shipper that has just sent that one's batch waiting for them,
    // and go out after this one fdatasync instead of waiting for their range in the next
    const rode: string[] = [];
    if (this.idle.size > 0) for (const b of batch) b.entries = this.withSends(b.entries, rode);
    let data: { length: number };
    const at = this.writePos;
    try {
      const bufs: Buffer[] = [];
      let bytes = 0;
      for (const { entries } of batch) {
        for (const b of encodeEntryParts(entries.length === 1 ? entries[0] : { t: 'all', es: entries })) {
          bufs.push(b);
          bytes += b.length;
        }
      }
      // one writev, the values of a read written from its buffer (libuv writes on past IOV_MAX buffers
      // and after a short write; it stops short only on an error such as ENOSPC)
      const wrote = writevSync(this.fd, bufs, at);
      if (wrote !== bytes) throw new Error(`wrote ${wrote} of ${bytes} bytes`);
      data = { length: bytes };
    } catch (err) {
      for (const b of batch) b.reject(new Error(`spool: ${(err as Error).message}`));
      return this.fail(err as Error);
    }
    this.writePos = at + data.length;
    // the segment rolls once the commits in it are applied: no commit starts in it meanwhile
    if (this.writePos >= this.opts.segmentBytes) this.rollDue = true;
    const c: Commit = { batch, bytes: data.length, synced: false, startUs, writtenUs: this.onTiming ? nowUs() : 0, syncedUs: 0, ...(rode.length > 0 ? { rode } : {}) };
    this.commits.push(c);
    this.syncing++;
    fdatasync(this.fd, (err) => {
      this.syncing--;
      if (err) return this.fail(err);
      c.synced = true;
      if (this.onTiming) c.syncedUs = nowUs();
      this.applySynced();
    });
    this.schedule();
  }

  /** Applies the commits at the front whose fdatasync is done, in order; then rolls, collects and starts the next. */
  private applySynced(): void {
    const seg = this.segments[this.segments.length - 1];
    try {
      while (this.commits.length > 0 && this.commits[0].synced) {
        // taken off the list once applied: fail() rejects it if applying throws
        const c = this.commits[0];
        const { batch, bytes } = c;
        const wasFull = this.full();
        const touched = new Set<string>();
        seg.bytes += bytes;
        for (const { entries } of batch) for (const e of entries) this.apply(e, seg, touched);
        // their ranges are the shipper's now (sends)
        for (const task of c.rode ?? []) {
          const r = this.riding.get(task);
          if (r && --r.count === 0) this.riding.delete(task);
        }
        for (const b of batch) b.resolve();
        this.commits.shift();
        if (this.onTiming) this.timing(c);
        for (const task of touched) this.onRecords(task);
        // acks that brought the records in memory below their limit wake the readers
        if (wasFull && !this.full()) for (const fn of this.listeners) fn();
      }
      if (!this.closed) {
        if (this.rollDue && this.commits.length === 0) {
          this.rollDue = false;
          this.roll();
        }
        this.collect();
      }
    } catch (e) {
      return this.fail(e as Error);
    }
    if (this.closed) {
      if (this.commits.length === 0) this.closeFd();
      for (const q of this.queue.splice(0)) q.reject(new Error('the spool is closed'));
    } else this.schedule();
  }

  private timing({ batch, startUs, writtenUs, syncedUs, bytes }: Commit): void {
    const recs: Array<{ task: string; from: number; to: number }> = [];
    const add = (e: Entry): void => {
      if (e.t === 'recs') recs.push({ task: e.task, from: e.seq, to: e.seq + recsCount(e) - 1 });
      else if (e.t === 'all') e.es.forEach(add);
    };
    for (const b of batch) b.entries.forEach(add);
    this.onTiming!({ recs, startUs, writtenUs, syncedUs, bytes });
  }

  private apply(e: Entry, seg: Segment, touched?: Set<string>): void {
    switch (e.t) {
      case 'rec':
        // an older spool's record per line: an entry of one
        return this.apply({ t: 'recs', task: e.task, topic: e.topic, seq: e.seq, h: e.headers, v: [e.value], ...(e.enc ? { b64: [0] } : {}), ...(e.key !== undefined ? { k: [e.key] } : {}) }, seg, touched);
      case 'recs': {
        const acked = this.acked.get(e.task) ?? -1;
        const n = recsCount(e);
        const last = e.seq + n - 1;
        if (last <= acked) return;
        let q = this.pending.get(e.task);
        if (!q) this.pending.set(e.task, (q = new PendingRecords()));
        const from = Math.max(0, acked + 1 - e.seq);
        q.push(e, from);
        this.pendingBytes += textBytes(e, from, n);
        seg.maxSeq.set(e.task, Math.max(seg.maxSeq.get(e.task) ?? -1, last));
        if ((this.next.get(e.task) ?? 0) <= last) this.next.set(e.task, last + 1);
        if ((this.durableNext.get(e.task) ?? 0) <= last) this.durableNext.set(e.task, last + 1);
        touched?.add(e.task);
        return;
      }
      case 'all':
        for (const x of e.es) this.apply(x, seg, touched);
        return;
      case 'ck':
        if (e.ck) this.ckpts.set(e.key, e.ck);
        else this.ckpts.delete(e.key);
        return;
      case 'cur':
        if (e.cursor !== null) this.cursors.set(e.key, e.cursor);
        else this.cursors.delete(e.key);
        return;
      case 'prod':
        this.producers.set(e.task, { id: e.id, partition: e.partition });
        return;
      case 'send': {
        let l = this.sends.get(e.task);
        if (!l) this.sends.set(e.task, (l = []));
        // a batch is cut after the last one: an overlap would resend records under another sequence
        if (l.length > 0 && l[l.length - 1].to >= e.from) throw new Error(`spool: task ${e.task} batch ${e.from}..${e.to} overlaps ${l[l.length - 1].from}..${l[l.length - 1].to}`);
        if (e.to > (this.acked.get(e.task) ?? -1)) l.push({ from: e.from, to: e.to });
        return;
      }
      case 'ack': {
        const prev = this.acked.get(e.task) ?? -1;
        if (e.to <= prev) return;
        this.acked.set(e.task, e.to);
        const l = this.sends.get(e.task);
        if (l) {
          let i = 0;
          while (i < l.length && l[i].to <= e.to) i++;
          l.splice(0, i);
          if (l.length === 0) this.sends.delete(e.task);
        }
        const q = this.pending.get(e.task);
        if (q) this.pendingBytes -= q.dropTo(e.to);
        return;
      }
      case 'snap':
        for (const [k, v] of Object.entries(e.producers)) this.producers.set(k, v);
        for (const [k, v] of Object.entries(e.next)) {
          this.next.set(k, Math.max(v, this.next.get(k) ?? 0));
          this.durableNext.set(k, Math.max(v, this.durableNext.get(k) ?? 0));
        }
        for (const [k, v] of Object.entries(e.acked)) this.apply({ t: 'ack', task: k, to: v }, seg);
        this.ckpts.clear();
        for (const [k, v] of Object.entries(e.ckpts)) this.ckpts.set(k, v);
        this.cursors.clear();
        for (const [k, v] of Object.entries(e.cursors ?? {})) this.cursors.set(k, v);
        this.sends.clear();
        for (const [k, v] of Object.entries(e.sends)) {
          const l = (Array.isArray(v) ? v : [v]).filter((r) => r.to > (this.acked.get(k) ?? -1)).map((r) => ({ from: r.from, to: r.to }));
          if (l.length > 0) this.sends.set(k, l);
        }
        return;
    }
  }

  private snapshot(): Entry {
    return {
      t: 'snap',
      producers: Object.fromEntries(this.producers),
      next: Object.fromEntries(this.durableNext),
      acked: Object.fromEntries(this.acked),
      ckpts: Object.fromEntries(this.ckpts),
      cursors: Object.fromEntries(this.cursors),
      sends: Object.fromEntries([...this.sends].map(([k, l]) => [k, l.map((r) => ({ ...r }))])),
    };
  }

  private segFile(n: number): string {
    return path.join(this.opts.dir, `${String(n).padStart(10, '0')}.wal`);
  }

  /** Starts a new segment with a snapshot, durable before it is used. */
  private roll(): void {
    const n = (this.segments[this.segments.length - 1]?.n ?? 0) + 1;
    const file = this.segFile(n);
    const fd = openSync(file, 'w+');
    const snap = encodeEntry(this.snapshot());
    writeSync(fd, snap, 0, snap.length, 0);
    fdatasyncSync(fd);
    const dirFd = openSync(this.opts.dir, 'r');
    fsyncSync(dirFd);
    closeSync(dirFd);
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = fd;
    this.segments.push({ n, file, bytes: snap.length, maxSeq: new Map() });
    this.writePos = snap.length;
  }

  /** Deletes the older segments every record of which is acknowledged (the acks are durable: they went through append). */
  private collect(): void {
    let freed = false;
    while (this.segments.length > 1) {
      const seg = this.segments[0];
      const done = [...seg.maxSeq].every(([task, seq]) => seq <= (this.acked.get(task) ?? -1));
      if (!done) break;
      unlinkSync(seg.file);
      this.segments.shift();
      freed = true;
    }
    // a full spool whose live segment is all acknowledged rolls so that segment can go (between commits:
    // one in flight writes to the live segment)
    if (!freed && this.full() && this.segments.length === 1 && this.commits.length === 0) {
      const seg = this.segments[0];
      if ([...seg.maxSeq].every(([task, seq]) => seq <= (this.acked.get(task) ?? -1)) && seg.maxSeq.size > 0) {
        this.roll();
        return this.collect();
      }
    }
    if (freed) for (const fn of this.listeners) fn();
  }

  /** Replays every segment in order; a torn tail is cut off; appends then go to a fresh segment. */
  private recover(): RecoveryReport {
    const names = readdirSync(this.opts.dir).filter((f) => /^\d{10}\.wal$/.test(f)).sort();
    let entries = 0;
    let tornBytes = 0;
    for (let i = 0; i < names.length; i++) {
      const file = path.join(this.opts.dir, names[i]);
      const buf = readFileSync(file);
      const { entries: es, validBytes } = decodeSegment(buf);
      const seg: Segment = { n: Number(names[i].slice(0, 10)), file, bytes: validBytes, maxSeq: new Map() };
      if (validBytes < buf.length) {
        // a torn append: only the last segment can have one (a new segment starts after a synced roll)
        tornBytes += buf.length - validBytes;
        const fd = openSync(file, 'r+');
        ftruncateSync(fd, validBytes);
        fdatasyncSync(fd);
        closeSync(fd);
      }
      if (es.length === 0) {
        // a segment whose snapshot never became durable
        unlinkSync(file);
        continue;
      }
      for (const e of es) this.apply(e, seg);
      entries += es.length;
      this.segments.push(seg);
    }
    // appends continue in a fresh segment that starts with the recovered state
    this.roll();
    this.collect();
    let pending = 0;
    for (const q of this.pending.values()) pending += q.length;
    return { segments: names.length, entries, tornBytes, pending };
  }

  close(): void {
    this.unlock?.();
    this.unlock = undefined;
    this.closed = true;
    if (this.deferred) { clearTimeout(this.deferred.timer); this.deferred = undefined; this.schedule(); }
    // the last fdatasync in flight closes the fd when it returns
    if (this.commits.length === 0) this.closeFd();
  }

  private closeFd(): void {
    // an fdatasync on the thread pool still uses the fd: its callback closes it (a closed number could be reused)
    if (this.syncing > 0) return;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
