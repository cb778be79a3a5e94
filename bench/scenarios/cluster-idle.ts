// cluster-idle: a private cluster (default 4 nodes, N=3) with nothing to do. After --warmup
// seconds it measures, over --duration seconds, each node's CPU (all threads, % of one core), the
// CPU of its threads by name (summed over the nodes, then per node), and how often each node's
// main thread and all its threads wake (voluntary context switches: about one per wake-up). What
// an idle cluster costs is paid again, as a share, by every write a loaded one takes.
import { readFileSync, readdirSync } from 'node:fs';
import type { BenchArgs } from '../args.js';
import { readProc, readThreads, round1 } from '../proc.js';
import { idleResult, type BenchResult } from '../result.js';
import { clog, uptime, withCluster } from './cluster-common.js';

/** [main thread, all threads] voluntary context switches of a process */
function wakeups(pid: number): [number, number] {
  let main = 0;
  let all = 0;
  let tids: string[] = [];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return [0, 0]; }
  for (const tid of tids) {
    try {
      const n = Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))?.[1] ?? 0);
      all += n;
      if (tid === String(pid)) main = n;
    } catch {
      // thread exited
    }
  }
  return [main, all];
}

export async function benchClusterIdle(args: BenchArgs): Promise<BenchResult> {
  const uptimeBefore = uptime();
  return withCluster(args, async (c) => {
    await new Promise((r) => setTimeout(r, args.warmupS * 1000));
    const pids = c.running().map((n) => n.pid);
    const cpu0 = pids.map((p) => readProc(p)?.cpuS ?? 0);
    const threads0 = pids.map((p) => readThreads(p));
    const wake0 = pids.map(wakeups);
    const t0 = performance.now();
    clog(`idle for ${args.durationS} s`);
    await new Promise((r) => setTimeout(r, args.durationS * 1000));
    const wallS = (performance.now() - t0) / 1000;
    const perNodeCpuPct = pids.map((p, i) => round1((((readProc(p)?.cpuS ?? 0) - cpu0[i]!) / wallS) * 100));
    const wake1 = pids.map(wakeups);
    // thread names (the main thread and the partition workers are all "node"; the main thread is the one whose id is the pid)
    const byThread: Record<string, number> = {};
    pids.forEach((p, i) => {
      for (const [key, s] of readThreads(p)) {
        const tid = /\[(\d+)\]$/.exec(key)?.[1];
        const name = tid === String(p) ? 'main' : key.replace(/ \[\d+\]$/, '');
        byThread[name] = (byThread[name] ?? 0) + (s - (threads0[i]!.get(key) ?? 0));
      }
    });
    const perNodeByThread = Object.fromEntries(Object.entries(byThread)
      .map(([k, s]): [string, number] => [k, Math.round((s / wallS / pids.length) * 1000) / 10])
      .filter(([, v]) => v > 0)
      .sort((a, b) => b[1] - a[1]));
    const total = round1(perNodeCpuPct.reduce((a, b) => a + b, 0));
    const res: BenchResult = {
      ...idleResult(args, 'chicago'),
      nodes: pids.length,
      cpuPct: total,
      extra: {
        perNodeCpuPct,
        perNodeCpuPctByThread: perNodeByThread,
        mainThreadWakeupsPerS: pids.map((_, i) => Math.round((wake1[i]![0] - wake0[i]![0]) / wallS)),
        allThreadsWakeupsPerS: pids.map((_, i) => Math.round((wake1[i]![1] - wake0[i]![1]) / wallS)),
        note: 'CPU % of one core; by thread: averaged per node',
        uptimeBefore,
        uptimeAfter: uptime(),
      },
    };
    return res;
  });
}
