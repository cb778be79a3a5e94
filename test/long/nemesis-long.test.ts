// The nemesis at length: a 4-node cluster with a real etcd under a seeded random schedule of
// kill -9/restart, SIGSTOP/SIGCONT, link cuts, joins and leaves while the workload runs; then the
// checker reads the whole history. Writes its summary to bench/results/nemesis-long.json.
//
// Knobs (env): NEMESIS_DURATION_S (600), NEMESIS_SEED (random, printed), NEMESIS_NODES (4),
// NEMESIS_PARTITIONS (16), NEMESIS_REPLICAS (3), NEMESIS_FAULT_MS (3000), NEMESIS_RECOVER_MS (1500),
// NEMESIS_CLIENTS (8), NEMESIS_KINDS (kill9,pause,partition,join,leave).
import { expect, it } from 'vitest';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { check, History, now, readFinal, startWorkload } from '../helpers/checker.js';
import { startCluster } from '../helpers/cluster.js';
import { FAULT_KINDS, formatEvents, randomSchedule, runNemesis, type FaultKind } from '../helpers/nemesis.js';
import { repoRoot } from '../helpers/launcher.js';

const num = (name: string, dflt: number) => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got '${v}'`);
  return n;
};
const durationS = num('NEMESIS_DURATION_S', 600);
const seed = num('NEMESIS_SEED', Math.floor(Math.random() * 2 ** 31));
const nodes = num('NEMESIS_NODES', 4);
const partitions = num('NEMESIS_PARTITIONS', 16);
const replicas = num('NEMESIS_REPLICAS', 3);
const faultMs = num('NEMESIS_FAULT_MS', 3000);
const recoverMs = num('NEMESIS_RECOVER_MS', 1500);
const clients = num('NEMESIS_CLIENTS', 8);
const kinds = (process.env.NEMESIS_KINDS ?? FAULT_KINDS.join(',')).split(',').map((k) => k.trim()) as FaultKind[];
for (const k of kinds) if (!FAULT_KINDS.includes(k)) throw new Error(`NEMESIS_KINDS: unknown fault '${k}' (known: ${FAULT_KINDS.join(', ')})`);

const resultsDir = path.join(repoRoot, 'bench/results');
const topicPartitions = 8;

it(`survives ${durationS} s of faults (seed ${seed})`, async () => {
  console.log(`nemesis-long: seed ${seed}, ${durationS} s, ${nodes} nodes, faults ${kinds.join(',')}`);
  const startedAt = new Date().toISOString();
  const cluster = await startCluster({ nodes, partitions, replicas, readyTimeoutMs: 120_000 });
  try {
    const first = cluster.targets()[0];
    const created = await fetch(`${first.url}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'nem', partitions: topicPartitions, replicas }),
    });
    expect(created.status, await created.text()).toBe(201);

    const history = new History();
    const origin = now();
    const workload = startWorkload(history, { targets: () => cluster.targets(), clients, topic: 'nem', topicPartitions, keys: 64 });
    const stopAt = AbortSignal.timeout(durationS * 1000);
    const nemesis = await (async () => {
      try {
        await new Promise((r) => setTimeout(r, 2000));
        return await runNemesis(cluster, randomSchedule(seed, 100_000, kinds), {
          faultMs,
          recoverMs,
          readyTimeoutMs: 60_000,
          minNodes: Math.max(replicas, nodes - 1),
          maxNodes: nodes + 1,
          seed,
          signal: stopAt,
          onEvent: (e) => console.log(formatEvents([e], origin)),
        });
      } finally {
        await workload.stop();
        cluster.heal();
      }
    })();
    const runS = (now() - origin) / 1000;
    const replicaDigests = await cluster.waitConverged(120_000);
    const final = await readFinal(cluster.targets(), workload, topicPartitions);
    const report = check(history.ops, { ...final, replicas: replicaDigests }, { expectedReplicas: replicas });
    const faults: Record<string, number> = {};
    for (const e of nemesis.events) if (e.phase === 'inject') faults[e.kind] = (faults[e.kind] ?? 0) + 1;

    const summary = {
      test: 'nemesis-long',
      ok: report.ok && nemesis.problems.length === 0,
      seed,
      startedAt,
      durationS: Math.round(runS),
      nodes,
      partitions,
      replicas,
      clients,
      cycles: nemesis.cycles,
      faults,
      problems: nemesis.problems,
      violations: report.counts,
      violationSamples: report.violations.slice(0, 50).map((v) => ({ kind: v.kind, message: v.message })),
      history: report.stats,
      errors: report.errors,
      errorSeconds: report.errorSeconds,
      node: process.version,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
    };
    await mkdir(resultsDir, { recursive: true });
    await writeFile(path.join(resultsDir, 'nemesis-long.json'), JSON.stringify(summary, null, 2) + '\n');
    await writeFile(path.join(resultsDir, 'nemesis-long.log'), `${report.text}\n--- nemesis (seed ${seed})\n${formatEvents(nemesis.events, origin)}\n`);
    console.log(`${report.text}\nerrors: ${JSON.stringify(report.errors)}\nseconds with each error: ${JSON.stringify(report.errorSeconds)}\nsummary: bench/results/nemesis-long.json (the same fault schedule: NEMESIS_SEED=${seed})`);
    expect(nemesis.problems, report.text).toEqual([]);
    expect(report.violations.map((v) => `${v.kind}: ${v.message}`), report.text).toEqual([]);
    expect(nemesis.cycles).toBeGreaterThan(0);
  } finally {
    await cluster.teardown();
  }
}, (durationS + 600) * 1000);
