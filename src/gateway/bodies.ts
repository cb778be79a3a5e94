// Request bodies: JSON and NDJSON record batches, parsed on the gateway thread when small and
// on the parse pool (piscina) when large, so a 20 MB upload never stalls other requests.
import { ChicagoError } from '../runtime/errors.js';
import { checkHeaders, checkJsonDepth, checkUtf8, checkValueDepth, checkWellFormed } from '../runtime/validate.js';
import { limits } from '../runtime/limits.js';
import type { ProduceRecord } from '../protocol/api.js';

/** `scanDepth` false: the caller checks the depth of what it keeps (JSON.parse itself builds any depth) */
export function parseJson(body: Buffer, what: string, scanDepth = true): unknown {
  const text = checkUtf8(what, body);
  if (scanDepth) checkJsonDepth(text, limits.jsonDepthMax);
  try {
    return JSON.parse(text);
  } catch (e) {
    if (e instanceof ChicagoError) throw e;
    throw new ChicagoError('BAD_REQUEST', `${what} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * A JSON array, or NDJSON (one record object per line) with content-type application/x-ndjson.
 * The text is not scanned for depth first (that scan cost twice the parse): parseRecordObject
 * checks the only parts that could be deep, a non-string value and the headers.
 */
export function parseRecords(body: Buffer, contentType: string): ProduceRecord[] {
  let items: unknown[];
  if (contentType.includes('ndjson')) {
    const text = checkUtf8('body', body);
    items = text.split('\n').filter((l) => l.trim() !== '').map((line, i) => {
      try { return JSON.parse(line) as unknown; } catch (e) { throw new ChicagoError('BAD_REQUEST', `NDJSON line ${i + 1}: ${(e as Error).message}`); }
    });
  } else {
    const parsed = parseJson(body, 'body', false);
    if (!Array.isArray(parsed)) throw new ChicagoError('BAD_REQUEST', 'body must be a JSON array of records');
    items = parsed;
  }
  return items.map((item, i) => parseRecordObject(item, `record ${i}`, 'choose a partition with ?partition='));
}

/**
 * One record object `{key?, value, headers?, keyEncoding?, valueEncoding?}`, as the HTTP API and the
 * WebSocket's JSON mode take it. `what` names it in errors; `hint` follows the list of its fields.
 */
export function parseRecordObject(item: unknown, what: string, hint: string): ProduceRecord {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw new ChicagoError('BAD_REQUEST', `${what} must be an object`);
  const r = item as Record<string, unknown>;
  for (const k of Object.keys(r)) {
    if (k !== 'key' && k !== 'value' && k !== 'headers' && k !== 'valueEncoding' && k !== 'keyEncoding') throw new ChicagoError('INVALID_ARGUMENT', `${what} field`, `${k.slice(0, 40)} (records have key, value, headers, keyEncoding, valueEncoding; ${hint})`);
  }
  if (!('value' in r)) throw new ChicagoError('BAD_REQUEST', `${what} has no value`);
  const value = r.valueEncoding !== undefined ? base64Field(what, 'value', r.value, r.valueEncoding) : textValue(what, r.value);
  let key: Buffer | undefined;
  if (r.keyEncoding !== undefined) key = base64Field(what, 'key', r.key, r.keyEncoding);
  else {
    if (r.key !== undefined && r.key !== null && typeof r.key !== 'string') throw new ChicagoError('BAD_REQUEST', `${what}: key must be a string`);
    if (typeof r.key === 'string') {
      checkWellFormed(`${what} key`, r.key);
      key = Buffer.from(r.key);
    }
  }
  return {
    value,
    ...(key !== undefined ? { key } : {}),
    // flat strings only, checked here: a nested object would reach structured clone and msgpack
    ...(r.headers !== undefined ? { headers: checkHeaders(r.headers) as Record<string, string> } : {}),
  };
}

/** A string value is stored as its UTF-8 bytes; any other JSON value as its JSON text. Lone
 * surrogates (legal in JSON escapes) have no UTF-8 form: refused, never replaced by U+FFFD. */
export function textValue(what: string, v: unknown): Buffer {
  if (typeof v !== 'string') checkValueDepth(`${what} value`, v, limits.jsonDepthMax);
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  checkWellFormed(`${what} value`, text);
  return Buffer.from(text);
}

/** Bytes that are not UTF-8 travel as base64, flagged per field as reads return them. */
export function base64Field(what: string, field: string, v: unknown, encoding: unknown): Buffer {
  if (encoding !== 'base64') throw new ChicagoError('INVALID_ARGUMENT', `${what} ${field}Encoding`, 'the only encoding is "base64"');
  const bytes = typeof v === 'string' ? Buffer.from(v, 'base64') : undefined;
  // Node's decoder skips what is not base64; a round trip refuses it instead of storing less
  if (bytes === undefined || bytes.toString('base64') !== v) throw new ChicagoError('INVALID_ARGUMENT', `${what} ${field}`, `with ${field}Encoding "base64" it must be canonical base64 text`);
  return bytes;
}

// ignoreBOM: a value that starts with a BOM is returned with it (the decoder would drop it)
export const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** Text when the bytes are UTF-8; otherwise base64, flagged so nothing is silently mangled. */
export function textOrBase64(b: Uint8Array): { text: string; base64: boolean } {
  try { return { text: utf8Strict.decode(b), base64: false }; } catch { return { text: Buffer.from(b).toString('base64'), base64: true }; }
}

/** Key and value as text, or base64 flagged per field, so nothing is silently mangled. */
export function bytesJson(field: string, b: Uint8Array | undefined | null): Record<string, string | null> {
  if (!b) return { [field]: null };
  const t = textOrBase64(b);
  return t.base64 ? { [field]: t.text, [`${field}Encoding`]: 'base64' } : { [field]: t.text };
}

/** What a parse-pool task returns: errors travel as data, since thrown classes do not cross threads. */
export type ParseOutcome =
  | { ok: true; records: ProduceRecord[] }
  | { ok: false; error: { code: string; message: string } };

export function parseRecordsOutcome(body: Buffer, contentType: string): ParseOutcome {
  try {
    return { ok: true, records: parseRecords(body, contentType) };
  } catch (e) {
    if (e instanceof ChicagoError) return { ok: false, error: { code: e.code, message: e.message } };
    throw e;
  }
}
