// One logical connection to a node over /v1/ws: dials with backoff, says hello, correlates
// requests by id with deadlines, and redials when the socket drops. Writes caught by a drop are
// reported OUTCOME_UNKNOWN (never as success or plain failure); reads are re-sent.
import WebSocket from 'ws';
import { ChicagoError, codeOfWire } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import {
  ACCEPT_BATCHES, encodeFrame, parseServerFrame, PROTOCOL_VERSION, REQUEST_ID_MAX,
  type ClientFrame, type RequestFrame, type ServerFrame,
} from '../protocol/frames.js';

export interface SessionOptions {
  url: string;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  clientName: string;
  /** sent in hello; none for a node that runs without tokens */
  token?: string;
  /** PEM of a CA to trust for wss:// (a cluster's own); default the system CAs */
  ca?: string;
  /** more forms asked for in hello's `accept` (frames.ts ACCEPT_RANGES); none by default: produce replies keep their first form */
  accept?: readonly string[];
}

/** write: may change state, so a lost reply is OUTCOME_UNKNOWN; read: safe to re-send; sub: tied to one socket */
export type RequestKind = 'read' | 'write' | 'sub';
export type Reply = Extract<ServerFrame, { op: 'res' }>;
type Body<F> = F extends unknown ? Omit<F, 'id'> : never;
export type RequestBody = Body<RequestFrame>;

export interface SubscriptionHandler {
  records(frame: Extract<ServerFrame, { op: 'records' }>): void;
  batches(frame: Extract<ServerFrame, { op: 'batches' }>): void;
  end(frame: Extract<ServerFrame, { op: 'end' }>): void;
  /** the socket dropped: the subscription is gone and must be re-opened after `onUp` */
  lost(): void;
}

interface Pending {
  readonly id: number;
  readonly op: string;
  readonly kind: RequestKind;
  readonly bytes: Buffer;
  /** generation of the socket it went out on; 0 while unsent */
  sentGen: number;
  readonly timer: NodeJS.Timeout;
  resolve(reply: Reply): void;
  reject(err: ChicagoError): void;
}

// Errors for acks=none produce arrive, if at all, soon after the send; older ids are forgotten.
const FIRED_REMEMBERED_MAX = 1024;
// Slack over the largest frame for the socket's receive limit.
const RECEIVE_SLACK_BYTES = 64 * 1024;

export class Session {
  private ws: WebSocket | undefined;
  private state: 'connecting' | 'up' | 'closed' = 'connecting';
  private gen = 0;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Map<number, SubscriptionHandler>();
  private readonly fired = new Map<number, (err: ChicagoError) => void>();
  private readonly upListeners = new Set<() => void>();
  private retryTimer: NodeJS.Timeout | undefined;
  /** while opening with `firstDialOnly`: told of the first dial's failure instead of redialling */
  private onFirstDialFailed: ((err: Error) => void) | undefined;
  /** while opening: told when the node refused the token (no redial helps) */
  private onRefused: ((err: ChicagoError) => void) | undefined;
  private dialing: WebSocket | undefined;
  private lastError: Error | undefined;
  /** what the server advertised in its hello reply */
  serverLimits: Record<string, number> = {};
  /** what the server advertised it accepts beyond the first form of the protocol (frames.ts SERVER_FEATURES) */
  serverFeatures: readonly string[] = [];

  private constructor(readonly opts: SessionOptions) {}

  /**
   * Resolves once the first connection is up, or rejects after connectTimeoutMs. With
   * `firstDialOnly` it rejects as soon as the first dial fails (a node that refuses connections
   * is down: the caller has somewhere else to go); once open, it reconnects as any session.
   */
  static async open(opts: SessionOptions, { firstDialOnly = false } = {}): Promise<Session> {
    const s = new Session(opts);
    await new Promise<void>((resolve, reject) => {
      const give = (err: ChicagoError) => {
        clearTimeout(timer);
        s.upListeners.delete(onUp);
        s.onFirstDialFailed = undefined;
        s.close();
        reject(err);
      };
      const timer = setTimeout(() => {
        const why = s.lastError ? ` (last error: ${s.lastError.message})` : '';
        give(new ChicagoError('TIMEOUT', `connecting to ${opts.url}${why}`, opts.connectTimeoutMs));
      }, opts.connectTimeoutMs);
      const onUp = () => {
        clearTimeout(timer);
        s.upListeners.delete(onUp);
        s.onFirstDialFailed = undefined;
        s.onRefused = undefined;
        resolve();
      };
      s.upListeners.add(onUp);
      if (firstDialOnly) s.onFirstDialFailed = (err) => give(new ChicagoError('NOT_READY', `${opts.url} (${err.message})`));
      s.onRefused = give;
      s.dial(opts.backoffMinMs);
    });
    return s;
  }

  get isUp(): boolean { return this.state === 'up'; }
  get isClosed(): boolean { return this.state === 'closed'; }

  /** Called after every (re)connection, once hello is done. Returns an unsubscribe function. */
  onUp(fn: () => void): () => void {
    this.upListeners.add(fn);
    return () => this.upListeners.delete(fn);
  }

  request(body: RequestBody, kind: RequestKind, timeoutMs = this.opts.requestTimeoutMs, onId?: (id: number) => void): Promise<Reply> {
    if (this.state === 'closed') return Promise.reject(new ChicagoError('BAD_REQUEST', 'client is closed'));
    if (kind === 'sub' && this.state !== 'up') return Promise.reject(new ChicagoError('NOT_READY', 'not connected'));
    if (this.pending.size >= limits.connectionInFlightMax) {
      return Promise.reject(new ChicagoError('OVERLOADED', 'client request queue', `${this.pending.size} requests`));
    }
    const id = this.allocId();
    const bytes = this.encode({ ...body, id } as ClientFrame);
    if (bytes instanceof ChicagoError) return Promise.reject(bytes);
    onId?.(id);
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        if (kind === 'sub') this.subs.delete(id);
        reject(p.sentGen !== 0 && kind === 'write'
          ? new ChicagoError('OUTCOME_UNKNOWN', `no reply to ${body.op} within ${timeoutMs} ms`)
          : new ChicagoError('TIMEOUT', body.op, timeoutMs));
      }, timeoutMs);
      const p: Pending = { id, op: body.op, kind, bytes, sentGen: 0, timer, resolve, reject };
      this.pending.set(id, p);
      if (this.state === 'up') this.transmit(p);
    });
  }

  /** Open a subscription on the current socket; records and end frames go to `handler`. */
  subscribe(body: Body<Extract<RequestFrame, { op: 'subscribe' }>>, handler: SubscriptionHandler): { id: number; ready: Promise<Reply> } {
    let id = 0;
    // The handler is in place before the frame leaves: records may arrive ahead of the reply.
    const ready = this.request(body, 'sub', this.opts.requestTimeoutMs, (allocated) => {
      id = allocated;
      this.subs.set(id, handler);
    });
    ready.catch(() => this.subs.delete(id));
    return { id, ready };
  }

  credit(sub: number, bytes: number): void {
    if (this.state !== 'up' || !this.subs.has(sub)) return; // a new subscription starts with fresh credit
    const encoded = this.encode({ op: 'credit', sub, bytes });
    if (!(encoded instanceof ChicagoError)) this.ws!.send(encoded);
  }

  unsubscribe(sub: number): void {
    if (!this.subs.delete(sub) || this.state !== 'up') return;
    // Best effort: if it fails the socket is gone, and the subscription with it.
    this.request({ op: 'unsubscribe', sub }, 'sub').catch(() => undefined);
  }

  /**
   * Send a request that gets no reply on success (acks=none produce). Resolves once written to
   * the socket; `onError` hears about a later rejection, if the server sends one soon.
   */
  fire(body: RequestBody, onError: (err: ChicagoError) => void): Promise<void> {
    if (this.state !== 'up') return Promise.reject(new ChicagoError('NOT_READY', 'not connected'));
    const id = this.allocId();
    const bytes = this.encode({ ...body, id } as ClientFrame);
    if (bytes instanceof ChicagoError) return Promise.reject(bytes);
    this.fired.set(id, onError);
    if (this.fired.size > FIRED_REMEMBERED_MAX) this.fired.delete(this.fired.keys().next().value!);
    return new Promise((resolve, reject) => {
      this.ws!.send(bytes, (err) => err ? reject(new ChicagoError('OUTCOME_UNKNOWN', err.message)) : resolve());
    });
  }

  close(): void {
    this.closeWith();
  }

  /** Closes for good; pending requests fail with `err` (a refused token) or as cut off. */
  private closeWith(err?: ChicagoError): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.retryTimer);
    this.dialing?.terminate();
    if (err) for (const p of [...this.pending.values()]) { this.settle(p.id); p.reject(err); }
    this.failPending('client closed');
    for (const h of this.subs.values()) h.lost();
    this.subs.clear();
    this.ws?.close(1000, 'client closed');
    this.ws = undefined;
  }

  // ---- internals -----------------------------------------------------------------------------

  private allocId(): number {
    do {
      this.nextId = this.nextId >= REQUEST_ID_MAX ? 1 : this.nextId + 1;
    } while (this.pending.has(this.nextId) || this.subs.has(this.nextId) || this.fired.has(this.nextId));
    return this.nextId;
  }

  private encode(frame: ClientFrame): Buffer | ChicagoError {
    // Copy: encodeFrame returns a pooled view, and ws may hold the buffer until the kernel takes it.
    const bytes = Buffer.from(encodeFrame(frame));
    const max = this.serverLimits.frameBytesMax ?? limits.frameBytesMax;
    if (bytes.length > max) return new ChicagoError('FRAME_TOO_LARGE', bytes.length, max);
    return bytes;
  }

  private transmit(p: Pending): void {
    p.sentGen = this.gen;
    this.ws!.send(p.bytes);
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    clearTimeout(p.timer);
    return p;
  }

  private failPending(why: string): void {
    for (const p of [...this.pending.values()]) {
      this.settle(p.id);
      p.reject(p.sentGen !== 0 && p.kind === 'write'
        ? new ChicagoError('OUTCOME_UNKNOWN', `${p.op}: ${why}`)
        : new ChicagoError('NOT_READY', why));
    }
  }

  private dial(delayMs: number): void {
    if (this.state === 'closed') return;
    const ws = new WebSocket(wsUrl(this.opts.url), {
      perMessageDeflate: false,
      maxPayload: limits.frameBytesMax + RECEIVE_SLACK_BYTES,
      handshakeTimeout: this.opts.connectTimeoutMs,
      ...(this.opts.ca ? { ca: this.opts.ca } : {}),
    });
    this.dialing = ws;
    const helloId = this.allocId();
    let settled = false;
    const deadline = setTimeout(() => fail(new ChicagoError('TIMEOUT', 'websocket hello', this.opts.connectTimeoutMs)), this.opts.connectTimeoutMs);
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      this.lastError = err;
      this.dialing = undefined;
      ws.removeAllListeners();
      ws.on('error', () => undefined);
      ws.terminate();
      if (this.state === 'closed') return;
      // A refused token stays refused: end the session with that error instead of redialling.
      if (err instanceof ChicagoError && (err.code === 'UNAUTHENTICATED' || err.code === 'FORBIDDEN')) {
        if (this.onRefused) return this.onRefused(err);
        return this.closeWith(err);
      }
      if (this.onFirstDialFailed) return this.onFirstDialFailed(err);
      const next = Math.min(this.opts.backoffMaxMs, delayMs * 2);
      this.retryTimer = setTimeout(() => this.dial(next), jitter(delayMs));
    };
    ws.on('error', fail);
    ws.on('close', (code, reason) => fail(new Error(`closed with ${code} ${reason.toString()}`)));
    ws.on('open', () => {
      // pushed records as stored batches: the node sends them without decoding, tail.ts decodes
      ws.send(Buffer.from(encodeFrame({ op: 'hello', id: helloId, versions: [PROTOCOL_VERSION], client: this.opts.clientName, accept: [ACCEPT_BATCHES, ...(this.opts.accept ?? [])], ...(this.opts.token ? { token: this.opts.token } : {}) })));
    });
    ws.on('message', (data: Buffer, isBinary) => {
      const parsed = isBinary ? parseServerFrame(data) : undefined;
      if (!parsed?.ok || parsed.frame.op === 'records' || parsed.frame.op === 'batches' || parsed.frame.op === 'end' || parsed.frame.id !== helloId) {
        return fail(new Error('unexpected frame before the hello reply'));
      }
      if (parsed.frame.op === 'err') return fail(ChicagoError.fromWire(parsed.frame));
      settled = true;
      clearTimeout(deadline);
      this.serverLimits = (parsed.frame.limits ?? {}) as Record<string, number>;
      const features = parsed.frame.features;
      this.serverFeatures = Array.isArray(features) ? features.filter((f): f is string => typeof f === 'string') : [];
      ws.removeAllListeners();
      this.dialing = undefined;
      this.up(ws);
    });
  }

  private up(ws: WebSocket): void {
    if (this.state === 'closed') {
      ws.close(1000, 'client closed');
      return;
    }
    this.ws = ws;
    this.state = 'up';
    this.gen++;
    const gen = this.gen;
    ws.on('message', (data: Buffer, isBinary) => this.onMessage(ws, data, isBinary));
    ws.on('error', (err) => { this.lastError = err; });
    ws.on('close', (code, reason) => this.down(gen, code, reason.toString()));
    // Requests made while disconnected (and reads caught by the drop) go out in id order.
    for (const p of [...this.pending.values()].sort((a, b) => a.id - b.id)) if (p.sentGen === 0) this.transmit(p);
    for (const fn of [...this.upListeners]) fn();
  }

  private down(gen: number, code: number, reason: string): void {
    if (gen !== this.gen || this.state !== 'up') return;
    this.state = 'connecting';
    this.ws = undefined;
    const wire = code >= 4000 && code < 5000 ? codeOfWire(code - 4000) : undefined;
    const why = `connection lost (${wire ?? code}${reason ? `: ${reason}` : ''})`;
    for (const p of [...this.pending.values()]) {
      if (p.sentGen === 0) continue;
      if (p.kind === 'read') {
        p.sentGen = 0; // re-sent after the next hello
        continue;
      }
      this.settle(p.id);
      p.reject(p.kind === 'write' ? new ChicagoError('OUTCOME_UNKNOWN', `${p.op}: ${why}`) : new ChicagoError('NOT_READY', why));
    }
    const handlers = [...this.subs.values()];
    this.subs.clear();
    this.fired.clear();
    for (const h of handlers) h.lost();
    this.dial(this.opts.backoffMinMs);
  }

  private onMessage(ws: WebSocket, data: Buffer, isBinary: boolean): void {
    const parsed = isBinary ? parseServerFrame(data) : undefined;
    if (!parsed?.ok) {
      // A server we cannot parse is a server we cannot trust to be in sync: start over.
      this.lastError = parsed?.error ?? new Error('text frame from server');
      ws.close(1002, 'unparseable frame');
      return;
    }
    const f = parsed.frame;
    switch (f.op) {
      case 'res':
        this.settle(f.id)?.resolve(f);
        return;
      case 'err': {
        const err = ChicagoError.fromWire(f);
        const p = this.settle(f.id);
        if (p) return p.reject(err);
        const onError = this.fired.get(f.id);
        this.fired.delete(f.id);
        onError?.(err);
        return;
      }
      case 'records':
        this.subs.get(f.sub)?.records(f);
        return;
      case 'batches':
        this.subs.get(f.sub)?.batches(f);
        return;
      case 'end': {
        const h = this.subs.get(f.sub);
        this.subs.delete(f.sub);
        h?.end(f);
        return;
      }
    }
  }
}

/** http(s)://host:port[/…] or ws(s)://… → the ws URL of /v1/ws */
export function wsUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new ChicagoError('INVALID_ARGUMENT', 'url', url);
  u.pathname = '/v1/ws';
  return u.toString();
}

function jitter(ms: number): number {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}
