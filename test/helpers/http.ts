// Small HTTP helpers for tests against a real node.
import { slow } from './slow.js';
import { caDispatcher } from '../../src/client/tls.js';
export interface HttpResult { status: number; body: any; text: string; headers: Headers }

export async function http(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}, ca?: string): Promise<HttpResult> {
  const init: RequestInit = { method, headers };
  if (body !== undefined) {
    const raw = typeof body === 'string' || body instanceof Uint8Array;
    init.body = raw ? (body as BodyInit) : JSON.stringify(body);
    if (!raw && !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) init.headers = { ...headers, 'content-type': 'application/json' };
  }
  const res = await fetch(base + path, { ...init, signal: AbortSignal.timeout(slow(30_000)), ...({ dispatcher: caDispatcher(ca) } as RequestInit) });
  const text = await res.text();
  let parsed: unknown = undefined;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed, text, headers: res.headers };
}
