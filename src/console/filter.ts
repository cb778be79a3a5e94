// The live tail's filters, pure so tests run them without a browser.

/** A record as the console keeps it. */
export interface ShownRecord {
  partition: number;
  offset: number;
  timestampMs: number;
  key: string | null;
  value: string;
  /** the value's size on the node (what `value` shows may be cut) */
  valueBytes?: number;
  headers: Record<string, string>;
}

/** bytes of a value the page keeps, and filters on: past them a value is cut and its size said */
export const VALUE_KEPT_BYTES = 16 * 1024;

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/**
 * Bytes as the page shows them: UTF-8 text, or `(base64) …` for bytes that are not UTF-8 (as the
 * HTTP API flags them), never U+FFFD in place of the data. Past `maxBytes` the bytes are cut (at a
 * character boundary) and marked `…`, so a tail of large values holds a bounded page.
 */
export function shownText(b: Uint8Array, maxBytes = VALUE_KEPT_BYTES): string {
  let end = Math.min(b.length, maxBytes);
  // a cut inside a character steps back to its first byte (continuation bytes are 10xxxxxx)
  if (end < b.length) for (let i = 0; i < 3 && end > 0 && (b[end] & 0xc0) === 0x80; i++) end--;
  const part = b.subarray(0, end);
  const more = end < b.length ? '…' : '';
  try {
    return utf8Strict.decode(part) + more;
  } catch {
    let bin = '';
    for (let i = 0; i < part.length; i += 0x2000) bin += String.fromCharCode(...part.subarray(i, i + 0x2000));
    return `(base64) ${btoa(bin)}${more}`;
  }
}

export interface Filter {
  /** header name → wanted value (`undefined`: the header is present with any value) */
  headers: Array<[string, string | undefined]>;
  text?: { regex: RegExp } | { lower: string };
  error?: string;
}

/**
 * `task=nginx host=web-1 trace`: every `name=value` must match exactly, a bare `name` must be
 * present. Text: a substring (any case) of the key or value, or `/regex/flags`.
 */
export function parseFilter(headerText: string, text: string): Filter {
  const headers: Array<[string, string | undefined]> = [];
  for (const part of headerText.trim().split(/\s+/).filter(Boolean)) {
    const eq = part.indexOf('=');
    headers.push(eq < 0 ? [part, undefined] : [part.slice(0, eq), part.slice(eq + 1)]);
  }
  const t = text.trim();
  if (t === '') return { headers };
  const re = /^\/(.+)\/([a-z]*)$/.exec(t);
  if (re) {
    try {
      // g and y make test() start where the last match ended, so every other record would miss
      return { headers, text: { regex: new RegExp(re[1], re[2].replace(/[gy]/g, '')) } };
    } catch (e) {
      return { headers, error: `not a regular expression: ${(e as Error).message}` };
    }
  }
  return { headers, text: { lower: t.toLowerCase() } };
}

export function matches(f: Filter, r: ShownRecord): boolean {
  for (const [name, want] of f.headers) {
    const have = r.headers[name];
    if (have === undefined || (want !== undefined && have !== want)) return false;
  }
  if (!f.text) return true;
  if ('regex' in f.text) return f.text.regex.test(r.value) || (r.key !== null && f.text.regex.test(r.key));
  return r.value.toLowerCase().includes(f.text.lower) || (r.key !== null && r.key.toLowerCase().includes(f.text.lower));
}

/** The newest `capacity` items, in a circular buffer; when full the oldest is overwritten (counted). */
export class Ring<T> {
  private readonly items: T[] = [];
  private head = 0;
  dropped = 0;
  constructor(readonly capacity: number) {}
  push(item: T): void {
    if (this.items.length < this.capacity) { this.items.push(item); return; }
    this.items[this.head] = item;
    this.head = (this.head + 1) % this.capacity;
    this.dropped++;
  }
  get size(): number { return this.items.length; }
  /** up to `limit` items that pass `keep`, newest first */
  newest(limit = Infinity, keep: (item: T) => boolean = () => true): T[] {
    const out: T[] = [];
    const n = this.items.length;
    for (let i = 0; i < n && out.length < limit; i++) {
      const item = this.items[(this.head - 1 - i + 2 * n) % n];
      if (keep(item)) out.push(item);
    }
    return out;
  }
  clear(): void { this.items.length = 0; this.head = 0; this.dropped = 0; }
}
