// The /v1/ws JSON text mode (docs/protocol.md "JSON mode"): the same ops and fields as the msgpack
// frames, for browsers and languages without a msgpack library. Bytes follow the HTTP API's rule:
// UTF-8 text as a string, anything else base64 with `<field>Encoding: "base64"` beside it, and
// records are the HTTP API's record objects. A JSON frame is turned into the msgpack shape and
// validated by the same code as a msgpack one, so both modes accept exactly the same requests.
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { checkJsonDepth, checkWellFormed } from '../runtime/validate.js';
import { base64Field, bytesJson, parseRecordObject, textValue, utf8Strict } from './bodies.js';
import { checkClientObject, isPlainObject, undecodable, type ClientFrame, type Parsed, type RecordTuple, type ServerFrame } from '../protocol/frames.js';

/** The subprotocol a browser asks for with `new WebSocket(url, 'chicago.json')`. */
export const JSON_SUBPROTOCOL = 'chicago.json';
/** Asks for the default binary msgpack frames by name. */
export const MSGPACK_SUBPROTOCOL = 'chicago.msgpack';

/**
 * The subprotocol to answer an upgrade with: the first of ours the client offers, or none (msgpack)
 * when it offers none of them. Never one the client did not offer: a browser fails such a handshake.
 */
export function chooseSubprotocol(header: string): string {
  for (const offered of header.split(',')) {
    const p = offered.trim();
    if (p === JSON_SUBPROTOCOL || p === MSGPACK_SUBPROTOCOL) return p;
  }
  return '';
}

/** Byte fields of requests (`key`, `value`, `prefix`, `after`), each with its optional `<field>Encoding`. */
const BYTE_FIELDS = ['key', 'value', 'prefix', 'after'] as const;

/** One text frame's UTF-8 bytes → a validated client frame, or why not. Never throws. */
export function parseJsonClientFrame(bytes: Uint8Array): Parsed<ClientFrame> {
  if (bytes.length > limits.frameBytesMax) {
    return { ok: false, id: 0, error: new ChicagoError('FRAME_TOO_LARGE', bytes.length, limits.frameBytesMax), undecodable: false };
  }
  let value: unknown;
  try {
    const text = utf8Strict.decode(bytes);
    checkJsonDepth(text, limits.jsonDepthMax);
    value = JSON.parse(text);
  } catch (err) {
    if (err instanceof ChicagoError) return undecodable(err.message);
    const why = err instanceof SyntaxError ? err.message.slice(0, 80) : 'a text frame must be UTF-8';
    return undecodable(`not JSON (${why})`);
  }
  if (!isPlainObject(value)) return undecodable('a frame must be a JSON object');
  return checkClientObject(value, fromJson);
}

/** The JSON shape of a request → its msgpack shape: byte fields as bytes, record objects as tuples. */
function fromJson(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...o };
  for (const f of BYTE_FIELDS) {
    const encoding = o[`${f}Encoding`];
    if (encoding !== undefined) out[f] = base64Field('frame', f, o[f], encoding);
    // a kv value is a record value: a string is its UTF-8, any other JSON value its JSON text
    else if (f === 'value' && o[f] !== undefined && o[f] !== null) out[f] = textValue('frame', o[f]);
    else if (typeof o[f] === 'string') out[f] = Buffer.from(checkWellFormed(`'${f}'`, o[f] as string));
  }
  if (Array.isArray(o.records)) {
    out.records = o.records.map((r: unknown, i) => {
      if (Array.isArray(r)) return r.map((x: unknown, j) => (j < 2 && typeof x === 'string' ? Buffer.from(checkWellFormed(`records[${i}]`, x)) : x));
      const rec = parseRecordObject(r, `records[${i}]`, 'or a tuple [value, key?, headers?]');
      return [rec.value, rec.key ?? null, rec.headers ?? null];
    });
  }
  return out;
}

/** A server frame as the UTF-8 bytes of its JSON text. */
export function encodeJsonFrame(frame: ServerFrame): Buffer {
  switch (frame.op) {
    case 'records':
      return Buffer.from(JSON.stringify({ op: frame.op, sub: frame.sub, bytes: frame.bytes, records: frame.records.map(jsonRecord) }));
    case 'res':
      return Buffer.from(JSON.stringify(jsonReply(frame)));
    default:
      return Buffer.from(JSON.stringify(frame));
  }
}

/** A pushed record as the HTTP API's record object (without `partition`: it is the subscription's). */
function jsonRecord(t: RecordTuple): Record<string, unknown> {
  return { offset: t[0], timestamp: t[1], ...bytesJson('key', t[3]), ...bytesJson('value', t[2]), headers: t[4] ?? {} };
}

/** Byte fields as text or flagged base64; kv.scan's `[key, value, version]` items as HTTP's item objects. */
function jsonReply(frame: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k in frame) {
    const v = frame[k];
    if (v instanceof Uint8Array) Object.assign(out, bytesJson(k, v));
    else if (k === 'items' && Array.isArray(v)) {
      out.items = v.map((e: [Uint8Array, Uint8Array, number]) => ({ ...bytesJson('key', e[0]), ...bytesJson('value', e[1]), version: e[2] }));
    } else out[k] = v;
  }
  return out;
}
