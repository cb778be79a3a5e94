// What every Chicago scenario needs: a node (spawned or given), its pid for sampling, a driver.
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { BenchArgs } from '../args.js';
import { HttpTarget } from '../http.js';
import type { OpenLoopOptions } from '../openloop.js';
import { MachineSampler, ProcSampler, SelfCpu, round1, spawnNode, type SpawnedNode } from '../proc.js';
import type { BenchResult } from '../result.js';
import { openDriver, type ChicagoDriver, type DriverOptions } from '../targets.js';

export interface NodeHandle {
  url: string;
  /** known when spawned or given with --pid */
  pid?: number;
  spawned?: SpawnedNode;
  admin: HttpTarget;
}

export async function withNode<T>(args: BenchArgs, fn: (n: NodeHandle) => Promise<T>): Promise<T> {
  let spawned: SpawnedNode | undefined;
  if (args.spawn) {
    const nodeArgs: string[] = [];
    if (args.cpuProf) {
      const dir = resolve(args.cpuProf);
      mkdirSync(dir, { recursive: true });
      nodeArgs.push('--cpu-prof', '--cpu-prof-dir', dir);
    }
    spawned = await spawnNode({ serverArgs: args.serverArgs, nodeArgs });
  }
  const url = spawned?.url ?? args.url;
  const admin = new HttpTarget(url, 2);
  try {
    await waitHealthy(admin, 15_000);
    const pid = spawned?.pid ?? args.pid;
    return await fn({ url, ...(pid === undefined ? {} : { pid }), ...(spawned ? { spawned } : {}), admin });
  } catch (e) {
    if (spawned && e instanceof Error) e.message += `\n--- node log tail ---\n${spawned.logTail()}`;
    throw e;
  } finally {
    admin.close();
    await spawned?.stop();
  }
}

async function waitHealthy(admin: HttpTarget, ms: number): Promise<void> {
  const until = Date.now() + ms;
  let last: unknown;
  while (Date.now() < until) {
    try {
      await admin.health();
      return;
    } catch (e) {
      last = e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`node not healthy after ${ms} ms: ${String(last)}`);
}

export function driverFor(args: BenchArgs, url: string): Promise<ChicagoDriver> {
  return openDriver(driverOptions(args, url));
}

export function driverOptions(args: BenchArgs, url: string): DriverOptions {
  return {
    url,
    via: args.via,
    connections: args.connections,
    acks: args.acks,
    lingerMs: args.lingerMs,
    producers: args.producers,
    ...(args.maxInFlight !== undefined ? { maxInFlight: args.maxInFlight } : {}),
    creditBytes: args.creditBytes,
  };
}

export function loopOptions(args: BenchArgs, opsPerSecond: number, weight: number): OpenLoopOptions {
  return {
    opsPerSecond,
    durationS: args.durationS,
    warmupS: args.warmupS,
    weight,
    maxOutstanding: args.maxOutstanding,
    timeoutMs: args.timeoutMs,
    drainMs: args.drainMs,
    pacing: args.pacing,
  };
}

/**
 * CPU of the bench itself, of the server (when its pid is known) and of the whole machine over a
 * measured window. `machine.otherPct` is what neither used: other processes competing for the cores.
 */
export function startMeters(pid: number | undefined, version?: string): { stop(): Partial<BenchResult> } {
  const server = pid === undefined ? undefined : new ProcSampler(pid, 250);
  server?.start();
  const self = new SelfCpu();
  const machine = new MachineSampler();
  return {
    stop: () => {
      const usage = server?.stop();
      const benchCpuPct = self.pct();
      const m = machine.stop();
      return {
        benchCpuPct,
        ...(usage && pid !== undefined ? { server: { ...usage, pid, ...(version ? { version } : {}) } } : {}),
        ...(m
          ? { machine: { ...m, otherPct: round1(Math.max(0, m.busyPct - benchCpuPct - (usage?.cpuPct ?? 0))) } }
          : {}),
      };
    },
  };
}

/** The node's event-loop and queue metrics after a run (names that look relevant), for diagnosis. */
export async function interestingMetrics(admin: HttpTarget): Promise<string[] | undefined> {
  try {
    const r = await admin.request('GET', '/metrics');
    if (r.status !== 200) return undefined;
    return r.body
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .filter((l) => /event_?loop|eventloop|lag|in_?flight|queue|mailbox|overload|dropped/i.test(l))
      .filter((l) => !/_bucket\{/.test(l))
      .slice(0, 60);
  } catch {
    return undefined;
  }
}

export { asciiValue } from '../generators.js';
