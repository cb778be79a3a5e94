// Direct links between the partition workers of different nodes: the one way replication traffic
// travels. A worker sends its replicas' traffic straight to the worker that hosts the same
// partition on the other node. A link opens on first use; frames sent while it opens wait for it
// (bounded), and while it is down they are dropped and counted, and leaders resend (the protocol
// tolerates loss). Each
// worker listens on its node's own address (an ephemeral port its node announces in its peer-link
// hello) and binds its outgoing sockets to that address too, so a link cut between two nodes'
// addresses cuts these links as well.
import { timingSafeEqual } from 'node:crypto';
import https from 'node:https';
import { WebSocket, WebSocketServer } from 'ws';
import { limits } from '../runtime/limits.js';
import type { NodeId } from '../runtime/ids.js';

const RECONNECT_MIN_MS = 50;
const RECONNECT_MAX_MS = 1000;
const HANDSHAKE_TIMEOUT_MS = 2000;

/**
 * A socket from this node to another (node links and worker links alike): bound to this node's
 * own address, so that a cut between two nodes' addresses cuts every link between them.
 */
export function dialPeer(url: string, localAddress: string, bearer?: string, tls?: LinkTls): WebSocket {
  return new WebSocket(url, {
    localAddress, perMessageDeflate: false, maxPayload: limits.frameBytesMax, handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    // Masking guards browsers' traffic through caching proxies; between nodes it only costs a copy
    // of every frame. A zero mask is one the protocol allows, and ws then sends the bytes as they are.
    generateMask: zeroMask,
    ...(bearer ? { headers: { authorization: `Bearer ${bearer}` } } : {}),
    // a wss:// peer must show a certificate the cluster CA signed; ours goes along for mutual TLS
    ...(tls ? { cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca } : {}) } : {}),
  });
}

function zeroMask(mask: Buffer): void { mask.fill(0); }

/** PEM texts: this node's certificate and key, and the cluster CA that signs every node's */
export interface LinkTls { cert: string; key: string; ca?: string }

/** Constant-time check of an `Authorization: Bearer <key>` header against the expected key. */
export function bearerMatches(header: string | undefined, key: string): boolean {
  const got = Buffer.from(header ?? '');
  const want = Buffer.from(`Bearer ${key}`);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Delays between attempts to reconnect a link: doubling from 50 ms to 1 s, from the start once it opens. */
export class Backoff {
  private ms = RECONNECT_MIN_MS;
  reset(): void { this.ms = RECONNECT_MIN_MS; }
  next(): number {
    const ms = this.ms;
    this.ms = Math.min(this.ms * 2, RECONNECT_MAX_MS);
    return ms;
  }
}

/** One outgoing link to one worker of a peer node; dials when it is made (on first use). */
class Link {
  private socket: WebSocket | undefined;
  private retryAtMs = 0;
  private readonly backoff = new Backoff();
  private closed = false;
  /**
   * Frames sent while the socket is still connecting, sent once it opens. Bounded by
   * peerQueueBytesMax (full policy: the frame is dropped, as on a backed-up link; leaders resend);
   * discarded if the dial fails. Without it the first appends after a start or a reconnect are lost
   * and a follower can fall out of the in-sync set before the leader's resend reaches it.
   */
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;

  constructor(readonly url: string, private readonly localAddress: string, private readonly key: string, private readonly onDiscard: (frames: number) => void, private readonly tls?: LinkTls) {
    this.connect();
  }

  /**
   * 'sent' (or queued behind a dial in progress); 'dropped' when the link is backed up (full
   * policy: past peerQueueBytesMax a frame is dropped, as on the node links; leaders probe and
   * resend); 'down' while it is neither open nor opening.
   */
  send(frame: Uint8Array): 'sent' | 'dropped' | 'down' {
    const ws = this.socket;
    if (ws?.readyState === WebSocket.OPEN) {
      if (ws.bufferedAmount > limits.peerQueueBytesMax) return 'dropped';
      this.cork(ws);
      ws.send(frame);
      return 'sent';
    }
    if (ws?.readyState === WebSocket.CONNECTING) {
      if (this.pendingBytes + frame.length > limits.peerQueueBytesMax) return 'dropped';
      this.pending.push(frame);
      this.pendingBytes += frame.length;
      return 'sent';
    }
    if (!ws && Date.now() >= this.retryAtMs) this.connect();
    return 'down';
  }

  /**
   * The frames one turn of the worker sends on this link leave in one socket write: the socket is
   * corked at the first and uncorked once the turn's synchronous sends are done.
   */
  private cork(ws: WebSocket): void {
    if (this.corked) return;
    const socket = (ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    if (!socket) return;
    this.corked = true;
    socket.cork();
    queueMicrotask(() => {
      this.corked = false;
      socket.uncork();
    });
  }

  private corked = false;

  private connect(): void {
    if (this.closed) return;
    const ws = dialPeer(this.url, this.localAddress, this.key, this.url.startsWith('wss:') ? this.tls : undefined);
    this.socket = ws;
    ws.on('open', () => {
      this.backoff.reset();
      const frames = this.pending;
      this.pending = [];
      this.pendingBytes = 0;
      for (const f of frames) ws.send(f);
    });
    ws.on('error', () => { /* 'close' follows */ });
    ws.on('close', () => {
      if (this.socket !== ws) return;
      this.socket = undefined;
      if (this.pending.length > 0) this.onDiscard(this.pending.length);
      this.pending = [];
      this.pendingBytes = 0;
      this.retryAtMs = Date.now() + this.backoff.next();
    });
  }

  close(): void {
    this.closed = true;
    this.pending = [];
    this.socket?.terminate();
  }
}

export class WorkerLinks {
  /** per peer node: its workers' link URLs, in worker order, and the links to them opened so far */
  private readonly peers = new Map<NodeId, { urls: string[]; key: string; links: Array<Link | undefined> }>();
  /** frames dropped because a direct link was backed up, or queued behind a dial that failed */
  dropped = 0;

  private constructor(private readonly server: WebSocketServer, private readonly host: string, private readonly tls?: LinkTls, private readonly https?: https.Server) {}

  /**
   * Listen on the node's address; every frame received goes to `onFrame`, listener errors to
   * `onError`. Only a peer presenting `key` (this node's link key, announced to authenticated peers
   * in its hello) gets a socket.
   */
  static async listen(host: string, key: string, onFrame: (frame: Buffer) => void, onError: (err: Error) => void, tls?: LinkTls): Promise<WorkerLinks> {
    const verifyClient = (info: { req: { headers: Record<string, string | string[] | undefined> } }) => bearerMatches(info.req.headers.authorization as string | undefined, key);
    let server: WebSocketServer;
    let secure: https.Server | undefined;
    if (tls) {
      // mutual TLS: with a cluster CA, only a peer with a certificate it signed completes the handshake
      secure = https.createServer({ cert: tls.cert, key: tls.key, ...(tls.ca ? { ca: tls.ca, requestCert: true, rejectUnauthorized: true } : {}) });
      server = new WebSocketServer({ server: secure, perMessageDeflate: false, maxPayload: limits.frameBytesMax, verifyClient });
      const s = secure;
      await new Promise<void>((resolve, reject) => { s.once('listening', resolve); s.once('error', reject); s.listen(0, host); });
      s.on('error', onError);
      s.on('tlsClientError', () => { /* a peer without a valid certificate: refused, nothing to do */ });
    } else {
      server = new WebSocketServer({ host, port: 0, perMessageDeflate: false, maxPayload: limits.frameBytesMax, verifyClient });
      await new Promise<void>((resolve, reject) => { server.once('listening', resolve); server.once('error', reject); });
    }
    server.on('error', onError); // e.g. accept failing (EMFILE): peers retry, leaders resend meanwhile
    server.on('connection', (ws) => {
      ws.on('message', (data: Buffer, isBinary: boolean) => { if (isBinary) onFrame(data); });
      ws.on('error', () => ws.terminate());
    });
    return new WorkerLinks(server, host, tls, secure);
  }

  get url(): string {
    const { port } = (this.https ?? this.server).address() as { port: number };
    return `${this.https ? 'wss' : 'ws'}://${this.host.includes(':') ? `[${this.host}]` : this.host}:${port}`;
  }

  /** A peer node's worker links and link key (from its hello); none: it left, or restarted without them. */
  setPeer(node: NodeId, urls: string[], key: string): void {
    const known = this.peers.get(node);
    if (known && known.urls.join() === urls.join() && known.key === key) return;
    for (const l of known?.links ?? []) l?.close();
    if (urls.length === 0) this.peers.delete(node);
    else this.peers.set(node, { urls, key, links: urls.map(() => undefined) });
  }

  /**
   * Send a replication frame for partition `p` to the worker of `to` that hosts it (nodes place
   * partition p on worker p mod their worker count). True when a link took it (sent, or queued while
   * the link opens); false when no direct link is up: the caller counts it dropped.
   */
  send(to: NodeId, p: number, frame: Uint8Array): boolean {
    const peer = this.peers.get(to);
    if (!peer) return false;
    const i = p % peer.urls.length;
    const link = peer.links[i] ??= new Link(peer.urls[i], this.host, peer.key, (n) => { this.dropped += n; }, this.tls);
    const r = link.send(frame);
    if (r === 'dropped') this.dropped++;
    return r !== 'down';
  }

  close(): void {
    for (const { links } of this.peers.values()) for (const l of links) l?.close();
    this.peers.clear();
    for (const ws of this.server.clients) ws.terminate();
    this.server.close();
    this.https?.close();
  }
}
