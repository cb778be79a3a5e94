// Direct links between partition workers of different nodes (src/net/worker-links.ts): frames
// arrive intact at the worker hosting their partition; frames sent while a link opens wait for it
// and arrive; while a link is down the sender is told so (it drops the frame and counts it; leaders
// resend); a link whose peer stops reading drops frames past the
// queue limit and counts them rather than buffering without bound.
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { WorkerLinks } from '../src/net/worker-links.js';
import { replicationFrame } from '../src/runtime/codec.js';
import { nodeId } from '../src/runtime/ids.js';
import { slow } from './helpers/slow.js';

const closers: Array<() => void> = [];
afterEach(() => { for (const c of closers.splice(0)) c(); });

const KEY = 'the-link-key';

async function links(onFrame: (frame: Buffer) => void = () => {}, key = KEY): Promise<WorkerLinks> {
  const l = await WorkerLinks.listen('127.0.0.1', key, onFrame, (err) => { throw err; });
  closers.push(() => l.close());
  return l;
}

/** send until a direct link takes it (the first sends open the link) */
async function sendWhenUp(from: WorkerLinks, to: string, p: number, frame: Uint8Array): Promise<void> {
  const t0 = Date.now();
  while (!from.send(nodeId(to), p, frame)) {
    if (Date.now() - t0 > slow(2_000)) throw new Error(`the direct link did not come up within ${slow(2_000)} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('worker links', () => {
  it('deliver each frame to the worker that hosts its partition (p mod the peer\'s worker count)', async () => {
    const got: Array<[worker: number, p: number | undefined, msg: unknown]> = [];
    const w0 = await links((f) => got.push([0, replicationFrame.partitionOf(f), replicationFrame.decode(f)]));
    const w1 = await links((f) => got.push([1, replicationFrame.partitionOf(f), replicationFrame.decode(f)]));
    const sender = await links();
    expect(sender.send(nodeId('b'), 3, replicationFrame.encode(3, {}))).toBe(false); // no such peer yet
    sender.setPeer(nodeId('b'), [w0.url, w1.url], KEY);
    const msg = (p: number) => ({ t: 'append', p, entries: [{ seq: 1, value: new Uint8Array([1, 2, 3]) }] });
    await sendWhenUp(sender, 'b', 3, replicationFrame.encode(3, msg(3)));
    await sendWhenUp(sender, 'b', 4, replicationFrame.encode(4, msg(4)));
    await expect.poll(() => got.length, { timeout: slow(1_000) }).toBe(2);
    expect(got).toContainEqual([1, 3, msg(3)]);
    expect(got).toContainEqual([0, 4, msg(4)]);

    sender.setPeer(nodeId('b'), [], ''); // it left
    expect(sender.send(nodeId('b'), 3, replicationFrame.encode(3, msg(3)))).toBe(false);
  });

  it('hold the frames sent while a link opens and deliver them, in order, once it is up', async () => {
    const got: unknown[] = [];
    const target = await links((f) => got.push(replicationFrame.decode(f)));
    const sender = await links();
    sender.setPeer(nodeId('t'), [target.url], KEY);
    // no waiting: these are the first frames after the peer became known (a start, a reconnect)
    for (let i = 0; i < 5; i++) expect(sender.send(nodeId('t'), 0, replicationFrame.encode(0, { i }))).toBe(true);
    await expect.poll(() => got.length, { timeout: slow(2_000) }).toBe(5);
    expect(got).toEqual([0, 1, 2, 3, 4].map((i) => ({ i })));
    expect(sender.dropped).toBe(0);
  });

  it('put the frames one turn sends on a link into one socket write, in order', async () => {
    const got: unknown[] = [];
    const target = await links((f) => got.push(replicationFrame.decode(f)));
    const sender = await links();
    sender.setPeer(nodeId('t'), [target.url], KEY);
    await sendWhenUp(sender, 't', 0, replicationFrame.encode(0, { i: -1 }));
    await expect.poll(() => got.length, { timeout: slow(2_000) }).toBe(1);
    // the link's socket (private): count the writes that reach it
    const socket = (sender as unknown as { peers: Map<string, { links: Array<{ socket: { _socket: Record<string, (...a: unknown[]) => unknown> } }> }> })
      .peers.get('t')!.links[0].socket._socket;
    let writes = 0;
    for (const m of ['_write', '_writev'] as const) {
      const orig = socket[m].bind(socket);
      socket[m] = (...a: unknown[]) => { writes++; return orig(...a); };
    }
    for (let i = 0; i < 20; i++) expect(sender.send(nodeId('t'), i % 3, replicationFrame.encode(i % 3, { i }))).toBe(true);
    await new Promise((r) => setImmediate(r));
    expect(writes).toBe(1);
    await expect.poll(() => got.length, { timeout: slow(2_000) }).toBe(21);
    expect(got.slice(1)).toEqual(Array.from({ length: 20 }, (_, i) => ({ i })));
  });

  it('refuse a peer that does not present the link key: its frames never arrive', async () => {
    const got: Buffer[] = [];
    const target = await links((f) => got.push(f));
    const intruder = await links(() => {}, 'another-key');
    intruder.setPeer(nodeId('t'), [target.url], 'a-wrong-key');
    // the first frames wait for the dial; refused, they are counted dropped, and later ones find no link
    for (let i = 0; i < 30; i++) {
      intruder.send(nodeId('t'), 0, replicationFrame.encode(0, { i }));
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(intruder.send(nodeId('t'), 0, replicationFrame.encode(0, { last: 1 }))).toBe(false);
    expect(intruder.dropped).toBeGreaterThan(0);
    expect(got).toHaveLength(0);
    const honest = await links();
    honest.setPeer(nodeId('t'), [target.url], KEY);
    await sendWhenUp(honest, 't', 0, replicationFrame.encode(0, { ok: 1 }));
    await expect.poll(() => got.length, { timeout: slow(1_000) }).toBe(1);
  });

  it('report a link to a peer that is gone as down, again and again, without throwing', async () => {
    const gone = await links();
    const url = gone.url;
    gone.close();
    const sender = await links();
    sender.setPeer(nodeId('gone'), [url], KEY);
    for (let i = 0; i < 20; i++) {
      sender.send(nodeId('gone'), 0, replicationFrame.encode(0, { i }));
      await new Promise((r) => setTimeout(r, 10));
    }
    // the dial failed: what waited for it is counted dropped, and the link reports down
    expect(sender.send(nodeId('gone'), 0, replicationFrame.encode(0, { last: 1 }))).toBe(false);
    expect(sender.dropped).toBeGreaterThan(0);
  });

  it('drop and count frames once a peer that stopped reading has the queue limit buffered', async () => {
    // a peer that accepts the link and then never reads from it (a paused process)
    const stalled = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    closers.push(() => stalled.close());
    stalled.on('connection', (ws: WebSocket & { _socket?: { pause(): void } }) => ws._socket?.pause());
    await new Promise((r) => stalled.once('listening', r));
    const sender = await links();
    sender.setPeer(nodeId('stalled'), [`ws://127.0.0.1:${(stalled.address() as { port: number }).port}`], KEY);
    const frame = replicationFrame.encode(0, { bulk: new Uint8Array(1024 * 1024) });
    await sendWhenUp(sender, 'stalled', 0, frame);
    const t0 = Date.now();
    while (sender.dropped === 0) {
      if (Date.now() - t0 > slow(10_000)) throw new Error(`nothing was dropped within ${slow(10_000)} ms`);
      expect(sender.send(nodeId('stalled'), 0, frame)).toBe(true);
      await new Promise((r) => setImmediate(r));
    }
    // it took frames until the limit was buffered (the kernel holds some more)
    expect(sender.dropped).toBe(1);
  });
});
