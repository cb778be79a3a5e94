// Faults for cluster tests: link cuts with iptables on loopback, and a schedule of process and
// network faults applied to a running cluster while a workload runs, logged with times.
//
// Link cuts: every test node listens on its own 127.0.0.N and binds its outgoing peer connections
// to it (docs/cluster.md), so DROP rules on `lo` between two addresses cut exactly that link, in
// both directions, established connections included. Clients on 127.0.0.1 still reach every node.
// Each Iptables instance tags its rules with a unique comment and only ever deletes its own.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { now } from './checker.js';

// ---------------------------------------------------------------------------------------------
// iptables

const TAG_PREFIX = 'chicago-nemesis-';
let installed = false;

function iptables(args: string[]): string {
  return execFileSync('iptables', ['-w', '5', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Installs iptables when missing (Debian, as root) and checks that rules can be listed. */
export function ensureIptables(): void {
  if (installed) return;
  try {
    iptables(['-S', 'INPUT']);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`iptables does not work here: ${(err as Error).message}`);
    execFileSync('apt-get', ['install', '-y', '-q', 'iptables'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    iptables(['-S', 'INPUT']);
  }
  installed = true;
  sweepOrphans();
}

/** Our rules (INPUT chain), as `iptables -S` prints them. */
function taggedRules(match: (tag: string) => boolean): string[][] {
  return iptables(['-S', 'INPUT'])
    .split('\n')
    .filter((l) => l.startsWith('-A INPUT ') && l.includes(TAG_PREFIX))
    .map((l) => l.split(/\s+/))
    .filter((parts) => {
      const tag = parts[parts.indexOf('--comment') + 1]?.replace(/"/g, '');
      return tag !== undefined && match(tag);
    });
}

function deleteRules(rules: string[][]): void {
  for (const parts of rules) {
    try {
      iptables(['-D', ...parts.slice(1).map((p) => p.replace(/"/g, ''))]);
    } catch {
      // already gone (a concurrent heal)
    }
  }
}

/** Deletes rules left by test processes that died without cleaning up. */
function sweepOrphans(): void {
  deleteRules(
    taggedRules((tag) => {
      const pid = Number(tag.slice(TAG_PREFIX.length).split('-')[0]);
      if (!Number.isSafeInteger(pid) || pid === process.pid) return false;
      try {
        process.kill(pid, 0);
        return false;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'ESRCH';
      }
    }),
  );
}

const liveCutters = new Set<Iptables>();
const healAll = () => {
  for (const c of liveCutters) {
    try {
      c.heal();
    } catch {
      // best effort on the way out; the next run's sweep removes what is left
    }
  }
};
process.once('exit', healAll);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  process.once(sig, () => {
    healAll();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  });
}

export class Iptables {
  readonly tag = `${TAG_PREFIX}${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  private readonly cuts = new Set<string>();

  constructor() {
    ensureIptables();
    liveCutters.add(this);
  }

  /** Drops every packet between each address of `a` and each of `b`, both ways. */
  cut(a: readonly string[], b: readonly string[]): void {
    for (const x of a) {
      for (const y of b) {
        if (x === y) throw new Error(`cannot cut ${x} from itself`);
        for (const [s, d] of [[x, y], [y, x]]) {
          const key = `${s}>${d}`;
          if (this.cuts.has(key)) continue;
          iptables(['-I', 'INPUT', '-i', 'lo', '-s', s, '-d', d, '-m', 'comment', '--comment', this.tag, '-j', 'DROP']);
          this.cuts.add(key);
        }
      }
    }
  }

  /** Removes every rule of this instance. */
  heal(): void {
    deleteRules(taggedRules((t) => t === this.tag));
    this.cuts.clear();
  }

  /** This instance's rules as `source>destination`. */
  rules(): string[] {
    return taggedRules((t) => t === this.tag).map((parts) => {
      const s = parts[parts.indexOf('-s') + 1].replace('/32', '');
      const d = parts[parts.indexOf('-d') + 1].replace('/32', '');
      return `${s}>${d}`;
    });
  }

  /** Heals and forgets this instance. */
  close(): void {
    this.heal();
    liveCutters.delete(this);
  }
}

/**
 * Established IPv4 TCP connections between two different 127.0.0.x addresses other than
 * 127.0.0.1 (node to node), from /proc/net/tcp: proof that nodes bind their peer links.
 */
export function loopbackLinks(): Array<{ from: string; to: string }> {
  const out: Array<{ from: string; to: string }> = [];
  const addr = (hex: string) => {
    const [ip] = hex.split(':');
    const n = Number.parseInt(ip, 16); // little-endian IPv4
    return [n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255].join('.');
  };
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== '01') continue; // 01 = ESTABLISHED
    const from = addr(f[1]);
    const to = addr(f[2]);
    if (from === to || from === '127.0.0.1' || to === '127.0.0.1' || !from.startsWith('127.') || !to.startsWith('127.')) continue;
    out.push({ from, to });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The schedule

/** What the nemesis needs from a cluster (test/helpers/cluster.ts implements it). */
export interface FaultTarget {
  /** ids of member nodes that are running (paused ones included) */
  liveIds(): string[];
  /** partitions led per node, from the cluster's status */
  leaderCounts(): Promise<Map<string, number>>;
  kill9(id: string): Promise<void>;
  restart(id: string): Promise<void>;
  stop(id: string): void;
  cont(id: string): void;
  partition(a: string[], b: string[]): void;
  heal(): void;
  addNode(): Promise<{ id: string }>;
  removeNode(id: string): Promise<void>;
  waitReady(timeoutMs?: number): Promise<void>;
}

/** Which node a fault hits: a named one, the node leading the most partitions, or any. */
export type Victim = string | 'leader' | 'random';

export type FaultSpec =
  | { kind: 'kill9'; node?: Victim }
  | { kind: 'pause'; node?: Victim }
  /** isolate: one node from all others; halves: the live nodes split in two; explicit a/b */
  | { kind: 'partition'; shape?: 'isolate' | 'halves'; node?: Victim; a?: string[]; b?: string[] }
  | { kind: 'join' }
  | { kind: 'leave'; node?: Victim };
export type FaultKind = FaultSpec['kind'];
export const FAULT_KINDS: readonly FaultKind[] = ['kill9', 'pause', 'partition', 'join', 'leave'];

export interface NemesisEvent {
  /** same clock as the history (checker's now()) */
  atMs: number;
  cycle: number;
  kind: FaultKind;
  phase: 'inject' | 'heal' | 'ready' | 'problem';
  detail: string;
}

export interface NemesisOptions {
  /** how long a fault holds before it is healed */
  faultMs?: number;
  /** quiet time after the cluster is ready again, before the next fault */
  recoverMs?: number;
  /** deadline for the cluster to be ready after each heal; missing it is a problem */
  readyTimeoutMs?: number;
  /** cluster size bounds for joins and leaves: a join at max becomes a leave and vice versa */
  minNodes?: number;
  maxNodes?: number;
  seed?: number;
  /** called with every event as it happens */
  onEvent?: (e: NemesisEvent) => void;
  /** stop early (checked between cycles) */
  signal?: AbortSignal;
}

export interface NemesisResult {
  events: NemesisEvent[];
  /** the cluster did not recover in time, or a fault could not be applied */
  problems: string[];
  cycles: number;
}

/** mulberry32: a small seeded PRNG, so a schedule replays from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded random schedule: `cycles` faults drawn from `kinds`, victims chosen at run time. */
export function randomSchedule(seed: number, cycles: number, kinds: readonly FaultKind[] = FAULT_KINDS): FaultSpec[] {
  const r = rng(seed);
  const victims: Victim[] = ['leader', 'random'];
  return Array.from({ length: cycles }, (): FaultSpec => {
    const kind = kinds[Math.floor(r() * kinds.length)];
    const node = victims[Math.floor(r() * victims.length)];
    switch (kind) {
      case 'partition':
        return { kind, shape: r() < 0.6 ? 'isolate' : 'halves', node };
      case 'join':
        return { kind };
      default:
        return { kind, node };
    }
  });
}

export async function runNemesis(cluster: FaultTarget, schedule: readonly FaultSpec[], opts: NemesisOptions = {}): Promise<NemesisResult> {
  const faultMs = opts.faultMs ?? 3000;
  const recoverMs = opts.recoverMs ?? 1000;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 30_000;
  const minNodes = opts.minNodes ?? 3;
  const maxNodes = opts.maxNodes ?? 5;
  const r = rng(opts.seed ?? 1);
  const events: NemesisEvent[] = [];
  const problems: string[] = [];
  let cycle = 0;
  const log = (kind: FaultKind, phase: NemesisEvent['phase'], detail: string) => {
    const e = { atMs: now(), cycle, kind, phase, detail };
    events.push(e);
    if (phase === 'problem') problems.push(`cycle ${cycle} ${kind}: ${detail}`);
    opts.onEvent?.(e);
  };
  const pick = async (v: Victim | undefined): Promise<string> => {
    const live = cluster.liveIds();
    if (live.length === 0) throw new Error('no live node to pick');
    if (v === undefined || v === 'random') return live[Math.floor(r() * live.length)];
    if (v !== 'leader') return v;
    const counts = await cluster.leaderCounts();
    return [...live].sort((x, y) => (counts.get(y) ?? 0) - (counts.get(x) ?? 0))[0];
  };

  for (const planned of schedule) {
    if (opts.signal?.aborted) break;
    cycle++;
    let spec = planned;
    const size = cluster.liveIds().length;
    if (spec.kind === 'join' && size >= maxNodes) spec = { kind: 'leave', node: 'random' };
    else if (spec.kind === 'leave' && size <= minNodes) spec = { kind: 'join' };
    const kind = spec.kind;
    try {
      switch (spec.kind) {
        case 'kill9': {
          const id = await pick(spec.node);
          log(kind, 'inject', `kill -9 ${id}`);
          await cluster.kill9(id);
          await sleep(faultMs);
          log(kind, 'heal', `restart ${id}`);
          await cluster.restart(id);
          break;
        }
        case 'pause': {
          const id = await pick(spec.node);
          log(kind, 'inject', `SIGSTOP ${id}`);
          cluster.stop(id);
          await sleep(faultMs);
          log(kind, 'heal', `SIGCONT ${id}`);
          cluster.cont(id);
          break;
        }
        case 'partition': {
          let a = spec.a;
          let b = spec.b;
          if (!a || !b) {
            const live = cluster.liveIds();
            if (spec.shape === 'halves') {
              const shuffled = [...live].sort(() => r() - 0.5);
              a = shuffled.slice(0, Math.floor(shuffled.length / 2));
              b = shuffled.slice(a.length);
            } else {
              const id = await pick(spec.node);
              a = [id];
              b = live.filter((x) => x !== id);
            }
          }
          log(kind, 'inject', `cut {${a.join(',')}} | {${b.join(',')}}`);
          cluster.partition(a, b);
          await sleep(faultMs);
          log(kind, 'heal', 'heal all links');
          cluster.heal();
          break;
        }
        case 'join': {
          log(kind, 'inject', 'starting a new node');
          const n = await cluster.addNode();
          log(kind, 'heal', `${n.id} joined`);
          break;
        }
        case 'leave': {
          const id = await pick(spec.node);
          log(kind, 'inject', `${id} leaves (SIGTERM)`);
          await cluster.removeNode(id);
          log(kind, 'heal', `${id} left`);
          break;
        }
      }
    } catch (err) {
      log(kind, 'problem', `could not apply: ${(err as Error).message.split('\n')[0]}`);
      cluster.heal();
    }
    const t0 = now();
    try {
      await cluster.waitReady(readyTimeoutMs);
      log(kind, 'ready', `cluster ready after ${(now() - t0).toFixed(0)} ms`);
    } catch (err) {
      log(kind, 'problem', `not ready within ${readyTimeoutMs} ms: ${(err as Error).message.split('\n')[0]}`);
    }
    await sleep(recoverMs);
  }
  return { events, problems, cycles: cycle };
}

export function formatEvents(events: readonly NemesisEvent[], originMs = 0): string {
  return events.map((e) => `${((e.atMs - originMs) / 1000).toFixed(2).padStart(8)}s  #${e.cycle} ${e.kind.padEnd(9)} ${e.phase.padEnd(7)} ${e.detail}`).join('\n');
}

const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));
