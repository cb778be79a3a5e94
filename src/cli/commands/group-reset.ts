// chicago group reset: move a consumer group's committed offsets on a topic (Kafka's
// kafka-consumer-groups --reset-offsets). Refused while the group has live members, who would
// commit over it; --dry-run shows the plan.
import type { GroupDescription, GroupOffset } from '../../protocol/api.js';
import { type Parsed, flag, int, parseTime, str } from '../args.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { line, table } from '../output.js';
import { describeTopic } from './topic.js';

type Target = { to: 'earliest' | 'latest' } | { offset: number } | { sinceMs: number } | { shift: number };

function targetOf(p: Parsed): Target {
  const given = (['to-earliest', 'to-latest', 'to-offset', 'to-time', 'shift-by'] as const).filter((f) => p.values[f] !== undefined);
  if (given.length !== 1) throw new UsageError('give one of --to-earliest, --to-latest, --to-offset N, --to-time TIME, --shift-by N', p.command);
  switch (given[0]) {
    case 'to-earliest': return { to: 'earliest' };
    case 'to-latest': return { to: 'latest' };
    case 'to-offset': return { offset: int(p, 'to-offset')! };
    case 'shift-by': return { shift: int(p, 'shift-by', -Number.MAX_SAFE_INTEGER)! };
    case 'to-time': {
      const t = str(p, 'to-time')!;
      const sinceMs = parseTime(t, Date.now());
      if (sinceMs === undefined) throw new UsageError(`--to-time: not a time: '${t}'`, p.command);
      return { sinceMs };
    }
  }
}

export async function groupReset(p: Parsed): Promise<void> {
  const [group, topic] = p.positionals;
  const target = targetOf(p);
  const only = int(p, 'partition');
  const http = httpFrom(p);
  const members = await http.must<GroupDescription>('GET', `/v1/groups/${enc(group)}/members`);
  if (members.members.length > 0) {
    throw new CliError(EXIT.server, `group ${group} has ${members.members.length} live member(s) (chicago group members ${group}): stop them first, or they commit over the reset`);
  }
  const info = await describeTopic(http, topic);
  const parts = info.partitions.filter((x) => only === undefined || x.partition === only);
  if (parts.length === 0) throw new CliError(EXIT.server, `error PARTITION_NOT_FOUND: topic ${topic} has no partition ${only}`);
  const { offsets } = await http.must<{ offsets: GroupOffset[] }>('GET', `/v1/groups/${enc(group)}/offsets`, { query: { topic } });
  const committed = new Map(offsets.filter((o) => o.topic === topic).map((o) => [o.partition, o.offset]));
  const plan: Array<{ partition: number; from: number | null; to: number }> = [];
  for (const x of parts) {
    const from = committed.get(x.partition);
    let to: number;
    if ('to' in target) to = target.to === 'earliest' ? x.startOffset : x.endOffset;
    else if ('offset' in target) to = target.offset;
    else if ('shift' in target) to = (from ?? x.startOffset) + target.shift;
    else {
      const res = await http.must<{ records: Array<{ offset: number }>; nextOffset: number }>('GET', `/v1/topics/${enc(topic)}/records`, {
        query: { partition: x.partition, since: target.sinceMs, maxRecords: 1 },
      });
      to = res.records[0]?.offset ?? res.nextOffset;
    }
    plan.push({ partition: x.partition, from: from ?? null, to: Math.min(Math.max(to, x.startOffset), x.endOffset) });
  }
  if (!flag(p, 'dry-run')) {
    for (const s of plan) await http.json('POST', `/v1/groups/${enc(group)}/offsets`, { body: { topic, partition: s.partition, offset: s.to } });
  }
  if (wantsJson(p)) return line(JSON.stringify({ group, topic, dryRun: flag(p, 'dry-run'), partitions: plan }));
  await line(table(['PARTITION', 'COMMITTED', 'NEW'], plan.map((s) => [s.partition, s.from ?? '-', s.to])));
  if (flag(p, 'dry-run')) await line('(dry run: nothing committed)');
}
