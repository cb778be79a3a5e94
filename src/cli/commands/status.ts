// chicago status, chicago group offsets, chicago group members
import type { BridgeStatus } from '../../bridge/in-process.js';
import type { GroupDescription, GroupOffset, NodeStatus } from '../../protocol/api.js';
import { type Parsed, str } from '../args.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { line, table } from '../output.js';

export async function status(p: Parsed): Promise<void> {
  const s = await httpFrom(p).must<NodeStatus>('GET', '/v1/status');
  if (wantsJson(p)) return line(JSON.stringify(s));
  await line(`node ${s.nodeId} state=${s.state} version=${s.version} workers=${s.workers} sync=${s.syncPolicy}`);
  await line('');
  await line(table(['NODE', 'STATE', 'URL'], s.nodes.map((n) => [n.id, n.state, n.url])));
  if (s.rebalance) {
    const r = s.rebalance;
    await line('');
    await line(r.moving === 0
      ? `rebalance: idle (${r.completed} moves in the last minute, ${r.snapshotBytesSent} bytes copied from this node)`
      : `rebalance: ${r.moving} partitions catching up, ETA ${r.etaSeconds === null ? 'unknown' : `${r.etaSeconds}s`}, ` +
        `${r.snapshotBytesSent} bytes copied from this node, ~${r.bytesLeftEstimate ?? '?'} bytes left: ` +
        r.catchingUp.map((c) => `p${c.partition}←${c.nodes.join('+')}`).join(' '));
  }
  await line('');
  const rows = s.partitions.map((x) => [x.id, x.leader ?? '-', x.replicas.join(','), x.isr.join(','), x.epoch, x.role, x.seq]);
  await line(table(['PARTITION', 'LEADER', 'REPLICAS', 'IN-SYNC', 'EPOCH', 'HERE', 'SEQ'], rows));
  // a node running the Kafka bridge in-process adds `bridge` (src/bridge/in-process.ts)
  const b = (s as NodeStatus & { bridge?: BridgeStatus }).bridge;
  if (b) {
    await line('');
    await line(`bridge group=${b.group} mode=${b.mode} state=${b.state} kafka=${b.kafka.join(',')} lag=${b.total.lagRecords} lagSeconds=${b.total.lagSeconds.toFixed(2)}${b.total.alert ? ' ALERT' : ''}`);
    const brows = b.partitions.map((x) => [x.topic, x.partition, x.next, x.endOffset, x.lagRecords, x.lagSeconds.toFixed(2), x.alert ? 'yes' : 'no']);
    if (brows.length > 0) await line(table(['BRIDGED TOPIC', 'PARTITION', 'NEXT', 'END', 'LAG', 'LAG_SECONDS', 'ALERT'], brows));
  }
}

export async function groupOffsets(p: Parsed): Promise<void> {
  const path = `/v1/groups/${enc(p.positionals[0])}/offsets`;
  const answer = await httpFrom(p).must<{ group: string; offsets: GroupOffset[] }>('GET', path, { query: { topic: str(p, 'topic') } });
  if (wantsJson(p)) return line(JSON.stringify(answer));
  const { offsets } = answer;
  const rows = offsets.map((o) => [o.topic, o.partition, o.offset, o.endOffset, o.lagRecords, o.lagSeconds]);
  await line(table(['TOPIC', 'PARTITION', 'COMMITTED', 'END', 'LAG', 'LAG_SECONDS'], rows));
}

export async function groupMembers(p: Parsed): Promise<void> {
  const d = await httpFrom(p).must<GroupDescription>('GET', `/v1/groups/${enc(p.positionals[0])}/members`);
  return wantsJson(p) ? line(JSON.stringify(d)) : printMembers(d);
}

async function printMembers(d: GroupDescription): Promise<void> {
  const parts = (l: Array<{ topic: string; partition: number }>) => l.map((x) => `${x.topic}/${x.partition}`).join(' ') || '-';
  await line(`group ${d.group} generation=${d.generation} members=${d.members.length} topics=${d.topics.join(',') || '-'}`);
  await line(table(['MEMBER', 'SESSION_MS', 'SEEN_MS_AGO', 'ASSIGNED', 'REVOKING'],
    d.members.map((m) => [m.member, m.sessionTimeoutMs, m.lastSeenMsAgo, parts(m.assigned), parts(m.revoking)])));
  if (d.unassigned.length > 0) await line(`unassigned: ${parts(d.unassigned)}`);
}
