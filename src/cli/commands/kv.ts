// chicago kv put|get|del|scan
import { limits } from '../../runtime/limits.js';
import { type Parsed, choice, int, str } from '../args.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { fields, line, write } from '../output.js';

interface WriteResult { version: number; replicas: number }
interface ScanItem { key: string; value: string; version?: number; keyEncoding?: 'base64'; valueEncoding?: 'base64' }
interface ScanPage { items: ScanItem[]; next?: string; nextEncoding?: 'base64' }

const keyPath = (p: Parsed) => `/v1/kv/${enc(p.positionals[0])}/${enc(p.positionals[1])}`;

async function printResult(p: Parsed, res: object | undefined, fallback: string): Promise<void> {
  if (wantsJson(p)) await line(JSON.stringify(res ?? {}));
  else await line(res ? fields(res) : fallback);
}

/** The value from stdin when it is not on the command line (`kv put ks k < file`). */
async function readStdin(maxBytes: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new CliError(EXIT.usage, `value on stdin is over the ${maxBytes}-byte limit`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export async function put(p: Parsed): Promise<void> {
  const ttl = int(p, 'ttl', 1, limits.ttlSecondsMax);
  const acks = choice(p, 'acks', ['all', 'one'] as const);
  const value = p.positionals[2] !== undefined ? Buffer.from(p.positionals[2]) : await readStdin(limits.valueBytesMax);
  const res = await httpFrom(p).json<WriteResult>('PUT', keyPath(p), { query: { ttl, acks }, body: value });
  await printResult(p, res, 'ok');
}

export async function get(p: Parsed): Promise<void> {
  const value = await httpFrom(p).bytes('GET', keyPath(p));
  if (value === undefined) {
    throw new CliError(EXIT.absent, `key '${p.positionals[1]}' not found in keyspace '${p.positionals[0]}'`);
  }
  await write(value);
  // a line per value, as redis-cli and etcdctl print it; --raw keeps the bytes exact for files and pipes
  if (p.values.raw !== true) await write('\n');
}

export async function del(p: Parsed): Promise<void> {
  const acks = choice(p, 'acks', ['all', 'one'] as const);
  const res = await httpFrom(p).json<object>('DELETE', keyPath(p), { query: { acks } });
  await printResult(p, res, 'deleted');
}

/**
 * A key or value on one line of `KEY<TAB>VALUE` output, unambiguous and on one line: backslash, tab,
 * CR and LF as `\\ \t \r \n`, other C0/C1 controls, DEL and the Unicode line separators as `\u{XXXX}`.
 * A key or value that is not UTF-8 (the node sends those base64) is printed byte by byte, with the
 * same short escapes and `\xNN` for any other byte outside printable ASCII, as redis-cli prints binary
 * values. --json keeps the exact text and its encoding (and `next`, to page with --after).
 */
export function scanText(text: string, encoding: 'base64' | undefined): string {
  if (encoding === 'base64') {
    let out = '';
    for (const b of Buffer.from(text, 'base64')) {
      const c = String.fromCharCode(b);
      out += SHORT[c] ?? (b >= 0x20 && b < 0x7f ? c : `\\x${b.toString(16).padStart(2, '0')}`);
    }
    return out;
  }
  return text.replace(/[\\\x00-\x1f\x7f-\x9f\u2028\u2029]/g, (c) => SHORT[c] ?? `\\u{${c.charCodeAt(0).toString(16).padStart(4, '0')}}`);
}

const SHORT: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

export async function scan(p: Parsed): Promise<void> {
  const http = httpFrom(p);
  const path = `/v1/kv/${enc(p.positionals[0])}`;
  let remaining = int(p, 'limit', 1) ?? 1000;
  let after = str(p, 'after');
  // a `next` key that is not UTF-8 comes as base64 and goes back flagged the same way
  let afterEncoding = choice(p, 'after-encoding', ['base64'] as const);
  const prefixEncoding = choice(p, 'prefix-encoding', ['base64'] as const);
  if (afterEncoding && after === undefined) throw new UsageError('--after-encoding needs --after', p.command);
  if (prefixEncoding && str(p, 'prefix') === undefined) throw new UsageError('--prefix-encoding needs --prefix', p.command);
  const items: ScanItem[] = [];
  // The node caps a page; follow `next` until the limit the user asked for is reached.
  do {
    const limit = Math.min(remaining, limits.scanLimitMax);
    const page = await http.must<ScanPage>('GET', path, { query: { prefix: str(p, 'prefix'), prefixEncoding, after, afterEncoding, limit } });
    if (wantsJson(p)) items.push(...page.items);
    else for (const it of page.items) await line(`${scanText(it.key, it.keyEncoding)}\t${scanText(it.value, it.valueEncoding)}`);
    remaining -= page.items.length;
    after = page.items.length > 0 ? page.next : undefined;
    afterEncoding = after === undefined ? undefined : page.nextEncoding;
  } while (remaining > 0 && after !== undefined);
  if (wantsJson(p)) await line(JSON.stringify({ items, next: after, ...(afterEncoding ? { nextEncoding: afterEncoding } : {}) }));
}

