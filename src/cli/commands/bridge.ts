// chicago bridge, chicago kafka-tail, chicago group lag: the Kafka bridge (docs/bridge.md) and the
// two ways to watch it: what arrived in Kafka (by task/host header) and how far behind it is.
import type { GroupOffset } from '../../protocol/api.js';
import { type Parsed, flag, int, list, str } from '../args.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { line, table } from '../output.js';

export async function bridge(p: Parsed): Promise<void> {
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
    // metrics.port held by another process: as for a node's port
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new CliError(EXIT.inUse, `chicago bridge: cannot serve metrics: ${(e as Error).message}`);
    if (code === 'EADDRNOTAVAIL') throw new CliError(EXIT.config, `chicago bridge: metrics.host is not an address of this host: ${(e as Error).message}`);
    throw e;
  }
}

export async function kafkaTail(p: Parsed): Promise<void> {
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
}

function parseIdle(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text);
  if (!m) throw new UsageError(`kafka-tail: --idle: not a duration: '${text}'`, 'kafka-tail');
  return Math.round(Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000 }[m[2] ?? 'ms'] ?? 1));
}

export async function groupLag(p: Parsed): Promise<void> {
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
}

const secs = (s: number): string => (s === 0 ? '0' : s.toFixed(s < 10 ? 2 : 0));
