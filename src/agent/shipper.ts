// Ships one task's spooled records to Chicago, exactly once: one idempotent producer per host+task
// (its id and partition kept in the spool) and every batch's range written to the spool before it is
// sent, so a resend after a crash is the same batch with the same sequence, which the node answers as
// a duplicate. Up to batch.inFlightMax batches of an unkeyed task are in flight at once, each naming the
// one sent before it (previousSequence): the node appends a batch only after its predecessor, so one
// that failed is never overtaken; the shipper then resends in order from the first unacknowledged one.
// Acks are applied in order and written to the spool in the same append as the next batch's range; in
// a backlog the full batches the window has room for are cut together, their ranges in one append.
import { authHeader } from '../client/token.js';
import { BufferPool } from './buffers.js';
import { PRODUCE_RANGES_TYPE } from '../protocol/api.js';
import type { Logger } from '../runtime/log.js';
import { limits } from '../runtime/limits.js';
import type { AgentConfig } from './config.js';
import { PendingRecords, type Producer, type RecsEntry, recordsOf, recsCount, type SendRange, type ShipRecord, type Span, type Spool, type ValueBytes } from './spool.js';
import { BATCH_CONTENT_TYPE, BATCH_CRC_FROM, BATCH_HEADER_BYTES, batchCrcOver, encodeHeaders, sealBatchCrc, varintBytes, writeBatchHeader, writeRecordStart, writeVarint, type EncodedHeaders } from '../protocol/batch.js';
import http from 'node:http';
import { deadline } from '../runtime/deadline.js';
import { nowUs } from '../runtime/timing.js';
import https from 'node:https';

/** bytes a record adds to a JSON body besides its value and headers */
const RECORD_OVERHEAD_BYTES = 64;
/** an ack waits this long for the next records' append to ride in before it is written alone */
const ACK_ALONE_AFTER_MS = 200;

export interface ShipStats {
  batches: number; records: number; bytes: number; duplicates: number; errors: number; lastAckMs: number;
  /** batches the node held back until their predecessor arrived (SEQUENCE_GAP), resent after it */
  gaps: number;
  /** the most batches in flight at once */
  inFlightPeak: number;
}

export class NodeError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly retryable: boolean) {
    super(message);
    this.name = 'NodeError';
  }
}

/**
 * A batch in the window, in seq order. wait: not sent since the last failure; sending; acked (the
 * node holds it; it leaves the window once every batch before it is acked too); held: the node
 * refused it because its predecessor had not arrived, resent once that one is acked; failed.
 */
interface Flight extends SendRange {
  keyed: boolean;
  state: 'wait' | 'sending' | 'acked' | 'held' | 'failed';
  /** sent when its predecessor was already acknowledged: a gap then is not a matter of order */
  afterAck?: boolean;
}

/** What the window may send now, and with which previousSequence (pure: the loop does the I/O). */
export function sendable(flights: readonly Flight[]): Array<{ i: number; previous?: number }> {
  const out: Array<{ i: number; previous?: number }> = [];
  for (let i = 0; i < flights.length; i++) {
    const f = flights[i];
    if (f.state === 'sending' || f.state === 'acked') continue;
    if (f.state === 'failed') break;
    // the first unacknowledged batch goes alone after start or a failure: everything before it is
    // held by the node, so it needs no predecessor named
    if (i === 0) {
      out.push({ i });
      // a keyed batch spans partitions: nothing follows it until it is acknowledged
      if (f.keyed) break;
      continue;
    }
    const p = flights[i - 1];
    if (f.keyed || p.keyed) break;
    // a predecessor sent in this same call counts as sending
    const pGoes = out.length > 0 && out[out.length - 1].i === i - 1;
    if (f.state === 'wait' && (p.state === 'sending' || p.state === 'acked' || pGoes)) out.push({ i, previous: p.from });
    else if (f.state === 'held' && p.state === 'acked') out.push({ i, previous: p.from });
    else break;
  }
  return out;
}

export class Shipper {
  private stopped = false;
  /** aborts the requests in flight at stop (they are resent after the restart, as duplicates if they were stored) */
  private readonly abort = new AbortController();
  private wake?: () => void;
  private loop?: Promise<void>;
  private producer?: Producer;
  readonly stats: ShipStats = { batches: 0, records: 0, bytes: 0, duplicates: 0, errors: 0, lastAckMs: 0, gaps: 0, inFlightPeak: 0 };
  /** the batches whose ranges are in the spool and not acknowledged in order yet */
  private readonly flights: Flight[] = [];
  private sending = 0;
  /** a request failed: no more go until those in flight settle, then all resend from the first unacknowledged */
  private failed = false;
  /** when the last batch was cut (a batch behind one in flight lingers after it) */
  private lastCutMs = 0;

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

  /** More records are in the spool (or a request settled). */
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

  private get inFlightMax(): number {
    return this.cfg.batch.inFlightMax;
  }

  private async run(): Promise<void> {
    let backoff = this.cfg.retry.minMs;
    /** the last batch acknowledged in order whose ack is not in the spool yet */
    let ackTo: number | undefined;
    const flights = this.flights;
    while (!this.stopped) {
      // a cut planned in the last turn and not made (a failure, nothing to cut) no longer holds the spool's commits
      this.spool.expectCut(this.task, undefined);
      try {
        if (!this.producer) this.producer = await this.ensureProducer();
        // acks in order: the batches at the front that the node holds leave the window
        while (flights.length > 0 && flights[0].state === 'acked') ackTo = flights.shift()!.to;
        const durableAck = this.spool.acked.get(this.task) ?? -1;
        // an ack that rode in an append of records is durable
        if (ackTo !== undefined && durableAck >= ackTo) ackTo = undefined;
        // ranges in the spool the window does not hold: the batches to resend after a restart, and
        // ranges that rode in an append of records (offerSend)
        this.adopt(ackTo ?? durableAck);
        if (this.failed) {
          if (this.sending > 0) {
            await this.sleep(1000);
            continue;
          }
          await this.sleep(backoff);
          backoff = Math.min(this.cfg.retry.maxMs, backoff * 2);
          for (const f of flights) if (f.state !== 'acked') f.state = 'wait';
          this.failed = false;
          continue;
        }
        // what may go goes first: a batch's request does not wait for the next one's range to be written
        const go = sendable(flights);
        for (const { i, previous } of go) this.launch(flights[i], previous, () => { backoff = this.cfg.retry.minMs; });
        const last = flights[flights.length - 1];
        const after = last?.to ?? ackTo ?? durableAck;
        let q = this.spool.pending.get(this.task) ?? NONE;
        // records held after the window's last batch
        let unsent = q.length === 0 ? 0 : q.lastSeq - after;
        const room = flights.length < this.inFlightMax && !(last?.keyed);
        const linger = this.cfg.batch.lingerMs;
        // behind a batch in flight, a batch that is not full waits lingerMs after the last one was cut:
        // lines that come together go together, not one request per read
        const lingerUntil = flights.length > 0 && linger > 0 && unsent < this.cfg.batch.maxRecords ? this.lastCutMs + linger : 0;
        if (room && unsent > 0 && Date.now() < lingerUntil) {
          this.spool.expectCut(this.task, lingerUntil);
          await this.sleep(lingerUntil - Date.now());
          continue;
        }
        if (room && unsent > 0) {
          // nothing in flight: a short linger makes one batch of lines that come together
          if (flights.length === 0 && unsent < this.cfg.batch.maxRecords && this.cfg.batch.lingerMs > 0 && Date.now() - this.stats.lastAckMs < this.cfg.batch.lingerMs) {
            this.spool.expectCut(this.task, Date.now() + this.cfg.batch.lingerMs);
            await new Promise((r) => setTimeout(r, this.cfg.batch.lingerMs));
            q = this.spool.pending.get(this.task) ?? NONE;
            unsent = q.lastSeq - after;
          }
          const cut = this.cut(q, after, flights.length);
          if (cut.length === 0) continue; // nothing after `after` (the records leave only on acks of what was sent)
          // the ack so far rides in the same fdatasync as these batches' ranges
          const ack = ackTo;
          const cutUs = this.log.isLevelEnabled('trace') ? nowUs() : 0;
          await this.spool.append([...(ack !== undefined ? [{ t: 'ack' as const, task: this.task, to: ack }] : []), ...cut.map((r) => ({ t: 'send' as const, task: this.task, from: r.from, to: r.to }))]);
          if (ack !== undefined && ackTo === ack) ackTo = undefined;
          for (const r of cut) flights.push({ ...r, state: 'wait' });
          if (cutUs) this.log.trace({ task: this.task, from: cut[0].from, to: cut[cut.length - 1].to, batches: cut.length, cutUs, durableUs: nowUs(), unsent, inFlight: flights.length }, 'timing cut');
          this.lastCutMs = Date.now();
          this.spool.expectCut(this.task, undefined);
          continue;
        }
        if (go.length > 0) continue;
        // nothing to cut or send now: a request settles, or records come
        if (ackTo !== undefined && this.spool.full()) {
          // segments and memory are freed on durable acks
          await this.spool.append([{ t: 'ack', task: this.task, to: ackTo }]);
          ackTo = undefined;
          continue;
        }
        if (room) {
          // the next records' append takes their range and this ack (one fdatasync before they are sent)
          this.spool.offerSend(this.task, {
            after,
            ack: ackTo,
            cut: (e) => this.fits([{ e, i: 0, j: recsCount(e) }]),
            notBeforeMs: linger === 0 ? 0 : flights.length === 0 ? this.stats.lastAckMs + linger : this.lastCutMs + linger,
            more: this.inFlightMax - flights.length - 1,
          });
        }
        const woken = await this.sleep(ackTo !== undefined ? ACK_ALONE_AFTER_MS : 1000);
        this.spool.withdrawSend(this.task);
        if (!woken && ackTo !== undefined && (this.spool.acked.get(this.task) ?? -1) < ackTo) {
          await this.spool.append([{ t: 'ack', task: this.task, to: ackTo }]);
          ackTo = undefined;
        }
      } catch (err) {
        if (this.stopped) break;
        if (/spool/.test((err as Error).message)) throw err;
        this.stats.errors++;
        this.log.warn({ task: this.task, err: (err as Error).message, retryInMs: backoff }, 'shipping failed; retrying');
        await this.sleep(backoff);
        backoff = Math.min(this.cfg.retry.maxMs, backoff * 2);
      }
    }
    // requests aborted at stop settle first; an orderly stop keeps the last ack (a kill resends those
    // batches as duplicates)
    this.spool.expectCut(this.task, undefined);
    while (this.sending > 0) await this.sleep(100);
    while (flights.length > 0 && flights[0].state === 'acked') ackTo = flights.shift()!.to;
    if (ackTo !== undefined && (this.spool.acked.get(this.task) ?? -1) < ackTo) await this.spool.append([{ t: 'ack', task: this.task, to: ackTo }]).catch(() => undefined);
    this.log.info({ task: this.task, ...this.stats }, 'shipper stopped');
  }

  /**
   * The next batches' ranges after `after`: one, or in a backlog (a full batch more behind it) as many
   * full ones as the window has room for, so they share one fdatasync and go out one after another. A
   * keyed batch goes alone.
   */
  private cut(q: PendingRecords, after: number, inFlight: number): Array<SendRange & { keyed: boolean }> {
    const out: Array<SendRange & { keyed: boolean }> = [];
    let from = after + 1;
    while (inFlight + out.length < this.inFlightMax) {
      const n = this.fits(q.spans(from, q.lastSeq));
      if (n === 0) break;
      const r = { from, to: from + n - 1, keyed: keyedIn(q.spans(from, from + n - 1)) };
      out.push(r);
      from = r.to + 1;
      if (r.keyed || q.lastSeq - r.to < this.cfg.batch.maxRecords) break;
    }
    return out;
  }

  /** Takes the spool's ranges after the window's last batch into the window, in order. */
  private adopt(floor: number): void {
    const l = this.spool.sends.get(this.task);
    if (!l) return;
    let last = this.flights[this.flights.length - 1]?.to ?? floor;
    for (const r of l) {
      if (r.to <= last) continue;
      if (r.from !== last + 1) throw new Error(`spool: task ${this.task} batch ${r.from}..${r.to} does not follow ${last}`);
      this.flights.push({ from: r.from, to: r.to, keyed: keyedIn(this.spansOf(r)), state: 'wait' });
      this.lastCutMs = Date.now();
      last = r.to;
    }
  }

  /** Sends one batch; its answer changes its state and wakes the loop. */
  private launch(f: Flight, previous: number | undefined, onAck: () => void): void {
    const records = this.spansOf(f);
    f.state = 'sending';
    f.afterAck = previous === undefined || this.flights[this.flights.indexOf(f) - 1]?.state === 'acked';
    this.sending++;
    this.stats.inFlightPeak = Math.max(this.stats.inFlightPeak, this.sending);
    const sentUs = this.log.isLevelEnabled('trace') ? nowUs() : 0;
    this.send(records, f.from, previous).then((res) => {
      if (sentUs) this.log.trace({ task: this.task, from: f.from, to: f.to, sentUs, ackUs: nowUs() }, 'timing acked');
      f.state = 'acked';
      this.stats.batches++;
      this.stats.records += f.to - f.from + 1;
      // value bytes (base64 text for binary values), for the agent's metrics
      this.stats.bytes += shippedValueBytes(records);
      if (res.duplicate) this.stats.duplicates++;
      this.stats.lastAckMs = Date.now();
      onAck();
    }, (err: Error & { code?: string }) => {
      if (this.stopped) {
        f.state = 'failed';
        return;
      }
      const p = this.flights[this.flights.indexOf(f) - 1];
      if (err instanceof NodeError && err.code === 'SEQUENCE_GAP' && !f.afterAck && p?.state !== 'failed') {
        // it overtook its predecessor on the way (another connection, the node's parse pool): sent again after it
        f.state = 'held';
        this.stats.gaps++;
        return;
      }
      f.state = 'failed';
      this.failed = true;
      this.stats.errors++;
      if (err instanceof NodeError && err.code === 'TOPIC_NOT_FOUND') this.producer = undefined;
      this.log.warn({ task: this.task, err: err.message, code: err.code, batch: `${f.from}..${f.to}` }, 'shipping failed; resending in order from the first unacknowledged batch');
    }).finally(() => {
      this.sending--;
      this.notify();
    });
  }

  /** How many records from the first of `spans` the next batch takes: at most maxRecords and maxBytes (the node refuses updates of 20 MB or more). */
  private fits(spans: Span[]): number {
    let bytes = 2;
    let n = 0;
    const maxRecords = this.cfg.batch.maxRecords;
    const maxBytes = this.cfg.batch.maxBytes;
    for (const { e, i, j } of spans) {
      const hb = headerBytes(e.h);
      const vb = e.vb;
      for (let k = i; k < j; k++) {
        let size = RECORD_OVERHEAD_BYTES + hb;
        if (vb) size += vb.ends[k] - vb.starts[k];
        else size += e.a ? e.v[k].length : Buffer.byteLength(e.v[k]);
        const x = e.x?.[k];
        // its own headers, whose seq header the shared ones' size counts already
        if (x) size += headerBytes(x) - SEQ_HEADER_BYTES;
        const key = e.k?.[k];
        if (typeof key === 'string') size += Buffer.byteLength(key) + 8;
        if (n > 0 && (n >= maxRecords || bytes + size > maxBytes)) return n;
        bytes += size;
        n++;
      }
    }
    return n;
  }

  /** The records of a batch's range, as ranges of the spool's entries. */
  private spansOf(range: SendRange): Span[] {
    const q = this.spool.pending.get(this.task) ?? NONE;
    if (q.length === 0 || range.from < q.firstSeq || range.to > q.lastSeq) {
      throw new Error(`spool: task ${this.task} holds seq ${q.firstSeq}..${q.lastSeq}, the batch to send is ${range.from}..${range.to}`);
    }
    return q.spans(range.from, range.to);
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

  private async send(records: Span[], sequence: number, previous: number | undefined): Promise<{ duplicate: boolean }> {
    const p = this.producer!;
    // keyed records go where their key says (the node places them; a resend of the same batch lands
    // the same way, so it is recognised); a batch without keys goes to the producer's partition
    const keyed = keyedIn(records);
    const q = `${keyed ? '' : `partition=${p.partition}&`}producerId=${encodeURIComponent(p.id)}&sequence=${sequence}${previous !== undefined ? `&previousSequence=${previous}` : ''}&acks=all`;
    const route = `/v1/topics/${encodeURIComponent(this.topic)}/records?${q}`;
    let answer: string;
    const binary = this.binary;
    try {
      const bytes = binary ? encodeShipBatch(records, Date.now(), batchBuffers.take) : undefined;
      answer = (await this.request('POST', route, bytes ? new RawBatch(bytes) : new RawJson(bodyOf(recordsOfSpans(records))), true)) as string;
      // only after a 2xx answer: the node has read the whole body, nothing of it is left to write
      if (bytes) batchBuffers.give(bytes);
    } catch (err) {
      // a node that predates record-batch bodies refuses the type: JSON from then on (the same records, the same sequence)
      if (!(binary && err instanceof NodeError && err.code === 'UNSUPPORTED_MEDIA_TYPE')) throw err;
      if (this.binary) this.log.warn({ task: this.task }, 'the node refuses record-batch bodies; sending JSON');
      this.binary = false;
      answer = (await this.request('POST', route, new RawJson(bodyOf(recordsOfSpans(records))), true)) as string;
    }
    return { duplicate: duplicateOf(answer) };
  }

  /** produce bodies as one record batch (src/protocol/batch.ts); JSON after a node refused that type */
  private binary = true;

  private request(method: string, route: string, body?: unknown, raw = false): Promise<unknown> {
    const d = deadline(this.cfg.node.timeoutMs, this.abort.signal);
    return nodeRequest(this.cfg.node, method, route, body, d.signal, raw).finally(d.done);
  }

}

/**
 * Connections to nodes, kept alive between requests: one agent per scheme and CA. node:http rather
 * than fetch: a produce body goes to the socket as it is (fetch copies it twice through a web stream).
 */
const agents = new Map<string, http.Agent>();
/** an idle connection is closed before the node's own idle timeout (uWS: 10 s) could race a request on it */
const IDLE_CONNECTION_MS = 4000;

function agentFor(https_: boolean, ca: string | undefined): http.Agent {
  const k = `${https_ ? 's' : ''}:${ca ?? ''}`;
  let a = agents.get(k);
  if (!a) {
    // noDelay: a request goes out whole at once; Nagle would hold the next one behind a delayed ACK
    const opts = { keepAlive: true, timeout: IDLE_CONNECTION_MS, noDelay: true };
    a = https_ ? new https.Agent({ ...opts, ...(ca ? { ca } : {}) }) : new http.Agent(opts);
    agents.set(k, a);
  }
  return a;
}

/**
 * What a produce's answer says that the shipper uses. The answer holds no text of the records (and
 * from a node that predates the compact answer lists every record's offset), so it is searched, not parsed.
 */
export function duplicateOf(answer: string): boolean {
  return answer.includes('"duplicate":true');
}

/**
 * One request to the node (a JSON answer, or its text unparsed when `raw`); a refusal becomes a
 * NodeError with the node's code.
 */
export function nodeRequest(node: AgentConfig['node'], method: string, route: string, body: unknown, signal: AbortSignal, raw = false): Promise<unknown> {
  const url = new URL(node.url + route);
  const secure = url.protocol === 'https:';
  const payload: string | Buffer | undefined = body === undefined ? undefined : body instanceof RawJson ? body.text : body instanceof RawBatch ? body.bytes : JSON.stringify(body);
  const headers: Record<string, string | number> = { ...authHeader(node.token) };
  if (payload !== undefined) {
    headers['content-type'] = body instanceof RawBatch ? BATCH_CONTENT_TYPE : 'application/json';
    headers['content-length'] = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    // a produce asks for the compact answer (one range per batch, not one offset per record)
    if (body instanceof RawBatch || body instanceof RawJson) headers.accept = PRODUCE_RANGES_TYPE;
  }
  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request(url, { method, headers, agent: agentFor(secure, node.ca), signal }, (res) => {
      // An answer is bounded like a frame: a node (or something posing as one) cannot make the agent
      // hold more than that of it.
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > limits.frameBytesMax) {
          res.destroy();
          reject(new NodeError(res.statusCode ?? 0, 'VALUE_TOO_LARGE', `${method} ${route.split('?')[0]}: answer over ${limits.frameBytesMax} bytes`, true));
          return;
        }
        chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () => {
        const text = chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8');
        const status = res.statusCode ?? 0;
        if (raw && status >= 200 && status <= 299) {
          resolve(text);
          return;
        }
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : {};
        } catch {
          parsed = { raw: text };
        }
        if (status < 200 || status > 299) {
          const e = (parsed as { error?: { code?: string; message?: string; retryable?: boolean } }).error ?? {};
          reject(new NodeError(status, e.code ?? `HTTP_${status}`, `${method} ${route.split('?')[0]}: ${status} ${e.code ?? ''} ${e.message ?? text.slice(0, 200)}`, e.retryable ?? status >= 500));
          return;
        }
        resolve(parsed);
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** A request body already in JSON. */
class RawJson {
  constructor(readonly text: string) {}
}

/** A request body that is one record batch. */
export class RawBatch {
  constructor(readonly bytes: Buffer) {}
}

/** The produce body as one record batch: the same records, values, keys and headers (with seq) as bodyOf. */
export function batchOf(records: ShipRecord[], timestampMs = Date.now()): Buffer {
  return encodeShipBatch(records.map(spanOf), timestampMs);
}

/** A record as an entry of one (records sharing a headers object still share its encoding). */
function spanOf(r: ShipRecord): Span {
  const e: RecsEntry = { t: 'recs', task: r.task, topic: r.topic, seq: r.seq, h: r.headers, v: [r.value] };
  if (r.enc) e.b64 = [0];
  if (r.ascii) e.a = 1;
  if (r.key !== undefined) e.k = [r.key];
  return { e, i: 0, j: 1 };
}

function recordsOfSpans(spans: Span[]): ShipRecord[] {
  return spans.flatMap((s) => recordsOf(s.e, s.i, s.j));
}

/** Whether any of the records has a key (a keyed batch is placed by the node). */
function keyedIn(spans: Span[]): boolean {
  for (const { e, i, j } of spans) {
    if (!e.k) continue;
    for (let k = i; k < j; k++) if (typeof e.k[k] === 'string') return true;
  }
  return false;
}

/** no records */
const NONE = new PendingRecords();

/** value bytes of the batches encoded and not acknowledged yet (metrics without measuring each value again) */
const lastValueBytes = new WeakMap<Span[], number>();

/** value bytes of a batch's records, as the agent's metrics count them (base64 text for binary values) */
export function shippedValueBytes(spans: Span[]): number {
  return lastValueBytes.get(spans) ?? valueBytesOf(spans);
}

function valueBytesOf(spans: Span[]): number {
  let n = 0;
  for (const { e, i, j } of spans) {
    // the lines' own bytes: a range from the first start to the last end would count the newlines between them
    if (e.vb) for (let k = i; k < j; k++) n += e.vb.ends[k] - e.vb.starts[k];
    else for (let k = i; k < j; k++) n += Buffer.byteLength(e.v[k]);
  }
  return n;
}

// per-batch scratch, reused: the encoder allocates the batch's buffer and the shared headers only
let recLens: number[] = [];
let valLens: number[] = [];
let sharedOf: EncodedHeaders[] = [];
const SEQ_NAME = [0x73, 0x65, 0x71]; // "seq"
const NO_HEADERS: EncodedHeaders = { count: 0, bytes: Buffer.alloc(0) };

/** Node's Buffer.prototype.latin1Write (undocumented, as msgpackr uses utf8Write): half the cost of write(…, 'latin1') per value */
const latin1Write = (Buffer.prototype as unknown as { latin1Write?: (s: string, at: number, len: number) => number }).latin1Write;

/**
 * The decimal digits of n >= 0 written backwards from buf[end - 1]. Below 2^31 in int32 arithmetic:
 * `%` and Math.floor on a double cost a call each per digit.
 */
function writeDigits(buf: Buffer, end: number, n: number): void {
  let q = end;
  let v = n;
  for (; v > 0x7fffffff; q--) { const d = Math.floor(v / 10); buf[q - 1] = 48 + (v - d * 10); v = d; }
  let w = v | 0;
  do { const d = (w / 10) | 0; buf[--q] = 48 + (w - d * 10); w = d; } while (w > 0);
}

function digitsOf(n: number): number {
  let d = 1;
  for (let p = 10; n >= p; p *= 10) d++;
  return d;
}

/**
 * Record-batch buffers reused from one batch to the next: a fresh buffer of a batch's size cost more
 * than encoding the batch (buffers.ts). A buffer comes back only once the node has answered its
 * request 2xx; at most agentBatchBuffersKeptMax are kept (full → dropped), none once idle.
 */
export class BatchBuffers extends BufferPool {
  constructor() {
    super({ keptMax: limits.agentBatchBuffersKeptMax, idleMs: limits.agentBatchBuffersIdleMs });
  }
}

const batchBuffers = new BatchBuffers();

/** the batch CRC is taken over this many bytes at a time as they are written (well inside L2) */
const CRC_CHUNK_BYTES = 32 * 1024;

/** where each span's values are staged in the batch, minus their first start (NaN: not staged) */
let staged: number[] = [];
/** per span encoded by the plain loops, what follows each value: header count, shared headers, the seq header's name */
let tails: Array<Buffer | undefined> = [];
let lastShared: EncodedHeaders | undefined;
let lastTail = Buffer.alloc(0);

/** A record's bytes after its value up to its seq header's length: `headerCount | shared headers | 6 "seq"`. */
function tailOf(sh: EncodedHeaders): Buffer {
  if (sh === lastShared) return lastTail;
  const hc = varintBytes(sh.count + 1);
  const t = Buffer.allocUnsafe(hc + sh.bytes.length + 4);
  let pos = writeVarint(t, 0, sh.count + 1);
  t.set(sh.bytes, pos);
  pos += sh.bytes.length;
  t[pos++] = 6;
  t[pos++] = SEQ_NAME[0]; t[pos++] = SEQ_NAME[1]; t[pos++] = SEQ_NAME[2];
  lastShared = sh;
  lastTail = t;
  return t;
}
/** the most bytes between two lines of a staged span (a newline, CR LF): fewer than any record's own */
const STAGE_GAP_MAX = 4;

/** Whether records [i, j) of vb are lines in order, at most STAGE_GAP_MAX bytes apart (as a read's are). */
function stageable(vb: ValueBytes, i: number, j: number): boolean {
  if (vb.ends[i] < vb.starts[i]) return false;
  for (let k = i + 1; k < j; k++) {
    const gap = vb.starts[k] - vb.ends[k - 1];
    if (gap < 0 || gap > STAGE_GAP_MAX || vb.ends[k] < vb.starts[k]) return false;
  }
  return true;
}

function withoutSeq(h: Record<string, string>): EncodedHeaders {
  const { seq: _seq, ...rest } = h;
  return encodeHeaders(rest);
}

/**
 * One record batch straight from the spool's entries, sized in one pass and written in a second:
 * no per-record objects or strings (the seq header's digits are written as bytes; a value held as
 * bytes is copied from them). The records of an entry share its headers: encoded once (once per
 * distinct headers of their own), seq added per record.
 */
export function encodeShipBatch(spans: Span[], timestampMs: number, alloc: (bytes: number) => Buffer = Buffer.allocUnsafe): Buffer {
  let n = 0;
  for (const s of spans) n += s.j - s.i;
  if (recLens.length < n) { recLens = new Array<number>(n); valLens = new Array<number>(n); sharedOf = new Array<EncodedHeaders>(n); }
  if (staged.length < spans.length) { staged = new Array<number>(spans.length); tails = new Array<Buffer | undefined>(spans.length); }
  let lastH: Record<string, string> | undefined;
  let shared = NO_HEADERS;
  let decoded: Map<number, Buffer> | undefined;
  let total = BATCH_HEADER_BYTES;
  let textBytes = 0;
  let idx = 0;
  for (let s = 0; s < spans.length; s++) {
    const { e, i, j } = spans[s];
    const vb = e.vb;
    tails[s] = undefined;
    staged[s] = vb && stageable(vb, i, j) ? 0 : NaN;
    if (vb && e.x === undefined && e.k === undefined && staged[s] === 0) {
      // the file reader's lines: one headers list for all, no keys; a record's size needs no lookup
      if (e.h !== lastH) {
        lastH = e.h;
        shared = withoutSeq(e.h);
      }
      const tail = tailOf(shared);
      tails[s] = tail;
      const starts = vb.starts;
      const ends = vb.ends;
      // attributes, timestampDelta 0, no key, the header count with the shared headers, the seq header's name and length
      const fixed = 3 + tail.length + 1;
      let seq = e.seq + i;
      let digits = digitsOf(seq);
      let tenPow = 10 ** digits;
      for (let k = i; k < j; k++, idx++, seq++) {
        if (seq >= tenPow) {
          digits++;
          tenPow *= 10;
        }
        const vl = ends[k] - starts[k];
        valLens[idx] = vl;
        textBytes += vl;
        const body = fixed + varintBytes(idx) + varintBytes(vl) + vl + digits;
        recLens[idx] = body;
        total += varintBytes(body) + body;
      }
      continue;
    }
    const b64 = e.b64 ? new Set(e.b64) : undefined;
    let merged: Map<Record<string, string>, EncodedHeaders> | undefined;
    for (let k = i; k < j; k++, idx++) {
      const x = e.x?.[k];
      let sh: EncodedHeaders;
      if (!x) {
        if (e.h !== lastH) {
          lastH = e.h;
          shared = withoutSeq(e.h);
        }
        sh = shared;
      } else {
        merged ??= new Map();
        let m = merged.get(x);
        if (!m) merged.set(x, (m = withoutSeq({ ...e.h, ...x })));
        sh = m;
      }
      sharedOf[idx] = sh;
      let vl: number;
      if (vb) {
        vl = vb.ends[k] - vb.starts[k];
        textBytes += vl;
      } else if (b64?.has(k)) {
        const b = Buffer.from(e.v[k], 'base64');
        (decoded ??= new Map()).set(idx, b);
        vl = b.length;
        textBytes += e.v[k].length;
      } else {
        vl = e.a ? e.v[k].length : Buffer.byteLength(e.v[k]);
        textBytes += vl;
      }
      valLens[idx] = vl;
      const key = e.k?.[k];
      const kl = typeof key === 'string' ? Buffer.byteLength(key) : -1;
      // attributes, timestampDelta 0, offsetDelta, key, value, header count, shared headers, seq header
      const body = 2 + varintBytes(idx) + (kl < 0 ? 1 : varintBytes(kl) + kl) + varintBytes(vl) + vl
        + varintBytes(sh.count + 1) + sh.bytes.length + 5 + digitsOf(e.seq + k);
      recLens[idx] = body;
      total += varintBytes(body) + body;
    }
  }
  const buf = alloc(total);
  // values held as bytes are staged first, their read's bytes copied at once to the end of the batch
  // (one copy per entry, not one per line); each is then moved to its place with copyWithin, which
  // allocates nothing (Buffer.copy makes a view per call). A record's other bytes outnumber the
  // newline between two lines, so the writes never reach a staged value before it is moved.
  let stageAt = total;
  for (let s = spans.length - 1; s >= 0; s--) {
    const { e, i, j } = spans[s];
    if (Number.isNaN(staged[s])) continue;
    stageAt -= e.vb!.ends[j - 1] - e.vb!.starts[i];
    staged[s] = stageAt - e.vb!.starts[i];
  }
  for (let s = 0; s < spans.length; s++) {
    const { e, i, j } = spans[s];
    if (!Number.isNaN(staged[s])) e.vb!.data.copy(buf, staged[s] + e.vb!.starts[i], e.vb!.starts[i], e.vb!.ends[j - 1]);
  }
  writeBatchHeader(buf, n, timestampMs);
  let pos = BATCH_HEADER_BYTES;
  // the CRC follows the writes a few KiB behind: what is before pos is final (staged values lie past it)
  let crc = 0;
  let crcAt = BATCH_CRC_FROM;
  idx = 0;
  for (let s = 0; s < spans.length; s++) {
    const { e, i, j } = spans[s];
    const vb = e.vb;
    const at = staged[s];
    const tail = tails[s];
    if (tail !== undefined) {
      const starts = vb!.starts;
      const ends = vb!.ends;
      const fixed = 3 + tail.length + 1;
      for (let k = i; k < j; k++, idx++) {
        const body = recLens[idx];
        const vl = valLens[idx];
        // the seq's digit count is what the size pass left of the record's length
        const digits = body - fixed - varintBytes(idx) - varintBytes(vl) - vl;
        pos = writeVarint(buf, pos, body);
        buf[pos++] = 0; // attributes
        buf[pos++] = 0; // timestampDelta
        pos = writeVarint(buf, pos, idx);
        buf[pos++] = 1; // zigzag(-1): no key
        pos = writeVarint(buf, pos, vl);
        buf.copyWithin(pos, at + starts[k], at + ends[k]);
        pos += vl;
        buf.set(tail, pos);
        pos += tail.length;
        buf[pos++] = digits * 2;
        writeDigits(buf, pos + digits, e.seq + k);
        pos += digits;
        if (pos - crcAt >= CRC_CHUNK_BYTES) {
          crc = batchCrcOver(buf, crc, crcAt, pos);
          crcAt = pos;
        }
      }
      continue;
    }
    for (let k = i; k < j; k++, idx++) {
      pos = writeRecordStart(buf, pos, recLens[idx], idx);
      const key = e.k?.[k];
      if (typeof key !== 'string') buf[pos++] = 1; // zigzag(-1): no key
      else {
        const kl = Buffer.byteLength(key);
        pos = writeVarint(buf, pos, kl);
        pos += buf.write(key, pos, kl, 'utf8');
      }
      const vl = valLens[idx];
      pos = writeVarint(buf, pos, vl);
      if (vb) {
        if (!Number.isNaN(at)) buf.copyWithin(pos, at + vb.starts[k], at + vb.ends[k]);
        else vb.data.copy(buf, pos, vb.starts[k], vb.ends[k]);
      }
      else {
        const d = decoded?.get(idx);
        const v = e.v[k];
        if (d) buf.set(d, pos);
        // as many bytes as chars: ASCII, whose UTF-8 is its Latin-1 (a plain copy rather than an encode),
        // through Buffer's own latin1Write when it has one (write() dispatches on the encoding per call)
        else if (vl === v.length) {
          if (latin1Write) latin1Write.call(buf, v, pos, vl);
          else buf.write(v, pos, vl, 'latin1');
        } else buf.write(v, pos, vl, 'utf8');
      }
      pos += vl;
      const sh = sharedOf[idx];
      pos = writeVarint(buf, pos, sh.count + 1);
      buf.set(sh.bytes, pos);
      pos += sh.bytes.length;
      // the seq header: name length 3 (zigzag 6), "seq", digit count (zigzag), digits
      buf[pos++] = 6;
      buf[pos++] = SEQ_NAME[0]; buf[pos++] = SEQ_NAME[1]; buf[pos++] = SEQ_NAME[2];
      const seq = e.seq + k;
      const digits = digitsOf(seq);
      buf[pos++] = digits * 2;
      writeDigits(buf, pos + digits, seq);
      pos += digits;
      if (pos - crcAt >= CRC_CHUNK_BYTES) {
        crc = batchCrcOver(buf, crc, crcAt, pos);
        crcAt = pos;
      }
    }
  }
  sharedOf.fill(NO_HEADERS, 0, n); // drop references to this batch's headers
  tails.fill(undefined, 0, spans.length);
  if (pos !== total) throw new Error(`batch encoder wrote ${pos} of ${total} bytes`);
  lastValueBytes.set(spans, textBytes);
  return sealBatchCrc(buf, batchCrcOver(buf, crc, crcAt, pos));
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
/** what headerBytes counts for a record's seq header */
const SEQ_HEADER_BYTES = 24;

function headerBytes(h: Record<string, string>): number {
  if (h === lastSized) return lastSize;
  let n = SEQ_HEADER_BYTES;
  for (const [k, v] of Object.entries(h)) n += k.length + Buffer.byteLength(v) + 6;
  lastSized = h;
  lastSize = n;
  return n;
}
