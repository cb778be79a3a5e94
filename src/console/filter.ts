// The live tail's filters, pure so tests run them without a browser.

/** A record as the console keeps it. */
export interface ShownRecord {
  partition: number;
  offset: number;
  timestampMs: number;
  key: string | null;
  value: string;
  headers: Record<string, string>;
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
      return { headers, text: { regex: new RegExp(re[1], re[2]) } };
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
