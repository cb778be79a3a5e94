// A peer whose process is gone (kill -9: nothing listens at its address any more) is told apart
// from one that is only silent (SIGSTOP: the kernel still accepts connections for it, nothing
// answers): the first fails over sooner (cluster.ts GONE_SUSPECT_AFTER_MS). The worker links a
// peer announces in its hello reach this node's workers, also after its membership lapsed.
import net from 'node:net';
import uWS from 'uWebSockets.js';
import WebSocket from 'ws';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerNetwork } from '../src/cluster/peer.js';
import { createLogger } from '../src/runtime/log.js';
import { nodeId } from '../src/runtime/ids.js';
import { slow } from './helpers/slow.js';

const closers: Array<() => void> = [];
/** a node without tokens: every peer link accepted */
const openAuth = { accepts: async () => true };
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

    const peers = new PeerNetwork(nodeId('self'), '127.0.0.1', createLogger('silent'), openAuth);
    closers.push(() => peers.close());
    peers.setPeers(new Map([[nodeId('gone'), `http://127.0.0.1:${gonePort}`], [nodeId('paused'), `http://127.0.0.1:${pausedPort}`]]));

    const t0 = Date.now();
    while (!peers.gone(nodeId('gone'))) {
      if (Date.now() - t0 > slow(2_000)) throw new Error(`a refused peer was not reported gone within ${slow(2_000)} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
    // a window to catch a wrong verdict on the paused peer (it is never refused, so it need not scale)
    await new Promise((r) => setTimeout(r, 300));
    expect(peers.gone(nodeId('paused'))).toBe(false);
  });

  it('hands the worker links a peer announces to the workers, withdraws them when it leaves membership and restores them when it is back', async () => {
    const announced: Array<[string, string[], string]> = [];
    const peers = new PeerNetwork(nodeId('self'), '127.0.0.1', createLogger('silent'), openAuth);
    closers.push(() => peers.close());
    peers.setHandlers({ replication: () => {}, forwarded: async () => ({ res: null, replicas: 0 }), peerLinks: (n, urls, key) => { announced.push([n, urls, key]); } });
    const app = uWS.App();
    peers.attach(app);
    const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen')))));
    closers.push(() => uWS.us_listen_socket_close(listen));
    const links = ['ws://127.0.0.9:4001', 'ws://127.0.0.9:4002'];
    // the peer's outbound link: its hello names its workers' links
    const ws = new WebSocket(`ws://127.0.0.1:${uWS.us_socket_local_port(listen)}/v1/peer`);
    closers.push(() => ws.terminate());
    await new Promise((r) => ws.once('open', r));
    ws.send(new Packr({ useRecords: false }).pack({ t: 'hello', from: 'other', links, key: 'k' }));
    await expect.poll(() => announced, { timeout: slow(1_000) }).toEqual([['other', links, 'k']]);

    peers.setPeers(new Map([[nodeId('other'), 'http://127.0.0.9:1']]));
    peers.setPeers(new Map()); // its lease lapsed
    peers.setPeers(new Map([[nodeId('other'), 'http://127.0.0.9:1']])); // it re-registered; its link to us never dropped
    // (joining membership repeats what it announced: the workers ignore links they already have)
    expect(announced).toEqual([['other', links, 'k'], ['other', links, 'k'], ['other', [], ''], ['other', links, 'k']]);
  });

  it('refuses a peer link whose token the node does not accept, before any frame is read', async () => {
    const tried: string[] = [];
    const peers = new PeerNetwork(nodeId('self'), '127.0.0.1', createLogger('silent'), { accepts: async (h) => { tried.push(h); return h === 'Bearer good'; } });
    closers.push(() => peers.close());
    const announced: string[] = [];
    peers.setHandlers({ replication: () => {}, forwarded: async () => ({ res: null, replicas: 0 }), peerLinks: (n) => { announced.push(n); } });
    const app = uWS.App();
    peers.attach(app);
    const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen')))));
    closers.push(() => uWS.us_listen_socket_close(listen));
    const url = `ws://127.0.0.1:${uWS.us_socket_local_port(listen)}/v1/peer`;
    const bad = new WebSocket(url, { headers: { authorization: 'Bearer bad' } });
    const status = await new Promise<number>((resolve) => bad.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
    const good = new WebSocket(url, { headers: { authorization: 'Bearer good' } });
    closers.push(() => good.terminate());
    await new Promise((r) => good.once('open', r));
    good.send(new Packr({ useRecords: false }).pack({ t: 'hello', from: 'other', links: ['ws://127.0.0.9:1'], key: 'k' }));
    await expect.poll(() => announced, { timeout: slow(1_000) }).toEqual(['other']);
    expect(tried).toEqual(['Bearer bad', 'Bearer good']);
  });
});
