// Every command of `chicago`: its name, usage, flags and help text. This module is all a run loads
// up front; a command's implementation (commands/*.ts and what it imports) loads when it runs, so
// `chicago kv get` does not pay for the agent, the guard, the bridge or the server.
import { type Command, clientOptions, int, str } from './args.js';

/** where `chicago agent status` looks for an agent's status port */
export const DEFAULT_AGENT_URL = 'http://127.0.0.1:9464';

// every client option but --json, for commands whose output has no JSON form
const { json: _json, ...nodeOptions } = clientOptions;

/** the retention flags `topic create` and `topic alter` share */
const retentionOptions = {
  'retention-ms': { type: 'string' },
  'retention-bytes': { type: 'string' },
  'retention-until-group': { type: 'string' },
} as const;

/** the flags of the guard commands that read or write its decisions */
const storeOptions = { ...clientOptions, topic: { type: 'string' }, keyspace: { type: 'string' } } as const;

const server: Command = {
  name: 'server',
  synopsis: '[--config FILE] [--data-dir DIR] [--host H] [--port P] [--node-id ID] [--etcd ENDPOINTS] [--insecure]',
  summary: 'run a node; without --etcd it is a single-node cluster, with it it joins the cluster in that etcd',
  options: {
    config: { type: 'string' },
    'data-dir': { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    'node-id': { type: 'string' },
    etcd: { type: 'string' },
    insecure: { type: 'boolean' },
  },
  args: [0, 0],
  async run(p) {
    // the node pulls in RocksDB and uWS, which the client commands never need
    const { runServer } = await import('../server/main.js');
    await runServer({
      config: str(p, 'config'),
      dataDir: str(p, 'data-dir'),
      host: str(p, 'host'),
      port: int(p, 'port', 0, 65535),
      nodeId: str(p, 'node-id'),
      etcd: str(p, 'etcd'),
      insecure: p.values.insecure === true ? true : undefined,
    });
  },
};

/** bench parses its own flags (they depend on the scenario); it only needs SCENARIO here (main.ts) */
export const bench: Command = {
  name: 'bench',
  synopsis: 'SCENARIO [--rate R] [--duration S] [--json FILE] ...',
  summary: 'open-loop load against a node; SCENARIO is kv-put, kv-get, produce, produce-tail, idle, noop or cluster-… (chicago bench --help)',
  options: {},
  args: [1, Infinity],
  async run(p) {
    const { runBench } = await import('../../bench/cli.js');
    await runBench(p.positionals[0], p.positionals.slice(1));
  },
};

const kvPut: Command = {
  name: 'kv put',
  synopsis: 'KEYSPACE KEY [VALUE] [--ttl SECONDS] [--acks all|one] [--json]',
  summary: 'write a value (read from stdin when VALUE is left out); prints version and replicas',
  options: { ...clientOptions, ttl: { type: 'string' }, acks: { type: 'string' } },
  args: [2, 3],
  run: async (p) => (await import('./commands/kv.js')).put(p),
};

const kvGet: Command = {
  name: 'kv get',
  synopsis: 'KEYSPACE KEY [--raw]',
  summary: 'print the value and a newline (--raw: the stored bytes only); exit 1 when the key is absent',
  options: { ...nodeOptions, raw: { type: 'boolean' } },
  args: [2, 2],
  run: async (p) => (await import('./commands/kv.js')).get(p),
};

const kvDel: Command = {
  name: 'kv del',
  synopsis: 'KEYSPACE KEY [--acks all|one] [--json]',
  summary: 'delete a key',
  options: { ...clientOptions, acks: { type: 'string' } },
  args: [2, 2],
  run: async (p) => (await import('./commands/kv.js')).del(p),
};

const kvScan: Command = {
  name: 'kv scan',
  synopsis: 'KEYSPACE [--prefix P] [--prefix-encoding base64] [--after KEY] [--after-encoding base64] [--limit N] [--json]',
  summary: 'list keys and values in key order, one "KEY<TAB>VALUE" line each (default limit 1000); backslash and control characters escaped (\\\\ \\t \\n \\u{XXXX}), keys and values that are not UTF-8 byte by byte (\\xNN); --after and --prefix take keys as stored, or as base64 with --after-encoding/--prefix-encoding base64: --json gives exact keys and `next` (with `nextEncoding` base64 when it is not UTF-8: pass it as --after-encoding)',
  options: {
    ...clientOptions,
    prefix: { type: 'string' },
    'prefix-encoding': { type: 'string' },
    after: { type: 'string' },
    'after-encoding': { type: 'string' },
    limit: { type: 'string' },
  },
  args: [1, 1],
  run: async (p) => (await import('./commands/kv.js')).scan(p),
};

const topicCreate: Command = {
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
  run: async (p) => (await import('./commands/topic.js')).create(p),
};

const topicList: Command = {
  name: 'topic list',
  synopsis: '[--json]',
  summary: 'list topics',
  options: clientOptions,
  args: [0, 0],
  run: async (p) => (await import('./commands/topic.js')).list(p),
};

const topicDescribe: Command = {
  name: 'topic describe',
  synopsis: 'NAME [--json]',
  summary: "show a topic and each partition's start/end offset, bytes, leader and replicas",
  options: clientOptions,
  args: [1, 1],
  run: async (p) => (await import('./commands/topic.js')).describe(p),
};

const topicDelete: Command = {
  name: 'topic delete',
  synopsis: 'NAME',
  summary: 'delete a topic and its records',
  options: nodeOptions,
  args: [1, 1],
  run: async (p) => (await import('./commands/topic.js')).del(p),
};

const topicAlter: Command = {
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
  run: async (p) => (await import('./commands/topic.js')).alter(p),
};

const produce: Command = {
  name: 'produce',
  synopsis:
    'TOPIC [--key K | --key-separator SEP] [--acks all|one|none] [--partition P] [--header K=V]... ' +
    '[--batch-records N] [--batch-bytes B] [--linger-ms MS]',
  summary: 'send one record per stdin line; with --key-separator each line is KEY SEP VALUE; summary on stderr',
  details: [
    'Lines end at LF (a CR before it is dropped) and are sent as the bytes they are: a key or value that',
    'is not UTF-8 travels base64 with its keyEncoding/valueEncoding flag, and tail --format value prints',
    'it back byte for byte.',
  ].join('\n'),
  options: {
    ...nodeOptions,
    key: { type: 'string' },
    'key-separator': { type: 'string' },
    acks: { type: 'string' },
    partition: { type: 'string' },
    header: { type: 'string', multiple: true },
    'batch-records': { type: 'string' },
    'batch-bytes': { type: 'string' },
    'linger-ms': { type: 'string' },
  },
  args: [1, 1],
  run: async (p) => (await import('./commands/produce.js')).produce(p),
};

const tail: Command = {
  name: 'tail',
  synopsis:
    'TOPIC [--from-beginning | --from-end | --offset N | --offset -N | --since TIME] [--partition P] [--max N] [--group G] [--follow] [--where|--header H=V] [--grep RE] [--format json|value|FORMAT]',
  summary: 'print records as JSON lines; with --group, commit what was printed',
  details: [
    'Each line is {"partition","offset","timestamp","key","value","headers"}; timestamp is ms since the epoch;',
    'a key or value that is not UTF-8 is base64 with "keyEncoding"/"valueEncoding":"base64" beside it, as',
    'the HTTP API gives it (--format value, %k and %s print its bytes).',
    "Starts at the group's committed offset with --group, else at the beginning of each partition.",
    '--offset -N starts N records before the end of each partition (kcat\'s -o -N).',
    'TIME is an ISO date, an age (30s, 5m, 1h, 2d) or ms since the epoch.',
    '--where HEADER=VALUE (repeatable; --header is the same, as in kcat habits) and --grep REGEX (on the',
    'value) print only matching records, every --where/--header having to match; --max',
    'counts printed records. --format value prints values only; FORMAT (kcat -f style): %t topic, %p',
    'partition, %o offset, %T timestamp, %k key, %s value, %h headers k=v,…, %S value bytes, %%, \\n, \\t.',
    'Without --follow it prints what exists and exits; with it, it waits for new records on every',
    'partition until interrupted, and rides out a node restart (it says so on stderr and resumes at the',
    'next offset). --max N stops after N records.',
  ].join('\n'),
  options: {
    ...nodeOptions,
    'from-beginning': { type: 'boolean' },
    'from-end': { type: 'boolean' },
    offset: { type: 'string' },
    since: { type: 'string' },
    partition: { type: 'string' },
    max: { type: 'string' },
    group: { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
    where: { type: 'string', multiple: true },
    header: { type: 'string', multiple: true },
    grep: { type: 'string' },
    format: { type: 'string' },
  },
  args: [1, 1],
  run: async (p) => (await import('./commands/tail.js')).tail(p),
};

const status: Command = {
  name: 'status',
  synopsis: '[--json]',
  summary: 'show the nodes, their state, and each partition with its leader and replicas',
  options: clientOptions,
  args: [0, 0],
  run: async (p) => (await import('./commands/status.js')).status(p),
};

const groupOffsets: Command = {
  name: 'group offsets',
  synopsis: 'GROUP [--topic T] [--json]',
  summary: "show a consumer group's committed offsets and its lag in records and seconds",
  options: { ...clientOptions, topic: { type: 'string' } },
  args: [1, 1],
  run: async (p) => (await import('./commands/status.js')).groupOffsets(p),
};

const groupMembers: Command = {
  name: 'group members',
  synopsis: 'GROUP [--json]',
  summary: "show a consumer group's live members, its generation and which partitions each reads",
  options: clientOptions,
  args: [1, 1],
  run: async (p) => (await import('./commands/status.js')).groupMembers(p),
};

const groupReset: Command = {
  name: 'group reset',
  synopsis: 'GROUP TOPIC (--to-earliest | --to-latest | --to-offset N | --to-time TIME | --shift-by N) [--partition P] [--dry-run] [--json]',
  summary: "move a group's committed offsets on a topic; refused while the group has live members",
  details: [
    'Offsets are clamped to what each partition holds (its start and end offsets). --to-time starts at',
    'the first record at or after TIME (an ISO date, an age such as 1h, or ms since the epoch).',
    'With --partition P only that partition moves: a seek of one partition.',
  ].join('\n'),
  options: {
    ...clientOptions,
    'to-earliest': { type: 'boolean' },
    'to-latest': { type: 'boolean' },
    'to-offset': { type: 'string' },
    'to-time': { type: 'string' },
    'shift-by': { type: 'string' },
    partition: { type: 'string' },
    'dry-run': { type: 'boolean' },
  },
  args: [2, 2],
  run: async (p) => (await import('./commands/group-reset.js')).groupReset(p),
};

const groupDelete: Command = {
  name: 'group delete',
  synopsis: 'GROUP [--json]',
  summary: "remove a consumer group's committed offsets; refused while the group has live members",
  details: [
    'A member that joins afterwards starts each partition from its configured start (its `from`),',
    'not from the old offsets. Exit 2 with GROUP_NOT_EMPTY while members are live (chicago group',
    'members GROUP); exit 1 when the group has neither members nor offsets.',
  ].join('\n'),
  options: clientOptions,
  args: [1, 1],
  run: async (p) => (await import('./commands/group-delete.js')).groupDelete(p),
};

const bridge: Command = {
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
  run: async (p) => (await import('./commands/bridge.js')).bridge(p),
};

const kafkaTail: Command = {
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
  run: async (p) => (await import('./commands/bridge.js')).kafkaTail(p),
};

const groupLag: Command = {
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
  run: async (p) => (await import('./commands/bridge.js')).groupLag(p),
};

const tokenCreate: Command = {
  name: 'token create',
  synopsis: '--scopes S[,S...] [--name NAME] [--expires DURATION|TIME] [--json]',
  summary: 'make a new access token: prints the token once, and the entry to add under security.tokens in the node config',
  details: [
    'Scopes: * (everything), kv:read:<keyspace glob>, kv:write:<glob>, topic:read|write|admin:<topic glob>,',
    'group:<group glob>, cluster:read (status, metrics), cluster:admin, cluster:peer (node links),',
    'agent:exec:<host glob>. Globs take * and ?; an action may be * (kv:*:app-*).',
    'The node keeps only the salted scrypt hash; the token itself is shown here and nowhere else.',
    'Add the entry to the config of every node and send them SIGHUP (or restart them).',
    '--expires 30d (from now) or an ISO-8601 time.',
  ].join('\n'),
  options: { scopes: { type: 'string' }, name: { type: 'string' }, expires: { type: 'string' }, json: { type: 'boolean' } },
  args: [0, 0],
  run: async (p) => (await import('./commands/token.js')).tokenCreate(p),
};

const agent: Command = {
  name: 'agent',
  synopsis: '--config FILE',
  summary: 'run the host agent: follow log files and ship them to a node exactly once (docs/agent.md)',
  options: { config: { type: 'string' } },
  args: [0, 0],
  run: async (p) => (await import('./commands/agent.js')).agent(p),
};

const agentRun: Command = {
  name: 'agent run',
  synopsis: 'HOST SCRIPT [ARGS...] [--wait DUR] [--expire DUR] [--results-topic T]',
  summary: "run an allowlisted script on a host's agent; streams its output and exits with its exit code",
  details: [
    'Needs the agent:exec:<host> scope (and topic:read on the results topic) when the node has tokens.',
    'Put -- before script arguments that start with a dash: chicago agent run web1 jstack -- -l',
    '--wait DUR     how long to wait for the agent to take the command (default 10s)',
    '--expire DUR   the agent runs the command only if it reads it within this long (default: --wait)',
    '--results-topic T   where the agent writes results (its scripts.resultsTopic, default agent.scripts)',
    "Exit codes: the script's own; 128+N killed by signal N; 124 timed out; 125 expired before the",
    'agent read it; 126 refused (not allowlisted, sha256 mismatch, remote scripts off); 75 busy or',
    'interrupted by an agent restart; 69 no agent answered; 2/3 as for every command.',
  ].join('\n'),
  options: {
    ...nodeOptions,
    wait: { type: 'string' },
    expire: { type: 'string' },
    'results-topic': { type: 'string' },
  },
  args: [2, Infinity],
  run: async (p) => (await import('./commands/agent-run.js')).agentRun(p),
};

const hosts: Command = {
  name: 'hosts',
  synopsis: '[--keyspace KS] [--json]',
  summary: 'list the hosts whose agents report health: last report, ship lag, spool, alerts firing',
  details: "A host is listed while its agent's hosts/<host> key lives (a TTL of about three health intervals);\n'alive' is no when its last report is older than two intervals.",
  options: { ...clientOptions, keyspace: { type: 'string' } },
  args: [0, 0],
  run: async (p) => (await import('./commands/hosts.js')).hosts(p),
};

const alerts: Command = {
  name: 'alerts',
  synopsis: '[--host H] [--keyspace KS] [--json]',
  summary: 'list the alerts firing now on every host (or one)',
  options: { ...clientOptions, keyspace: { type: 'string' }, host: { type: 'string' } },
  args: [0, 0],
  run: async (p) => (await import('./commands/hosts.js')).alerts(p),
};

const agentStatus: Command = {
  name: 'agent status',
  synopsis: '[--agent URL] [--json]',
  summary: "show a running agent's tasks, spool, ship lag, health runs and firing alerts (from its status port)",
  details: `--agent URL   the agent's status.listen address (default ${DEFAULT_AGENT_URL})`,
  options: { agent: { type: 'string' }, timeout: clientOptions.timeout, json: clientOptions.json },
  args: [0, 0],
  run: async (p) => (await import('./commands/hosts.js')).agentStatus(p),
};

const guard: Command = {
  name: 'guard',
  synopsis: '--config FILE',
  summary: 'run the front-end guard: read access logs from topics, ban flooding or attacking IPs in nftables/nginx (docs/guard.md)',
  options: { config: { type: 'string' } },
  args: [0, 0],
  run: async (p) => (await import('./commands/guard.js')).guard(p),
};

const guardBan: Command = {
  name: 'guard ban',
  synopsis: 'IP|CIDR [--duration 4h] [--reason TEXT] [--force]',
  summary: 'ban an address or prefix now; running guards enforce it within milliseconds (a prefix shorter than /8, or /16 for IPv6, needs --force)',
  options: { ...storeOptions, duration: { type: 'string' }, reason: { type: 'string' }, force: { type: 'boolean' } },
  args: [1, 1],
  run: async (p) => (await import('./commands/guard.js')).ban(p),
};

const guardUnban: Command = {
  name: 'guard unban',
  synopsis: 'IP|CIDR',
  summary: 'lift a ban now (says so when none was in force; exit 0 either way)',
  options: storeOptions,
  args: [1, 1],
  run: async (p) => (await import('./commands/guard.js')).unban(p),
};

const guardList: Command = {
  name: 'guard list',
  synopsis: '[--json]',
  summary: 'the decisions in force (KV blocklist)',
  options: storeOptions,
  args: [0, 0],
  run: async (p) => (await import('./commands/guard.js')).list(p),
};

/** in the order `chicago help` lists them */
export const commands: Command[] = [
  server, kvPut, kvGet, kvDel, kvScan, topicCreate, topicList, topicDescribe, topicAlter, topicDelete, produce, tail,
  groupOffsets, groupMembers, groupReset, groupDelete, groupLag, status, bridge, kafkaTail, tokenCreate, agent, agentRun,
  agentStatus, hosts, alerts, guard, guardBan, guardUnban, guardList, bench,
];
