// The coordination layer against a real etcd: leases, watches, CAS races, topic ids.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Coordination } from '../src/cluster/etcd.js';
import { type PartitionRecord, keys } from '../src/cluster/layout.js';
import { Membership, type MembershipView, nodesIn } from '../src/cluster/membership.js';
import { PartitionTable } from '../src/cluster/partition-table.js';
import { initialRecord } from '../src/cluster/placement.js';
import { TopicCatalog } from '../src/cluster/topic-catalog.js';
import { ChicagoError } from '../src/runtime/errors.js';
import { type NodeId, epoch, nodeId } from '../src/runtime/ids.js';
import { type EtcdServer, startEtcd } from './helpers/etcd.js';
import { slow } from './helpers/slow.js';

let etcd: EtcdServer;
const open: Array<{ close(): unknown }> = [];
let clusters = 0;

beforeAll(async () => { etcd = await startEtcd(); });
afterAll(async () => {
  for (const c of open.reverse()) await c.close();
  await etcd?.stop();
});

/** A client on a cluster name of its own, so tests sharing the etcd never see each other's keys. */
function coordination(cluster: string, callTimeoutMs?: number): Coordination {
  const c = new Coordination({ endpoints: etcd.endpoints, cluster, callTimeoutMs });
  open.push(c);
  return c;
}
const freshCluster = () => `t${++clusters}`;

/** Polls `ok` for at most `idleMs` scaled by the test slowdown; returns how long it took. */
async function waitFor(what: string, ok: () => boolean, idleMs = 5_000): Promise<number> {
  const timeoutMs = slow(idleMs);
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

const url = (i: number) => `http://127.0.0.${i}:7070`;

/** A watcher that keeps every view it was given. */
async function observer(cluster: string): Promise<{ m: Membership; views: MembershipView[]; ids: () => NodeId[] }> {
  const m = new Membership(coordination(cluster));
  open.push(m);
  const views: MembershipView[] = [];
  await m.watch((v) => views.push(v));
  return { m, views, ids: () => [...(views.at(-1)?.nodes.keys() ?? [])].sort() };
}

describe('membership', () => {
  it('registers on a lease, and watchers see joins, state changes and leaves in revision order', async () => {
    const cluster = freshCluster();
    const obs = await observer(cluster);
    expect(obs.views).toHaveLength(1);
    expect(obs.ids()).toEqual([]);

    const a = new Membership(coordination(cluster));
    const b = new Membership(coordination(cluster));
    open.push(a, b);
    await Promise.all([a.register({ id: nodeId('a'), url: url(2), state: 'joining' }), b.register({ id: nodeId('b'), url: url(3), state: 'joining' })]);
    await waitFor('both joins', () => obs.ids().join() === 'a,b');

    await a.setState('up');
    await waitFor('a up', () => obs.views.at(-1)!.nodes.get(nodeId('a'))?.state === 'up');
    expect(nodesIn(obs.views.at(-1)!, 'up')).toEqual(['a']);
    expect(obs.views.at(-1)!.nodes.get(nodeId('a'))).toMatchObject({ id: 'a', url: url(2), state: 'up' });

    await b.leave();
    const ms = await waitFor('b gone', () => obs.ids().join() === 'a');
    expect(ms).toBeLessThan(500); // a leave is seen at once, not after the TTL

    const revs = obs.views.map((v) => v.revision);
    expect([...revs].sort((x, y) => x - y)).toEqual(revs);
  });

  it('keeps the lease alive well past its TTL, and lets it expire when the process dies without leaving', async () => {
    const cluster = freshCluster();
    const obs = await observer(cluster);
    const coord = coordination(cluster);
    const m = new Membership(coord);
    open.push(m);
    const lost: string[] = [];
    m.on('leaseLost', (why) => lost.push(why));
    await m.register({ id: nodeId('n1'), url: url(2), state: 'up' });
    await new Promise((r) => setTimeout(r, 3_000)); // 1.5 × TTL on keepalives alone
    expect(obs.ids()).toEqual(['n1']);
    expect(lost).toEqual([]);

    // A crash: the keepalives stop, nothing is revoked.
    await m.close();
    coord.close();
    const t0 = Date.now();
    await waitFor('the lease to expire', () => obs.ids().length === 0, 5_000);
    const gone = Date.now() - t0;
    expect(gone).toBeGreaterThan(1_000);
    expect(gone).toBeLessThan(3_500); // TTL 2 s + etcd's 500 ms expiry sweep + slack
  });

  it('re-registers on a new lease when the old one is lost, without a leave in between', async () => {
    const cluster = freshCluster();
    const obs = await observer(cluster);
    const m = new Membership(coordination(cluster));
    open.push(m);
    const events: string[] = [];
    m.on('leaseLost', () => events.push('lost'));
    m.on('reregistered', () => events.push('reregistered'));
    await m.register({ id: nodeId('n1'), url: url(2), state: 'up' });
    const first = m.currentLeaseId;

    // Someone revokes our lease (an operator, or etcd expiring it while we were cut off).
    await revokeLease(first);

    await waitFor('re-registration', () => events.includes('reregistered'), 5_000);
    expect(events).toEqual(['lost', 'reregistered']);
    expect(m.currentLeaseId).not.toBe(first);
    await waitFor('n1 back', () => obs.ids().join() === 'n1');
    await m.setState('leaving');
    await waitFor('state written on the new lease', () => obs.views.at(-1)!.nodes.get(nodeId('n1'))?.state === 'leaving');
  });

  it('a restart after kill -9 takes its id over once the old lease expires; a live holder keeps it', async () => {
    const cluster = freshCluster();
    const coordA = coordination(cluster);
    const a = new Membership(coordA);
    await a.register({ id: nodeId('n1'), url: url(2), state: 'up' });
    await a.close(); // killed: its key lingers until the lease expires
    coordA.close();

    const again = new Membership(coordination(cluster));
    open.push(again);
    const t0 = Date.now();
    await again.register({ id: nodeId('n1'), url: url(2), state: 'joining' });
    expect(Date.now() - t0).toBeLessThan(4_000);

    const dup = new Membership(coordination(cluster), { takeoverWaitMs: 600 });
    const err = await dup.register({ id: nodeId('n1'), url: url(9), state: 'joining' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChicagoError);
    expect((err as ChicagoError).message).toMatch(/another live process/);
    expect(again.registered).toBe(true);
  });

  it('misses no join that happens while the watch is being set up', async () => {
    const cluster = freshCluster();
    const members = Array.from({ length: 12 }, () => new Membership(coordination(cluster)));
    open.push(...members);
    const joins = members.map((m, i) => m.register({ id: nodeId(`n${i}`), url: url(i + 2), state: 'up' }));
    const obs = await observer(cluster); // races the registrations
    await Promise.all(joins);
    await waitFor('all 12', () => obs.ids().length === 12);
  });
});

/** Revokes a lease by id through etcd's JSON gateway, as an operator's etcdctl would. */
async function revokeLease(id: string): Promise<void> {
  const res = await fetch(`${etcd.endpoints[0]}/v3/lease/revoke`, { method: 'POST', body: JSON.stringify({ ID: id }), signal: AbortSignal.timeout(slow(2_000)) });
  expect(res.status).toBe(200);
}

describe('partition table', () => {
  const ids = (...s: string[]) => s.map(nodeId);

  it('ensureMeta: concurrent creators agree on the first stored partition count', async () => {
    const cluster = freshCluster();
    const tables = [8, 16, 32, 64, 128].map(() => new PartitionTable(coordination(cluster)));
    const metas = await Promise.all(tables.map((t, i) => t.ensureMeta([8, 16, 32, 64, 128][i], 1000 + i)));
    expect(new Set(metas.map((m) => m.partitions)).size).toBe(1);
    expect(new Set(metas.map((m) => m.createdAtMs)).size).toBe(1);
    expect(await new PartitionTable(coordination(cluster)).ensureMeta(4)).toEqual(metas[0]);
  });

  it('initialize: concurrent starters create each record once, at epoch 1', async () => {
    const cluster = freshCluster();
    const lives = [ids('a', 'b', 'c'), ids('a', 'b', 'c', 'd'), ids('b', 'c', 'd')];
    const tables = lives.map(() => new PartitionTable(coordination(cluster)));
    const created = await Promise.all(tables.map((t, i) => t.initialize(100, lives[i], 3)));
    expect(created.reduce((x, y) => x + y, 0)).toBe(100);
    const { entries } = await tables[0].load();
    expect(entries.map((e) => e.partition)).toEqual(Array.from({ length: 100 }, (_, p) => p));
    for (const e of entries) {
      expect(e.record.epoch).toBe(1);
      expect(lives.map((l) => initialRecord(e.partition, l, 3))).toContainEqual(e.record);
    }
    expect(await tables[1].initialize(100, lives[1], 3)).toBe(0);
  });

  it('casUpdate: of two swaps from the same revision exactly one wins; the loser learns the winner', async () => {
    const cluster = freshCluster();
    const [t1, t2, watcherTable] = [0, 1, 2].map(() => new PartitionTable(coordination(cluster)));
    open.push(t1, t2, watcherTable);
    await t1.initialize(4, ids('a', 'b', 'c'), 3);
    const seen: Array<{ partition: number; epoch: number; rev: number }> = [];
    watcherTable.on('updates', (ups) => { for (const u of ups) seen.push({ partition: u.partition, epoch: u.record.epoch, rev: u.modRevision }); });
    await watcherTable.watch();
    expect(seen).toHaveLength(4);

    for (let round = 0; round < 20; round++) {
      const cur = (await t1.load()).entries[1];
      const propose = (leader: string): PartitionRecord => ({ ...cur.record, epoch: epoch(cur.record.epoch + 1), leader: nodeId(leader) });
      const [r1, r2] = await Promise.all([t1.casUpdate(1, cur.modRevision, propose('b')), t2.casUpdate(1, cur.modRevision, propose('c'))]);
      expect([r1.ok, r2.ok].filter(Boolean)).toHaveLength(1);
      const [win, lose] = r1.ok ? [r1, r2] : [r2, r1];
      if (!win.ok || lose.ok) throw new Error('unreachable');
      expect(lose.current?.modRevision).toBe(win.modRevision);
      expect(lose.current?.record.leader).toBe(r1.ok ? 'b' : 'c');
    }
    await waitFor('the watcher to see 20 updates', () => seen.filter((s) => s.partition === 1).length === 21);
    const p1 = seen.filter((s) => s.partition === 1);
    expect(p1.map((s) => s.epoch)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    expect(watcherTable.get(1)?.record.epoch).toBe(21);
  });

  it('casUpdate: an epoch never goes back, a stale revision loses, a repeated swap reports its success', async () => {
    const cluster = freshCluster();
    const t = new PartitionTable(coordination(cluster));
    open.push(t);
    await t.initialize(2, ids('a', 'b', 'c'), 3);
    await t.watch();
    const cur = t.get(0)!;
    const up: PartitionRecord = { ...cur.record, epoch: epoch(5), leader: cur.record.isr[1] };
    const r = await t.casUpdate(0, cur.modRevision, up);
    if (!r.ok) throw new Error('expected the swap to win');
    expect(t.get(0)).toEqual({ partition: 0, record: up, modRevision: r.modRevision });

    await expect(t.casUpdate(0, r.modRevision, { ...up, epoch: epoch(4) })).rejects.toThrow(/epoch of partition 0 would go from 5 back to 4/);
    expect((await t.load()).entries[0].record.epoch).toBe(5);

    const stale = await t.casUpdate(0, cur.modRevision, { ...up, epoch: epoch(6) });
    expect(stale).toEqual({ ok: false, current: { partition: 0, record: up, modRevision: r.modRevision } });

    // The same swap again (a client retry after a lost answer) is recognised as already done.
    expect(await t.casUpdate(0, cur.modRevision, up)).toEqual({ ok: true, modRevision: r.modRevision });

    await expect(t.casUpdate(0, r.modRevision, { ...up, leader: nodeId('zz') })).rejects.toThrow(/leader zz must be in the isr/);
  });
});

describe('topic catalog', () => {
  const spec = (name: string) => ({ name, partitions: 2, replicas: 3, retention: { ms: 60_000 } });

  it('gives unique, never reused ids under concurrent creates from several nodes', async () => {
    const cluster = freshCluster();
    const cats = [0, 1, 2].map(() => new TopicCatalog(coordination(cluster)));
    open.push(...cats);
    await Promise.all(cats.map((c) => c.start()));

    const made = await Promise.all(Array.from({ length: 24 }, (_, i) => cats[i % 3].create(spec(`topic-${i}`), 1_000 + i)));
    expect(made.map((t) => t.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    for (const c of cats) await waitFor('every cache to hold 24 topics', () => c.list().length === 24);
    expect(cats[2].get('topic-5')).toEqual(made[5]);
    expect(cats[1].byId(made[7].id)?.name).toBe('topic-7');

    // One name, three creators: one wins, the others are told it exists.
    const same = await Promise.allSettled(cats.map((c) => c.create(spec('contended'), 5_000)));
    expect(same.filter((s) => s.status === 'fulfilled')).toHaveLength(1);
    for (const s of same) if (s.status === 'rejected') expect((s.reason as ChicagoError).code).toBe('TOPIC_EXISTS');

    // Deleted and re-created: a new id, and every node follows both changes.
    const old = cats[0].get('topic-3');
    const removed = await cats[1].remove('topic-3');
    expect(removed).toEqual(old);
    await waitFor('the delete to reach node 0', () => cats[0].find('topic-3') === undefined);
    const reborn = await cats[0].create(spec('topic-3'), 9_000);
    expect(reborn.id).toBe(26);
    expect(cats[0].get('topic-3').id).toBe(26); // read-your-writes on the creating node
    await waitFor('node 2 to see the new incarnation', () => cats[2].find('topic-3')?.id === 26);
    await expect(cats[2].remove('nope')).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    expect(() => cats[2].get('nope')).toThrow(/topic nope not found/);
    expect(cats[0].retention()).toContainEqual({ topicId: 26, retention: { ms: 60_000 } });
  });

  it('alters retention from any node, every node follows, and an alter never brings a deleted topic back', async () => {
    const cluster = freshCluster();
    const cats = [0, 1, 2].map(() => new TopicCatalog(coordination(cluster)));
    open.push(...cats);
    await Promise.all(cats.map((c) => c.start()));
    const made = await cats[0].create(spec('retained'), 1_000);
    await waitFor('node 2 to see the topic', () => cats[2].find('retained') !== undefined);
    const after = await cats[2].setRetention('retained', { ms: 5_000, bytes: 1024 });
    expect(after).toEqual({ ...made, retention: { ms: 5_000, bytes: 1024 } });
    for (const c of cats) await waitFor('every node to see the new retention', () => c.get('retained').retention.bytes === 1024);
    expect(cats[1].retention()).toContainEqual({ topicId: made.id, retention: { ms: 5_000, bytes: 1024 } });
    await expect(cats[1].setRetention('nope', {})).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
    await expect(cats[1].setRetention('retained', { ms: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    // a deleted topic is not brought back by an alter
    await cats[0].remove('retained');
    await expect(cats[1].setRetention('retained', { ms: 1 })).rejects.toMatchObject({ code: 'TOPIC_NOT_FOUND' });
  });

  it('rejects bad specs before touching etcd', async () => {
    const c = new TopicCatalog(coordination(freshCluster()));
    open.push(c);
    await c.start();
    await expect(c.create({ ...spec('a/b') }, 0)).rejects.toMatchObject({ code: 'INVALID_NAME' });
    await expect(c.create({ ...spec('x'), partitions: 0 }, 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(c.create({ ...spec('x'), retention: { ms: -1 } }, 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('when etcd fails', () => {
  it('a pause shorter than the TTL loses no lease; calls during it fail fast and retryable', async () => {
    const cluster = freshCluster();
    const obs = await observer(cluster);
    const m = new Membership(coordination(cluster));
    open.push(m);
    const lost: string[] = [];
    m.on('leaseLost', (why) => lost.push(why));
    await m.register({ id: nodeId('n1'), url: url(2), state: 'up' });
    const quick = coordination(cluster, 300);

    etcd.pause();
    // The pause lasts 1.3 s (the 300 ms call, then 1 s, on an idle machine), shorter than the 2 s
    // TTL however long the call below takes on a busy one.
    const pausedAt = Date.now();
    try {
      const t0 = Date.now();
      const err = await quick.getJson(keys.meta, (_k, v) => v).catch((e: unknown) => e);
      expect(Date.now() - t0).toBeLessThan(1_000);
      expect(err).toMatchObject({ code: 'COORDINATION_UNAVAILABLE', retryable: true });
      await new Promise((r) => setTimeout(r, Math.max(0, pausedAt + 1_300 - Date.now())));
    } finally {
      etcd.resume();
    }
    await new Promise((r) => setTimeout(r, 1_500));
    expect(lost).toEqual([]);
    expect(obs.ids()).toEqual(['n1']);
  });

  it('watches come back after an etcd restart and deliver what changed meanwhile', async () => {
    const cluster = freshCluster();
    const cats = [0, 1].map(() => new TopicCatalog(coordination(cluster)));
    open.push(...cats);
    await Promise.all(cats.map((c) => c.start()));
    await cats[0].create({ name: 'before', partitions: 1, replicas: 1, retention: {} }, 1);
    await waitFor('both see it', () => cats[1].find('before') !== undefined);

    await etcd.restart();
    const deadline = Date.now() + slow(10_000);
    for (;;) {
      const err = await cats[0].create({ name: 'after', partitions: 1, replicas: 1, retention: {} }, 2).then(() => undefined, (e: unknown) => e);
      if (err === undefined || (err as ChicagoError).code === 'TOPIC_EXISTS') break; // an earlier try landed
      expect((err as ChicagoError).retryable).toBe(true);
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
    await waitFor('the other node to see it', () => cats[1].find('after') !== undefined, 10_000);
    expect(cats[1].list().map((t) => t.name)).toEqual(['after', 'before']);
  });
});
