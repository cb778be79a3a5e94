// The web console's static files at /ui: built by `npm run build` (scripts/build-console.mjs) into
// dist/console/, read once at start, served from memory with an ETag and, when the client takes
// it, gzip. The files hold no data: everything the console shows comes through the authenticated
// WebSocket and HTTP routes, so serving them needs no token.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import type uWS from 'uWebSockets.js';
import { limits } from '../runtime/limits.js';
import { ChicagoError } from '../runtime/errors.js';
import { endHead, sendLarge } from './http.js';

export interface ConsoleAsset { body: Buffer; gzip: Buffer; etag: string; type: string }

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.map': 'application/json',
};

/** where `npm run build` puts the console, next to dist/src */
export const consoleDir = fileURLToPath(new URL('../../console/', import.meta.url));

// The page loads only its own files and talks only to its own node; no framing by other sites.
const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

/** Reads the built console (file name → asset); empty when it was not built. Bounded in count and size. */
export function loadConsole(dir = consoleDir): Map<string, ConsoleAsset> {
  const assets = new Map<string, ConsoleAsset>();
  if (!existsSync(dir)) return assets;
  let total = 0;
  for (const name of readdirSync(dir).sort()) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const body = readFileSync(path.join(dir, name));
    total += body.byteLength;
    if (assets.size >= limits.consoleFilesMax || total > limits.consoleBytesMax) {
      throw new Error(`the console in ${dir} is over ${limits.consoleFilesMax} files or ${limits.consoleBytesMax} bytes`);
    }
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    assets.set(name, { body, gzip: gzipOf(path.join(dir, name), body), etag, type });
  }
  return assets;
}

/**
 * The build's NAME.gz (scripts/build-console.mjs) unless the file is newer than it (edited since);
 * otherwise gzipped here, at start, so no request waits on a compression on the gateway thread.
 */
function gzipOf(file: string, body: Buffer): Buffer {
  try {
    if (statSync(`${file}.gz`).mtimeMs >= statSync(file).mtimeMs) return readFileSync(`${file}.gz`);
  } catch {
    // no .gz: a console not built by the build script
  }
  return zlib.gzipSync(body, { level: 9 });
}

/** What a request for /ui/{name} answers: pure, so the headers are tested without a socket. */
export function consoleReply(assets: Map<string, ConsoleAsset>, url: string, ifNoneMatch: string, acceptEncoding: string, method = 'GET'):
  { status: string; headers: Record<string, string>; body: Buffer | string } {
  // errors have the body every error of the node has (docs/http.md)
  const notFound = (why = '') => ({ status: '404 Not Found', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error: new ChicagoError('ROUTE_NOT_FOUND', method, `${url.slice(0, 200)}${why}`).toJSON() }) });
  if (assets.size === 0) return notFound(' (the console is not built: run npm run build)');
  const name = url === '/ui' || url === '/ui/' ? 'index.html' : url.slice('/ui/'.length);
  const asset = assets.get(name);
  if (!asset) return notFound();
  // the files take only GET and HEAD: another method on one is a 405 naming them, as on every route
  if (method !== 'GET' && method !== 'HEAD') {
    return { status: '405 Method Not Allowed', headers: { 'content-type': 'application/json', allow: 'GET, HEAD' }, body: JSON.stringify({ error: new ChicagoError('METHOD_NOT_ALLOWED', method, url.slice(0, 200)).toJSON() }) };
  }
  // no-cache: the browser keeps the files but asks each time (a 304 when unchanged), so a new
  // build is picked up at the next load
  const headers: Record<string, string> = { 'cache-control': 'no-cache', etag: asset.etag, vary: 'Accept-Encoding', ...(name === 'index.html' ? PAGE_HEADERS : { 'x-content-type-options': 'nosniff' }) };
  if (ifNoneMatch.split(',').some((t) => t.trim() === asset.etag)) return { status: '304 Not Modified', headers, body: '' };
  const gzip = /(^|[\s,])gzip($|[\s,;])/i.test(acceptEncoding) && !/gzip\s*;\s*q=0(\.0*)?($|[\s,])/i.test(acceptEncoding);
  return {
    status: '200 OK',
    headers: { ...headers, 'content-type': asset.type, ...(gzip ? { 'content-encoding': 'gzip' } : {}) },
    body: gzip ? asset.gzip : asset.body,
  };
}

/** /ui and /ui/* (GET and HEAD; other methods 405): registered before the catch-all HTTP route. */
export function attachConsole(app: uWS.TemplatedApp, assets: Map<string, ConsoleAsset>): void {
  const serve = (head: boolean) => (res: uWS.HttpResponse, req: uWS.HttpRequest) => {
    // uWS counts a response ended without a body, or one still being sent, as answered only with an abort handler attached
    res.onAborted(() => {});
    const reply = consoleReply(assets, req.getUrl(), req.getHeader('if-none-match'), req.getHeader('accept-encoding'), req.getMethod().toUpperCase());
    res.cork(() => {
      res.writeStatus(reply.status);
      for (const [k, v] of Object.entries(reply.headers)) res.writeHeader(k, v);
      if (head) endHead(res, reply.body);
      // a file goes out as the socket takes it, from the one shared copy: res.end would copy what a
      // slow reader leaves into uWS, per connection
      else if (typeof reply.body !== 'string' && reply.body.byteLength >= limits.httpAnswerCountedBytesMin) sendLarge(res, reply.body, () => {});
      else res.end(reply.body);
    });
  };
  app.get('/ui', serve(false));
  app.get('/ui/*', serve(false));
  app.head('/ui', serve(true));
  app.head('/ui/*', serve(true));
  app.any('/ui', serve(false));
  app.any('/ui/*', serve(false));
}
