// `chicago bridge --config FILE`: the standalone bridge process. SIGTERM/SIGINT stop it after the
// current round; GET /metrics (and /v1/bridge/lag as JSON) are served when metrics.port is set.
import http from 'node:http';
import { Bridge } from './bridge.js';
import { type BridgeConfig, loadBridgeConfig } from './config.js';
import { createLogger } from '../runtime/log.js';

export { Bridge } from './bridge.js';
export { type BridgeConfig, resolveBridgeConfig, loadBridgeConfig, bridgeConfigSchema } from './config.js';

function serveMetrics(bridge: Bridge, cfg: BridgeConfig): Promise<http.Server | undefined> {
  if (cfg.metrics.port === 0) return Promise.resolve(undefined);
  const server = http.createServer((req, res) => {
    void (async () => {
      if (req.method === 'GET' && req.url === '/metrics') {
        res.writeHead(200, { 'content-type': bridge.metrics.registry.contentType });
        res.end(await bridge.metrics.registry.metrics());
      } else if (req.method === 'GET' && req.url === '/v1/bridge/lag') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ group: cfg.group, state: bridge.status, partitions: bridge.lag() }));
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'ROUTE_NOT_FOUND', message: `no route ${req.method} ${req.url}`, retryable: false } }));
      }
    })().catch((e: unknown) => {
      res.writeHead(500);
      res.end(String(e));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.metrics.port, cfg.metrics.host, () => resolve(server));
  });
}

/** Runs the bridge until SIGTERM/SIGINT (resolves) or a fatal error (rejects). */
export async function runBridge(configPath: string): Promise<void> {
  const cfg = loadBridgeConfig(configPath);
  const log = createLogger(cfg.logLevel, { component: 'bridge', group: cfg.group });
  const bridge = new Bridge(cfg, log);
  const server = await serveMetrics(bridge, cfg);
  if (server) {
    const a = server.address();
    log.info({ url: typeof a === 'object' && a ? `http://${cfg.metrics.host}:${a.port}` : undefined }, 'bridge metrics served');
  }
  let stopping: Promise<void> | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    log.info({ signal: sig }, 'bridge stopping');
    stopping ??= bridge.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    await bridge.start();
    await bridge.done();
    await stopping;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}
