// chicago status, chicago group offsets
import type { GroupOffset, NodeStatus } from '../../node/api.js';
import { type Command, clientOptions, str } from '../args.js';
import { enc, httpFrom, wantsJson } from '../http.js';
import { line, table } from '../output.js';


export const status: Command = {
  name: 'status',
  synopsis: '[--json]',
  summary: 'show the nodes, their state, and each partition with its leader and replicas',
  options: clientOptions,
  args: [0, 0],
  async run(p) {
    const s = await httpFrom(p).must<NodeStatus>('GET', '/v1/status');
    if (wantsJson(p)) return line(JSON.stringify(s));
    await line(`node ${s.nodeId} state=${s.state} version=${s.version} workers=${s.workers} sync=${s.syncPolicy}`);
    await line('');
    await line(table(['NODE', 'STATE', 'URL'], s.nodes.map((n) => [n.id, n.state, n.url])));
    await line('');
    const rows = s.partitions.map((x) => [x.id, x.leader ?? '-', x.replicas.join(','), x.isr.join(','), x.epoch, x.role, x.seq]);
    await line(table(['PARTITION', 'LEADER', 'REPLICAS', 'IN-SYNC', 'EPOCH', 'HERE', 'SEQ'], rows));
  },
};

export const groupOffsets: Command = {
  name: 'group offsets',
  synopsis: 'GROUP [--topic T] [--json]',
  summary: "show a consumer group's committed offsets and its lag in records and seconds",
  options: { ...clientOptions, topic: { type: 'string' } },
  args: [1, 1],
  async run(p) {
    const path = `/v1/groups/${enc(p.positionals[0])}/offsets`;
    const { offsets } = await httpFrom(p).must<{ offsets: GroupOffset[] }>('GET', path, { query: { topic: str(p, 'topic') } });
    if (wantsJson(p)) return line(JSON.stringify({ offsets }));
    const rows = offsets.map((o) => [o.topic, o.partition, o.offset, o.endOffset, o.lagRecords, o.lagSeconds]);
    await line(table(['TOPIC', 'PARTITION', 'COMMITTED', 'END', 'LAG', 'LAG_SECONDS'], rows));
  },
};
