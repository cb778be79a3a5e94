// Ships one task's spooled records to Chicago, exactly once: one idempotent producer per host+task
// (its id and partition kept in the spool), one batch in flight, the batch's range written to the
// spool before it is sent (so a resend after a crash is the same batch with the same sequence, which
// the node answers as a duplicate), and the ack written to the spool in the same append as the next
// batch's range (one fdatasync per batch; alone when nothing follows).
import { caDispatcher } from '../client/tls.js';
import { authHeader } from '../client/token.js';
import type { Logger } from '../runtime/log.js';
import type { AgentConfig } from './config.js';
import type { Producer, ShipRecord, Spool } from './spool.js';

/** bytes a record adds to a JSON body besides its value and headers */
const RECORD_OVERHEAD_BYTES = 64;
/** an ack waits this long for the next records' append to ride in before it is written alone */
const ACK_ALONE_AFTER_MS = 200;

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

  /** Resolves true when notified, false after ms. */
  private sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wake = undefined; resolve(false); }, ms);
      this.wake = () => { clearTimeout(t); resolve(true); };
    });
  }

  private async run(): Promise<void> {
    let backoff = this.cfg.retry.minMs;
    /** the last batch acknowledged by the node whose ack is not in the spool yet */
    let ackTo: number | undefined;
    while (!this.stopped) {
      try {
        if (!this.producer) this.producer = await this.ensureProducer();
        // an ack that rode in the append of the next records is durable
        if (ackTo !== undefined && (this.spool.acked.get(this.task) ?? -1) >= ackTo) ackTo = undefined;
        let range = this.spool.sends.get(this.task);
        // a range acknowledged in memory stays in the spool's sends until its ack is durable
        if (range && ackTo !== undefined && range.to <= ackTo) range = undefined;
        if (!range) {
          let q = this.spool.pending.get(this.task) ?? [];
          let from = this.firstUnacked(q, ackTo);
          if (from >= q.length) {
            // nothing more to send: the next records' append takes their range and this ack (one
            // fdatasync before they are sent); the ack goes alone when none come soon or the spool is
            // full (segments and memory are freed on durable acks)
            if (ackTo !== undefined && this.spool.full()) {
              await this.spool.append([{ t: 'ack', task: this.task, to: ackTo }]);
              ackTo = undefined;
              continue;
            }
            this.spool.offerSend(this.task, {
              after: ackTo ?? this.spool.acked.get(this.task) ?? -1,
              ack: ackTo,
              cut: (recs) => { const r = this.cut(recs, 0); return r.to - r.from + 1; },
              notBeforeMs: this.cfg.batch.lingerMs > 0 ? this.stats.lastAckMs + this.cfg.batch.lingerMs : 0,
            });
            const woken = await this.sleep(ackTo !== undefined ? ACK_ALONE_AFTER_MS : 1000);
            this.spool.withdrawSend(this.task);
            if (!woken && ackTo !== undefined && (this.spool.acked.get(this.task) ?? -1) < ackTo) {
              await this.spool.append([{ t: 'ack', task: this.task, to: ackTo }]);
              ackTo = undefined;
            }
            continue;
          }
          if (q.length - from < this.cfg.batch.maxRecords && this.cfg.batch.lingerMs > 0 && Date.now() - this.stats.lastAckMs < this.cfg.batch.lingerMs) {
            await new Promise((r) => setTimeout(r, this.cfg.batch.lingerMs));
            q = this.spool.pending.get(this.task) ?? [];
            from = this.firstUnacked(q, ackTo);
          }
          range = this.cut(q, from);
          // the previous batch's ack rides in the same fdatasync as this batch's range
          await this.spool.append([...(ackTo !== undefined ? [{ t: 'ack' as const, task: this.task, to: ackTo }] : []), { t: 'send', task: this.task, from: range.from, to: range.to }]);
          ackTo = undefined;
        }
        const records = this.recordsOf(range);
        const res = await this.send(records, range.from);
        // the ack is in memory now and durable with the next range (or alone when there is none): a
        // crash before then resends this batch with its sequence, which the node answers as a duplicate
        ackTo = range.to;
        this.stats.batches++;
        this.stats.records += records.length;
        // value bytes (base64 text for binary values), for the agent's metrics
        for (const r of records) this.stats.bytes += Buffer.byteLength(r.value);
        if (res.duplicate) this.stats.duplicates++;
        this.stats.lastAckMs = Date.now();
        backoff = this.cfg.retry.minMs;
      } catch (err) {
        if (this.stopped) break;
        if (/spool/.test((err as Error).message)) throw err;
        this.stats.errors++;
        const e = err as Error & { code?: string };
        this.log.warn({ task: this.task, err: e.message, code: e.code, retryInMs: backoff }, 'shipping failed; retrying');
        if (e instanceof NodeError && e.code === 'TOPIC_NOT_FOUND') this.producer = undefined;
        await this.sleep(backoff);
        backoff = Math.min(this.cfg.retry.maxMs, backoff * 2);
      }
    }
    // an orderly stop keeps the last ack (a kill resends that batch as a duplicate)
    if (ackTo !== undefined) await this.spool.append([{ t: 'ack', task: this.task, to: ackTo }]).catch(() => undefined);
  }

  /** Index in q of the first record after the acknowledged batch whose ack is not durable yet. */
  private firstUnacked(q: ShipRecord[], ackTo: number | undefined): number {
    if (q.length === 0 || ackTo === undefined) return 0;
    return Math.max(0, ackTo - q[0].seq + 1);
  }

  /** The next batch: at most maxRecords and maxBytes (the node refuses updates of 20 MB or more). */
  private cut(q: ShipRecord[], from: number): { from: number; to: number } {
    let bytes = 2;
    let n = 0;
    for (let i = from; i < q.length; i++) {
      const r = q[i];
      const size = RECORD_OVERHEAD_BYTES + Buffer.byteLength(r.value) + headerBytes(r.headers) + (r.key !== undefined ? Buffer.byteLength(r.key) + 8 : 0);
      if (n > 0 && (n >= this.cfg.batch.maxRecords || bytes + size > this.cfg.batch.maxBytes)) break;
      bytes += size;
      n++;
    }
    return { from: q[from].seq, to: q[from + n - 1].seq };
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
    // keyed records go where their key says (the node places them; a resend of the same batch lands
    // the same way, so it is recognised); a batch without keys goes to the producer's partition
    const keyed = records.some((r) => r.key !== undefined);
    const q = `${keyed ? '' : `partition=${p.partition}&`}producerId=${encodeURIComponent(p.id)}&sequence=${sequence}&acks=all`;
    const res = (await this.request('POST', `/v1/topics/${encodeURIComponent(this.topic)}/records?${q}`, new RawJson(bodyOf(records)))) as { duplicate?: boolean };
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
    ...(body !== undefined ? { body: body instanceof RawJson ? body.text : JSON.stringify(body) } : {}),
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

/** A request body already in JSON. */
class RawJson {
  constructor(readonly text: string) {}
}

/**
 * The produce body: a JSON array of {value, valueEncoding?, headers} with each record's seq header.
 * Records that share a headers object share its JSON, made once.
 */
export function bodyOf(records: ShipRecord[]): string {
  const parts: string[] = new Array<string>(records.length);
  let lastH: Record<string, string> | undefined;
  let open = '';
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (r.headers !== lastH) {
      lastH = r.headers;
      const { seq: _seq, ...rest } = r.headers;
      const j = JSON.stringify(rest);
      open = j === '{}' ? '{' : `${j.slice(0, -1)},`;
    }
    parts[i] = `{${r.key !== undefined ? `"key":${JSON.stringify(r.key)},` : ''}"value":${JSON.stringify(r.value)}${r.enc ? ',"valueEncoding":"base64"' : ''},"headers":${open}"seq":"${r.seq}"}}`;
  }
  return `[${parts.join(',')}]`;
}

let lastSized: Record<string, string> | undefined;
let lastSize = 0;
function headerBytes(h: Record<string, string>): number {
  if (h === lastSized) return lastSize;
  let n = 24; // the seq header
  for (const [k, v] of Object.entries(h)) n += k.length + Buffer.byteLength(v) + 6;
  lastSized = h;
  lastSize = n;
  return n;
}
