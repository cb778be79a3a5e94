// Helpers of the file-source tests: an agent config in a temp directory, the agent as a process
// (optionally as another user), logrotate with any directives, records read back as bytes.
import { execFile, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll } from 'vitest';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { cliPath, killOnExit, type NodeHandle, OutputRing, repoRoot, startNode } from './launcher.js';
import { type AgentProc, keepBackups, recordsReader } from './agent.js';
import { slow } from './slow.js';

const run = promisify(execFile);

export interface Setup { dir: string; logs: string; config: string }

/**
 * A node for the test file (started before its tests, stopped after) and agents that are killed at
 * the end; AGENT_TEST_DUMP_DIR gets every agent's log for a post-mortem.
 */
export function agentFixture(): { url: () => string; agent: (config: string, opts?: { user?: string }) => Promise<AgentProc>; kill9: (a: AgentProc) => Promise<void> } {
  let node: NodeHandle | undefined;
  const agents: AgentProc[] = [];
  beforeAll(async () => {
    node = await startNode();
  });
  afterAll(async () => {
    if (process.env.AGENT_TEST_DUMP_DIR) await writeFile(path.join(process.env.AGENT_TEST_DUMP_DIR, 'agents.log'), agents.map((a) => a.stdout.text()).join('\n'));
    for (const a of agents) a.proc.kill('SIGKILL');
    await node?.stop();
  });
  return {
    url: () => node!.url,
    agent: async (config, opts = {}) => {
      const a = await agentProcess(config, opts);
      agents.push(a);
      return a;
    },
    kill9: async (a) => {
      a.proc.kill('SIGKILL');
      await a.exited;
    },
  };
}

/** An agent config (sources as YAML lines) in a new temp directory with a logs/ directory. */
export async function agentSetup(url: string, name: string, sources: string[], extra: string[] = []): Promise<Setup> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `chicago-agentf-${name}-`));
  const logs = path.join(dir, 'logs');
  await mkdir(logs);
  const config = path.join(dir, 'agent.yaml');
  // a key in `extra` replaces the default line of that key
  const defaults = [
    `node: { url: ${url} }`,
    'host: testhost',
    'spool: { dir: ./spool, quotaBytes: 67108864, segmentBytes: 1048576 }',
    'pollIntervalMs: 50',
    'rotatedIdleMs: 1000',
    'batch: { lingerMs: 5 }',
    'retry: { minMs: 20, maxMs: 500 }',
    'logLevel: info',
  ].filter((d) => !extra.some((e) => e.split(':')[0] === d.split(':')[0]));
  await writeFile(config, [...defaults, ...extra, 'sources:', ...sources].join('\n'));
  return { dir, logs, config };
}

/** The agent as a process, as `user` when given (through setpriv, the spool directory made theirs). */
export async function agentProcess(config: string, opts: { user?: string } = {}): Promise<AgentProc> {
  const args = [cliPath, 'agent', '--config', config];
  let cmd = process.execPath;
  if (opts.user) {
    const dir = path.dirname(config);
    await chmod(dir, 0o755);
    await mkdir(path.join(dir, 'spool'), { recursive: true });
    await run('chown', ['-R', opts.user, path.join(dir, 'spool')]);
    args.unshift('--reuid', opts.user, '--regid', opts.user === 'nobody' ? 'nogroup' : opts.user, '--clear-groups', process.execPath);
    cmd = 'setpriv';
  }
  // AGENT_NODE_OPTIONS: node options for the agent only (a heap cap shows what memory it keeps)
  const env = process.env.AGENT_NODE_OPTIONS ? { ...process.env, NODE_OPTIONS: process.env.AGENT_NODE_OPTIONS } : process.env;
  const proc = spawn(cmd, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env });
  const stdout = new OutputRing();
  const stderr = new OutputRing();
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => stdout.feed(c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => stderr.feed(c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
  killOnExit(proc);
  const early = exited.then((e) => { throw new Error(`agent exited early (${JSON.stringify(e)}): ${stderr.text().slice(-2000)}`); });
  await Promise.race([stdout.waitFor(/"msg":"agent running"/, slow(10_000)), early]);
  early.catch(() => {});
  return { proc, stdout, stderr, exited };
}

/** One forced logrotate run of `file` with these directives. */
export async function logrotate(dir: string, file: string, directives: string[]): Promise<void> {
  const conf = path.join(dir, `logrotate-${path.basename(file)}.conf`);
  await writeFile(conf, `${file} {\n  ${directives.join('\n  ')}\n  missingok\n}\n`);
  await run('/usr/sbin/logrotate', ['--force', '--state', path.join(dir, 'logrotate.state'), conf], { timeout: slow(10_000) });
  await keepBackups(file);
}

export interface Rec { partition: number; offset: number; bytes: Buffer; value: string; headers: Record<string, string> }

/** Every record of a topic, its value as bytes (base64 values decoded). */
export function readRecords(url: string, topic: string): Promise<Rec[]> {
  return recordReader(url, topic)();
}

/** A reader of a topic for polls: each call answers what readRecords would, fetching only what is new. */
function recordReader(url: string, topic: string): () => Promise<Rec[]> {
  return recordsReader(url, topic, (r, p) => {
    const bytes = r.valueEncoding === 'base64' ? Buffer.from(r.value, 'base64') : Buffer.from(r.value, 'utf8');
    return { partition: p, offset: r.offset, bytes, value: r.valueEncoding === 'base64' ? bytes.toString('latin1') : r.value, headers: r.headers };
  }, 2000);
}

/** Polls until `done(records)` or the (scaled) deadline; returns the last read. */
export async function readUntil(url: string, topic: string, done: (r: Rec[]) => boolean, ms = 15_000): Promise<Rec[]> {
  const deadline = Date.now() + slow(ms);
  const poll = recordReader(url, topic);
  for (;;) {
    const recs = await poll().catch(() => [] as Rec[]);
    if (done(recs) || Date.now() > deadline) return recs;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `prefix N INFO …` lines, as numbers. */
export function numbered(n0: number, n1: number, prefix: string): string {
  let s = '';
  for (let i = n0; i < n1; i++) s += `${prefix} ${i} INFO some payload text\n`;
  return s;
}

/** The line numbers of a task's records, and whether its seqs are 0..n-1. */
export function check(recs: Rec[], task: string): { lines: number[]; dups: number; seqOk: boolean; gaps: Rec[] } {
  const mine = recs.filter((r) => r.headers.task === task);
  const gaps = mine.filter((r) => r.headers.gap === 'true');
  // records that are not numbered lines (a banner) are not counted
  const lines = mine.filter((r) => r.headers.gap !== 'true').map((r) => Number(/ (\d+) INFO/.exec(r.value)?.[1] ?? -1)).filter((n) => n >= 0);
  const seqs = mine.map((r) => Number(r.headers.seq)).sort((a, b) => a - b);
  return { lines, dups: lines.length - new Set(lines).size, seqOk: seqs.every((s, i) => s === i), gaps };
}

export function missing(lines: number[], n0: number, n1: number): number[] {
  const have = new Set(lines);
  const out: number[] = [];
  for (let i = n0; i < n1; i++) if (!have.has(i)) out.push(i);
  return out;
}

/**
 * A writer child appending `prefix N` lines through one O_APPEND descriptor, `perBatch` lines every
 * `everyMs`, reopening the path on SIGHUP (as a daemon does after a rename rotation); its pid in `pidFile`.
 */
export function startFdWriter(file: string, prefix: string, lines: number, perBatch: number, everyMs: number, pidFile: string): { done: Promise<number | null>; kill: () => void } {
  const code = `
    const fs = require('fs');
    const [file, prefix, total, perBatch, everyMs, pidFile] = process.argv.slice(1);
    fs.writeFileSync(pidFile, String(process.pid));
    let fd = fs.openSync(file, 'a');
    process.on('SIGHUP', () => { fs.closeSync(fd); fd = fs.openSync(file, 'a'); });
    let n = 0;
    const t = setInterval(() => {
      let s = '';
      for (let i = 0; i < Number(perBatch) && n < Number(total); i++, n++) s += prefix + ' ' + n + ' INFO some payload text\\n';
      if (s) fs.writeSync(fd, s);
      if (n >= Number(total)) { clearInterval(t); fs.closeSync(fd); }
    }, Number(everyMs));
  `;
  const proc = spawn(process.execPath, ['-e', code, file, prefix, String(lines), String(perBatch), String(everyMs), pidFile], { stdio: 'ignore' });
  killOnExit(proc);
  return { done: new Promise((r) => proc.once('close', (c) => r(c))), kill: () => proc.kill('SIGKILL') };
}

/** Peak and current RSS of a process (kB → bytes), from /proc. */
export async function rssOf(pid: number): Promise<{ rssBytes: number; hwmBytes: number }> {
  const { readFile } = await import('node:fs/promises');
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024;
  return { rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}
