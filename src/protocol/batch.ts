// The record batch: Kafka's RecordBatch v2 (magic 2), the one shape a produced record has from the
// client's encoder to the partition's stored bytes (docs/protocol.md, "Record batches").
//
//   0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 (2)
//  17 crc u32 (CRC32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//  27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//  53 baseSequence i32 | 57 recordCount i32 | 61 records
//  record: length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//          keyLength varint (-1: none) key | valueLength varint value | headerCount varint
//          per header: keyLength varint key (UTF-8) | valueLength varint value
//  (varints are zigzag, as protobuf's sint32/sint64)
//
// Hand-written rather than a generic codec: it runs once per produced record on the node's hot
// path, validates in place without building objects, and its few field types do not need one.
// Chicago's idempotence (a string producerId, sequence, previousSequence) travels beside the batch
// in the request, as today; the batch's own producerId/epoch/baseSequence are -1.
import { requireCjs } from '../runtime/require.js';
import { isUtf8 } from 'node:buffer';
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';

const { crc32c } = requireCjs('@node-rs/crc32') as typeof import('@node-rs/crc32');

export const BATCH_MAGIC = 2;
export const BATCH_HEADER_BYTES = 61;
/** The HTTP produce body that carries one batch (POST /v1/topics/{topic}/records). */
export const BATCH_CONTENT_TYPE = 'application/vnd.chicago.record-batch';

const OFF_LENGTH = 8;
const OFF_EPOCH = 12;
const OFF_MAGIC = 16;
const OFF_CRC = 17;
const OFF_ATTRIBUTES = 21;
const OFF_LAST_DELTA = 23;
const OFF_BASE_TS = 27;
const OFF_MAX_TS = 35;
const OFF_PRODUCER_ID = 43;
const OFF_PRODUCER_EPOCH = 51;
const OFF_BASE_SEQUENCE = 53;
const OFF_COUNT = 57;
const CRC_FROM = OFF_ATTRIBUTES;

const ATTR_COMPRESSION = 0x07;
const ATTR_LOG_APPEND_TIME = 0x08;
const ATTR_TRANSACTIONAL = 0x10;
const ATTR_CONTROL = 0x20;

const TWO_32 = 2 ** 32;

export interface BatchRecord {
  /** bytes, or text sent as UTF-8 */
  value: Uint8Array | string;
  key?: Uint8Array | string | null;
  headers?: Record<string, string> | null;
  /** headers encoded once for many records (encodeHeaders), sent before `headers` */
  shared?: EncodedHeaders;
  /** one more header, after the others: a per-record header without a map to walk */
  header?: [name: string, value: string];
}

/** A header list in batch form, made once and shared by the records that carry it. */
export interface EncodedHeaders { count: number; bytes: Buffer }

export function encodeHeaders(h: Record<string, string>): EncodedHeaders {
  const names = Object.keys(h);
  let n = 0;
  for (const name of names) n += headerBytesOf(name, h[name]);
  const bytes = Buffer.allocUnsafe(n);
  let pos = 0;
  for (const name of names) pos = writeHeader(bytes, pos, name, h[name]);
  return { count: names.length, bytes };
}

function headerBytesOf(name: string, value: string): number {
  const nl = Buffer.byteLength(name);
  const vl = Buffer.byteLength(value);
  return varintBytes(nl) + nl + varintBytes(vl) + vl;
}

function writeHeader(buf: Buffer, pos: number, name: string, value: string): number {
  pos = writeVarint(buf, pos, Buffer.byteLength(name));
  pos += buf.write(name, pos, 'utf8');
  pos = writeVarint(buf, pos, Buffer.byteLength(value));
  return pos + buf.write(value, pos, 'utf8');
}

const byteLengthOf = (v: Uint8Array | string): number => (typeof v === 'string' ? Buffer.byteLength(v) : v.length);

function writeBytes(buf: Buffer, pos: number, v: Uint8Array | string, len: number): number {
  pos = writeVarint(buf, pos, len);
  if (typeof v === 'string') buf.write(v, pos, 'utf8');
  else buf.set(v, pos);
  return pos + len;
}

/** A record as read back: key/value are views into the batch bytes. */
export type DecodedRecord = [key: Uint8Array | null, value: Uint8Array, headers: Record<string, string> | null];

/** What routing and accounting need, found by walking the bytes without building records. */
export interface BatchInfo {
  count: number;
  /** key + value + header bytes over all records: what batch limits and subscriber credit count */
  recordBytes: number;
  /** some record has a key */
  keyed: boolean;
}

/**
 * A batch the gateway validated, with what validation found: the node trusts it as it is.
 * `given`: the caller reads the bytes no more (a request body of its own), so the node may hand
 * their buffer on rather than copy it.
 */
export interface CheckedBatch { bytes: Uint8Array; info: BatchInfo; given?: boolean }

export function checkBatch(bytes: Uint8Array, given = false): CheckedBatch {
  const info = validateBatch(bytes);
  return given ? { bytes, info, given } : { bytes, info };
}

const bad = (why: string): ChicagoError => new ChicagoError('INVALID_BATCH', why);

// ---- varints ---------------------------------------------------------------------------------

export function varintBytes(n: number): number {
  if (n >= -64 && n < 64) return 1;
  if (n >= -8192 && n < 8192) return 2;
  // zigzag of a safe integer, as a non-negative number
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  let len = 1;
  while (z >= 0x80) { z = Math.floor(z / 128); len++; }
  return len;
}

export function writeVarint(buf: Buffer, pos: number, n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  if (z < 0x8000_0000) {
    while (z >= 0x80) { buf[pos++] = (z & 0x7f) | 0x80; z >>>= 7; }
    buf[pos++] = z;
    return pos;
  }
  while (z >= 0x80) {
    buf[pos++] = (z % 128) | 0x80;
    z = Math.floor(z / 128);
  }
  buf[pos++] = z;
  return pos;
}

/** Read position and record index shared by the reader functions (one walk at a time: no reentrancy in here). */
let at = 0;
let rec = 0;

/** A zigzag varint of at most `maxBytes` bytes, ending before `end`. `field` names it in an error only (no string is built per call). */
function readVarint(buf: Uint8Array, end: number, maxBytes: number, field: string): number {
  let z = 0;
  let mul = 1;
  for (let i = 0; i < maxBytes; i++) {
    if (at >= end) throw bad(`record ${rec} ${field}: truncated varint at byte ${at}`);
    const b = buf[at++];
    z += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) {
      if (z > Number.MAX_SAFE_INTEGER) throw bad(`record ${rec} ${field}: varint out of range at byte ${at}`);
      return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
    }
    mul *= 128;
  }
  throw bad(`record ${rec} ${field}: varint longer than ${maxBytes} bytes at byte ${at}`);
}

// ---- encode ----------------------------------------------------------------------------------

/**
 * One batch of records, ready to send. `timestampMs` is the create time for every record; the
 * node replaces it with its append time (attributes bit 3, LogAppendTime, as a Kafka broker does).
 */
export function encodeBatch(records: readonly BatchRecord[], timestampMs = Date.now()): Buffer {
  if (records.length === 0) throw new ChicagoError('INVALID_ARGUMENT', 'records', 'empty batch');
  const n = records.length;
  // sizes first (one allocation), lengths kept for the write pass
  const lens = new Array<number>(n);
  const vlens = new Array<number>(n);
  const klens = new Array<number>(n);
  let total = BATCH_HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    const r = records[i];
    const vl = vlens[i] = byteLengthOf(r.value);
    const kl = klens[i] = r.key === undefined || r.key === null ? -1 : byteLengthOf(r.key);
    let body = 1 + 1 + varintBytes(i); // attributes, timestampDelta 0, offsetDelta
    body += kl < 0 ? 1 : varintBytes(kl) + kl;
    body += varintBytes(vl) + vl;
    let hc = 0;
    if (r.shared) { hc += r.shared.count; body += r.shared.bytes.length; }
    if (r.headers) for (const name in r.headers) { body += headerBytesOf(name, r.headers[name]); hc++; }
    if (r.header) { body += headerBytesOf(r.header[0], r.header[1]); hc++; }
    body += varintBytes(hc);
    lens[i] = body;
    total += varintBytes(body) + body;
  }
  const buf = Buffer.allocUnsafe(total);
  writeBatchHeader(buf, n, timestampMs);
  let pos = BATCH_HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    const r = records[i];
    pos = writeRecordStart(buf, pos, lens[i], i);
    if (klens[i] < 0) buf[pos++] = 1; // zigzag(-1): no key
    else pos = writeBytes(buf, pos, r.key!, klens[i]);
    pos = writeBytes(buf, pos, r.value, vlens[i]);
    const h = r.headers;
    let hc = (r.shared ? r.shared.count : 0) + (r.header ? 1 : 0);
    if (h) for (const _name in h) hc++;
    pos = writeVarint(buf, pos, hc);
    if (r.shared) { r.shared.bytes.copy(buf, pos); pos += r.shared.bytes.length; }
    if (h) for (const name in h) pos = writeHeader(buf, pos, name, h[name]);
    if (r.header) pos = writeHeader(buf, pos, r.header[0], r.header[1]);
  }
  if (pos !== total) throw new ChicagoError('INTERNAL', `batch encoder wrote ${pos} of ${total} bytes`);
  return sealBatch(buf);
}

/**
 * The 61-byte header of an unstamped batch of `n` records into buf[0..61), all but its CRC: for an
 * encoder that writes the records itself after BATCH_HEADER_BYTES, then calls sealBatch.
 */
export function writeBatchHeader(buf: Buffer, n: number, timestampMs: number): void {
  buf.writeInt32BE(0, 0); // baseOffset: the node stamps it
  buf.writeInt32BE(0, 4);
  buf.writeInt32BE(buf.length - 12, OFF_LENGTH);
  buf.writeInt32BE(-1, OFF_EPOCH);
  buf[OFF_MAGIC] = BATCH_MAGIC;
  buf.writeInt16BE(0, OFF_ATTRIBUTES);
  buf.writeInt32BE(n - 1, OFF_LAST_DELTA);
  writeI64(buf, OFF_BASE_TS, timestampMs);
  writeI64(buf, OFF_MAX_TS, timestampMs);
  writeI64(buf, OFF_PRODUCER_ID, -1);
  buf.writeInt16BE(-1, OFF_PRODUCER_EPOCH);
  buf.writeInt32BE(-1, OFF_BASE_SEQUENCE);
  buf.writeInt32BE(n, OFF_COUNT);
}

/** A record's length (of what follows it), attributes, timestampDelta 0 and offsetDelta `i`: up to its key. */
export function writeRecordStart(buf: Buffer, pos: number, length: number, i: number): number {
  pos = writeVarint(buf, pos, length);
  buf[pos++] = 0; // attributes
  buf[pos++] = 0; // timestampDelta
  return writeVarint(buf, pos, i);
}

/** The batch's CRC, once its records are written. */
export function sealBatch(buf: Buffer): Buffer {
  buf.writeUInt32BE(crc32c(buf.subarray(CRC_FROM)), OFF_CRC);
  return buf;
}

/**
 * A batch's CRC taken while it is written, for an encoder that writes front to back: `crc` (of the bytes
 * from BATCH_CRC_FROM up to `from`) continued over [from, to), so the bytes are read
 * while still in cache; start with `from` = BATCH_CRC_FROM and crc 0, end with sealBatchCrc.
 */
export function batchCrcOver(buf: Buffer, crc: number, from: number, to: number): number {
  if (!(from >= CRC_FROM && to >= from && to <= buf.length)) throw new ChicagoError('INTERNAL', `batch CRC over [${from}, ${to}) of ${buf.length} bytes`);
  return to === from ? crc : crc32c(buf.subarray(from, to), crc);
}

/** Seals a batch with the CRC batchCrcOver took over all of its bytes from BATCH_CRC_FROM. */
export function sealBatchCrc(buf: Buffer, crc: number): Buffer {
  buf.writeUInt32BE(crc, OFF_CRC);
  return buf;
}

/** where the bytes the batch CRC covers start */
export const BATCH_CRC_FROM = CRC_FROM;

function writeI64(buf: Buffer, pos: number, n: number): void {
  const hi = Math.floor(n / TWO_32);
  buf.writeInt32BE(hi, pos);
  buf.writeUInt32BE(n - hi * TWO_32, pos + 4);
}

function readI64(buf: Uint8Array, pos: number): number {
  const v = new DataView(buf.buffer, buf.byteOffset + pos, 8);
  return v.getInt32(0) * TWO_32 + v.getUint32(4);
}

const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

// ---- validate --------------------------------------------------------------------------------

/**
 * Check a batch from an untrusted sender, in place: header fields, CRC, every record's bounds,
 * varints, counts and sizes against the limits. Throws a ChicagoError (INVALID_BATCH for a
 * malformed batch; the limit's own code for one over a limit); never anything else.
 */
export function validateBatch(bytes: Uint8Array): BatchInfo {
  const buf = asBuffer(bytes);
  const len = buf.length;
  if (len < BATCH_HEADER_BYTES) throw bad(`${len} bytes is shorter than the ${BATCH_HEADER_BYTES}-byte header`);
  if (len > limits.frameBytesMax) throw new ChicagoError('BATCH_TOO_LARGE', len, limits.frameBytesMax);
  if (buf[OFF_MAGIC] !== BATCH_MAGIC) throw bad(`magic ${buf[OFF_MAGIC]}, only 2 (Kafka RecordBatch v2) is accepted`);
  const declared = buf.readInt32BE(OFF_LENGTH);
  if (declared !== len - 12) throw bad(`batchLength ${declared} does not match the ${len - 12} bytes that follow it`);
  const attributes = buf.readInt16BE(OFF_ATTRIBUTES);
  if (attributes & ATTR_COMPRESSION) throw bad(`compressed batches (codec ${attributes & ATTR_COMPRESSION}) are not accepted`);
  if (attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL)) throw bad('transactional and control batches are not accepted');
  const count = buf.readInt32BE(OFF_COUNT);
  if (count <= 0) throw bad(`recordCount ${count}`);
  if (count > limits.batchRecordsMax) throw new ChicagoError('TOO_MANY_RECORDS', count, limits.batchRecordsMax);
  if (buf.readInt32BE(OFF_LAST_DELTA) !== count - 1) throw bad(`lastOffsetDelta ${buf.readInt32BE(OFF_LAST_DELTA)} with ${count} records`);
  const crc = buf.readUInt32BE(OFF_CRC);
  if (crc32c(buf.subarray(CRC_FROM)) !== crc) throw bad('CRC32C mismatch');

  let total = 0;
  let keyed = false;
  // Hand-written, once per produced record: the walk keeps its position in a local (the shared
  // `at` is a context slot, a memory access per use) and reads 1-byte varints in place, calling
  // readVarint (which names the field in its errors) only for longer or truncated ones.
  let p = BATCH_HEADER_BYTES;
  let b = 0;
  // the batch as aligned 32-bit words (from byte `shift` on), for the headers' ASCII scan
  const shift = (4 - (buf.byteOffset & 3)) & 3;
  const words = new Uint32Array(buf.buffer, buf.byteOffset + shift, len > shift ? (len - shift) >>> 2 : 0);
  for (let i = 0; i < count; i++) {
    let rlen: number;
    if (p < len && (b = buf[p]) < 0x80) { rlen = (b >>> 1) ^ -(b & 1); p++; }
    // a record of 64 B to 8 KB: two bytes
    else if (p + 1 < len && buf[p + 1] < 0x80) { b = (b & 0x7f) | (buf[p + 1] << 7); rlen = (b >>> 1) ^ -(b & 1); p += 2; }
    else { rec = i; at = p; rlen = readVarint(buf, len, 5, 'length'); p = at; }
    if (rlen < 0 || rlen > len - p) throw bad(`record ${i}: length ${rlen} runs past the batch`);
    const end = p + rlen;
    p++; // attributes
    if (p < end && buf[p] < 0x80) p++; else { rec = i; at = p; readVarint(buf, end, 10, 'timestampDelta'); p = at; }
    let delta: number;
    if (p < end && (b = buf[p]) < 0x80) { delta = (b >>> 1) ^ -(b & 1); p++; }
    // records 64 to 8191: two bytes
    else if (p + 1 < end && buf[p + 1] < 0x80) { b = (b & 0x7f) | (buf[p + 1] << 7); delta = (b >>> 1) ^ -(b & 1); p += 2; }
    else { rec = i; at = p; delta = readVarint(buf, end, 5, 'offsetDelta'); p = at; }
    if (delta !== i) throw bad(`record ${i}: offsetDelta ${delta}`);
    let klen: number;
    if (p < end && (b = buf[p]) < 0x80) { klen = (b >>> 1) ^ -(b & 1); p++; } else { rec = i; at = p; klen = readVarint(buf, end, 5, 'key length'); p = at; }
    if (klen < -1 || klen > end - p) throw bad(`record ${i}: key length ${klen} runs past the record`);
    if (klen === 0) throw new ChicagoError('INVALID_KEY', `record ${i}: empty (send no key instead)`);
    if (klen > limits.keyBytesMax) throw new ChicagoError('INVALID_KEY', `record ${i}: ${klen} bytes, limit is ${limits.keyBytesMax}`);
    if (klen > 0) { keyed = true; p += klen; }
    let vlen: number;
    if (p < end && (b = buf[p]) < 0x80) { vlen = (b >>> 1) ^ -(b & 1); p++; }
    // a value of 64 B to 8 KB: two bytes
    else if (p + 1 < end && buf[p + 1] < 0x80) { b = (b & 0x7f) | (buf[p + 1] << 7); vlen = (b >>> 1) ^ -(b & 1); p += 2; }
    else { rec = i; at = p; vlen = readVarint(buf, end, 5, 'value length'); p = at; }
    if (vlen < 0) throw bad(`record ${i}: a value is required (length ${vlen})`);
    if (vlen > end - p) throw bad(`record ${i}: value length ${vlen} runs past the record`);
    p += vlen;
    let hc: number;
    if (p < end && (b = buf[p]) < 0x80) { hc = (b >>> 1) ^ -(b & 1); p++; } else { rec = i; at = p; hc = readVarint(buf, end, 5, 'header count'); p = at; }
    if (hc < 0 || hc > limits.headerCountMax) {
      if (hc < 0) throw bad(`record ${i}: header count ${hc}`);
      throw new ChicagoError('INVALID_ARGUMENT', 'headers', `${hc} headers, limit is ${limits.headerCountMax}`);
    }
    let hbytes = 0;
    const h0 = p;
    /** bytes of the headers' length varints at or above 0x80 (all but each varint's last byte) */
    let lengthHigh = 0;
    for (let j = 0; j < hc; j++) {
      let nl: number;
      if (p < end && (b = buf[p]) < 0x80) { nl = (b >>> 1) ^ -(b & 1); p++; } else { rec = i; at = p; nl = readVarint(buf, end, 5, 'header name length'); lengthHigh += at - p - 1; p = at; }
      if (nl < 0 || nl > end - p) throw bad(`record ${i}: header ${j} name length ${nl}`);
      const ns = p;
      p += nl;
      let vl: number;
      if (p < end && (b = buf[p]) < 0x80) { vl = (b >>> 1) ^ -(b & 1); p++; }
      // a value of 64 B to 8 KB (a source path): two bytes
      else if (p + 1 < end && buf[p + 1] < 0x80) { b = (b & 0x7f) | (buf[p + 1] << 7); vl = (b >>> 1) ^ -(b & 1); p += 2; lengthHigh++; }
      else { rec = i; at = p; vl = readVarint(buf, end, 5, 'header value length'); lengthHigh += at - p - 1; p = at; }
      if (vl < 0 || vl > end - p) throw bad(`record ${i}: header ${j} value length ${vl}${vl < 0 ? ' (a header needs a value)' : ''}`);
      if (nl === 9 && buf.toString('latin1', ns, ns + nl) === '__proto__') throw new ChicagoError('INVALID_ARGUMENT', 'headers', 'a header may not be named __proto__');
      nameAt[j * 2] = ns;
      nameAt[j * 2 + 1] = nl;
      valueAt[j * 2] = p;
      valueAt[j * 2 + 1] = vl;
      p += vl;
      hbytes += nl + vl;
    }
    if (hc > 0) {
      // Names and values all below 0x80 are ASCII, so UTF-8: one scan of the headers' bytes, which
      // finds no byte at or above 0x80 but those of the length varints (a path of 64 bytes or more
      // has a two-byte length); else one scan per name and value, and a view and isUtf8 only for
      // text that is not ASCII. A view and an isUtf8 call per name and value cost more than a scan.
      if (lengthHigh === 0 ? highBits(buf, words, shift, h0, p) & 0x80 : highCount(buf, words, shift, h0, p) !== lengthHigh) checkHeadersUtf8(buf, words, shift, hc, i);
      if (hc > 1) checkDistinctHeaderNames(buf, hc, i);
    }
    if (hbytes > limits.headerBytesMax) throw new ChicagoError('INVALID_ARGUMENT', 'headers', `${hbytes} bytes, limit is ${limits.headerBytesMax}`);
    if (p !== end) throw bad(`record ${i}: ${end - p} bytes left over inside its length`);
    const size = (klen > 0 ? klen : 0) + vlen + hbytes;
    if (size > limits.recordBytesMax) throw new ChicagoError('VALUE_TOO_LARGE', size, limits.recordBytesMax);
    total += size;
  }
  if (p !== len) throw bad(`${len - p} bytes after the last record`);
  if (total > limits.batchBytesMax) throw new ChicagoError('BATCH_TOO_LARGE', total, limits.batchBytesMax);
  return { count, recordBytes: total, keyed };
}

/**
 * The OR of bytes [from, to) of buf, folded to one byte: what is at or above 0x80 shows in bit 7.
 * `words` views buf from byte `shift` on; the aligned middle is read four bytes at a time.
 */
function highBits(buf: Buffer, words: Uint32Array, shift: number, from: number, to: number): number {
  let high = 0;
  let w = (from - shift + 3) >> 2;
  const wEnd = (to - shift) >> 2;
  if (w >= wEnd) {
    for (let k = from; k < to; k++) high |= buf[k];
    return high;
  }
  const a = shift + (w << 2);
  for (let k = from; k < a; k++) high |= buf[k];
  for (; w < wEnd; w++) high |= words[w];
  for (let k = shift + (wEnd << 2); k < to; k++) high |= buf[k];
  return high | (high >>> 8) | (high >>> 16) | (high >>> 24);
}

/** How many bytes of buf[from, to) are at or above 0x80; `words` as for highBits. */
function highCount(buf: Buffer, words: Uint32Array, shift: number, from: number, to: number): number {
  let n = 0;
  let w = (from - shift + 3) >> 2;
  const wEnd = (to - shift) >> 2;
  if (w >= wEnd) {
    for (let k = from; k < to; k++) n += buf[k] >>> 7;
    return n;
  }
  const a = shift + (w << 2);
  for (let k = from; k < a; k++) n += buf[k] >>> 7;
  // each byte's top bit to the bottom of its lane, the lanes summed apart (up to 255 words: no lane
  // overflows), then added up
  while (w < wEnd) {
    const stop = Math.min(wEnd, w + 255);
    let lanes = 0;
    for (; w < stop; w++) lanes += (words[w] >>> 7) & 0x01010101;
    n += (lanes & 0xff) + ((lanes >>> 8) & 0xff) + ((lanes >>> 16) & 0xff) + (lanes >>> 24);
  }
  for (let k = shift + (wEnd << 2); k < to; k++) n += buf[k] >>> 7;
  return n;
}

/** per header of the record being validated: its name's start and length (reused: no array per record) */
const nameAt = new Int32Array(2 * limits.headerCountMax);
/** per header of the record being validated: its value's start and length */
const valueAt = new Int32Array(2 * limits.headerCountMax);

/** Each header name and value of the record just walked (nameAt, valueAt) that is not all ASCII is UTF-8. */
function checkHeadersUtf8(buf: Buffer, words: Uint32Array, shift: number, hc: number, rec: number): void {
  for (let j = 0; j < hc; j++) {
    const ns = nameAt[j * 2];
    const ne = ns + nameAt[j * 2 + 1];
    const vs = valueAt[j * 2];
    const ve = vs + valueAt[j * 2 + 1];
    if ((highBits(buf, words, shift, ns, ne) & 0x80 && !isUtf8(buf.subarray(ns, ne))) || (highBits(buf, words, shift, vs, ve) & 0x80 && !isUtf8(buf.subarray(vs, ve)))) {
      throw new ChicagoError('INVALID_UTF8', `record ${rec} header ${j}`);
    }
  }
}

/**
 * Headers are a map when read: a name twice would lose one value, so it is refused (names are short: compared here, not by Buffer.compare per pair).
 * First each name's length, first and last byte pick one of 32 bits: when no two names pick the
 * same bit they all differ, with no pair compared (the agent's names do: host, task, source, time,
 * seq, level, cut). Names that share a bit are compared pair by pair.
 */
function checkDistinctHeaderNames(buf: Buffer, hc: number, rec: number): void {
  let seen = 0;
  let shared = false;
  for (let j = 0; j < hc; j++) {
    const s = nameAt[j * 2];
    const l = nameAt[j * 2 + 1];
    const bit = 1 << ((l > 0 ? l + buf[s] * 7 + buf[s + l - 1] * 13 : 0) & 31);
    if (seen & bit) { shared = true; break; }
    seen |= bit;
  }
  if (!shared) return;
  for (let a = 1; a < hc; a++) {
    const s1 = nameAt[a * 2];
    const l1 = nameAt[a * 2 + 1];
    for (let b = 0; b < a; b++) {
      if (nameAt[b * 2 + 1] !== l1) continue;
      const s2 = nameAt[b * 2];
      let k = 0;
      while (k < l1 && buf[s1 + k] === buf[s2 + k]) k++;
      if (k === l1) throw new ChicagoError('INVALID_ARGUMENT', 'headers', `record ${rec} names header ${JSON.stringify(buf.toString('utf8', s1, s1 + l1).slice(0, 40))} twice`);
    }
  }
}

// ---- node side: stamp, recognise, decode ------------------------------------------------------

/**
 * Give a batch its place in the partition: base offset and append time (LogAppendTime, so every
 * record reads as `appendTs`), then the CRC again. Deterministic in (bytes, base, appendTs), so a
 * follower stamping what its leader sent stores the same bytes. Skips work already done.
 */
export function stampBatch(bytes: Uint8Array, baseOffset: number, appendTs: number): void {
  const buf = asBuffer(bytes);
  const attributes = buf.readInt16BE(OFF_ATTRIBUTES);
  const stamped = readI64(buf, 0) === baseOffset && buf.readInt32BE(OFF_EPOCH) === -1;
  if (stamped && (attributes & ATTR_LOG_APPEND_TIME) && readI64(buf, OFF_MAX_TS) === appendTs) return;
  const crc = buf.readUInt32BE(OFF_CRC);
  buf.copy(stampWas, 0, CRC_FROM, STAMP_TO);
  writeI64(buf, 0, baseOffset);
  buf.writeInt32BE(-1, OFF_EPOCH);
  buf.writeInt16BE(attributes | ATTR_LOG_APPEND_TIME, OFF_ATTRIBUTES);
  writeI64(buf, OFF_MAX_TS, appendTs);
  // The CRC again without reading the records: of the bytes it covers only [21, 43) changed, and
  // CRC32C is linear, so the new CRC is the old one XOR the CRC (zero start, no final XOR) of the
  // change followed by the unchanged bytes' count of zeros. The batch's CRC was checked at the edge.
  for (let k = 0; k < STAMP_TO - CRC_FROM; k++) stampWas[k] ^= buf[CRC_FROM + k];
  const change = (crc32c(stampWas) ^ CRC_OF_STAMP_ZEROS) >>> 0;
  buf.writeUInt32BE((crc ^ crcZerosAppended(change, buf.length - STAMP_TO)) >>> 0, OFF_CRC);
}

/** the end of the bytes under the CRC a stamp changes (attributes .. maxTimestamp) */
const STAMP_TO = OFF_MAX_TS + 8;
const stampWas = Buffer.alloc(STAMP_TO - CRC_FROM);
const CRC_OF_STAMP_ZEROS = crc32c(Buffer.alloc(STAMP_TO - CRC_FROM));

// CRC32C arithmetic (as zlib's crc32_combine): polynomials mod P, bit-reflected, P = 0x82F63B78
const CRC32C_POLY = 0x82f63b78;

/** a(x)·b(x) mod P */
function crcMultiply(a: number, b: number): number {
  if (a === 0) return 0;
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ CRC32C_POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^n) mod P, n = 0..31 */
const X2N = ((): Uint32Array => {
  const t = new Uint32Array(32);
  let p = 0x40000000; // x^1
  t[0] = p;
  for (let n = 1; n < 32; n++) t[n] = p = crcMultiply(p, p);
  return t;
})();

/** A CRC register (zero start, no final XOR) after `n` more zero bytes: times x^(8n) mod P. */
function crcZerosAppended(crc: number, n: number): number {
  let xp = 0x80000000; // x^0
  for (let k = 3; n > 0; n = Math.floor(n / 2), k++) if (n & 1) xp = crcMultiply(X2N[k & 31], xp);
  return crcMultiply(xp, crc);
}

/** The base offset of a stamped batch. */
export function batchBaseOffset(bytes: Uint8Array): number { return readI64(asBuffer(bytes), 0); }

/** The CRC a batch carries (of its stamped bytes, once stamped). */
export function batchCrc(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset + OFF_CRC, 4).getUint32(0);
}

/** The count of a batch already validated. */
export function batchCount(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset + OFF_COUNT, 4).getInt32(0);
}

/**
 * Is this stored stream value a record batch (rather than the older msgpack map, whose first byte
 * is a fixmap marker 0x8_)? A batch starts with a base offset below 2^53, so its first byte is 0.
 */
export function isRecordBatch(v: Uint8Array): boolean {
  return v.length >= BATCH_HEADER_BYTES && v[0] === 0 && v[OFF_MAGIC] === BATCH_MAGIC;
}

/**
 * The records of a batch (trusted: validated when it came in). Keys and values are views into
 * `bytes`. `ts` is the append time when stamped, else the batch's create time.
 */
export function decodeBatch(bytes: Uint8Array): { ts: number; records: DecodedRecord[] } {
  const buf = asBuffer(bytes);
  const len = buf.length;
  const count = buf.readInt32BE(OFF_COUNT);
  const attributes = buf.readInt16BE(OFF_ATTRIBUTES);
  const ts = readI64(buf, attributes & ATTR_LOG_APPEND_TIME ? OFF_MAX_TS : OFF_BASE_TS);
  const records = new Array<DecodedRecord>(count);
  at = BATCH_HEADER_BYTES;
  for (let i = 0; i < count; i++) {
    rec = i;
    readVarint(buf, len, 5, 'record length');
    at++;
    readVarint(buf, len, 10, 'timestampDelta');
    readVarint(buf, len, 5, 'offsetDelta');
    const klen = readVarint(buf, len, 5, 'key length');
    let key: Uint8Array | null = null;
    if (klen >= 0) { key = buf.subarray(at, at + klen); at += klen; }
    const vlen = readVarint(buf, len, 5, 'value length');
    const value = buf.subarray(at, at + vlen);
    at += vlen;
    const hc = readVarint(buf, len, 5, 'header count');
    let headers: Record<string, string> | null = null;
    if (hc > 0) {
      headers = {};
      for (let j = 0; j < hc; j++) {
        const nl = readVarint(buf, len, 5, 'header name length');
        const name = buf.toString('utf8', at, at + nl);
        at += nl;
        const vl = readVarint(buf, len, 5, 'header value length');
        headers[name] = buf.toString('utf8', at, at + vl);
        at += vl;
      }
    }
    records[i] = [key, value, headers];
  }
  return { ts, records };
}

/** A record of a stored batch, with its place: offset and append time. */
export interface StoredBatchRecord { offset: number; timestampMs: number; key: Uint8Array | null; value: Uint8Array; headers: Record<string, string> | null }

/**
 * The records of stored batches sent back to back (a fetch answered as
 * application/vnd.chicago.record-batch), from offset `first` on: a batch holding `first` starts
 * before it. Each batch says its own length; bytes that do not hold whole batches are refused.
 */
export function decodeStoredBatches(bytes: Uint8Array, first = 0): StoredBatchRecord[] {
  const out: StoredBatchRecord[] = [];
  const buf = asBuffer(bytes);
  for (let at = 0; at < buf.length;) {
    if (buf.length - at < BATCH_HEADER_BYTES) throw bad(`${buf.length - at} bytes at ${at} are not a whole batch`);
    const size = OFF_EPOCH + buf.readInt32BE(at + OFF_LENGTH);
    if (size < BATCH_HEADER_BYTES || at + size > buf.length) throw bad(`a batch at ${at} says ${size} bytes; ${buf.length - at} are left`);
    const batch = buf.subarray(at, at + size);
    const base = readI64(batch, 0);
    const d = decodeBatch(batch);
    for (let i = 0; i < d.records.length; i++) {
      if (base + i < first) continue;
      const [key, value, headers] = d.records[i];
      out.push({ offset: base + i, timestampMs: d.ts, key, value, headers });
    }
    at += size;
  }
  return out;
}
