// chicago bridge, chicago kafka-tail, chicago group lag: the Kafka bridge (docs/bridge.md) and the
// two ways to watch it: what arrived in Kafka (by task/host header) and how far behind it is.
import type { GroupOffset } from '../../protocol/api.js';
import { type Command, clientOptions, flag, int, list, str } from '../args.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { line, table } from '../output.js';

export const bridge: Command = {
  name: 'bridge',
  synopsis: '--config FILE',
  summary: 'deliver Chicago topics to Kafka topics (exactly-once or at-least-once); stops cleanly on SIGTERM',
  details: [
    'FILE is YAML or JSON (docs/bridge.md): chicago.url, kafka.brokers, group, mode, mappings,',
    'limits, deadLetter, lag, metrics. The resolved config is logged at start; unknown keys are',
    'an error (exit 78). SIGTERM or SIGINT ends the current round (its Kafka transaction commits',
    'or aborts) and exits 0. With metrics.port set it serves GET /metrics and GET /v1/bridge/lag.',
    'A node runs the same bridge in-process when its config has a `bridge:` section.',
  ].join('\n'),
  options: { config: { type: 'string' } },
  args: [0, 0],
  async run(p) {
    const file = str(p, 'config');
    if (!file) throw new UsageError('bridge: --config FILE is required', 'bridge');
    // Loaded on demand: kafkajs is only needed here.
    const { runBridge } = await import('../../bridge/main.js');
    const { BridgeConfigError } = await import('../../bridge/config.js');
    const { BridgeFatalError } = await import('../../bridge/bridge.js');
    try {
      await runBridge(file);
    } catch (e) {
      // a config that cannot work (bad keys, a missing topic with createTopics off): EX_CONFIG
      if (e instanceof BridgeConfigError || e instanceof BridgeFatalError) throw new CliError(EXIT.config, `chicago bridge: ${e.message}`);
      throw e;
    }
  },
};

export const kafkaTail: Command = {
  name: 'kafka-tail',
  synopsis: '--brokers B --topic T [--task X] [--host H] [--header NAME=VALUE]... [--from-beginning] [--follow] [--limit N]',
  summary: 'read a Kafka topic the bridge writes (read_committed) and print the records whose headers match',
  details: [
    'Prints JSON lines {"topic","partition","offset","timestamp","key","value","headers"}.',
    '--brokers       comma-separated bootstrap list, e.g. 127.0.0.1:9092 (or env KAFKA_BROKERS)',
    '--task, --host  keep records whose `task` / `host` header equals the value; all filters must match',
    '--from-beginning  start at the oldest record (default: only records that arrive from now on)',
    '--follow        keep reading until Ctrl-C; without it, stop once nothing new came for --idle',
    '--idle DUR      (default 2000 ms)   --limit N   stop after N matching records',
    '--group G       a Kafka consumer group that commits what was read (default: a fresh one, no commits)',
  ].join('\n'),
  options: {
    brokers: { type: 'string' },
    topic: { type: 'string' },
    task: { type: 'string' },
    host: { type: 'string' },
    header: { type: 'string', multiple: true },
    'from-beginning': { type: 'boolean' },
    follow: { type: 'boolean' },
    idle: { type: 'string' },
    limit: { type: 'string' },
    group: { type: 'string' },
  },
  args: [0, 0],
  async run(p) {
    const brokers = (str(p, 'brokers') ?? process.env.KAFKA_BROKERS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    if (brokers.length === 0) throw new UsageError('kafka-tail: --brokers is required', 'kafka-tail');
    for (const b of brokers) if (!/^[^\s:,]+:\d{1,5}$/.test(b)) throw new UsageError(`kafka-tail: --brokers: not HOST:PORT: '${b}'`, 'kafka-tail');
    const topic = str(p, 'topic');
    if (!topic) throw new UsageError('kafka-tail: --topic is required', 'kafka-tail');
    const headers: Record<string, string> = {};
    for (const h of list(p, 'header')) {
      const i = h.indexOf('=');
      if (i <= 0) throw new UsageError(`kafka-tail: --header must be NAME=VALUE, got '${h}'`, 'kafka-tail');
      headers[h.slice(0, i)] = h.slice(i + 1);
    }
    const task = str(p, 'task');
    const host = str(p, 'host');
    if (task !== undefined) headers.task = task;
    if (host !== undefined) headers.host = host;
    const idle = str(p, 'idle');
    const idleMs = idle === undefined ? undefined : parseIdle(idle);
    const limit = int(p, 'limit', 1);
    const group = str(p, 'group');
    const { runKafkaTail } = await import('../../bridge/kafka-tail.js');
    const pending: Promise<void>[] = [];
    await runKafkaTail({
      brokers, topic, headers,
      fromBeginning: flag(p, 'from-beginning'),
      follow: flag(p, 'follow'),
      ...(idleMs !== undefined ? { idleMs } : {}),
      ...(limit !== undefined ? { limit } : {}),
      ...(group !== undefined ? { group } : {}),
      out: (l) => { pending.push(line(l)); },
    }).catch((e: unknown) => {
      const err = e as { name?: string; message?: string };
      if (err.name?.startsWith('KafkaJS')) throw new CliError(EXIT.unreachable, `kafka-tail: ${err.message ?? String(e)} (brokers ${brokers.join(',')})`);
      throw e;
    });
    await Promise.all(pending);
  },
};

function parseIdle(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!m) throw new UsageError(`kafka-tail: --idle: not a duration: '${text}'`, 'kafka-tail');
  return Math.round(Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 }[m[2] ?? 'ms'] ?? 1));
}

export const groupLag: Command = {
  name: 'group lag',
  synopsis: 'GROUP [--topic T] [--json]',
  summary: 'how far a consumer group (e.g. the Kafka bridge) is behind: records and seconds per partition',
  details: [
    'LAG is records appended and not yet committed by GROUP; LAG_SECONDS is the age of the oldest',
    'of them (0 when caught up). The last line sums the records and gives the largest age.',
    'For the Kafka bridge, GROUP is its `group` (default kafka-bridge).',
  ].join('\n'),
  options: { ...clientOptions, topic: { type: 'string' } },
  args: [1, 1],
  async run(p) {
    const group = p.positionals[0];
    const path = `/v1/groups/${enc(group)}/offsets`;
    const { offsets } = await httpFrom(p).must<{ offsets: GroupOffset[] }>('GET', path, { query: { topic: str(p, 'topic') } });
    const total = {
      lagRecords: offsets.reduce((n, o) => n + o.lagRecords, 0),
      lagSeconds: offsets.reduce((n, o) => Math.max(n, o.lagSeconds), 0),
    };
    if (wantsJson(p)) {
      return line(JSON.stringify({
        group,
        partitions: offsets.map((o) => ({ topic: o.topic, partition: o.partition, committed: o.offset, endOffset: o.endOffset, lagRecords: o.lagRecords, lagSeconds: o.lagSeconds })),
        total,
      }));
    }
    if (offsets.length === 0) return line(`group ${group} has no committed offsets${str(p, 'topic') ? ` on ${str(p, 'topic')}` : ''}`);
    const rows = offsets.map((o) => [o.topic, o.partition, o.offset, o.endOffset, o.lagRecords, secs(o.lagSeconds)]);
    await line(table(['TOPIC', 'PARTITION', 'COMMITTED', 'END', 'LAG', 'LAG_SECONDS'], [...rows, ['total', '', '', '', total.lagRecords, secs(total.lagSeconds)]]));
  },
};

const secs = (s: number): string => (s === 0 ? '0' : s.toFixed(s < 10 ? 2 : 0));
