// chicago tail: print records as JSON lines; with --group commit what was printed.
import { type Parsed, flag, int, list, parseTime, str } from '../args.js';
import { CliError, EXIT, ServerError, UsageError } from '../errors.js';
import { type Http, enc, httpFrom } from '../http.js';
import { line, write } from '../output.js';
import { type PartitionView, describeTopic } from './topic.js';
import { type TailRecord, tailView } from './tail-view.js';

interface FetchResponse { records: TailRecord[]; nextOffset: number }
const NEWLINE = Buffer.from('\n');
interface GroupOffsets { offsets: Array<{ topic: string; partition: number; offset: number }> }

/** Where a partition's reading starts, as the node's fetch query spells it. */
type Position = { offset: number } | { since: number } | { from: 'earliest' | 'latest' } | { last: number };

const FETCH_RECORDS = 1000;
const FETCH_BYTES = 1024 * 1024;
/** how long one long poll may wait on the node with --follow */
const FOLLOW_WAIT_MS = 10_000;

/** The start the flags ask for; undefined when none is given. */
function explicitStart(p: Parsed): Position | undefined {
  const given = (['from-beginning', 'from-end', 'offset', 'since'] as const).filter((f) => p.values[f] !== undefined);
  if (given.length > 1) throw new UsageError(`--${given.join(', --')} exclude each other`, p.command);
  switch (given[0]) {
    case 'from-beginning': return { from: 'earliest' };
    case 'from-end': return { from: 'latest' };
    case 'offset': {
      // a negative offset counts back from the end of each partition, as kcat's -o -N
      const n = int(p, 'offset', -Number.MAX_SAFE_INTEGER)!;
      return n < 0 ? { last: -n } : { offset: n };
    }
    case 'since': {
      const since = str(p, 'since')!;
      const sinceMs = parseTime(since, Date.now());
      if (sinceMs === undefined) throw new UsageError(`--since: not a time: '${since}'`, p.command);
      return { since: sinceMs };
    }
    default: return undefined;
  }
}

async function committedOffsets(http: Http, group: string, topic: string): Promise<Map<number, number>> {
  const res = await http.must<GroupOffsets>('GET', `/v1/groups/${enc(group)}/offsets`, { query: { topic } });
  return new Map(res.offsets.filter((o) => o.topic === topic).map((o) => [o.partition, o.offset]));
}

export async function tail(p: Parsed): Promise<void> {
  const topic = p.positionals[0];
  const start = explicitStart(p);
  const onlyPartition = int(p, 'partition');
  const group = str(p, 'group');
  const follow = flag(p, 'follow');
  let budget = int(p, 'max', 1) ?? Infinity;
  const where = [...list(p, 'where'), ...list(p, 'header')];
  const view = tailView({ topic, where, grep: str(p, 'grep'), format: str(p, 'format'), command: p.command });
  const filtered = where.length > 0 || str(p, 'grep') !== undefined;

  // Ctrl-C, a closed pipe (`| head`) or a reached --max end the tail cleanly: what was
  // printed is committed, the rest is left for the next run.
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const onStdoutError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    stop.abort();
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  process.stdout.on('error', onStdoutError);
  const http = httpFrom(p, stop.signal);
  // Commits are not cut short by the stop: a printed record should not be printed again.
  const commits = httpFrom(p);
  const recordsPath = `/v1/topics/${enc(topic)}/records`;

  const drain = async (part: PartitionView, pos: Position) => {
    // Without --follow, stop at the end as it was when we started: a busy topic cannot keep
    // the command running forever.
    const endAtStart = part.endOffset;
    for (;;) {
      const waitMs = follow ? FOLLOW_WAIT_MS : 0;
      const query = { partition: part.partition, ...pos, maxRecords: filtered ? FETCH_RECORDS : Math.min(FETCH_RECORDS, budget), maxBytes: FETCH_BYTES, waitMs };
      const res = follow ? await fetchRetrying(() => http.must<FetchResponse>('GET', recordsPath, { query, waitMs }), stop.signal) : await http.must<FetchResponse>('GET', recordsPath, { query, waitMs });
      // Another partition may have used up --max while this one waited.
      if (budget <= 0) return;
      // --max counts printed records; the filters skip records, which still count as read
      let next = res.nextOffset;
      let examined = 0;
      for (const r of res.records) {
        if (budget <= 0) {
          next = r.offset;
          break;
        }
        examined++;
        if (!view.matches(r)) continue;
        budget--;
        const out = view.render(r);
        if (typeof out === 'string') await line(out);
        else await write(Buffer.concat([out, NEWLINE]));
      }
      if (group !== undefined && examined > 0) {
        // Committed offset = the next one to read, so a resumed tail starts right after.
        const commit = () => commits.json('POST', `/v1/groups/${enc(group)}/offsets`, { body: { topic, partition: part.partition, offset: next } });
        await (follow ? fetchRetrying(commit, stop.signal) : commit());
      }
      pos = { offset: next };
      if (budget <= 0) return stop.abort();
      if (!follow && (res.records.length === 0 || next >= endAtStart)) return;
    }
  };

  // The first real failure ends every partition's loop; the aborts it causes are not news.
  let failure: unknown;
  const settle = (err: unknown) => {
    if (!stop.signal.aborted) failure ??= err;
    stop.abort();
  };
  try {
    const info = await describeTopic(http, topic);
    const parts = info.partitions.filter((x) => onlyPartition === undefined || x.partition === onlyPartition);
    if (parts.length === 0) {
      throw new ServerError(404, 'PARTITION_NOT_FOUND', `topic ${topic} has no partition ${onlyPartition}`, false);
    }
    const committed = group !== undefined && start === undefined ? await committedOffsets(http, group, topic) : new Map<number, number>();
    const positionOf = (x: PartitionView): Position => {
      if (start && 'last' in start) return { offset: Math.max(x.startOffset, x.endOffset - start.last) };
      if (start) return start;
      const at = committed.get(x.partition);
      // Records below the start offset were removed by retention: resume from the oldest left.
      return at === undefined ? { from: 'earliest' } : { offset: Math.max(at, x.startOffset) };
    };
    if (follow) await Promise.all(parts.map((x) => drain(x, positionOf(x)).catch(settle)));
    else for (const x of parts) if (!stop.signal.aborted) await drain(x, positionOf(x));
  } catch (err) {
    settle(err);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    process.stdout.off('error', onStdoutError);
  }
  if (failure !== undefined) throw failure;
}

/** An error a following tail waits out: the node restarting, unreachable, or saying "try again". */
export const isTransient = (err: unknown): boolean =>
  (err instanceof ServerError && err.retryable) || (err instanceof CliError && err.exitCode === EXIT.unreachable);

/**
 * --follow outlives a node restart: a transient error is said once on stderr and the same fetch is
 * retried with backoff (100 ms doubling to 2 s) from the same offset, so nothing is skipped or shown twice.
 */
async function fetchRetrying<T>(fetchOnce: () => Promise<T>, signal: AbortSignal): Promise<T> {
  let delayMs = 100;
  let said = false;
  for (;;) {
    try {
      const res = await fetchOnce();
      if (said) process.stderr.write('chicago tail: reconnected\n');
      return res;
    } catch (err) {
      if (!isTransient(err) || signal.aborted) throw err;
      if (!said) process.stderr.write(`chicago tail: ${(err as Error).message}; retrying\n`);
      said = true;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delayMs);
        signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
      });
      delayMs = Math.min(delayMs * 2, 2_000);
    }
  }
}
