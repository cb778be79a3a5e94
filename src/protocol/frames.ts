// The /v1/ws frame protocol (docs/protocol.md): one msgpack value per binary WebSocket message.
// Shared by the server (src/gateway/ws.ts) and the reference client (src/client/), so both sides
// validate with the same rules. Plain msgpack maps with records as tuples: any msgpack library can
// speak it, and it measured within 3% of msgpackr shared structures in size (see the doc).
import { checkHeaders, checkKey, checkName as checkNameRules } from '../runtime/validate.js';
import { Packr, Unpackr } from 'msgpackr';
import { ChicagoError, type ErrorCode, ERRORS, type WireError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { dropLargePackBuffer } from '../runtime/codec.js';
import type { Acks, StartPosition, StoredRecord } from './api.js';
import { checkBatch, type CheckedBatch } from './batch.js';

export const PROTOCOL_VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [PROTOCOL_VERSION];

/** Request ids are uint32 and never 0: 0 marks an error that belongs to no request. */
export const REQUEST_ID_MAX = 0xffff_ffff;

/** WebSocket close code for a protocol-level reason: 4000 + the error's wire number. */
export const closeCodeOf = (code: ErrorCode): number => 4000 + ERRORS[code].wire;

export type Bytes = Uint8Array;
export type Headers = Record<string, string>;

// ---- client → server -------------------------------------------------------------------------

/** A record to produce: [value, key?, headers?]. */
export type ProduceTuple = [value: Bytes, key?: Bytes | null, headers?: Headers | null];

export type ClientFrame =
  /** `accept`: forms this client takes beyond the first: `batches` (pushed records as stored batches, see ServerFrame), `ranges` (compact produce answers) */
  | { op: 'hello'; id: number; versions: number[]; client?: string; token?: string; accept?: string[] }
  | {
      op: 'produce'; id: number; topic: string; acks: Acks; partition?: number;
      producerId?: string; sequence?: number; previousSequence?: number;
      /** exactly one of: records as tuples, or one record batch (src/protocol/batch.ts) as bin */
      records?: ProduceTuple[]; batch?: Bytes;
      /** set by the validator: the batch and what its validation found */
      checked?: CheckedBatch;
    }
  | { op: 'kv.put'; id: number; ks: string; key: Bytes; value: Bytes; ttl?: number; acks: Acks }
  | { op: 'kv.get'; id: number; ks: string; key: Bytes }
  | { op: 'kv.delete'; id: number; ks: string; key: Bytes; acks: Acks }
  | { op: 'kv.scan'; id: number; ks: string; prefix?: Bytes; after?: Bytes; limit: number }
  | { op: 'subscribe'; id: number; topic: string; partition: number; from: WireStartPosition; credit: number }
  | { op: 'credit'; sub: number; bytes: number }
  | { op: 'unsubscribe'; id: number; sub: number }
  /** with member and generation: a fenced commit, refused (FENCED) unless the member owns the partition now */
  | { op: 'commit'; id: number; group: string; topic: string; partition: number; offset: number; member?: string; generation?: number }
  | { op: 'offsets'; id: number; group: string; topic?: string }
  | { op: 'join'; id: number; group: string; topics: string[]; member?: string; sessionTimeoutMs?: number }
  | { op: 'heartbeat'; id: number; group: string; member: string; generation: number }
  | { op: 'leave'; id: number; group: string; member: string }
  | { op: 'members'; id: number; group: string }
  /** removes the group's committed offsets; refused (GROUP_NOT_EMPTY) while it has live members */
  | { op: 'group.delete'; id: number; group: string }
  /** metadata: the topics this token may see, or one topic with its partitions, offsets and leaders */
  | { op: 'topics'; id: number }
  | { op: 'topic'; id: number; topic: string };

export type ClientOp = ClientFrame['op'];
export type WireStartPosition = 'earliest' | 'latest' | { offset: number } | { timestamp: number } | { bytes: number };
export type RequestFrame = Exclude<ClientFrame, { op: 'credit' }>;

// ---- server → client -------------------------------------------------------------------------

/** A pushed record: [offset, timestampMs, value, key?, headers?]. */
export type RecordTuple = [offset: number, timestampMs: number, value: Bytes, key?: Bytes | null, headers?: Headers | null];

export type ServerFrame =
  | { op: 'res'; id: number; [field: string]: unknown }
  | ({ op: 'err'; id: number } & WireError)
  | { op: 'records'; sub: number; bytes: number; records: RecordTuple[] }
  /**
   * to a client whose hello accepted `batches`: pushed records as the stored record batches, whole
   * and as stored, for the offsets from `first` on (the first batch may begin before it); `bytes`,
   * the credit they used, is their length
   */
  | { op: 'batches'; sub: number; bytes: number; first: number; batches: Bytes[] }
  | ({ op: 'end'; sub: number } & Partial<WireError>);

/**
 * What this server accepts beyond version 1's first form, sent in the hello reply: `batch`, a
 * produce frame may carry one record batch (src/protocol/batch.ts) instead of `records`; `batches`, a
 * client whose hello accepts `batches` gets its subscriptions' records as `batches` frames; `ranges`,
 * a client whose hello accepts `ranges` gets compact produce answers (ACCEPT_RANGES).
 */
export const SERVER_FEATURES: readonly string[] = ['batch', 'batches', 'ranges'];
/** what a hello's `accept` names to get pushed records as stored batches */
export const ACCEPT_BATCHES = 'batches';
/**
 * what a hello's `accept` names to get produce answered `{ranges:[{partition,offset,count}], replicas,
 * duplicate?}` (runs of the input records in order) instead of `partitions` and `offsets` with one
 * entry per record
 */
export const ACCEPT_RANGES = 'ranges';

/** The limits a client needs to size its frames; sent in the hello reply. */
export function advertisedLimits() {
  return {
    frameBytesMax: limits.frameBytesMax,
    batchBytesMax: limits.batchBytesMax,
    batchRecordsMax: limits.batchRecordsMax,
    keyBytesMax: limits.keyBytesMax,
    valueBytesMax: limits.valueBytesMax,
    recordBytesMax: limits.recordBytesMax,
    connectionInFlightMax: limits.connectionInFlightMax,
    subscriberCreditBytesMax: limits.subscriberCreditBytesMax,
    scanLimitMax: limits.scanLimitMax,
  };
}

// ---- codec -----------------------------------------------------------------------------------

const packr = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true });
// structuredClone off: its pointer extensions make cyclic graphs out of untrusted bytes.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, structuredClone: false, int64AsType: 'number' });

/**
 * Integers past 32 bits (timestamps, expiries, large offsets) as BigInt, so msgpackr writes them as
 * msgpack integers (uint64/int64) rather than float64, which Go and Rust integer decoders refuse and
 * Python reads as a float. Copies only the arrays and objects that hold one; bytes are left alone.
 */
export function widenIntegers(v: unknown): unknown {
  if (typeof v === 'number') return Number.isInteger(v) && (v > 0xffffffff || v < -0x80000000) ? BigInt(v) : v;
  if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
  if (Array.isArray(v)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const w = widenIntegers(v[i]);
      if (w !== v[i]) (out ??= v.slice())[i] = w;
    }
    return out ?? v;
  }
  let out: Record<string, unknown> | undefined;
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const w = widenIntegers(o[k]);
    if (w !== o[k]) (out ??= { ...o })[k] = w;
  }
  return out ?? v;
}

/** The encoded frame is a view into msgpackr's pool, valid until the next encode: send or copy it now. */
export function encodeFrame(frame: ClientFrame | ServerFrame): Uint8Array {
  const bytes = packr.pack(widenIntegers(frame));
  dropLargePackBuffer(packr, bytes);
  return bytes;
}

export type Parsed<F> =
  | { ok: true; frame: F }
  /** `id` is the request id when one could be read (0 otherwise); `undecodable` marks garbage */
  | { ok: false; id: number; error: ChicagoError; undecodable: boolean };

export function undecodable(reason: string): { ok: false; id: number; error: ChicagoError; undecodable: true } {
  return { ok: false, id: 0, error: new ChicagoError('BAD_REQUEST', reason), undecodable: true };
}

/** msgpack bytes → a plain object, or why not. Never throws. */
function decodeObject(bytes: Uint8Array): { obj: Record<string, unknown> } | { reason: string } {
  if (bytes.length > limits.frameBytesMax) return { reason: `frame of ${bytes.length} bytes is over ${limits.frameBytesMax}` };
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (err) {
    return { reason: `not msgpack (${err instanceof Error ? err.message.slice(0, 80) : 'decode failed'})` };
  }
  if (!isPlainObject(value)) return { reason: 'a frame must be a msgpack map' };
  return { obj: value };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Decode and validate one client frame. Never throws: every failure is a ChicagoError value. */
export function parseClientFrame(bytes: Uint8Array): Parsed<ClientFrame> {
  if (bytes.length > limits.frameBytesMax) {
    return { ok: false, id: 0, error: new ChicagoError('FRAME_TOO_LARGE', bytes.length, limits.frameBytesMax), undecodable: false };
  }
  const d = decodeObject(bytes);
  if ('reason' in d) return undecodable(d.reason);
  return checkClientObject(d.obj);
}

/**
 * Validate one decoded client frame (either codec). `prepare` turns the object into the msgpack
 * shape first; what it throws is answered like a validation error. Never throws.
 */
export function checkClientObject(raw: Record<string, unknown>, prepare?: (o: Record<string, unknown>) => Record<string, unknown>): Parsed<ClientFrame> {
  const id = isRequestId(raw.id) ? raw.id : 0;
  try {
    return { ok: true, frame: validateClientFrame(prepare ? prepare(raw) : raw) };
  } catch (err) {
    if (err instanceof ChicagoError) return { ok: false, id, error: err, undecodable: false };
    return { ok: false, id, error: new ChicagoError('INTERNAL', `validator: ${String(err)}`), undecodable: false };
  }
}

/** Decode and validate one server frame (the client trusts nothing either). Never throws. */
export function parseServerFrame(bytes: Uint8Array): Parsed<ServerFrame> {
  const d = decodeObject(bytes);
  if ('reason' in d) return undecodable(d.reason);
  const raw = d.obj;
  try {
    return { ok: true, frame: validateServerFrame(raw) };
  } catch (err) {
    const error = err instanceof ChicagoError ? err : new ChicagoError('INTERNAL', String(err));
    return { ok: false, id: isRequestId(raw.id) ? raw.id : 0, error, undecodable: false };
  }
}

// ---- field readers: each throws a ChicagoError naming the field ------------------------------


function isRequestId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= REQUEST_ID_MAX;
}

function has(o: Record<string, unknown>, f: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, f) && o[f] !== undefined && o[f] !== null;
}

function requestId(o: Record<string, unknown>, f = 'id'): number {
  const v = o[f];
  if (!isRequestId(v)) throw new ChicagoError('BAD_REQUEST', `'${f}' must be an integer in [1, ${REQUEST_ID_MAX}]`);
  return v;
}

function str(o: Record<string, unknown>, f: string, maxChars = 1024): string {
  const v = o[f];
  if (typeof v !== 'string') throw new ChicagoError('BAD_REQUEST', `'${f}' must be a string`);
  if (v.length > maxChars) throw new ChicagoError('INVALID_ARGUMENT', f, `longer than ${maxChars} characters`);
  return v;
}

/** keyspace, topic and group names: a type check here, the rules in runtime/validate */
export function checkName(kind: string, v: unknown): string {
  if (typeof v !== 'string') throw new ChicagoError('BAD_REQUEST', `'${kind}' must be a string`);
  return checkNameRules(kind, v);
}

function int(o: Record<string, unknown>, f: string, min: number, max: number, code: ErrorCode = 'INVALID_ARGUMENT'): number {
  const v = o[f];
  if (typeof v !== 'number') throw new ChicagoError('BAD_REQUEST', `'${f}' must be an integer`);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    if (code === 'INVALID_OFFSET') throw new ChicagoError(code, `${f} ${v} is not in [${min}, ${max}]`);
    throw new ChicagoError(code, f, `${v} is not an integer in [${min}, ${max}]`);
  }
  return v;
}

function optInt(o: Record<string, unknown>, f: string, min: number, max: number): number | undefined {
  return has(o, f) ? int(o, f, min, max) : undefined;
}

/** Bytes may travel as msgpack bin or as a UTF-8 str (handy for hand-written clients). */
function bytesOf(v: unknown, f: string): Bytes {
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return Buffer.from(v, 'utf8');
  throw new ChicagoError('BAD_REQUEST', `'${f}' must be bin or str`);
}

function key(v: unknown, f = 'key'): Bytes {
  return checkKey(bytesOf(v, f));
}

function acks(o: Record<string, unknown>, dflt: Acks): Acks {
  if (!has(o, 'acks')) return dflt;
  const v = o.acks;
  if (v !== 'none' && v !== 'one' && v !== 'all') throw new ChicagoError('INVALID_ARGUMENT', 'acks', String(v).slice(0, 20));
  return v;
}

function headers(v: unknown): Headers | undefined {
  if (v !== undefined && v !== null && !isPlainObject(v)) throw new ChicagoError('BAD_REQUEST', `'headers' must be a map of str to str`);
  return checkHeaders(v);
}

export function headerBytes(h: Headers | undefined | null): number {
  if (!h) return 0;
  let n = 0;
  for (const k in h) n += Buffer.byteLength(k) + Buffer.byteLength(h[k]);
  return n;
}

/**
 * The size a record counts for in batch limits and subscriber credit: key + value + header
 * bytes. The node must count pushed bytes the same way so credit never drifts between the two.
 */
export function storedRecordBytes(r: { key?: Uint8Array; value: Uint8Array; headers?: Headers }): number {
  return r.value.length + (r.key?.length ?? 0) + headerBytes(r.headers);
}

function produceRecords(v: unknown): ProduceTuple[] {
  if (!Array.isArray(v)) throw new ChicagoError('BAD_REQUEST', `'records' must be an array`);
  if (v.length === 0) throw new ChicagoError('INVALID_ARGUMENT', 'records', 'empty batch');
  if (v.length > limits.batchRecordsMax) throw new ChicagoError('TOO_MANY_RECORDS', v.length, limits.batchRecordsMax);
  let total = 0;
  const out: ProduceTuple[] = new Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const t: unknown = v[i];
    if (!Array.isArray(t) || t.length < 1 || t.length > 3) {
      throw new ChicagoError('BAD_REQUEST', `records[${i}] must be [value, key?, headers?]`);
    }
    const value = bytesOf(t[0], `records[${i}].value`);
    const k = t[1] === undefined || t[1] === null ? undefined : key(t[1], `records[${i}].key`);
    const h = headers(t[2]);
    const size = value.length + (k?.length ?? 0) + headerBytes(h);
    if (size > limits.recordBytesMax) throw new ChicagoError('VALUE_TOO_LARGE', size, limits.recordBytesMax);
    total += size;
    out[i] = [value, k, h];
  }
  if (total > limits.batchBytesMax) throw new ChicagoError('BATCH_TOO_LARGE', total, limits.batchBytesMax);
  return out;
}

/** `records` (tuples) or `batch` (one record batch, bin only), never both. */
function produceBody(o: Record<string, unknown>): { records: ProduceTuple[] } | { batch: Bytes; checked: CheckedBatch } {
  if (!has(o, 'batch')) return { records: produceRecords(o.records) };
  if (has(o, 'records')) throw new ChicagoError('BAD_REQUEST', `send 'records' or 'batch', not both`);
  if (!(o.batch instanceof Uint8Array)) throw new ChicagoError('BAD_REQUEST', `'batch' must be bin`);
  return { batch: o.batch, checked: checkBatch(o.batch) };
}

function startPosition(v: unknown): WireStartPosition {
  if (v === 'earliest' || v === 'latest') return v;
  if (isPlainObject(v)) {
    if (has(v, 'offset')) return { offset: int(v, 'offset', 0, limits.offsetMax, 'INVALID_OFFSET') };
    if (has(v, 'timestamp')) return { timestamp: int(v, 'timestamp', 0, limits.offsetMax) };
    if (has(v, 'bytes')) return { bytes: int(v, 'bytes', 0, limits.offsetMax) };
  }
  throw new ChicagoError('BAD_REQUEST', `'from' must be "earliest", "latest", {offset}, {timestamp} or {bytes}`);
}

export function toStartPosition(w: WireStartPosition): StartPosition {
  if (w === 'earliest' || w === 'latest') return { kind: w };
  if ('offset' in w) return { kind: 'offset', offset: w.offset };
  if ('timestamp' in w) return { kind: 'timestamp', timestampMs: w.timestamp };
  return { kind: 'bytes', bytes: w.bytes };
}

const PRODUCER_ID_CHARS_MAX = 128;

function validateClientFrame(o: Record<string, unknown>): ClientFrame {
  const op = o.op;
  if (typeof op !== 'string') throw new ChicagoError('BAD_REQUEST', `'op' must be a string`);
  switch (op) {
    case 'hello': {
      const id = requestId(o);
      const versions = o.versions;
      if (!Array.isArray(versions) || versions.length === 0 || versions.length > 16 || !versions.every((x) => Number.isSafeInteger(x))) {
        throw new ChicagoError('BAD_REQUEST', `'versions' must be a non-empty array of integers`);
      }
      const accept = o.accept;
      if (accept !== undefined && (!Array.isArray(accept) || accept.length > 16 || !accept.every((x) => typeof x === 'string' && x.length <= 64))) {
        throw new ChicagoError('BAD_REQUEST', `'accept' must be an array of at most 16 short strings`);
      }
      return { op, id, versions: versions as number[], client: has(o, 'client') ? str(o, 'client', 200) : undefined, token: has(o, 'token') ? str(o, 'token', 200) : undefined, ...(accept ? { accept: accept as string[] } : {}) };
    }
    case 'produce': {
      const id = requestId(o);
      const hasPid = has(o, 'producerId');
      if (hasPid !== has(o, 'sequence')) throw new ChicagoError('BAD_REQUEST', `'producerId' and 'sequence' go together`);
      const producerId = hasPid ? str(o, 'producerId', PRODUCER_ID_CHARS_MAX) : undefined;
      if (producerId === '') throw new ChicagoError('INVALID_ARGUMENT', 'producerId', 'empty');
      return {
        op, id,
        topic: checkName('topic', o.topic),
        acks: acks(o, 'all'),
        partition: optInt(o, 'partition', 0, limits.topicPartitionsMax - 1),
        producerId,
        sequence: hasPid ? int(o, 'sequence', 0, limits.offsetMax) : undefined,
        previousSequence: optInt(o, 'previousSequence', 0, limits.offsetMax),
        ...produceBody(o),
      };
    }
    case 'kv.put': {
      const id = requestId(o);
      const ks = checkName('keyspace', o.ks);
      const k = key(o.key);
      const value = bytesOf(o.value, 'value');
      if (value.length > limits.valueBytesMax) throw new ChicagoError('VALUE_TOO_LARGE', value.length, limits.valueBytesMax);
      return { op, id, ks, key: k, value, ttl: optInt(o, 'ttl', 1, limits.ttlSecondsMax), acks: acks(o, 'all') };
    }
    case 'kv.get':
      return { op, id: requestId(o), ks: checkName('keyspace', o.ks), key: key(o.key) };
    case 'kv.delete':
      return { op, id: requestId(o), ks: checkName('keyspace', o.ks), key: key(o.key), acks: acks(o, 'all') };
    case 'kv.scan':
      return {
        op, id: requestId(o), ks: checkName('keyspace', o.ks),
        prefix: has(o, 'prefix') ? bytesOf(o.prefix, 'prefix') : undefined,
        after: has(o, 'after') ? key(o.after, 'after') : undefined,
        limit: optInt(o, 'limit', 1, limits.scanLimitMax) ?? SCAN_LIMIT_DEFAULT,
      };
    case 'subscribe':
      return {
        op, id: requestId(o), topic: checkName('topic', o.topic),
        partition: int(o, 'partition', 0, limits.topicPartitionsMax - 1),
        from: startPosition(o.from),
        credit: int(o, 'credit', 0, limits.subscriberCreditBytesMax),
      };
    case 'credit':
      return { op, sub: requestId(o, 'sub'), bytes: int(o, 'bytes', 1, limits.subscriberCreditBytesMax) };
    case 'unsubscribe':
      return { op, id: requestId(o), sub: requestId(o, 'sub') };
    case 'commit': {
      if (has(o, 'member') !== has(o, 'generation')) throw new ChicagoError('BAD_REQUEST', `'member' and 'generation' go together`);
      return {
        op, id: requestId(o), group: checkName('group', o.group), topic: checkName('topic', o.topic),
        partition: int(o, 'partition', 0, limits.topicPartitionsMax - 1),
        offset: int(o, 'offset', 0, limits.offsetMax, 'INVALID_OFFSET'),
        ...(has(o, 'member') ? { member: checkName('member', o.member), generation: int(o, 'generation', 0, limits.offsetMax) } : {}),
      };
    }
    case 'join': {
      const topics = o.topics;
      if (!Array.isArray(topics) || topics.length === 0 || topics.length > GROUP_TOPICS_MAX) {
        throw new ChicagoError('INVALID_ARGUMENT', 'topics', `an array of 1 to ${GROUP_TOPICS_MAX} topic names`);
      }
      return {
        op, id: requestId(o), group: checkName('group', o.group), topics: topics.map((t) => checkName('topic', t)),
        member: has(o, 'member') ? checkName('member', o.member) : undefined,
        sessionTimeoutMs: optInt(o, 'sessionTimeoutMs', limits.groupSessionTimeoutMsMin, limits.groupSessionTimeoutMsMax),
      };
    }
    case 'heartbeat':
      return { op, id: requestId(o), group: checkName('group', o.group), member: checkName('member', o.member), generation: int(o, 'generation', 0, limits.offsetMax) };
    case 'leave':
      return { op, id: requestId(o), group: checkName('group', o.group), member: checkName('member', o.member) };
    case 'members':
    case 'group.delete':
      return { op, id: requestId(o), group: checkName('group', o.group) };
    case 'topics':
      return { op, id: requestId(o) };
    case 'topic':
      return { op, id: requestId(o), topic: checkName('topic', o.topic) };
    case 'offsets':
      return { op, id: requestId(o), group: checkName('group', o.group), topic: has(o, 'topic') ? checkName('topic', o.topic) : undefined };
    default:
      throw new ChicagoError('UNKNOWN_OP', JSON.stringify(op.slice(0, 40)));
  }
}

export const SCAN_LIMIT_DEFAULT = 1000;
/** topics one group member may subscribe to */
export const GROUP_TOPICS_MAX = 100;

function validateServerFrame(o: Record<string, unknown>): ServerFrame {
  switch (o.op) {
    case 'res':
      return { ...o, op: 'res', id: requestId(o) };
    case 'err': {
      const id = has(o, 'id') && o.id === 0 ? 0 : requestId(o);
      return { op: 'err', id, ...wireError(o) };
    }
    case 'records': {
      const records = o.records;
      if (!Array.isArray(records)) throw new ChicagoError('BAD_REQUEST', `'records' must be an array`);
      for (const r of records) {
        if (!Array.isArray(r) || typeof r[0] !== 'number' || typeof r[1] !== 'number' || !(r[2] instanceof Uint8Array)
          || !(r[3] === undefined || r[3] === null || r[3] instanceof Uint8Array)
          || !(r[4] === undefined || r[4] === null || isPlainObject(r[4]))) {
          throw new ChicagoError('BAD_REQUEST', 'a pushed record must be [offset, timestamp, value, key?, headers?]');
        }
      }
      return { op: 'records', sub: requestId(o, 'sub'), bytes: int(o, 'bytes', 0, limits.offsetMax), records: records as RecordTuple[] };
    }
    case 'batches': {
      const batches = o.batches;
      if (!Array.isArray(batches) || !batches.every((b) => b instanceof Uint8Array)) throw new ChicagoError('BAD_REQUEST', `'batches' must be an array of bin`);
      return { op: 'batches', sub: requestId(o, 'sub'), bytes: int(o, 'bytes', 0, limits.offsetMax), first: int(o, 'first', 0, limits.offsetMax), batches: batches as Bytes[] };
    }
    case 'end':
      return { op: 'end', sub: requestId(o, 'sub'), ...(has(o, 'code') ? wireError(o) : {}) };
    default:
      throw new ChicagoError('UNKNOWN_OP', JSON.stringify(String(o.op).slice(0, 40)));
  }
}

function wireError(o: Record<string, unknown>): WireError {
  return { code: str(o, 'code', 64), message: str(o, 'message', 64 * 1024), retryable: o.retryable === true };
}

// ---- conversions shared by both sides --------------------------------------------------------

export function toRecordTuple(r: StoredRecord): RecordTuple {
  const hasHeaders = Object.keys(r.headers).length > 0;
  if (hasHeaders) return [r.offset, r.timestampMs, r.value, r.key ?? null, r.headers];
  if (r.key) return [r.offset, r.timestampMs, r.value, r.key];
  return [r.offset, r.timestampMs, r.value];
}

export function fromRecordTuple(partition: number, t: RecordTuple): StoredRecord {
  return {
    partition,
    offset: t[0] as StoredRecord['offset'],
    timestampMs: t[1],
    value: t[2],
    key: t[3] ?? undefined,
    headers: t[4] ?? {},
  };
}
