// The host agent as a real process for tests, Debian's logrotate (installed if missing), and a
// writer process appending numbered lines.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { cliPath, killOnExit, OutputRing, repoRoot } from './launcher.js';
import { slow } from './slow.js';

const run = promisify(execFile);
export const LOGROTATE = '/usr/sbin/logrotate';
const INSTALL_TIMEOUT_MS = slow(300_000);

/** logrotate's path, apt-installed if missing (asynchronously, under the repo's apt lock like scripts/etcd.sh). */
export async function logrotateBinary(): Promise<string> {
  if (existsSync(LOGROTATE)) return LOGROTATE;
  const script = [
    'set -e',
    'as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }',
    '(',
    '  flock 8',
    `  [ -e ${LOGROTATE} ] && exit 0`,
    '  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null',
    '  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=300 install -y -qq logrotate >/dev/null',
    ') 8>/tmp/chicago-apt.lock',
  ].join('\n');
  await run('bash', ['-c', script], { timeout: INSTALL_TIMEOUT_MS });
  if (!existsSync(LOGROTATE)) throw new Error('logrotate: not found after apt-get install logrotate');
  return LOGROTATE;
}

/** Forces one rotation of `file` with the given directives (create or copytruncate). */
export async function rotate(bin: string, dir: string, file: string, mode: 'create' | 'copytruncate'): Promise<void> {
  const conf = path.join(dir, `logrotate-${mode}.conf`);
  const state = path.join(dir, 'logrotate.state');
  await writeFile(conf, `${file} {\n  ${mode}\n  rotate 10000\n  missingok\n  nocompress\n}\n`);
  await run(bin, ['--force', '--state', state, conf], { timeout: slow(10_000) });
  await keepBackups(file);
}

let backups = 0;
/**
 * logrotate's create race leaves the file a writer made between its rename and its create as
 * NAME-YYYYMMDDHH.backup, and a second race in the same hour renames over the first: tests that
 * count the lines moved aside give each one a name of its own (still NAME-<digits>.backup).
 */
export async function keepBackups(file: string): Promise<void> {
  const dir = path.dirname(file);
  const base = path.basename(file);
  for (const name of await readdir(dir)) {
    if (name.startsWith(`${base}-`) && /^\d{10}\.backup$/.test(name.slice(base.length + 1))) {
      await rename(path.join(dir, name), path.join(dir, `${base}-${Date.now()}${String(++backups).padStart(6, '0')}.backup`));
    }
  }
}

export interface AgentProc {
  proc: ChildProcess;
  stdout: OutputRing;
  stderr: OutputRing;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function startAgent(config: string): AgentProc {
  const proc = spawn(process.execPath, [cliPath, 'agent', '--config', config], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout = new OutputRing();
  const stderr = new OutputRing();
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => stdout.feed(c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => stderr.feed(c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('close', (code, signal) => resolve({ code, signal }));
  });
  killOnExit(proc);
  return { proc, stdout, stderr, exited };
}

/**
 * A child process appending `prefix N` lines (N from `from`) to `file`, opening it by name for
 * every batch (as an app that reopens after rotation); `lines` in all, about `perSec` a second.
 */
export function startWriter(file: string, prefix: string, lines: number, perSec: number, from = 0): { proc: ChildProcess; done: Promise<number | null> } {
  const code = `
    const fs = require('fs');
    const [file, prefix, total, perSec, from] = process.argv.slice(1);
    let n = Number(from); const end = n + Number(total);
    const batch = Math.max(1, Math.round(Number(perSec) / 100));
    const t = setInterval(() => {
      let s = '';
      for (let i = 0; i < batch && n < end; i++, n++) s += prefix + ' ' + n + ' INFO some payload text\\n';
      if (s) fs.appendFileSync(file, s);
      if (n >= end) { clearInterval(t); }
    }, 10);
  `;
  const proc = spawn(process.execPath, ['-e', code, file, prefix, String(lines), String(perSec), String(from)], { stdio: 'ignore' });
  const done = new Promise<number | null>((resolve) => proc.once('close', (c) => resolve(c)));
  return { proc, done };
}

export interface TopicRecord { partition: number; offset: number; key?: string | null; value: string; headers: Record<string, string> }

/** Every record of a topic, all partitions. */
export function readTopic(url: string, topic: string): Promise<TopicRecord[]> {
  return topicReader(url, topic)();
}

/**
 * A reader of a topic for polls: each call answers what readTopic would (every record, partition
 * by partition), fetching only what was appended since its last call. A log only grows here, so a
 * poll costs what is new, not the whole topic again.
 */
export function topicReader(url: string, topic: string): () => Promise<TopicRecord[]> {
  return recordsReader(url, topic, (r) => r, 10_000);
}

/** A record as GET /v1/topics/NAME/records answers it */
export interface WireRecord extends TopicRecord { valueEncoding?: string }

/** topicReader with each record taken `as` the caller keeps it, `pageRecords` at a time */
export function recordsReader<T>(url: string, topic: string, as: (r: WireRecord, partition: number) => T, pageRecords: number): () => Promise<T[]> {
  const read: T[][] = [];
  const next: number[] = [];
  return async () => {
    const res0 = await fetch(`${url}/v1/topics/${topic}`);
    if (res0.status === 404) return [];
    // an answer without partitions (a node restarting) reads as an empty topic, as readTopic did
    const partitions = ((await res0.json()) as { partitionCount?: number }).partitionCount ?? 0;
    for (let p = 0; p < partitions; p++) {
      read[p] ??= [];
      let offset = next[p] ?? 0;
      for (let i = 0; i < 100_000; i++) {
        const res = await fetch(`${url}/v1/topics/${topic}/records?partition=${p}&offset=${offset}&maxRecords=${pageRecords}`);
        if (res.status === 416) break;
        const body = (await res.json()) as { records: WireRecord[]; nextOffset: number; endOffset: number };
        for (const r of body.records) read[p].push(as(r, p));
        offset = next[p] = body.nextOffset;
        if (offset >= body.endOffset || body.records.length === 0) break;
      }
    }
    return read.slice(0, partitions).flat();
  };
}
