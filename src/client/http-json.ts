// A small HTTP(S) request over node:http, for the few JSON calls a long-lived client makes beside its
// WebSocket (placement, topic metadata). Global fetch would load Node's bundled undici on first use:
// ≈ 15 MB of a process's RSS to keep and ≈ 40 MB more while it is compiled (docs/guard.md "Memory").
import http from 'node:http';
import https from 'node:https';

export interface HttpReply { status: number; ok: boolean; text: string }

/** Bodies larger than this are refused (the calls here answer a few KB of JSON). */
const REPLY_BYTES_MAX = 4 * 1024 * 1024;

/** Sends one request; `ca` (PEM) is trusted for https; rejects on a network error or after `timeoutMs`. */
export function httpRequest(url: string, o: { method?: string; headers?: Record<string, string>; body?: string; ca?: string; timeoutMs: number }): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, { method: o.method ?? 'GET', headers: o.headers, timeout: o.timeoutMs, ...(o.ca && u.protocol === 'https:' ? { ca: o.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > REPLY_BYTES_MAX) { req.destroy(new Error(`reply from ${u.origin} over ${REPLY_BYTES_MAX} bytes`)); return; }
        chunks.push(c);
      });
      res.on('end', () => { const status = res.statusCode ?? 0; resolve({ status, ok: status >= 200 && status < 300, text: Buffer.concat(chunks).toString('utf8') }); });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no reply from ${u.origin} in ${o.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(o.body);
  });
}
