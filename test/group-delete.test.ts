// Group delete against a real node: refused while a member is live (HTTP, WebSocket, CLI), then
// removes the committed offsets so a new member starts from its configured start; an unknown
// group is NOT_FOUND.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import pino from 'pino';
import { ChicagoClient, type GroupConsumer } from '../src/client/index.js';
import { GroupCoordinator } from '../src/node/group-coordinator.js';
import { runCli, startNode, type NodeHandle } from './helpers/launcher.js';
import { createChicagoTopic, getJson } from './helpers/bridge.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';

let node: NodeHandle;
let client: ChicagoClient;

beforeAll(async () => {
  node = await startNode();
  client = await ChicagoClient.connect({ url: node.url, backoffMinMs: 10, backoffMaxMs: 100 });
  await createChicagoTopic(node.url, 'gdt', 1);
  const p = client.producer({ acks: 'all' });
  for (let i = 0; i < 10; i++) await p.send('gdt', { value: `r${i}` });
  await p.flush(slow(5_000));
}, slow(30_000));

afterAll(async () => {
  client?.close();
  await node?.stop();
});

/** The first record a consumer reads, within a deadline. */
async function firstOffset(c: GroupConsumer): Promise<number> {
  const it = c[Symbol.asyncIterator]();
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no record within the deadline')), slow(15_000)));
  const r = await Promise.race([it.next(), timeout]);
  if (r.done) throw new Error('consumer ended');
  return r.value.offset;
}

/** one WebSocket request in JSON mode (the op is the same in msgpack) */
async function wsRequest(frame: Record<string, unknown>): Promise<Record<string, any>> {
  const ws = new WebSocket(node.url.replace('http', 'ws') + '/v1/ws', ['chicago.json']);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  try {
    const reply = new Promise<Record<string, any>>((resolve) => ws.on('message', (d: Buffer) => resolve(JSON.parse(d.toString()))));
    ws.send(JSON.stringify(frame));
    return await reply;
  } finally {
    ws.close();
  }
}

describe('group delete', () => {
  it('is refused while the group has a live member, then removes its offsets; a new member starts from its configured start', async () => {
    expect((await http(node.url, 'POST', '/v1/groups/gd1/offsets', { topic: 'gdt', partition: 0, offset: 5 })).status).toBe(200);
    const member = client.subscribe('gd1', ['gdt'], { from: 'earliest' });
    // reads from the committed offset, not from its `from`
    expect(await firstOffset(member)).toBe(5);

    const refused = await http(node.url, 'DELETE', '/v1/groups/gd1');
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'GROUP_NOT_EMPTY', retryable: false });
    expect(refused.body.error.message).toMatch(/gd1 has 1 live member/);
    expect(await wsRequest({ op: 'group.delete', id: 1, group: 'gd1' })).toMatchObject({ op: 'err', id: 1, code: 'GROUP_NOT_EMPTY' });
    const cli = await runCli(['group', 'delete', 'gd1', '--url', node.url]);
    expect(cli.code).toBe(2);
    expect(cli.stderr).toMatch(/GROUP_NOT_EMPTY/);
    // nothing was removed
    expect((await getJson(`${node.url}/v1/groups/gd1/offsets`)).offsets.map((o: { offset: number }) => o.offset)).toEqual([expect.any(Number)]);

    await member.close(); // leaves: its session ends at once
    const done = await runCli(['group', 'delete', 'gd1', '--url', node.url]);
    expect(done.stderr).toBe('');
    expect(done.code).toBe(0);
    expect(done.stdout).toMatch(/deleted group gd1 \(1 committed offset\)/);
    expect((await getJson(`${node.url}/v1/groups/gd1/offsets`)).offsets).toEqual([]);

    const fresh = client.subscribe('gd1', ['gdt'], { from: 'earliest' });
    try {
      expect(await firstOffset(fresh)).toBe(0);
    } finally {
      await fresh.close();
    }
  }, slow(40_000));

  it('answers NOT_FOUND for a group with neither members nor offsets (HTTP 404, WebSocket err, CLI exit 1)', async () => {
    const r = await http(node.url, 'DELETE', '/v1/groups/nosuch');
    expect(r.status).toBe(404);
    expect(r.body.error).toMatchObject({ code: 'NOT_FOUND', message: 'group nosuch not found' });
    expect(await wsRequest({ op: 'group.delete', id: 2, group: 'nosuch' })).toMatchObject({ op: 'err', id: 2, code: 'NOT_FOUND' });
    const cli = await runCli(['group', 'delete', 'nosuch', '--url', node.url]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/NOT_FOUND: group nosuch not found/);
    // deleting a group twice: the second finds nothing
    await http(node.url, 'POST', '/v1/groups/gd2/offsets', { topic: 'gdt', partition: 0, offset: 3 });
    expect(await wsRequest({ op: 'group.delete', id: 3, group: 'gd2' })).toMatchObject({ op: 'res', id: 3, removed: 1 });
    expect((await http(node.url, 'DELETE', '/v1/groups/gd2')).status).toBe(404);
  });

  it('has its --help', async () => {
    const r = await runCli(['group', 'delete', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/usage: chicago group delete GROUP/);
  });
});

describe('the coordinator (in process)', () => {
  it('refuses with members, waits a join for a running delete, and says NOT_FOUND for nothing', async () => {
    const events: string[] = [];
    let finish: (n: number) => void = () => undefined;
    const gc = new GroupCoordinator({
      log: pino({ level: 'silent' }),
      now: () => Date.now(),
      leadership: () => ({ leads: true, epoch: 1 }),
      partitionsOf: () => 2,
      commit: async () => undefined,
      deleteOffsets: (group) => {
        events.push(`delete ${group}`);
        return group === 'held' ? new Promise<number>((r) => { finish = r; }) : Promise.resolve(0);
      },
    }, Date.now() - 10_000);
    try {
      const a = await gc.handle(0, { op: 'groupJoin', group: 'held', topics: ['t'], sessionTimeoutMs: 1_000 });
      await expect(gc.handle(0, { op: 'groupDelete', group: 'held' })).rejects.toMatchObject({ code: 'GROUP_NOT_EMPTY' });
      expect(events).toEqual([]);
      await gc.handle(0, { op: 'groupLeave', group: 'held', member: a.member as string });
      const deleted = gc.handle(0, { op: 'groupDelete', group: 'held' });
      const joined = gc.handle(0, { op: 'groupJoin', group: 'held', topics: ['t'], sessionTimeoutMs: 1_000 }).then((r) => { events.push('joined'); return r; });
      await new Promise((r) => setTimeout(r, 50));
      expect(events).toEqual(['delete held']); // the join waits
      finish(2);
      expect(await deleted).toEqual({ removed: 2 });
      expect((await joined).assigned).toHaveLength(2);
      expect(events).toEqual(['delete held', 'joined']);
      await expect(gc.handle(0, { op: 'groupDelete', group: 'none' })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      gc.stop();
    }
  });
});
