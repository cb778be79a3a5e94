// Node-to-node links: one outbound WebSocket per peer (to its `/v1/peer`). They carry, as msgpack
// frames, a hello (protocol version, where this node's workers take replication traffic),
// requests forwarded to a partition's leader with their answers, and heartbeats that give fast
// failure suspicion. Replication traffic itself goes only on the workers' direct links
// (net/worker-links.ts). Outgoing sockets bind to this node's own address, so a test can cut the
// link between two nodes with a firewall.
import uWS from 'uWebSockets.js';
import WebSocket from 'ws';
import { Packr } from 'msgpackr';
import { ChicagoError, asChicagoError, type ErrorCode } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import type { Logger } from '../runtime/log.js';
import type { NodeId } from '../runtime/ids.js';
import type { WriteResult } from '../actors/threads.js';
import type { RequestBody } from '../actors/messages.js';
import { Backoff, dialPeer, type LinkTls } from '../net/worker-links.js';
import type { PeerLink } from './hooks.js';

/**
 * The peer protocol this node speaks, sent in its hello. A node refuses a peer that speaks another
 * (closing its link with PEER_VERSION_REFUSED and a reason that names both versions): every node
 * of a cluster speaks the same one. 1 (no `v` in the hello) also relayed replication frames on
 * these links; 2 sends them only on worker links; 3 carries a produce's records as one record batch
 * (src/protocol/batch.ts) in forwarded requests and replication entries. A field added within a
 * version is optional: an append's `rev` (replica.ts staleView) is ignored by a node that predates
 * it, and an append without one is taken as before.
 */
export const PEER_PROTOCOL_VERSION = 3;
/** WebSocket close code for a hello of another peer protocol version */
export const PEER_VERSION_REFUSED = 4102;

export type PeerFrame =
  /**
   * `v`: the sender's peer protocol version (absent: 1). `links`: where the sender's partition
   * workers take replication frames (net/worker-links.ts), and `key`, what a worker must present
   */
  | { t: 'hello'; from: NodeId; v?: number; links?: string[]; key?: string }
  | { t: 'f'; id: number; p: number; b: RequestBody; w: boolean }
  | { t: 'fr'; id: number; ok: true; res: unknown; n: number }
  | { t: 'fr'; id: number; ok: false; code: ErrorCode; message: string }
  /** heartbeat; `pos`: per partition hosted there, [applied seq, 1 if its copy is incomplete] */
  | { t: 'hb'; from: NodeId; at: number; pos?: Record<number, [number, number]> };

/** What arrives on peer links for the node to handle. */
export interface PeerHandlers {
  forwarded(p: number, body: RequestBody, write: boolean): Promise<WriteResult<unknown>>;
  /** a peer's worker links and link key, from its hello; [] once it is no longer a peer */
  peerLinks(node: NodeId, urls: string[], key: string): void;
}

/**
 * How nodes know each other: the token this node presents on its outbound links, and the check of
 * an inbound link's Authorization header (a token with the cluster:peer scope; anything when the
 * node runs without tokens).
 */
export interface PeerAuth {
  /** the cluster:peer token this node presents when it dials, read at each dial (SIGHUP may change it) */
  token?: string;
  /** with TLS: this node's certificate and the cluster CA that must have signed a peer's */
  tls?: LinkTls;
  accepts(authorization: string): Promise<boolean>;
}

const packr = new Packr({ useRecords: false });
/** the heartbeat's period (the cluster coordinator's check sends it once it drives them) */
export const HEARTBEAT_MS = 100;

interface PendingForward { resolve(r: WriteResult<unknown>): void; reject(e: Error): void; timer: NodeJS.Timeout; write: boolean }

/** One outbound link. Frames queue (bounded) while it connects. */
class Outbound {
  private socket: WebSocket | undefined;
  private queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private readonly backoff = new Backoff();
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  readonly pending = new Map<number, PendingForward>();
  dropped = 0;
  /** when the last attempt to connect found nothing listening (ECONNREFUSED); 0: it did not */
  refusedAtMs = 0;

  constructor(private readonly net: PeerNetwork, readonly peer: NodeId, private url: string) { this.connect(); }

  setUrl(url: string): void {
    if (url === this.url) return;
    this.url = url;
    this.socket?.terminate();
  }

  private connect(): void {
    if (this.closed) return;
    const ws = dialPeer(this.url.replace(/^http/, 'ws') + '/v1/peer', this.net.localAddress, this.net.auth.token, this.url.startsWith('https:') ? this.net.auth.tls : undefined);
    this.socket = ws;
    ws.binaryType = 'nodebuffer';
    ws.on('open', () => {
      this.backoff.reset();
      this.refusedAtMs = 0;
      this.net.accepted(this.peer);
      ws.send(packr.pack({ t: 'hello', from: this.net.self, v: PEER_PROTOCOL_VERSION, links: this.net.workerLinks, key: this.net.linkKey } satisfies PeerFrame));
      const queued = this.queue;
      this.queue = [];
      this.queuedBytes = 0;
      for (const f of queued) ws.send(f);
    });
    ws.on('message', (data: Buffer) => this.net.onFrame(this.peer, data));
    ws.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') this.refusedAtMs = Date.now();
      // the peer answered the upgrade 401: it does not take this node's security.peerToken
      if (/^Unexpected server response: 401$/.test(err.message)) this.net.refusedToken(this.peer);
      // 'close' follows and reconnects
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (code === PEER_VERSION_REFUSED) this.net.refusedVersion(this.peer, reason.toString());
      if (this.socket !== ws) return;
      this.socket = undefined;
      // A forwarded request may or may not have run on the peer: writes are unknown, reads retryable.
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        p.reject(p.write ? new ChicagoError('OUTCOME_UNKNOWN', `link to ${this.peer} closed`) : new ChicagoError('NOT_LEADER', '?', `${this.peer} (link closed)`));
        this.pending.delete(id);
      }
      if (this.closed) return;
      this.retry = setTimeout(() => this.connect(), this.backoff.next());
    });
  }

  /**
   * Full policy: while the link is down at most peerQueueBytesMax wait; past that frames are
   * dropped and counted. Replication recovers from drops (the leader probes and resends).
   */
  send(frame: Uint8Array): boolean {
    const ws = this.socket;
    if (ws && ws.readyState === WebSocket.OPEN) {
      if (ws.bufferedAmount > limits.peerQueueBytesMax) { this.dropped++; return false; }
      ws.send(frame);
      return true;
    }
    if (this.queuedBytes + frame.length > limits.peerQueueBytesMax) { this.dropped++; return false; }
    this.queue.push(frame);
    this.queuedBytes += frame.length;
    return true;
  }

  get connected(): boolean { return this.socket?.readyState === WebSocket.OPEN; }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.socket?.terminate();
  }
}

export class PeerNetwork implements PeerLink {
  private readonly links = new Map<NodeId, Outbound>();
  private readonly lastHeard = new Map<NodeId, number>();
  /** the worker links and link key each peer announced in its last hello (kept while it is out of membership) */
  private readonly peerWorkerLinks = new Map<NodeId, { urls: string[]; key: string }>();
  /** replica positions each peer last reported in its heartbeat */
  private readonly reported = new Map<NodeId, Record<number, [number, number]>>();
  private positionsOf: () => Record<number, [number, number]> = () => ({});
  private nextId = 1;
  private heartbeat: NodeJS.Timeout | undefined;
  private handlers: PeerHandlers | undefined;

  constructor(
    readonly self: NodeId,
    /** the address outgoing links bind to: this node's own listening address */
    readonly localAddress: string,
    private readonly log: Logger,
    readonly auth: PeerAuth,
    /** this node's worker links, announced in its hello */
    readonly workerLinks: string[] = [],
    /** what peers' workers present to this node's workers, announced in its hello */
    readonly linkKey = '',
  ) {
    this.startHeartbeats();
  }

  setHandlers(h: PeerHandlers): void { this.handlers = h; }

  /** What this node's heartbeats report about its replicas. */
  reportPositions(provider: () => Record<number, [number, number]>): void { this.positionsOf = provider; }

  /**
   * From now on the caller sends the heartbeat (beat(), every HEARTBEAT_MS) on a timer it runs
   * anyway: one wake-up where there were two. `false` hands them back to this network's own timer.
   */
  driveHeartbeats(byCaller = true): void {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    if (!byCaller) this.startHeartbeats();
  }

  private startHeartbeats(): void {
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** A peer's last reported position for a partition: [seq, incomplete], if it reported one. */
  positionOf(node: NodeId, p: number): [number, number] | undefined { return this.reported.get(node)?.[p]; }

  /** The peers to keep links to, with their URLs (from membership). */
  setPeers(peers: Map<NodeId, string>): void {
    for (const [id, url] of peers) {
      if (id === this.self) continue;
      const link = this.links.get(id);
      if (link) link.setUrl(url);
      else {
        this.links.set(id, new Outbound(this, id, url));
        // back in membership (its lease lapsed and it re-registered) with the links it announced
        const announced = this.peerWorkerLinks.get(id);
        if (announced) this.handlers?.peerLinks(id, announced.urls, announced.key);
      }
    }
    for (const [id, link] of this.links) {
      if (!peers.has(id)) {
        link.close();
        this.links.delete(id);
        this.lastHeard.delete(id);
        this.reported.delete(id);
        this.handlers?.peerLinks(id, [], '');
      }
    }
  }

  /** When a peer was last heard from (any frame), in ms since the epoch; 0 if never. */
  heardAt(node: NodeId): number { return this.lastHeard.get(node) ?? 0; }

  /**
   * Did the last attempt to reach this peer, after its last frame, find nothing listening at its
   * address? Then its process is gone: a paused or cut-off node keeps its listener, and its link
   * just goes quiet (or times out).
   */
  gone(node: NodeId): boolean {
    const refusedAt = this.links.get(node)?.refusedAtMs ?? 0;
    return refusedAt > 0 && refusedAt >= this.heardAt(node);
  }

  /** the last refusal each peer gave this node's hello, logged once while it repeats */
  private readonly refusals = new Map<NodeId, string>();

  refusedVersion(peer: NodeId, reason: string): void {
    if (this.refusals.get(peer) === reason) return;
    this.refusals.set(peer, reason);
    this.log.error({ peer, reason }, 'peer refused this node\'s link: another peer protocol version');
  }

  /** A link to `peer` opened: its token was taken, so a later refusal of it is news again. */
  accepted(peer: NodeId): void {
    if (this.refusals.get(peer) === 'token') this.refusals.delete(peer);
  }

  refusedToken(peer: NodeId): void {
    const reason = 'token';
    if (this.refusals.get(peer) === reason) return;
    this.refusals.set(peer, reason);
    this.log.error({ peer }, 'peer refused this node\'s link: it does not accept this node\'s security.peerToken (a token with cluster:peer listed in every node\'s security.tokens)');
  }

  forward<T>(to: NodeId, p: number, body: RequestBody, write: boolean): Promise<WriteResult<T>> {
    const link = this.links.get(to);
    // An unreachable leader is news for the router (it waits for failover), not a queue to wait in.
    if (!link || !link.connected) return Promise.reject(new ChicagoError('NOT_LEADER', p, `${to} (unreachable)`));
    const id = this.nextId++;
    // A long poll is held at the leader for its wait before it answers.
    const timeoutMs = limits.forwardTimeoutMs + (body.op === 'fetch' ? body.waitMs ?? 0 : 0);
    return new Promise<WriteResult<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        link.pending.delete(id);
        reject(write ? new ChicagoError('OUTCOME_UNKNOWN', `${to} did not answer a forwarded write in ${timeoutMs} ms`) : new ChicagoError('TIMEOUT', `read forwarded to ${to}`, timeoutMs));
      }, timeoutMs);
      link.pending.set(id, { resolve: resolve as (r: WriteResult<unknown>) => void, reject, timer, write });
      if (!link.send(packr.pack({ t: 'f', id, p, b: body, w: write } satisfies PeerFrame))) {
        clearTimeout(timer);
        link.pending.delete(id);
        reject(new ChicagoError('OVERLOADED', `link to ${to}`, 'queue full'));
      }
    });
  }

  /** Frames arriving on an outbound link: answers to forwarded requests, and anything else. */
  onFrame(peer: NodeId, data: Buffer, reply?: (frame: PeerFrame) => void): void {
    let f: PeerFrame;
    try {
      f = packr.unpack(data) as PeerFrame;
    } catch (e) {
      this.log.warn({ peer, err: (e as Error).message }, 'undecodable peer frame');
      return;
    }
    this.lastHeard.set(peer, Date.now());
    switch (f.t) {
      case 'hb': if (f.pos) this.reported.set(peer, f.pos); return;
      case 'hello': return;
      case 'fr': {
        const p = this.links.get(peer)?.pending.get(f.id);
        if (!p) return;
        clearTimeout(p.timer);
        this.links.get(peer)!.pending.delete(f.id);
        if (f.ok) p.resolve({ res: f.res, replicas: f.n });
        else {
          const err = new ChicagoError(f.code);
          err.message = f.message;
          p.reject(err);
        }
        return;
      }
      case 'f': {
        if (!reply || !this.handlers) return;
        this.handlers.forwarded(f.p, f.b, f.w).then(
          (r) => reply({ t: 'fr', id: f.id, ok: true, res: r.res, n: r.replicas }),
          (e) => { const err = asChicagoError(e); reply({ t: 'fr', id: f.id, ok: false, code: err.code, message: err.message }); },
        );
      }
    }
  }

  /** The `/v1/peer` endpoint: frames other nodes send us on their outbound links. */
  attach(app: uWS.TemplatedApp): void {
    interface Peer { from?: NodeId; open: boolean }
    app.ws<Peer>('/v1/peer', {
      maxPayloadLength: limits.frameBytesMax,
      maxBackpressure: limits.peerQueueBytesMax,
      idleTimeout: 0,
      // Only another node (a token with cluster:peer) links here: its frames bypass the gateway's checks.
      upgrade: (res, req, context) => {
        const authorization = req.getHeader('authorization');
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        const from = Buffer.from(res.getRemoteAddressAsText()).toString();
        let aborted = false;
        res.onAborted(() => { aborted = true; });
        this.auth.accepts(authorization).then((ok) => {
          if (aborted) return;
          res.cork(() => {
            if (ok) res.upgrade<Peer>({ open: false }, key, protocol, extensions, context);
            else res.writeStatus('401 Unauthorized').end('{"error":{"code":"UNAUTHENTICATED","message":"a peer link needs a token with cluster:peer","retryable":false}}', true);
          });
          if (!ok) this.log.warn({ from }, 'refused a peer link without a cluster:peer token');
        }, () => { if (!aborted) res.cork(() => res.writeStatus('503 Service Unavailable').end('', true)); });
      },
      open: (ws) => { ws.getUserData().open = true; },
      close: (ws) => { ws.getUserData().open = false; },
      message: (ws, message, isBinary) => {
        if (!isBinary) return;
        const data = Buffer.from(new Uint8Array(message)); // uWS reuses the memory: copy
        const user = ws.getUserData();
        if (!user.from) {
          try {
            const hello = packr.unpack(data) as PeerFrame;
            if (hello.t === 'hello' && (hello.v ?? 1) !== PEER_PROTOCOL_VERSION) {
              const reason = `peer protocol version ${String(hello.v ?? 1).slice(0, 16)} is not supported; this node speaks ${PEER_PROTOCOL_VERSION}`;
              this.log.error({ peer: String(hello.from).slice(0, 64), reason }, 'refused a peer link');
              ws.end(PEER_VERSION_REFUSED, reason);
              return;
            }
            if (hello.t === 'hello') {
              user.from = hello.from;
              if (Array.isArray(hello.links) && hello.links.every((u) => typeof u === 'string' && /^wss?:\/\//.test(u)) && typeof hello.key === 'string') {
                this.peerWorkerLinks.set(hello.from, { urls: hello.links, key: hello.key });
                this.handlers?.peerLinks(hello.from, hello.links, hello.key);
              }
            }
          } catch { /* not a peer */ }
          if (!user.from) ws.end(4100, 'expected hello');
          return;
        }
        this.onFrame(user.from, data, (frame) => {
          if (!user.open) return;
          // A backed-up link is cut rather than buffered without bound; the peer reconnects.
          if (ws.send(packr.pack(frame), true) === 2) ws.end(4301, 'peer link backed up');
        });
      },
    });
  }

  beat(): void {
    const frame = packr.pack({ t: 'hb', from: this.self, at: Date.now(), pos: this.positionsOf() } satisfies PeerFrame);
    for (const link of this.links.values()) if (link.connected) link.send(frame);
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }
}
