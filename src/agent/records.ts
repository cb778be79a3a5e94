// One record format for everything the agent ships: headers host, task, source, seq, time and
// (when known) level on every record, whatever produced it (files, journald, scripts, health).
import { isUtf8 } from 'node:buffer';
import { type Entry, NO_VALUES, type RecsEntry, type Spool, type ValueBytes } from './spool.js';

export interface AgentEvent {
  /** the record's value: text, or bytes (kept as bytes when they are not UTF-8) */
  value: string | Buffer;
  /** a path, a journald unit, a script name */
  source: string;
  /** event time (the first line's read time for a file; the source's own timestamp when it has one) */
  timeMs: number;
  level?: string;
  /** more headers; the standard ones above win */
  headers?: Record<string, string>;
  /** the record's key: records with one key land in one partition */
  key?: string;
}

/** The longest record key the agent sends (the node takes up to 4 KiB); a longer one is left out. */
export const RECORD_KEY_CHARS_MAX = 1024;

/**
 * A line's key by a source's `key` setting: a top-level field of a JSON object line (a string or a
 * number), or a regex's first capture group (the whole match without one). Undefined when the line
 * has none (not JSON, no such field, no match, or longer than RECORD_KEY_CHARS_MAX).
 */
export function keyOfLine(line: string, spec: { json: string } | { re: RegExp }): string | undefined {
  let key: unknown;
  if ('json' in spec) {
    if (line.charCodeAt(0) !== 123 /* { */) return undefined;
    try {
      const o = JSON.parse(line) as unknown;
      if (o && typeof o === 'object' && !Array.isArray(o)) key = (o as Record<string, unknown>)[spec.json];
    } catch {
      return undefined;
    }
    if (typeof key === 'number' && Number.isFinite(key)) key = String(key);
  } else {
    const m = spec.re.exec(line);
    key = m ? (m.length > 1 ? m[1] : m[0]) : undefined;
  }
  return typeof key === 'string' && key.length > 0 && key.length <= RECORD_KEY_CHARS_MAX ? key : undefined;
}


/** A value for the spool: text when the bytes are UTF-8, base64 flagged otherwise (never replaced by U+FFFD). */
export function spoolValue(v: string | Buffer): { value: string; enc?: 'base64' } {
  if (typeof v === 'string') return v.isWellFormed() ? { value: v } : { value: wtf8(v).toString('base64'), enc: 'base64' };
  // Buffer's decoder keeps a leading BOM (TextDecoder would drop it)
  return isUtf8(v) ? { value: v.toString('utf8') } : { value: v.toString('base64'), enc: 'base64' };
}

/**
 * A string with lone surrogates (from a JSON escape) has no UTF-8 form: its bytes are its generalized
 * UTF-8 (WTF-8), each lone surrogate as the three bytes UTF-8 would give its code unit, so nothing is
 * replaced. Hand-written: Node encodes only well-formed text (others become U+FFFD).
 */
export function wtf8(s: string): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    const next = s.charCodeAt(i + 1);
    if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      i++; // a pair: ordinary UTF-8
      continue;
    }
    parts.push(Buffer.from(s.slice(from, i)), Buffer.from([0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)]));
    from = i + 1;
  }
  parts.push(Buffer.from(s.slice(from)));
  return Buffer.concat(parts);
}

/**
 * The `cut` header of piece `piece` (from 1) of a line or message longer than its byte cap: `k+`
 * while more pieces follow, `n/n` on the last one. Files and journald mark pieces alike.
 */
export function cutHeader(piece: number, last: boolean): string {
  if (!(Number.isInteger(piece) && piece >= 1)) throw new Error(`cut piece ${piece} is not a positive integer`);
  return last ? `${piece}/${piece}` : `${piece}+`;
}

/**
 * A value longer than maxBytes as pieces of exactly maxBytes bytes (the last one shorter), in order,
 * each with its `cut` header; a value that fits is one piece without one. A piece that ends inside a
 * UTF-8 character is bytes, as a file's would be; their concatenation is the value's bytes.
 */
export function cutPieces(v: string | Buffer, maxBytes: number): Array<{ value: string | Buffer; cut?: string }> {
  if (!(Number.isInteger(maxBytes) && maxBytes > 0)) throw new Error(`cut size ${maxBytes} is not a positive integer`);
  if (typeof v === 'string' && v.length * 3 <= maxBytes) return [{ value: v }];
  const b = typeof v === 'string' ? (v.isWellFormed() ? Buffer.from(v) : wtf8(v)) : v;
  if (b.length <= maxBytes) return [{ value: v }];
  const out: Array<{ value: Buffer; cut: string }> = [];
  for (let at = 0, k = 1; at < b.length; at += maxBytes, k++) {
    out.push({ value: b.subarray(at, Math.min(b.length, at + maxBytes)), cut: cutHeader(k, at + maxBytes >= b.length) });
  }
  return out;
}

// the lines of one read share their read time: one toISOString for all of them
let lastMs = Number.NaN;
let lastIso = '';
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}

/**
 * Spool entries for events of one task, seqs taken now: the caller appends them in this same turn
 * (seqs are gap-free only if every taken seq is appended). One 'recs' entry carries them all.
 * `asciiText`: every value given as a string is ASCII (a file read checked so).
 */
export function recordEntries(spool: Spool, host: string, task: string, topic: string, events: AgentEvent[], asciiText = false): Entry[] {
  if (events.length === 0) return [];
  return [plainEntry(spool, host, task, topic, events, asciiText) ?? mixedEntry(spool, host, task, topic, events)];
}

/** per level, the one object of own headers its records share (recordsOf merges each distinct one once) */
const LEVEL_OWN = new Map<string, Record<string, string>>();
/** levels remembered in LEVEL_OWN (the agent's own are a dozen; a source's own beyond them get an object per record) */
const LEVEL_OWN_MAX = 64;

function levelOwn(lv: string): Record<string, string> {
  let own = LEVEL_OWN.get(lv);
  if (own === undefined) {
    own = { level: lv };
    if (LEVEL_OWN.size < LEVEL_OWN_MAX) LEVEL_OWN.set(lv, own);
  }
  return own;
}

/**
 * The lines of one ASCII file read as one entry of byte ranges, seqs taken now (as recordEntries): no
 * string and no object per line. They share their source and read time; `levels` (absent: none has
 * one) gives each line's level, a header of the entry when they all share it, else each record's own.
 */
export function bytesEntry(spool: Spool, host: string, task: string, topic: string, source: string, timeMs: number, vb: ValueBytes, levels?: Array<string | undefined>): RecsEntry {
  const n = vb.starts.length;
  const h: Record<string, string> = { host, task, source, time: isoTime(timeMs) };
  let x: Array<Record<string, string> | null> | undefined;
  if (levels) {
    const l0 = levels[0];
    let same = true;
    for (let i = 1; i < n && same; i++) if (levels[i] !== l0) same = false;
    if (same) h.level = l0!;
    else {
      x = new Array<Record<string, string> | null>(n);
      for (let i = 0; i < n; i++) {
        const lv = levels[i];
        x[i] = lv ? levelOwn(lv) : null;
      }
    }
  }
  const e: RecsEntry = { t: 'recs', task, topic, seq: spool.takeSeq(task, n), h, v: NO_VALUES, vb, a: 1 };
  if (x) e.x = x;
  return e;
}

/**
 * The common case without an object per record: one source and one time (the lines of one read),
 * no headers of their own, no keys; only the level may differ. Undefined otherwise.
 */
function plainEntry(spool: Spool, host: string, task: string, topic: string, events: AgentEvent[], asciiText: boolean): RecsEntry | undefined {
  const ev0 = events[0];
  const level0 = ev0.level || undefined;
  let sameLevel = true;
  // the caller says its text values are ASCII: with no bytes among them the entry is spooled as raw bytes
  let ascii = asciiText;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i];
    if (ev.headers !== undefined || ev.key !== undefined || ev.source !== ev0.source || ev.timeMs !== ev0.timeMs) return undefined;
    if ((ev.level || undefined) !== level0) sameLevel = false;
    if (typeof ev.value !== 'string') ascii = false;
  }
  const h: Record<string, string> = { host, task, source: ev0.source, time: isoTime(ev0.timeMs) };
  if (sameLevel && level0) h.level = level0;
  const v: string[] = new Array<string>(events.length);
  let b64: number[] | undefined;
  let x: Array<Record<string, string> | null> | undefined;
  if (!sameLevel) x = new Array<Record<string, string> | null>(events.length);
  for (let i = 0; i < events.length; i++) {
    const ev = events[i];
    if (ascii) v[i] = ev.value as string;
    else {
      const sv = spoolValue(ev.value);
      v[i] = sv.value;
      if (sv.enc) (b64 ??= []).push(i);
    }
    if (x) {
      const lv = ev.level;
      if (!lv) x[i] = null;
      else {
        x[i] = levelOwn(lv);
      }
    }
  }
  const seq = spool.takeSeq(task, events.length);
  const e: RecsEntry = { t: 'recs', task, topic, seq, h, v };
  if (x) e.x = x;
  if (b64) e.b64 = b64;
  if (ascii) e.a = 1;
  return e;
}

function mixedEntry(spool: Spool, host: string, task: string, topic: string, events: AgentEvent[]): RecsEntry {
  const all: Array<Record<string, string>> = new Array<Record<string, string>>(events.length);
  const v: string[] = new Array<string>(events.length);
  let b64: number[] | undefined;
  let k: Array<string | null> | undefined;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i];
    const headers: Record<string, string> = { ...ev.headers, host, task, source: ev.source, time: isoTime(ev.timeMs) };
    if (ev.level) headers.level = ev.level;
    all[i] = headers;
    const sv = spoolValue(ev.value);
    v[i] = sv.value;
    if (sv.enc) (b64 ??= []).push(i);
    if (ev.key !== undefined) (k ??= new Array<string | null>(events.length).fill(null))[i] = ev.key;
  }
  // the headers every record has with the same value go once
  const h: Record<string, string> = { ...all[0] };
  for (let i = 1; i < all.length; i++) {
    for (const k in h) if (all[i][k] !== h[k]) delete h[k];
  }
  let x: Array<Record<string, string> | null> | undefined;
  const shared = Object.keys(h).length;
  for (let i = 0; i < all.length; i++) {
    let n = 0;
    for (const _ in all[i]) n++;
    if (n === shared) continue;
    const own: Record<string, string> = {};
    for (const k in all[i]) if (!(k in h)) own[k] = all[i][k];
    (x ??= new Array<Record<string, string> | null>(all.length).fill(null))[i] = own;
  }
  const seq = spool.takeSeq(task, events.length);
  const e: RecsEntry = { t: 'recs', task, topic, seq, h, v };
  if (x) e.x = x;
  if (b64) e.b64 = b64;
  if (k) e.k = k;
  return e;
}
