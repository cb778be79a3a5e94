// chicago kv put|get|del|scan
import { limits } from '../../runtime/limits.js';
import { type Command, type Parsed, choice, clientOptions, int, str } from '../args.js';
import { CliError, EXIT } from '../errors.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { fields, line, write } from '../output.js';

interface WriteResult { version: number; replicas: number }
interface ScanItem { key: string; value: string; version?: number }
interface ScanPage { items: ScanItem[]; next?: string }

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

const put: Command = {
  name: 'kv put',
  synopsis: 'KEYSPACE KEY [VALUE] [--ttl SECONDS] [--acks all|one] [--json]',
  summary: 'write a value (read from stdin when VALUE is left out); prints version and replicas',
  options: { ...clientOptions, ttl: { type: 'string' }, acks: { type: 'string' } },
  args: [2, 3],
  async run(p) {
    const ttl = int(p, 'ttl', 1, limits.ttlSecondsMax);
    const acks = choice(p, 'acks', ['all', 'one'] as const);
    const value = p.positionals[2] !== undefined ? Buffer.from(p.positionals[2]) : await readStdin(limits.valueBytesMax);
    const res = await httpFrom(p).json<WriteResult>('PUT', keyPath(p), { query: { ttl, acks }, body: value });
    await printResult(p, res, 'ok');
  },
};

const get: Command = {
  name: 'kv get',
  synopsis: 'KEYSPACE KEY [--raw]',
  summary: 'print the value and a newline (--raw: the stored bytes only); exit 1 when the key is absent',
  options: { url: clientOptions.url, token: clientOptions.token, 'token-file': clientOptions['token-file'], ca: clientOptions.ca, timeout: clientOptions.timeout, raw: { type: 'boolean' } },
  args: [2, 2],
  async run(p) {
    const value = await httpFrom(p).bytes('GET', keyPath(p));
    if (value === undefined) {
      throw new CliError(EXIT.absent, `key '${p.positionals[1]}' not found in keyspace '${p.positionals[0]}'`);
    }
    await write(value);
    // a line per value, as redis-cli and etcdctl print it; --raw keeps the bytes exact for files and pipes
    if (p.values.raw !== true) await write('\n');
  },
};

const del: Command = {
  name: 'kv del',
  synopsis: 'KEYSPACE KEY [--acks all|one] [--json]',
  summary: 'delete a key',
  options: { ...clientOptions, acks: { type: 'string' } },
  args: [2, 2],
  async run(p) {
    const acks = choice(p, 'acks', ['all', 'one'] as const);
    const res = await httpFrom(p).json<object>('DELETE', keyPath(p), { query: { acks } });
    await printResult(p, res, 'deleted');
  },
};

const scan: Command = {
  name: 'kv scan',
  synopsis: 'KEYSPACE [--prefix P] [--after KEY] [--limit N] [--json]',
  summary: 'list keys and values in key order, one "KEY<TAB>VALUE" line each (default limit 1000)',
  options: { ...clientOptions, prefix: { type: 'string' }, after: { type: 'string' }, limit: { type: 'string' } },
  args: [1, 1],
  async run(p) {
    const http = httpFrom(p);
    const path = `/v1/kv/${enc(p.positionals[0])}`;
    let remaining = int(p, 'limit', 1) ?? 1000;
    let after = str(p, 'after');
    const items: ScanItem[] = [];
    // The node caps a page; follow `next` until the limit the user asked for is reached.
    do {
      const limit = Math.min(remaining, limits.scanLimitMax);
      const page = await http.must<ScanPage>('GET', path, { query: { prefix: str(p, 'prefix'), after, limit } });
      if (wantsJson(p)) items.push(...page.items);
      else for (const it of page.items) await line(`${it.key}\t${it.value}`);
      remaining -= page.items.length;
      after = page.items.length > 0 ? page.next : undefined;
    } while (remaining > 0 && after !== undefined);
    if (wantsJson(p)) await line(JSON.stringify({ items, next: after }));
  },
};

export const kvCommands = [put, get, del, scan];
