// Blocking in a Node front end: follows `guard.decisions` over the WebSocket client (pushed, not
// polled; the KV blocklist is read once at start) and answers 403 for banned addresses.
//   const mw = await guardMiddleware({ url: 'http://127.0.0.1:7070' });
//   http.createServer((req, res) => mw.handle(req, res) || app(req, res));
//   uWS: if (mw.isBlocked(clientIp)) return res.writeStatus('403 Forbidden').end();
import type http from 'node:http';
import { ChicagoClient, type TailStream } from '../client/index.js';
import { parseIp } from './ip.js';
import { decodeRecord, loadDecisions } from './store.js';

export interface GuardMiddlewareOptions {
  url: string;
  token?: string;
  topic?: string;
  keyspace?: string;
}

export interface GuardMiddleware {
  isBlocked(ip: string): boolean;
  /** answers 403 and returns true when the request's peer address is banned */
  handle(req: http.IncomingMessage, res: http.ServerResponse): boolean;
  /** decisions in force that this process knows */
  readonly size: number;
  close(): Promise<void>;
}

export async function guardMiddleware(opts: GuardMiddlewareOptions): Promise<GuardMiddleware> {
  const client = await ChicagoClient.connect({ url: opts.url, clientName: 'guard-middleware', ...(opts.token ? { token: opts.token } : {}) });
  // target → until (ms); prefixes as their canonical text
  const until = new Map<string, number>();
  const topic = opts.topic ?? 'guard.decisions';
  // subscribe before reading KV so nothing written in between is missed
  const tail: TailStream = client.tail(topic, 0, { from: 'latest' });
  for (const d of await loadDecisions(client, opts.keyspace ?? 'blocklist', Date.now())) until.set(d.target, d.untilMs);
  void (async () => {
    try {
      for await (const rec of tail) {
        const r = decodeRecord(rec.value);
        if (!r) continue;
        if (r.action === 'unban') until.delete(r.decision.target);
        else until.set(r.decision.target, Math.max(until.get(r.decision.target) ?? 0, r.decision.untilMs));
      }
    } catch { /* closed */ }
  })();
  const isBlocked = (ip: string): boolean => {
    if (until.size === 0) return false;
    const c = parseIp(ip);
    if (!c) return false;
    const now = Date.now();
    for (const key of [c.ip, c.prefix]) {
      const u = until.get(key);
      if (u === undefined) continue;
      if (u > now) return true;
      until.delete(key);
    }
    return false;
  };
  return {
    isBlocked,
    handle(req, res) {
      if (!isBlocked(req.socket.remoteAddress ?? '')) return false;
      res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden\n');
      return true;
    },
    get size() { return until.size; },
    async close() {
      await tail.return?.();
      client.close();
    },
  };
}
