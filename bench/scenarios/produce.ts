// produce: batches of `--batch` unkeyed records of `--record-bytes`, at `--rate` records/s
// (rate/batch batches/s on the open-loop schedule). Latency per record = batch ack − the batch's
// intended send time, weighted by the records in it; achievedRate is acked records/s.
import type { BenchArgs } from '../args.js';
import { runLoad } from '../generators.js';
import { evaluateGoal, fromLoop, type BenchResult } from '../result.js';
import { driverOptions, interestingMetrics, loopOptions, startMeters, withNode } from './common.js';

export async function benchProduce(args: BenchArgs): Promise<BenchResult> {
  const topic = args.topic ?? `bench-produce-${Date.now().toString(36)}`;
  return withNode(args, async (n) => {
    await n.admin.createTopic(topic, args.partitions, args.replicas);
    try {
      const task = { kind: 'produce' as const, driver: driverOptions(args, n.url), topic, batch: args.batch, recordBytes: args.recordBytes, partitions: args.partitions };
      let meters: ReturnType<typeof startMeters> | undefined;
      const { loop: r, extra: { replicasSeen = 0 }, generatorElu } = await runLoad(task, loopOptions(args, args.rate / args.batch, args.batch), args.generators, () => {
        meters = startMeters(n.pid);
      });
      const measured = meters!.stop();
      const metrics = await interestingMetrics(n.admin);
      const res = fromLoop(args, 'chicago', r, {
        via: args.via,
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
          generators: args.generators,
          ...(generatorElu ? { generatorElu } : {}),
        },
      });
      if (replicasSeen > 0) res.replicas = replicasSeen;
      const goal = evaluateGoal(res);
      if (goal) res.goal = goal;
      return res;
    } finally {
      if (!args.topic) await n.admin.deleteTopic(topic).catch(() => undefined);
    }
  });
}
