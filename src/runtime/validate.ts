// Validation shared by every edge: names, keys, values, batches, offsets.
import { fail } from './errors.js';
import { limits } from './limits.js';

const NAME = /^[A-Za-z0-9._-]+$/;

export function checkName(kind: string, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > limits.nameLengthMax || !NAME.test(name) || name === '.' || name === '..') {
    fail('INVALID_NAME', kind, `${JSON.stringify(String(name)).slice(0, 80)} (1-${limits.nameLengthMax} of [A-Za-z0-9._-], not . or ..)`);
  }
  return name;
}

export function checkKey(key: Uint8Array): Uint8Array {
  if (key.length === 0) fail('INVALID_KEY', 'empty');
  if (key.length > limits.keyBytesMax) fail('INVALID_KEY', `${key.length} bytes, limit is ${limits.keyBytesMax}`);
  return key;
}

export function checkValue(value: Uint8Array): Uint8Array {
  if (value.length > limits.valueBytesMax) fail('VALUE_TOO_LARGE', value.length, limits.valueBytesMax);
  return value;
}

const DECIMAL = /^(0|[1-9][0-9]{0,15})$/;

/** A number (as JSON or msgpack carry it); a string is refused, even "2". */
export function checkInt(what: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    fail('INVALID_ARGUMENT', what, `${typeof v === 'string' ? JSON.stringify(v.slice(0, 40)) : String(v).slice(0, 40)} (an integer in [${min}, ${max}])`);
  }
  return v;
}

/** A query-string or path integer: plain decimal digits only (no sign, 0x, exponent, fraction or spaces). */
export function decimalParam(what: string, v: string | null | undefined, min: number, max: number): number {
  if (typeof v !== 'string' || !DECIMAL.test(v)) fail('INVALID_ARGUMENT', what, `${JSON.stringify(String(v).slice(0, 40))} (plain decimal digits, in [${min}, ${max}])`);
  return checkInt(what, Number(v), min, max);
}

export function checkOffset(v: unknown): number {
  if (typeof v === 'string') {
    if (!DECIMAL.test(v)) fail('INVALID_OFFSET', JSON.stringify(v.slice(0, 40)));
    v = Number(v);
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail('INVALID_OFFSET', String(v).slice(0, 40));
  return v;
}

/** Text that is valid Unicode (no lone surrogates): stored as UTF-8 exactly, never with U+FFFD in their place. */
export function checkWellFormed(what: string, s: string): string {
  if (!s.isWellFormed()) fail('INVALID_UTF8', what);
  return s;
}

/**
 * Refuses JSON nested deeper than `max` before it is parsed: deep nesting is legal JSON that
 * overflows the stack later (JSON.stringify, msgpack), which would be an internal error.
 */
export function checkJsonDepth(text: string, max: number): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) fail('BAD_REQUEST', `JSON nested deeper than ${max} levels`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

/**
 * Refuses a parsed JSON value nested deeper than `max`: JSON.parse builds any depth, but
 * JSON.stringify and structured clone recurse and would overflow the stack. Iterative.
 */
export function checkValueDepth(what: string, v: unknown, max: number): void {
  if (typeof v !== 'object' || v === null) return;
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (d > max) fail('BAD_REQUEST', `${what} nested deeper than ${max} levels`);
    for (const c of Array.isArray(x) ? x : Object.values(x as object)) if (typeof c === 'object' && c !== null) stack.push([c, d + 1]);
  }
}

export function checkHeaders(h: unknown): Record<string, string> | undefined {
  if (h === undefined || h === null) return undefined;
  if (typeof h !== 'object' || Array.isArray(h)) fail('INVALID_ARGUMENT', 'headers', 'must be an object of strings');
  const entries = Object.entries(h as Record<string, unknown>);
  if (entries.length > limits.headerCountMax) fail('INVALID_ARGUMENT', 'headers', `${entries.length} headers, limit is ${limits.headerCountMax}`);
  let bytes = 0;
  for (const [k, v] of entries) {
    if (typeof v !== 'string') fail('INVALID_ARGUMENT', 'headers', `header ${k.slice(0, 40)} must be a string`);
    // an object's own __proto__ key does not survive copying into another object: refused, not rewritten
    if (k === '__proto__') fail('INVALID_ARGUMENT', 'headers', 'a header may not be named __proto__');
    if (!k.isWellFormed() || !v.isWellFormed()) fail('INVALID_UTF8', `header ${k.slice(0, 40)}`);
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (bytes > limits.headerBytesMax) fail('INVALID_ARGUMENT', 'headers', `${bytes} bytes, limit is ${limits.headerBytesMax}`);
  return h as Record<string, string>;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
export function checkUtf8(what: string, bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    fail('INVALID_UTF8', what);
  }
}
