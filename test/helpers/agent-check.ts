// For the agent's kill tests: an agent directory with its config, starting and killing the agent
// process, the numbered lines still on disk, and the exactly-once check of what reached Chicago.
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { type AgentProc, readTopic, startAgent, type TopicRecord } from './agent.js';
import { slow } from './slow.js';

export interface AgentDir { dir: string; logs: string; config: string }

/** A temp dir with logs/ and agent.yaml; `url(s)` is the node the agent ships to. */
export async function agentDir(name: string, url: string, sources: string, extra: string[] = []): Promise<AgentDir> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `chicago-agent-${name}-`));
  const logs = path.join(dir, 'logs');
  await mkdir(logs);
  const config = path.join(dir, 'agent.yaml');
  await writeFile(config, [
    `node: { url: ${url}, timeoutMs: 5000 }`,
    'host: killhost',
    'spool: { dir: ./spool, quotaBytes: 67108864, segmentBytes: 1048576 }',
    'pollIntervalMs: 50',
    'rotatedIdleMs: 1000',
    'batch: { lingerMs: 5, maxRecords: 2000 }',
    'retry: { minMs: 20, maxMs: 500 }',
    `logLevel: ${process.env.AGENT_TRACE ? 'debug' : 'info'}`,
    ...extra,
    'sources:',
    sources,
  ].join('\n'));
  return { dir, logs, config };
}

/** GAP warnings and errors of every agent started here (a kill test prints them when it fails) */
export const agentProblems: string[] = [];

export function watchProblems(a: AgentProc): void {
  a.proc.stdout!.on('data', (c: string) => {
    if (process.env.AGENT_TRACE) appendFileSync(process.env.AGENT_TRACE, String(c));
    for (const l of String(c).split('\n')) if (/GAP|"level":(50|60)/.test(l) && agentProblems.length < 200) agentProblems.push(l.slice(0, 600));
  });
}

export async function runningAgent(config: string, all: AgentProc[]): Promise<AgentProc> {
  const a = startAgent(config);
  watchProblems(a);
  all.push(a);
  await a.stdout.waitFor(/"msg":"agent running"/, slow(20_000));
  return a;
}

export async function kill9(a: AgentProc): Promise<void> {
  a.proc.kill('SIGKILL');
  await a.exited;
}

/** every numbered `prefix N INFO` line in `dir`'s files whose names start with `base` */
export async function linesOnDisk(dir: string, base: string, prefix: string): Promise<Set<number>> {
  const out = new Set<number>();
  for (const name of await readdir(dir)) {
    if (!name.startsWith(base)) continue;
    for (const m of (await readFile(path.join(dir, name), 'utf8')).matchAll(new RegExp(`^${prefix} (\\d+) INFO`, 'gm'))) out.add(Number(m[1]));
  }
  return out;
}

export interface TaskCheck {
  task: string;
  records: number;
  /** the first 20 of each list; the counts are of all */
  missing: number[];
  duplicated: number[];
  missingCount: number;
  duplicatedCount: number;
  seqGaps: string;
  extra: number[];
}

/** A count with the first numbers of its list as ranges: `40 (100-119, 300-319)`. */
export function countWithRanges(n: number, first: number[]): string {
  if (n === 0) return '0';
  const r: string[] = [];
  for (let i = 0; i < first.length; i++) {
    let j = i;
    while (j + 1 < first.length && first[j + 1] === first[j] + 1) j++;
    r.push(i === j ? `${first[i]}` : `${first[i]}-${first[j]}`);
    i = j;
  }
  return `${n} (${r.join(', ')}${n > first.length ? ', …' : ''})`;
}

/** What Chicago holds of `task` against the lines it must hold: missing, duplicated, seq gaps. */
export function checkTask(records: TopicRecord[], task: string, want: Set<number>): TaskCheck {
  const mine = records.filter((r) => r.headers.task === task);
  const seen = new Map<number, number>();
  for (const r of mine) {
    const n = Number(/ (\d+) INFO/.exec(r.value)?.[1] ?? -1);
    seen.set(n, (seen.get(n) ?? 0) + 1);
  }
  const seqs = mine.map((r) => Number(r.headers.seq)).sort((a, b) => a - b);
  let seqGaps = '';
  for (let i = 0; i < seqs.length && seqGaps === ''; i++) if (seqs[i] !== i) seqGaps = `seq ${i} is ${seqs[i]} (of ${seqs.length})`;
  const missing = [...want].filter((n) => !seen.has(n)).sort((a, b) => a - b);
  const duplicated = [...seen].filter(([, c]) => c > 1).map(([n]) => n).sort((a, b) => a - b);
  return {
    task,
    records: mine.length,
    missing: missing.slice(0, 20),
    duplicated: duplicated.slice(0, 20),
    missingCount: missing.length,
    duplicatedCount: duplicated.length,
    extra: [...seen.keys()].filter((n) => !want.has(n)).slice(0, 20),
    seqGaps,
  };
}

/** Sum of a topic's partition end offsets, as a node reports them. */
async function endOffsets(url: string, topic: string): Promise<number> {
  const res = await fetch(`${url}/v1/topics/${topic}`, { signal: AbortSignal.timeout(slow(5000)) });
  if (!res.ok) return -1;
  const t = (await res.json()) as { partitions: Array<{ endOffset: number }> };
  return t.partitions.reduce((a, p) => a + p.endOffset, 0);
}

/**
 * Waits until the topic holds at least as many records as the tasks want and its end offsets stood
 * still for 2 s (a late duplicate shows), or they stood still for 20 s (scaled), or the deadline; then
 * reads it whole.
 */
export async function readUntilComplete(url: () => string, topic: string, want: Map<string, Set<number>>, timeoutMs: number): Promise<TopicRecord[]> {
  const deadline = Date.now() + slow(timeoutMs);
  let total = 0;
  for (const lines of want.values()) total += lines.size;
  let last = -1;
  let stillSince = Date.now();
  while (Date.now() < deadline) {
    const n = await endOffsets(url(), topic).catch(() => -1);
    if (n !== last) {
      last = n;
      stillSince = Date.now();
    } else if (n >= total && Date.now() - stillSince >= 2000) break;
    // nothing arrived for a long while: what is missing will not come
    else if (Date.now() - stillSince >= slow(20_000)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  return readTopic(url(), topic);
}

export async function topicLeader(url: string, topic: string, partition: number): Promise<string | null> {
  const res = await fetch(`${url}/v1/topics/${topic}`, { signal: AbortSignal.timeout(slow(3000)) });
  if (!res.ok) return null;
  const t = (await res.json()) as { partitions: Array<{ partition: number; leader: string | null }> };
  return t.partitions.find((p) => p.partition === partition)?.leader ?? null;
}
