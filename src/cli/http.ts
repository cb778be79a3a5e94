// The one HTTP call helper: every request has a deadline, and every failure becomes a CliError
// with the exit code scripts expect (2 the node said no, 3 the node could not be reached).
// Requests go through node:http(s), not fetch: fetch's first call compiles undici's WebAssembly
// HTTP parser, which costs a CLI run more CPU than everything else it does.
import { type Parsed, parseDuration, str, flag } from './args.js';
import { CliError, EXIT, ServerError, UsageError } from './errors.js';
import { limits } from '../runtime/limits.js';
import { authHeader, resolveToken, TokenFileError } from '../client/token.js';
import { CaFileError, readCa } from '../client/tls.js';

export const DEFAULT_URL = 'http://127.0.0.1:7070';
const DEFAULT_TIMEOUT_MS = 30_000;

type Query = Record<string, string | number | undefined>;

export interface RequestOptions {
  query?: Query;
  /** bytes go as they are, anything else as JSON */
  body?: unknown;
  /** a long poll: the node may hold the request this long, on top of the usual deadline */
  waitMs?: number;
}

export class Http {
  readonly base: URL;

  constructor(url: string, readonly timeoutMs: number, private readonly signal?: AbortSignal, readonly token?: string, readonly ca?: string) {
    try {
      this.base = new URL(url);
    } catch {
      throw new UsageError(`--url: not a URL: '${url}'`);
    }
  }

  /** The parsed JSON answer; undefined for an empty one (204). */
  json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T | undefined> {
    return this.exchange(method, path, opts, (res) => {
      const text = res.body.toString('utf8');
      return text === '' ? undefined : (JSON.parse(text) as T);
    });
  }

  /** Like `json`, for routes that always answer with a body. */
  async must<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.json<T>(method, path, opts);
    if (res === undefined) throw new CliError(EXIT.server, `error EMPTY_RESPONSE: ${method} ${path} answered without a body`);
    return res;
  }

  /** The body as bytes; undefined when the node says the thing is absent (404 NOT_FOUND). */
  bytes(method: string, path: string, opts: RequestOptions = {}): Promise<Uint8Array | undefined> {
    // a copy of its own: a small answer is a view of Node's shared buffer pool
    return this.exchange(method, path, opts, (res) => new Uint8Array(res.body), true);
  }

  private async exchange<T>(
    method: string,
    path: string,
    opts: RequestOptions,
    read: (res: Answer) => T,
    absentOk = false,
  ): Promise<T | undefined> {
    const url = new URL(path, this.base);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const deadlineMs = this.timeoutMs + (opts.waitMs ?? 0);
    const timeout = AbortSignal.timeout(deadlineMs);
    const signal = this.signal ? AbortSignal.any([timeout, this.signal]) : timeout;
    const { body, headers } = encodeBody(opts.body);
    try {
      // The signal covers the body read too, so a node that stalls mid-response still times out.
      const res = await send(url, method, { ...headers, ...authHeader(this.token) }, body, signal, this.ca);
      if (res.status >= 200 && res.status < 300) return read(res);
      const err = serverError(res);
      if (absentOk && res.status === 404 && err.code === 'NOT_FOUND') return undefined;
      if (err.code === 'UNAUTHENTICATED' && !this.token) {
        throw new ServerError(err.status, err.code, `${err.message.slice(`error ${err.code}: `.length)} (this command sent no token: --token, --token-file or CHICAGO_TOKEN)`, err.retryable);
      }
      throw err;
    } catch (err) {
      throw this.translate(err, deadlineMs);
    }
  }

  private translate(err: unknown, deadlineMs: number): unknown {
    if (err instanceof CliError) return err;
    const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
    // The caller's own abort (Ctrl-C) is not a failure; let it through for the caller to see.
    if (e.name === 'AbortError') return err;
    const where = this.base.origin;
    if (e.name === 'TimeoutError') return new CliError(EXIT.unreachable, `no answer from ${where} within ${deadlineMs} ms`);
    const code = e.code ?? e.cause?.code;
    if (code === 'ECONNREFUSED') {
      return new CliError(
        EXIT.unreachable,
        `cannot connect to ${where}: connection refused (is a node running there? set --url or CHICAGO_URL)`,
      );
    }
    if (code !== undefined && UNTRUSTED_CERT.has(code) && !this.ca) {
      return new CliError(EXIT.unreachable, `cannot reach ${where}: ${code} (the node's certificate is not one this machine trusts: give its CA with --ca FILE or CHICAGO_CA)`);
    }
    if (code === 'ANSWER_TOO_LARGE') return new CliError(EXIT.unreachable, `${where} sent ${e.message}: not a Chicago node's answer (check --url)`);
    return new CliError(EXIT.unreachable, `cannot reach ${where}: ${code ?? e.cause?.message ?? e.message}`);
  }
}

/** TLS errors of a certificate no trusted CA signed (a node's own CA, docs/security.md) */
const UNTRUSTED_CERT = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT']);

function encodeBody(body: unknown): { body?: Uint8Array | string; headers: Record<string, string> } {
  if (body === undefined) return { headers: {} };
  if (body instanceof Uint8Array) return { body, headers: { 'content-type': 'application/octet-stream' } };
  return { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
}

/** A whole answer, held in memory, of at most limits.cliAnswerBytesMax. */
interface Answer { status: number; statusText: string; body: Buffer }

/**
 * One request. It settles once: with the answer, with the transport's error (ECONNREFUSED, a TLS
 * failure, a reset), or with the signal's reason (a TimeoutError, or the caller's abort) even when the
 * node stalls half-way through the answer. `ca` (PEM) is trusted for https:// in place of the system CAs.
 */
async function send(url: URL, method: string, headers: Record<string, string>, body: Uint8Array | string | undefined, signal: AbortSignal, ca: string | undefined): Promise<Answer> {
  // https (and tls with it) loads only for https:// URLs
  const { request } = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  signal.throwIfAborted();
  return new Promise<Answer>((resolve, reject) => {
    const onAbort = () => {
      req.destroy();
      reject(signal.reason);
    };
    const req = request(url, { method, headers, ...(ca ? { ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        // the node's largest answer (a JSON fetch) is well below it; anything larger is not the node talking
        if (bytes > limits.cliAnswerBytesMax) res.destroy(Object.assign(new Error(`an answer over ${limits.cliAnswerBytesMax} bytes`), { code: 'ANSWER_TOO_LARGE' }));
        else chunks.push(c);
      });
      res.once('end', () => {
        signal.removeEventListener('abort', onAbort);
        resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', body: Buffer.concat(chunks) });
      });
      res.on('error', fail);
      // a node that dies mid-answer: the socket closes before the end
      res.once('close', () => {
        if (!res.complete) fail(Object.assign(new Error('the connection closed before the whole answer came'), { code: 'ECONNRESET' }));
      });
    });
    // `on`, not `once`: a request can report more than one error, and the later ones must not go unhandled
    function fail(err: Error) {
      signal.removeEventListener('abort', onAbort);
      reject(signal.aborted ? signal.reason : err);
    }
    req.on('error', fail);
    signal.addEventListener('abort', onAbort, { once: true });
    req.end(body);
  });
}

function serverError(res: Answer): ServerError {
  const text = res.body.toString('utf8');
  try {
    const { error } = JSON.parse(text) as { error?: { code?: string; message?: string; retryable?: boolean } };
    if (error?.code) return new ServerError(res.status, error.code, error.message ?? '', error.retryable === true);
  } catch {
    // not JSON: a proxy or a crashed handler; show what came back
  }
  return new ServerError(res.status, `HTTP_${res.status}`, text.slice(0, 200) || res.statusText, res.status >= 500);
}

/** The client a command's `--url` / `--timeout` describe. */
export function httpFrom(p: Parsed, signal?: AbortSignal): Http {
  const t = str(p, 'timeout');
  const timeoutMs = t === undefined ? DEFAULT_TIMEOUT_MS : parseDuration(t);
  if (timeoutMs === undefined || timeoutMs <= 0) throw new UsageError(`--timeout: not a duration: '${t}'`, p.command);
  return new Http(str(p, 'url') ?? process.env.CHICAGO_URL ?? DEFAULT_URL, timeoutMs, signal, tokenFrom(p), caFrom(p));
}

/** --ca FILE or CHICAGO_CA: a CA to trust for https:// URLs */
export function caFrom(p: Parsed): string | undefined {
  try {
    return readCa(str(p, 'ca') ?? process.env.CHICAGO_CA);
  } catch (err) {
    if (err instanceof CaFileError) throw new UsageError(err.message, p.command);
    throw err;
  }
}

/** --token, --token-file, CHICAGO_TOKEN or CHICAGO_TOKEN_FILE */
export function tokenFrom(p: Parsed): string | undefined {
  try {
    return resolveToken({ token: str(p, 'token'), tokenFile: str(p, 'token-file') });
  } catch (err) {
    if (err instanceof TokenFileError) throw new UsageError(err.message, p.command);
    throw err;
  }
}

export const wantsJson = (p: Parsed): boolean => flag(p, 'json');

export const enc = encodeURIComponent;
