// chicago topic create|list|describe|alter|delete
import { limits } from '../../runtime/limits.js';
import { type Command, type Parsed, clientOptions, int, str } from '../args.js';
import { UsageError } from '../errors.js';
import { type Http, enc, httpFrom, wantsJson } from '../http.js';
import { line, table } from '../output.js';

export interface PartitionView {
  partition: number;
  startOffset: number;
  endOffset: number;
  bytes: number;
  leader: string;
  replicas: string[];
}
interface Retention { ms?: number; bytes?: number; untilGroup?: string }
/** `partitions` is a count in listings and the per-partition detail in a describe. */
export interface TopicView { name: string; partitions: number | PartitionView[]; replicas: number; retention?: Retention }

const partitionCount = (t: TopicView) => (Array.isArray(t.partitions) ? t.partitions.length : t.partitions);

function retentionText(r: Retention | undefined): string {
  const parts = [
    r?.ms !== undefined ? `ms=${r.ms}` : '',
    r?.bytes !== undefined ? `bytes=${r.bytes}` : '',
    r?.untilGroup !== undefined ? `untilGroup=${r.untilGroup}` : '',
  ].filter(Boolean);
  return parts.length > 0 ? parts.join(',') : '-';
}

/** The topic with per-partition offsets, leader and replicas. */
export async function describeTopic(http: Http, name: string): Promise<TopicView & { partitions: PartitionView[] }> {
  const t = await http.must<TopicView>('GET', `/v1/topics/${enc(name)}`);
  return { ...t, partitions: Array.isArray(t.partitions) ? t.partitions : [] };
}

/** the retention flags `create` and `alter` share */
const retentionOptions = {
  'retention-ms': { type: 'string' },
  'retention-bytes': { type: 'string' },
  'retention-until-group': { type: 'string' },
} as const;

const create: Command = {
  name: 'topic create',
  synopsis: 'NAME [--partitions P] [--replicas N] [--retention-ms MS] [--retention-bytes B] [--retention-until-group G] [--json]',
  summary: 'create a topic; the node picks defaults for what is left out',
  options: {
    ...clientOptions,
    partitions: { type: 'string' },
    replicas: { type: 'string' },
    ...retentionOptions,
  },
  args: [1, 1],
  async run(p) {
    const body = {
      name: p.positionals[0],
      partitions: int(p, 'partitions', 1, limits.topicPartitionsMax),
      replicas: int(p, 'replicas', 1),
      retention: {
        ms: int(p, 'retention-ms', 1),
        bytes: int(p, 'retention-bytes', 1),
        untilGroup: str(p, 'retention-until-group'),
      },
    };
    const t = await httpFrom(p).must<TopicView>('POST', '/v1/topics', { body });
    if (wantsJson(p)) await line(JSON.stringify(t));
    else await line(`created topic ${t.name} partitions=${partitionCount(t)} replicas=${t.replicas}`);
  },
};

const list: Command = {
  name: 'topic list',
  synopsis: '[--json]',
  summary: 'list topics',
  options: clientOptions,
  args: [0, 0],
  async run(p) {
    const { topics } = await httpFrom(p).must<{ topics: TopicView[] }>('GET', '/v1/topics');
    if (wantsJson(p)) return line(JSON.stringify({ topics }));
    const rows = topics.map((t) => [t.name, partitionCount(t), t.replicas, retentionText(t.retention)]);
    await line(table(['NAME', 'PARTITIONS', 'REPLICAS', 'RETENTION'], rows));
  },
};

const describe: Command = {
  name: 'topic describe',
  synopsis: 'NAME [--json]',
  summary: "show a topic and each partition's start/end offset, bytes, leader and replicas",
  options: clientOptions,
  args: [1, 1],
  async run(p) {
    const t = await describeTopic(httpFrom(p), p.positionals[0]);
    if (wantsJson(p)) return line(JSON.stringify(t));
    await line(`topic ${t.name} partitions=${t.partitions.length} replicas=${t.replicas} retention=${retentionText(t.retention)}`);
    const rows = t.partitions.map((x) => [x.partition, x.startOffset, x.endOffset, x.bytes, x.leader ?? '-', x.replicas.join(',')]);
    await line(table(['PARTITION', 'START', 'END', 'BYTES', 'LEADER', 'REPLICAS'], rows));
  },
};

const del: Command = {
  name: 'topic delete',
  synopsis: 'NAME',
  summary: 'delete a topic and its records',
  options: { url: clientOptions.url, token: clientOptions.token, 'token-file': clientOptions['token-file'], ca: clientOptions.ca, timeout: clientOptions.timeout },
  args: [1, 1],
  async run(p) {
    await httpFrom(p).json('DELETE', `/v1/topics/${enc(p.positionals[0])}`);
    await line(`deleted topic ${p.positionals[0]}`);
  },
};

/** `none` removes a rule; a value sets it; a flag left out keeps it. */
function ruleChange(p: Parsed, flagName: string, parse: (v: string) => number | string): number | string | null | undefined {
  const v = str(p, flagName);
  if (v === undefined) return undefined;
  return v === 'none' ? null : parse(v);
}

const alter: Command = {
  name: 'topic alter',
  synopsis: 'NAME [--partitions N] [--retention-ms MS|none] [--retention-bytes B|none] [--retention-until-group G|none] [--json]',
  summary: "add partitions or change a topic's retention: a value sets a rule, none removes it, a flag left out keeps it",
  details: [
    'Records the new rules allow to go are removed by the next maintenance pass (maintenanceIntervalMs).',
    '--partitions N raises the count (fewer is refused, as in Kafka): the new partitions start empty, consumer',
    'groups get them at their next heartbeat, and a key may now map to another partition than its older records.',
  ].join('\n'),
  options: {
    ...clientOptions,
    partitions: { type: 'string' },
    ...retentionOptions,
  },
  args: [1, 1],
  async run(p) {
    const retention = {
      ms: ruleChange(p, 'retention-ms', () => int(p, 'retention-ms', 1)!),
      bytes: ruleChange(p, 'retention-bytes', () => int(p, 'retention-bytes', 1)!),
      untilGroup: ruleChange(p, 'retention-until-group', (v) => v),
    };
    const partitions = int(p, 'partitions', 1);
    const retains = Object.values(retention).some((v) => v !== undefined);
    if (!retains && partitions === undefined) throw new UsageError('topic alter: nothing to change (give --partitions, --retention-ms, --retention-bytes or --retention-until-group)', p.command);
    const body = { ...(retains ? { retention } : {}), ...(partitions !== undefined ? { partitions } : {}) };
    const t = await httpFrom(p).must<TopicView>('PATCH', `/v1/topics/${enc(p.positionals[0])}`, { body });
    if (wantsJson(p)) await line(JSON.stringify(t));
    else await line(`altered topic ${t.name} retention=${retentionText(t.retention)}${partitions !== undefined ? ` partitions=${partitionCount(t)}` : ''}`);
  },
};

export const topicCommands = [create, list, describe, alter, del];
