// A pipelining producer (maxInFlight 5) to a pinned partition of a 4-node cluster (N=3, acks=all:
// the fourth node stands in for the dead one) whose leader is killed with -9 mid-stream: the resends go to the new leader in order, and the
// partition holds every acknowledged record exactly once, in send order.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type Cluster } from './helpers/cluster.js';
import { ChicagoClient } from '../src/client/index.js';
import type { ChicagoError } from '../src/runtime/errors.js';
import { streamPartition } from '../src/runtime/hash.js';
import { http } from './helpers/http.js';
import { slow } from './helpers/slow.js';
import { countersIn, expectExactlyOnceInOrder } from './helpers/produced.js';

const PARTITIONS = 4;
const TOPIC = 'pipec';

let cluster: Cluster;
beforeAll(async () => { cluster = await startCluster({ nodes: 4, partitions: PARTITIONS, replicas: 3 }); }, slow(120_000));
afterAll(async () => { await cluster?.teardown(); });

describe('producer pipelining across a leader failover', () => {
  it('keeps send order and exactly once when the partition leader is killed mid-stream', async () => {
    const seed = cluster.targets()[0].url;
    expect((await http(seed, 'POST', '/v1/topics', { name: TOPIC, partitions: 1, replicas: 3, retention: {} })).status).toBeLessThan(300);
    const p = streamPartition(TOPIC, 0, PARTITIONS);
    const leader = (await cluster.status()).partitions.find((x) => x.id === p)!.leader!;
    // The client's seed survives; its router sends the stream straight to the leader's node.
    const via = cluster.targets().find((t) => t.id !== leader)!;
    const client = await ChicagoClient.connect({ url: via.url, backoffMinMs: 20, backoffMaxMs: 200 });
    try {
      const producer = client.producer({ lingerMs: 0, batchBytesMax: 256, maxInFlight: 5, deliveryTimeoutMs: slow(30_000) });
      const acked = new Set<number>();
      const failed: string[] = [];
      const sends: Array<Promise<void>> = [];
      let n = 0;
      let killedAt = 0;
      const t0 = Date.now();
      const stopAt = t0 + slow(15_000);
      // what the producer holds, for a stall's failure message
      const dump = () => JSON.stringify([...(producer as unknown as { streams: Map<string, { window: Array<Record<string, unknown>>; sealed: unknown[]; orphans: number; resend?: unknown }> }).streams.values()].map((st) => ({
        sealed: st.sealed.length, orphans: st.orphans, resend: st.resend !== undefined,
        window: st.window.map((b) => ({ seq: b.sequence, prev: b.previous, attempts: b.attempts, sending: b.sending, failure: (b.failure as { code?: string } | undefined)?.code, left: (b.deadline as number) - Date.now() })),
      })));
      // bounded by count and time; paced so that the stream is still running well after the kill
      while (n < 8_000 && Date.now() < stopAt) {
        for (let j = 0; j < 20; j++, n++) {
          const i = n;
          sends.push(producer.send(TOPIC, { value: `v${i}`, headers: { n: String(i) }, partition: 0 }).then(
            () => { acked.add(i); },
            (e: ChicagoError) => { failed.push(`${i}: ${e.code}`); },
          ));
        }
        if (!killedAt && n >= 3_000) {
          killedAt = Date.now();
          await cluster.kill9(leader);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      const progress = setInterval(() => console.log(`t+${Date.now() - t0} ms: ${acked.size} acked, ${failed.length} failed, ${JSON.stringify(producer.stats())} ${dump()}`), 2_000);
      try {
        await producer.flush(slow(40_000));
      } finally {
        clearInterval(progress);
      }
      await Promise.all(sends);
      const after = (await cluster.status(via.id)).partitions.find((x) => x.id === p)!.leader;
      const stats = producer.stats();
      console.log(`producer-pipeline-cluster: ${n} sent, ${acked.size} acked, ${failed.length} failed (${[...new Set(failed.map((f) => f.split(': ')[1]))].join(',')}), ${stats.retried} records resent, peak ${stats.inFlightBatchesPeak} in flight; leader ${leader} → ${after}`);
      expect(stats.retried, 'the kill caught batches in flight').toBeGreaterThan(0);
      expect(killedAt).toBeGreaterThan(0);
      expect(after).not.toBe(leader);
      expect(producer.stats().inFlightBatchesPeak).toBeGreaterThan(1);
      expect(acked.size + failed.length).toBe(n);
      expect([...acked].some((i) => i > 3_500), 'records sent after the kill were acknowledged').toBe(true);

      expectExactlyOnceInOrder(await countersIn(via.url, TOPIC, 0), acked);
      expect(failed.filter((f) => !/OUTCOME_UNKNOWN|TIMEOUT/.test(f))).toEqual([]);
    } finally {
      client.close();
    }
  }, slow(180_000));
});
