// `chicago bench SCENARIO [flags]`: one flag set for every scenario.
import { parseArgs } from 'node:util';
import type { Acks } from '../src/protocol/api.js';
import type { Pacing } from './openloop.js';
import type { RedisPersistence } from './redis.js';
import { limits } from '../src/runtime/limits.js';

export const SCENARIOS = ['kv-put', 'kv-get', 'produce', 'produce-tail', 'idle', 'noop'] as const;
/** against a private etcd + N-node cluster the bench starts (bench/cluster.ts) */
export const CLUSTER_SCENARIOS = ['cluster-kv-put', 'cluster-produce', 'cluster-failover', 'cluster-rebalance', 'cluster-idle'] as const;
export type ClusterScenario = (typeof CLUSTER_SCENARIOS)[number];
export type Scenario = (typeof SCENARIOS)[number] | ClusterScenario;
/** cluster-kv-put's replicated anchors (bench/anchors.ts), besides the single Redis of `baseline` */
export const REPLICATED_ANCHORS = ['redis-wait', 'etcd'] as const;
export type ReplicatedAnchor = (typeof REPLICATED_ANCHORS)[number];

/** cluster scenarios only */
export interface ClusterArgs {
  /** nodes started (default 4) */
  nodes: number;
  /** cluster partitions, CHICAGO_PARTITIONS (default: the node's default) */
  partitions?: number;
  /** worker threads per node, CHICAGO_WORKERS (default: the node's default) */
  workers?: number;
  /** cluster-produce: climb through these rates (records/s) on one cluster */
  rates: number[];
  /** cluster-failover: kills (default 5) */
  repeat: number;
  /** cluster-rebalance: add a node or remove one gracefully */
  move: 'join' | 'leave' | 'both';
  /** cluster-rebalance: keys loaded before the move (default 1000000) */
  loadKeys: number;
}

export interface BenchArgs {
  scenario: Scenario;
  url: string;
  spawn: boolean;
  /** operations (kv) or records (produce) per second */
  rate: number;
  durationS: number;
  warmupS: number;
  json?: string;
  recordBytes: number;
  /** records per produce batch */
  batch: number;
  connections: number;
  acks: Acks;
  target: 'chicago' | 'redis';
  /** also run the same generator against this baseline in the same invocation */
  baseline?: 'redis';
  /** cluster-kv-put: the same schedule against these replicated anchors too, in this order */
  anchors: ReplicatedAnchor[];
  /** redis-wait anchor: connections to the primary (WAIT blocks its connection) */
  anchorConnections: number;
  /** redis-wait anchor: the WAIT timeout; fewer replicas by then is an error */
  waitTimeoutMs: number;
  redisPersistence: RedisPersistence;
  via: 'ws' | 'http';
  /** cluster-kv-put: each put to its partition's leader (as the client library routes), or round robin over the nodes */
  route: 'leader' | 'any';
  keyspace: string;
  /** distinct keys the kv scenarios cycle through */
  keys: number;
  topic?: string;
  partitions: number;
  replicas: number;
  maxOutstanding: number;
  timeoutMs: number;
  drainMs: number;
  pacing: Pacing;
  lingerMs: number;
  producers: number;
  /** produce, noop: generator threads the schedule is split over (1: the bench's main thread) */
  generators: number;
  /** ws: batches in flight per Producer stream (the client's maxInFlight) */
  maxInFlight?: number;
  creditBytes: number;
  /** node pid to sample CPU/RSS from when not spawning */
  pid?: number;
  /** arguments appended to the spawned `server` command */
  serverArgs: string[];
  /** write V8 CPU profiles of the spawned node into this directory */
  cpuProf?: string;
  quiet: boolean;
  cluster: ClusterArgs;
}

export const BENCH_HELP = `chicago bench SCENARIO [flags]     open-loop load at a fixed rate; latency from the intended send time

scenarios: kv-put | kv-get | produce | produce-tail | idle | noop (the generator alone: its own floor)

  --url URL              node to drive (default $CHICAGO_URL or http://127.0.0.1:7070)
  --token T              access token (or --token-file FILE, $CHICAGO_TOKEN, $CHICAGO_TOKEN_FILE)
  --ca FILE              a CA (PEM) to trust for https:// (or $CHICAGO_CA)
  --spawn                start a fresh single node (temp data dir) for this run, stop it after
  --rate R               kv: operations/s; produce: records/s             (default 10000)
  --duration S           measured seconds                                  (default 10)
  --warmup S             seconds at the same rate before measuring         (default 2)
  --json FILE            write the result object to FILE (it always goes to stdout too)
  --record-bytes N       value size                                        (default 200)
  --batch N              produce: records per batch (rate/N batches/s)     (default 1000; produce-tail 1)
  --connections N        client connections, round robin (http: pools of 32 sockets) (default 1)
  --acks all|one|none    (default one)
  --target chicago|redis kv-put/kv-get: what to drive                      (default chicago)
  --baseline redis       kv-put/kv-get: run the same schedule against a fresh Redis too; report the ratio
                         cluster-kv-put: a comma list of redis (one Redis), redis-wait (a primary +
                         2 replicas, SET then WAIT 2) and etcd (3 members, put), run in that order
  --anchor-connections N redis-wait: connections to the primary, a write on the least busy (default 64)
  --wait-timeout-ms N    redis-wait: WAIT's timeout; fewer replicas is an error (default 5000, as a
                         node's replication timeout)
  --redis-persistence none|aof-everysec|aof-always                          (default aof-everysec)
  --via ws|http          Chicago transport: the TypeScript WS client or HTTP keep-alive (default ws)
  --route leader|any     cluster-kv-put: each put to its partition's leader, as the client library routes
                         (default), or round robin over the nodes (a node forwards what it does not lead)
  --keyspace NAME --keys N   kv keyspace and number of distinct keys       (default bench, 100000)
  --topic NAME --partitions P --replicas N   produce topic (created if missing; default a new name, 4|1, 1)
  --max-outstanding N    cap on requests in flight; sends due while full are counted as errors
                         (default 4000 per connection: the client refuses more than 4096)
  --timeout-ms N         an unanswered request counts as a timeout error after this (default 10000)
  --pacing ticker|spin|timer  how the generator waits for the next due time (default ticker):
                         ticker = a thread sleeping until each due time posts a tick (lag ~0.1 ms,
                         little CPU); spin = busy event-loop turns (lag ~µs, burns a core);
                         timer = 1 ms timer (lag up to ~1 ms)
  --linger-ms N          ws producer linger (default 0: a bench batch is sent when complete)
  --producers N          ws: client Producer instances per connection, each with its own
                         streams per partition (default 1; produce-tail 8)
  --generators N         produce, noop: split the schedule over N generator threads, each with its
                         own connections (--connections each) and every N-th operation; one result
                         (default 1: the main thread)
  --max-in-flight N      ws: batches a Producer keeps in flight per partition (its maxInFlight;
                         default the client's, 5; 1 = one round trip per batch)
  --credit-bytes N       tail subscription credit (default 16 MiB)
  --pid PID              sample this node's CPU/RSS (with --url; --spawn knows its own)
  --server-arg ARG       extra argument for the spawned server (repeat)
  --cpu-prof DIR         spawned node writes V8 CPU profiles into DIR
  --quiet                no human summary on stderr

cluster scenarios (a private etcd + --nodes nodes on 127.0.0.2…, N = --replicas, default acks all):
  cluster-kv-put | cluster-produce | cluster-failover | cluster-rebalance | cluster-idle   (see bench/README.md)
  --nodes N              nodes (default 4)
  --cluster-partitions P cluster partitions (default: the node's default)
  --workers W            worker threads per node (default: the node's default)
  --rates R1,R2,…        cluster-produce: climb through these records/s on one cluster
  --repeat K             cluster-failover: kill -9 a leader K times (default 5)
  --move join|leave|both cluster-rebalance: add a node / remove one with SIGTERM / both in turn (default both)
  --load-keys N          cluster-rebalance: keys of --record-bytes loaded first (default 1000000)
`;

/** A wrong bench command line: the CLI prints it with the bench usage and exits 64, no stack. */
export class BenchArgsError extends Error {
  override name = 'BenchArgsError';
}

export function parseBenchArgs(scenario: string, argv: string[]): BenchArgs {
  if (scenario === '--help' || scenario === '-h' || scenario === '') {
    process.stdout.write(BENCH_HELP);
    process.exit(0);
  }
  if (!(SCENARIOS as readonly string[]).includes(scenario) && !(CLUSTER_SCENARIOS as readonly string[]).includes(scenario)) {
    throw new BenchArgsError(`unknown bench scenario "${scenario}"; one of ${[...SCENARIOS, ...CLUSTER_SCENARIOS].join(', ')}`);
  }
  const { values } = parseBenchFlags(argv);
  if (values.help) {
    process.stdout.write(BENCH_HELP);
    process.exit(0);
  }
  const s = scenario as Scenario;
  const isCluster = s.startsWith('cluster-');
  const num = (name: string, v: string | undefined, dflt: number, min = 0): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new BenchArgsError(`--${name} must be a number ≥ ${min} (got "${v}")`);
    return n;
  };
  const oneOf = <T extends string>(name: string, v: string | undefined, allowed: readonly T[], dflt: T): T => {
    if (v === undefined) return dflt;
    if (!(allowed as readonly string[]).includes(v)) throw new BenchArgsError(`--${name} must be one of ${allowed.join('|')} (got "${v}")`);
    return v as T;
  };
  const rate = num('rate', values.rate, 10_000, Number.MIN_VALUE);
  const batch = Math.floor(num('batch', values.batch, s === 'produce' || s === 'cluster-produce' ? 1000 : 1, 1));
  if ((s === 'produce' || s === 'produce-tail' || s === 'cluster-produce') && values.acks === 'none') {
    throw new BenchArgsError(`${s} times acks: --acks none has none (use one or all)`);
  }
  const connections = Math.floor(num('connections', values.connections, 1, 1));
  if (values.generators !== undefined && Number(values.generators) > 1 && s !== 'produce' && s !== 'noop') {
    throw new BenchArgsError('--generators applies to produce and noop only');
  }
  const target = oneOf('target', values.target, ['chicago', 'redis'] as const, 'chicago');
  const baselines = values.baseline === undefined ? [] : values.baseline.split(',').map((b) => b.trim());
  const allowed = s === 'cluster-kv-put' ? ['redis', ...REPLICATED_ANCHORS] : ['redis'];
  for (const b of baselines) oneOf('baseline', b, allowed, 'redis');
  const baseline = baselines.includes('redis') ? ('redis' as const) : undefined;
  const anchors = REPLICATED_ANCHORS.filter((a) => baselines.includes(a));
  const timeoutMs = num('timeout-ms', values['timeout-ms'], 10_000, 1);
  // WAIT 0 would block for ever; a WAIT outlasting the request timeout would never be the one that reports
  const waitTimeoutMs = Math.floor(num('wait-timeout-ms', values['wait-timeout-ms'], limits.replicationTimeoutMs, 1));
  if (anchors.includes('redis-wait') && waitTimeoutMs >= timeoutMs) {
    throw new BenchArgsError(`--wait-timeout-ms (${waitTimeoutMs}) must be below --timeout-ms (${timeoutMs})`);
  }
  if ((target === 'redis' || baselines.length > 0) && s !== 'kv-put' && s !== 'kv-get' && !(baselines.length > 0 && s === 'cluster-kv-put')) {
    throw new BenchArgsError('--target redis / --baseline redis apply to kv-put and kv-get (--baseline also to cluster-kv-put) only');
  }
  // every client this process opens reads its credentials from these (bench/http.ts benchCredentials)
  if (values.token) process.env.CHICAGO_TOKEN = values.token;
  if (values['token-file']) { delete process.env.CHICAGO_TOKEN; process.env.CHICAGO_TOKEN_FILE = values['token-file']; }
  if (values.ca) process.env.CHICAGO_CA = values.ca;
  return {
    scenario: s,
    url: values.url ?? process.env.CHICAGO_URL ?? 'http://127.0.0.1:7070',
    spawn: values.spawn ?? false,
    rate,
    durationS: num('duration', values.duration, s === 'idle' ? 10 : 10, 0.001),
    warmupS: num('warmup', values.warmup, s === 'idle' ? 5 : 2),
    ...(values.json === undefined ? {} : { json: values.json }),
    recordBytes: Math.floor(num('record-bytes', values['record-bytes'], 200, 24)),
    batch,
    connections,
    acks: oneOf('acks', values.acks, ['all', 'one', 'none'] as const, isCluster ? 'all' : 'one'),
    target,
    ...(baseline === undefined ? {} : { baseline }),
    anchors,
    anchorConnections: Math.floor(num('anchor-connections', values['anchor-connections'], 64, 1)),
    waitTimeoutMs,
    redisPersistence: oneOf(
      'redis-persistence',
      values['redis-persistence'],
      ['none', 'aof-everysec', 'aof-always'] as const,
      'aof-everysec',
    ),
    via: oneOf('via', values.via, ['ws', 'http'] as const, 'ws'),
    route: oneOf('route', values.route, ['leader', 'any'] as const, 'leader'),
    keyspace: values.keyspace ?? 'bench',
    keys: Math.floor(num('keys', values.keys, 100_000, 1)),
    ...(values.topic === undefined ? {} : { topic: values.topic }),
    partitions: Math.floor(num('partitions', values.partitions, s === 'produce-tail' ? 1 : 4, 1)),
    replicas: Math.floor(num('replicas', values.replicas, isCluster ? 3 : 1, 1)),
    maxOutstanding: Math.floor(num('max-outstanding', values['max-outstanding'], 4000 * connections, 1)),
    timeoutMs,
    drainMs: num('drain-ms', values['drain-ms'], 10_000, 0),
    pacing: oneOf('pacing', values.pacing, ['ticker', 'spin', 'timer'] as const, 'ticker'),
    lingerMs: num('linger-ms', values['linger-ms'], 0),
    producers: Math.floor(num('producers', values.producers, s === 'produce-tail' ? 8 : 1, 1)),
    generators: Math.floor(num('generators', values.generators, 1, 1)),
    ...(values['max-in-flight'] === undefined ? {} : { maxInFlight: Math.floor(num('max-in-flight', values['max-in-flight'], 5, 1)) }),
    creditBytes: Math.floor(num('credit-bytes', values['credit-bytes'], 16 * 1024 * 1024, 1)),
    ...(values.pid === undefined ? {} : { pid: Math.floor(num('pid', values.pid, 0, 1)) }),
    serverArgs: values['server-arg'] ?? [],
    ...(values['cpu-prof'] === undefined ? {} : { cpuProf: values['cpu-prof'] }),
    quiet: values.quiet ?? false,
    cluster: {
      nodes: Math.floor(num('nodes', values.nodes, 4, 1)),
      ...(values['cluster-partitions'] === undefined ? {} : { partitions: Math.floor(num('cluster-partitions', values['cluster-partitions'], 8, 1)) }),
      ...(values.workers === undefined ? {} : { workers: Math.floor(num('workers', values.workers, 1, 1)) }),
      rates: (values.rates ?? String(rate)).split(',').map((r) => num('rates', r.trim(), rate, Number.MIN_VALUE)),
      repeat: Math.floor(num('repeat', values.repeat, 5, 1)),
      move: oneOf('move', values.move, ['join', 'leave', 'both'] as const, 'both'),
      loadKeys: Math.floor(num('load-keys', values['load-keys'], 1_000_000, 1)),
    },
  };
}

/** parseArgs with its message (it names the flag) kept, as a usage error. */
function parseBenchFlags(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        'token-file': { type: 'string' },
        ca: { type: 'string' },
        spawn: { type: 'boolean', default: false },
        rate: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        json: { type: 'string' },
        'record-bytes': { type: 'string' },
        batch: { type: 'string' },
        connections: { type: 'string' },
        acks: { type: 'string' },
        target: { type: 'string' },
        baseline: { type: 'string' },
        'anchor-connections': { type: 'string' },
        'wait-timeout-ms': { type: 'string' },
        'redis-persistence': { type: 'string' },
        via: { type: 'string' },
        route: { type: 'string' },
        keyspace: { type: 'string' },
        keys: { type: 'string' },
        topic: { type: 'string' },
        partitions: { type: 'string' },
        replicas: { type: 'string' },
        'max-outstanding': { type: 'string' },
        'timeout-ms': { type: 'string' },
        'drain-ms': { type: 'string' },
        pacing: { type: 'string' },
        'linger-ms': { type: 'string' },
        producers: { type: 'string' },
        'max-in-flight': { type: 'string' },
        generators: { type: 'string' },
        'credit-bytes': { type: 'string' },
        pid: { type: 'string' },
        'server-arg': { type: 'string', multiple: true },
        'cpu-prof': { type: 'string' },
        quiet: { type: 'boolean', default: false },
        nodes: { type: 'string' },
        'cluster-partitions': { type: 'string' },
        workers: { type: 'string' },
        rates: { type: 'string' },
        repeat: { type: 'string' },
        move: { type: 'string' },
        'load-keys': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new BenchArgsError((err as Error).message);
  }
}
