// HTTP routes of CONTRACT.md on uWebSockets.js. uWS rules kept here (PLATFORM.md): request data is
// read before the first await; every async answer checks the request was not aborted and is
// written corked; bodies are size-checked before they are buffered.
//
// Exact HTTP on uWS (docs/security.md): uWS answers pipelined requests only while each is answered
// before the next is parsed; a request that arrives while an earlier one on its connection is still
// unanswered makes uWS close the connection (aborting the earlier one). So no request starts in the
// handler itself: it starts a turn of the event loop later, and only if its connection is still
// open then, so a pipelined batch that reaches the node together is refused whole, before anything
// runs. Ambiguous framing (two Content-Lengths, Content-Length with Transfer-Encoding, a coding
// other than chunked) closes the connection before anything runs: uWS would parse the bytes after
// the first length as another request.
import zlib from 'node:zlib';
import type uWS from 'uWebSockets.js';
import { asChicagoError, ChicagoError } from '../runtime/errors.js';
import { copiedShortLived } from '../runtime/young-gc.js';
import { limits } from '../runtime/limits.js';
import { checkInt, checkOffset, decimalParam } from '../runtime/validate.js';
import { mayDescribeTopic, type Resource, topicWriteNeed } from '../runtime/tokens.js';
import { AuthError, type Authenticator, type Principal } from './auth.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import { type Acks, compactAnswer, PRODUCE_RANGES_TYPE, type ProduceOptions, type RetentionChange, type StartPosition, type StoredRecord } from '../protocol/api.js';
import { BATCH_CONTENT_TYPE, checkBatch } from '../protocol/batch.js';
import type { GatewayNode } from './admin-api.js';
import { base64Field, bytesJson, parseJson } from './bodies.js';
import type { ParsePool } from './parse-pool.js';
import { PipelinedProduces, type Turn } from './pipelined.js';

interface Request {
  method: string;
  segments: string[];
  /** the decoded path after /v1/kv/{keyspace}/, exactly as sent (empty segments and all) */
  rest: string;
  query: URLSearchParams;
  body: Buffer;
  contentType: string;
  /** the Accept header, as sent (the compact produce answer is asked for with PRODUCE_RANGES_TYPE) */
  accept: string;
  /** it carried Origin or Sec-Fetch-Site: a browser sent it */
  fromBrowser: boolean;
  who: Principal;
  /** an idempotent produce's place among its producer's pipelined batches, taken when its headers came */
  turn?: Turn;
}

interface Reply {
  status: number;
  body: string | Uint8Array;
  contentType?: string;
  headers?: Record<string, string>;
  /** sent even past memory.maxBytes (counted): what an operator reads to see an overload */
  always?: boolean;
}

type Handler = (req: Request) => Promise<Reply> | Reply;
/** what a request needs: a scope (resource, action, name), or nothing ('public') */
type Need = 'public' | ((req: Request) => [Resource, string, string?] | Array<[Resource, string, string?]> | 'authenticated');

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 201: '201 Created', 202: '202 Accepted', 204: '204 No Content', 400: '400 Bad Request',
  401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found', 405: '405 Method Not Allowed',
  409: '409 Conflict', 413: '413 Payload Too Large', 415: '415 Unsupported Media Type',
  416: '416 Range Not Satisfiable', 429: '429 Too Many Requests', 431: '431 Request Header Fields Too Large',
  500: '500 Internal Server Error', 503: '503 Service Unavailable', 504: '504 Gateway Timeout',
  507: '507 Insufficient Storage',
};

const json = (value: unknown, status = 200): Reply => ({ status, body: JSON.stringify(value), contentType: 'application/json' });
const noContent = (): Reply => ({ status: 204, body: '' });

/**
 * Ends a HEAD answer: the Content-Length GET would send and no body (RFC 9110 9.3.2). The length is
 * written as a header: uWS's endWithoutBody(length) leaves a keep-alive connection waiting for it.
 */
export function endHead(res: uWS.HttpResponse, body: string | Uint8Array): void {
  res.writeHeader('content-length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength)).endWithoutBody();
}

/**
 * Ends `res` with `body` as its socket takes it; `sent` runs once the last byte is with the kernel
 * (an abort instead runs the request's onAborted). uWS's offsets count body bytes.
 */
export function sendLarge(res: uWS.HttpResponse, body: Uint8Array, sent: () => void): void {
  const total = body.byteLength;
  const start = res.getWriteOffset();
  const [, done] = res.tryEnd(body, total);
  if (done) { sent(); return; }
  res.onWritable((offset) => {
    const [ok, finished] = res.tryEnd(body.subarray(offset - start), total);
    if (finished) sent();
    return ok;
  });
}

function errorReply(err: ChicagoError): Reply {
  return json({ error: err.toJSON() }, err.status);
}

const CORS_METHODS = 'GET, PUT, POST, PATCH, DELETE';
/** response headers a browser page may read */
const EXPOSED_HEADERS = 'x-chicago-version, x-chicago-first-offset, x-chicago-next-offset, x-chicago-start-offset, x-chicago-end-offset';
const CORS_HEADERS = 'authorization, content-type, content-encoding';
const CORS_MAX_AGE_S = '600';
/** a request target is ASCII without spaces or controls (RFC 9112); anything else is refused, not repaired */
const TARGET_CHARS = /^[\x21-\x7e]*$/;
const BAD_PERCENT = /%(?![0-9A-Fa-f]{2})/;

export function attachHttp(app: uWS.TemplatedApp, node: GatewayNode, parsePool: ParsePool, log: Logger, metrics: Metrics, auth: Authenticator): void {
  const pipelined = new PipelinedProduces();
  const routes = buildRoutes(node, parsePool, auth);
  /** bytes `always` answers hold past the memory cap, at most limits.httpAlwaysAnswerBytesMax */
  let alwaysHeld = 0;

  app.any('/*', (res, req) => {
    const method = req.getMethod().toUpperCase();
    const head = method === 'HEAD';
    const url = req.getUrl();
    const rawQuery = req.getQuery() ?? '';
    const contentType = req.getHeader('content-type');
    const accept = req.getHeader('accept');
    const origin = req.getHeader('origin');
    const authorization = req.getHeader('authorization');
    const fromBrowser = origin !== '' || req.getHeader('sec-fetch-site') !== '';
    const contentEncoding = req.getHeader('content-encoding').trim().toLowerCase();
    let lengths = 0;
    let codings = '';
    req.forEach((k, v) => {
      if (k === 'content-length') lengths += /^[0-9]{1,15}$/.test(v) ? 1 : 2;
      else if (k === 'transfer-encoding') codings += codings ? `,${v}` : v;
    });
    let aborted = false;
    /** body bytes this request holds of the node's memory budget, given back when it ends */
    let held = 0;
    const releaseBody = () => { if (held > 0) { node.memory.give(held); held = 0; } };
    /** set once the route is known: a pipelined produce's place, given up however the request ends */
    let turn: Turn | undefined;
    /** the handler is on its way: it gives the turn up itself, after it submitted (an abort now must not let the next batch overtake) */
    let submitting = false;
    /** bytes of a large answer not yet taken by the socket, held of the node's memory budget */
    let answerHeld = 0;
    /** of answerHeld, what an `always` answer holds past the cap (alwaysHeld) */
    let alwaysPart = 0;
    const releaseAnswer = () => {
      if (answerHeld > 0) { node.memory.give(answerHeld); answerHeld = 0; }
      if (alwaysPart > 0) { alwaysHeld -= alwaysPart; alwaysPart = 0; }
    };
    res.onAborted(() => { aborted = true; releaseBody(); releaseAnswer(); if (!submitting) turn?.done(); });
    if (lengths > 1 || (lengths > 0 && codings !== '') || (codings !== '' && codings.trim().toLowerCase() !== 'chunked')) {
      metrics.httpRefused.inc({ reason: 'framing' });
      res.close();
      return;
    }
    const declared = req.getHeader('content-length');
    const started = process.hrtime.bigint();
    const cors = auth.corsOrigin(origin);

    let routeName = 'unmatched';
    const respond = (given: Reply) => {
      releaseBody();
      turn?.done();
      if (aborted) return;
      aborted = true; // answer once
      let reply = given;
      // A large answer goes out as the socket takes it (tryEnd), from its own bytes, held of the
      // memory budget until sent: res.end would copy what the socket does not take into uWS, where
      // clients that ask and never read could pile up any amount. Past the budget a read is
      // OVERLOADED (asked again, it reads again); a write's answer is sent and counted, as the
      // write is done and OVERLOADED would tell its client to send it again.
      let large: Uint8Array | undefined;
      if (!head && (typeof reply.body === 'string' ? reply.body.length * 3 >= limits.httpAnswerCountedBytesMin : reply.body.byteLength >= limits.httpAnswerCountedBytesMin)) {
        const bytes = typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
        const n = bytes.byteLength;
        if (n < limits.httpAnswerCountedBytesMin) reply = { ...reply, body: bytes };
        else if (node.memory.take(n)) { large = bytes; answerHeld = n; }
        else if (method !== 'GET' || (reply.always && alwaysHeld + n <= limits.httpAlwaysAnswerBytesMax)) {
          node.memory.charge(n);
          large = bytes;
          answerHeld = n;
          if (method === 'GET') { alwaysHeld += n; alwaysPart = n; }
        } else reply = errorReply(new ChicagoError('OVERLOADED', 'node memory', `${node.memory.used} of memory.maxBytes ${node.memory.maxBytes} buffered`));
      }
      res.cork(() => {
        res.writeStatus(STATUS_TEXT[reply.status] ?? `${reply.status} Status`);
        if (reply.contentType) res.writeHeader('content-type', reply.contentType);
        for (const [k, v] of Object.entries(reply.headers ?? {})) res.writeHeader(k, v);
        if (cors) res.writeHeader('access-control-allow-origin', cors).writeHeader('vary', 'Origin').writeHeader('access-control-expose-headers', EXPOSED_HEADERS);
        if (head) endHead(res, reply.body);
        else if (large) sendLarge(res, large, releaseAnswer);
        else res.end(reply.body);
      });
      const code = reply.status >= 400 && typeof reply.body === 'string' && reply.body.startsWith('{"error"')
        ? (JSON.parse(reply.body) as { error: { code: string } }).error.code : String(reply.status);
      metrics.requests.record('http', routeName, code, Number(process.hrtime.bigint() - started) / 1e9);
    };
    const refuse = (err: ChicagoError) => {
      if (err instanceof AuthError) {
        metrics.authRefused.inc({ edge: 'http', code: err.code, reason: err.reason });
        auth.logRefusal(log, 'http', err, err.reason === 'origin' ? { route: routeName, origin: origin.slice(0, 200) } : { route: routeName });
      }
      respond(errorReply(err));
    };

    // A browser page from an origin not on the list is refused before anything runs (its "simple"
    // cross-site requests need no preflight, so CORS headers alone would not stop them).
    if (!auth.originAllowed(origin)) {
      refuse(new AuthError('FORBIDDEN', 'origin', `origin ${origin.slice(0, 200)} is not allowed`));
      return;
    }
    if (method === 'OPTIONS' && cors) {
      respond({ status: 204, body: '', headers: { 'access-control-allow-methods': CORS_METHODS, 'access-control-allow-headers': CORS_HEADERS, 'access-control-max-age': CORS_MAX_AGE_S } });
      return;
    }
    if (!TARGET_CHARS.test(url) || !TARGET_CHARS.test(rawQuery) || BAD_PERCENT.test(url) || BAD_PERCENT.test(rawQuery)) {
      respond(errorReply(new ChicagoError('BAD_REQUEST', 'the request target must be ASCII with valid percent-encoding')));
      return;
    }
    try {
      // URLSearchParams would put U+FFFD for bytes that are not UTF-8, silently asking for another key or prefix
      decodeURIComponent(rawQuery.replace(/\+/g, ' '));
    } catch {
      respond(errorReply(new ChicagoError('INVALID_UTF8', 'the decoded query')));
      return;
    }
    const query = new URLSearchParams(rawQuery);
    let segments: string[];
    let rest: string;
    try {
      // no empty segment is dropped: a/b and a//b are different KV keys
      const raw = url.split('/');
      segments = raw.slice(1).map((s) => decodeURIComponent(s));
      rest = raw.length > 4 ? decodeURIComponent(raw.slice(4).join('/')) : '';
    } catch {
      // the percent syntax passed the check above: what failed is the UTF-8 of the decoded bytes
      respond(errorReply(new ChicagoError('INVALID_UTF8', 'the decoded path')));
      return;
    }
    if (segments.some((s) => !s.isWellFormed())) {
      respond(errorReply(new ChicagoError('INVALID_UTF8', 'path')));
      return;
    }
    const match = matchRoute(routes, method, segments);
    if ('error' in match) {
      const reply = errorReply(match.error);
      if (match.allow) reply.headers = { allow: match.allow };
      respond(reply);
      return;
    }
    // a HEAD runs its GET route but is counted as itself
    routeName = method === 'HEAD' ? `HEAD${match.name.slice('GET'.length)}` : match.name;
    try {
      checkParams(query, match.params, match.name);
    } catch (e) {
      respond(errorReply(asChicagoError(e)));
      return;
    }
    // A pipelined batch takes its place when its headers come, not once its body is in: over several
    // connections a later batch's body may be read first, and would reach the partition before the one
    // it names as its predecessor (refused as a gap, then sent again).
    const producerId = match.name === `POST ${PRODUCE_PATH}` ? query.get('producerId') : null;
    if (producerId !== null) turn = pipelined.arrive(`${producerId}\0${segments[2]}\0${query.get('partition')}`, query.get('sequence'));

    const run = (body: Buffer) => {
      // A turn later: a pipelined request that uWS refused meanwhile has aborted this one (above).
      setImmediate(() => {
        if (aborted) { metrics.httpRefused.inc({ reason: 'closed' }); return; }
        submitting = true;
        const partial = { method, segments, rest, query, body, contentType, accept, fromBrowser, ...(turn ? { turn } : {}) };
        const caller = match.need === 'public'
          ? Promise.resolve(auth.open ? auth.authenticateOpen() : PUBLIC)
          : auth.authenticate(authorization);
        caller
          .then((who) => {
            const request: Request = { ...partial, who };
            checkNeed(auth, match.need, request);
            return match.handler(request);
          })
          .then(respond, (e) => {
            const err = asChicagoError(e);
            if (err.code === 'INTERNAL') log.error({ err: e, route: routeName }, 'request failed');
            refuse(err);
          });
      });
    };

    if (method !== 'POST' && method !== 'PUT' && method !== 'PATCH') { run(Buffer.alloc(0)); return; }
    if (contentEncoding !== '' && contentEncoding !== 'identity' && contentEncoding !== 'gzip') {
      respond(errorReply(new ChicagoError('UNSUPPORTED_MEDIA_TYPE', `content-encoding ${contentEncoding.slice(0, 40)}`, 'gzip or none')));
      return;
    }
    /** a gzip body is inflated on the thread pool, never past the body limit, and held like the bytes it came as */
    const received = (body: Buffer) => {
      if (contentEncoding !== 'gzip') { run(body); return; }
      zlib.gunzip(body, { maxOutputLength: limits.httpBodyBytesMax }, (err, out) => {
        if (aborted) return;
        if (err) {
          const tooLarge = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError;
          respond(errorReply(tooLarge
            ? new ChicagoError('BATCH_TOO_LARGE', `over ${limits.httpBodyBytesMax} (gzip body inflated)`, limits.httpBodyBytesMax)
            : new ChicagoError('BAD_REQUEST', `the body is not valid gzip: ${err.message.slice(0, 100)}`)));
          return;
        }
        if (!node.memory.take(out.length)) {
          respond(errorReply(new ChicagoError('OVERLOADED', 'node memory', `${node.memory.used} of memory.maxBytes ${node.memory.maxBytes} buffered`)));
          return;
        }
        held += out.length;
        run(out);
      });
    };
    if (declared && Number(declared) > limits.httpBodyBytesMax) {
      respond(errorReply(new ChicagoError('BATCH_TOO_LARGE', declared, limits.httpBodyBytesMax)));
      return;
    }
    // With a Content-Length the body is copied once, into a buffer of that size as it arrives (no
    // copy per chunk, then a join); a chunked body is gathered and joined. That buffer is taken
    // from the memory budget whole when it is made: a body declared large and sent slowly holds it all.
    const expected = declared ? Number(declared) : -1;
    let whole: Buffer | undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      if (aborted) return;
      const at = size;
      size += chunk.byteLength;
      if (size > limits.httpBodyBytesMax) {
        respond(errorReply(new ChicagoError('BATCH_TOO_LARGE', size, limits.httpBodyBytesMax)));
        return;
      }
      const into = size <= expected;
      const need = into ? (whole ? 0 : expected) : chunk.byteLength;
      if (need > 0 && !node.memory.take(need)) {
        respond(errorReply(new ChicagoError('OVERLOADED', 'node memory', `${node.memory.used} of memory.maxBytes ${node.memory.maxBytes} buffered`)));
        return;
      }
      held += need;
      const bytes = new Uint8Array(chunk); // a view: uWS reuses the chunk's memory, so it is copied
      if (into) {
        whole ??= Buffer.allocUnsafe(expected);
        whole.set(bytes, at);
      } else {
        if (whole) { chunks.push(whole.subarray(0, at)); whole = undefined; }
        chunks.push(Buffer.from(bytes));
      }
      copiedShortLived(chunk.byteLength);
      if (isLast) received(whole ? whole.subarray(0, size) : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
  });
}

/** the caller of a public route on a node with tokens: allowed nothing else */
const PUBLIC: Principal = { id: 'public', name: 'public', scopes: [] };

function checkNeed(auth: Authenticator, need: Need, req: Request): void {
  if (need === 'public') return;
  const n = need(req);
  if (n === 'authenticated') return;
  const all = Array.isArray(n[0]) ? (n as Array<[Resource, string, string?]>) : [n as [Resource, string, string?]];
  for (const [resource, action, name] of all) auth.authorize(req.who, resource, action, name);
}

// ---- routing ----

/** the produce route's path: its pipelined batches take their place when their headers come */
const PRODUCE_PATH = '/v1/topics/:t/records';

interface Route { method: string; pattern: string[]; name: string; need: Need; handler: Handler; params: ReadonlySet<string>; noHead?: true }


/** The first query parameter `params` does not hold, refused with the ones it does. */
function checkParams(query: URLSearchParams, params: ReadonlySet<string>, route: string): void {
  const seen = new Set<string>();
  for (const k of query.keys()) {
    if (!params.has(k)) throw new ChicagoError('INVALID_ARGUMENT', 'query parameter', `${k.slice(0, 40)} (${route} takes ${params.size > 0 ? [...params].join(', ') : 'none'})`);
    // the route reads one value: a second one would be ignored without a word
    if (seen.has(k)) throw new ChicagoError('INVALID_ARGUMENT', 'query parameter', `${k.slice(0, 40)} given twice (${route} takes each once)`);
    seen.add(k);
  }
}

function matchRoute(routes: Route[], method: string, segs: string[]): { name: string; need: Need; handler: Handler; params: ReadonlySet<string> } | { error: ChicagoError; allow?: string } {
  const allowed: string[] = [];
  // HEAD runs the GET route (its handlers read without changing state; the one that does, the
  // metrics scrape, refuses it: noHead); the body is left out when answering
  const wanted = method === 'HEAD' ? 'GET' : method;
  for (const r of routes) {
    const rest = r.pattern[r.pattern.length - 1] === '**';
    const fixed = rest ? r.pattern.slice(0, -1) : r.pattern;
    if (rest ? segs.length <= fixed.length : segs.length !== fixed.length) continue;
    if (!fixed.every((p, i) => (p.startsWith(':') && segs[i] !== '') || p === segs[i])) continue;
    if (r.method === wanted && !(method === 'HEAD' && r.noHead)) return r;
    allowed.push(r.method);
    if (r.method === 'GET' && !r.noHead) allowed.push('HEAD');
  }
  const target = '/' + segs.join('/');
  // a 405 says which methods the resource has (RFC 9110 15.5.6)
  return allowed.length > 0
    ? { error: new ChicagoError('METHOD_NOT_ALLOWED', method, target), allow: [...new Set(allowed)].join(', ') }
    : { error: new ChicagoError('ROUTE_NOT_FOUND', method, target) };
}

/**
 * A route and the query parameters it takes; any other is refused: a misspelt one (`ofset=3`) would
 * otherwise be ignored silently.
 */
function route(method: string, path: string, need: Need, handler: Handler, params: readonly string[] = []): Route {
  return { method, pattern: path.split('/').filter(Boolean), name: `${method} ${path}`, need, handler, params: new Set(params) };
}

// ---- parameters and bodies ----

function acksOf(q: URLSearchParams, fallback: Acks): Acks {
  const a = q.get('acks') ?? fallback;
  if (a !== 'none' && a !== 'one' && a !== 'all') throw new ChicagoError('INVALID_ARGUMENT', 'acks', `${a.slice(0, 20)} (none, one or all)`);
  return a;
}

function intParam(q: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const v = q.get(name);
  return v === null ? fallback : decimalParam(name, v, min, max);
}

/** Does an Accept header name this type (without q=0)? The first listed wins over JSON. */
export function acceptsType(accept: string, want: string): boolean {
  for (const part of accept.split(',')) {
    const [type, ...params] = part.split(';').map((x) => x.trim().toLowerCase());
    if (type === want) return !params.some((p) => /^q=0(\.0*)?$/.test(p));
    if (type === 'application/json') return false;
  }
  return false;
}

/** Does an Accept header ask for a fetch answered as stored record batches? */
export const acceptsBatches = (accept: string): boolean => acceptsType(accept, BATCH_CONTENT_TYPE);

/**
 * JSON bodies only with a JSON content type: form, multipart and other types are refused, not
 * parsed as JSON. text/plain (what a page can send cross-site without a CORS preflight) is refused
 * from browsers; from other clients (no Origin, no Sec-Fetch-Site) it is taken as JSON, because
 * fetch and many HTTP libraries label a string body text/plain unless told otherwise.
 */
const mediaType = (req: Request): string => req.contentType.split(';')[0].trim().toLowerCase();

function requireJson(req: Request, also?: string): void {
  const type = mediaType(req);
  if (type === '' || type === 'application/json' || /^application\/[a-z0-9.+-]+\+json$/.test(type) || (also !== undefined && type === also)) return;
  if (type === 'text/plain' && !req.fromBrowser) return;
  throw new ChicagoError('UNSUPPORTED_MEDIA_TYPE', req.contentType.slice(0, 80) || '(none)', also ? `application/json or ${also}` : 'application/json');
}

function jsonBody(req: Request): unknown {
  requireJson(req);
  return parseJson(req.body, 'body');
}

/** ISO-8601, epoch milliseconds, or a relative age such as 90s, 5m, 2h, 1d. */
export function parseTime(v: string, nowMs = Date.now()): number {
  if (/^\d+$/.test(v)) return Number(v);
  const rel = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(v);
  if (rel) return Math.round(nowMs - Number(rel[1]) * { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2] as 'ms']);
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw new ChicagoError('INVALID_ARGUMENT', 'time', `${v.slice(0, 40)} (ISO-8601, epoch ms, or an age like 5m)`);
  return t;
}

function startOf(q: URLSearchParams): StartPosition {
  const offset = q.get('offset');
  const since = q.get('since');
  const tailBytes = q.get('tailBytes');
  const from = q.get('from');
  // One start only: a precedence between them would silently read from a place the caller did not ask for.
  const given = [['offset', offset], ['since', since], ['tailBytes', tailBytes], ['from', from]].filter(([, v]) => v !== null).map(([n]) => n);
  if (given.length > 1) throw new ChicagoError('INVALID_ARGUMENT', 'start', `${given.join(' and ')} exclude each other: give one of offset, since, tailBytes, from`);
  if (offset !== null) return { kind: 'offset', offset: checkOffset(offset) };
  if (since !== null) return { kind: 'timestamp', timestampMs: parseTime(since) };
  if (tailBytes !== null) return { kind: 'bytes', bytes: decimalParam('tailBytes', tailBytes, 1, Number.MAX_SAFE_INTEGER) };
  if (from === 'latest') return { kind: 'latest' };
  if (from !== null && from !== 'earliest') throw new ChicagoError('INVALID_ARGUMENT', 'from', `${from.slice(0, 20)} (earliest or latest)`);
  return { kind: 'earliest' };
}

export function recordJson(r: StoredRecord) {
  return { partition: r.partition, offset: r.offset, timestamp: r.timestampMs, ...bytesJson('key', r.key), ...bytesJson('value', r.value), headers: r.headers };
}

// ---- the routes ----

function buildRoutes(node: GatewayNode, parsePool: ParsePool, auth: Authenticator): Route[] {
  const keyOf = (req: Request) => Buffer.from(req.rest);
  const ks = (action: string) => (req: Request): [Resource, string, string] => ['kv', action, req.segments[2]];
  const topic = (action: string) => (req: Request): [Resource, string, string] => ['topic', action, req.segments[2]];
  const cluster = (action: string) => (): [Resource, string] => ['cluster', action];
  const authenticated = () => 'authenticated' as const;
  return [
    // 200 while serving (degraded: reads and deletes work, writes may not, with the reasons); 503 when not
    route('GET', '/v1/health', 'public', () => {
      const h = node.health();
      return { ...json({ ...h, node: node.config.nodeId }, h.status === 'unavailable' ? 503 : 200), always: true };
    }),
    // the WebSocket endpoint answers upgrades only (uWS routes those before this catch-all)
    route('GET', '/v1/ws', 'public', () => { throw new ChicagoError('BAD_REQUEST', '/v1/ws takes a WebSocket upgrade (docs/protocol.md)'); }),
    // no HEAD: a scrape ends the event-loop-delay windows the next scrape reports
    { ...route('GET', '/metrics', cluster('read'), async () => ({ status: 200, body: await node.renderMetrics(), contentType: 'text/plain; version=0.0.4', always: true })), noHead: true },
    route('GET', '/v1/status', cluster('read'), async () => ({ ...json(await node.status()), always: true })),
    route('POST', '/v1/admin/maintain', cluster('admin'), async () => json(await node.maintain())),
    // any token: clients route by it (which node leads which partition), whatever they may touch
    route('GET', '/v1/cluster/placement', authenticated, () => json(node.placement())),
    route('GET', '/v1/debug/partitions/:p/digest', cluster('admin'), async (req) => json(await node.digest(decimalParam('partition', req.segments[3], 0, 1 << 20)))),
    // Tests only, and only when the node was started with CHICAGO_TEST_FAULTS=1 (never a config
    // key, so no config file turns it on): a divergence for anti-entropy to find.
    ...(process.env.CHICAGO_TEST_FAULTS === '1' ? [route('PUT', '/v1/debug/partitions/:p/plant/:ks/**', cluster('admin'), async (req) => {
      await node.plantDivergence(decimalParam('partition', req.segments[3], 0, 1 << 20), req.segments[5], Buffer.from(req.segments.slice(6).join('/')), req.body);
      return json({});
    })] : []),

    route('PUT', '/v1/kv/:ks/**', ks('write'), async (req) => {
      const ttl = req.query.get('ttl');
      const acks = acksOf(req.query, 'all');
      const r = await node.kvPut(req.segments[2], keyOf(req), req.body, {
        acks,
        ...(ttl !== null ? { ttlSeconds: decimalParam('ttl', ttl, 1, limits.ttlSecondsMax) } : {}),
      });
      // acks=none is accepted, not done: 202, as a produce with acks=none answers
      return json(r, acks === 'none' ? 202 : 200);
    }, ['ttl', 'acks']),
    route('GET', '/v1/kv/:ks/**', ks('read'), async (req) => {
      const e = await node.kvGet(req.segments[2], keyOf(req));
      if (!e) throw new ChicagoError('NOT_FOUND', 'key');
      return { status: 200, body: e.value, contentType: 'application/octet-stream', headers: { 'x-chicago-version': String(e.version) } };
    }),
    route('DELETE', '/v1/kv/:ks/**', ks('write'), async (req) => {
      const acks = acksOf(req.query, 'all');
      return json(await node.kvDelete(req.segments[2], keyOf(req), { acks }), acks === 'none' ? 202 : 200);
    }, ['acks']),
    route('GET', '/v1/kv/:ks', ks('read'), async (req) => {
      // a key that is not UTF-8 comes back as base64 `next` with `nextEncoding`; it goes back the same way
      const bytesParam = (field: 'prefix' | 'after'): Buffer | undefined => {
        const v = req.query.get(field);
        const encoding = req.query.get(`${field}Encoding`);
        if (encoding !== null) return base64Field('query', field, v ?? '', encoding);
        return v ? Buffer.from(v) : undefined;
      };
      const prefix = bytesParam('prefix');
      const after = bytesParam('after');
      const r = await node.kvScan(req.segments[2], {
        limit: intParam(req.query, 'limit', 1000, 1, limits.scanLimitMax),
        ...(prefix?.length ? { prefix } : {}),
        ...(after?.length ? { after } : {}),
      });
      const items = r.items.map((e) => ({ ...bytesJson('key', e.key), ...bytesJson('value', e.value), version: e.version }));
      return json({ items, ...(r.next ? bytesJson('next', r.next) : {}) });
    }, ['prefix', 'after', 'limit', 'prefixEncoding', 'afterEncoding']),

    route('POST', '/v1/topics', authenticated, async (req) => {
      const spec = jsonBody(req) as Record<string, unknown>;
      if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new ChicagoError('BAD_REQUEST', 'body must be a topic object');
      if (spec.name === undefined) throw new ChicagoError('BAD_REQUEST', 'body must name the topic: {"name", …}');
      auth.authorize(req.who, 'topic', 'admin', typeof spec.name === 'string' ? spec.name : '');
      const known = new Set(['name', 'partitions', 'replicas', 'retention']);
      for (const k of Object.keys(spec)) if (!known.has(k)) throw new ChicagoError('INVALID_ARGUMENT', 'field', k.slice(0, 40));
      const retention = (spec.retention ?? {}) as Record<string, unknown>;
      if (typeof retention !== 'object' || retention === null || Array.isArray(retention)) throw new ChicagoError('INVALID_ARGUMENT', 'retention', 'must be an object');
      for (const k of Object.keys(retention)) if (!['ms', 'bytes', 'untilGroup'].includes(k)) throw new ChicagoError('INVALID_ARGUMENT', 'retention field', k.slice(0, 40));
      const info = await node.createTopic({
        name: spec.name as string,
        partitions: spec.partitions as number,
        replicas: spec.replicas as number,
        retention: retention as { ms?: number; bytes?: number; untilGroup?: string },
      });
      return json(info, 201);
    }),
    route('GET', '/v1/topics', authenticated, async (req) => {
      const all = await node.listTopics();
      // a token sees the topics it may do something with
      return json({ topics: all.filter((t) => mayDescribeTopic(req.who.scopes, t.name)) });
    }),
    route('GET', '/v1/topics/:t', authenticated, async (req) => {
      auth.authorizeDescribe(req.who, req.segments[2]);
      const { partitionsInfo, ...info } = await node.describeTopic(req.segments[2]);
      return json({ ...info, partitionCount: info.partitions, partitions: partitionsInfo });
    }),
    route('DELETE', '/v1/topics/:t', topic('admin'), async (req) => { await node.deleteTopic(req.segments[2]); return noContent(); }),
    route('PATCH', '/v1/topics/:t', topic('admin'), async (req) => {
      requireJson(req);
      const b = jsonBody(req) as Record<string, unknown>;
      if (typeof b !== 'object' || b === null || Array.isArray(b) || Object.keys(b).length === 0) {
        throw new ChicagoError('BAD_REQUEST', 'body must be {"retention"?: {"ms"?, "bytes"?, "untilGroup"?} (null removes a rule), "partitions"?: N (more than now)}');
      }
      // an unknown field is refused as on create
      for (const k of Object.keys(b)) if (k !== 'retention' && k !== 'partitions') throw new ChicagoError('INVALID_ARGUMENT', 'field', `${k.slice(0, 40)} (an update changes retention and partitions)`);
      const { partitionsInfo: _, ...info } = await node.alterTopic(req.segments[2], {
        ...(b.retention !== undefined ? { retention: b.retention as RetentionChange } : {}),
        ...(b.partitions !== undefined ? { partitions: b.partitions as number } : {}),
      });
      return json({ ...info, partitionCount: info.partitions });
    }),
    route('POST', PRODUCE_PATH, (req) => topicWriteNeed(req.segments[2]), async (req) => {
      // one record batch as the body: validated here, in place, and handed on as it is (given:
      // nothing here reads the body again)
      const batch = mediaType(req) === BATCH_CONTENT_TYPE ? checkBatch(req.body, true) : undefined;
      if (!batch) requireJson(req, 'application/x-ndjson');
      const partition = req.query.get('partition');
      const producerId = req.query.get('producerId');
      const previous = req.query.get('previousSequence');
      // as in a produce frame: a sequence means nothing without its producer, and the other way round
      if ((producerId === null) !== (req.query.get('sequence') === null)) throw new ChicagoError('BAD_REQUEST', `'producerId' and 'sequence' go together`);
      const sequence = producerId !== null ? decimalParam('sequence', req.query.get('sequence'), 0, Number.MAX_SAFE_INTEGER) : undefined;
      const previousSequence = previous !== null ? decimalParam('previousSequence', previous, 0, Number.MAX_SAFE_INTEGER) : undefined;
      // a batch comes after the one it names: naming itself or a later one would wait on itself
      if (sequence !== undefined && previousSequence !== undefined && previousSequence >= sequence) throw new ChicagoError('INVALID_ARGUMENT', 'previousSequence', `${previousSequence} (must be below sequence ${sequence})`);
      const turn = req.turn;
      try {
        const records = batch ? undefined : await parsePool.parse(req.body, req.contentType);
        // nothing to append is a mistake, as in a produce frame, not an update that was acknowledged
        if (records?.length === 0) throw new ChicagoError('INVALID_ARGUMENT', 'records', 'empty batch');
        // a pipelined batch whose predecessor arrived before it and is still being parsed goes after it
        if (turn && previous !== null) await turn.after(previous);
        const opts: ProduceOptions = {
          acks: acksOf(req.query, 'all'),
          ...(partition !== null ? { partition: decimalParam('partition', partition, 0, limits.topicPartitionsMax - 1) } : {}),
          ...(producerId !== null ? { producerId, sequence } : {}),
          ...(previousSequence !== undefined ? { previousSequence } : {}),
          ...(acceptsType(req.accept, PRODUCE_RANGES_TYPE) ? { ranges: true } : {}),
        };
        const r = batch ? node.produceBatch(req.segments[2], batch, opts) : node.produce(req.segments[2], records!, opts);
        turn?.done();
        const out = await r;
        // the compact answer: ranges in place of one entry per record (acks=none has none)
        const body = opts.ranges ? compactAnswer(out) : out;
        return json(body, out.replicas === 0 ? 202 : 200);
      } finally {
        turn?.done();
      }
    }, ['partition', 'producerId', 'sequence', 'previousSequence', 'acks']),
    route('GET', '/v1/topics/:t/records', topic('read'), async (req) => {
      const opts = {
        from: startOf(req.query),
        maxRecords: intParam(req.query, 'maxRecords', 1000, 1, limits.fetchRecordsMax),
        maxBytes: intParam(req.query, 'maxBytes', 4 * 1024 * 1024, 1, limits.fetchBytesMax),
        waitMs: intParam(req.query, 'waitMs', 0, 0, limits.fetchWaitMsMax),
      };
      // one partition is read; leaving it out is only for a topic that has one
      if (req.query.get('partition') === null) {
        const count = (await node.describeTopic(req.segments[2])).partitions;
        if (count > 1) throw new ChicagoError('BAD_REQUEST', `partition is required: topic ${req.segments[2]} has ${count} partitions (0..${count - 1})`);
      }
      const batches = acceptsBatches(req.accept);
      const r = await node.fetch(req.segments[2], intParam(req.query, 'partition', 0, 0, limits.topicPartitionsMax - 1), batches ? { ...opts, batches } : opts);
      if (r.batches) {
        // the stored batches back to back, as stored: each says its own length (docs/protocol.md)
        return {
          status: 200, body: r.batches.length === 1 ? r.batches[0] : Buffer.concat(r.batches), contentType: BATCH_CONTENT_TYPE,
          headers: { 'x-chicago-first-offset': String(r.firstOffset), 'x-chicago-next-offset': String(r.nextOffset), 'x-chicago-start-offset': String(r.startOffset), 'x-chicago-end-offset': String(r.endOffset) },
        };
      }
      return json({ records: r.records.map(recordJson), nextOffset: r.nextOffset, startOffset: r.startOffset, endOffset: r.endOffset });
    }, ['partition', 'offset', 'since', 'tailBytes', 'from', 'maxRecords', 'maxBytes', 'waitMs']),

    // the groups with committed offsets; a token sees those it may use
    route('GET', '/v1/groups', authenticated, async (req) => {
      const names = await node.groupNames(intParam(req.query, 'limit', limits.groupNamesMax, 1, limits.groupNamesMax));
      return json({ groups: names.filter((g) => auth.may(req.who, 'group', 'use', g)) });
    }, ['limit']),
    route('POST', '/v1/groups/:g/offsets', (req) => ['group', 'use', req.segments[2]], async (req) => {
      const b = jsonBody(req) as Record<string, unknown>;
      if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new ChicagoError('BAD_REQUEST', 'body must be {"topic","partition","offset"}');
      for (const k of Object.keys(b)) if (k !== 'topic' && k !== 'partition' && k !== 'offset') throw new ChicagoError('INVALID_ARGUMENT', 'field', `${k.slice(0, 40)} (the body is {"topic","partition","offset"})`);
      if (typeof b.topic !== 'string') throw new ChicagoError('BAD_REQUEST', `'topic' must be a string`);
      auth.authorize(req.who, 'topic', 'read', b.topic);
      // a JSON number, as every JSON integer here: "2" is refused, not converted
      if (typeof b.offset !== 'number') throw new ChicagoError('INVALID_OFFSET', b.offset === undefined ? 'missing' : `${JSON.stringify(b.offset).slice(0, 40)} (a JSON number)`);
      await node.commitOffset(req.segments[2], b.topic, checkInt('partition', b.partition, 0, limits.topicPartitionsMax - 1), b.offset);
      return json({ ok: true });
    }),
    route('GET', '/v1/groups/:g/offsets', (req) => ['group', 'use', req.segments[2]], async (req) => {
      const topic = req.query.get('topic');
      return json({ group: req.segments[2], offsets: await node.groupOffsets(req.segments[2], topic || undefined) });
    }, ['topic']),
    route('GET', '/v1/groups/:g/members', (req) => ['group', 'use', req.segments[2]], async (req) => json(await node.groupMembers(req.segments[2]))),
    route('DELETE', '/v1/groups/:g', (req) => ['group', 'use', req.segments[2]], async (req) => json({ group: req.segments[2], ...await node.groupDelete(req.segments[2]) })),
  ];
}
