// Moves and failover on real processes: etcd and 4 nodes, N=3. A node joins and leaves under
// steady acks=all writes, and not one fails. Then a partition with a long history loses its
// leader to kill -9. The new leader's stand-in has none of that history, yet
// acks=all writes are answered with 3 copies long before it has caught up: it holds them as
// hints meanwhile. Without hints they would wait for the whole history to be copied.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { ChicagoClient } from '../src/client/index.js';
import { kvPartition } from '../src/runtime/hash.js';
import { slow } from './helpers/slow.js';

const PARTITIONS = 8;
const KS = 'failover';
/**
 * history of the partition: about 10 MB of log, which takes the stand-in seconds to catch up on
 * (3–4 s against a first ack at 0.2–0.5 s: the bound below, half the catch-up, keeps a wide margin)
 */
const HISTORY_KEYS = 10_000;
const VALUE = 'x'.repeat(1_000);

let cluster: Cluster;
beforeAll(async () => { cluster = await startCluster({ nodes: 4, partitions: PARTITIONS, replicas: 3 }); }, slow(120_000));
afterAll(async () => { await cluster?.teardown(); });

const keysOf = (p: number, n: number, prefix: string) => {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (kvPartition(KS, Buffer.from(`${prefix}${i}`), PARTITIONS) === p) out.push(`${prefix}${i}`);
  return out;
};

describe('moves', () => {
  it('a join and a leave lose no write and leave none unknown: a leader whose leadership moves hands it over first', async () => {
    const via = cluster.targets()[0].url; // a node that stays: it forwards each write to its partition's leader
    let stop = false;
    let acked = 0;
    let retried = 0;
    const failures: string[] = [];
    // A write the node refuses as retryable (a starved machine can leave a partition short of
    // replicas for a moment) is retried as a client would; one it answers OUTCOME_UNKNOWN or with a
    // non-retryable error, or that never succeeds, is a failure.
    const put = async (url: string, body: string) => {
      for (let attempt = 0; attempt < 100; attempt++) {
        const res = await fetch(url, { method: 'PUT', body });
        if (res.ok) return;
        const text = await res.text();
        let err: { code?: string; retryable?: boolean } | undefined;
        try { err = (JSON.parse(text) as { error?: { code?: string; retryable?: boolean } }).error; } catch { err = undefined; }
        if (!err?.retryable || err.code === 'OUTCOME_UNKNOWN') {
          failures.push(`${res.status} ${text}`);
          return;
        }
        retried++;
        await new Promise((r) => setTimeout(r, 20));
      }
      failures.push(`never acknowledged: ${url}`);
    };
    const writer = async (w: number) => {
      for (let i = 0; !stop; i++) {
        await put(`${via}/v1/kv/${KS}/move-${w}-${i % 200}?acks=all`, `v${i}`);
        acked++;
      }
    };
    const writers = Array.from({ length: 32 }, (_, w) => writer(w));
    const leadersOf = async (id: string) => (await cluster.status()).partitions.filter((p) => p.leader === id).length;
    const joined = await cluster.addNode();
    await cluster.waitReady(120_000);
    // Leadership moves to it by hand-off once the moves have ended: wait for that too.
    let led = 0;
    for (const deadline = Date.now() + slow(20_000); led === 0 && Date.now() < deadline;) {
      led = await leadersOf(joined.id);
      if (led === 0) await new Promise((r) => setTimeout(r, 100));
    }
    await cluster.removeNode(joined.id); // SIGTERM: it hands every replica off, then stops
    await cluster.waitReady(120_000);
    stop = true;
    await Promise.all(writers);
    console.log(`moves: ${acked} writes while ${joined.id} joined (leading ${led} partitions after it) and left; failed: ${failures.length}; retryable refusals retried: ${retried}`);
    // Without the hand-off (the controller moving leadership at once) 4 of 5,845 failed when tried:
    // the old leader was ahead of its successor, got a full copy, and its pending writes ended
    // OUTCOME_UNKNOWN ('the replica was replaced'). So did writes still pending at a leader that
    // handed over: the move dropped its copy before its successor's confirmation reached it.
    // On a loaded machine a starved leader is failed over instead, a write of its pending and
    // ahead of its successor: the full copy it then gets answered that write OUTCOME_UNKNOWN too,
    // until a copy kept pending writes for its successor's appends to answer (ok, or NOT_LEADER).

    expect(led, 'the new node led partitions, so its leave moved leadership').toBeGreaterThan(0);
    expect(acked).toBeGreaterThan(100);
    expect(failures).toEqual([]);
  }, slow(300_000));
});

describe('failover with hinted handoff', () => {
  it('acks=all writes get 3 copies again while the stand-in is still catching up on the history', async () => {
    const loader = await ChicagoClient.connect({ url: cluster.targets()[0].url });
    const history = keysOf(0, HISTORY_KEYS, 'h');
    for (let i = 0; i < history.length; i += 200) {
      await Promise.all(history.slice(i, i + 200).map((k) => loader.kv.put(KS, k, VALUE, { acks: 'one' })));
    }
    await loader.kv.put(KS, history[0], VALUE); // acks=all: everything before it is on the 3 replicas too
    loader.close();
    // every partition led and fully in sync is what the kill needs; the acks=all put above already
    // puts partition 0's history on its 3 replicas, so the digests of all 8 are not awaited (that wait
    // gives up silently at its deadline, which costs 180 s whenever some replicas disagree)
    await cluster.waitReady(60_000);

    const before = (await cluster.status()).partitions[0];
    const victim = before.leader!;
    const survivor = cluster.targets().find((t) => t.id !== victim)!;
    await cluster.kill9(victim);
    const killedAt = Date.now();

    // Watch the partition's record: when a stand-in appears and when it joins the in-sync set.
    let standIn: string | undefined;
    let standInInSyncAt: number | undefined;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const p = (await cluster.status(survivor.id).catch(() => undefined))?.partitions[0];
        standIn ??= p?.replicas.find((n) => !before.replicas.includes(n));
        if (standIn && p?.isr.includes(standIn) && standInInSyncAt === undefined) standInInSyncAt = Date.now();
        await new Promise((r) => setTimeout(r, 50)); // a catch-up of seconds: 50 ms is fine grain enough
      }
    })();

    const client = await ChicagoClient.connect({ url: survivor.url });
    const probes = keysOf(0, 1000, 'after');
    let firstAck: { at: number; replicas: number } | undefined;
    for (let i = 0; !firstAck && Date.now() - killedAt < slow(20_000); i++) {
      try {
        const r = await client.kv.put(KS, probes[i % probes.length], `v${i}`);
        firstAck = { at: Date.now(), replicas: r.replicas };
      } catch {
        await new Promise((r) => setTimeout(r, 5)); // retryable: the partition is failing over
      }
    }
    const deadline = Date.now() + slow(60_000);
    while (standInInSyncAt === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    watching = false;
    await watcher;
    client.close();

    expect(firstAck, 'an acks=all write was acknowledged after the kill').toBeDefined();
    expect(firstAck!.replicas).toBe(3);
    expect(standIn, 'a stand-in took the dead replica\'s place').toBeDefined();
    expect(standInInSyncAt, 'the stand-in caught up and joined the in-sync set').toBeDefined();
    const ackMs = firstAck!.at - killedAt;
    const inSyncMs = standInInSyncAt! - killedAt;
    console.log(`failover: first acks=all write acked (3 copies) ${ackMs} ms after the kill; stand-in ${standIn} in sync after ${inSyncMs} ms`);
    // The write had its third copy on the stand-in as a hint, long before the stand-in held the
    // history (without hints it is acked once the stand-in has caught up, a few hundred ms before
    // the in-sync set takes it in: far above half of that).
    expect(ackMs).toBeLessThan(inSyncMs / 2);
  }, slow(180_000));
});

describe('stopping a whole cluster', () => {
  it('nodes sent SIGTERM together stop within seconds: none waits out the hand-off deadline for a node that is leaving too', async () => {
    const pair = await startCluster({ nodes: 2, partitions: 4, replicas: 2 });
    try {
      const started = Date.now();
      const exits = await Promise.all(pair.nodes.map((n) => n.handle.kill('SIGTERM')));
      expect(exits.map((e) => e.code)).toEqual([0, 0]);
      // limits.leaveHandOffMs is 10 minutes; with nowhere to move replicas a node stops once that has lasted handOffAloneMs (5 s)
      expect(Date.now() - started).toBeLessThan(slow(20_000));
    } finally {
      await pair.teardown();
    }
  }, slow(120_000));
});
