// produce-tail: append → delivery to a live subscriber. Each record carries its index and its
// intended send time (µs on this process's monotonic clock); the subscriber, in the same process,
// records receipt − intended. The main latency is that end-to-end delivery latency; the producer's
// own ack latency is reported in extra.ackLatencyUs, and extra.stages splits the delivery latency
// at the ack (is a slow record slow to append, or slow to reach the subscriber after its ack?).
import type { BenchArgs } from '../args.js';
import { newHistogram, nowUs, recordUs, runOpenLoop, summarize, warmupOpCount } from '../openloop.js';
import { evaluateGoal, fromLoop, type BenchResult } from '../result.js';
import type { TailHandle } from '../targets.js';
import { asciiValue, driverFor, interestingMetrics, loopOptions, startMeters, withNode } from './common.js';

const IDX = 12; // digits of the record index
const TS = 16; // digits of the intended time in µs
const HEADER = IDX + 1 + TS + 1;
const READY = 'READY';

function encode(index: number, intendedUs: number, recordBytes: number, filler: Buffer): Buffer {
  const b = Buffer.allocUnsafe(Math.max(recordBytes, HEADER));
  b.write(`${String(index).padStart(IDX, '0')}:${String(Math.round(intendedUs)).padStart(TS, '0')}:`, 0, 'latin1');
  filler.copy(b, HEADER, 0, b.length - HEADER);
  return b;
}

export async function benchProduceTail(args: BenchArgs): Promise<BenchResult> {
  const topic = args.topic ?? `bench-tail-${Date.now().toString(36)}`;
  const filler = asciiValue(Math.max(0, args.recordBytes - HEADER));
  const opsPerSecond = args.rate / args.batch;
  const loopOpts = loopOptions(args, opsPerSecond, args.batch);
  const firstMeasured = warmupOpCount(loopOpts) * args.batch;
  const totalRecords = (warmupOpCount(loopOpts) + Math.max(1, Math.round(args.durationS * opsPerSecond))) * args.batch;

  const delivery = newHistogram();
  const seen = new Uint8Array(totalRecords);
  // Per record (µs on nowUs()): its intended send time, the producer's ack and the subscriber's
  // receipt, to tell a slow append (late ack) from slow delivery (receipt long after the ack).
  const intendedAt = new Float64Array(totalRecords);
  const ackAt = new Float64Array(totalRecords);
  const recvAt = new Float64Array(totalRecords);
  let delivered = 0;
  let duplicates = 0;
  let foreign = 0;
  const readyParts = new Set<number>();
  let tailError: unknown;

  const onRecord = (v: Buffer, partition: number): void => {
    const t = nowUs();
    if (v.length < HEADER || v[IDX] !== 0x3a) {
      if (v.toString('latin1', 0, READY.length) === READY) readyParts.add(partition);
      else foreign++;
      return;
    }
    const index = Number(v.toString('latin1', 0, IDX));
    const intended = Number(v.toString('latin1', IDX + 1, IDX + 1 + TS));
    if (!(index >= 0 && index < totalRecords)) {
      foreign++;
      return;
    }
    if (seen[index]) {
      duplicates++;
      return;
    }
    seen[index] = 1;
    recvAt[index] = t;
    intendedAt[index] = intended;
    if (index >= firstMeasured) {
      delivered++;
      recordUs(delivery, t - intended);
    }
  };

  return withNode(args, async (n) => {
    await n.admin.createTopic(topic, args.partitions, args.replicas);
    const driver = await driverFor(args, n.url);
    const tails: TailHandle[] = [];
    try {
      for (let p = 0; p < args.partitions; p++) {
        tails.push(await driver.tail(topic, p, onRecord, (e) => (tailError ??= e)));
      }
      // The subscription is live once a record sent after it arrives.
      const readyBy = Date.now() + 15_000;
      while (readyParts.size < args.partitions) {
        if (tailError) throw new Error(`tail failed: ${String(tailError)}`);
        if (Date.now() > readyBy) throw new Error(`the subscribers of ${args.partitions - readyParts.size} partitions saw no record within 15 s`);
        const readyValue = [Buffer.from(READY)];
        for (let p = 0; p < args.partitions; p++) await driver.produce(topic, readyValue, args.partitions);
        await new Promise((r) => setTimeout(r, 50));
      }

      const meters = startMeters(n.pid);
      const r = await runOpenLoop(loopOpts, (k, intended) => {
        const values: Buffer[] = [];
        for (let j = 0; j < args.batch; j++) values.push(encode(k * args.batch + j, intended, args.recordBytes, filler));
        return driver.produce(topic, values, args.partitions).then((a) => {
          const t = nowUs();
          for (let j = 0; j < args.batch; j++) ackAt[k * args.batch + j] = t;
          return a;
        });
      });
      // let deliveries of acked records finish
      const until = Date.now() + 5_000;
      while (delivered < r.acked && Date.now() < until && !tailError) await new Promise((res) => setTimeout(res, 20));
      const measured = meters.stop();
      const metrics = await interestingMetrics(n.admin);

      const undelivered = Math.max(0, r.acked - delivered);
      const res = fromLoop(args, 'chicago', r, {
        via: driver.via,
        acks: args.acks,
        recordBytes: Math.max(args.recordBytes, HEADER),
        batchRecords: args.batch,
        connections: args.connections,
        ...measured,
        ...(metrics ? { serverMetrics: metrics } : {}),
      });
      res.acked = delivered;
      res.errors = r.errors + undelivered;
      res.errorsByKind = { ...r.errorsByKind, undelivered };
      res.latencyUs = summarize(delivery);
      res.achievedRate = Math.round(delivered / r.elapsedS);
      res.extra = {
        topic,
        partitions: args.partitions,
        latencyIs: 'subscriber receipt − intended send time',
        producerAcked: r.acked,
        ackLatencyUs: summarize(r.latency),
        duplicates,
        foreignRecords: foreign,
        stages: stageBreakdown(firstMeasured, totalRecords, intendedAt, ackAt, recvAt),
        ...(tailError ? { tailError: String(tailError) } : {}),
        spawned: n.spawned !== undefined,
      };
      const goal = evaluateGoal(res);
      if (goal) res.goal = goal;
      return res;
    } finally {
      for (const t of tails) await t.stop().catch(() => undefined);
      await driver.close();
      if (!args.topic) await n.admin.deleteTopic(topic).catch(() => undefined);
    }
  });
}

/**
 * Where the delivered records spent their time: `receiptAfterAckUs` is receipt − the producer's
 * ack (records received before their ack count in `receivedBeforeAck`); `slowest` looks at the
 * records at or above the delivery p99.9: how much of their latency had passed at the ack.
 */
function stageBreakdown(first: number, total: number, intendedAt: Float64Array, ackAt: Float64Array, recvAt: Float64Array): Record<string, unknown> {
  const afterAck = newHistogram();
  const delivery = newHistogram();
  let beforeAck = 0;
  let both = 0;
  for (let i = first; i < total; i++) {
    if (recvAt[i] === 0 || ackAt[i] === 0) continue;
    both++;
    recordUs(delivery, recvAt[i]! - intendedAt[i]!);
    if (recvAt[i]! < ackAt[i]!) beforeAck++;
    else recordUs(afterAck, recvAt[i]! - ackAt[i]!);
  }
  const slowFrom = delivery.getValueAtPercentile(99.9);
  const shares: number[] = [];
  for (let i = first; i < total; i++) {
    if (recvAt[i] === 0 || ackAt[i] === 0) continue;
    const d = recvAt[i]! - intendedAt[i]!;
    if (d >= slowFrom && d > 0) shares.push(Math.min(1, (ackAt[i]! - intendedAt[i]!) / d));
  }
  shares.sort((a, b) => a - b);
  return {
    records: both,
    receivedBeforeAck: beforeAck,
    receiptAfterAckUs: summarize(afterAck),
    slowest: { fromUs: slowFrom, count: shares.length, ackShareMedian: shares.length ? Math.round(shares[shares.length >> 1]! * 1000) / 1000 : 0 },
  };
}
