// A peer whose process is gone (kill -9: nothing listens at its address any more) is told apart
// from one that is only silent (SIGSTOP: the kernel still accepts connections for it, nothing
// answers): the first fails over sooner (cluster.ts GONE_SUSPECT_AFTER_MS). The worker links a
// peer announces in its hello reach this node's workers, also after its membership lapsed. The
// hello names the peer protocol version; a peer speaking another is refused, saying why.
import net from 'node:net';
import uWS from 'uWebSockets.js';
import WebSocket from 'ws';
import { Packr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerNetwork, PEER_PROTOCOL_VERSION, PEER_VERSION_REFUSED } from '../src/cluster/peer.js';
import type { Logger } from '../src/runtime/log.js';
import { WebSocketServer } from 'ws';
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

/** Serves the node's `/v1/peer` on a port of its own; its URL. */
async function serve(peers: PeerNetwork): Promise<string> {
  const app = uWS.App();
  peers.attach(app);
  const listen = await new Promise<uWS.us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (s) => (s ? resolve(s) : reject(new Error('listen')))));
  closers.push(() => uWS.us_listen_socket_close(listen));
  return `ws://127.0.0.1:${uWS.us_socket_local_port(listen)}/v1/peer`;
}

/** A node serving `/v1/peer` that takes only the authorization `accepted`: what it was shown, whose hellos it took, its URL. */
async function servedAccepting(self: string, accepted: string): Promise<{ tried: string[]; announced: string[]; url: string }> {
  const tried: string[] = [];
  const peers = new PeerNetwork(nodeId(self), '127.0.0.1', createLogger('silent'), { accepts: async (h) => { tried.push(h); return h === accepted; } });
  closers.push(() => peers.close());
  const announced: string[] = [];
  peers.setHandlers({ forwarded: async () => ({ res: null, replicas: 0 }), peerLinks: (n) => { announced.push(n); } });
  return { tried, announced, url: await serve(peers) };
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
    peers.setHandlers({ forwarded: async () => ({ res: null, replicas: 0 }), peerLinks: (n, urls, key) => { announced.push([n, urls, key]); } });
    const links = ['ws://127.0.0.9:4001', 'ws://127.0.0.9:4002'];
    // the peer's outbound link: its hello names its workers' links
    const ws = new WebSocket(await serve(peers));
    closers.push(() => ws.terminate());
    await new Promise((r) => ws.once('open', r));
    ws.send(new Packr({ useRecords: false }).pack({ t: 'hello', from: 'other', v: PEER_PROTOCOL_VERSION, links, key: 'k' }));
    await expect.poll(() => announced, { timeout: slow(1_000) }).toEqual([['other', links, 'k']]);

    peers.setPeers(new Map([[nodeId('other'), 'http://127.0.0.9:1']]));
    peers.setPeers(new Map()); // its lease lapsed
    peers.setPeers(new Map([[nodeId('other'), 'http://127.0.0.9:1']])); // it re-registered; its link to us never dropped
    // (joining membership repeats what it announced: the workers ignore links they already have)
    expect(announced).toEqual([['other', links, 'k'], ['other', links, 'k'], ['other', [], ''], ['other', links, 'k']]);
  });

  it('refuses a peer link whose token the node does not accept, before any frame is read', async () => {
    const { tried, announced, url } = await servedAccepting('self', 'Bearer good');
    const bad = new WebSocket(url, { headers: { authorization: 'Bearer bad' } });
    const status = await new Promise<number>((resolve) => bad.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
    const good = new WebSocket(url, { headers: { authorization: 'Bearer good' } });
    closers.push(() => good.terminate());
    await new Promise((r) => good.once('open', r));
    good.send(new Packr({ useRecords: false }).pack({ t: 'hello', from: 'other', v: PEER_PROTOCOL_VERSION, links: ['ws://127.0.0.9:1'], key: 'k' }));
    await expect.poll(() => announced, { timeout: slow(1_000) }).toEqual(['other']);
    expect(tried).toEqual(['Bearer bad', 'Bearer good']);
  });

  it('says once, on the dialling side, that a peer refuses its peer token, and presents the token current at each dial', async () => {
    const served = await servedAccepting('receiver', 'Bearer new');
    const { tried, announced: linked } = served;
    const url = served.url.replace(/^ws/, 'http').replace(/\/v1\/peer$/, '');

    const errors: Array<[Record<string, unknown>, string]> = [];
    const log = { error: (o: Record<string, unknown>, m: string) => errors.push([o, m]), warn: () => {}, info: () => {}, debug: () => {} } as unknown as Logger;
    const dialAuth = { token: 'old', accepts: async () => true };
    const dialler = new PeerNetwork(nodeId('dialler'), '127.0.0.1', log, dialAuth);
    closers.push(() => dialler.close());
    dialler.setPeers(new Map([[nodeId('receiver'), url]]));
    await expect.poll(() => tried.length, { timeout: slow(5_000) }).toBeGreaterThanOrEqual(2); // it retries
    expect(errors).toEqual([[{ peer: 'receiver' }, expect.stringContaining('peer refused this node\'s link: it does not accept this node\'s security.peerToken')]]);
    // a rotated token (SIGHUP) goes out with the next dial
    dialAuth.token = 'new';
    await expect.poll(() => linked, { timeout: slow(10_000) }).toContain('dialler');
    expect(tried.at(-1)).toBe('Bearer new');
  });

  it('sends its protocol version in its hello, and refuses a peer speaking another with a clear error on both sides', async () => {
    const errors: Array<[Record<string, unknown>, string]> = [];
    const log = { error: (o: Record<string, unknown>, m: string) => errors.push([o, m]), warn: () => {}, info: () => {}, debug: () => {} } as unknown as Logger;
    const peers = new PeerNetwork(nodeId('self'), '127.0.0.1', log, openAuth);
    closers.push(() => peers.close());
    const announced: string[] = [];
    peers.setHandlers({ forwarded: async () => ({ res: null, replicas: 0 }), peerLinks: (n) => { announced.push(n); } });
    const url = await serve(peers);
    const packr = new Packr({ useRecords: false });
    // an older node (no version: 1) and a newer one: refused, and told why
    for (const [v, said] of [[undefined, '1'], [99, '99']] as const) {
      const old = new WebSocket(url);
      closers.push(() => old.terminate());
      await new Promise((r) => old.once('open', r));
      old.send(packr.pack({ t: 'hello', from: `v${said}`, ...(v === undefined ? {} : { v }), links: ['ws://127.0.0.9:1'], key: 'k' }));
      const [code, reason] = await new Promise<[number, string]>((resolve) => old.once('close', (c, r) => resolve([c, r.toString()])));
      expect(code).toBe(PEER_VERSION_REFUSED);
      expect(reason).toBe(`peer protocol version ${said} is not supported; this node speaks ${PEER_PROTOCOL_VERSION}`);
    }
    expect(announced).toEqual([]); // nothing it said was taken
    expect(errors.map(([o, m]) => [o.peer, m])).toEqual([['v1', 'refused a peer link'], ['v99', 'refused a peer link']]);

    // this node dialling a peer that speaks another version: its hello carries the version, and the refusal is logged once
    const hellos: unknown[] = [];
    const other = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    closers.push(() => other.close());
    await new Promise((r) => other.once('listening', r));
    other.on('connection', (ws) => ws.once('message', (data: Buffer) => { hellos.push(packr.unpack(data)); ws.close(PEER_VERSION_REFUSED, 'peer protocol version 2 is not supported; this node speaks 3'); }));
    errors.length = 0;
    peers.setPeers(new Map([[nodeId('newer'), `http://127.0.0.1:${(other.address() as net.AddressInfo).port}`]]));
    await expect.poll(() => hellos.length, { timeout: slow(3_000) }).toBeGreaterThanOrEqual(2); // it retries
    expect(hellos[0]).toMatchObject({ t: 'hello', from: 'self', v: PEER_PROTOCOL_VERSION });
    expect(errors).toEqual([[{ peer: 'newer', reason: 'peer protocol version 2 is not supported; this node speaks 3' }, 'peer refused this node\'s link: another peer protocol version']]);
  });
});
