// The guard against Debian's fail2ban and CrowdSec (with its nftables firewall bouncer) on the same
// attack traffic, in one run: nginx JSON access-log lines (docs/guard.md, "Input") written to a file
// that each tool reads, bans landing in an nftables set inside a network namespace the bench creates
// per tool (the host's firewall is never touched). Per tool, one after another on a fresh instance:
//
//   latency     M attackers one after another, each a burst of capacity+6 lines at 5k lines/s over
//               a light legitimate background: trigger line written → address in the nft set
//               (`nft monitor` in the tool's namespace), HdrHistogram p50/p99/max
//   flood       one address at 5k lines/s until enforced: lines written after the trigger
//   throughput  a block of N lines from many addresses appended at once: lines/s, lines per CPU
//               second of the tool (/proc), RSS
//
// Chicago's path is the real one: file → `chicago agent` → node → `chicago guard` → `nft -i`.
//
// `guard-direct` is the same without the file and the agent: a producer beside nginx → node → guard.
// `guard-cluster` is guard-direct through a 3-node cluster with its etcd (bench/cluster.ts): the input
// topic with replicas 3 written with acks=all, the guard connected to a node that does not lead it,
// its decisions in the replicated guard.decisions topic.
//
//   npm run bench:guard [-- --quick] [--only guard,guard-direct,guard-cluster,fail2ban,crowdsec] [--attackers 100]
//       [--throughput-lines 100000] [--capacity 20] [--leak-ms 100] [--bouncer-poll 10s] [--out DIR]
//       [--writer-max-in-flight N]   (the direct writer's producer maxInFlight; default the client's, 5)
//       [--agent-poll-ms N]          (guard: the agent's pollIntervalMs; default the agent's, 250)
//       [--lead-ms 500]              (legitimate lines alone before the first attacker)
//       [--settle-ms 0]              (an idle wait after the tool runs, before the latency phase)
//       [--agent-stages on|off]      (the agent (guard) and the guard at log level trace, each trigger line's time per stage; default on)
//
// Results: bench/results/guard-<time>.json and guard.md (the table). Needs root (namespaces, nft).
import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { ChicagoClient } from '../src/client/index.js';
import { newHistogram, recordUs, summarize, type LatencySummary } from './openloop.js';
import { atExit, type LoggedProc, machineInfo, readProc, repoRoot, round1, spawnLogged, spawnNode, type SpawnedNode, waitFor } from './proc.js';

const run = promisify(execFile);
const hrUs = (): number => Number(process.hrtime.bigint() / 1000n);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (s: string): void => void process.stderr.write(`[bench:guard] ${s}\n`);
const round2 = (x: number): number => Math.round(x * 100) / 100;

// ---- the traffic ---------------------------------------------------------------------------------

/** One planned line: due `atUs` after the writer starts. */
interface Planned { atUs: number; ip: string; uri: string; status: number }

const UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0';
const PAGES = ['/', '/index.html', '/products?id=12', '/cart', '/static/app.js', '/static/site.css', '/img/logo.png', '/search?q=red+shoes'];

/** The access-log line as nginx's `guard_json` format writes it, `$msec` taken at write time. */
function nginxLine(p: Planned, msec: number): string {
  return JSON.stringify({
    msec: (msec / 1000).toFixed(3), remote_addr: p.ip, request_method: 'GET', request_uri: p.uri, server_protocol: 'HTTP/1.1',
    status: String(p.status), request_time: '0.001', http_user_agent: UA, http_referer: '-', host: 'shop.example',
    body_bytes_sent: '512', connection_requests: '1',
  }) + '\n';
}

const FLOOD_IP = '198.18.100.100';
const legitIp = (i: number): string => `198.19.${(i >> 8) & 255}.${(i & 255) || 1}`;

interface LatencyPlan { lines: Planned[]; triggers: Map<string, number> }

/** Attackers 198.18.1.x one after another (every `gapMs`), each capacity+6 lines 0.2 ms apart, over a background. */
function latencyPlan(o: { attackers: number; gapMs: number; capacity: number; backgroundPerS: number; leadMs: number }): LatencyPlan {
  const lines: Planned[] = [];
  const startUs = o.leadMs * 1000;
  const endUs = startUs + o.attackers * o.gapMs * 1000 + 500_000;
  const every = 1e6 / o.backgroundPerS;
  // 1,000 legitimate addresses, each well under any threshold
  for (let t = 0, i = 0; t < endUs; t += every, i++) lines.push({ atUs: t, ip: legitIp(i % 1000), uri: PAGES[i % PAGES.length], status: 200 });
  const triggers = new Map<string, number>();
  for (let a = 0; a < o.attackers; a++) {
    const ip = `198.18.${1 + Math.floor(a / 250)}.${1 + (a % 250)}`;
    const t0 = startUs + a * o.gapMs * 1000;
    for (let k = 0; k < o.capacity + 6; k++) lines.push({ atUs: t0 + k * 200, ip, uri: PAGES[k % PAGES.length], status: 200 });
    triggers.set(ip, -1);
  }
  lines.sort((x, y) => x.atUs - y.atUs);
  // the trigger is each attacker's (capacity+1)-th line: the first one its bucket cannot hold
  const seen = new Map<string, number>();
  lines.forEach((l, idx) => {
    if (!triggers.has(l.ip)) return;
    const n = (seen.get(l.ip) ?? 0) + 1;
    seen.set(l.ip, n);
    if (n === o.capacity + 1) triggers.set(l.ip, idx);
  });
  return { lines, triggers };
}

/** One address at `rate` lines/s for at most `maxS` (the bench stops the writer once it is enforced). */
function floodPlan(ip: string, rate: number, maxS: number): Planned[] {
  const n = Math.round(rate * maxS);
  return Array.from({ length: n }, (_, k) => ({ atUs: 200_000 + (k * 1e6) / rate, ip, uri: PAGES[k % PAGES.length], status: 200 }));
}

/** N lines from N/4 addresses (198.18.128.0/17, then 198.19.128.0/17), round robin: 4 lines each, nobody banned. */
function throughputBlock(n: number): string {
  const ips = Math.max(1, Math.floor(n / 4));
  const now = Date.now();
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = i % ips;
    parts.push(nginxLine({ atUs: 0, ip: `198.${18 + ((k >> 15) & 1)}.${128 + ((k >> 8) & 127)}.${k & 255}`, uri: PAGES[i % PAGES.length], status: 200 }, now));
  }
  return parts.join('');
}

// ---- the writer: a child process, so that writing keeps its schedule whatever the bench does -----

/**
 * `node dist/bench/guard.js write PLAN LOG TIMES`: appends the planned lines to LOG on schedule (~1 ms
 * ticks), then writes each line's CLOCK_MONOTONIC write time (µs, -1 if never written) to TIMES.
 * SIGTERM stops it early.
 */
async function writerMain(planFile: string, logFile: string, timesFile: string, sink?: Sink): Promise<void> {
  const plan = JSON.parse(readFileSync(planFile, 'utf8')) as Planned[];
  const times = new Float64Array(plan.length).fill(-1);
  const fd = openSync(logFile, 'a');
  // direct: each line goes to the topic as a record keyed by its address (as a producer beside nginx would)
  const client = sink ? await ChicagoClient.connect({ url: sink.url, clientName: 'bench-guard-writer' }) : undefined;
  const producer = client?.producer({ lingerMs: 0, acks: 'all', ...(sink?.maxInFlight ? { maxInFlight: sink.maxInFlight } : {}) });
  const pending: Array<Promise<unknown>> = [];
  let stop = false;
  process.on('SIGTERM', () => { stop = true; });
  const t0 = hrUs();
  let n = 0;
  while (n < plan.length && !stop) {
    const elapsed = hrUs() - t0;
    let s = '';
    const from = n;
    const msec = Date.now();
    if (producer) {
      for (; n < plan.length && plan[n].atUs <= elapsed; n++) {
        // the input topic has one partition: pinned to it, the producer pipelines (maxInFlight)
        pending.push(Promise.resolve(producer.send(sink!.topic, { key: plan[n].ip, value: nginxLine(plan[n], msec).slice(0, -1), partition: 0 })));
        times[n] = hrUs();
      }
      s = '';
    } else while (n < plan.length && plan[n].atUs <= elapsed) s += nginxLine(plan[n++], msec);
    if (s) {
      writeSync(fd, s);
      const at = hrUs();
      for (let i = from; i < n; i++) times[i] = at;
    }
    await sleep(1);
  }
  closeSync(fd);
  await Promise.all(pending);
  await producer?.close();
  client?.close();
  writeFileSync(timesFile, JSON.stringify(Array.from(times)));
}

interface Written { times: number[] }

function startWriter(work: string, name: string, plan: Planned[], logFile: string, sink?: Sink): { proc: ChildProcess; done: Promise<Written> } {
  const planFile = join(work, `${name}.plan.json`);
  const timesFile = join(work, `${name}.times.json`);
  writeFileSync(planFile, JSON.stringify(plan));
  const proc = spawn(process.execPath, [join(repoRoot(), 'dist', 'bench', 'guard.js'), 'write', planFile, logFile, timesFile, ...(sink ? [sink.url, sink.topic, String(sink.maxInFlight ?? '')] : [])], { stdio: 'inherit' });
  const unhook = atExit(() => void proc.kill('SIGKILL'));
  const done = new Promise<Written>((res, rej) => proc.once('close', (code) => {
    unhook();
    if (code !== 0) return rej(new Error(`writer exited ${code}`));
    res({ times: JSON.parse(readFileSync(timesFile, 'utf8')) as number[] });
  }));
  return { proc, done };
}

// ---- enforcement seen in the kernel ---------------------------------------------------------------

/** `nft monitor` in a namespace: the first time each IPv4 address is added to any set, in µs. */
class NftWatch {
  readonly firstSeen = new Map<string, number>();
  private proc: ChildProcess;
  private buf = '';
  constructor(ns: string) {
    this.proc = spawn('ip', ['netns', 'exec', ns, 'nft', 'monitor', 'new', 'elements'], { stdio: ['ignore', 'pipe', 'inherit'] });
    this.proc.once('close', atExit(() => void this.proc.kill('SIGKILL')));
    this.proc.stdout!.setEncoding('latin1').on('data', (c: string) => {
      const at = hrUs();
      this.buf += c;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const l = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        if (!l.startsWith('add element')) continue;
        for (const m of l.matchAll(/(?:[{,]\s*)(\d+\.\d+\.\d+\.\d+)(?=[\s,}])/g)) if (!this.firstSeen.has(m[1])) this.firstSeen.set(m[1], at);
      }
    });
  }
  /** Listening: an element added to a probe set has been seen. */
  async ready(ns: string): Promise<void> {
    const probe = '192.0.2.1';
    await waitFor('nft monitor to listen', async () => {
      if (this.firstSeen.has(probe)) return true;
      await run('ip', ['netns', 'exec', ns, 'nft', 'add table inet bench_probe; add set inet bench_probe s { type ipv4_addr; }; add element inet bench_probe s { 192.0.2.1 }; delete table inet bench_probe']);
      return false;
    }, 10_000, undefined, 100);
    this.firstSeen.delete(probe);
  }
  stop(): void { this.proc.kill('SIGTERM'); }
}

// ---- the agent's stage times (guard) -------------------------------------------------------------

interface SeqSpan { from: number; to: number }
interface StageLog {
  reads: Array<SeqSpan & { watchUs: number; readAtUs?: number; readUs: number }>;
  syncs: Array<{ recs: SeqSpan[]; startUs: number; writtenUs: number; syncedUs: number }>;
  acks: Array<SeqSpan & { sentUs: number; ackUs: number }>;
}
/** per stage, over the trigger lines: p50 / p99 / max in µs */
type AgentStages = { lines: number } & Record<string, LatencySummary | number>;
/** entries kept per stage (the latency phase needs a few thousand) */
const STAGE_ENTRIES_MAX = 200_000;

/** The guard's `timing decision` / `timing nft` trace lines (src/guard/guard.ts), by target, parsed as they come. */
interface GuardTiming { decided: Map<string, { offset: number; gotUs: number; decidedUs: number }>; nft: Map<string, { writtenUs: number; ackUs: number }> }
function collectGuardTiming(guard: Proc): GuardTiming {
  const t: GuardTiming = { decided: new Map(), nft: new Map() };
  onTimingLines(guard, (j: { msg: string; target: string; offset: number; gotUs: number; decidedUs: number; writtenUs: number; ackUs: number }) => {
    if (j.msg === 'timing decision' && !t.decided.has(j.target) && t.decided.size < STAGE_ENTRIES_MAX) t.decided.set(j.target, j);
    else if (j.msg === 'timing nft' && !t.nft.has(j.target) && t.nft.size < STAGE_ENTRIES_MAX) t.nft.set(j.target, j);
  });
  return t;
}

/** Each `"msg":"timing …"` line a process logs (JSON on its stdout), parsed as it comes. */
function onTimingLines<T>(p: Proc, fn: (line: T) => void): void {
  let rest = '';
  p.child.stdout!.on('data', (c: Buffer) => {
    const parts = (rest + c.toString('utf8')).split('\n');
    rest = parts.pop() ?? '';
    for (const l of parts) if (l.includes('"msg":"timing ')) fn(JSON.parse(l) as T);
  });
}

/** The guard's part of each trigger line's way: got the record → decided → written to nft → in the set (and nft's ack). */
const GUARD_STAGES = ['written→guard got the record', 'guard: got→decided', 'guard: decided→nft write', 'nft write→in the nft set', 'nft write→nft ack'] as const;
function guardStagesOf(g: GuardTiming, written: number[], triggers: Map<string, number>, seen: Map<string, number>): AgentStages {
  const h = Object.fromEntries(GUARD_STAGES.map((n) => [n, newHistogram()]));
  const rec = (n: (typeof GUARD_STAGES)[number], us: number): void => { if (us >= 0) recordUs(h[n], us); };
  let lines = 0;
  for (const [ip, seq] of triggers) {
    const w = written[seq];
    const d = g.decided.get(ip);
    const n = g.nft.get(ip);
    const in_ = seen.get(ip);
    if (w === undefined || w < 0 || !d || !n || in_ === undefined) continue;
    lines++;
    rec('written→guard got the record', d.gotUs - w);
    rec('guard: got→decided', d.decidedUs - d.gotUs);
    rec('guard: decided→nft write', n.writtenUs - d.decidedUs);
    rec('nft write→in the nft set', in_ - n.writtenUs);
    rec('nft write→nft ack', n.ackUs - n.writtenUs);
  }
  const out: AgentStages = { lines };
  for (const n of GUARD_STAGES) out[n] = summarize(h[n]);
  return out;
}

/** The agent's `timing …` trace lines (src/runtime/timing.ts), parsed as they come. */
function collectStages(agent: Proc): StageLog {
  const t: StageLog = { reads: [], syncs: [], acks: [] };
  onTimingLines(agent, (j: { msg: string } & StageLog['reads'][number] & StageLog['syncs'][number] & StageLog['acks'][number]) => {
    if (j.msg === 'timing read' && t.reads.length < STAGE_ENTRIES_MAX) t.reads.push(j);
    else if (j.msg === 'timing synced' && t.syncs.length < STAGE_ENTRIES_MAX) t.syncs.push(j);
    else if (j.msg === 'timing acked' && t.acks.length < STAGE_ENTRIES_MAX) t.acks.push(j);
  });
  return t;
}

function stagesOf(t: StageLog, written: number[], triggers: Map<string, number>, seen: Map<string, number>, g?: GuardTiming): AgentStages {
  const names = ['written→watch event', 'watch event→fast read starts', 'fast read starts→read', 'written→read (whole pass)', 'written→read', 'read→commit starts', 'commit: write', 'commit: fdatasync', 'synced→request', 'request→answer', 'answer→in the nft set', 'answer→guard got the record', 'written→synced', 'written→request', 'written→answer', 'written→in the nft set'] as const;
  const h = Object.fromEntries(names.map((n) => [n, newHistogram()]));
  const has = (s: SeqSpan, seq: number): boolean => s.from <= seq && seq <= s.to;
  let lines = 0;
  const rec = (n: (typeof names)[number], us: number): void => { if (us >= 0) recordUs(h[n], us); };
  for (const [ip, seq] of triggers) {
    const w = written[seq];
    const nft = seen.get(ip);
    const r = t.reads.find((x) => has(x, seq));
    const s = t.syncs.find((x) => x.recs.some((y) => has(y, seq)));
    const a = t.acks.find((x) => has(x, seq));
    if (w === undefined || w < 0 || !r || !s || !a || nft === undefined) continue;
    lines++;
    // a watch event before the write: the read that took this line was for an earlier one
    if (r.watchUs >= w) rec('written→watch event', r.watchUs - w);
    rec('written→read', r.readUs - w);
    // readAtUs: a watch event's read from the file's handle; 0: a whole pass read it
    if (r.readAtUs) {
      if (r.watchUs >= w && r.readAtUs >= r.watchUs) rec('watch event→fast read starts', r.readAtUs - r.watchUs);
      rec('fast read starts→read', r.readUs - r.readAtUs);
    } else rec('written→read (whole pass)', r.readUs - w);
    rec('read→commit starts', s.startUs - r.readUs);
    rec('commit: write', s.writtenUs - s.startUs);
    rec('commit: fdatasync', s.syncedUs - s.writtenUs);
    rec('synced→request', a.sentUs - s.syncedUs);
    rec('request→answer', a.ackUs - a.sentUs);
    rec('answer→in the nft set', nft - a.ackUs);
    const d = g?.decided.get(ip);
    if (d) rec('answer→guard got the record', d.gotUs - a.ackUs);
    rec('written→synced', s.syncedUs - w);
    rec('written→request', a.sentUs - w);
    rec('written→answer', a.ackUs - w);
    rec('written→in the nft set', nft - w);
  }
  const out: AgentStages = { lines };
  for (const n of names) out[n] = summarize(h[n]);
  if (g) {
    const gs = guardStagesOf(g, written, triggers, seen);
    for (const n of GUARD_STAGES) if (n !== 'written→guard got the record') out[n] = gs[n];
  }
  return out;
}

// ---- the tools -----------------------------------------------------------------------------------

interface Params {
  capacity: number; leakMs: number; banS: number; bouncerPoll: string;
  /** the direct writer's producer maxInFlight (default the client's) */
  writerMaxInFlight?: number;
  /** the agent's pollIntervalMs (default: the agent's own) */
  agentPollMs?: number;
  /** run the agent at log level trace and report its stage times (the guard row) */
  agentStages: boolean;
}
/** where a direct writer sends its lines */
interface Sink { url: string; topic: string; maxInFlight?: number }

interface Tool {
  name: string;
  version: string;
  /** what is measured as "the tool" (CPU per line, RSS) and what else runs for it */
  mainPid(): number;
  otherPids(): Record<string, number>;
  processed(): Promise<number>;
  /** set when lines go straight to the node instead of through the file */
  sink?: Sink;
  stop(): Promise<void>;
  notes: string[];
  /** the tool's own view of a ban's latency, when it has one (the guard's decision log) */
  selfReport?(): Record<string, unknown>;
  /**
   * guard (through the agent): where each trigger line's time went, from the agent's stage times (its
   * trace log, CLOCK_MONOTONIC µs like the writer's); a line's seq is its index in the plan
   */
  stages?(written: number[], triggers: Map<string, number>, seen: Map<string, number>): AgentStages;
  /** where the input and the decisions live, and whether the replicas agree (guard-cluster) */
  clusterReport?(): Promise<Record<string, unknown>>;
}

type Proc = LoggedProc;
const spawnProc = (cmd: string, args: string[], name: string, opts: { cwd?: string } = {}): Proc =>
  spawnLogged(cmd, args, name, { keepLines: 4000, graceMs: 10_000, log, ...opts });

/** The pid of the program `ip netns exec` runs (it execs, so the pid is the program's). */
const pidOf = (p: Proc): number => p.child.pid ?? -1;

const freePort = async (): Promise<number> => {
  const net = await import('node:net');
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const a = s.address(); s.close(() => (typeof a === 'object' && a ? res(a.port) : rej(new Error('no port')))); });
  });
};

function killNode(node: SpawnedNode): void {
  try {
    process.kill(node.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  rmSync(node.dataDir, { recursive: true, force: true });
}

/** Where the guard's input and decisions are stored: one node, or a 3-node cluster with its etcd. */
interface Store {
  ids: string[];
  urls: string[];
  /** replicas for the access topic (the cluster's), undefined on one node */
  replicas?: number;
  pids(): Record<string, number>;
  /** every partition's replicas hold the same content (cluster only) */
  replicasAgree?(): Promise<{ agree: boolean; differ: string[] }>;
  stop(): Promise<void>;
  killSync(): void;
}

async function oneNode(): Promise<Store> {
  const node: SpawnedNode = await spawnNode();
  return { ids: ['node'], urls: [node.url], pids: () => ({ node: node.pid }), stop: () => node.stop(), killSync: () => killNode(node) };
}

/** Three `chicago server --etcd` nodes on 127.0.0.2–4 with a private etcd (bench/cluster.ts), every partition on all three. */
async function threeNodes(): Promise<Store> {
  // imported here: the module hooks SIGTERM to exit, which the writer child uses to stop early
  const { BenchCluster } = await import('./cluster.js');
  const cluster = await BenchCluster.start({ nodes: 3, replicas: 3, log: (s) => log(`cluster: ${s}`) });
  return {
    ids: cluster.nodes.map((n) => n.id),
    urls: cluster.nodes.map((n) => n.url),
    replicas: 3,
    pids: () => Object.fromEntries(cluster.nodes.map((n) => [n.id, n.pid])),
    replicasAgree: async () => cluster.compareReplicas(10_000),
    stop: () => cluster.stop(),
    killSync: () => cluster.killAllSync(),
  };
}

type ChicagoPath = 'guard' | 'guard-direct' | 'guard-cluster';

async function startChicago(dir: string, ns: string, logFile: string, p: Params, path: ChicagoPath): Promise<Tool> {
  const store = path === 'guard-cluster' ? await threeNodes() : await oneNode();
  const unhook = atExit(() => store.killSync());
  const started: Proc[] = [];
  try {
    return await startChicagoOn(store, started, dir, ns, logFile, p, path);
  } catch (e) {
    for (const s of started.reverse()) await s.stop();
    await store.stop();
    throw e;
  } finally {
    unhook();
  }
}

interface TopicView { replicas: number; partitions: Array<{ leader: string | null; replicas: string[]; endOffset: string | number }> }
const topicView = async (url: string, topic: string): Promise<TopicView> => {
  const res = await fetch(`${url}/v1/topics/${encodeURIComponent(topic)}`);
  if (!res.ok) throw new Error(`describe ${topic}: ${res.status} ${await res.text()}`);
  return (await res.json()) as TopicView;
};

async function startChicagoOn(store: Store, started: Proc[], dir: string, ns: string, logFile: string, p: Params, path: ChicagoPath): Promise<Tool> {
  const cli = join(repoRoot(), 'dist', 'src', 'cli', 'main.js');
  const topic = 'bench-guard-access';
  const direct = path !== 'guard';
  const inputUrl = store.urls[0];
  const res = await fetch(`${inputUrl}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: topic, partitions: 1, ...(store.replicas ? { replicas: store.replicas } : {}) }) });
  if (!res.ok && res.status !== 409) throw new Error(`create topic: ${res.status} ${await res.text()}`);
  // in a cluster the guard connects to a node that does not lead the input: its client routes to the leaders
  const inputLeader = (await topicView(inputUrl, topic)).partitions[0]?.leader ?? null;
  const guardAt = Math.max(0, store.ids.findIndex((id) => id !== inputLeader && store.ids.length > 1));
  const guardUrl = store.urls[guardAt];
  const table = `chicago_bench_${process.pid}`;
  const others = ['http-404-probing', 'http-sensitive-files', 'http-path-traversal', 'http-crawl', 'http-4xx-ratio', 'http-login-bruteforce', 'http-bad-request', 'http-prefix-flood', 'ssh-bruteforce'];
  writeFileSync(join(dir, 'guard.yaml'), [
    `node: { url: ${guardUrl} }`,
    'guardId: bench-guard',
    'inputs:',
    `  - { topic: ${topic}, format: nginx, from: earliest }`,
    'scenarios:',
    `  - { name: http-flood, capacity: ${p.capacity}, leakMs: ${p.leakMs}, durationMs: ${p.banS * 1000} }`,
    ...others.map((n) => `  - { name: ${n}, enabled: false }`),
    `nftables: { command: [ip, netns, exec, ${ns}, nft], table: ${table} }`,
    'metrics: { host: 127.0.0.1, port: 0 }',
    // trace: each ban's stage times in the guard (timing decision, timing nft)
    `logLevel: ${p.agentStages ? 'trace' : 'info'}`,
  ].join('\n') + '\n');
  writeFileSync(join(dir, 'agent.yaml'), [
    `node: { url: ${inputUrl} }`,
    'host: bench',
    `spool: { dir: ${join(dir, 'spool')} }`,
    // the agent's own backup poll unless asked: each write is read on its watch event, and a poll's
    // whole pass (every pollIntervalMs while lines come) is what a watch event's read waits behind
    ...(p.agentPollMs ? [`pollIntervalMs: ${p.agentPollMs}`] : []),
    // a line leaves as soon as it is read: this bench is about latency
    'batch: { lingerMs: 0 }',
    `logLevel: ${p.agentStages ? 'trace' : 'info'}`,
    'sources:',
    `  - { task: web, paths: [${logFile}], topic: ${topic} }`,
  ].join('\n') + '\n');
  // as users start it: bin/chicago.js sets its malloc settings and V8 young generation (docs/guard.md "Memory")
  const guard = spawnProc(join(repoRoot(), 'bin', 'chicago.js'), ['guard', '--config', join(dir, 'guard.yaml')], 'guard');
  started.push(guard);
  const guardTiming = p.agentStages ? collectGuardTiming(guard) : undefined;
  await waitFor('the guard to run', () => guard.out.some((l) => l.includes('"msg":"guard running"')), 30_000, () => guard.out.slice(-20).join('\n'));
  // a guard reads only once its group assigned it the partitions (a node just started holds
  // assignments back for a few seconds): traffic before that measures the wait, not the guard
  await waitFor('the guard to be assigned its partitions', () => guard.out.some((l) => l.includes('"msg":"partitions assigned"')), 30_000, () => guard.out.slice(-20).join('\n'));
  const metricsUrl = JSON.parse(guard.out.find((l) => l.includes('"msg":"metrics listening"'))!).metrics as string;
  const agent = direct ? undefined : spawnProc(process.execPath, [cli, 'agent', '--config', join(dir, 'agent.yaml')], 'agent');
  if (agent) started.push(agent);
  const timing = agent && p.agentStages ? collectStages(agent) : undefined;
  if (agent) {
    await waitFor('the agent to run', () => agent.out.some((l) => l.includes('"msg":"agent running"')) || agent.child.exitCode !== null, 30_000, () => agent.out.slice(-20).join('\n'));
    if (agent.child.exitCode !== null) throw new Error(`agent exited: ${agent.out.slice(-20).join('\n')}`);
  }
  const version = JSON.parse(readFileSync(join(repoRoot(), 'package.json'), 'utf8')).version as string;
  const unhook = atExit(() => store.killSync());
  const clustered = store.ids.length > 1;
  const hops = clustered
    ? `a producer (lingerMs 0, acks=all, pinned to the partition, maxInFlight ${p.writerMaxInFlight ?? 5}) seeded at ${store.ids[0]} → 3-node cluster with etcd (1 partition, replicas 3) → chicago guard connected to ${store.ids[guardAt]} (the client routes to the leaders; decisions to the replicated guard.decisions topic) → one \`nft -i\``
    : direct
      ? `a producer (lingerMs 0, acks=all, pinned to the partition, maxInFlight ${p.writerMaxInFlight ?? 5}) → node (1 partition) → chicago guard → one \`nft -i\`: the path without the file and the agent`
      : `file → chicago agent (pollIntervalMs ${p.agentPollMs ?? 'default'}, lingerMs 0) → node (1 partition, acks=all) → chicago guard → one \`nft -i\``;
  return {
    name: path, version: `chicago ${version} (${machineInfo().gitRev ?? '?'})`,
    mainPid: () => guard.child.pid ?? -1,
    otherPids: () => ({ ...(agent ? { agent: agent.child.pid ?? -1 } : {}), ...store.pids() }),
    ...(direct ? { sink: { url: inputUrl, topic, ...(p.writerMaxInFlight ? { maxInFlight: p.writerMaxInFlight } : {}) } } : {}),
    processed: async () => {
      const text = await (await fetch(metricsUrl)).text();
      return [...text.matchAll(/^guard_lines_total\{topic="[^"]+"\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);
    },
    notes: [`${hops} (http-flood only)${timing ? '; the agent at log level trace (its stage times)' : ''}`],
    ...(timing ? { stages: (written: number[], triggers: Map<string, number>, seen: Map<string, number>) => stagesOf(timing, written, triggers, seen, guardTiming) }
      : guardTiming ? { stages: (written: number[], triggers: Map<string, number>, seen: Map<string, number>) => guardStagesOf(guardTiming, written, triggers, seen) } : {}),
    selfReport: () => {
      const bans = guard.out.filter((l) => l.includes('"msg":"decision ban"')).map((l) => JSON.parse(l) as { target: string; detectMs?: number; latencyMs?: { nft?: number } });
      const detect = newHistogram();
      const nft = newHistogram();
      for (const b of bans) {
        if (b.detectMs !== undefined) recordUs(detect, b.detectMs * 1000);
        if (b.latencyMs?.nft !== undefined) recordUs(nft, b.latencyMs.nft * 1000);
      }
      const flood = bans.find((b) => b.target === FLOOD_IP);
      return { bans: bans.length, msecToDecidedUs: summarize(detect), msecToNftAckUs: summarize(nft), ...(flood ? { flood: { msecToDecidedMs: flood.detectMs, msecToNftAckMs: flood.latencyMs?.nft } } : {}) };
    },
    ...(clustered ? {
      clusterReport: async () => {
        const part = async (t: string): Promise<Record<string, unknown>> => {
          const v = await topicView(inputUrl, t);
          const p0 = v.partitions[0];
          return { topic: t, replicas: v.replicas, leader: p0?.leader, replicaNodes: p0?.replicas, records: Number(p0?.endOffset) };
        };
        const agree = await store.replicasAgree!();
        return {
          nodes: store.ids, producerSeed: store.ids[0], guardSeed: store.ids[guardAt],
          input: await part(topic), decisions: await part('guard.decisions'),
          replicasAgree: agree.agree, ...(agree.differ.length ? { differ: agree.differ.slice(0, 5) } : {}),
        };
      },
    } : {}),
    stop: async () => {
      await agent?.stop();
      await guard.stop();
      await store.stop();
      unhook();
    },
  };
}

async function startFail2ban(dir: string, ns: string, logFile: string, p: Params): Promise<Tool> {
  mkdirSync(join(dir, 'action.d'));
  mkdirSync(join(dir, 'filter.d'));
  for (const f of ['nftables.conf', 'nftables-allports.conf']) writeFileSync(join(dir, 'action.d', f), readFileSync(`/etc/fail2ban/action.d/${f}`));
  const sock = join(dir, 'f2b.sock');
  writeFileSync(join(dir, 'fail2ban.conf'), [
    '[Definition]', 'loglevel = INFO', `logtarget = ${join(dir, 'fail2ban.log')}`, `socket = ${sock}`, `pidfile = ${join(dir, 'f2b.pid')}`,
    'dbfile = :memory:', 'dbpurgeage = 1d', '',
  ].join('\n'));
  // the same trigger as the leaky bucket for a burst: capacity+1 lines within capacity × leak
  const findtime = Math.max(1, Math.ceil((p.capacity * p.leakMs) / 1000));
  const table = `f2b_bench_${process.pid}`;
  writeFileSync(join(dir, 'filter.d', 'chicago-json.conf'), [
    '[Definition]',
    'failregex = ^\\{.*"remote_addr":"<ADDR>"',
    'datepattern = "msec":"{EPOCH}"',
    '',
  ].join('\n'));
  writeFileSync(join(dir, 'jail.conf'), [
    '[DEFAULT]', 'backend = pyinotify', 'usedns = no', 'ignoreip =', '',
    '[bench-flood]', 'enabled = true', 'filter = chicago-json', `logpath = ${logFile}`,
    `maxretry = ${p.capacity + 1}`, `findtime = ${findtime}`, `bantime = ${p.banS}`,
    `action = nftables-allports[name=flood, table=${table}]`, '',
  ].join('\n'));
  const f2b = spawnProc('ip', ['netns', 'exec', ns, 'fail2ban-server', '-f', '-x', '-c', dir, '-s', sock, '-p', join(dir, 'f2b.pid')], 'fail2ban-server', { cwd: dir });
  const status = async (): Promise<string> => (await run('fail2ban-client', ['-c', dir, '-s', sock, 'status', 'bench-flood'], { timeout: 10_000 })).stdout;
  await waitFor('fail2ban to run the jail', async () => { try { return (await status()).includes('Total failed'); } catch { return false; } }, 30_000, () => f2b.out.slice(-20).join('\n'), 200)
    .catch(async (e: Error) => {
      await f2b.stop();
      throw e;
    });
  const version = execFileSync('fail2ban-server', ['--version']).toString().trim();
  return {
    name: 'fail2ban', version,
    mainPid: () => pidOf(f2b),
    otherPids: () => ({}),
    processed: async () => Number(/Total failed:\s+(\d+)/.exec(await status())?.[1] ?? 0),
    notes: [`jail: filter matching every line (datepattern "msec"), maxretry ${p.capacity + 1}, findtime ${findtime} s, backend pyinotify, action nftables-allports (one \`nft add element\` per ban)`],
    stop: async () => {
      await run('fail2ban-client', ['-c', dir, '-s', sock, 'stop'], { timeout: 20_000 }).catch(() => undefined);
      await Promise.race([f2b.exited, sleep(10_000)]);
      await f2b.stop();
    },
  };
}

async function startCrowdsec(dir: string, ns: string, logFile: string, p: Params): Promise<Tool> {
  const etc = join(dir, 'etc');
  for (const d of ['etc/parsers/s00-raw', 'etc/scenarios', 'etc/postoverflows', 'data', 'log']) mkdirSync(join(dir, d), { recursive: true });
  symlinkSync('/etc/crowdsec/patterns', join(etc, 'patterns')); // the grok library, read only
  const lapiPort = await freePort();
  const promPort = await freePort();
  const table = `crowdsec_bench_${process.pid}`;
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `
common: { daemonize: false, log_media: file, log_level: info, log_dir: ${dir}/log/, working_dir: ${dir} }
config_paths:
  config_dir: ${etc}/
  data_dir: ${dir}/data/
  simulation_path: ${etc}/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: ${etc}/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service: { acquisition_path: ${etc}/acquis.yaml, parser_routines: 1 }
cscli: { output: human }
db_config: { log_level: info, type: sqlite, db_path: ${dir}/data/crowdsec.db, use_wal: true, flush: { max_items: 5000, max_age: 7d } }
plugin_config: { user: nobody, group: nogroup }
api:
  client: { insecure_skip_verify: false, credentials_path: ${etc}/local_api_credentials.yaml }
  server:
    log_level: info
    listen_uri: 127.0.0.1:${lapiPort}
    profiles_path: ${etc}/profiles.yaml
    console_path: ${etc}/console.yaml
    trusted_ips: [127.0.0.1, "::1"]
prometheus: { enabled: true, level: full, listen_addr: 127.0.0.1, listen_port: ${promPort} }
`);
  writeFileSync(join(etc, 'simulation.yaml'), 'simulation: off\nexclusions: []\n');
  writeFileSync(join(etc, 'console.yaml'), 'share_manual_decisions: false\nshare_custom: false\nshare_tainted: false\n');
  writeFileSync(join(etc, 'profiles.yaml'), `name: default_ip_remediation
filters:
  - Alert.Remediation == true && Alert.GetScope() == "Ip"
decisions:
  - type: ban
    duration: ${p.banS}s
on_success: break
`);
  writeFileSync(join(etc, 'acquis.yaml'), `filenames: [${logFile}]\nlabels: { type: chicagojson }\n`);
  // the guard's input format: one JSON object per line; the address is all a flood scenario needs
  writeFileSync(join(etc, 'parsers', 's00-raw', 'bench-nginx-json.yaml'), `name: bench/nginx-json
description: nginx JSON access log (the guard_json format)
filter: "evt.Line.Labels.type == 'chicagojson'"
onsuccess: next_stage
statics:
  - meta: log_type
    value: http_access-log
  - meta: service
    value: http
  - meta: source_ip
    expression: JsonExtract(evt.Line.Raw, "remote_addr")
`);
  writeFileSync(join(etc, 'scenarios', 'bench-http-flood.yaml'), `type: leaky
name: bench/http-flood
description: the guard's http-flood bucket
filter: "evt.Meta.log_type == 'http_access-log'"
groupby: evt.Meta.source_ip
capacity: ${p.capacity}
leakspeed: ${p.leakMs}ms
blackhole: 1m
labels: { service: http, type: flood, remediation: true }
`);
  const cscli = (...args: string[]): string => execFileSync('cscli', ['-c', config, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  cscli('machines', 'add', 'bench-agent', '--password', `pw${process.pid}x${Date.now()}`, '-f', join(etc, 'local_api_credentials.yaml'), '--force');
  const key = cscli('bouncers', 'add', 'bench-bouncer', '-o', 'raw').trim();
  writeFileSync(join(dir, 'bouncer.yaml'), `mode: nftables
pid_dir: ${dir}/
update_frequency: ${p.bouncerPoll}
daemonize: false
log_mode: file
log_dir: ${dir}/log/
log_level: info
api_url: http://127.0.0.1:${lapiPort}/
api_key: ${key}
disable_ipv6: true
deny_action: DROP
deny_log: false
supported_decisions_types: [ban]
blacklists_ipv4: crowdsec-blacklists
blacklists_ipv6: crowdsec6-blacklists
nftables:
  ipv4: { enabled: true, set-only: false, table: ${table}, chain: crowdsec-chain }
  ipv6: { enabled: false, set-only: false, table: ${table}6, chain: crowdsec6-chain }
prometheus: { enabled: false, listen_addr: 127.0.0.1, listen_port: 60601 }
`);
  const cs = spawnProc('ip', ['netns', 'exec', ns, 'crowdsec', '-c', config], 'crowdsec', { cwd: dir });
  const metrics = async (): Promise<string> => (await run('ip', ['netns', 'exec', ns, 'curl', '-s', '--max-time', '5', `http://127.0.0.1:${promPort}/metrics`], { timeout: 10_000, maxBuffer: 16 << 20 })).stdout;
  const csLog = (): string => { try { return readFileSync(join(dir, 'log', 'crowdsec.log'), 'utf8').split('\n').slice(-30).join('\n'); } catch { return cs.out.slice(-30).join('\n'); } };
  await waitFor('crowdsec to serve its metrics and API', async () => {
    if (cs.child.exitCode !== null) throw new Error(`crowdsec exited ${cs.child.exitCode}:\n${csLog()}`);
    try { return (await metrics()).includes('cs_') && (await run('ip', ['netns', 'exec', ns, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${lapiPort}/health`])).stdout.length > 0; } catch { return false; }
  }, 60_000, csLog, 200).catch(async (e: Error) => {
    await cs.stop();
    throw e;
  });
  const bouncer = spawnProc('ip', ['netns', 'exec', ns, 'crowdsec-firewall-bouncer', '-c', join(dir, 'bouncer.yaml')], 'crowdsec-firewall-bouncer', { cwd: dir });
  await waitFor('the bouncer to create its table', async () => {
    if (bouncer.child.exitCode !== null) throw new Error(`bouncer exited ${bouncer.child.exitCode}:\n${bouncer.out.join('\n')}`);
    try { await run('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'ip', table]); return true; } catch { return false; }
  }, 30_000, undefined, 200).catch(async (e: Error) => {
    await bouncer.stop();
    await cs.stop();
    throw e;
  });
  const v = spawnSync('crowdsec', ['-version'], { encoding: 'utf8' });
  const version = `crowdsec ${/version: (\S+)/.exec(v.stdout + v.stderr)?.[1] ?? '?'}`;
  return {
    name: 'crowdsec', version: `${version} + crowdsec-firewall-bouncer 0.0.25 (nftables)`,
    mainPid: () => pidOf(cs),
    otherPids: () => ({ bouncer: pidOf(bouncer) }),
    processed: async () => [...(await metrics()).matchAll(/^cs_bucket_poured_total\{[^}]*\} (\S+)$/gm)].reduce((s, m) => s + Number(m[1]), 0),
    notes: [`acquisition: file (inotify), a JSON parser (JsonExtract remote_addr), one leaky scenario capacity ${p.capacity} leakspeed ${p.leakMs}ms; LAPI and agent in one process; firewall bouncer polls LAPI every ${p.bouncerPoll} (its Debian default is 10s)`],
    stop: async () => {
      await bouncer.stop();
      await cs.stop();
    },
  };
}

// ---- the three measurements ----------------------------------------------------------------------

/** the attackers reported apart as the first after a start */
const COLD_ATTACKERS = 10;

interface LatencyResult {
  attackers: number; enforced: number; missed: string[]; us: LatencySummary; gapMs: number; backgroundPerS: number;
  /** the five slowest bans: when the trigger was written (s after the first) and its latency, to tell a stall from a spread */
  slowest: Array<{ ip: string; atS: number; ms: number }>;
  /** through the agent: the trigger lines' time per stage */
  stages?: AgentStages;
  /** the first attackers after the tools started against the rest: a cold start shows in the first */
  byIndex?: Array<{ attackers: string; us: LatencySummary; stages?: AgentStages }>;
  perAttackerMs?: number[];
  /** CPU seconds of each process over the phase */
  cpuS?: Record<string, number>;
}
interface FloodResult { rate: number; trigger: number; enforcedAfterUs: number | null; linesAfterTrigger: number; written: number; targetMax: number; met: boolean }
interface ThroughputResult { lines: number; processed: number; seconds: number; linesPerS: number; cpuS: number; linesPerCpuS: number; othersCpuS: Record<string, number>; rssMB: number; othersRssMB: Record<string, number>; complete: boolean }

async function measureLatency(tool: Tool, watch: NftWatch, work: string, logFile: string, o: { attackers: number; gapMs: number; capacity: number; backgroundPerS: number; leadMs: number; waitS: number }): Promise<LatencyResult> {
  const plan = latencyPlan(o);
  const pids = { [tool.name]: tool.mainPid(), ...tool.otherPids() };
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, readProc(p)?.cpuS ?? 0]));
  const w = startWriter(work, `${tool.name}-latency`, plan.lines, logFile, tool.sink);
  const { times } = await w.done;
  await waitFor('every attacker enforced', () => [...plan.triggers.keys()].every((ip) => watch.firstSeen.has(ip)), o.waitS * 1000).catch(() => undefined);
  // each process's CPU over the phase: a process just started spends more on the same lines
  const cpuS = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, round2((readProc(p)?.cpuS ?? 0) - cpu0[k])]));
  const h = newHistogram();
  const missed: string[] = [];
  const each: Array<{ ip: string; atS: number; ms: number }> = [];
  for (const [ip, idx] of plan.triggers) {
    const seen = watch.firstSeen.get(ip);
    if (seen === undefined) { missed.push(ip); continue; }
    recordUs(h, seen - times[idx]);
    each.push({ ip, atS: times[idx], ms: (seen - times[idx]) / 1000 });
  }
  const first = Math.min(...each.map((e) => e.atS));
  // in the plan's order (each is sorted below): ms per attacker, -1 if never enforced
  const perAttackerMs = [...plan.triggers].map(([ip, idx]) => { const seen = watch.firstSeen.get(ip); return seen === undefined ? -1 : round2((seen - times[idx]) / 1000); });
  const slowest = each.sort((a, b) => b.ms - a.ms).slice(0, 5).map((e) => ({ ip: e.ip, atS: round2((e.atS - first) / 1e6), ms: round1(e.ms) }));
  const stages = tool.stages?.(times, plan.triggers, watch.firstSeen);
  // attackers in the plan's order: the first ones meet the tools just started
  const order = [...plan.triggers.entries()];
  const byIndex = ([[0, Math.min(COLD_ATTACKERS, order.length)], [COLD_ATTACKERS, order.length]] as const).filter(([a, b]) => b > a).map(([a, b]) => {
    const part = new Map(order.slice(a, b));
    const hp = newHistogram();
    for (const [ip, idx] of part) { const seen = watch.firstSeen.get(ip); if (seen !== undefined) recordUs(hp, seen - times[idx]); }
    const st = tool.stages?.(times, part, watch.firstSeen);
    return { attackers: `${a + 1}–${b}`, us: summarize(hp), ...(st ? { stages: st } : {}) };
  });
  return { attackers: plan.triggers.size, enforced: h.totalCount, missed, us: summarize(h), gapMs: o.gapMs, backgroundPerS: o.backgroundPerS, slowest, ...(stages ? { stages } : {}), byIndex, perAttackerMs, cpuS };
}

async function measureFlood(tool: Tool, watch: NftWatch, work: string, logFile: string, o: { rate: number; maxS: number; capacity: number }): Promise<FloodResult> {
  const ip = FLOOD_IP;
  const plan = floodPlan(ip, o.rate, o.maxS);
  const w = startWriter(work, `${tool.name}-flood`, plan, logFile, tool.sink);
  const stopper = (async () => {
    await waitFor('the flooder enforced', () => watch.firstSeen.has(ip) || w.proc.exitCode !== null, (o.maxS + 5) * 1000).catch(() => undefined);
    await sleep(200);
    w.proc.kill('SIGTERM');
  })();
  const { times } = await w.done;
  await stopper;
  const trigger = times[o.capacity];
  const seen = watch.firstSeen.get(ip);
  const written = times.filter((t) => t >= 0).length;
  const after = times.filter((t, i) => i > o.capacity && t >= 0 && (seen === undefined || t <= seen)).length;
  const targetMax = o.capacity + 10;
  return { rate: o.rate, trigger: o.capacity + 1, enforcedAfterUs: seen === undefined ? null : seen - trigger, linesAfterTrigger: after, written, targetMax, met: seen !== undefined && after <= targetMax };
}

async function measureThroughput(tool: Tool, logFile: string, lines: number, maxS: number): Promise<ThroughputResult> {
  const block = throughputBlock(lines);
  // the earlier phases' lines are all handled first: the count is settled for a second
  let before = await tool.processed();
  for (let stable = 0, t = Date.now(); stable < 10 && Date.now() - t < 60_000; ) {
    await sleep(100);
    const n = await tool.processed();
    stable = n === before ? stable + 1 : 0;
    before = n;
  }
  const pid = tool.mainPid();
  const others = tool.otherPids();
  const c0 = readProc(pid)?.cpuS ?? 0;
  const o0 = Object.fromEntries(Object.entries(others).map(([k, p]) => [k, readProc(p)?.cpuS ?? 0]));
  let rss = readProc(pid)?.rssMB ?? 0;
  const oRss: Record<string, number> = {};
  const t0 = performance.now();
  let sent: Promise<unknown> = Promise.resolve();
  if (tool.sink) {
    const client = await ChicagoClient.connect({ url: tool.sink.url, clientName: 'bench-guard-block' });
    const producer = client.producer({ lingerMs: 1 });
    const recs = block.split('\n').filter((l) => l);
    // in slices, each acknowledged before the next: the producer's buffer is bounded
    sent = (async () => {
      try {
        for (let i = 0; i < recs.length; i += 2000) {
          await Promise.all(recs.slice(i, i + 2000).map((value) => producer.send(tool.sink!.topic, { key: /"remote_addr":"([^"]+)"/.exec(value)![1], value })));
        }
      } finally {
        await producer.close().catch(() => undefined);
        client.close();
      }
    })();
    sent.catch(() => undefined);
  } else {
    const fd = openSync(logFile, 'a');
    writeSync(fd, block);
    closeSync(fd);
  }
  const until = Date.now() + maxS * 1000;
  let done = 0;
  let doneAt = performance.now();
  for (;;) {
    const n = (await tool.processed()) - before;
    if (n > done) { done = n; doneAt = performance.now(); }
    rss = Math.max(rss, readProc(pid)?.rssMB ?? 0);
    for (const [k, p] of Object.entries(others)) oRss[k] = Math.max(oRss[k] ?? 0, readProc(p)?.rssMB ?? 0);
    if (n >= lines || Date.now() > until) break;
    await sleep(100);
  }
  await sent;
  const seconds = (doneAt - t0) / 1000;
  const cpu = (readProc(pid)?.cpuS ?? 0) - c0;
  return {
    lines, processed: done, seconds: round2(seconds), linesPerS: Math.round(done / seconds), cpuS: round2(cpu), linesPerCpuS: Math.round(done / cpu),
    othersCpuS: Object.fromEntries(Object.entries(others).map(([k, p]) => [k, round2((readProc(p)?.cpuS ?? 0) - o0[k])])),
    rssMB: round1(rss), othersRssMB: Object.fromEntries(Object.entries(oRss).map(([k, v]) => [k, round1(v)])), complete: done >= lines,
  };
}

// ---- main ----------------------------------------------------------------------------------------

interface Side { tool: string; version: string; notes: string[]; latency?: LatencyResult; flood?: FloodResult; throughput?: ThroughputResult; self?: Record<string, unknown>; cluster?: Record<string, unknown>; seconds?: number; error?: string }

async function runTool(name: string, work: string, p: Params, o: Opts): Promise<Side> {
  const dir = mkdtempSync(join(work, `${name}-`));
  const ns = `cgb${process.pid % 100000}${name.slice(0, 2)}${name.length}`;
  const logFile = join(dir, 'access.json');
  writeFileSync(logFile, '');
  await run('ip', ['netns', 'add', ns]);
  const unhookNs = atExit(() => void spawnSync('ip', ['netns', 'del', ns]));
  let tool: Tool | undefined;
  let watch: NftWatch | undefined;
  try {
    await run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    watch = new NftWatch(ns);
    await watch.ready(ns);
    log(`${name}: starting`);
    const t0 = performance.now();
    tool = name === 'guard' || name === 'guard-direct' || name === 'guard-cluster' ? await startChicago(dir, ns, logFile, p, name) : name === 'fail2ban' ? await startFail2ban(dir, ns, logFile, p) : await startCrowdsec(dir, ns, logFile, p);
    const side: Side = { tool: name, version: tool.version, notes: tool.notes };
    await sleep(500 + o.settleMs); // the tool's file watch in place
    side.latency = await measureLatency(tool, watch, dir, logFile, { attackers: o.attackers, gapMs: o.gapMs, capacity: p.capacity, backgroundPerS: o.backgroundPerS, leadMs: o.leadMs, waitS: o.waitS });
    log(`${name} latency: ${JSON.stringify(side.latency)}`);
    side.flood = await measureFlood(tool, watch, dir, logFile, { rate: 5000, maxS: o.floodMaxS, capacity: p.capacity });
    log(`${name} flood: ${JSON.stringify(side.flood)}`);
    side.throughput = await measureThroughput(tool, logFile, o.throughputLines, o.throughputMaxS);
    log(`${name} throughput: ${JSON.stringify(side.throughput)}`);
    side.self = tool.selfReport?.();
    side.cluster = await tool.clusterReport?.();
    if (side.cluster) log(`${name} cluster: ${JSON.stringify(side.cluster)}`);
    side.seconds = round1((performance.now() - t0) / 1000);
    log(`${name}: done in ${side.seconds} s`);
    return side;
  } finally {
    await tool?.stop().catch((e: Error) => log(`${name}: stop failed: ${e.message}`));
    watch?.stop();
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
    unhookNs();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Opts { attackers: number; gapMs: number; backgroundPerS: number; leadMs: number; settleMs: number; waitS: number; floodMaxS: number; throughputLines: number; throughputMaxS: number }

const ms = (us: number | null | undefined): string => (us === null || us === undefined ? '–' : (us / 1000).toFixed(us < 10_000 ? 2 : us < 1e6 ? 1 : 0));
const ratio = (a: number | null | undefined, b: number | null | undefined): string => (a !== null && a !== undefined && b ? (a / b).toFixed(3).replace(/\.?0+$/, '') : '–');

function table(sides: Side[], p: Params): string {
  const g = sides.find((s) => s.tool === 'guard');
  const anchors = g ? sides.filter((s) => s.tool !== 'guard' && s.tool !== 'guard-cluster') : [];
  // the cluster row against the same path on one node
  const c = sides.find((s) => s.tool === 'guard-cluster');
  const d = sides.find((s) => s.tool === 'guard-direct');
  const vs = c && d ? [[c, d]] : [];
  const head = ['measure', ...sides.map((s) => s.tool), ...anchors.map((a) => `guard ÷ ${a.tool}`), ...vs.map(() => 'guard-cluster ÷ guard-direct'), 'target'];
  const rows: string[] = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 || i === head.length - 1 ? '---' : '---:')).join('|')}|`];
  const row = (label: string, f: (s: Side) => number | null | undefined, fmt: (v: number | null | undefined) => string, target = ''): void => {
    const cells = [label, ...sides.map((s) => (s.error ? 'failed' : fmt(f(s)))), ...anchors.map((a) => ratio(g ? f(g) : undefined, f(a))), ...vs.map(([x, y]) => ratio(f(x), f(y))), target];
    rows.push(`| ${cells.join(' | ')} |`);
  };
  const l = g?.latency ?? sides[0]?.latency;
  const n = (v: number | null | undefined): string => (v === null || v === undefined ? '–' : String(v));
  row(`line → enforced p50 ms (${l?.attackers ?? '?'} attackers)`, (s) => s.latency?.us.p50, ms, '≤ 5');
  row('line → enforced p99 ms', (s) => s.latency?.us.p99, ms, c ? '≤ 50; 3-node cluster ≤ 100' : '≤ 50');
  row('line → enforced max ms', (s) => s.latency?.us.max, ms);
  row('attackers enforced', (s) => s.latency?.enforced, n);
  row(`5k lines/s from one IP: lines after the trigger before enforced`, (s) => s.flood?.linesAfterTrigger, n, `≤ ${p.capacity + 10}`);
  row('5k lines/s: trigger → enforced ms', (s) => s.flood?.enforcedAfterUs, ms);
  row('throughput lines/s (wall)', (s) => s.throughput?.linesPerS, n);
  row('lines per CPU-second of the tool', (s) => s.throughput?.linesPerCpuS, n, '≥ 50,000 (guard)');
  row('RSS MB of the tool', (s) => s.throughput?.rssMB, n);
  return rows.join('\n');
}

/** Where the trigger lines' time went through the agent, per stage. */
function stagesTable(tool: string, st: AgentStages): string {
  const rows = [`${tool}: each trigger line's time per stage (${st.lines} lines; the agent's trace log)`, '', '| stage | p50 ms | p99 ms | max ms |', '|---|---:|---:|---:|'];
  for (const [k, v] of Object.entries(st)) if (typeof v === 'object') rows.push(`| ${k} | ${ms(v.p50)} | ${ms(v.p99)} | ${ms(v.max)} |`);
  return rows.join('\n') + '\n';
}

/** The first attackers after the start against the rest: p50 per stage side by side. */
function indexTable(tool: string, parts: NonNullable<LatencyResult['byIndex']>): string {
  const head = `| stage | ${parts.map((x) => `attackers ${x.attackers} p50 ms`).join(' | ')} |`;
  const rows = [`${tool}: the first attackers after the start against the rest`, '', head, `|---|${parts.map(() => '---:').join('|')}|`];
  rows.push(`| line → in the nft set | ${parts.map((x) => ms(x.us.p50)).join(' | ')} |`);
  const names = Object.keys(parts[0].stages ?? {}).filter((k) => typeof parts[0].stages![k] === 'object');
  for (const k of names) rows.push(`| ${k} | ${parts.map((x) => ms((x.stages?.[k] as LatencySummary | undefined)?.p50)).join(' | ')} |`);
  return rows.join('\n') + '\n';
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      attackers: { type: 'string' },
      'gap-ms': { type: 'string' },
      'background-per-s': { type: 'string' },
      'throughput-lines': { type: 'string' },
      'throughput-max-s': { type: 'string' },
      'flood-max-s': { type: 'string' },
      'lead-ms': { type: 'string' },
      'settle-ms': { type: 'string' },
      capacity: { type: 'string' },
      'leak-ms': { type: 'string' },
      'writer-max-in-flight': { type: 'string' },
      'agent-poll-ms': { type: 'string' },
      'agent-stages': { type: 'string' },
      'bouncer-poll': { type: 'string' },
      out: { type: 'string' },
    },
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
  const quick = values.quick ?? false;
  const p: Params = { capacity: Number(values.capacity ?? 20), leakMs: Number(values['leak-ms'] ?? 100), banS: 600, bouncerPoll: values['bouncer-poll'] ?? '10s', agentStages: values['agent-stages'] !== 'off',
    ...(values['writer-max-in-flight'] ? { writerMaxInFlight: Number(values['writer-max-in-flight']) } : {}),
    ...(values['agent-poll-ms'] ? { agentPollMs: Number(values['agent-poll-ms']) } : {}) };
  const o: Opts = {
    attackers: Number(values.attackers ?? (quick ? 20 : 100)),
    gapMs: Number(values['gap-ms'] ?? (quick ? 100 : 200)),
    backgroundPerS: Number(values['background-per-s'] ?? 200),
    leadMs: Number(values['lead-ms'] ?? 500),
    settleMs: Number(values['settle-ms'] ?? 0),
    waitS: 15,
    floodMaxS: Number(values['flood-max-s'] ?? 15),
    throughputLines: Number(values['throughput-lines'] ?? (quick ? 20_000 : 100_000)),
    throughputMaxS: Number(values['throughput-max-s'] ?? (quick ? 20 : 60)),
  };
  const tools = (values.only ?? 'guard,guard-direct,guard-cluster,fail2ban,crowdsec').split(',').map((s) => s.trim());
  if (process.getuid?.() !== 0) throw new Error('bench:guard needs root (network namespaces, nftables)');
  const missing = [['fail2ban', 'fail2ban-server'], ['crowdsec', 'crowdsec'], ['crowdsec', 'crowdsec-firewall-bouncer']].filter(([t, bin]) => tools.includes(t) && !existsSync(`/usr/bin/${bin}`));
  if (missing.length) {
    log(`installing the anchors (scripts/bench-guard-deps.sh): ${missing.map((m) => m[1]).join(', ')} missing`);
    execFileSync('bash', [join(repoRoot(), 'scripts', 'bench-guard-deps.sh')], { stdio: 'inherit' });
  }
  const work = mkdtempSync(join(tmpdir(), 'chicago-bench-guard-'));
  const startedAt = new Date().toISOString();
  const load0 = loadavg().map(round2);
  const sides: Side[] = [];
  try {
    for (const t of tools) {
      try {
        sides.push(await runTool(t, work, p, o));
      } catch (e) {
        log(`${t} failed: ${(e as Error).stack ?? e}`);
        sides.push({ tool: t, version: '?', notes: [], error: (e as Error).message.slice(0, 2000) });
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const machine = { ...machineInfo(), loadAvgAtStart: load0, loadAvgAtEnd: loadavg().map(round2) };
  const g = sides.find((s) => s.tool === 'guard');
  const ratios = Object.fromEntries(sides.filter((s) => s.tool !== 'guard' && s.tool !== 'guard-cluster').map((a) => [a.tool, {
    latencyP50: g?.latency && a.latency?.us.p50 ? round2(g.latency.us.p50 / a.latency.us.p50) : undefined,
    latencyP99: g?.latency && a.latency?.us.p99 ? round2(g.latency.us.p99 / a.latency.us.p99) : undefined,
    floodLinesAfterTrigger: g?.flood && a.flood?.linesAfterTrigger ? round2(g.flood.linesAfterTrigger / a.flood.linesAfterTrigger) : undefined,
    linesPerCpuS: g?.throughput && a.throughput?.linesPerCpuS ? round2(g.throughput.linesPerCpuS / a.throughput.linesPerCpuS) : undefined,
    rss: g?.throughput && a.throughput?.rssMB ? round2(g.throughput.rssMB / a.throughput.rssMB) : undefined,
  }]));
  // guard-cluster ÷ guard-direct: what three replicas and etcd add to the same path
  const c = sides.find((s) => s.tool === 'guard-cluster');
  const d = sides.find((s) => s.tool === 'guard-direct');
  const div = (x: number | null | undefined, y: number | null | undefined): number | undefined => (x !== null && x !== undefined && y ? round2(x / y) : undefined);
  const clusterVsDirect = c && d && !c.error && !d.error ? {
    latencyP50: div(c.latency?.us.p50, d.latency?.us.p50),
    latencyP99: div(c.latency?.us.p99, d.latency?.us.p99),
    latencyMax: div(c.latency?.us.max, d.latency?.us.max),
    floodLinesAfterTrigger: div(c.flood?.linesAfterTrigger, d.flood?.linesAfterTrigger),
    linesPerS: div(c.throughput?.linesPerS, d.throughput?.linesPerS),
    linesPerCpuS: div(c.throughput?.linesPerCpuS, d.throughput?.linesPerCpuS),
  } : undefined;
  const result = {
    bench: 'guard-vs-fail2ban-crowdsec', startedAt, machine,
    settings: { ...p, ...o, floodRate: 5000, input: 'nginx JSON access-log lines (guard_json) appended to a file each tool reads' },
    sides, ratios, ...(clusterVsDirect ? { clusterVsDirect } : {}),
    targets: { latencyP50Ms: 5, latencyP99Ms: 50, latencyP99ClusterMs: 100, floodLinesAfterTriggerMax: p.capacity + 10, linesPerCoreMin: 50_000 },
  };
  const md = [
    `Guard vs fail2ban vs CrowdSec, measured ${startedAt} on ${machine.cpus.count}× ${machine.cpus.model}, ${machine.memGiB} GiB, ${machine.node}, git ${machine.gitRev ?? '?'}; load average ${load0.join(' ')} at start, ${machine.loadAvgAtEnd.join(' ')} at end. Bucket: capacity ${p.capacity}, leak ${p.leakMs} ms; bouncer poll ${p.bouncerPoll}.`,
    '',
    table(sides, p),
    '',
    ...sides.filter((x) => x.latency?.stages).map((x) => stagesTable(x.tool, x.latency!.stages!)),
    ...sides.filter((x) => x.latency?.byIndex && x.latency.byIndex.length > 1).map((x) => indexTable(x.tool, x.latency!.byIndex!)),
    ...sides.map((s) => `- ${s.tool}: ${s.version}${s.error ? ` — **failed**: ${s.error.split('\n')[0]}` : ''}; ${s.notes.join('; ')}`),
    '',
  ].join('\n');
  const outDir = resolve(values.out ?? join(repoRoot(), 'bench', 'results'));
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `guard-${startedAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  writeFileSync(join(outDir, 'guard.md'), md);
  process.stdout.write(md + `\nwritten ${file}\n`);
}

if (process.argv[2] === 'write') {
  const [plan, file, times, url, topic, maxInFlight] = process.argv.slice(3);
  writerMain(plan, file, times, url ? { url, topic, ...(maxInFlight ? { maxInFlight: Number(maxInFlight) } : {}) } : undefined).then(() => process.exit(0), (e: Error) => { console.error(e); process.exit(1); });
} else {
  main().then(() => process.exit(0), (e: Error) => { log(e.stack ?? e.message); process.exit(1); });
}
