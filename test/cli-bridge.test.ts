// The bridge's CLI surface against a real node (the launcher) and a real Kafka (scripts/kafka.sh):
// `chicago bridge --config`, `chicago kafka-tail`, `chicago group lag`, and the in-process bridge
// of `chicago server` (a `bridge:` config section) on the node's /metrics, /v1/status and
// `chicago status`.
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createChicagoTopic, getJson, postJson, produceChicago, waitUntil, writeBridgeConfig } from './helpers/bridge.js';
import { consumeAll, ensureKafka, uniqueName } from './helpers/kafka.js';
import { type NodeHandle, runCli, spawnCli, startNode } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

const TASKS = ['web', 'db'];

describe('chicago bridge / kafka-tail / group lag (real node, real Kafka)', () => {
  let brokers: string[];
  let node: NodeHandle;

  beforeAll(async () => {
    [brokers, node] = await Promise.all([ensureKafka(), startNode()]);
  });
  afterAll(async () => {
    await node?.stop();
  });

  it('documents the three commands in help', async () => {
    const all = await runCli(['help']);
    expect(all.code).toBe(0);
    for (const c of ['chicago bridge --config FILE', 'chicago kafka-tail --brokers B --topic T', 'chicago group lag GROUP']) expect(all.stdout).toContain(c);
    const b = await runCli(['help', 'bridge']);
    expect(b.stdout).toMatch(/SIGTERM/);
    const k = await runCli(['kafka-tail', '--help']);
    expect(k.code).toBe(0);
    expect(k.stdout).toMatch(/--task, --host/);
    expect(k.stdout).toMatch(/read_committed/);
    const g = await runCli(['help', 'group', 'lag']);
    expect(g.stdout).toMatch(/LAG_SECONDS/);
    // wrong command lines are usage errors (64), a bad config a config error (78)
    expect((await runCli(['bridge'])).code).toBe(64);
    expect((await runCli(['kafka-tail', '--topic', 't'])).code).toBe(64);
    expect((await runCli(['kafka-tail', '--brokers', 'nope', '--topic', 't'])).code).toBe(64);
    expect((await runCli(['group', 'lag'])).code).toBe(64);
    const bad = await writeBridgeConfig({ kafka: { brokers }, mappings: [{ chicago: 'a', kafka: 'b' }], maxBytes: 5 });
    const r = await runCli(['bridge', '--config', bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/limits\.maxRequestBytes/);
    // a token file it cannot read is a config error naming the key, not a crash
    const noToken = await writeBridgeConfig({ chicago: { url: node.url, tokenFile: '/nonexistent/token' }, kafka: { brokers }, mappings: [{ chicago: 'a', kafka: 'b' }] });
    const t = await runCli(['bridge', '--config', noToken]);
    expect([t.code, t.stderr]).toEqual([78, 'chicago bridge: bridge config: chicago.tokenFile: cannot read the token file /nonexistent/token: ENOENT\n']);
    // a metrics port another process holds: 69, as for a node's port
    const taken = await writeBridgeConfig({ chicago: { url: node.url }, kafka: { brokers }, mappings: [{ chicago: 'a', kafka: 'b' }], metrics: { port: node.port } });
    const m = await runCli(['bridge', '--config', taken]);
    expect([m.code, m.stderr]).toEqual([69, expect.stringMatching(/^chicago bridge: cannot serve metrics: .*EADDRINUSE/)]);
  });

  it('bridge --config delivers; group lag shows the lag; kafka-tail filters by task; SIGTERM stops cleanly', async () => {
    const id = uniqueName('cli');
    const topic = `cli-${id}`;
    const group = `g-${id}`;
    await createChicagoTopic(node.url, topic, 2);
    const N = 400;
    await produceChicago(node.url, topic, Array.from({ length: N }, (_, i) => ({
      key: `k${i % 5}`, value: `v${i}`, headers: { task: TASKS[i % 2]!, host: `h${i % 3}` },
    })));
    // before the bridge ran: the group has committed nothing; commit 0 so the lag is N
    for (const p of [0, 1]) await postJson(`${node.url}/v1/groups/${group}/offsets`, { topic, partition: p, offset: 0 });
    const before = await runCli(['group', 'lag', group, '--topic', topic, '--url', node.url, '--json']);
    expect(before.code, before.stderr).toBe(0);
    const lagBefore = JSON.parse(before.stdout);
    expect(lagBefore.total.lagRecords).toBe(N);
    expect(lagBefore.total.lagSeconds).toBeGreaterThan(0);
    expect(lagBefore.partitions).toHaveLength(2);
    const text = await runCli(['group', 'lag', group, '--url', node.url]);
    expect(text.stdout).toMatch(/^TOPIC\s+PARTITION\s+COMMITTED\s+END\s+LAG\s+LAG_SECONDS/m);
    expect(text.stdout).toMatch(new RegExp(`^total\\s+${N}\\s`, 'm'));

    const cfg = await writeBridgeConfig({
      chicago: { url: node.url },
      kafka: { brokers, createTopics: { partitions: 2 } },
      group,
      mappings: [{ chicago: topic, kafka: `k-${id}` }],
      limits: { fetchWaitMs: 100 },
      lag: { intervalMs: 200 },
    });
    const b = spawnCli(['bridge', '--config', cfg], { timeoutMs: 120_000 });
    try {
      await b.stdout.waitFor(/bridge positions recovered from Kafka/, 60_000);
      expect((await consumeAll(brokers, `k-${id}`, { count: N, timeoutMs: 60_000 })).length).toBe(N);
      await waitUntil('group caught up', async () => {
        const r = await runCli(['group', 'lag', group, '--topic', topic, '--url', node.url, '--json']);
        return JSON.parse(r.stdout).total.lagRecords === 0;
      }, 20_000, 300);
      const after = JSON.parse((await runCli(['group', 'lag', group, '--url', node.url, '--json'])).stdout);
      expect(after.total).toEqual({ lagRecords: 0, lagSeconds: 0 });
    } finally {
      b.proc.kill('SIGTERM');
    }
    const exit = await b.done;
    expect(exit.code, exit.stderr).toBe(0);
    expect(exit.stdout).toMatch(/"msg":"bridge stopped"/);

    // kafka-tail: only web records of host h1, as JSON lines. --limit ends it at the last one it
    // should print instead of an idle wait; the records it must skip come between those (tasks and
    // hosts alternate), so a filter that lets one through still prints it within the limit.
    const want = Array.from({ length: N }, (_, i) => i).filter((i) => i % 2 === 0 && i % 3 === 1);
    const kt = await runCli(['kafka-tail', '--brokers', brokers.join(','), '--topic', `k-${id}`, '--task', 'web', '--host', 'h1', '--from-beginning', '--limit', String(want.length), '--idle', String(slow(1500))], { timeoutMs: 60_000 });
    expect(kt.code, kt.stderr).toBe(0);
    const rows = kt.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => r.value).sort()).toEqual(want.map((i) => `v${i}`).sort());
    for (const r of rows) expect(r.headers).toMatchObject({ task: 'web', host: 'h1', 'chicago-topic': topic });
    // --idle counts from the start, joining the group included: a deadline, so it scales
    const limited = await runCli(['kafka-tail', '--brokers', brokers.join(','), '--topic', `k-${id}`, '--header', 'task=db', '--from-beginning', '--limit', '3', '--idle', String(slow(2000))]);
    expect(limited.stdout.trim().split('\n')).toHaveLength(3);
  }, slow(180_000));

  it('kafka-tail --follow prints records as they arrive and ends on SIGTERM', async () => {
    const id = uniqueName('follow');
    const kt = spawnCli(['kafka-tail', '--brokers', brokers.join(','), '--topic', `k-${id}`, '--task', 'web', '--follow'], { timeoutMs: 120_000 });
    // the topic appears when the first record is written; the consumer picks it up on its refresh
    const { kafkaClient } = await import('./helpers/kafka.js');
    const producer = kafkaClient(brokers).producer();
    await producer.connect();
    try {
      await waitUntil('a followed record', async () => {
        await producer.send({ topic: `k-${id}`, messages: [{ value: 'skip', headers: { task: 'db' } }, { value: 'hello', headers: { task: 'web' } }] });
        return kt.stdout.lines().length > 0;
      }, 60_000, 250);
    } finally {
      await producer.disconnect();
      kt.proc.kill('SIGTERM');
    }
    const r = await kt.done;
    expect(r.code, r.stderr).toBe(0);
    const vals = r.stdout.trim().split('\n').map((l) => JSON.parse(l).value);
    expect(vals.every((v) => v === 'hello')).toBe(true);
  }, slow(150_000));
});

describe('in-process bridge (`bridge:` section of the node config)', () => {
  let brokers: string[];
  let node: NodeHandle | undefined;
  const id = uniqueName('inproc');
  const topic = `inproc-${id}`;
  const group = `g-${id}`;

  beforeAll(async () => {
    brokers = await ensureKafka();
  });
  afterAll(async () => {
    await node?.stop();
  });

  it('rejects a bad bridge section at start (exit 78)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-cfg-'));
    const file = path.join(dir, 'node.json');
    await writeFile(file, JSON.stringify({ bridge: { kafka: { brokers }, mappings: [{ chicago: 'x', kafka: 'y' }], mode: 'twice' } }));
    const r = await runCli(['server', '--config', file, '--port', '0', '--data-dir', path.join(dir, 'data')]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/bridge section.*\/mode/s);
    // what only the bridge's start finds (an unreadable token file) stops the node too, with 78
    await writeFile(file, JSON.stringify({ bridge: { chicago: { tokenFile: path.join(dir, 'missing.token') }, kafka: { brokers }, mappings: [{ chicago: 'x', kafka: 'y' }] } }));
    const t = await runCli(['server', '--config', file, '--port', '0', '--data-dir', path.join(dir, 'data2')], { timeoutMs: 30_000 });
    expect([t.code, t.stderr]).toEqual([78, expect.stringContaining('bridge section: bridge config: chicago.tokenFile: cannot read the token file')]);
  });

  it('delivers, shows its metrics on the node /metrics and its lag in /v1/status and chicago status', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-cfg-'));
    const file = path.join(dir, 'node.yaml');
    await writeFile(file, [
      'bridge:',
      `  group: ${group}`,
      `  kafka: { brokers: [${brokers.map((b) => `"${b}"`).join(', ')}], createTopics: { partitions: 1 } }`,
      `  mappings: [{ chicago: "inproc-*", kafka: "k-\${topic}" }]`,
      '  limits: { fetchWaitMs: 100 }',
      '  lag: { intervalMs: 200 }',
      '',
    ].join('\n'));
    node = await startNode({ args: ['--config', file] });
    await createChicagoTopic(node.url, topic, 2, { untilGroup: group });
    await produceChicago(node.url, topic, Array.from({ length: 300 }, (_, i) => ({ value: `r${i}`, headers: { task: 'web' } })));
    // the mapping has no chicago.url: the bridge reads the node it runs in
    const got = await consumeAll(brokers, `k-${topic}`, { count: 300, timeoutMs: 60_000 });
    expect(got).toHaveLength(300);

    await waitUntil('metrics', async () => {
      const m = await (await fetch(`${node!.url}/metrics`)).text();
      return /chicago_bridge_delivered_records_total\{topic="k-inproc-[^"]+",group="[^"]+"\} 300/.test(m)
        && /chicago_bridge_lag_records\{topic="inproc-[^"]+",partition="1",group="[^"]+"\} 0/.test(m)
        && /^chicago_requests_total/m.test(m); // the node's own metrics are still there
    }, 20_000, 300);
    const s = await getJson(`${node.url}/v1/status`);
    expect(s.nodeId).toBeTruthy();
    expect(s.bridge).toMatchObject({ group, mode: 'exactly-once', state: 'running', kafka: brokers });
    expect(s.bridge.partitions).toHaveLength(2);
    expect(s.bridge.total.lagRecords).toBe(0);

    // chicago status prints the bridge section the node added to its status
    const st = await runCli(['status', '--url', node.url]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`^bridge group=${group} mode=exactly-once state=running .*lag=0 `, 'm'));
    expect(st.stdout).toMatch(/^BRIDGED TOPIC\s+PARTITION\s+NEXT\s+END\s+LAG\s+LAG_SECONDS\s+ALERT/m);
    const lag = JSON.parse((await runCli(['group', 'lag', group, '--url', node.url, '--json'])).stdout);
    expect(lag.total.lagRecords).toBe(0);

    // SIGTERM: the bridge stops first, then the node, exit 0
    const exit = await node.stop();
    node = undefined;
    expect(exit.code).toBe(0);
  }, slow(180_000));
});
