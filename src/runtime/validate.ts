// Validation shared by every edge: names, keys, values, batches, offsets.
import { fail } from './errors.js';
import { limits } from './limits.js';

const NAME = /^[A-Za-z0-9._-]+$/;

export function checkName(kind: string, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > limits.nameLengthMax || !NAME.test(name)) {
    fail('INVALID_NAME', kind, `${JSON.stringify(String(name)).slice(0, 80)} (1-${limits.nameLengthMax} of [A-Za-z0-9._-])`);
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

export function checkInt(what: string, v: unknown, min: number, max: number): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) {
    fail('INVALID_ARGUMENT', what, `${String(v).slice(0, 40)} (an integer in [${min}, ${max}])`);
  }
  return n;
}

export function checkOffset(v: unknown): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) fail('INVALID_OFFSET', String(v).slice(0, 40));
  return n;
}

export function checkHeaders(h: unknown): Record<string, string> | undefined {
  if (h === undefined || h === null) return undefined;
  if (typeof h !== 'object' || Array.isArray(h)) fail('INVALID_ARGUMENT', 'headers', 'must be an object of strings');
  const entries = Object.entries(h as Record<string, unknown>);
  if (entries.length > limits.headerCountMax) fail('INVALID_ARGUMENT', 'headers', `${entries.length} headers, limit is ${limits.headerCountMax}`);
  let bytes = 0;
  for (const [k, v] of entries) {
    if (typeof v !== 'string') fail('INVALID_ARGUMENT', 'headers', `header ${k.slice(0, 40)} must be a string`);
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
