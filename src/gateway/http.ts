// HTTP routes of CONTRACT.md on uWebSockets.js. uWS rules kept here (PLATFORM.md): request data is
// read before the first await; every async answer checks the request was not aborted and is
// written corked; bodies are size-checked before they are buffered.
import type uWS from 'uWebSockets.js';
import { asChicagoError, ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { checkInt } from '../runtime/validate.js';
import type { Logger } from '../runtime/log.js';
import type { Metrics } from '../runtime/metrics.js';
import type { Acks, StartPosition, StoredRecord } from '../node/api.js';
import type { ChicagoNode } from '../node/node.js';
import { parseJson, textOrBase64 } from './bodies.js';
import type { ParsePool } from './parse-pool.js';

interface Request {
  method: string;
  segments: string[];
  query: URLSearchParams;
  body: Buffer;
  contentType: string;
}

interface Reply {
  status: number;
  body: string | Uint8Array;
  contentType?: string;
  headers?: Record<string, string>;
}

type Handler = (req: Request) => Promise<Reply> | Reply;

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 201: '201 Created', 202: '202 Accepted', 204: '204 No Content', 400: '400 Bad Request',
  404: '404 Not Found', 405: '405 Method Not Allowed', 409: '409 Conflict', 413: '413 Payload Too Large',
  416: '416 Range Not Satisfiable', 429: '429 Too Many Requests', 500: '500 Internal Server Error',
  503: '503 Service Unavailable', 504: '504 Gateway Timeout',
};

const json = (value: unknown, status = 200): Reply => ({ status, body: JSON.stringify(value), contentType: 'application/json' });
const noContent = (): Reply => ({ status: 204, body: '' });

function errorReply(err: ChicagoError): Reply {
  return json({ error: err.toJSON() }, err.status);
}

export function attachHttp(app: uWS.TemplatedApp, node: ChicagoNode, parsePool: ParsePool, log: Logger, metrics: Metrics): void {
  const routes = buildRoutes(node, parsePool);

  app.any('/*', (res, req) => {
    const method = req.getMethod().toUpperCase();
    const url = req.getUrl();
    const query = new URLSearchParams(req.getQuery() ?? '');
    const contentType = req.getHeader('content-type');
    const declared = req.getHeader('content-length');
    const started = process.hrtime.bigint();
    let aborted = false;
    res.onAborted(() => { aborted = true; });

    let routeName = 'unmatched';
    const respond = (reply: Reply) => {
      if (aborted) return;
      aborted = true; // answer once
      res.cork(() => {
        res.writeStatus(STATUS_TEXT[reply.status] ?? `${reply.status} Status`);
        if (reply.contentType) res.writeHeader('content-type', reply.contentType);
        for (const [k, v] of Object.entries(reply.headers ?? {})) res.writeHeader(k, v);
        res.end(reply.body);
      });
      const code = reply.status >= 400 && typeof reply.body === 'string' && reply.body.startsWith('{"error"')
        ? (JSON.parse(reply.body) as { error: { code: string } }).error.code : String(reply.status);
      metrics.requests.inc({ edge: 'http', route: routeName, code });
      metrics.requestSeconds.observe({ edge: 'http', route: routeName }, Number(process.hrtime.bigint() - started) / 1e9);
    };

    let segments: string[];
    try {
      segments = url.split('/').filter((s) => s.length > 0).map((s) => decodeURIComponent(s));
    } catch {
      respond(errorReply(new ChicagoError('BAD_REQUEST', 'path is not valid percent-encoding')));
      return;
    }
    const match = matchRoute(routes, method, segments);
    if ('error' in match) { respond(errorReply(match.error)); return; }
    routeName = match.name;

    const run = (body: Buffer) => {
      Promise.resolve()
        .then(() => match.handler({ method, segments, query, body, contentType }))
        .then(respond, (e) => {
          const err = asChicagoError(e);
          if (err.code === 'INTERNAL') log.error({ err: e, route: routeName }, 'request failed');
          respond(errorReply(err));
        });
    };

    if (method !== 'POST' && method !== 'PUT') { run(Buffer.alloc(0)); return; }
    if (declared && Number(declared) > limits.httpBodyBytesMax) {
      respond(errorReply(new ChicagoError('BATCH_TOO_LARGE', declared, limits.httpBodyBytesMax)));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      if (aborted) return;
      size += chunk.byteLength;
      if (size > limits.httpBodyBytesMax) {
        respond(errorReply(new ChicagoError('BATCH_TOO_LARGE', size, limits.httpBodyBytesMax)));
        return;
      }
      chunks.push(Buffer.from(new Uint8Array(chunk))); // uWS reuses the chunk's memory: copy
      if (isLast) run(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
  });
}

// ---- routing ----

interface Route { method: string; pattern: string[]; name: string; handler: Handler }

function matchRoute(routes: Route[], method: string, segs: string[]): { name: string; handler: Handler } | { error: ChicagoError } {
  let pathMatched = false;
  for (const r of routes) {
    const rest = r.pattern[r.pattern.length - 1] === '**';
    const fixed = rest ? r.pattern.slice(0, -1) : r.pattern;
    if (rest ? segs.length <= fixed.length : segs.length !== fixed.length) continue;
    if (!fixed.every((p, i) => p.startsWith(':') || p === segs[i])) continue;
    pathMatched = true;
    if (r.method === method) return { name: r.name, handler: r.handler };
  }
  return { error: pathMatched ? new ChicagoError('METHOD_NOT_ALLOWED', method, '/' + segs.join('/')) : new ChicagoError('ROUTE_NOT_FOUND', method, '/' + segs.join('/')) };
}

function route(method: string, path: string, handler: Handler): Route {
  return { method, pattern: path.split('/').filter(Boolean), name: `${method} ${path}`, handler };
}

// ---- parameters and bodies ----

function acksOf(q: URLSearchParams, fallback: Acks): Acks {
  const a = q.get('acks') ?? fallback;
  if (a !== 'none' && a !== 'one' && a !== 'all') throw new ChicagoError('INVALID_ARGUMENT', 'acks', `${a.slice(0, 20)} (none, one or all)`);
  return a;
}

function intParam(q: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const v = q.get(name);
  return v === null || v === '' ? fallback : checkInt(name, v, min, max);
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
  if (offset !== null && offset !== '') return { kind: 'offset', offset: Number.isNaN(Number(offset)) ? (offset as unknown as number) : Number(offset) };
  if (since !== null && since !== '') return { kind: 'timestamp', timestampMs: parseTime(since) };
  if (tailBytes !== null && tailBytes !== '') return { kind: 'bytes', bytes: checkInt('tailBytes', tailBytes, 1, Number.MAX_SAFE_INTEGER) };
  if (from === 'latest') return { kind: 'latest' };
  if (from !== null && from !== 'earliest') throw new ChicagoError('INVALID_ARGUMENT', 'from', `${from.slice(0, 20)} (earliest or latest)`);
  return { kind: 'earliest' };
}

/** Key and value as text, or base64 flagged per field, so nothing is silently mangled. */
function bytesJson(field: 'key' | 'value' | 'next', b: Uint8Array | undefined): Record<string, string | null> {
  if (!b) return { [field]: null };
  const t = textOrBase64(b);
  return t.base64 ? { [field]: t.text, [`${field}Encoding`]: 'base64' } : { [field]: t.text };
}

export function recordJson(r: StoredRecord) {
  return { partition: r.partition, offset: r.offset, timestamp: r.timestampMs, ...bytesJson('key', r.key), ...bytesJson('value', r.value), headers: r.headers };
}

// ---- the routes ----

function buildRoutes(node: ChicagoNode, parsePool: ParsePool): Route[] {
  const keyOf = (req: Request) => Buffer.from(req.segments.slice(3).join('/'));
  return [
    route('GET', '/v1/health', () => (node.serving ? json({ status: 'ok', node: node.config.nodeId }) : json({ status: 'unavailable' }, 503))),
    route('GET', '/metrics', async () => ({ status: 200, body: await node.renderMetrics(), contentType: 'text/plain; version=0.0.4' })),
    route('GET', '/v1/status', async () => json(await node.status())),
    route('POST', '/v1/admin/maintain', async () => json(await node.maintain())),
    route('GET', '/v1/cluster/placement', () => json(node.placement())),
    route('GET', '/v1/debug/partitions/:p/digest', async (req) => json(await node.digest(checkInt('partition', req.segments[3], 0, 1 << 20)))),
    // Tests only, and only when the node was started with CHICAGO_TEST_FAULTS=1 (never a config
    // key, so no config file turns it on): a divergence for anti-entropy to find.
    ...(process.env.CHICAGO_TEST_FAULTS === '1' ? [route('PUT', '/v1/debug/partitions/:p/plant/:ks/**', async (req) => {
      await node.plantDivergence(checkInt('partition', req.segments[3], 0, 1 << 20), req.segments[5], Buffer.from(req.segments.slice(6).join('/')), req.body);
      return json({});
    })] : []),

    route('PUT', '/v1/kv/:ks/**', async (req) => {
      const ttl = req.query.get('ttl');
      const r = await node.kvPut(req.segments[2], keyOf(req), req.body, {
        acks: acksOf(req.query, 'all'),
        ...(ttl !== null && ttl !== '' ? { ttlSeconds: checkInt('ttl', ttl, 1, limits.ttlSecondsMax) } : {}),
      });
      return json(r);
    }),
    route('GET', '/v1/kv/:ks/**', async (req) => {
      const e = await node.kvGet(req.segments[2], keyOf(req));
      if (!e) throw new ChicagoError('NOT_FOUND', 'key');
      return { status: 200, body: e.value, contentType: 'application/octet-stream', headers: { 'x-chicago-version': String(e.version) } };
    }),
    route('DELETE', '/v1/kv/:ks/**', async (req) => json(await node.kvDelete(req.segments[2], keyOf(req), { acks: acksOf(req.query, 'all') }))),
    route('GET', '/v1/kv/:ks', async (req) => {
      const prefix = req.query.get('prefix');
      const after = req.query.get('after');
      const r = await node.kvScan(req.segments[2], {
        limit: intParam(req.query, 'limit', 1000, 1, limits.scanLimitMax),
        ...(prefix ? { prefix: Buffer.from(prefix) } : {}),
        ...(after ? { after: Buffer.from(after) } : {}),
      });
      const items = r.items.map((e) => ({ ...bytesJson('key', e.key), ...bytesJson('value', e.value), version: e.version }));
      return json({ items, ...(r.next ? bytesJson('next', r.next) : {}) });
    }),

    route('POST', '/v1/topics', async (req) => {
      const spec = parseJson(req.body, 'body') as Record<string, unknown>;
      if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new ChicagoError('BAD_REQUEST', 'body must be a topic object');
      const known = new Set(['name', 'partitions', 'replicas', 'retention']);
      for (const k of Object.keys(spec)) if (!known.has(k)) throw new ChicagoError('INVALID_ARGUMENT', 'field', k.slice(0, 40));
      const retention = (spec.retention ?? {}) as Record<string, unknown>;
      if (typeof retention !== 'object' || Array.isArray(retention)) throw new ChicagoError('INVALID_ARGUMENT', 'retention', 'must be an object');
      for (const k of Object.keys(retention)) if (!['ms', 'bytes', 'untilGroup'].includes(k)) throw new ChicagoError('INVALID_ARGUMENT', 'retention field', k.slice(0, 40));
      const info = await node.createTopic({
        name: spec.name as string,
        partitions: spec.partitions as number,
        replicas: spec.replicas as number,
        retention: retention as { ms?: number; bytes?: number; untilGroup?: string },
      });
      return json(info, 201);
    }),
    route('GET', '/v1/topics', async () => json({ topics: await node.listTopics() })),
    route('GET', '/v1/topics/:t', async (req) => {
      const { partitionsInfo, ...info } = await node.describeTopic(req.segments[2]);
      return json({ ...info, partitionCount: info.partitions, partitions: partitionsInfo });
    }),
    route('DELETE', '/v1/topics/:t', async (req) => { await node.deleteTopic(req.segments[2]); return noContent(); }),
    route('POST', '/v1/topics/:t/records', async (req) => {
      const records = await parsePool.parse(req.body, req.contentType);
      const partition = req.query.get('partition');
      const producerId = req.query.get('producerId');
      const r = await node.produce(req.segments[2], records, {
        acks: acksOf(req.query, 'all'),
        ...(partition !== null && partition !== '' ? { partition: checkInt('partition', partition, 0, limits.topicPartitionsMax - 1) } : {}),
        ...(producerId ? { producerId, sequence: checkInt('sequence', req.query.get('sequence'), 0, Number.MAX_SAFE_INTEGER) } : {}),
      });
      return json(r, r.replicas === 0 ? 202 : 200);
    }),
    route('GET', '/v1/topics/:t/records', async (req) => {
      const r = await node.fetch(req.segments[2], intParam(req.query, 'partition', 0, 0, limits.topicPartitionsMax - 1), {
        from: startOf(req.query),
        maxRecords: intParam(req.query, 'maxRecords', 1000, 1, limits.fetchRecordsMax),
        maxBytes: intParam(req.query, 'maxBytes', 4 * 1024 * 1024, 1, limits.fetchBytesMax),
        waitMs: intParam(req.query, 'waitMs', 0, 0, limits.fetchWaitMsMax),
      });
      return json({ records: r.records.map(recordJson), nextOffset: r.nextOffset, startOffset: r.startOffset, endOffset: r.endOffset });
    }),

    route('POST', '/v1/groups/:g/offsets', async (req) => {
      const b = parseJson(req.body, 'body') as Record<string, unknown>;
      if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new ChicagoError('BAD_REQUEST', 'body must be {"topic","partition","offset"}');
      await node.commitOffset(req.segments[2], b.topic as string, checkInt('partition', b.partition, 0, limits.topicPartitionsMax - 1), b.offset as number);
      return json({ ok: true });
    }),
    route('GET', '/v1/groups/:g/offsets', async (req) => {
      const topic = req.query.get('topic');
      return json({ group: req.segments[2], offsets: await node.groupOffsets(req.segments[2], topic || undefined) });
    }),
  ];
}
