// cluster-failover: a steady acks=all kv-put load at --rate, round robin over the nodes; half the
// operations write keys of one chosen partition p (kvPartition of src/runtime/hash.ts), the other
// half cycle through --keys keys of every partition. After --warmup + 3 s the leader of p (from
// GET /v1/status) is killed with SIGKILL and taken out of the round robin (the client fails over);
// the load goes on for --duration s in all. Measured per kill:
//   gapMs        kill → the next acked write on p
//   gapSentAfterMs  kill → the ack of the first write on p that was SENT after the kill and acked
//   victimPartitionsMaxGapMs  the same as gapMs, worst over every partition the victim led
//   longestAckGapMs  the longest interval without any acked write (all partitions) from 1 s before
//                the kill to the end
// Then the victim is restarted (same id, port, data) and the cluster waited on until every
// partition is back on N in-sync replicas. --repeat kills, each on another partition.
import type { BenchArgs } from '../args.js';
import { kvPartition } from '../../src/runtime/hash.js';
import { runOpenLoop, nowUs, type Op } from '../openloop.js';
import { fromLoop, type BenchResult } from './cluster-result.js';
import { asciiValue, loopOptions } from './common.js';
import { MultiDriver, clog, clusterMeters, keyOf, median, uptime, withCluster } from './cluster-common.js';

const PRE_KILL_S = 3;
const enc = new TextEncoder();

interface KillResult {
  repeat: number;
  partition: number;
  victim: string;
  victimPartitions: number[];
  gapMs: number | null;
  gapSentAfterMs: number | null;
  victimPartitionsMaxGapMs: number | null;
  longestAckGapMs: number;
  errors: number;
  errorsByKind: Record<string, number>;
  errorSamples: string[];
  latencyUs: BenchResult['latencyUs'];
  readyAgainMs: number;
  uptime: string;
  /** wall clock of the kill (ms since the epoch): to line the node logs up with the gap */
  killedAtMs: number;
  /** the first outcomes on p of writes sent after the kill: [sent, answered] ms after it, and what */
  timeline: Array<[number, number, string]>;
}

const TIMELINE_EVENTS = 24;

export async function benchClusterFailover(args: BenchArgs): Promise<BenchResult> {
  const value = asciiValue(args.recordBytes);
  const uptimeBefore = uptime();
  const ks = args.keyspace;
  return withCluster(args, async (c) => {
    const P = (await c.status()).partitions.length;
    const partOfKey = new Map<string, number>();
    const partOf = (key: string): number => {
      let p = partOfKey.get(key);
      if (p === undefined) {
        p = kvPartition(ks, enc.encode(key), P);
        partOfKey.set(key, p);
      }
      return p;
    };
    const kills: KillResult[] = [];
    const loops: BenchResult[] = [];
    for (let rep = 0; rep < args.cluster.repeat; rep++) {
      await c.waitReady(60_000);
      const view = await c.status();
      // a different partition each time, so the victims rotate over the nodes
      const target = view.partitions[(rep * 3 + 1) % P]!;
      const victim = target.leader!;
      const victimPartitions = view.partitions.filter((p) => p.leader === victim).map((p) => p.id);
      const probeKeys: string[] = [];
      for (let i = 0; probeKeys.length < 512; i++) {
        const k = `fo-${i}`;
        if (partOf(k) === target.id) probeKeys.push(k);
      }
      const d = await MultiDriver.open(args, c.running());
      // every acked write: ack time (µs, nowUs clock), send time, partition
      const ackAt: number[] = [];
      const sentAt: number[] = [];
      const ackPart: number[] = [];
      let killUs = 0;
      let killedAtMs = 0;
      const timeline: Array<[number, number, string]> = [];
      const note = (sent: number, what: string) => {
        if (killUs === 0 || sent < killUs || timeline.length >= TIMELINE_EVENTS) return;
        timeline.push([Math.round((sent - killUs) / 100) / 10, Math.round((nowUs() - killUs) / 100) / 10, what]);
      };
      const op: Op = async (k) => {
        const key = k % 2 === 0 ? probeKeys[(k >> 1) % probeKeys.length]! : keyOf(k >> 1, args.keys);
        const sent = nowUs();
        try {
          await d.kvPut(ks, key, value);
        } catch (err) {
          if (partOf(key) === target.id) note(sent, (err as Error).message.slice(0, 120));
          throw err;
        }
        if (partOf(key) === target.id) note(sent, 'acked');
        ackAt.push(nowUs());
        sentAt.push(sent);
        ackPart.push(partOf(key));
      };
      const killTimer = setTimeout(() => {
        killUs = nowUs();
        killedAtMs = Date.now();
        c.kill9(victim);
        d.exclude(victim);
        clog(`  kill -9 ${victim} (leader of partition ${target.id} and of [${victimPartitions}])`);
      }, (args.warmupS + PRE_KILL_S) * 1000 + 5);
      const load = uptime();
      clog(`failover ${rep + 1}/${args.cluster.repeat}: kv-put ${args.rate}/s acks=${args.acks}, partition ${target.id} (of ${P}) led by ${victim}; ${load}`);
      const meters = clusterMeters(c.running().map((n) => n.pid));
      const r = await runOpenLoop(loopOptions({ ...args, timeoutMs: Math.min(args.timeoutMs, 5000), drainMs: Math.min(args.drainMs, 6000) }, args.rate, 1), op);
      clearTimeout(killTimer);
      const { perNodeCpuPct, ...measured } = meters.stop();
      await d.close();
      if (killUs === 0) throw new Error('the load ended before the kill');
      const firstAck = (pred: (i: number) => boolean): number | null => {
        let best: number | null = null;
        for (let i = 0; i < ackAt.length; i++) if (ackAt[i]! > killUs && pred(i) && (best === null || ackAt[i]! < best)) best = ackAt[i]!;
        return best === null ? null : (best - killUs) / 1000;
      };
      // no ack on p within the load window: keep writing p's keys (one at a time, any live node)
      // until one is acked, so that the gap is measured, not just bounded
      if (firstAck((i) => ackPart[i] === target.id && sentAt[i]! > killUs) === null) {
        clog(`  no ack on partition ${target.id} within the load window: probing it until one is acked`);
        const probe = await MultiDriver.open(args, c.running());
        const until = nowUs() + 60e6;
        for (let i = 0; nowUs() < until; i++) {
          const sent = nowUs();
          try {
            await Promise.race([
              probe.kvPut(ks, probeKeys[i % probeKeys.length]!, value),
              new Promise((_, rej) => setTimeout(() => rej(new Error('probe timeout')), 2000)),
            ]);
            ackAt.push(nowUs());
            sentAt.push(sent);
            ackPart.push(target.id);
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 2));
          }
        }
        await probe.close();
      }
      const gapMs = firstAck((i) => ackPart[i] === target.id);
      const gapSentAfterMs = firstAck((i) => ackPart[i] === target.id && sentAt[i]! > killUs);
      let victimMax: number | null = 0;
      for (const p of victimPartitions) {
        const g = firstAck((i) => ackPart[i] === p);
        if (g === null) victimMax = null;
        else if (victimMax !== null && g > victimMax) victimMax = g;
      }
      const times = ackAt.filter((t) => t > killUs - 1e6).sort((a, b) => a - b);
      let longest = 0;
      let prev = killUs - 1e6;
      for (const t of times) {
        if (t - prev > longest) longest = t - prev;
        prev = t;
      }
      const loopRes = fromLoop(args, 'chicago', r, { via: d.via, acks: args.acks, ...measured });
      loops.push(loopRes);
      await c.waitExit(victim);
      const t0 = performance.now();
      await c.restart(victim);
      const readyAgainMs = Math.round(performance.now() - t0 + (await c.waitReady(120_000)));
      const k: KillResult = {
        repeat: rep + 1,
        partition: target.id,
        victim,
        victimPartitions,
        gapMs: gapMs === null ? null : Math.round(gapMs * 10) / 10,
        gapSentAfterMs: gapSentAfterMs === null ? null : Math.round(gapSentAfterMs * 10) / 10,
        victimPartitionsMaxGapMs: victimMax === null ? null : Math.round(victimMax * 10) / 10,
        longestAckGapMs: Math.round(longest / 100) / 10,
        errors: r.errors,
        errorsByKind: { ...r.errorsByKind },
        errorSamples: r.errorSamples,
        latencyUs: loopRes.latencyUs,
        readyAgainMs,
        uptime: load,
        killedAtMs,
        timeline,
      };
      kills.push(k);
      clog(`  gap on p${target.id}: ${k.gapMs} ms (first write sent after the kill: ${k.gapSentAfterMs} ms), worst victim partition ${k.victimPartitionsMaxGapMs} ms, longest gap overall ${k.longestAckGapMs} ms, errors ${r.errors}; cluster whole again ${readyAgainMs} ms after restart; nodes CPU ${measured.server?.cpuPct} % [${perNodeCpuPct}]`);
    }
    // the headline counts only writes SENT after the kill: an ack that reaches a busy bench late may
    // have been produced before the kill, and would flatter the gap
    const gaps = kills.map((k) => k.gapSentAfterMs ?? Infinity);
    const gapsAnyAck = kills.map((k) => k.gapMs ?? Infinity);
    const longest = kills.map((k) => k.longestAckGapMs);
    const victimMax = kills.map((k) => k.victimPartitionsMaxGapMs ?? Infinity);
    const head = loops[loops.length - 1]!;
    const medGap = median(gaps);
    const maxGap = Math.max(...gaps);
    const missed: string[] = [];
    if (maxGap > 500) missed.push(`max gap ${maxGap} ms > 500 ms (×${Math.round((maxGap / 500) * 10) / 10})`);
    if (medGap > 500) missed.push(`median gap ${medGap} ms > 500 ms`);
    const res: BenchResult = {
      ...head,
      nodes: args.cluster.nodes,
      replicas: args.replicas,
      sent: loops.reduce((a, l) => a + l.sent, 0),
      acked: loops.reduce((a, l) => a + l.acked, 0),
      errors: loops.reduce((a, l) => a + l.errors, 0),
      durationS: args.durationS * loops.length,
      goal: { text: 'failover: kill -9 of a leader → acked writes on its partition again within 500 ms', met: missed.length === 0, ...(missed.length ? { missedBy: missed } : {}) },
      extra: {
        kills,
        gapMs: { median: medGap, max: maxGap, all: gaps, measure: 'kill → ack of the first write on the partition sent after the kill' },
        gapAnyAckMs: { median: median(gapsAnyAck), max: Math.max(...gapsAnyAck), all: gapsAnyAck },
        victimPartitionsMaxGapMs: { median: median(victimMax), max: Math.max(...victimMax) },
        longestAckGapMs: { median: median(longest), max: Math.max(...longest) },
        clusterPartitions: P,
        keys: args.keys,
        note: 'latencyUs is the last repeat\'s whole window (kill included); gaps in ms on the bench clock',
        uptimeBefore,
        uptimeAfter: uptime(),
      },
    };
    return res;
  });
}
