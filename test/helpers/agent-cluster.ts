// The agent shipping to a 3-node cluster while the leader of its partition is killed -9 (and
// restarted): the idempotent producer must carry exactly-once through the leader change.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { AgentProc } from './agent.js';
import { startWriter } from './agent.js';
import { agentDir, checkTask, kill9, linesOnDisk, readUntilComplete, runningAgent, type TaskCheck, topicLeader } from './agent-check.js';
import { type Cluster, startCluster } from './cluster.js';
import { slow } from './slow.js';

const TOPIC = 'agent-cluster';

export interface ClusterKillOptions {
  /** leader kills (each followed by a restart of the killed node) */
  cycles: number;
  rate: number;
  /** ms of shipping before the first kill and between restarts and the next kill */
  gapMs: number;
  /** kill -9 the agent too, right after every other leader kill */
  killAgent?: boolean;
  log?: (s: string) => void;
}

export interface ClusterKillResult { kills: string[]; agentKills: number; lines: number; seconds: number; checks: TaskCheck[] }

async function waitLeader(cluster: Cluster, not: string | undefined, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + slow(timeoutMs);
  for (;;) {
    for (const n of cluster.live()) {
      if (n.state !== 'running') continue;
      const l = await topicLeader(n.url, TOPIC, 0).catch(() => null);
      if (l && l !== not && cluster.node(l).state === 'running') return l;
    }
    if (Date.now() > deadline) throw new Error(`no new leader of ${TOPIC}/0 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function clusterKillRun(opts: ClusterKillOptions): Promise<ClusterKillResult> {
  const log = opts.log ?? (() => {});
  const started = Date.now();
  const cluster = await startCluster({ nodes: 3, partitions: 4, replicas: 3 });
  const agents: AgentProc[] = [];
  let dir: string | undefined;
  try {
    const first = cluster.nodes[0];
    const made = await fetch(`${first.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: TOPIC, partitions: 1 }) });
    if (!made.ok) throw new Error(`create ${TOPIC}: ${made.status} ${await made.text()}`);
    let leader = await waitLeader(cluster, undefined, 20_000);
    // the agent ships through a node that does not lead its partition: the node forwards
    const via = cluster.nodes.find((n) => n.id !== leader)!;
    const d = await agentDir('cluster', via.url, ['  - task: app', '    paths: [./logs/app.log]', `    topic: ${TOPIC}`].join('\n'));
    dir = d.dir;
    let agent = await runningAgent(d.config, agents);
    const total = Math.round(opts.rate * ((opts.cycles + 1) * opts.gapMs * 2.5) / 1000);
    const writer = startWriter(path.join(d.logs, 'app.log'), 'app', total, opts.rate);
    const kills: string[] = [];
    let agentKills = 0;
    for (let c = 0; c < opts.cycles; c++) {
      await new Promise((r) => setTimeout(r, opts.gapMs));
      leader = await waitLeader(cluster, undefined, 30_000);
      log(`cycle ${c}: kill -9 ${leader} (leader of ${TOPIC}/0; the agent ships via ${via.id})`);
      await cluster.kill9(leader);
      kills.push(leader);
      if (opts.killAgent && c % 2 === 1) {
        await kill9(agent);
        agentKills++;
        agent = await runningAgent(d.config, agents);
      }
      const next = await waitLeader(cluster, leader, 30_000);
      log(`cycle ${c}: new leader ${next}`);
      await new Promise((r) => setTimeout(r, opts.gapMs / 2));
      await cluster.restart(leader);
      // the restarted node must catch up before the next kill, or N=3 has fewer than 2 copies
      await cluster.waitReady(60_000);
    }
    await writer.done;
    const want = await linesOnDisk(d.logs, 'app.log', 'app');
    const records = await readUntilComplete(() => via.url, TOPIC, new Map([['app', want]]), 60_000);
    const checks = [checkTask(records, 'app', want)];
    agent.proc.kill('SIGTERM');
    await agent.exited;
    return { kills, agentKills, lines: want.size, seconds: (Date.now() - started) / 1000, checks };
  } finally {
    for (const a of agents) a.proc.kill('SIGKILL');
    await cluster.teardown();
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}
