// A small HTTP(S) request over node:http, for the few JSON calls a long-lived client makes beside its
// WebSocket (placement, topic metadata). Global fetch would load Node's bundled undici on first use:
// ≈ 15 MB of a process's RSS to keep and ≈ 30 MB more while it is compiled (docs/guard.md "Memory").
import http from 'node:http';
import https from 'node:https';
import { ChicagoError } from '../runtime/errors.js';

export interface HttpReply { status: number; ok: boolean; text: string }

/** Bodies larger than this are refused (the calls here answer a few KB of JSON). */
const REPLY_BYTES_MAX = 4 * 1024 * 1024;

/**
 * Sends one request; `ca` (PEM) is trusted for https. Rejects on a network error, or with TIMEOUT when
 * the whole exchange (not only a silent socket) takes over `timeoutMs`, as fetch with
 * AbortSignal.timeout did. Redirects are not followed: a 3xx is a reply like any other (!ok).
 */
export function httpRequest(url: string, o: { method?: string; headers?: Record<string, string>; body?: string; ca?: string; timeoutMs: number }): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, { method: o.method ?? 'GET', headers: o.headers, ...(o.ca && u.protocol === 'https:' ? { ca: o.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > REPLY_BYTES_MAX) { req.destroy(new ChicagoError('FRAME_TOO_LARGE', `> ${bytes}`, REPLY_BYTES_MAX)); return; }
        chunks.push(c);
      });
      res.on('end', () => { clearTimeout(deadline); const status = res.statusCode ?? 0; resolve({ status, ok: status >= 200 && status < 300, text: Buffer.concat(chunks).toString('utf8') }); });
      res.on('error', (err) => { clearTimeout(deadline); reject(err); });
    });
    // a total deadline: a server that drips bytes keeps a socket timeout from ever firing
    const deadline = setTimeout(() => req.destroy(new ChicagoError('TIMEOUT', `${o.method ?? 'GET'} ${u.origin}${u.pathname}`, o.timeoutMs)), o.timeoutMs);
    req.on('error', (err) => { clearTimeout(deadline); reject(err); });
    req.end(o.body);
  });
}
