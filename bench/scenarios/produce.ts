// produce: batches of `--batch` unkeyed records of `--record-bytes`, at `--rate` records/s
// (rate/batch batches/s on the open-loop schedule). Latency per record = batch ack − the batch's
// intended send time, weighted by the records in it; achievedRate is acked records/s.
import type { BenchArgs } from '../args.js';
import { runOpenLoop } from '../openloop.js';
import { evaluateGoal, fromLoop, type BenchResult } from '../result.js';
import { asciiValue, driverFor, interestingMetrics, loopOptions, startMeters, withNode } from './common.js';

export async function benchProduce(args: BenchArgs): Promise<BenchResult> {
  const topic = args.topic ?? `bench-produce-${Date.now().toString(36)}`;
  // distinct buffers per slot so nothing downstream can alias one record to another
  const batch = Array.from({ length: args.batch }, (_, i) => asciiValue(args.recordBytes, i));
  return withNode(args, async (n) => {
    await n.admin.createTopic(topic, args.partitions, args.replicas);
    const driver = await driverFor(args, n.url);
    let replicasSeen = 0;
    try {
      const meters = startMeters(n.pid);
      const r = await runOpenLoop(loopOptions(args, args.rate / args.batch, args.batch), async () => {
        const a = await driver.produce(topic, batch, args.partitions);
        if (a.replicas > replicasSeen) replicasSeen = a.replicas;
      });
      const measured = meters.stop();
      const metrics = await interestingMetrics(n.admin);
      const res = fromLoop(args, 'chicago', r, {
        via: driver.via,
        acks: args.acks,
        recordBytes: args.recordBytes,
        batchRecords: args.batch,
        connections: args.connections,
        ...measured,
        ...(metrics ? { serverMetrics: metrics } : {}),
        extra: {
          topic,
          partitions: args.partitions,
          batchesPerSecond: args.rate / args.batch,
          achievedMBps: Math.round(((r.ackedPerSecond * args.recordBytes) / 1e6) * 10) / 10,
          spawned: n.spawned !== undefined,
        },
      });
      if (replicasSeen > 0) res.replicas = replicasSeen;
      const goal = evaluateGoal(res);
      if (goal) res.goal = goal;
      return res;
    } finally {
      await driver.close();
      if (!args.topic) await n.admin.deleteTopic(topic).catch(() => undefined);
    }
  });
}
