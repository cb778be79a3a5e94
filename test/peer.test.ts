// A peer whose process is gone (kill -9: nothing listens at its address any more) is told apart
// from one that is only silent (SIGSTOP: the kernel still accepts connections for it, nothing
// answers): the first fails over sooner (cluster.ts GONE_SUSPECT_AFTER_MS).
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerNetwork } from '../src/cluster/peer.js';
import { createLogger } from '../src/runtime/log.js';
import { nodeId } from '../src/runtime/ids.js';

const closers: Array<() => void> = [];
afterEach(() => { for (const c of closers.splice(0)) c(); });

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

describe('peer links', () => {
  it('tell a peer whose process is gone from one that is paused', async () => {
    // A port nothing listens on: bound once, then closed.
    const vacated = net.createServer();
    const gonePort = await listen(vacated);
    await new Promise((r) => vacated.close(r));
    // A paused process: its listening socket still completes TCP handshakes; nothing answers.
    const paused = net.createServer(() => {});
    const pausedPort = await listen(paused);
    closers.push(() => paused.close());

    const peers = new PeerNetwork(nodeId('self'), '127.0.0.1', createLogger('silent'));
    closers.push(() => peers.close());
    peers.setPeers(new Map([[nodeId('gone'), `http://127.0.0.1:${gonePort}`], [nodeId('paused'), `http://127.0.0.1:${pausedPort}`]]));

    const t0 = Date.now();
    while (!peers.gone(nodeId('gone'))) {
      if (Date.now() - t0 > 2_000) throw new Error('a refused peer was not reported gone within 2 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(peers.gone(nodeId('paused'))).toBe(false);
  });
});
