// The node's single port: HTTP routes and the /v1/ws WebSocket, on uWebSockets.js.
import uWS from 'uWebSockets.js';
import { limits } from '../runtime/limits.js';
import { attachHttp } from './http.js';
import { ParsePool } from './parse-pool.js';
import { attachWebSocket, type WebSocketEndpoint } from './ws.js';
import type { ChicagoNode } from '../node/node.js';
import type { Logger } from '../runtime/log.js';

/** True when the native uWS binary loaded; the package silently falls back to a slow JS one. */
export const uwsNative = 'SSLApp' in (uWS as object);

export interface Gateway { url: string; port: number; close(): Promise<void> }

/** `routes` adds WebSocket endpoints of other components (the cluster's `/v1/peer`). */
export async function startGateway(node: ChicagoNode, log: Logger, routes?: (app: uWS.TemplatedApp) => void): Promise<Gateway> {
  const app = uWS.App();
  routes?.(app);
  // WebSocket first: the HTTP catch-all would otherwise take the upgrade request.
  const ws: WebSocketEndpoint = attachWebSocket(app, { api: node, log, metrics: node.metrics });
  const parsePool = new ParsePool();
  attachHttp(app, node, parsePool, log, node.metrics);
  const { host, port } = node.config;
  const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(host, port, (socket) => (socket ? resolve(socket) : reject(new Error(`cannot listen on ${host}:${port}`))));
  });
  const bound = uWS.us_socket_local_port(listen);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  if (!uwsNative) log.warn('uWebSockets.js native build did not load: using its slow JS fallback');
  return {
    url,
    port: bound,
    async close() {
      uWS.us_listen_socket_close(listen);
      await ws.drain(limits.shutdownDrainMs);
      ws.closeAll();
      await parsePool.close();
    },
  };
}
