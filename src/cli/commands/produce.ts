// chicago produce: one record per stdin line, sent in bounded batches, one batch in flight.
import { createInterface } from 'node:readline';
import { limits } from '../../runtime/limits.js';
import { type Parsed, choice, int, list, str } from '../args.js';
import { UsageError } from '../errors.js';
import { enc, httpFrom } from '../http.js';

interface WireRecord { key?: string; value: string; headers?: Record<string, string> }
interface ProduceResult { records: Array<{ partition: number; offset: number }>; replicas: number }

const DEFAULT_BATCH_BYTES = 1024 * 1024;
const DEFAULT_BATCH_RECORDS = 1000;
const DEFAULT_LINGER_MS = 20;

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

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  try {
    for await (const text of lines) {
      const cut = sep === undefined ? -1 : text.indexOf(sep);
      const rec: WireRecord =
        cut >= 0 ? { key: text.slice(0, cut), value: text.slice(cut + sep!.length) } : { key, value: text };
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
    lines.close();
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
