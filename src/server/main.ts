// `chicago server`: load config, start the node and its gateway, stop safely on signals.
import { ConfigError, isLoopback, keysNeedingRestart, loadConfig, type SecurityConfig } from '../runtime/config.js';
import { Authenticator } from '../gateway/auth.js';
import { resolveToken } from '../client/token.js';
import { createLogger } from '../runtime/log.js';
import { ChicagoNode } from '../node/node.js';
import { resolveBridgeConfig } from '../bridge/config.js';
import { startGateway, uwsNative } from '../gateway/server.js';

/** Node-to-node links: replication traffic goes to the replicas, forwarded requests to this leader. */
async function clusterLinks(node: ChicagoNode, host: string, log: ReturnType<typeof createLogger>, auth: Authenticator, peerToken: { current: string | undefined }) {
  const { PeerNetwork } = await import('../cluster/peer.js');
  const peerAuth = {
    get token() { return peerToken.current; },
    tls: node.linkTls,
    accepts: async (authorization: string) => {
      if (auth.open) return true;
      try {
        return auth.may(await auth.authenticate(authorization), 'cluster', 'peer');
      } catch {
        return false;
      }
    },
  };
  const peers = new PeerNetwork(node.self, host, log, peerAuth, node.workerLinks, node.linkKey);
  peers.setHandlers({
    forwarded: (p, body, write) => node.local(p, body, 0, write),
    peerLinks: (peer, urls, key) => node.setPeerLinks(peer, urls, key),
  });
  return peers;
}

export interface ServerFlags { config?: string; dataDir?: string; host?: string; port?: number; nodeId?: string; etcd?: string; insecure?: boolean }

export async function runServer(flags: ServerFlags): Promise<void> {
  const sources = {
    file: flags.config,
    env: process.env,
    flags: {
      dataDir: flags.dataDir, host: flags.host, port: flags.port, nodeId: flags.nodeId,
      etcd: flags.etcd ? flags.etcd.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
      ...(flags.insecure ? { security: { insecure: true } } : {}),
    },
  };
  const config = loadConfig(sources, { bridge: resolveBridgeConfig });
  // Open by default only where nobody else can reach it.
  if (config.security.tokens.length === 0 && !isLoopback(config.host) && !config.security.insecure) {
    throw new ConfigError(`refusing to serve on ${config.host} without tokens: add security.tokens (chicago token create) or pass --insecure`);
  }
  const log = createLogger(config.logLevel, { node: config.nodeId });
  log.info({ config: { ...config, security: redacted(config.security) }, uws: uwsNative ? 'native' : 'js-fallback', nodeVersion: process.version }, 'starting with resolved config');
  if (process.platform === 'linux' && process.env.MALLOC_ARENA_MAX === undefined && process.env.GLIBC_TUNABLES === undefined) {
    log.warn('glibc malloc settings not set, so freed buffers stay resident: run bin/chicago.js itself (npm start, npx chicago server; `node bin/chicago.js` skips the line that sets them) or set MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ (docs/security.md, Memory)');
  }
  if (config.security.tokens.length === 0) {
    log.warn({ host: config.host }, isLoopback(config.host)
      ? 'no tokens configured: the node is open to every process on this host (security.tokens)'
      : 'no tokens configured and --insecure: the node is open to anyone who can reach it');
  }

  const auth = new Authenticator(config.security);
  // a holder: SIGHUP re-reads it, and the next peer link dialled presents the new token
  const peerToken = { current: readPeerToken(config.security) };
  if (config.etcd.length > 0 && !auth.open && !peerToken.current) {
    throw new ConfigError('a cluster node with tokens needs security.peerToken or security.peerTokenFile (a token with cluster:peer) to link to the others');
  }
  const node = await ChicagoNode.start(config, log);
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    const peers = node.cluster.clustered ? await clusterLinks(node, config.host, log, auth, peerToken) : undefined;
    gateway = await startGateway(node, log, auth, peers ? (app) => peers.attach(app) : undefined);
    node.serveAt(gateway.url, peers);
    if (peers) await node.joinCluster(gateway.url, peers);
  } catch (err) {
    // The workers would keep the process alive: stop them so the failure ends the process.
    await node.stop();
    throw err;
  }
  log.info({ url: gateway.url, port: gateway.port }, 'serving');

  // A `bridge:` section runs the Kafka bridge in this process (src/bridge/in-process.ts); kafkajs
  // is loaded only then.
  let bridge: { stop(): Promise<void> } | undefined;
  if (config.bridge) {
    const { startInProcessBridge } = await import('../bridge/in-process.js');
    const { BridgeConfigError } = await import('../bridge/config.js');
    try {
      bridge = await startInProcessBridge(config.bridge, gateway.url, node, log);
    } catch (err) {
      // a section that cannot run (an unreadable chicago.tokenFile, say) stops the start, as a bad key does
      await gateway.close();
      await node.stop();
      if (err instanceof BridgeConfigError) throw new ConfigError(`invalid config: bridge section: ${err.message}`);
      throw err;
    }
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      // A repeated SIGTERM (some supervisors signal the whole group) waits for the drain, which
      // has its own deadlines; a second Ctrl-C means "now".
      if (signal === 'SIGINT') { log.warn('second SIGINT: exiting now'); process.exit(1); }
      return;
    }
    stopping = true;
    log.info({ signal }, 'stopping: draining in-flight work');
    // The bridge first: its round in flight commits or aborts while the node still serves it.
    (bridge ? bridge.stop().catch((err: unknown) => log.error({ err }, 'bridge did not stop cleanly')) : Promise.resolve())
      .then(() => node.handOff()).then(() => gateway.close()).then(() => node.stop()).then(
      () => process.exit(0),
      (err) => { log.error({ err }, 'unclean stop'); process.exit(1); },
    );
  };
  // SIGHUP re-reads the config file's security section: new, revoked and expired tokens and the
  // allowed origins take effect at once (other keys need a restart).
  process.on('SIGHUP', () => {
    try {
      const next = loadConfig(sources, { bridge: resolveBridgeConfig });
      if (next.security.tokens.length === 0 && !isLoopback(config.host) && !next.security.insecure) throw new ConfigError('the new config has no tokens on a non-loopback address');
      const nextPeerToken = readPeerToken(next.security);
      if (config.etcd.length > 0 && next.security.tokens.length > 0 && !nextPeerToken) throw new ConfigError('the new config has tokens but no security.peerToken or security.peerTokenFile');
      gateway.reloadSecurity(next.security);
      peerToken.current = nextPeerToken;
      log.info({ tokens: next.security.tokens.length, allowedOrigins: next.security.allowedOrigins }, 'security settings reloaded');
      const unapplied = keysNeedingRestart(config, next);
      if (unapplied.length > 0) log.warn({ keys: unapplied }, 'SIGHUP: these keys changed and take effect only at the next restart');
    } catch (err) {
      log.error({ err: (err as Error).message }, 'SIGHUP: config not reloaded, the previous settings stay');
    }
  });
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** The token this node presents on its peer links (security.peerToken, or the first line of peerTokenFile). */
function readPeerToken(sec: SecurityConfig): string | undefined {
  try {
    return resolveToken({ token: sec.peerToken, tokenFile: sec.peerTokenFile, env: {} });
  } catch (err) {
    throw new ConfigError(`security.peerTokenFile: ${(err as Error).message}`);
  }
}

/** The security section for the log: token ids, names and scopes, never their hashes. */
function redacted(sec: SecurityConfig) {
  return { ...sec, ...(sec.peerToken ? { peerToken: '(set)' } : {}), tokens: sec.tokens.map((t) => ({ id: t.id, name: t.name, scopes: t.scopes, ...(t.revoked ? { revoked: true } : {}) })) };
}
