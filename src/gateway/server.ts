// The node's single port: HTTP routes and the /v1/ws WebSocket, on uWebSockets.js.
import { readFile } from 'node:fs/promises';
import uWS from 'uWebSockets.js';
import { limits } from '../runtime/limits.js';
import { attachConsole, loadConsole } from './console.js';
import { attachHttp } from './http.js';
import { ParsePool } from './parse-pool.js';
import { attachWebSocket, type WebSocketEndpoint } from './ws.js';
import type { GatewayNode } from './admin-api.js';
import type { Logger } from '../runtime/log.js';
import type { SecurityConfig } from '../runtime/config.js';
import type { Authenticator } from './auth.js';

/**
 * Rejects with PortInUseError when a socket listens on host:port (or on the wildcard address).
 * Read from /proc/net/tcp{,6}: a bind probe would also trip over the connections a crashed node
 * left behind (FIN_WAIT, TIME_WAIT), which must not stop its restart.
 */
async function assertPortFree(host: string, port: number): Promise<void> {
  let tables: string[];
  try {
    tables = await Promise.all(['/proc/net/tcp', '/proc/net/tcp6'].map((f) => readFile(f, 'utf8').catch(() => '')));
  } catch {
    return; // no /proc: uWS's own listen is the only check
  }
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  const want = new Set([hexAddress(host), '00000000', '00000000000000000000000000000000'].filter(Boolean));
  for (const table of tables) {
    for (const line of table.split('\n').slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (state !== '0A' || !local) continue; // 0A: LISTEN
      const [addr, p] = local.split(':');
      if (p === portHex && want.has(addr)) throw new PortInUseError(host, port);
    }
  }
}

/** An IPv4 address as /proc/net/tcp writes it (little-endian hex); '' for anything else (names, IPv6). */
function hexAddress(host: string): string {
  const parts = host.split('.').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return '';
  return parts.reverse().map((n) => n.toString(16).toUpperCase().padStart(2, '0')).join('');
}

/** The node's port is taken (by another node or any other process). */
export class PortInUseError extends Error {
  constructor(readonly host: string, readonly port: number) {
    super(`cannot listen on ${host}:${port}: the address is in use or not available`);
    this.name = 'PortInUseError';
  }
}

/** True when the native uWS binary loaded; the package silently falls back to a slow JS one. */
export const uwsNative = 'SSLApp' in (uWS as object);

export interface Gateway {
  url: string;
  port: number;
  /** takes a new token list and allowed origins (SIGHUP) */
  reloadSecurity(sec: SecurityConfig): void;
  close(): Promise<void>;
}

/** `routes` adds WebSocket endpoints of other components (the cluster's `/v1/peer`). */
export async function startGateway(node: GatewayNode, log: Logger, auth: Authenticator, routes?: (app: uWS.TemplatedApp) => void): Promise<Gateway> {
  const tls = node.config.tls;
  // The CA is not given to uWS: it would then demand a client certificate from every client.
  const app = tls ? uWS.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile }) : uWS.App();
  routes?.(app);
  // WebSocket first: the HTTP catch-all would otherwise take the upgrade request.
  const ws: WebSocketEndpoint = attachWebSocket(app, { api: node, log, auth, memory: node.memory, metrics: node.metrics, secure: Boolean(tls) });
  // the console's files, before the HTTP catch-all; a node built without them says so at /ui
  const consoleAssets = loadConsole();
  if (consoleAssets.size === 0) log.info('the web console is not built (npm run build): /ui answers 404');
  attachConsole(app, consoleAssets);
  const parsePool = new ParsePool();
  attachHttp(app, node, parsePool, log, node.metrics, auth);
  const { host, port } = node.config;
  // uWS listens with SO_REUSEPORT, so a second node on a port in use would share it silently. Its
  // exclusive mode cannot bind while a crashed node's old connections linger. So: is anything
  // listening there? Then uWS's usual listen.
  if (port !== 0) await assertPortFree(host, port);
  const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(host, port, (socket) => (socket ? resolve(socket) : reject(new PortInUseError(host, port))));
  });
  const bound = uWS.us_socket_local_port(listen);
  const url = `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  if (!uwsNative) log.warn('uWebSockets.js native build did not load: using its slow JS fallback');
  return {
    url,
    port: bound,
    reloadSecurity: (sec) => auth.reload(sec),
    async close() {
      uWS.us_listen_socket_close(listen);
      await ws.drain(limits.shutdownDrainMs);
      ws.closeAll();
      await parsePool.close();
    },
  };
}
