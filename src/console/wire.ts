// The console's connection to its node: the /v1/ws protocol (docs/protocol.md) over the browser's
// WebSocket, msgpack by msgpackr, and the HTTP routes with the same token.
import { Packr, Unpackr } from 'msgpackr';

const packr = new Packr({ useRecords: false });
// int64 (timestamps) as numbers: exact up to 2^53, which offsets and times never pass
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** a record of a subscription push: [offset, timestampMs, value, key?, headers?] */
export type RecordTuple = [number, number, Uint8Array, (Uint8Array | null)?, Record<string, string>?];

export class WireError extends Error {
  constructor(readonly code: string, message: string) { super(`${code}: ${message}`); }
}

const REQUEST_TIMEOUT_MS = 10_000;
/** requests awaiting an answer; past this a new one is refused at once rather than queued */
const PENDING_MAX = 1_000;
/** credit each subscription grants: what the node may push ahead of the page */
export const SUB_CREDIT_BYTES = 256 * 1024;

interface Pending { resolve(v: Record<string, unknown>): void; reject(e: Error): void; timer: number }
export interface SubHandlers { records(records: RecordTuple[], bytes: number): void; end(code?: string, message?: string): void }

export class Wire {
  private ws: WebSocket | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Map<number, SubHandlers>();
  onClose: (reason: string) => void = () => undefined;

  constructor(private token: string | undefined) {}

  /** Opens the socket and says hello (with the token, when there is one). */
  async open(): Promise<Record<string, unknown>> {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new WireError('UNAVAILABLE', 'the node refused the WebSocket'));
    });
    ws.onmessage = (ev) => this.receive(new Uint8Array(ev.data as ArrayBuffer));
    ws.onclose = (ev) => {
      for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new WireError('UNAVAILABLE', 'connection closed')); }
      this.pending.clear();
      for (const [, s] of this.subs) s.end('UNAVAILABLE', 'connection closed');
      this.subs.clear();
      this.onClose(ev.reason || `closed (${ev.code})`);
    };
    return this.request({ op: 'hello', versions: [1], client: 'chicago-console', ...(this.token ? { token: this.token } : {}) });
  }

  close(): void { this.ws?.close(1000, 'console closed'); }

  request(frame: Record<string, unknown>): Promise<Record<string, unknown>> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new WireError('UNAVAILABLE', 'not connected'));
    if (this.pending.size >= PENDING_MAX) return Promise.reject(new WireError('OVERLOADED', 'too many requests waiting'));
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_fff0 ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      const timer = window.setTimeout(() => { this.pending.delete(id); reject(new WireError('TIMEOUT', `${String(frame.op)} took over ${REQUEST_TIMEOUT_MS} ms`)); }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(packr.pack({ ...frame, id }));
    });
  }

  /** Subscribes to one partition; records may come before the reply, so handlers are set first. */
  async subscribe(topic: string, partition: number, from: unknown, h: SubHandlers): Promise<number> {
    const id = this.nextId;
    this.subs.set(id, h);
    try {
      await this.request({ op: 'subscribe', topic, partition, from, credit: SUB_CREDIT_BYTES });
    } catch (e) {
      this.subs.delete(id);
      throw e;
    }
    return id;
  }

  credit(sub: number, bytes: number): void {
    if (bytes > 0 && this.subs.has(sub) && this.ws?.readyState === WebSocket.OPEN) this.ws.send(packr.pack({ op: 'credit', sub, bytes }));
  }

  unsubscribe(sub: number): void {
    if (!this.subs.delete(sub)) return;
    this.request({ op: 'unsubscribe', sub }).catch(() => undefined); // already ended: nothing to undo
  }

  private receive(data: Uint8Array): void {
    const f = unpackr.unpack(data) as Record<string, unknown>;
    if (f.op === 'records') {
      this.subs.get(f.sub as number)?.records(f.records as RecordTuple[], f.bytes as number);
    } else if (f.op === 'end') {
      const s = this.subs.get(f.sub as number);
      this.subs.delete(f.sub as number);
      s?.end(f.code as string | undefined, f.message as string | undefined);
    } else if (f.op === 'res' || f.op === 'err') {
      const p = this.pending.get(f.id as number);
      if (!p) return;
      this.pending.delete(f.id as number);
      clearTimeout(p.timer);
      if (f.op === 'res') p.resolve(f);
      else p.reject(new WireError(String(f.code), String(f.message)));
    }
  }
}

/** GET on the node's HTTP API with the console's token. */
export async function getJson(path: string, token: string | undefined): Promise<any> {
  const res = await fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {}, cache: 'no-store', signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new WireError(body?.error?.code ?? String(res.status), body?.error?.message ?? res.statusText);
  return body;
}
