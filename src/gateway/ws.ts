// The /v1/ws endpoint: decodes frames, calls NodeApi, and pushes tail records under credit.
// uWS rules kept here (PLATFORM.md): every send() result is checked and nothing is dropped
// silently; a closed socket is never touched; handler ArrayBuffers are copied before use; async
// results are sent corked.
import uWS from 'uWebSockets.js';
import type pino from 'pino';
import { asChicagoError, ChicagoError, type ErrorCode } from '../runtime/errors.js';
import { copiedShortLived } from '../runtime/young-gc.js';
import { limits } from '../runtime/limits.js';
import { compactAnswer, type NodeApi, type StoredRecord, type Tail, type TailSink } from '../protocol/api.js';
import type { Metrics } from '../runtime/metrics.js';
import { AuthError, Authenticator, type Principal } from './auth.js';
import { MemoryBudget } from '../runtime/memory-budget.js';
import { mayDescribeTopic, topicWriteNeed } from '../runtime/tokens.js';
import {
  ACCEPT_BATCHES, ACCEPT_RANGES, advertisedLimits, SERVER_FEATURES, closeCodeOf, encodeFrame, parseClientFrame, PROTOCOL_VERSION, SUPPORTED_VERSIONS,
  storedRecordBytes, toRecordTuple, toStartPosition, type ClientFrame, type RequestFrame, type ServerFrame,
} from '../protocol/frames.js';
import { chooseSubprotocol, encodeJsonFrame, JSON_SUBPROTOCOL, parseJsonClientFrame } from './json-frames.js';

/**
 * `auth` defaults to a node without tokens: every caller allowed, no browser origin; `memory` to a
 * budget of its own (memory.maxBytes's default)
 */
export interface WebSocketDeps {
  api: NodeApi; log: pino.Logger; auth?: Authenticator; memory?: MemoryBudget; metrics?: Metrics;
  /** the listener is TLS: a page the node served has an https origin (Authenticator.sameOrigin) */
  secure?: boolean;
}
export interface WebSocketEndpoint {
  /**
   * Before closing: refuse new requests (SHUTTING_DOWN: not run, retryable elsewhere) and wait up
   * to `timeoutMs` for those in flight to be answered, so a stopping node cuts no write off from
   * its answer (which would leave its outcome unknown).
   */
  drain(timeoutMs: number): Promise<void>;
  /** close every connection (default: SHUTTING_DOWN); clients reconnect elsewhere or later */
  closeAll(code?: number, reason?: string): void;
  connections(): number;
}

/** `json`: the connection chose the chicago.json subprotocol at its upgrade */
interface UserData { conn?: Connection; json?: boolean }
type Socket = uWS.WebSocket<UserData>;

interface Subscription {
  readonly id: number;
  /** set once NodeApi.tail resolves; credit granted before that is held */
  tail?: Tail;
  ended: boolean;
  /** credit the client gave that is not yet passed to the node (socket backed up, or tail pending) */
  held: number;
  /** credit the client gave minus bytes pushed: what the node may still send */
  outstanding: number;
  /** credit passed to this subscription's tail and not yet used by pushes (its part of Connection.inNode); below 0 after a push overshot it */
  inNode: number;
  /**
   * What was pushed since this connection's queued sends last went out: the appends that one
   * worker message acknowledges (one sync) join one frame instead of a frame each.
   */
  pending?: PendingPush;
}

/** records or stored batches pushed and not yet framed; `first` (batches): the first offset they hold for the subscriber */
type PendingPush =
  | { kind: 'batches'; first: number; items: Uint8Array[]; sizes: number[] }
  | { kind: 'records'; first: number; items: StoredRecord[]; sizes: number[] };

class Connection {
  closed = false;
  hello = false;
  /** its hello accepted `batches`: subscriptions push stored batches (msgpack connections only) */
  batches = false;
  /** who the hello's token says this is; set at open when the node runs without tokens */
  principal: Principal | undefined;
  /** the hello's token is being checked: other requests wait for its answer */
  authenticating = false;
  /** pushes are throttled (credit held) while the socket's send buffer is above wsPushPauseBytes */
  paused = false;
  /** credit passed to the node's tails and not yet used by pushes: at most wsConnectionCreditBytes, plus each subscription's floor */
  inNode = 0;
  /** the socket's send buffer as last charged to the memory budget */
  charged = 0;
  corked = false;
  /** a drain is waiting to be handled (see the drain handler) */
  drainScheduled = false;
  /** a release() after this turn's pushes is queued (releaseSoon) */
  releaseQueued = false;
  /** sends waiting for the end of this microtask batch (see corked()) */
  queued: Array<() => void> | undefined;
  inFlight = 0;
  inFlightBytes = 0;
  badFramesInARow = 0;
  /** the hello accepted compact produce answers (ACCEPT_RANGES) */
  ranges = false;
  readonly subs = new Map<number, Subscription>();
  /** `json`: text frames of JSON both ways (the chicago.json subprotocol); otherwise binary msgpack */
  constructor(readonly ws: Socket, readonly serial: number, readonly json: boolean) {}
}

// Reserve for the envelope around pushed records and scan items, so a frame stays under the limit.
/** A JSON connection can neither send a `batch` (bin) nor take `batches` pushes: its hello lists only what it can use. */
const JSON_FEATURES: readonly string[] = SERVER_FEATURES.filter((f) => f !== 'batch' && f !== 'batches');
const FRAME_ENVELOPE_BYTES = 64 * 1024;
const PER_ITEM_OVERHEAD_BYTES = 32;
const CLOSE_REASON_BYTES_MAX = 120;
const STARVED_RETRY_MS = 50;

export function attachWebSocket(app: uWS.TemplatedApp, deps: WebSocketDeps): WebSocketEndpoint {
  const { api, log } = deps;
  const auth = deps.auth ?? new Authenticator({ tokens: [], allowedOrigins: [], insecure: false });
  const memory = deps.memory ?? new MemoryBudget(1024 * 1024 * 1024);
  const open = new Set<Connection>();
  /** connections with credit held back because the node's memory budget was full */
  const starved = new Set<Connection>();
  // The budget also frees up without any socket draining (worker queues empty): look again, on a
  // timer that runs only while some connection is starved, so an idle node does not wake for it.
  let starvedTimer: NodeJS.Timeout | undefined;
  function starve(conn: Connection): void {
    starved.add(conn);
    if (starvedTimer) return;
    starvedTimer = setInterval(() => {
      if (!memory.full) for (const c of [...starved]) release(c);
      if (starved.size === 0) { clearInterval(starvedTimer); starvedTimer = undefined; }
    }, STARVED_RETRY_MS);
    starvedTimer.unref();
  }
  let draining = false;
  let serial = 0;

  /**
   * Run `fn` corked. Outside a cork it is queued, in order, and every connection's queue runs in one
   * cork at the end of this batch of microtasks: the replies of one worker message (hundreds when
   * the gateway falls behind) and the pushes beside them leave in one write per socket, not one each.
   */
  function corked(conn: Connection, fn: () => void): void {
    if (conn.closed) return;
    if (conn.corked) return fn();
    if (conn.queued) { conn.queued.push(fn); return; }
    conn.queued = [fn];
    toFlush.push(conn);
    if (toFlush.length === 1) queueMicrotask(flushCorked);
  }

  /** connections with sends queued by corked(), flushed by one microtask */
  let toFlush: Connection[] = [];
  function flushCorked(): void {
    const conns = toFlush;
    toFlush = [];
    for (const conn of conns) flushConn(conn);
  }

  function flushConn(conn: Connection): void {
    const fns = conn.queued;
    conn.queued = undefined;
    if (!fns || conn.closed) return;
    conn.corked = true;
    try {
      conn.ws.cork(() => { for (const fn of fns) if (!conn.closed) fn(); });
    } finally {
      conn.corked = false;
    }
  }

  function send(conn: Connection, frame: ServerFrame): boolean {
    if (conn.closed) return false;
    // the mode is decided once per frame, never per record
    const bytes = conn.json ? encodeJsonFrame(frame) : encodeFrame(frame);
    const buffered = conn.ws.getBufferedAmount();
    // Close before uWS would drop: a dropped push or reply is a silent loss.
    if (buffered + bytes.length > limits.wsBackpressureBytesMax) {
      shut(conn, 'SLOW_CONSUMER', new ChicagoError('SLOW_CONSUMER', buffered + bytes.length, limits.wsBackpressureBytesMax).message);
      return false;
    }
    const status = conn.ws.send(bytes, !conn.json, false);
    if (status === 2) {
      shut(conn, 'SLOW_CONSUMER', `send dropped with ${conn.ws.getBufferedAmount()} bytes buffered`);
      return false;
    }
    if (status === 0 && conn.ws.getBufferedAmount() > limits.wsPushPauseBytes) conn.paused = true;
    if (status === 0) chargeBuffer(conn);
    return true;
  }

  /** What waits in the socket's send buffer counts against the node's memory budget. */
  function chargeBuffer(conn: Connection): void {
    const now = conn.closed ? 0 : conn.ws.getBufferedAmount();
    if (now > conn.charged) memory.charge(now - conn.charged);
    else if (now < conn.charged) memory.give(conn.charged - now);
    conn.charged = now;
  }

  function sendError(conn: Connection, id: number, err: ChicagoError): void {
    send(conn, { op: 'err', id, ...err.toJSON() });
  }

  function shut(conn: Connection, code: ErrorCode, message: string): void {
    if (conn.closed) return;
    flushConn(conn); // what was queued before the close goes first
    if (conn.closed) return;
    log.warn({ conn: conn.serial, code, reason: message }, 'closing websocket');
    const reason = Buffer.from(message).subarray(0, CLOSE_REASON_BYTES_MAX).toString();
    // The close frame goes behind what is still unsent, and uWS holds all of it (a slow consumer's
    // tens of MiB) until the client reads it or its close times out: counted that long.
    const unsent = conn.ws.getBufferedAmount();
    conn.ws.end(closeCodeOf(code), reason); // runs the close handler synchronously
    cleanup(conn);
    if (unsent > 0) {
      memory.charge(unsent);
      setTimeout(() => memory.give(unsent), limits.wsClosedBufferHoldMs).unref();
    }
  }

  function cleanup(conn: Connection): void {
    conn.closed = true;
    open.delete(conn);
    memory.give(conn.charged);
    conn.charged = 0;
    starved.delete(conn);
    for (const sub of conn.subs.values()) endQuietly(conn, sub);
    conn.subs.clear();
  }

  function endQuietly(conn: Connection, sub: Subscription): void {
    sub.ended = true;
    returnCredit(conn, sub);
    try {
      sub.tail?.cancel();
    } catch (err) {
      log.error({ err, sub: sub.id }, 'tail cancel failed');
    }
  }

  function onMessage(conn: Connection, message: ArrayBuffer, isBinary: boolean): void {
    if (isBinary === conn.json) {
      return badFrame(conn, new ChicagoError('BAD_REQUEST', conn.json
        ? `binary frames are not part of a ${JSON_SUBPROTOCOL} connection; send JSON text`
        : `text frames are not part of the protocol; send binary msgpack, or connect with the subprotocol ${JSON_SUBPROTOCOL}`));
    }
    // msgpack: a copy, since uWS neuters `message` when this callback returns and decoded bins
    // point into it; JSON: decoded into strings and new buffers, so no copy is needed.
    const bytes = conn.json ? new Uint8Array(message) : Buffer.from(new Uint8Array(message));
    if (!conn.json) copiedShortLived(bytes.length);
    const parsed = conn.json ? parseJsonClientFrame(bytes) : parseClientFrame(bytes);
    if (!parsed.ok) {
      if (parsed.undecodable) return badFrame(conn, parsed.error);
      conn.badFramesInARow = 0;
      return sendError(conn, parsed.id, parsed.error);
    }
    conn.badFramesInARow = 0;
    dispatch(conn, parsed.frame, bytes.length);
  }

  function badFrame(conn: Connection, err: ChicagoError): void {
    conn.badFramesInARow++;
    sendError(conn, 0, err);
    if (conn.badFramesInARow >= limits.wsBadFramesInARowMax) {
      shut(conn, 'BAD_REQUEST', `${conn.badFramesInARow} undecodable frames in a row`);
    }
  }

  function dispatch(conn: Connection, frame: ClientFrame, frameBytes: number): void {
    if (frame.op === 'credit') {
      // An unknown sub is not an error: it may have ended while this credit was on the wire.
      const sub = conn.subs.get(frame.sub);
      if (sub) grant(conn, sub, frame.bytes);
      return;
    }
    if (frame.op === 'hello') return hello(conn, frame);
    if (!conn.principal) {
      return refuse(conn, frame.id, new AuthError('UNAUTHENTICATED', 'missing', conn.authenticating
        ? 'the hello is still being checked; wait for its answer' : 'send hello with a token first'), frame.op);
    }
    if (!auth.stillValid(conn.principal)) {
      const e = new AuthError('UNAUTHENTICATED', 'revoked', 'the connection\'s token was revoked, removed or expired', { id: conn.principal.id, name: conn.principal.name });
      refuse(conn, frame.id, e, frame.op);
      return shut(conn, e.code, e.message);
    }
    if (draining) return sendError(conn, frame.id, new ChicagoError('SHUTTING_DOWN'));
    if (conn.inFlight >= limits.connectionInFlightMax) {
      return sendError(conn, frame.id, new ChicagoError('OVERLOADED', 'connection', `${conn.inFlight} requests in flight`));
    }
    if (conn.inFlightBytes + frameBytes > limits.connectionInFlightBytesMax) {
      return sendError(conn, frame.id, new ChicagoError('OVERLOADED', 'connection', `${conn.inFlightBytes} bytes in flight`));
    }
    if (!memory.take(frameBytes)) {
      return sendError(conn, frame.id, new ChicagoError('OVERLOADED', 'node memory', `${memory.used} of memory.maxBytes ${memory.maxBytes} buffered`));
    }
    conn.inFlight++;
    conn.inFlightBytes += frameBytes;
    const startedMs = performance.now();
    // One settle handler per request, no finally: each promise and closure here is per request.
    const settle = (code: string) => {
      conn.inFlight--;
      conn.inFlightBytes -= frameBytes;
      memory.give(frameBytes);
      if (!deps.metrics) return;
      deps.metrics.requests.record('ws', frame.op, code, (performance.now() - startedMs) / 1e3);
    };
    let result: Promise<Record<string, unknown> | undefined>;
    try {
      authorize(conn.principal, frame);
      result = execute(conn, frame);
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (body) => {
        settle('ok');
        if (body === undefined) return;
        body.op = 'res';
        body.id = frame.id;
        corked(conn, () => send(conn, body as ServerFrame));
      },
      (err) => {
        const e = asChicagoError(err);
        settle(e.code);
        if (e instanceof AuthError) {
          deps.metrics?.authRefused.inc({ edge: 'ws', code: e.code, reason: e.reason });
          auth.logRefusal(log, 'ws', e, { conn: conn.serial, op: frame.op });
        }
        if (e.code === 'INTERNAL') log.error({ err, op: frame.op }, 'websocket request failed');
        corked(conn, () => sendError(conn, frame.id, e));
      },
    );
  }

  function hello(conn: Connection, frame: Extract<ClientFrame, { op: 'hello' }>): void {
    if (conn.hello || conn.authenticating) return sendError(conn, frame.id, new ChicagoError('BAD_REQUEST', 'hello was already sent on this connection'));
    if (!frame.versions.includes(PROTOCOL_VERSION)) {
      return sendError(conn, frame.id, new ChicagoError('INVALID_ARGUMENT', 'protocol version',
        `client speaks [${frame.versions.join(',')}], server speaks [${SUPPORTED_VERSIONS.join(',')}]`));
    }
    conn.authenticating = true;
    auth.authenticate(frame.token, 'send the token in the hello frame (its token field)').then(
      (who) => {
        conn.authenticating = false;
        if (conn.closed) return;
        conn.principal = who;
        conn.hello = true;
        conn.batches = !conn.json && (frame.accept?.includes(ACCEPT_BATCHES) ?? false);
        conn.ranges = frame.accept?.includes(ACCEPT_RANGES) ?? false;
        corked(conn, () => send(conn, { op: 'res', id: frame.id, version: PROTOCOL_VERSION, server: 'chicago', limits: advertisedLimits(), features: conn.json ? JSON_FEATURES : SERVER_FEATURES }));
      },
      (err) => {
        conn.authenticating = false;
        const e = asChicagoError(err);
        if (!(e instanceof AuthError)) return corked(conn, () => sendError(conn, frame.id, e)); // OVERLOADED: the client may say hello again
        // A wrong token ends the connection: nothing else may be tried on it.
        corked(conn, () => refuse(conn, frame.id, e, 'hello'));
        shut(conn, e.code, e.message);
      },
    );
  }

  /** An error reply for a refused request, counted. */
  function refuse(conn: Connection, id: number, e: AuthError, op?: string): void {
    deps.metrics?.authRefused.inc({ edge: 'ws', code: e.code, reason: e.reason });
    auth.logRefusal(log, 'ws', e, { conn: conn.serial, ...(op ? { op } : {}) });
    sendError(conn, id, e);
  }

  /** Throws FORBIDDEN unless the connection's token has the scope the request needs. */
  function authorize(who: Principal, f: Exclude<RequestFrame, { op: 'hello' }>): void {
    switch (f.op) {
      case 'produce': return auth.authorize(who, ...topicWriteNeed(f.topic));
      case 'kv.put': case 'kv.delete': return auth.authorize(who, 'kv', 'write', f.ks);
      case 'kv.get': case 'kv.scan': return auth.authorize(who, 'kv', 'read', f.ks);
      case 'subscribe': return auth.authorize(who, 'topic', 'read', f.topic);
      case 'unsubscribe': return;
      case 'commit':
        auth.authorize(who, 'group', 'use', f.group);
        return auth.authorize(who, 'topic', 'read', f.topic);
      case 'offsets': case 'heartbeat': case 'leave': case 'members': case 'group.delete': return auth.authorize(who, 'group', 'use', f.group);
      // the list shows only the topics the token may do something with (as GET /v1/topics)
      case 'topics': return;
      case 'topic': return auth.authorizeDescribe(who, f.topic);
      case 'join':
        auth.authorize(who, 'group', 'use', f.group);
        for (const t of f.topics) auth.authorize(who, 'topic', 'read', t);
        return;
    }
  }

  /** The reply body, or undefined for no reply (acks=none produce). */
  async function execute(conn: Connection, f: Exclude<RequestFrame, { op: 'hello' }>): Promise<Record<string, unknown> | undefined> {
    switch (f.op) {
      case 'produce': {
        const opts = { acks: f.acks, partition: f.partition, producerId: f.producerId, sequence: f.sequence, previousSequence: f.previousSequence, ranges: conn.ranges };
        const r = f.checked
          ? await api.produceBatch(f.topic, f.checked, opts)
          : await api.produce(f.topic, f.records!.map(([value, key, headers]) => ({ value, key: key ?? undefined, headers: headers ?? undefined })), opts);
        if (f.acks === 'none') return undefined;
        if (conn.ranges) return compactAnswer(r);
        // Columnar: two int arrays are far smaller than one map per record.
        return {
          partitions: r.records.map((x) => x.partition),
          offsets: r.records.map((x) => x.offset),
          replicas: r.replicas,
          ...(r.duplicate ? { duplicate: true } : {}),
        };
      }
      case 'kv.put': {
        const r = await api.kvPut(f.ks, f.key, f.value, { acks: f.acks, ttlSeconds: f.ttl });
        return { version: r.version, replicas: r.replicas };
      }
      case 'kv.get': {
        const e = await api.kvGet(f.ks, f.key);
        if (!e) return { found: false };
        return { found: true, value: e.value, version: e.version, ...(e.expiresAtMs !== undefined ? { expiresAtMs: e.expiresAtMs } : {}) };
      }
      case 'kv.delete': {
        const r = await api.kvDelete(f.ks, f.key, { acks: f.acks });
        return { version: r.version, replicas: r.replicas, existed: r.existed };
      }
      case 'kv.scan': {
        const r = await api.kvScan(f.ks, { prefix: f.prefix, after: f.after, limit: f.limit });
        // Cut the page where the reply would outgrow a frame; `next` continues from there.
        const items: Array<[Uint8Array, Uint8Array, number]> = [];
        let size = 0;
        for (const e of r.items) {
          size += e.key.length + e.value.length + PER_ITEM_OVERHEAD_BYTES;
          if (size > limits.frameBytesMax - FRAME_ENVELOPE_BYTES && items.length > 0) {
            return { items, next: items[items.length - 1][0] };
          }
          items.push([e.key, e.value, e.version]);
        }
        return r.next ? { items, next: r.next } : { items };
      }
      case 'subscribe':
        return subscribe(conn, f);
      case 'unsubscribe': {
        const sub = conn.subs.get(f.sub);
        if (!sub) throw new ChicagoError('NOT_FOUND', `subscription ${f.sub}`);
        conn.subs.delete(f.sub);
        endQuietly(conn, sub);
        release(conn);
        return {};
      }
      case 'commit':
        await api.commitOffset(f.group, f.topic, f.partition, f.offset, f.member !== undefined && f.generation !== undefined ? { member: f.member, generation: f.generation } : undefined);
        return {};
      case 'offsets':
        return { offsets: await api.groupOffsets(f.group, f.topic) };
      case 'join':
        return { ...await api.groupJoin(f.group, { topics: f.topics, member: f.member, sessionTimeoutMs: f.sessionTimeoutMs }) };
      case 'heartbeat':
        return { ...await api.groupHeartbeat(f.group, f.member, f.generation) };
      case 'leave':
        await api.groupLeave(f.group, f.member);
        return {};
      case 'members':
        return { ...await api.groupMembers(f.group) };
      case 'group.delete':
        return await api.groupDelete(f.group);
      case 'topics': {
        const all = await api.listTopics();
        return { topics: all.filter((t) => mayDescribeTopic(conn.principal!.scopes, t.name)).map(({ partitionsInfo: _, ...t }) => t) };
      }
      case 'topic': {
        const { partitionsInfo, ...info } = await api.describeTopic(f.topic);
        return { ...info, partitionCount: info.partitions, partitions: partitionsInfo ?? [] };
      }
    }
  }

  async function subscribe(conn: Connection, f: Extract<ClientFrame, { op: 'subscribe' }>): Promise<Record<string, unknown>> {
    if (conn.subs.has(f.id)) throw new ChicagoError('BAD_REQUEST', `subscription ${f.id} is already open`);
    if (conn.subs.size >= limits.subscriptionsPerConnectionMax) {
      throw new ChicagoError('TOO_MANY_SUBSCRIPTIONS', conn.subs.size, limits.subscriptionsPerConnectionMax);
    }
    // All the client's credit is held here at first and passed to the node as the socket drains,
    // a connection's window at a time (wsConnectionCreditBytes): a socket that is not read never
    // makes the node read more than that for it, however many subscriptions it opens.
    const sub: Subscription = { id: f.id, ended: false, held: f.credit, outstanding: f.credit, inNode: 0 };
    conn.subs.set(f.id, sub);
    const initial = 0;
    const sink: TailSink = {
      push: (records) => push(conn, sub, records),
      ...(conn.batches ? { pushBatches: (first: number, batches: Uint8Array[], bytes: number) => pushBatches(conn, sub, first, batches, bytes) } : {}),
      close: (err) => {
        if (sub.ended) return;
        sub.ended = true;
        returnCredit(conn, sub);
        if (conn.subs.get(sub.id) === sub) conn.subs.delete(sub.id);
        const e = err ? asChicagoError(err).toJSON() : {};
        corked(conn, () => send(conn, { op: 'end', sub: sub.id, ...e }));
        queueMicrotask(() => release(conn));
      },
    };
    let tail: Tail;
    try {
      tail = await api.tail(f.topic, f.partition, toStartPosition(f.from), initial, sink);
    } catch (err) {
      if (conn.subs.get(sub.id) === sub) conn.subs.delete(sub.id);
      sub.ended = true;
      throw err;
    }
    sub.tail = tail;
    // Unsubscribed, ended or disconnected while the node was setting up: release it now.
    if (sub.ended || conn.closed) endQuietly(conn, sub);
    else release(conn);
    return {};
  }

  /**
   * Passes held credit to the node's tails, round robin, while the socket is not backed up, the
   * node's memory budget has room and the connection's window is not used up. Each subscription
   * gets at most an equal share of the window, and always up to wsSubscriptionCreditFloorBytes:
   * credit held by tails that have nothing to read (idle partitions) never starves the others.
   */
  function release(conn: Connection): void {
    if (conn.closed || conn.paused) return;
    if (memory.full) { starve(conn); return; }
    starved.delete(conn);
    const floor = limits.wsSubscriptionCreditFloorBytes;
    const share = Math.max(floor, Math.floor(limits.wsConnectionCreditBytes / Math.max(1, conn.subs.size)));
    for (const sub of conn.subs.values()) {
      if (!sub.tail || sub.ended || sub.held <= 0) continue;
      const room = limits.wsConnectionCreditBytes - conn.inNode;
      const g = Math.min(sub.held, share - sub.inNode, Math.max(room, floor - sub.inNode));
      if (g <= 0) continue;
      sub.held -= g;
      sub.inNode += g;
      conn.inNode += g;
      sub.tail.grant(g);
    }
  }

  /** A subscription that ends gives back what it had in the node: the window is the connection's. */
  function returnCredit(conn: Connection, sub: Subscription): void {
    conn.inNode -= sub.inNode;
    sub.inNode = 0;
  }

  function grant(conn: Connection, sub: Subscription, bytes: number): void {
    // Outstanding credit is capped: a client cannot make the node owe it more than this.
    const g = Math.min(bytes, limits.subscriberCreditBytesMax - sub.outstanding);
    if (g <= 0) return;
    sub.outstanding += g;
    sub.held += g;
    release(conn);
  }

  function push(conn: Connection, sub: Subscription, records: StoredRecord[]): void {
    // After cancel the node may still deliver one push it had in flight; the client resumes by offset.
    if (sub.ended || conn.closed || records.length === 0) return;
    const sizes = records.map((r) => storedRecordBytes(r));
    let total = 0;
    for (const s of sizes) total += s;
    pushItems(conn, sub, { kind: 'records', first: 0, items: records, sizes }, total);
  }

  /** As push, for stored batches: they use their length of the credit, and go as they are. */
  function pushBatches(conn: Connection, sub: Subscription, first: number, batches: Uint8Array[], total: number): void {
    if (sub.ended || conn.closed || batches.length === 0) return;
    pushItems(conn, sub, { kind: 'batches', first, items: batches, sizes: batches.map((b) => b.length) }, total);
  }

  /**
   * Charge a push to the subscription and queue it. Pushes that come before the connection's
   * queued sends go out join the first one's frame (they follow it in offset order: the tail pushes
   * contiguously), so the appends of one sync are one frame; it is sent in frames of at most
   * frameBytesMax.
   */
  function pushItems(conn: Connection, sub: Subscription, push: PendingPush, total: number): void {
    charge(conn, sub, push.sizes, total);
    const p = sub.pending;
    if (p && p.kind === push.kind) {
      for (let i = 0; i < push.items.length; i++) { (p.items as unknown[]).push(push.items[i]); p.sizes.push(push.sizes[i]); }
    } else {
      // a push of the other kind starts a frame of its own, after the one queued before it
      const q: PendingPush = { ...push, items: push.items.slice() } as PendingPush;
      sub.pending = q;
      corked(conn, () => {
        if (sub.pending === q) sub.pending = undefined;
        sendInFrames(q.sizes, (from, to, withOverhead) => {
          const bytes = withOverhead - PER_ITEM_OVERHEAD_BYTES * (to - from);
          return q.kind === 'batches'
            ? send(conn, { op: 'batches', sub: sub.id, bytes, first: q.first, batches: q.items.slice(from, to) })
            : send(conn, { op: 'records', sub: sub.id, bytes, records: q.items.slice(from, to).map(toRecordTuple) });
        });
      });
      // corked() ran it at once (inside a cork) or dropped it (connection closed): nothing to join
      if (!conn.queued) sub.pending = undefined;
    }
    releaseSoon(conn);
  }

  /** The window has room again (a socket that keeps up never signals drain): once after this turn's pushes, not re-entrantly. */
  function releaseSoon(conn: Connection): void {
    if (conn.releaseQueued) return;
    conn.releaseQueued = true;
    queueMicrotask(() => { conn.releaseQueued = false; release(conn); });
  }

  /** A push of items of these sizes uses the subscription's credit. */
  function charge(conn: Connection, sub: Subscription, sizes: number[], total: number): void {
    let largest = 0;
    for (const s of sizes) largest = Math.max(largest, s);
    // A push may overshoot the credit by one item (so a record or batch larger than any grant
    // still passes); beyond that the node broke the flow-control contract.
    if (total - largest > sub.outstanding) {
      log.error({ sub: sub.id, bytes: total, credit: sub.outstanding }, 'node pushed beyond subscriber credit');
    }
    sub.outstanding = Math.max(0, sub.outstanding - total);
    // exactly as the tail charges its credit: a push that overshot (one large record) leaves the
    // subscription in debt, paid from its next grants, so what the gateway counts is what the tail has
    sub.inNode -= total;
    conn.inNode -= total;
  }

  /**
   * Items of these sizes in frames of at most frameBytesMax: `frame(from, to, bytes)` sends items
   * [from, to), whose sizes plus PER_ITEM_OVERHEAD_BYTES each come to `bytes`; false: the
   * connection is gone.
   */
  function sendInFrames(sizes: number[], frame: (from: number, to: number, bytes: number) => boolean): void {
    let start = 0;
    let bytes = 0;
    for (let i = 0; i < sizes.length; i++) {
      if (i > start && bytes + sizes[i] + PER_ITEM_OVERHEAD_BYTES > limits.frameBytesMax - FRAME_ENVELOPE_BYTES) {
        if (!frame(start, i, bytes)) return;
        start = i;
        bytes = 0;
      }
      bytes += sizes[i] + PER_ITEM_OVERHEAD_BYTES;
    }
    frame(start, sizes.length, bytes);
  }

  function onDrain(conn: Connection): void {
    if (conn.closed) return;
    chargeBuffer(conn);
    // connections waiting for the node's memory budget go first, once it has room
    if (!memory.full) for (const c of [...starved]) release(c);
    if (!conn.paused) return release(conn);
    // Hysteresis: resume at half the pause mark so pushes do not flap on every drain.
    if (conn.ws.getBufferedAmount() > limits.wsPushPauseBytes / 2) return;
    conn.paused = false;
    release(conn);
  }

  app.ws<UserData>('/v1/ws', {
    maxPayloadLength: limits.frameBytesMax,
    // We close at wsBackpressureBytesMax ourselves; the slack keeps uWS from dropping first.
    maxBackpressure: limits.wsBackpressureBytesMax + limits.frameBytesMax,
    closeOnBackpressureLimit: 0,
    idleTimeout: 120,
    sendPingsAutomatically: true,
    compression: uWS.DISABLED,
    upgrade: (res, req, context) => {
      // A browser page from an origin not on the allowed list never gets a socket (non-browser
      // clients send no Origin).
      const origin = req.getHeader('origin');
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      if (!auth.originAllowed(origin) && !auth.sameOrigin(origin, req.getHeader('host'), deps.secure === true)) {
        const refused = new AuthError('FORBIDDEN', 'origin', `origin ${origin.slice(0, 200)} is not allowed`);
        deps.metrics?.authRefused.inc({ edge: 'ws', code: 'FORBIDDEN', reason: 'origin' });
        auth.logRefusal(log, 'ws', refused, { origin: origin.slice(0, 200) });
        const body = JSON.stringify({ error: refused.toJSON() });
        res.writeStatus('403 Forbidden').writeHeader('content-type', 'application/json').end(body, true);
        return;
      }
      // msgpack unless the client offers chicago.json; only a subprotocol it offered is echoed
      const chosen = chooseSubprotocol(protocol);
      res.upgrade<UserData>({ json: chosen === JSON_SUBPROTOCOL }, key, chosen, extensions, context);
    },
    open: (ws) => {
      const conn = new Connection(ws, ++serial, ws.getUserData().json === true);
      if (auth.open) conn.principal = auth.authenticateOpen();
      ws.getUserData().conn = conn;
      open.add(conn);
      deps.metrics?.wsConnections.inc();
      log.debug({ conn: conn.serial }, 'websocket open');
    },
    message: (ws, message, isBinary) => {
      const conn = ws.getUserData().conn;
      if (!conn || conn.closed) return;
      conn.corked = true; // uWS corks the socket while a message handler runs
      try {
        onMessage(conn, message, isBinary);
      } finally {
        conn.corked = false;
      }
    },
    drain: (ws) => {
      const conn = ws.getUserData().conn;
      if (!conn || conn.drainScheduled) return;
      // Handled after uWS's writable callback returns, never inside it: a send made there (or in a
      // microtask run before it returns) can leave bytes in uWS's buffer with the socket no longer
      // polled for writable, so they were never sent and no drain came again (a tail stalled with
      // its last pushes buffered in the node and both kernel queues empty).
      conn.drainScheduled = true;
      setImmediate(() => {
        conn.drainScheduled = false;
        onDrain(conn);
      });
    },
    close: (ws, code) => {
      const conn = ws.getUserData().conn;
      if (!conn) return;
      log.debug({ conn: conn.serial, code }, 'websocket closed');
      cleanup(conn);
      deps.metrics?.wsConnections.dec();
    },
  });

  return {
    async drain(timeoutMs) {
      draining = true;
      const deadline = Date.now() + timeoutMs;
      const inFlight = () => [...open].reduce((n, c) => n + c.inFlight, 0);
      while (inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    },
    closeAll(code = closeCodeOf('SHUTTING_DOWN'), reason = 'node is shutting down') {
      clearInterval(starvedTimer);
      for (const conn of [...open]) {
        flushConn(conn);
        if (conn.closed) continue;
        conn.ws.end(code, reason);
        cleanup(conn);
      }
    },
    connections: () => open.size,
  };
}
