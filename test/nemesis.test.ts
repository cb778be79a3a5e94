// The fault machinery and the short nemesis run: iptables cuts on loopback really cut, the
// schedule does what it logs, and a 4-node cluster with a real etcd keeps every guarantee the
// checker knows while a workload runs through one fault of each kind.
import { beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { rm } from 'node:fs/promises';
import { check, History, now, readFinal, startWorkload } from './helpers/checker.js';
import { waitUntil } from './helpers/bridge.js';
import { randomSubnet, startCluster, type Cluster } from './helpers/cluster.js';
import { startNode } from './helpers/launcher.js';
import { startEarly } from './helpers/early.js';
import { formatEvents, Iptables, loopbackLinks, randomSchedule, runNemesis, type FaultSpec, type FaultTarget } from './helpers/nemesis.js';
import { slow } from './helpers/slow.js';

/** A TCP echo server on `host`. */
async function echoServer(host: string): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((res, rej) => srv.once('error', rej).listen(0, host, res));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((res) => srv.close(() => res()));
    },
  };
}

/**
 * Connects from `from` to `to:port`, sends a line and says whether it came back within `idleMs`
 * scaled by the test slowdown (a cut link is looked at for as long: a longer look is no weaker).
 */
function echoes(from: string, to: string, port: number, idleMs = 400): Promise<boolean> {
  const timeoutMs = slow(idleMs);
  return new Promise((resolve) => {
    const s = net.connect({ host: to, port, localAddress: from });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => s.write('ping\n'));
    s.once('data', () => done(true));
    s.once('error', () => done(false));
  });
}

/** An open connection that reports whether a write is echoed. */
async function openLink(from: string, to: string, port: number) {
  const s = net.connect({ host: to, port, localAddress: from });
  s.on('error', () => undefined);
  await new Promise<void>((res, rej) => s.once('connect', res).once('error', rej));
  return {
    /** whether a write is echoed within `idleMs` scaled by the test slowdown */
    roundTrip: (idleMs = 400) =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          s.off('data', onData);
          resolve(false);
        }, slow(idleMs));
        const onData = () => {
          clearTimeout(timer);
          resolve(true);
        };
        s.once('data', onData);
        s.write('x');
      }),
    close: () => s.destroy(),
  };
}

// the short run's cluster, started with the file
const clusterOnce = startEarly(() => startCluster({ nodes: 4, partitions: 16, replicas: 3 }), (c) => c.teardown());

describe('iptables link cuts on loopback', () => {
  it('cut drops traffic both ways between two addresses only, established links included; heal restores', async () => {
    // a private /24 so that cluster tests running in parallel are not touched
    const net24 = randomSubnet();
    const [A, B, C, D, E] = [2, 3, 4, 5, 6].map((n) => `${net24}.${n}`);
    const a = await echoServer(A);
    const b = await echoServer(B);
    const c = await echoServer(C);
    const cutter = new Iptables();
    const bystander = new Iptables();
    try {
      bystander.cut([D], [E]);
      expect(await echoes(A, B, b.port)).toBe(true);
      const link = await openLink(A, B, b.port);
      expect(await link.roundTrip()).toBe(true);

      cutter.cut([A], [B]);
      expect(cutter.rules().sort()).toEqual([`${A}>${B}`, `${B}>${A}`].sort());
      // each look at a cut link lasts its whole window; they are independent, so they run side by side
      const [ab, ba, onLink, ac, bc, local] = await Promise.all([
        echoes(A, B, b.port), echoes(B, A, a.port),
        link.roundTrip(), // an established connection stalls too
        // other links and clients on 127.0.0.1 are untouched
        echoes(A, C, c.port), echoes(B, C, c.port), echoes('127.0.0.1', B, b.port),
      ]);
      expect([ab, ba, onLink]).toEqual([false, false, false]);
      expect([ac, bc, local]).toEqual([true, true, true]);

      cutter.heal();
      expect(cutter.rules()).toEqual([]);
      expect(bystander.rules().length).toBe(2); // heal only removes its own rules
      expect(await echoes(A, B, b.port)).toBe(true);
      expect(await link.roundTrip(3000)).toBe(true); // TCP retransmits: the stalled link resumes
      link.close();
    } finally {
      cutter.close();
      bystander.close();
      await Promise.all([a.close(), b.close(), c.close()]);
    }
    expect(bystander.rules()).toEqual([]);
  });
});

describe('nemesis schedule', () => {
  /** A cluster double that records what is done to it. */
  function fakeCluster(ready = true) {
    const calls: string[] = [];
    let ids = ['n1', 'n2', 'n3', 'n4'];
    let next = 5;
    const target: FaultTarget = {
      liveIds: () => [...ids],
      leaderCounts: async () => new Map([['n3', 9], ['n1', 2]]),
      kill9: async (id) => void calls.push(`kill9 ${id}`),
      restart: async (id) => void calls.push(`restart ${id}`),
      stop: (id) => void calls.push(`stop ${id}`),
      cont: (id) => void calls.push(`cont ${id}`),
      partition: (a, b) => void calls.push(`partition ${a}|${b}`),
      heal: () => void calls.push('heal'),
      addNode: async () => {
        const id = `n${next++}`;
        ids.push(id);
        calls.push(`add ${id}`);
        return { id };
      },
      removeNode: async (id) => {
        ids = ids.filter((x) => x !== id);
        calls.push(`remove ${id}`);
      },
      waitReady: async () => {
        if (!ready) throw new Error('partition 3 has no leader');
      },
    };
    return { target, calls };
  }

  it('applies and heals each fault, targets the leader, and keeps the size within bounds', async () => {
    const { target, calls } = fakeCluster();
    const schedule: FaultSpec[] = [
      { kind: 'kill9', node: 'leader' },
      { kind: 'pause', node: 'n2' },
      { kind: 'partition', a: ['n1'], b: ['n2', 'n3'] },
      { kind: 'join' },
      { kind: 'join' }, // at maxNodes: becomes a leave
      { kind: 'leave', node: 'n1' },
    ];
    const res = await runNemesis(target, schedule, { faultMs: 1, recoverMs: 1, maxNodes: 5, minNodes: 3 });
    expect(res.problems).toEqual([]);
    expect(calls[0]).toBe('kill9 n3');
    expect(calls.slice(1)).toEqual(expect.arrayContaining(['restart n3', 'stop n2', 'cont n2', 'partition n1|n2,n3', 'heal', 'add n5', 'remove n1']));
    expect(calls.filter((c) => c.startsWith('remove')).length).toBe(2);
    expect(res.events.filter((e) => e.phase === 'inject').length).toBe(6);
    expect(res.events.filter((e) => e.phase === 'ready').length).toBe(6);
    expect(formatEvents(res.events)).toMatch(/kill9 +inject +kill -9 n3/);
  });

  it('reports a cluster that does not recover as a problem', async () => {
    const { target } = fakeCluster(false);
    const res = await runNemesis(target, [{ kind: 'pause', node: 'n1' }], { faultMs: 1, recoverMs: 1 });
    expect(res.problems).toEqual([expect.stringMatching(/not ready .*no leader/)]);
  });

  it('random schedules replay from their seed', () => {
    expect(randomSchedule(7, 20)).toEqual(randomSchedule(7, 20));
    expect(randomSchedule(7, 20)).not.toEqual(randomSchedule(8, 20));
    expect(new Set(randomSchedule(7, 200).map((f) => f.kind))).toEqual(new Set(['kill9', 'pause', 'partition', 'join', 'leave']));
  });
});

describe('workload and checker against one real node', () => {
  it('a kill -9 and restart on the same data passes; a node that forgets its data is caught', async () => {
    let node = await startNode({ env: { CHICAGO_WORKERS: '1' } });
    try {
      const created = await fetch(`${node.url}/v1/topics`, { method: 'POST', body: JSON.stringify({ name: 'nem', partitions: 4 }) });
      expect(created.status).toBe(201);
      const history = new History();
      const targets = [{ id: 'n1', url: node.url }];
      const workload = startWorkload(history, { targets: () => targets, clients: 4, topic: 'nem', topicPartitions: 4 });
      // what the checks below need acked before the crash
      const okPuts = () => history.ops.filter((o) => o.type === 'kv-put' && o.outcome === 'ok').length;
      const okRecords = () => history.ops.reduce((n, o) => n + (o.type === 'produce' && o.outcome === 'ok' ? o.values.length : 0), 0);
      await waitUntil('more than 20 acked puts and records', () => okPuts() > 20 && okRecords() > 20, 30_000, 20);
      await node.kill('SIGKILL');
      node = await node.restart();
      targets[0] = { id: 'n1', url: node.url };
      // the workload goes on against the restarted node: the checker compares its reads with what was acked before the crash
      const restartedAt = now();
      const okAfter = (type: string) => history.ops.filter((o) => o.type === type && o.outcome === 'ok' && o.invokeMs > restartedAt).length;
      await waitUntil('puts and reads answered by the restarted node', () => okAfter('kv-put') > 20 && okAfter('kv-get') > 20 && okAfter('read') > 10, 30_000, 20);
      await workload.stop();
      const durable = check(history.ops, { ...(await readFinal(targets, workload, 4)), replicas: [] }, { expectedReplicas: 1 });
      expect(durable.violations, durable.text).toEqual([]);
      expect(durable.stats['kv-put:ok'], durable.text).toBeGreaterThan(20);
      expect(durable.stats.ackedRecords, durable.text).toBeGreaterThan(20);

      await node.kill('SIGKILL');
      await rm(node.dataDir, { recursive: true, force: true });
      node = await node.restart();
      await fetch(`${node.url}/v1/topics`, { method: 'POST', body: JSON.stringify({ name: 'nem', partitions: 4 }) });
      const forgot = check(history.ops, { ...(await readFinal([{ id: 'n1', url: node.url }], workload, 4)), replicas: [] });
      expect(forgot.counts['lost-write'], forgot.text).toBeGreaterThan(0);
      expect(forgot.counts['stream-lost'], forgot.text).toBeGreaterThan(0);
      expect(forgot.counts['stream-stale-read'] ?? 0, forgot.text).toBe(0);
    } finally {
      await node.stop();
    }
  }, slow(60_000));
});

describe('short nemesis run: 4 nodes, real etcd, one fault of each kind', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await clusterOnce();
  }, slow(90_000));

  it('peer links are bound to the nodes\' own addresses, so cuts hit them', async () => {
    const hosts = new Set(cluster.live().map((n) => n.host));
    const links = loopbackLinks().filter((l) => hosts.has(l.from) && hosts.has(l.to));
    expect(links.length, 'no node-to-node connection between 127.0.0.x addresses: are peer links bound to --host?').toBeGreaterThan(0);
  });

  it('loses nothing acked, reads its writes, keeps streams whole and replicas identical', async () => {
    const topicPartitions = 4;
    const first = cluster.targets()[0];
    const created = await fetch(`${first.url}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'nem', partitions: topicPartitions, replicas: 3 }),
    });
    expect(created.status, await created.text()).toBe(201);

    const history = new History();
    const origin = now();
    // 40 ms between a client's operations: about 80 a second on a busy 2-core machine, some 200
    // in each 2.5 s fault and ten times the counts asserted below; at the default 5 ms the clients
    // only burn the CPU the nodes need to recover (test/long/nemesis-long.test.ts keeps that pace)
    const workload = startWorkload(history, { targets: () => cluster.targets(), clients: 6, topic: 'nem', topicPartitions, requestTimeoutMs: slow(3000), pauseMs: 40 });
    const schedule: FaultSpec[] = [
      { kind: 'kill9', node: 'leader' },
      { kind: 'pause', node: 'leader' },
      { kind: 'partition', shape: 'isolate', node: 'leader' },
      { kind: 'join' },
      { kind: 'leave', node: 'random' },
    ];
    let nemesis;
    try {
      // the first fault lands in a running workload
      await waitUntil('the workload under way', () => history.ops.filter((o) => o.outcome === 'ok').length > 50, 30_000, 20);
      nemesis = await runNemesis(cluster, schedule, { faultMs: 2500, recoverMs: 1000, readyTimeoutMs: 20_000, minNodes: 3, maxNodes: 5, seed: 1 });
    } finally {
      await workload.stop();
      cluster.heal();
    }
    const replicas = await cluster.waitConverged(30_000);
    const final = await readFinal(cluster.targets(), workload, topicPartitions);
    const report = check(history.ops, { ...final, replicas }, { expectedReplicas: 3 });
    const log = `${report.text}\n--- nemesis\n${formatEvents(nemesis.events, origin)}`;
    console.log(log);
    expect(nemesis.problems, log).toEqual([]);
    expect(report.violations, log).toEqual([]);
    // The run must have done something worth checking.
    expect(report.stats['kv-put:ok'] ?? 0, log).toBeGreaterThan(100);
    expect(report.stats.ackedRecords, log).toBeGreaterThan(100);
    expect(report.stats['kv-get:ok'] ?? 0, log).toBeGreaterThan(50);
  }, slow(110_000));
});
