// A real bridge process (dist/src/bridge/main.js runBridge) for tests, and a loader for Chicago.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { killOnExit, OutputRing, repoRoot } from './launcher.js';
import { slow } from './slow.js';

export const bridgeModule = path.join(repoRoot, 'dist/src/bridge/main.js');

export interface BridgeProc {
  proc: ChildProcess;
  stdout: OutputRing;
  stderr: OutputRing;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function writeBridgeConfig(config: unknown): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-bridge-'));
  const file = path.join(dir, 'bridge.json');
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

/** Starts `runBridge(configFile)` in its own process (as `chicago bridge --config FILE` does). */
export function spawnBridge(configFile: string): BridgeProc {
  if (!existsSync(bridgeModule)) throw new Error(`${bridgeModule} is missing: run \`npm run build\` first`);
  const script = `const m = await import(${JSON.stringify(bridgeModule)}); await m.runBridge(${JSON.stringify(configFile)});`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(proc);
  const stdout = new OutputRing();
  const stderr = new OutputRing();
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => stdout.feed(c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => stderr.feed(c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => { stdout.end(); stderr.end(); resolve({ code, signal }); }));
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    return exited;
  };
  return { proc, stdout, stderr, exited, kill };
}

/** Waits for a bridge log line with msg `msg` (pino JSON on stdout). */
export function waitLog(b: BridgeProc, msg: string, timeoutMs = 60_000): Promise<string> {
  return b.stdout.waitFor((l) => l.includes(`"msg":"${msg}"`), timeoutMs);
}

export async function postJson(url: string, body: unknown): Promise<any> {
  const res = await fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(slow(30_000)) });
  const text = await res.text();
  if (res.status >= 400) throw new Error(`POST ${url}: ${res.status} ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : undefined;
}

export async function getJson(url: string): Promise<any> {
  const res = await fetch(url, { signal: AbortSignal.timeout(slow(30_000)) });
  const text = await res.text();
  if (res.status >= 400) throw new Error(`GET ${url}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

export async function createChicagoTopic(url: string, name: string, partitions: number, retention: Record<string, unknown> = {}): Promise<void> {
  await postJson(`${url}/v1/topics`, { name, partitions, replicas: 1, retention });
}

export interface LoadRecord { key?: string; value: string; headers: Record<string, string> }

/** Appends records in batches (acks=all); returns how many were acknowledged per partition. */
export async function produceChicago(url: string, topic: string, records: LoadRecord[], batch = 200): Promise<number> {
  let n = 0;
  for (let i = 0; i < records.length; i += batch) {
    const r = await postJson(`${url}/v1/topics/${topic}/records?acks=all`, records.slice(i, i + batch));
    n += r.records.length;
  }
  return n;
}

export async function endOffsets(url: string, topic: string): Promise<Map<number, number>> {
  const info = await getJson(`${url}/v1/topics/${topic}`);
  return new Map((info.partitions as Array<{ partition: number; endOffset: number }>).map((p) => [p.partition, p.endOffset]));
}

/** the values of one metric (every label set) at a bridge's /metrics */
export async function metric(url: string, name: string): Promise<number[]> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(slow(5_000)) })).text();
  return text.split('\n').filter((l) => l.startsWith(name + '{') || l.startsWith(name + ' ')).map((l) => Number(l.split(' ').pop()));
}

/** polls `cond` every `everyMs` until it holds, for at most `idleMs` scaled by the test slowdown */
export async function waitUntil(what: string, cond: () => Promise<boolean> | boolean, idleMs: number, everyMs = 200): Promise<void> {
  const timeoutMs = slow(idleMs);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Appends `ratePerS` records per second (batches of `batch`) until stopped; counts what was acked. */
export function startLoad(url: string, topic: string, opts: { ratePerS: number; batch?: number; tasks?: string[] }) {
  const batch = opts.batch ?? 50;
  const tasks = opts.tasks ?? ['web', 'db'];
  let stopped = false;
  let seq = 0;
  let acked = 0;
  let errors = 0;
  const done = (async () => {
    const t0 = Date.now();
    while (!stopped) {
      const due = Math.floor(((Date.now() - t0) / 1000) * opts.ratePerS);
      if (seq >= due) { await new Promise((r) => setTimeout(r, 10)); continue; }
      const recs = Array.from({ length: batch }, () => {
        const i = seq++;
        return { key: `k${i % 16}`, value: `rec-${i}`, headers: { task: tasks[i % tasks.length]!, host: `h${i % 4}` } };
      });
      try {
        const r = await postJson(`${url}/v1/topics/${topic}/records?acks=all`, recs);
        acked += r.records.length;
      } catch {
        errors++;
      }
    }
  })();
  return {
    get acked() { return acked; },
    get errors() { return errors; },
    async stop(): Promise<void> { stopped = true; await done; },
  };
}

/**
 * The exactly-once check on what a read_committed consumer got: every Chicago offset below the
 * end of each partition exactly once, and every task's seq (per Chicago partition) 1..n once.
 * A duplicate's report names where its copies are in Kafka (partition@offset), when records say.
 */
export function checkExactlyOnce(
  records: Array<{ headers: Record<string, string>; partition?: number; offset?: number }>,
  ends: Map<number, number>,
): string[] {
  const problems: string[] = [];
  const byPart = new Map<number, Map<number, number>>();
  for (const r of records) {
    const p = Number(r.headers['chicago-partition']);
    const o = Number(r.headers['chicago-offset']);
    const m = byPart.get(p) ?? new Map<number, number>();
    byPart.set(p, m);
    m.set(o, (m.get(o) ?? 0) + 1);
  }
  for (const [p, end] of ends) {
    const m = byPart.get(p) ?? new Map<number, number>();
    let missing = 0;
    let dup = 0;
    let firstDup = -1;
    for (let o = 0; o < end; o++) {
      const n = m.get(o) ?? 0;
      if (n === 0) missing++;
      if (n > 1) dup += n - 1;
      if (n > 1 && firstDup < 0) firstDup = o;
    }
    const where = firstDup < 0 ? '' : `; first: offset ${firstDup} at Kafka ${records
      .filter((r) => Number(r.headers['chicago-partition']) === p && Number(r.headers['chicago-offset']) === firstDup)
      .map((r) => `${r.partition ?? '?'}@${r.offset ?? '?'}`).join(', ')}`;
    if (missing || dup) problems.push(`chicago partition ${p}: ${missing} missing, ${dup} duplicated of ${end}${where}`);
  }
  const seqs = new Map<string, number[]>();
  for (const r of records) {
    const k = `${r.headers.task}/${r.headers['chicago-partition']}`;
    const l = seqs.get(k) ?? [];
    seqs.set(k, l);
    l.push(Number(r.headers.seq));
  }
  for (const [k, l] of seqs) {
    l.sort((a, b) => a - b);
    if (!l.every((s, i) => s === i + 1)) problems.push(`task/partition ${k}: seq is not 1..${l.length} once each`);
  }
  return problems;
}
