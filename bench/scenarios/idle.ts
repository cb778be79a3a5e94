// idle: a node with nothing to do. Start it (or take --pid), let it settle for --warmup seconds,
// then average its CPU (all threads, from /proc/PID/stat) and RSS over --duration seconds.
import type { BenchArgs } from '../args.js';
import { MachineSampler, ProcSampler, readProc, readThreads, round1, threadCpuPct } from '../proc.js';
import { evaluateGoal, idleResult, type BenchResult } from '../result.js';
import { interestingMetrics, withNode } from './common.js';

export async function benchIdle(args: BenchArgs): Promise<BenchResult> {
  if (!args.spawn && args.pid === undefined) {
    throw new Error('idle samples the node process: pass --spawn, or --pid PID of the node behind --url');
  }
  return withNode(args, async (n) => {
    const pid = n.pid!;
    await new Promise((r) => setTimeout(r, args.warmupS * 1000));
    const perSecond: number[] = [];
    const s = new ProcSampler(pid, 500);
    s.start();
    const machine = new MachineSampler();
    const threads0 = readThreads(pid);
    const tw0 = performance.now();
    let prev = readProc(pid);
    for (let i = 0; i < Math.max(1, Math.round(args.durationS)); i++) {
      await new Promise((r) => setTimeout(r, 1000));
      const cur = readProc(pid);
      if (prev && cur) perSecond.push(round1((cur.cpuS - prev.cpuS) * 100));
      prev = cur;
    }
    const byThread = threadCpuPct(threads0, readThreads(pid), (performance.now() - tw0) / 1000);
    const usage = s.stop();
    if (!usage) throw new Error(`could not read /proc/${pid}`);
    const m = machine.stop();
    const metrics = await interestingMetrics(n.admin);
    const res: BenchResult = {
      ...idleResult(args, 'chicago'),
      cpuPct: usage.cpuPct,
      rssMB: usage.rssMB,
      server: { ...usage, pid },
      ...(m ? { machine: { ...m, otherPct: round1(Math.max(0, m.busyPct - usage.cpuPct)) } } : {}),
      ...(metrics ? { serverMetrics: metrics } : {}),
      extra: { cpuPctPerSecond: perSecond, cpuPctByThread: byThread, spawned: n.spawned !== undefined, note: 'CPU % of one core, all threads' },
    };
    const goal = evaluateGoal(res);
    if (goal) res.goal = goal;
    return res;
  });
}
