// Stream records → guard events. nginx access-log lines in JSON (log_format … escape=json, see
// docs/guard.md) and the agent's sshd records (ssh.* headers). Anything malformed or absurd is
// refused with a reason the caller counts; nothing here throws on input.
import { type ClientIp, parseIp } from './ip.js';

export interface HttpEvent {
  kind: 'http';
  client: ClientIp;
  /** when nginx logged the request ($msec), ms since the epoch */
  timeMs: number;
  method: string;
  uri: string;
  /** the URI's path, without the query string */
  path: string;
  protocol: string;
  status: number;
  userAgent: string;
  referer: string;
  host: string;
  bytes: number;
  requestTimeMs: number;
  connectionRequests: number;
}

export interface SshEvent {
  kind: 'ssh';
  client: ClientIp;
  timeMs: number;
  event: string;
  user: string;
}

export type GuardEvent = HttpEvent | SshEvent;

export type Reject = 'json' | 'too_long' | 'address' | 'time' | 'method' | 'status' | 'uri' | 'field' | 'not_ssh';

export interface ParseLimits {
  lineBytesMax: number;
  uriCharsMax: number;
  /** a $msec further than this from the record's own timestamp is absurd */
  clockSkewMsMax: number;
  prefixV4: number;
  prefixV6: number;
}

const METHOD = /^[A-Z][A-Z0-9_-]{0,31}$/;
const FIELD_CHARS_MAX = 4096;

function str(v: unknown, max = FIELD_CHARS_MAX): string | undefined {
  if (v === undefined || v === null || v === '-') return '';
  if (typeof v === 'number') return String(v);
  if (typeof v !== 'string' || v.length > max) return undefined;
  return v;
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 32 || v === '-') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** One nginx JSON line; `recordMs` is the record's timestamp, the fallback and sanity check for $msec. */
export function parseNginx(value: Uint8Array | string, recordMs: number, lim: ParseLimits): HttpEvent | Reject {
  const len = typeof value === 'string' ? value.length : value.byteLength;
  if (len > lim.lineBytesMax) return 'too_long';
  let o: unknown;
  try {
    o = JSON.parse(typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8'));
  } catch {
    return 'json';
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return 'json';
  const r = o as Record<string, unknown>;
  const client = parseIp(r.remote_addr, lim.prefixV4, lim.prefixV6);
  if (!client) return 'address';
  const msec = num(r.msec);
  let timeMs = recordMs;
  if (msec !== undefined) {
    timeMs = Math.round(msec * 1000);
    if (Math.abs(timeMs - recordMs) > lim.clockSkewMsMax) return 'time';
  }
  const method = str(r.request_method, 32);
  if (method === undefined || !METHOD.test(method)) return 'method';
  const status = num(r.status);
  if (status === undefined || !Number.isInteger(status) || status < 100 || status > 599) return 'status';
  const uri = str(r.request_uri, lim.uriCharsMax);
  if (uri === undefined || uri.length === 0) return 'uri';
  const protocol = str(r.server_protocol, 32);
  const userAgent = str(r.http_user_agent);
  const referer = str(r.http_referer);
  const host = str(r.host, 256);
  if (protocol === undefined || userAgent === undefined || referer === undefined || host === undefined) return 'field';
  const q = uri.indexOf('?');
  return {
    kind: 'http', client, timeMs, method, uri, path: q < 0 ? uri : uri.slice(0, q), protocol, status,
    userAgent, referer, host,
    bytes: Math.max(0, num(r.body_bytes_sent) ?? 0),
    requestTimeMs: Math.max(0, (num(r.request_time) ?? 0) * 1000),
    connectionRequests: Math.max(0, num(r.connection_requests) ?? 0),
  };
}

/** The agent's sshd record: headers ssh.event and ssh.ip (ssh.user optional). */
export function parseSsh(headers: Record<string, string>, recordMs: number, lim: ParseLimits): SshEvent | Reject {
  const event = headers['ssh.event'];
  if (event === undefined) return 'not_ssh';
  const client = parseIp(headers['ssh.ip'], lim.prefixV4, lim.prefixV6);
  if (!client) return 'address';
  const user = headers['ssh.user'] ?? '';
  if (event.length > 64 || user.length > 256) return 'field';
  return { kind: 'ssh', client, timeMs: recordMs, event, user };
}

/**
 * The request headers a log line carries. nginx logs an absent header as an empty string, so an
 * empty value is left out: CRS would otherwise score "empty User-Agent" (920330) for every client
 * that sent none, which ModSecurity, seeing the header absent, does not at paranoia level 1.
 */
export function loggedHeaders(ev: { userAgent: string; referer: string; host: string }): Record<string, string> {
  const h: Record<string, string> = {};
  if (ev.userAgent) h['User-Agent'] = ev.userAgent;
  if (ev.referer) h.Referer = ev.referer;
  if (ev.host) h.Host = ev.host;
  return h;
}
