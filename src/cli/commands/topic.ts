// chicago topic create|list|describe|alter|delete
import { limits } from '../../runtime/limits.js';
import { type Parsed, int, str } from '../args.js';
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

export async function create(p: Parsed): Promise<void> {
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
}

export async function list(p: Parsed): Promise<void> {
  const { topics } = await httpFrom(p).must<{ topics: TopicView[] }>('GET', '/v1/topics');
  if (wantsJson(p)) return line(JSON.stringify({ topics }));
  const rows = topics.map((t) => [t.name, partitionCount(t), t.replicas, retentionText(t.retention)]);
  await line(table(['NAME', 'PARTITIONS', 'REPLICAS', 'RETENTION'], rows));
}

export async function describe(p: Parsed): Promise<void> {
  const t = await describeTopic(httpFrom(p), p.positionals[0]);
  if (wantsJson(p)) return line(JSON.stringify(t));
  await line(`topic ${t.name} partitions=${t.partitions.length} replicas=${t.replicas} retention=${retentionText(t.retention)}`);
  const rows = t.partitions.map((x) => [x.partition, x.startOffset, x.endOffset, x.bytes, x.leader ?? '-', x.replicas.join(',')]);
  await line(table(['PARTITION', 'START', 'END', 'BYTES', 'LEADER', 'REPLICAS'], rows));
}

export async function del(p: Parsed): Promise<void> {
  await httpFrom(p).json('DELETE', `/v1/topics/${enc(p.positionals[0])}`);
  await line(`deleted topic ${p.positionals[0]}`);
}

/** `none` removes a rule; a value sets it; a flag left out keeps it. */
function ruleChange(p: Parsed, flagName: string, parse: (v: string) => number | string): number | string | null | undefined {
  const v = str(p, flagName);
  if (v === undefined) return undefined;
  return v === 'none' ? null : parse(v);
}

export async function alter(p: Parsed): Promise<void> {
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
}

