// Ships one task's spooled records to Chicago, exactly once: one idempotent producer per host+task
// (its id and partition kept in the spool), one batch in flight, the batch's range written to the
// spool before it is sent (so a resend after a crash is the same batch with the same sequence, which
// the node answers as a duplicate), and the ack written to the spool before the next batch.
import { caDispatcher } from '../client/tls.js';
import { authHeader } from '../client/token.js';
import type { Logger } from '../runtime/log.js';
import type { AgentConfig } from './config.js';
import type { Producer, ShipRecord, Spool } from './spool.js';

/** bytes a record adds to a JSON body besides its value and headers */
const RECORD_OVERHEAD_BYTES = 64;

export interface ShipStats { batches: number; records: number; bytes: number; duplicates: number; errors: number; lastAckMs: number }

export class NodeError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'NodeError';
  }
}

export class Shipper {
  private stopped = false;
  /** aborts the request in flight at stop (it is resent after the restart, as a duplicate if it was stored) */
  private readonly abort = new AbortController();
  private wake?: () => void;
  private loop?: Promise<void>;
  private producer?: Producer;
  readonly stats: ShipStats = { batches: 0, records: 0, bytes: 0, duplicates: 0, errors: 0, lastAckMs: 0 };

  constructor(
    readonly task: string,
    readonly topic: string,
    private readonly spool: Spool,
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.loop = this.run().catch((err: Error) => {
      this.log.error({ err, task: this.task }, 'shipper stopped');
      this.onFatal(err);
    });
  }

  onFatal: (err: Error) => void = () => {};

  /** More records are in the spool. */
  notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.notify();
    await this.loop;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wake = undefined; resolve(); }, ms);
      this.wake = () => { clearTimeout(t); resolve(); };
    });
  }

  private async run(): Promise<void> {
    let backoff = this.cfg.retry.minMs;
    while (!this.stopped) {
      try {
        if (!this.producer) this.producer = await this.ensureProducer();
        let range = this.spool.sends.get(this.task);
        if (!range) {
          const q = this.spool.pending.get(this.task) ?? [];
          if (q.length === 0) {
            await this.sleep(1000);
            continue;
          }
          if (q.length < this.cfg.batch.maxRecords && this.cfg.batch.lingerMs > 0 && Date.now() - this.stats.lastAckMs < this.cfg.batch.lingerMs) {
            await new Promise((r) => setTimeout(r, this.cfg.batch.lingerMs));
          }
          range = this.cut(this.spool.pending.get(this.task) ?? []);
          await this.spool.append([{ t: 'send', task: this.task, from: range.from, to: range.to }]);
        }
        const records = this.recordsOf(range);
        const res = await this.send(records, range.from);
        await this.spool.append([{ t: 'ack', task: this.task, to: range.to }]);
        this.stats.batches++;
        this.stats.records += records.length;
        // value bytes (base64 text for binary values), for the agent's metrics
        for (const r of records) this.stats.bytes += Buffer.byteLength(r.value);
        if (res.duplicate) this.stats.duplicates++;
        this.stats.lastAckMs = Date.now();
        backoff = this.cfg.retry.minMs;
      } catch (err) {
        if (this.stopped) return;
        if (/spool/.test((err as Error).message)) throw err;
        this.stats.errors++;
        const e = err as Error & { code?: string };
        this.log.warn({ task: this.task, err: e.message, code: e.code, retryInMs: backoff }, 'shipping failed; retrying');
        if (e instanceof NodeError && e.code === 'TOPIC_NOT_FOUND') this.producer = undefined;
        await this.sleep(backoff);
        backoff = Math.min(this.cfg.retry.maxMs, backoff * 2);
      }
    }
  }

  /** The next batch: at most maxRecords and maxBytes (the node refuses updates of 20 MB or more). */
  private cut(q: ShipRecord[]): { from: number; to: number } {
    let bytes = 2;
    let n = 0;
    for (const r of q) {
      const size = RECORD_OVERHEAD_BYTES + Buffer.byteLength(r.value) + headerBytes(r.headers);
      if (n > 0 && (n >= this.cfg.batch.maxRecords || bytes + size > this.cfg.batch.maxBytes)) break;
      bytes += size;
      n++;
    }
    return { from: q[0].seq, to: q[n - 1].seq };
  }

  private recordsOf(range: { from: number; to: number }): ShipRecord[] {
    const q = this.spool.pending.get(this.task) ?? [];
    if (q.length === 0 || q[0].seq !== range.from || q.length < range.to - range.from + 1) {
      throw new Error(`spool: task ${this.task} holds seq ${q[0]?.seq}..${q[q.length - 1]?.seq}, the batch to send is ${range.from}..${range.to}`);
    }
    const out = q.slice(0, range.to - range.from + 1);
    if (out[out.length - 1].seq !== range.to) throw new Error(`spool: task ${this.task} seqs are not contiguous`);
    return out;
  }

  private async ensureProducer(): Promise<Producer> {
    const known = this.spool.producers.get(this.task);
    if (known) return known;
    let partitions: number;
    const got = await this.request('GET', `/v1/topics/${encodeURIComponent(this.topic)}`).catch((err: unknown) => {
      if (err instanceof NodeError && err.code === 'TOPIC_NOT_FOUND') return undefined;
      throw err;
    });
    if (got) partitions = (got as { partitionCount: number }).partitionCount;
    else {
      const made = await this.request('POST', '/v1/topics', { name: this.topic, partitions: this.cfg.topicPartitions }).catch(async (err: unknown) => {
        if (err instanceof NodeError && err.code === 'TOPIC_EXISTS') return this.request('GET', `/v1/topics/${encodeURIComponent(this.topic)}`);
        throw err;
      });
      partitions = (made as { partitions: number; partitionCount?: number }).partitionCount ?? (made as { partitions: number }).partitions;
    }
    if (!Number.isInteger(partitions) || partitions < 1) throw new Error(`topic ${this.topic}: no partition count in the node's answer`);
    const { producer, entry } = this.spool.producerFor(this.task, this.cfg.host, partitions);
    if (entry) await this.spool.append([entry]);
    this.log.info({ task: this.task, topic: this.topic, producerId: producer.id, partition: producer.partition }, 'producer ready');
    return producer;
  }

  private async send(records: ShipRecord[], sequence: number): Promise<{ duplicate: boolean }> {
    const p = this.producer!;
    const q = `partition=${p.partition}&producerId=${encodeURIComponent(p.id)}&sequence=${sequence}&acks=all`;
    const body = records.map((r) => (r.enc ? { value: r.value, valueEncoding: r.enc, headers: r.headers } : { value: r.value, headers: r.headers }));
    const res = (await this.request('POST', `/v1/topics/${encodeURIComponent(this.topic)}/records?${q}`, body)) as { duplicate?: boolean };
    return { duplicate: res.duplicate === true };
  }

  private request(method: string, route: string, body?: unknown): Promise<unknown> {
    return nodeRequest(this.cfg.node, method, route, body, AbortSignal.any([AbortSignal.timeout(this.cfg.node.timeoutMs), this.abort.signal]));
  }

}

/** One JSON request to the node; a refusal becomes a NodeError with the node's code. */
export async function nodeRequest(node: AgentConfig['node'], method: string, route: string, body: unknown, signal: AbortSignal): Promise<unknown> {
  const res = await fetch(node.url + route, {
    method,
    headers: { ...authHeader(node.token), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal,
    ...({ dispatcher: caDispatcher(node.ca) } as RequestInit),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : {};
  } catch {
    parsed = { raw: text };
  }
  if (!res.ok) {
    const e = (parsed as { error?: { code?: string; message?: string; retryable?: boolean } }).error ?? {};
    throw new NodeError(res.status, e.code ?? `HTTP_${res.status}`, `${method} ${route.split('?')[0]}: ${res.status} ${e.code ?? ''} ${e.message ?? text.slice(0, 200)}`, e.retryable ?? res.status >= 500);
  }
  return parsed;
}

function headerBytes(h: Record<string, string>): number {
  let n = 0;
  for (const [k, v] of Object.entries(h)) n += k.length + Buffer.byteLength(v) + 6;
  return n;
}
