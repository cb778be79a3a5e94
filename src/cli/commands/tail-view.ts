// What `chicago tail` prints of a record: the filters (--where header=value, --grep) and the output
// form (--format json|value|FORMAT, FORMAT in kcat's -f spirit). Pure, so both are unit-tested.
import { UsageError } from '../errors.js';

export interface TailRecord {
  partition: number;
  offset: number;
  timestamp: number;
  key?: string | null;
  value: string;
  headers?: Record<string, string>;
  /** 'base64' when the key or value is not UTF-8 (the HTTP API's flags, kept in the JSON lines) */
  keyEncoding?: 'base64';
  valueEncoding?: 'base64';
}

/** A key or value as printed by FORMAT and --format value: its bytes, as kcat prints them (text when UTF-8). */
function raw(text: string, encoding: 'base64' | undefined): string | Buffer {
  return encoding === 'base64' ? Buffer.from(text, 'base64') : text;
}

export interface TailView {
  matches(r: TailRecord): boolean;
  /** a line without its newline: bytes when it holds a key or value that is not UTF-8 */
  render(r: TailRecord): string | Buffer;
}

/** `task=web` → ['task', 'web']; the value may hold '='. */
function headerPair(text: string, command: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw new UsageError(`--where/--header wants HEADER=VALUE, got '${text}'`, command);
  return [text.slice(0, at), text.slice(at + 1)];
}

const TOKENS: Record<string, (r: TailRecord, topic: string) => string | Buffer> = {
  t: (_r, topic) => topic,
  p: (r) => String(r.partition),
  o: (r) => String(r.offset),
  T: (r) => String(r.timestamp),
  k: (r) => (r.key == null ? '' : raw(r.key, r.keyEncoding)),
  s: (r) => raw(r.value, r.valueEncoding),
  h: (r) => Object.entries(r.headers ?? {}).map(([k, v]) => `${k}=${v}`).join(','),
  S: (r) => String(Buffer.byteLength(r.value, r.valueEncoding === 'base64' ? 'base64' : 'utf8')),
};

/**
 * A FORMAT string: %t topic, %p partition, %o offset, %T timestamp (ms), %k key, %s value, %h headers
 * as k=v,…, %S value bytes, %% a percent; \n, \t, \\ escapes. Anything else after % is an error.
 */
export function compileFormat(format: string, topic: string, command: string): (r: TailRecord) => string | Buffer {
  const parts: Array<string | ((r: TailRecord) => string | Buffer)> = [];
  let text = '';
  for (let i = 0; i < format.length; i++) {
    const c = format[i];
    if (c === '\\' && i + 1 < format.length) {
      const e = format[++i];
      text += e === 'n' ? '\n' : e === 't' ? '\t' : e;
    } else if (c === '%') {
      const t = format[++i];
      if (t === '%') text += '%';
      else {
        const f = t === undefined ? undefined : TOKENS[t];
        if (!f) throw new UsageError(`--format: unknown token '%${t ?? ''}' (one of %t %p %o %T %k %s %h %S %%)`, command);
        if (text) parts.push(text);
        text = '';
        parts.push((r) => f(r, topic));
      }
    } else text += c;
  }
  if (text) parts.push(text);
  return (r) => {
    const pieces = parts.map((p) => (typeof p === 'string' ? p : p(r)));
    return pieces.every((x) => typeof x === 'string') ? pieces.join('') : Buffer.concat(pieces.map((x) => (typeof x === 'string' ? Buffer.from(x) : x)));
  };
}

export function tailView(opts: { topic: string; where: string[]; grep?: string; format?: string; command: string }): TailView {
  const where = opts.where.map((w) => headerPair(w, opts.command));
  let grep: RegExp | undefined;
  if (opts.grep !== undefined) {
    try {
      grep = new RegExp(opts.grep);
    } catch (err) {
      throw new UsageError(`--grep: ${(err as Error).message}`, opts.command);
    }
  }
  const format = opts.format ?? 'json';
  // every output line ends with one newline (`line` adds it): a format's own trailing \n is not doubled
  const custom = format === 'json' || format === 'value' ? undefined : compileFormat(format.replace(/\\n$/, ''), opts.topic, opts.command);
  return {
    matches(r) {
      for (const [k, v] of where) if (r.headers?.[k] !== v) return false;
      return grep === undefined || grep.test(r.valueEncoding === 'base64' ? Buffer.from(r.value, 'base64').toString() : r.value);
    },
    render(r) {
      if (format === 'value') return raw(r.value, r.valueEncoding);
      if (custom) return custom(r);
      return JSON.stringify({
        partition: r.partition, offset: r.offset, timestamp: r.timestamp, key: r.key ?? null,
        ...(r.keyEncoding ? { keyEncoding: r.keyEncoding } : {}),
        value: r.value,
        ...(r.valueEncoding ? { valueEncoding: r.valueEncoding } : {}),
        headers: r.headers ?? {},
      });
    },
  };
}
