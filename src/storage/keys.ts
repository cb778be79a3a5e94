// Key layout inside one partition's column family. The first byte is the record kind, so each
// kind is one contiguous range; names are validated to exclude 0x00, which separates them from
// the bytes that follow. Numbers are big-endian so byte order is numeric order.
export const Kind = {
  meta: 0x00,
  kv: 0x01,
  expiry: 0x02,
  batch: 0x03,
  timeIndex: 0x04,
  group: 0x05,
  stream: 0x06,
  producer: 0x07,
  /** the partition's replication log: entries by seq, kept for catching up followers */
  log: 0x08,
  /**
   * entries a follower holds past a gap in its log (hinted handoff, replica.ts `Hints`): by seq,
   * after a header under the bare kind byte
   */
  hint: 0x09,
} as const;

const utf8 = new TextEncoder();
const TWO32 = 2 ** 32;

function writeU64(buf: Uint8Array, at: number, n: number): void {
  const hi = Math.floor(n / TWO32);
  const lo = n >>> 0;
  buf[at] = hi >>> 24; buf[at + 1] = hi >>> 16; buf[at + 2] = hi >>> 8; buf[at + 3] = hi;
  buf[at + 4] = lo >>> 24; buf[at + 5] = lo >>> 16; buf[at + 6] = lo >>> 8; buf[at + 7] = lo;
}

function writeU32(buf: Uint8Array, at: number, n: number): void {
  buf[at] = n >>> 24; buf[at + 1] = n >>> 16; buf[at + 2] = n >>> 8; buf[at + 3] = n;
}

export function readU64(buf: Uint8Array, at: number): number {
  const hi = ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
  const lo = ((buf[at + 4] << 24) | (buf[at + 5] << 16) | (buf[at + 6] << 8) | buf[at + 7]) >>> 0;
  return hi * TWO32 + lo;
}

function concat(kind: number, ...parts: Uint8Array[]): Buffer {
  let n = 1;
  for (const p of parts) n += p.length;
  const out = Buffer.allocUnsafe(n);
  out[0] = kind;
  let at = 1;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

const SEP = new Uint8Array([0]);

export const metaKey = Buffer.from([Kind.meta, 0x6d]); // "m": partition meta {seq, epoch}
export const syncMarkerKey = Buffer.from([Kind.meta, 0x73]); // "s": written with fsync to flush the WAL
/**
 * "i": present from the first part of a full copy until one completes (an interrupted or abandoned
 * copy keeps it): the partition holds nothing it may claim. A key of its own, not a flag in the
 * meta: every new epoch re-puts the meta, and a flag there was lost when one arrived mid-copy.
 */
export const installingKey = Buffer.from([Kind.meta, 0x69]);
/** "c": the full copies a leader started in its epoch (partition.ts CopyLedger) */
export const copiesKey = Buffer.from([Kind.meta, 0x63]);

// Most writes in a row name the same keyspace: its bytes are kept for the next key.
let lastKeyspace = '';
let lastKeyspaceBytes = new Uint8Array(0);

export function kvKey(keyspace: string, key: Uint8Array): Buffer {
  if (keyspace !== lastKeyspace) {
    lastKeyspaceBytes = utf8.encode(keyspace);
    lastKeyspace = keyspace;
  }
  const ks = lastKeyspaceBytes;
  const out = Buffer.allocUnsafe(1 + ks.length + SEP.length + key.length);
  out[0] = Kind.kv;
  out.set(ks, 1);
  out.set(SEP, 1 + ks.length);
  out.set(key, 1 + ks.length + SEP.length);
  return out;
}
export function kvPrefix(keyspace: string, prefix: Uint8Array = new Uint8Array(0)): Buffer {
  return concat(Kind.kv, utf8.encode(keyspace), SEP, prefix);
}
/** The user key inside a KV storage key of the given keyspace. */
export function userKeyOf(storageKey: Uint8Array, keyspace: string): Buffer {
  return Buffer.from(storageKey.subarray(1 + Buffer.byteLength(keyspace) + 1));
}

export function expiryKey(expiresAtMs: number, keyspace: string, key: Uint8Array): Buffer {
  const ts = new Uint8Array(8);
  writeU64(ts, 0, expiresAtMs);
  return concat(Kind.expiry, ts, utf8.encode(keyspace), SEP, key);
}
export function parseExpiryKey(k: Uint8Array): { expiresAtMs: number; keyspace: string; key: Buffer } {
  const expiresAtMs = readU64(k, 1);
  const sep = k.indexOf(0, 9);
  return {
    expiresAtMs,
    keyspace: Buffer.from(k.subarray(9, sep)).toString('utf8'),
    key: Buffer.from(k.subarray(sep + 1)),
  };
}
export function expiryUpTo(nowMs: number): { gte: Buffer; lt: Buffer } {
  const ts = new Uint8Array(8);
  writeU64(ts, 0, nowMs + 1);
  return { gte: Buffer.from([Kind.expiry]), lt: concat(Kind.expiry, ts) };
}

function streamId(topicId: number, tp: number): Uint8Array {
  const b = new Uint8Array(8);
  writeU32(b, 0, topicId);
  writeU32(b, 4, tp);
  return b;
}

export function batchKey(topicId: number, tp: number, baseOffset: number): Buffer {
  const b = Buffer.allocUnsafe(17);
  b[0] = Kind.batch;
  writeU32(b, 1, topicId);
  writeU32(b, 5, tp);
  writeU64(b, 9, baseOffset);
  return b;
}
export function baseOffsetOfBatchKey(k: Uint8Array): number { return readU64(k, 9); }
export function batchRange(topicId: number, tp: number): { gte: Buffer; lt: Buffer } {
  return { gte: concat(Kind.batch, streamId(topicId, tp)), lt: concat(Kind.batch, streamId(topicId, tp + 1)) };
}

export function timeIndexKey(topicId: number, tp: number, lastTimestampMs: number, baseOffset: number): Buffer {
  const b = Buffer.allocUnsafe(25);
  b[0] = Kind.timeIndex;
  writeU32(b, 1, topicId);
  writeU32(b, 5, tp);
  writeU64(b, 9, lastTimestampMs);
  writeU64(b, 17, baseOffset);
  return b;
}
export function parseTimeIndexKey(k: Uint8Array): { lastTimestampMs: number; baseOffset: number } {
  return { lastTimestampMs: readU64(k, 9), baseOffset: readU64(k, 17) };
}
export function timeIndexFrom(topicId: number, tp: number, timestampMs: number): Buffer {
  const b = Buffer.allocUnsafe(17);
  b[0] = Kind.timeIndex;
  writeU32(b, 1, topicId);
  writeU32(b, 5, tp);
  writeU64(b, 9, timestampMs);
  return b;
}
export function timeIndexRange(topicId: number, tp: number): { gte: Buffer; lt: Buffer } {
  return { gte: concat(Kind.timeIndex, streamId(topicId, tp)), lt: concat(Kind.timeIndex, streamId(topicId, tp + 1)) };
}

export function streamKey(topicId: number, tp: number): Buffer {
  return concat(Kind.stream, streamId(topicId, tp));
}
export const streamRange = { gte: Buffer.from([Kind.stream]), lt: Buffer.from([Kind.stream + 1]) };

export function groupKey(group: string, topicId: number, tp: number): Buffer {
  return concat(Kind.group, utf8.encode(group), SEP, streamId(topicId, tp));
}
export function groupRange(group: string): { gte: Buffer; lt: Buffer } {
  return { gte: concat(Kind.group, utf8.encode(group), SEP), lt: concat(Kind.group, utf8.encode(group), new Uint8Array([1])) };
}
export function parseGroupKey(k: Uint8Array): { group: string; topicId: number; tp: number } {
  const sep = k.indexOf(0, 1);
  const view = Buffer.from(k.buffer, k.byteOffset, k.byteLength);
  return { group: view.subarray(1, sep).toString('utf8'), topicId: view.readUInt32BE(sep + 1), tp: view.readUInt32BE(sep + 5) };
}
export const allGroupsRange = { gte: Buffer.from([Kind.group]), lt: Buffer.from([Kind.group + 1]) };

export function producerKey(producerId: string, topicId: number, tp: number): Buffer {
  return concat(Kind.producer, utf8.encode(producerId), SEP, streamId(topicId, tp));
}
export const producerRange = { gte: Buffer.from([Kind.producer]), lt: Buffer.from([Kind.producer + 1]) };

/** First key after every key that starts with `prefix`. */
export function prefixEnd(prefix: Uint8Array): Buffer {
  const out = Buffer.from(prefix);
  for (let i = out.length - 1; i >= 0; i--) {
    if (out[i] < 0xff) { out[i]++; return out.subarray(0, i + 1); }
  }
  return Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
}

function seqKey(kind: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b[0] = kind;
  writeU64(b, 1, seq);
  return b;
}

export function logKey(seq: number): Buffer { return seqKey(Kind.log, seq); }
export function seqOfLogKey(k: Uint8Array): number { return readU64(k, 1); }
export const logRange = { gte: Buffer.from([Kind.log]), lt: Buffer.from([Kind.log + 1]) };

/** the header of a follower's hinted entries: the run's epoch and the log position it follows */
export const hintHeaderKey = Buffer.from([Kind.hint]);
export function hintKey(seq: number): Buffer { return seqKey(Kind.hint, seq); }
export function seqOfHintKey(k: Uint8Array): number { return readU64(k, 1); }
export const hintRange = { gte: Buffer.from([Kind.hint]), lt: Buffer.from([Kind.hint + 1]) };
/** hinted entries without their header */
export const hintEntriesRange = { gte: hintKey(0), lt: hintRange.lt };
/** every key of a partition: what dropping it removes */
export const allRange = { gte: Buffer.from([0]), lt: Buffer.from([0xff]) };
/**
 * what a full copy replaces: everything but the hinted entries, which are newer than any copy
 * and keep counting for the writes they hold while it installs
 */
export const copyRange = { gte: Buffer.from([0]), lt: Buffer.from([Kind.hint]) };
/** a partition's content without its bookkeeping (meta kind) and hints: what an interrupted copy leaves to clear */
export const contentRange = { gte: Buffer.from([Kind.kv]), lt: Buffer.from([Kind.hint]) };
/**
 * What a snapshot copies: the partition's state without its replication log (the log is the last
 * kind). The log would double the bytes moved; a new copy only needs the state at its seq, and
 * whoever it later leads catches up from its own log from there on (older gaps → a snapshot).
 */
export const snapshotRange = { gte: Buffer.from([0]), lt: Buffer.from([Kind.log]) };
/** What anti-entropy digests compare: the state-machine kinds (kv … producer), one hash per kind. */
export const digestKindLast = Kind.producer;
export const digestRange = { gte: Buffer.from([Kind.kv]), lt: Buffer.from([digestKindLast + 1]) };
