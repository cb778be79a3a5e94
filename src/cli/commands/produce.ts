// chicago produce: one record per stdin line, sent in bounded batches, one batch in flight.
import { ChicagoError } from '../../runtime/errors.js';
import { limits } from '../../runtime/limits.js';
import { type Parsed, choice, int, list, str } from '../args.js';
import { UsageError } from '../errors.js';
import { enc, httpFrom } from '../http.js';

interface WireRecord { key?: string; value: string; headers?: Record<string, string>; keyEncoding?: 'base64'; valueEncoding?: 'base64' }
interface ProduceResult { records: Array<{ partition: number; offset: number }>; replicas: number }

const DEFAULT_BATCH_BYTES = 1024 * 1024;
const DEFAULT_BATCH_RECORDS = 1000;
const DEFAULT_LINGER_MS = 20;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A line's bytes as the HTTP API takes them: UTF-8 as text, anything else base64 and flagged, never mangled. */
function bytesField(field: 'key' | 'value', b: Buffer): Partial<WireRecord> {
  try {
    return { [field]: utf8.decode(b) };
  } catch {
    return { [field]: b.toString('base64'), [`${field}Encoding`]: 'base64' };
  }
}

/** stdin split at each LF (a CR before it is dropped), as bytes: a line that is not UTF-8 is sent as it is. */
async function* stdinLines(): AsyncGenerator<Buffer> {
  const lineOf = (parts: Buffer[]) => {
    const line = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    return line.length > 0 && line[line.length - 1] === 0x0d ? line.subarray(0, -1) : line;
  };
  // a line's pieces are joined once, when its end comes: a long line costs its length, not its
  // square; past the size no record can have, the rest of it is not held
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    let at = 0;
    let nl: number;
    while ((nl = chunk.indexOf(0x0a, at)) >= 0) {
      pending.push(chunk.subarray(at, nl));
      const line = lineOf(pending);
      pending = [];
      pendingBytes = 0;
      yield line;
      at = nl + 1;
    }
    if (at < chunk.length) {
      pending.push(chunk.subarray(at));
      pendingBytes += chunk.length - at;
      if (pendingBytes > limits.recordBytesMax + 1) throw new ChicagoError('VALUE_TOO_LARGE', `${pendingBytes}+`, limits.recordBytesMax);
    }
  }
  if (pending.length > 0) yield lineOf(pending);
}

function headersOf(pairs: string[]): Record<string, string> | undefined {
  if (pairs.length === 0) return undefined;
  const headers: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--header must be KEY=VALUE, got '${pair}'`, 'produce');
    headers[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return headers;
}

export async function produce(p: Parsed): Promise<void> {
  const topic = p.positionals[0];
  const acks = choice(p, 'acks', ['all', 'one', 'none'] as const);
  const partition = int(p, 'partition', 0, limits.topicPartitionsMax - 1);
  const headers = headersOf(list(p, 'header'));
  const key = str(p, 'key');
  const sep = str(p, 'key-separator');
  if (key !== undefined && sep !== undefined) throw new UsageError('--key and --key-separator exclude each other', p.command);
  if (sep === '') throw new UsageError('--key-separator must not be empty', p.command);
  // Batches stay under the node's per-update limits, with room for the JSON envelope.
  const maxRecords = int(p, 'batch-records', 1, limits.batchRecordsMax) ?? DEFAULT_BATCH_RECORDS;
  const maxBytes = int(p, 'batch-bytes', 1, limits.batchBytesMax - 1024) ?? DEFAULT_BATCH_BYTES;
  const lingerMs = int(p, 'linger-ms', 0, 60_000) ?? DEFAULT_LINGER_MS;
  const http = httpFrom(p);
  const path = `/v1/topics/${enc(topic)}/records`;

  let batch: WireRecord[] = [];
  let batchBytes = 2;
  let sent = 0;
  let batches = 0;
  const ranges = new Map<number, [first: number, last: number]>();
  let failure: unknown;
  let inFlight: Promise<void> = Promise.resolve();
  let linger: NodeJS.Timeout | undefined;

  const send = async (records: WireRecord[]) => {
    const res = await http.json<ProduceResult>('POST', path, { query: { acks, partition }, body: records });
    sent += records.length;
    batches += 1;
    for (const r of res?.records ?? []) {
      const range = ranges.get(r.partition);
      if (range) range[1] = r.offset;
      else ranges.set(r.partition, [r.offset, r.offset]);
    }
  };
  // Hands the filling batch to the sender; the next starts filling while this one is in flight.
  const flush = () => {
    clearTimeout(linger);
    linger = undefined;
    if (batch.length === 0) return;
    const records = batch;
    batch = [];
    batchBytes = 2;
    inFlight = inFlight.then(() => (failure === undefined ? send(records) : undefined)).catch((err: unknown) => {
      failure ??= err;
    });
  };

  const sepBytes = sep === undefined ? undefined : Buffer.from(sep);
  const lines = stdinLines();
  try {
    for await (const line of lines) {
      const cut = sepBytes === undefined ? -1 : line.indexOf(sepBytes);
      const rec = (cut >= 0
        ? { ...bytesField('key', line.subarray(0, cut)), ...bytesField('value', line.subarray(cut + sepBytes!.length)) }
        : { key, ...bytesField('value', line) }) as WireRecord;
      if (headers) rec.headers = headers;
      const size = Buffer.byteLength(JSON.stringify(rec)) + 1;
      if (batch.length > 0 && (batch.length >= maxRecords || batchBytes + size > maxBytes)) {
        // One batch on the wire while the next fills, never more: memory stays bounded.
        await inFlight;
        flush();
      }
      if (failure !== undefined) break;
      batch.push(rec);
      batchBytes += size;
      // A slow producer (a person typing) still gets its lines sent promptly.
      linger ??= setTimeout(flush, lingerMs);
    }
  } finally {
    await lines.return(undefined);
    flush();
    await inFlight;
  }
  const spread = [...ranges].sort(([a], [b]) => a - b).map(([part, [first, last]]) => `p${part}:${first}-${last}`);
  // after a failure, the count says what was acknowledged before it (nothing is said when that is nothing)
  if (failure === undefined || sent > 0) {
    process.stderr.write(
      `produced ${sent} record${sent === 1 ? '' : 's'} in ${batches} batch${batches === 1 ? '' : 'es'} to ${topic}${spread.length ? ` (${spread.join(' ')})` : ''}${failure !== undefined ? ' before the error below' : ''}\n`,
    );
  }
  if (failure !== undefined) throw failure;
}
