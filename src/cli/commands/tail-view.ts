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
  /** 'base64' when the key or value is not UTF-8 */
  encoding?: string;
}

export interface TailView {
  matches(r: TailRecord): boolean;
  render(r: TailRecord): string;
}

/** `task=web` → ['task', 'web']; the value may hold '='. */
function headerPair(text: string, command: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw new UsageError(`--where/--header wants HEADER=VALUE, got '${text}'`, command);
  return [text.slice(0, at), text.slice(at + 1)];
}

const TOKENS: Record<string, (r: TailRecord, topic: string) => string> = {
  t: (_r, topic) => topic,
  p: (r) => String(r.partition),
  o: (r) => String(r.offset),
  T: (r) => String(r.timestamp),
  k: (r) => r.key ?? '',
  s: (r) => r.value,
  h: (r) => Object.entries(r.headers ?? {}).map(([k, v]) => `${k}=${v}`).join(','),
  S: (r) => String(Buffer.byteLength(r.value, r.encoding === 'base64' ? 'base64' : 'utf8')),
};

/**
 * A FORMAT string: %t topic, %p partition, %o offset, %T timestamp (ms), %k key, %s value, %h headers
 * as k=v,…, %S value bytes, %% a percent; \n, \t, \\ escapes. Anything else after % is an error.
 */
export function compileFormat(format: string, topic: string, command: string): (r: TailRecord) => string {
  const parts: Array<string | ((r: TailRecord) => string)> = [];
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
  return (r) => parts.map((p) => (typeof p === 'string' ? p : p(r))).join('');
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
      return grep === undefined || grep.test(r.value);
    },
    render(r) {
      if (format === 'value') return r.value;
      if (custom) return custom(r);
      return JSON.stringify({
        partition: r.partition, offset: r.offset, timestamp: r.timestamp, key: r.key ?? null, value: r.value, headers: r.headers ?? {},
        ...(r.encoding ? { encoding: r.encoding } : {}),
      });
    },
  };
}
