// Replies that become ready together leave the gateway in one write per socket, in order.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { startFakeServer } from './helpers/fake-node-api.js';
import { waitUntil } from './helpers/bridge.js';
import { slow } from './helpers/slow.js';

const N = 300;

// The client runs in its own process, so it reads while the gateway writes: a write per reply
// arrives in many reads, one write in one (or a few).
const CLIENT = `
const WebSocket = require('ws');
const { Packr, Unpackr } = require('msgpackr');
const packr = new Packr({ useRecords: false }), unpackr = new Unpackr({ useRecords: false });
const [url, n] = [process.argv[1], Number(process.argv[2])];
const ws = new WebSocket(url);
const ids = [];
// event-loop turns in which replies arrived: one read of the socket is one turn
let reads = 0, inTurn = false;
ws.on('open', () => {
  for (let id = 1; id <= n; id++) ws.send(packr.pack({ op: 'produce', id, topic: 'b', acks: 'all', partition: 0, records: [['x']] }));
});
ws.on('message', (d) => {
  if (!inTurn) { inTurn = true; reads++; setImmediate(() => { inTurn = false; }); }
  ids.push(unpackr.unpack(d).id);
  if (ids.length === n) { process.stdout.write(JSON.stringify({ reads, ordered: ids.every((id, i) => id === i + 1) })); process.exit(0); }
});
ws.on('error', (e) => { process.stderr.write(String(e)); process.exit(1); });
`;

describe('replies ready in one turn', () => {
  it('reach the socket in one write, every one and in order', async () => {
    const server = await startFakeServer();
    let release!: () => void;
    server.api.produceGate = new Promise<void>((r) => { release = r; });
    let held = 0;
    const produce = server.api.produce.bind(server.api);
    server.api.produce = (...a) => { held++; return produce(...a); };
    const child = spawn(process.execPath, ['-e', CLIENT, server.url.replace('http', 'ws') + '/v1/ws', String(N)], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    const exited = new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
    try {
      await waitUntil('every produce to be held at the node', () => held === N, 10_000, 5);
      // released from a timer: every reply is ready in the same turn, as when one worker message answers many
      setTimeout(release, 0);
      const timeout = new Promise<number>((r) => setTimeout(() => r(-1), slow(10_000)));
      expect(await Promise.race([exited, timeout])).toBe(0);
      const r = JSON.parse(out) as { reads: number; ordered: boolean };
      expect(r.ordered).toBe(true);
      // one write of N small frames (≈ 8 KB) is one read; a write per reply arrived in 2-10 here
      expect(r.reads).toBe(1);
    } finally {
      child.kill();
      server.stop();
    }
  });
});
