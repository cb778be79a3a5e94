// The bridge's view of Chicago: its public HTTP API (CONTRACT.md), nothing internal, so the bridge
// runs next to any node or cluster.
import { ChicagoError, type WireError } from '../runtime/errors.js';
import { authHeader } from '../client/token.js';
import { caDispatcher } from '../client/tls.js';

export interface ChicagoRecord {
  partition: number;
  offset: number;
  timestamp: number;
  key: Buffer | undefined;
  value: Buffer;
  headers: Record<string, string>;
  /** bytes of key + value + header names and values */
  bytes: number;
}

export interface FetchReply { records: ChicagoRecord[]; nextOffset: number; startOffset?: number; endOffset?: number }
export interface PartitionInfo { partition: number; startOffset: number; endOffset: number }
export interface TopicInfo { name: string; partitions: PartitionInfo[] }
export interface GroupOffset { topic: string; partition: number; offset: number }

interface WireRecord {
  partition: number;
  offset: number;
  timestamp: number;
  key: string | null;
  keyEncoding?: 'base64';
  value: string | null;
  valueEncoding?: 'base64';
  headers?: Record<string, string>;
}

/** A failed call; `status` 0 means the node could not be reached. */
export class ChicagoHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'ChicagoHttpError';
  }
}

function bytesOf(text: string | null, encoding: 'base64' | undefined): Buffer | undefined {
  if (text === null || text === undefined) return undefined;
  return encoding === 'base64' ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8');
}

export function recordBytes(key: Buffer | undefined, value: Buffer, headers: Record<string, string>): number {
  let n = (key?.length ?? 0) + value.length;
  for (const [k, v] of Object.entries(headers)) n += Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

export class ChicagoHttp {
  private readonly base: string;
  constructor(url: string, private readonly timeoutMs: number, private readonly token?: string, private readonly ca?: string) {
    this.base = url.replace(/\/+$/, '');
  }

  private async call<T>(method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...authHeader(this.token) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(timeoutMs),
        ...({ dispatcher: caDispatcher(this.ca) } as RequestInit),
      });
    } catch (e) {
      throw new ChicagoHttpError(0, 'UNREACHABLE', `${method} ${path}: ${(e as Error).message}`, true);
    }
    const text = await res.text();
    if (res.status >= 400) {
      let err: WireError | undefined;
      try {
        err = (JSON.parse(text) as { error?: WireError }).error;
      } catch { /* not JSON */ }
      throw new ChicagoHttpError(res.status, err?.code ?? 'HTTP_' + res.status, `${method} ${path}: ${err?.message ?? text.slice(0, 200)}`, err?.retryable ?? res.status >= 500);
    }
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  async health(): Promise<boolean> {
    try {
      await this.call('GET', '/v1/health', undefined, 2_000);
      return true;
    } catch {
      return false;
    }
  }

  async listTopics(): Promise<string[]> {
    const r = await this.call<{ topics: Array<{ name: string }> }>('GET', '/v1/topics');
    return r.topics.map((t) => t.name);
  }

  async describeTopic(topic: string): Promise<TopicInfo> {
    const r = await this.call<{ name: string; partitions: PartitionInfo[] }>('GET', `/v1/topics/${encodeURIComponent(topic)}`);
    return { name: r.name, partitions: r.partitions };
  }

  async createTopic(name: string, partitions: number): Promise<boolean> {
    try {
      await this.call('POST', '/v1/topics', { name, partitions, replicas: 1 });
      return true;
    } catch (e) {
      if (e instanceof ChicagoHttpError && e.status === 409) return false;
      // A cluster may refuse replicas=1 with fewer nodes configured; let it pick its default.
      if (e instanceof ChicagoHttpError && e.status === 400) {
        await this.call('POST', '/v1/topics', { name, partitions }).catch((e2: unknown) => {
          if (!(e2 instanceof ChicagoHttpError && e2.status === 409)) throw e2;
        });
        return true;
      }
      throw e;
    }
  }

  async fetch(topic: string, partition: number, offset: number, maxRecords: number, maxBytes: number, waitMs: number): Promise<FetchReply> {
    const q = `partition=${partition}&offset=${offset}&maxRecords=${maxRecords}&maxBytes=${maxBytes}&waitMs=${waitMs}`;
    const r = await this.call<{ records: WireRecord[]; nextOffset: number; startOffset?: number; endOffset?: number }>(
      'GET', `/v1/topics/${encodeURIComponent(topic)}/records?${q}`, undefined, this.timeoutMs + waitMs,
    );
    const records = r.records.map((w): ChicagoRecord => {
      const key = bytesOf(w.key, w.keyEncoding);
      const value = bytesOf(w.value, w.valueEncoding) ?? Buffer.alloc(0);
      const headers = w.headers ?? {};
      return { partition: w.partition, offset: w.offset, timestamp: w.timestamp, key, value, headers, bytes: recordBytes(key, value, headers) };
    });
    return { records, nextOffset: r.nextOffset, ...(r.startOffset !== undefined ? { startOffset: r.startOffset } : {}), ...(r.endOffset !== undefined ? { endOffset: r.endOffset } : {}) };
  }

  async produce(topic: string, records: Array<{ key?: string; value: string; headers?: Record<string, string> }>): Promise<void> {
    await this.call('POST', `/v1/topics/${encodeURIComponent(topic)}/records?acks=all`, records);
  }

  async commit(group: string, topic: string, partition: number, offset: number): Promise<void> {
    await this.call('POST', `/v1/groups/${encodeURIComponent(group)}/offsets`, { topic, partition, offset });
  }

  async groupOffsets(group: string, topic: string): Promise<GroupOffset[]> {
    const r = await this.call<{ offsets: GroupOffset[] }>('GET', `/v1/groups/${encodeURIComponent(group)}/offsets?topic=${encodeURIComponent(topic)}`);
    return r.offsets;
  }
}

/** True for errors worth retrying (node unreachable, overloaded, not ready). */
export function isRetryable(e: unknown): boolean {
  if (e instanceof ChicagoHttpError) return e.retryable;
  if (e instanceof ChicagoError) return e.retryable;
  return false;
}
