// The host agent (file → Chicago) against rsyslog's imfile (file → omfwd TCP) on the same box, in
// one run: throughput of a pre-written file of 200 B lines, line-written → delivered latency at a
// fixed open-loop rate, and RSS / idle CPU while 1,000 files are watched.
//
//   node dist/bench/agent.js [--quick] [--lines N] [--rate 10000] [--latency-s 20] [--files 1000]
//                            [--idle-s 60] [--settle-s 5] [--only throughput,latency,idle,idle-health] [--no-rsyslog]
//                            [--cpu-prof DIR] [--out DIR] [--agent-log LEVEL] [--agent-config YAML]
//
// --agent-log trace writes the agent's whole log to DIR/agent-throughput.log (its `timing read`, `timing
// synced`, `timing cut` and `timing acked` rows place each batch in time); --agent-config adds lines to
// the agent's config (e.g. 'batch: { inFlightMax: 8 }').
// The agent ships to one local node (a temp data dir) that the bench starts; rsyslog is a private
// `rsyslogd -n -f CONF -i PIDFILE` with its own work directory, forwarding with omfwd over TCP to a
// receiver in this process that counts (and, for latency, parses) lines. Results: JSON and a
// markdown table in bench/results/agent.{json,md}.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import net from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Histogram } from 'hdr-histogram-js';
import { ChicagoClient } from '../src/client/index.js';
import { limits } from '../src/runtime/limits.js';
import { newHistogram, recordUs, summarize, type LatencySummary } from './openloop.js';
import { type LoggedProc, MachineSampler, machineInfo, perOpByThread, readProc, readThreadStats, repoRoot, round1, spawnLogged, spawnNode, type SpawnedNode, waitFor } from './proc.js';

const LINE_BYTES = 200;
const TOPIC = 'bench-agent';
const POLL_MS = 20;
const RSYSLOGD = '/usr/sbin/rsyslogd';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    lines: { type: 'string' },
    rate: { type: 'string' },
    'latency-s': { type: 'string' },
    'warmup-s': { type: 'string' },
    files: { type: 'string' },
    'idle-s': { type: 'string' },
    'settle-s': { type: 'string' },
    only: { type: 'string' },
    'no-rsyslog': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    out: { type: 'string' },
    'timeout-s': { type: 'string' },
    'agent-log': { type: 'string' },
    'agent-config': { type: 'string' },
  },
});
const quick = values.quick ?? false;
const LINES = Number(values.lines ?? (quick ? 100_000 : 500_000));
const RATE = Number(values.rate ?? 10_000);
const LATENCY_S = Number(values['latency-s'] ?? (quick ? 5 : 20));
const WARMUP_S = Number(values['warmup-s'] ?? (quick ? 1 : 2));
const FILES = Number(values.files ?? 1000);
const IDLE_S = Number(values['idle-s'] ?? (quick ? 10 : 60));
const SETTLE_S = Number(values['settle-s'] ?? (quick ? 2 : 5));
const TIMEOUT_S = Number(values['timeout-s'] ?? 300);
const only = values.only?.split(',').map((s) => s.trim());
const wanted = (part: string): boolean => !only || only.includes(part);
const withRsyslog = !values['no-rsyslog'];
const root = repoRoot();
const outDir = resolve(values.out ?? join(root, 'bench', 'results'));
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const bin = join(root, 'bin', 'chicago.js');

const log = (s: string): void => void process.stderr.write(`[bench:agent] ${s}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const hrUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** `L <n> <µs> xxx…\n`, exactly LINE_BYTES bytes. */
function line(n: number, tUs: number): string {
  const head = `L ${n} ${tUs} `;
  return head + 'x'.repeat(LINE_BYTES - 1 - head.length) + '\n';
}

function writeLines(file: string, n: number): void {
  const fd = openSync(file, 'w');
  const per = 5000;
  for (let i = 0; i < n; i += per) {
    let s = '';
    for (let j = i; j < Math.min(n, i + per); j++) s += line(j, 0);
    writeSync(fd, s);
  }
  closeSync(fd);
}

/** CPU seconds of a process (all threads), from /proc/PID/stat. */
const cpuS = (pid: number): number => readProc(pid)?.cpuS ?? 0;

// ---- the agent ------------------------------------------------------------------------------------

type Proc = LoggedProc;
// with --agent-log the agent's whole output is kept for its file
const spawnProc = (cmd: string, args: string[], name: string, env?: NodeJS.ProcessEnv): Proc =>
  spawnLogged(cmd, args, name, { cwd: root, log, env, ...(name === 'agent' && values['agent-log'] ? { keepLines: 100_000_000 } : {}) });

async function startAgent(work: string, url: string, glob: string, extra: string[] = []): Promise<Proc> {
  const conf = join(work, 'agent.yaml');
  writeFileSync(conf, [
    `node: { url: ${url} }`,
    'host: bench',
    `spool: { dir: ${join(work, 'spool')} }`,
    `logLevel: ${values['agent-log'] ?? 'info'}`,
    ...(values['agent-config'] ? [values['agent-config']] : []),
    ...extra,
    'sources:',
    `  - task: bench`,
    `    paths: [${glob}]`,
    `    topic: ${TOPIC}`,
  ].join('\n'));
  // as users start it: bin/chicago.js sets glibc's malloc settings and V8's young generation size
  // for the agent, then execs node in the same process (same pid)
  // profiled: node runs the same file with the flags the shell line would add (--cpu-prof is not
  // allowed in NODE_OPTIONS)
  const p = values['cpu-prof']
    ? spawnProc(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof'])}`, `--max-semi-space-size=${process.env.CHICAGO_AGENT_SEMI_SPACE_MB || limits.agentSemiSpaceMb}`, bin, 'agent', '--config', conf], 'agent',
      { ...process.env, MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_TRIM_THRESHOLD_: '131072' })
    : spawnProc(bin, ['agent', '--config', conf], 'agent');
  await waitFor('the agent to run', () => p.out.some((l) => l.includes('"msg":"agent running"')), 30_000, () => p.out.slice(-20).join('\n'));
  return p;
}

async function createTopic(url: string): Promise<void> {
  // one partition: the agent's producer lands on it, the latency tail reads it
  const res = await fetch(`${url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: TOPIC, partitions: 1 }) });
  if (!res.ok && res.status !== 409) throw new Error(`create topic: ${res.status} ${await res.text()}`);
}

async function stored(url: string): Promise<number> {
  const res = await fetch(`${url}/v1/topics/${TOPIC}`);
  if (!res.ok) return 0;
  const t = (await res.json()) as { partitions: Array<{ endOffset: number }> };
  return t.partitions.reduce((a, p) => a + p.endOffset, 0);
}

// ---- rsyslog --------------------------------------------------------------------------------------

/** A TCP sink for omfwd: counts lines, and for the latency run parses each line's write time. */
class Receiver {
  lines = 0;
  bytes = 0;
  readonly hist = newHistogram();
  measureFromSeq = Infinity;
  private readonly server = net.createServer((s) => this.accept(s));
  port = 0;

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(s: net.Socket): void {
    let rest = '';
    s.on('data', (c: Buffer) => {
      this.bytes += c.length;
      if (this.measureFromSeq === Infinity) {
        // counting only: newlines
        let i = -1;
        while ((i = c.indexOf(10, i + 1)) >= 0) this.lines++;
        return;
      }
      const nowUs = hrUs();
      const parts = (rest + c.toString('latin1')).split('\n');
      rest = parts.pop() ?? '';
      for (const l of parts) {
        this.lines++;
        const m = /L (\d+) (\d+) /.exec(l);
        if (m && Number(m[1]) >= this.measureFromSeq) recordUs(this.hist, nowUs - Number(m[2]));
      }
    });
    s.on('error', () => {});
  }

  reset(measureFromSeq = Infinity): void {
    this.lines = 0;
    this.bytes = 0;
    this.hist.reset();
    this.measureFromSeq = measureFromSeq;
  }

  close(): void {
    this.server.close();
  }
}

async function startRsyslog(work: string, glob: string, port: number): Promise<Proc> {
  const conf = join(work, 'rsyslog.conf');
  const state = join(work, 'rsyslog-work');
  mkdirSync(state, { recursive: true });
  writeFileSync(conf, [
    `global(workDirectory="${state}")`,
    'module(load="imfile" mode="inotify")',
    // the line as read, nothing added: the same bytes the agent ships as a record's value
    'template(name="raw" type="string" string="%msg%\\n")',
    `input(type="imfile" file="${glob}" tag="bench" ruleset="ship" addMetadata="off")`,
    'ruleset(name="ship") {',
    `  action(type="omfwd" target="127.0.0.1" port="${port}" protocol="tcp" template="raw")`,
    '}',
  ].join('\n'));
  execFileSync(RSYSLOGD, ['-N1', '-f', conf], { stdio: 'pipe' });
  const pidFile = join(work, 'rsyslog.pid');
  const p = spawnProc(RSYSLOGD, ['-n', '-f', conf, '-i', pidFile], 'rsyslogd');
  await waitFor('rsyslogd to start', () => existsSync(pidFile), 10_000, () => p.out.join('\n'));
  return p;
}

function ensureRsyslog(): void {
  if (existsSync(RSYSLOGD)) return;
  log("rsyslogd missing: installing Debian's rsyslog");
  execFileSync('bash', ['-c', 'flock /tmp/chicago-apt.lock env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get -o DPkg::Lock::Timeout=300 install -y -qq rsyslog || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq rsyslog)'], { stdio: 'inherit' });
}

// ---- the open-loop writer --------------------------------------------------------------------------

/**
 * A child process appending `lines` lines at `rate` lines/s to `file`, each carrying the
 * CLOCK_MONOTONIC µs of its write (the same clock as this process's hrtime). The schedule is fixed:
 * lines due are written whatever the reader does; ~1 ms ticks.
 */
function startWriter(file: string, lines: number, rate: number): { done: Promise<void>; proc: ChildProcess } {
  const code = `
    const fs = require('fs');
    const [file, total, rate, width] = process.argv.slice(1).map((v, i) => i === 0 ? v : Number(v));
    const fd = fs.openSync(file, 'a');
    const t0 = process.hrtime.bigint();
    let n = 0;
    const deadline = Date.now() + (total / rate) * 3000 + 10000;
    const tick = () => {
      const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;
      const due = Math.min(total, Math.floor(elapsedS * rate) + 1);
      if (n < due) {
        const us = Number(process.hrtime.bigint() / 1000n);
        let s = '';
        for (; n < due; n++) { const h = 'L ' + n + ' ' + us + ' '; s += h + 'x'.repeat(width - 1 - h.length) + '\\n'; }
        fs.writeSync(fd, s);
      }
      if (n >= total || Date.now() > deadline) { fs.closeSync(fd); return; }
      setTimeout(tick, 1);
    };
    tick();
  `;
  const proc = spawn(process.execPath, ['-e', code, file, String(lines), String(rate), String(LINE_BYTES)], { stdio: 'inherit' });
  const done = new Promise<void>((r) => proc.once('close', () => r()));
  process.once('exit', () => proc.kill('SIGKILL'));
  return { done, proc };
}

// ---- the three measurements -----------------------------------------------------------------------

interface Throughput {
  lines: number;
  seconds: number;
  linesPerS: number;
  mibPerS: number;
  cpuPct: number;
  /** MiB/s per core of the shipper's CPU (its MiB/s ÷ its cores busy) */
  mibPerSPerCore: number;
  linesPerSPerCore: number;
  rssMaxMB: number;
  /** the node's (for the agent) CPU over the same window */
  sinkCpuPct?: number;
  /** CPU µs per line: the shipping process's (all threads: for the agent its reader, spool and shipper), the node's (all threads) and the node's by thread role */
  usPerLine?: number;
  sinkUsPerLine?: number;
  sinkUsPerLineByThread?: Record<string, number>;
  /** the agent's shipper at stop (its `shipper stopped` log line): batches, the most in flight at once, gaps, errors */
  shipper?: Record<string, unknown>;
}

interface Latency { rate: number; lines: number; measured: number; us: LatencySummary; cpuPct: number }
interface Idle { files: number; shippedIn: number; rssMB: number; cpuPct: number; seconds: number }

async function measureThroughput(pid: number, sinkPid: number | undefined, stage: string, inDir: string, count: () => Promise<number> | number): Promise<Throughput> {
  const rssMax = { v: 0 };
  // the staged copy's dirty pages (and any left by earlier parts) are written back before the clock
  // starts: their writeback would compete with a shipper that writes and syncs, not with one that does not
  execFileSync('sync');
  const c0 = cpuS(pid);
  const s0 = sinkPid ? cpuS(sinkPid) : 0;
  const threads0 = sinkPid ? readThreadStats(sinkPid) : undefined;
  const t0 = performance.now();
  renameSync(stage, join(inDir, 'bench.log'));
  const until = Date.now() + TIMEOUT_S * 1000;
  for (;;) {
    const n = await count();
    rssMax.v = Math.max(rssMax.v, readProc(pid)?.rssMB ?? 0);
    if (n >= LINES) break;
    if (Date.now() > until) throw new Error(`throughput: ${n} of ${LINES} lines after ${TIMEOUT_S} s`);
    await sleep(POLL_MS);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuS(pid) - c0;
  // per 1,000 lines: perOpByThread rounds to 0.1 µs per op
  const byThread = sinkPid && threads0 ? perOpByThread(sinkPid, threads0, readThreadStats(sinkPid), LINES / 1000) : undefined;
  const mib = (LINES * LINE_BYTES) / 2 ** 20;
  const cores = cpu / seconds;
  return {
    lines: LINES,
    seconds: round3(seconds),
    linesPerS: Math.round(LINES / seconds),
    mibPerS: round1(mib / seconds),
    cpuPct: round1(cores * 100),
    mibPerSPerCore: round1(mib / cpu),
    linesPerSPerCore: Math.round(LINES / cpu),
    rssMaxMB: round1(rssMax.v),
    usPerLine: round3((cpu * 1e6) / LINES),
    ...(sinkPid ? { sinkCpuPct: round1(((cpuS(sinkPid) - s0) / seconds) * 100), sinkUsPerLine: round3(((cpuS(sinkPid) - s0) * 1e6) / LINES) } : {}),
    ...(byThread ? { sinkUsPerLineByThread: Object.fromEntries(Object.entries(byThread).map(([role, v]) => [role, round3(v.cpuUs / 1000)])) } : {}),
  };
}

/** The stats of the agent's `shipper stopped` log line (batches, inFlightPeak, gaps, errors), if it logged one. */
function shipperStats(out: string[]): Record<string, unknown> | undefined {
  const l = out.findLast((x) => x.includes('"msg":"shipper stopped"'));
  if (!l) return undefined;
  const { batches, records, inFlightPeak, gaps, errors, duplicates } = JSON.parse(l) as Record<string, unknown>;
  return { batches, records, inFlightPeak, gaps, errors, duplicates };
}

async function measureLatency(pid: number, inDir: string, received: () => number, hist: Histogram, arm: (fromSeq: number) => void): Promise<Latency> {
  const total = Math.round(RATE * (WARMUP_S + LATENCY_S));
  const fromSeq = Math.round(RATE * WARMUP_S);
  arm(fromSeq);
  const c0 = cpuS(pid);
  const t0 = performance.now();
  const w = startWriter(join(inDir, 'latency.log'), total, RATE);
  await w.done;
  await waitFor('the last written lines to arrive', () => received() >= total, 30_000, () => `${received()} of ${total} lines arrived`).catch((e: Error) => log(e.message));
  const seconds = (performance.now() - t0) / 1000;
  return { rate: RATE, lines: total, measured: hist.totalCount, us: summarize(hist), cpuPct: round1(((cpuS(pid) - c0) / seconds) * 100) };
}

async function measureIdle(pid: number, inDir: string, count: () => Promise<number> | number): Promise<Idle> {
  const t0 = performance.now();
  for (let i = 0; i < FILES; i++) writeFileSync(join(inDir, `f${String(i).padStart(4, '0')}.log`), line(i, 0));
  await waitFor(`${FILES} files to be shipped`, async () => (await count()) >= FILES, TIMEOUT_S * 1000);
  const shippedIn = round3((performance.now() - t0) / 1000);
  // settle: a rotated-idle timer, a last checkpoint, the compaction 2–4 s after the last read (V8
  // shrinks a young generation the burst grew later, once a collection finds little allocation)
  await sleep(SETTLE_S * 1000);
  const c0 = cpuS(pid);
  const w0 = performance.now();
  let rssMax = 0;
  const until = Date.now() + IDLE_S * 1000;
  while (Date.now() < until) {
    rssMax = Math.max(rssMax, readProc(pid)?.rssMB ?? 0);
    await sleep(1000);
  }
  const seconds = (performance.now() - w0) / 1000;
  return { files: FILES, shippedIn, rssMB: round1(Math.max(rssMax, readProc(pid)?.rssMB ?? 0)), cpuPct: round2(((cpuS(pid) - c0) / seconds) * 100), seconds: round1(seconds) };
}

const round2 = (x: number): number => Math.round(x * 100) / 100;
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

interface Side { throughput?: Throughput; latency?: Latency; idle?: Idle; idleHealth?: Idle; version?: string }

async function runAgentSide(work: string): Promise<Side> {
  const side: Side = {};
  const parts: Array<'throughput' | 'latency' | 'idle' | 'idle-health'> = (['throughput', 'latency', 'idle', 'idle-health'] as const).filter(wanted);
  for (const part of parts) {
    // each part against a fresh node and agent: nothing carried over
    // --cpu-prof profiles the node (the sink) too, in DIR/node
    const node: SpawnedNode = await spawnNode(values['cpu-prof'] ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', join(resolve(values['cpu-prof']), 'node')] } : {});
    const dir = mkdtempSync(join(work, `agent-${part}-`));
    const inDir = join(dir, 'in');
    mkdirSync(inDir);
    try {
      await createTopic(node.url);
      // idle-health: as idle, with health every 10 s as examples/agent.yaml has it (the node as the app)
      const health = part !== 'idle-health' ? [] : [
        'health:',
        '  intervalMs: 10000',
        `  apps: [{ name: node, pid: ${node.pid} }]`,
        '  services: { initd: all }',
        'alerts:',
        "  rules: [{ name: disk-full, when: 'disk.*.usedPercent > 90', for: 5m, clear: 85 }]",
      ];
      const agent = await startAgent(dir, node.url, join(inDir, '*.log'), health);
      try {
        if (part === 'throughput') {
          const stage = join(dir, 'stage.log');
          copyFileSync(join(work, 'lines.log'), stage);
          side.throughput = await measureThroughput(agent.pid, node.pid, stage, inDir, () => stored(node.url));
          log(`agent throughput: ${JSON.stringify(side.throughput)}`);
        } else if (part === 'latency') {
          const client = await ChicagoClient.connect({ url: node.url, clientName: 'bench-agent-tail' });
          const hist = newHistogram();
          let received = 0;
          let fromSeq = Infinity;
          const stream = client.tail(TOPIC, 0, { from: 'earliest' });
          const loop = (async () => {
            for await (const rec of stream) {
              const nowUs = hrUs();
              received++;
              const m = /^L (\d+) (\d+) /.exec(rec.value.toString('latin1'));
              if (m && Number(m[1]) >= fromSeq) recordUs(hist, nowUs - Number(m[2]));
            }
          })().catch(() => {});
          side.latency = await measureLatency(agent.pid, inDir, () => received, hist, (s) => { fromSeq = s; });
          await stream.close().catch(() => {});
          await Promise.race([loop, sleep(1000)]);
          client.close();
          log(`agent latency: ${JSON.stringify(side.latency)}`);
        } else if (part === 'idle') {
          side.idle = await measureIdle(agent.pid, inDir, () => stored(node.url));
          log(`agent idle: ${JSON.stringify(side.idle)}`);
        } else {
          side.idleHealth = await measureIdle(agent.pid, inDir, () => stored(node.url));
          log(`agent idle with health: ${JSON.stringify(side.idleHealth)}`);
        }
      } finally {
        await agent.stop();
        if (part === 'throughput' && side.throughput) {
          side.throughput.shipper = shipperStats(agent.out);
          if (values['agent-log']) {
            mkdirSync(outDir, { recursive: true });
            writeFileSync(join(outDir, 'agent-throughput.log'), agent.out.join('\n'));
          }
          log(`agent shipper: ${JSON.stringify(side.throughput.shipper)}`);
        }
      }
    } finally {
      await node.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return side;
}

async function runRsyslogSide(work: string): Promise<Side> {
  ensureRsyslog();
  const side: Side = { version: execFileSync(RSYSLOGD, ['-v']).toString().split('\n')[0].replace(/compiled with:.*/, '').trim() };
  const rx = new Receiver();
  await rx.listen();
  try {
    for (const part of (['throughput', 'latency', 'idle'] as const).filter(wanted)) {
      const dir = mkdtempSync(join(work, `rsyslog-${part}-`));
      const inDir = join(dir, 'in');
      mkdirSync(inDir);
      rx.reset();
      const rs = await startRsyslog(dir, join(inDir, '*.log'), rx.port);
      try {
        if (part === 'throughput') {
          const stage = join(dir, 'stage.log');
          copyFileSync(join(work, 'lines.log'), stage);
          side.throughput = await measureThroughput(rs.pid, undefined, stage, inDir, () => rx.lines);
          log(`rsyslog throughput: ${JSON.stringify(side.throughput)}`);
        } else if (part === 'latency') {
          side.latency = await measureLatency(rs.pid, inDir, () => rx.lines, rx.hist, (s) => rx.reset(s));
          log(`rsyslog latency: ${JSON.stringify(side.latency)}`);
        } else {
          side.idle = await measureIdle(rs.pid, inDir, () => rx.lines);
          log(`rsyslog idle: ${JSON.stringify(side.idle)}`);
        }
      } finally {
        await rs.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    rx.close();
  }
  return side;
}

// ---- report -------------------------------------------------------------------------------------

const ms = (us: number): string => (us / 1000).toFixed(us < 10_000 ? 2 : 1);
const x = (a: number | undefined, b: number | undefined): string => (a !== undefined && b ? (a / b).toFixed(2) : '–');

function table(agent: Side, rs: Side | undefined): string {
  const rows: string[] = ['| measure | agent → Chicago | rsyslog imfile → omfwd | agent ÷ rsyslog | target |', '|---|---:|---:|---:|---|'];
  const a = agent.throughput;
  const r = rs?.throughput;
  if (a) {
    rows.push(`| throughput MiB/s (${a.lines} lines of ${LINE_BYTES} B) | ${a.mibPerS} | ${r?.mibPerS ?? '–'} | ${x(a.mibPerS, r?.mibPerS)} | ≥ 1.5× |`);
    rows.push(`| throughput lines/s | ${a.linesPerS} | ${r?.linesPerS ?? '–'} | ${x(a.linesPerS, r?.linesPerS)} | |`);
    rows.push(`| shipper CPU % of a core | ${a.cpuPct} | ${r?.cpuPct ?? '–'} | ${x(a.cpuPct, r?.cpuPct)} | |`);
    rows.push(`| MiB/s per shipper core | ${a.mibPerSPerCore} | ${r?.mibPerSPerCore ?? '–'} | ${x(a.mibPerSPerCore, r?.mibPerSPerCore)} | ≥ 100 |`);
    rows.push(`| lines/s per shipper core | ${a.linesPerSPerCore} | ${r?.linesPerSPerCore ?? '–'} | ${x(a.linesPerSPerCore, r?.linesPerSPerCore)} | |`);
    rows.push(`| sink CPU % of a core | ${a.sinkCpuPct ?? '–'} (node) | (receiver in the bench) | | |`);
    rows.push(`| shipper RSS max MB (throughput) | ${a.rssMaxMB} | ${r?.rssMaxMB ?? '–'} | ${x(a.rssMaxMB, r?.rssMaxMB)} | |`);
  }
  const al = agent.latency;
  const rl = rs?.latency;
  if (al) {
    for (const p of ['p50', 'p99', 'p999', 'max'] as const) {
      rows.push(`| latency ${p} ms at ${al.rate} lines/s | ${ms(al.us[p])} | ${rl ? ms(rl.us[p]) : '–'} | ${x(al.us[p], rl?.us[p])} | ${p === 'p99' ? '≤ 50 ms' : ''} |`);
    }
    rows.push(`| shipper CPU % at ${al.rate} lines/s | ${al.cpuPct} | ${rl?.cpuPct ?? '–'} | ${x(al.cpuPct, rl?.cpuPct)} | |`);
  }
  const ai = agent.idle;
  const ri = rs?.idle;
  if (ai) {
    rows.push(`| RSS MB, ${ai.files} files watched | ${ai.rssMB} | ${ri?.rssMB ?? '–'} | ${x(ai.rssMB, ri?.rssMB)} | ≤ 80 |`);
    rows.push(`| idle CPU % of a core over ${ai.seconds} s | ${ai.cpuPct} | ${ri?.cpuPct ?? '–'} | ${x(ai.cpuPct, ri?.cpuPct)} | ≤ 0.5 |`);
    rows.push(`| ${ai.files} one-line files shipped in s | ${ai.shippedIn} | ${ri?.shippedIn ?? '–'} | | |`);
  }
  const ah = agent.idleHealth;
  if (ah) {
    rows.push(`| idle CPU % of a core over ${ah.seconds} s, health every 10 s, ${ah.files} files | ${ah.cpuPct} | – | – | ≤ 1 |`);
    rows.push(`| RSS MB, idle with health | ${ah.rssMB} | – | – | |`);
  }
  return rows.join('\n');
}

async function main(): Promise<void> {
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`npm run build\` first`);
  const work = mkdtempSync(join(tmpdir(), 'chicago-bench-agent-'));
  const startedAt = new Date().toISOString();
  const load0 = loadavg().map(round2);
  const machine = new MachineSampler();
  try {
    if (wanted('throughput')) writeLines(join(work, 'lines.log'), LINES);
    const rs = withRsyslog ? await runRsyslogSide(work) : undefined;
    const agent = await runAgentSide(work);
    const load = machine.stop();
    const result = {
      bench: 'agent-vs-rsyslog',
      startedAt,
      machine: { ...machineInfo(), loadAvgAtStart: load0, loadAvgAtEnd: loadavg().map(round2), busyPctOverRun: load?.busyPct },
      settings: { lineBytes: LINE_BYTES, lines: LINES, rate: RATE, warmupS: WARMUP_S, latencyS: LATENCY_S, files: FILES, settleS: SETTLE_S, idleS: IDLE_S },
      sinks: {
        agent: 'one local Chicago node (fresh temp data dir), topic with 1 partition, acks=all; done = the partition end offset reaches N (polled every 20 ms); latency = a WebSocket tail from earliest',
        rsyslog: 'omfwd TCP (template %msg%\\n, default queues) to a receiver in the bench process that counts newlines (latency: parses each line)',
      },
      agent,
      ...(rs ? { rsyslog: rs } : {}),
      ratios: {
        throughputMiBps: rs?.throughput && agent.throughput ? round2(agent.throughput.mibPerS / rs.throughput.mibPerS) : undefined,
        mibPerSPerCore: rs?.throughput && agent.throughput ? round2(agent.throughput.mibPerSPerCore / rs.throughput.mibPerSPerCore) : undefined,
        latencyP99: rs?.latency && agent.latency ? round2(agent.latency.us.p99 / rs.latency.us.p99) : undefined,
        idleRss: rs?.idle && agent.idle ? round2(agent.idle.rssMB / rs.idle.rssMB) : undefined,
      },
    };
    const md = [
      `Agent vs rsyslog, measured ${startedAt} on ${result.machine.cpus.count}× ${result.machine.cpus.model}, ${result.machine.memGiB} GiB, ${result.machine.node}, git ${result.machine.gitRev ?? '?'}; load average ${load0.join(' ')} at start, ${result.machine.loadAvgAtEnd.join(' ')} at end${rs?.version ? `; ${rs.version}` : ''}.`,
      '',
      table(agent, rs),
      '',
    ].join('\n');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'agent.json'), JSON.stringify(result, null, 2) + '\n');
    writeFileSync(join(outDir, 'agent.md'), md);
    process.stdout.write(md);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    log(e.stack ?? e.message);
    process.exit(1);
  },
);
