// The node's single port: HTTP routes and the /v1/ws WebSocket, on uWebSockets.js.
import uWS from 'uWebSockets.js';
import { limits } from '../runtime/limits.js';
import { attachHttp } from './http.js';
import { ParsePool } from './parse-pool.js';
import { attachWebSocket, type WebSocketEndpoint } from './ws.js';
import type { ChicagoNode } from '../node/node.js';
import type { Logger } from '../runtime/log.js';
import type { SecurityConfig } from '../runtime/config.js';
import type { Authenticator } from './auth.js';

/** uWS's listen(host, port, options, cb): the typings lack it, the binary has it (and no ListenOptions export) */
interface ListenExclusive { listen(host: string, port: number, options: number, cb: (s: uWS.us_listen_socket | false) => void): void }
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;

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
export async function startGateway(node: ChicagoNode, log: Logger, auth: Authenticator, routes?: (app: uWS.TemplatedApp) => void): Promise<Gateway> {
  const tls = node.config.tls;
  // The CA is not given to uWS: it would then demand a client certificate from every client.
  const app = tls ? uWS.SSLApp({ cert_file_name: tls.certFile, key_file_name: tls.keyFile }) : uWS.App();
  routes?.(app);
  // WebSocket first: the HTTP catch-all would otherwise take the upgrade request.
  const ws: WebSocketEndpoint = attachWebSocket(app, { api: node, log, auth, memory: node.memory, metrics: node.metrics });
  const parsePool = new ParsePool();
  attachHttp(app, node, parsePool, log, node.metrics, auth);
  const { host, port } = node.config;
  // Exclusive: a second node on a port in use fails here instead of sharing it (SO_REUSEPORT).
  const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    (app as unknown as ListenExclusive).listen(host, port, LIBUS_LISTEN_EXCLUSIVE_PORT, (socket) => (socket ? resolve(socket) : reject(new PortInUseError(host, port))));
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
