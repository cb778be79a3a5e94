// Several `chicago guard` processes as members of one consumer group, against a real node on
// loopback: each input partition is read by exactly one guard; `kill -9` of one moves its
// partitions to the others within about a second, the flooding addresses in them still get banned,
// and no decision is made twice (a second guard extends, never duplicates). The decisions are
// observed where every enforcer reads them: the decisions topic, and each guard's log.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ChicagoClient, type Producer, type TailStream } from '../src/client/index.js';
import { recordPartition } from '../src/runtime/hash.js';
import { decodeRecord, type DecisionRecord } from '../src/guard/store.js';
import { cliPath, killOnExit, type NodeHandle, repoRoot, startNode } from './helpers/launcher.js';
import { createChicagoTopic, endOffsets, getJson, waitUntil } from './helpers/bridge.js';
import { slow } from './helpers/slow.js';

const TOPIC = 'gg-access';
const PARTITIONS = 6;
const GROUP = 'guard.gg-test';
const DECISIONS = 'gg.decisions';
const SESSION_MS = 600;

interface LogLine { msg: string; time: number; target?: string; partitions?: string[]; member?: string }
interface GuardProc { id: string; proc: ChildProcess; log: LogLine[]; owned: Set<string>; exited: Promise<unknown> }

let node: NodeHandle;
let client: ChicagoClient;
let producer: Producer;
let decisionTail: TailStream;
const decisionRecords: DecisionRecord[] = [];
const guards: GuardProc[] = [];
let dir: string;

async function startGuard(id: string): Promise<GuardProc> {
  const config = path.join(dir, `${id}.yaml`);
  await writeFile(config, [
    `node: { url: ${node.url} }`,
    `guardId: ${id}`,
    `group: ${GROUP}`,
    `membership: { sessionTimeoutMs: ${SESSION_MS}, commitIntervalMs: 200 }`,
    'inputs:',
    `  - { topic: ${TOPIC}, format: nginx, from: earliest }`,
    'crs: { enabled: false }',
    'scenarios:',
    // 20 at once, 5/s sustained; the flood below sends 50/s per address; a flooder alerts again
    // 1 s after each overflow, and an alert 5 s or more after its ban extends it
    '  - { name: http-flood, capacity: 20, leakMs: 200, blackholeMs: 1000 }',
    '  - { name: http-prefix-flood, enabled: false }',
    `decisions: { topic: ${DECISIONS}, keyspace: gg-blocklist }`,
    'logLevel: info',
  ].join('\n'));
  const proc = spawn(process.execPath, [cliPath, 'guard', '--config', config], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(proc);
  const g: GuardProc = { id, proc, log: [], owned: new Set(), exited: new Promise((r) => proc.once('close', r)) };
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let l: LogLine;
      try {
        l = JSON.parse(text) as LogLine;
      } catch {
        continue;
      }
      g.log.push(l);
      if (l.msg === 'partitions assigned') l.partitions!.forEach((p) => g.owned.add(p));
      if (l.msg === 'partitions revoked') l.partitions!.forEach((p) => g.owned.delete(p));
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => process.stderr.write(`[${id}] ${c}`));
  process.once('exit', () => proc.kill('SIGKILL'));
  guards.push(g);
  return g;
}

function line(ip: string): string {
  return JSON.stringify({
    msec: (Date.now() / 1000).toFixed(3), remote_addr: ip, request_method: 'GET', request_uri: '/index.html',
    server_protocol: 'HTTP/1.1', status: '200', request_time: '0.001', http_user_agent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0',
    http_referer: '-', host: 'shop.example', body_bytes_sent: '512', connection_requests: '1',
  });
}

const utf8 = new TextEncoder();
const partitionOf = (ip: string) => recordPartition(utf8.encode(ip), PARTITIONS);

/** `perPartition` addresses in each partition, each in its own /24, from `from` on */
function addresses(perPartition: number, thirdOctet: number): string[][] {
  const out: string[][] = Array.from({ length: PARTITIONS }, () => []);
  for (let i = 1; i < 255 * 200 && out.some((l) => l.length < perPartition); i++) {
    const ip = `198.18.${thirdOctet + Math.floor(i / 254)}.${1 + (i % 254)}`;
    const l = out[partitionOf(ip)];
    if (l.length < perPartition) l.push(ip);
  }
  return out;
}

async function flood(ips: string[], each: number): Promise<void> {
  await Promise.all(ips.flatMap((ip) => Array.from({ length: each }, () => producer.send(TOPIC, { key: ip, value: line(ip) }))));
}

const key = (p: number) => `${TOPIC}/${p}`;
const bans = (gs: GuardProc[]) => gs.flatMap((g) => g.log.filter((l) => l.msg === 'decision ban').map((l) => ({ guard: g.id, target: l.target!, time: l.time })));

/** every partition owned by exactly one of `gs` (by their own account) */
function ownedOnce(gs: GuardProc[]): boolean {
  const all = gs.flatMap((g) => [...g.owned]);
  return all.length === PARTITIONS && new Set(all).size === PARTITIONS;
}

beforeAll(async () => {
  node = await startNode();
  await createChicagoTopic(node.url, TOPIC, PARTITIONS);
  client = await ChicagoClient.connect({ url: node.url });
  producer = client.producer({ lingerMs: 2 });
  dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-guard-group-'));
}, slow(30_000));

afterAll(async () => {
  for (const g of guards) g.proc.kill('SIGKILL');
  await decisionTail?.return?.();
  await producer?.close().catch(() => undefined);
  client?.close();
  await node?.stop();
});

describe('guards sharing partitions as one consumer group', () => {
  it('one owner per partition; kill -9 moves a guard\'s partitions within about a second; its flooders are still banned, none twice', async () => {
    const [g1, g2, g3] = await Promise.all(['gg-1', 'gg-2', 'gg-3'].map((id) => startGuard(id)));
    // the node's coordinator grants nothing for its hold time after it starts (3 s)
    await waitUntil('3 guards own 2 partitions each', () => ownedOnce([g1, g2, g3]) && [g1, g2, g3].every((g) => g.owned.size === 2), 15_000, 20);
    // the coordinator's view agrees: three members, each partition exactly once, nothing unassigned
    const desc = await client.groups.members(GROUP);
    expect(desc.members).toHaveLength(3);
    expect(desc.unassigned).toEqual([]);
    const coordinated = desc.members.flatMap((m) => m.assigned.map((a) => key(a.partition))).sort();
    expect(coordinated).toEqual(Array.from({ length: PARTITIONS }, (_, p) => key(p)));
    // (the member id of a guard is in its latest assignment: a guard whose session lapsed joins again under a new one)
    expect(new Set(desc.members.map((m) => m.member))).toEqual(new Set([g1, g2, g3].map((g) => g.log.findLast((l) => l.msg === 'partitions assigned')!.member)));

    decisionTail = client.tail(DECISIONS, 0, { from: 'earliest' });
    void (async () => {
      for await (const rec of decisionTail) {
        const r = decodeRecord(rec.value);
        if (r) decisionRecords.push(r);
      }
    })().catch(() => undefined);

    // wave A: two flooding addresses per partition, all banned by their partition's owner
    const waveA = addresses(2, 20);
    await flood(waveA.flat(), 30);
    await waitUntil('wave A banned', () => new Set(bans(guards).map((b) => b.target)).size === waveA.flat().length, 10_000, 20);
    for (const g of [g1, g2, g3]) {
      const mine = waveA.flatMap((ips, p) => (g.owned.has(key(p)) ? ips : []));
      expect(bans([g]).map((b) => b.target).sort()).toEqual(mine.sort());
    }

    const waveAEnds = await endOffsets(node.url, TOPIC);
    // wave A keeps flooding throughout (bounded): whoever reads it after the kill must extend, not ban again
    let flooding = true;
    const floodA = (async () => {
      for (let round = 0; flooding && round < 300; round++) {
        await flood(waveA.flat(), 5);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    // the committed offsets trail the reading by commitIntervalMs: wait until they pass wave A's first flood
    await waitUntil('wave A\'s first flood committed', async () => {
      const { offsets } = (await getJson(`${node.url}/v1/groups/${GROUP}/offsets?topic=${TOPIC}`)) as { offsets: Array<{ partition: number; offset: number }> };
      return [...waveAEnds].every(([p, end]) => (offsets.find((o) => o.partition === p)?.offset ?? 0) >= end);
    }, 10_000, 20);

    const victim = g2;
    const moved = [...victim.owned].sort();
    const survivors = [g1, g3];
    const killedAt = Date.now();
    victim.proc.kill('SIGKILL');
    await victim.exited;
    // wave B starts at the kill: new flooders everywhere, the victim's partitions included
    const waveB = addresses(2, 120);
    await flood(waveB.flat(), 30);

    await waitUntil('the victim\'s partitions owned by the survivors', () => ownedOnce(survivors), 5_000, 5);
    const ownedMs = Date.now() - killedAt;
    let since = killedAt;
    const assignedAt = (p: string) => Math.min(...survivors.flatMap((g) => g.log.filter((l) => l.msg === 'partitions assigned' && l.partitions!.includes(p) && l.time >= since).map((l) => l.time)));
    const moveMs = moved.map((p) => assignedAt(p) - killedAt);
    console.log(`kill -9 → the victim's partitions ${moved.join(', ')} assigned to the survivors after ${moveMs.join(', ')} ms (seen by the test after ${ownedMs} ms; session ${SESSION_MS} ms)`);
    // not scaled for a slow machine: about three sessions, or the coordinator's 3 s hold, is the failure
    // (measured 510–760 ms with this file alone on a loaded 2-core box, up to 1,060 ms beside five other files)
    expect(Math.max(...moveMs)).toBeLessThan(2_000);

    const after = await client.groups.members(GROUP);
    expect(after.members).toHaveLength(2);
    expect(after.unassigned).toEqual([]);
    expect(after.members.flatMap((m) => m.assigned.map((a) => key(a.partition))).sort()).toEqual(Array.from({ length: PARTITIONS }, (_, p) => key(p)));

    // wave B's flooders in the victim's partitions are banned by whichever survivor took them
    await waitUntil('wave B banned', () => {
      const banned = new Set(bans(survivors).map((b) => b.target));
      return waveB.flat().every((ip) => banned.has(ip));
    }, 10_000, 20);
    const movedB = waveB.flatMap((ips, p) => (moved.includes(key(p)) ? ips : []));
    const banOfB = new Map(bans(survivors).map((b) => [b.target, b]));
    for (const ip of movedB) expect(survivors.find((g) => g.owned.has(key(partitionOf(ip))))!.id).toBe(banOfB.get(ip)!.guard);
    console.log(`kill -9 → wave B flooders in the moved partitions banned after ${movedB.map((ip) => banOfB.get(ip)!.time - killedAt).join(', ')} ms`);

    // wave A went on flooding the moved partitions: their new owner reads it too, and extends at most
    const movedA = waveA.flatMap((ips, p) => (moved.includes(key(p)) ? ips : []));
    const extendedByNewOwner = () => survivors.some((g) => g.log.some((l) => l.time > killedAt && l.msg === 'decision extend' && movedA.includes(l.target!)));
    await waitUntil('a moved wave A flooder extended by its new owner', extendedByNewOwner, 12_000, 50);
    flooding = false;
    await floodA;
    await new Promise((r) => setTimeout(r, slow(300)));

    // no decision twice: one "decision ban" per address over all guards, and one decision (one
    // createdMs) per target in the stored records, whoever wrote them
    const all = bans(guards);
    const perTarget = new Map<string, number>();
    for (const b of all) perTarget.set(b.target, (perTarget.get(b.target) ?? 0) + 1);
    expect([...perTarget].filter(([, n]) => n > 1)).toEqual([]);
    expect(new Set(perTarget.keys())).toEqual(new Set([...waveA.flat(), ...waveB.flat()]));
    const created = new Map<string, Set<number>>();
    for (const r of decisionRecords) if (r.action === 'ban') created.set(r.decision.target, (created.get(r.decision.target) ?? new Set()).add(r.decision.createdMs));
    expect([...created].filter(([, s]) => s.size > 1)).toEqual([]);
    const writers = new Set(decisionRecords.filter((r) => movedA.includes(r.decision.target)).map((r) => r.by));
    expect(writers.has(victim.id) && writers.size > 1).toBe(true);

    // a guard joining takes its share from the others: they stop reading it and drop the
    // addresses counted from it before the newcomer starts (one owner at a time)
    const g4 = await startGuard('gg-4');
    const joinedAt = Date.now();
    await waitUntil('the newcomer owns its share', () => ownedOnce([g1, g3, g4]) && g4.owned.size === 2, 10_000, 10);
    console.log(`join → the newcomer reads its share after ${Date.now() - joinedAt} ms (process start included)`);
    for (const p of g4.owned) {
      const assigned = g4.log.findLast((l) => l.msg === 'partitions assigned' && l.partitions!.includes(p))!;
      // (more than one when a survivor's session lapsed on a loaded machine: it stops everything, then gets its share back)
      const revoked = survivors.flatMap((g) => g.log.filter((l) => l.msg === 'partitions revoked' && l.partitions!.includes(p) && l.time >= joinedAt && l.time <= assigned.time)) as Array<LogLine & { released: number }>;
      expect(revoked.length).toBeGreaterThanOrEqual(1);
      expect(Math.max(...revoked.map((l) => l.released))).toBeGreaterThan(0);
    }

    // SIGTERM: the guard commits and leaves; its partitions move without waiting for its session
    const leaving = [...g4.owned];
    const stoppedAt = Date.now();
    since = stoppedAt;
    g4.proc.kill('SIGTERM');
    await waitUntil('the leaver\'s partitions owned by the others', () => ownedOnce(survivors), 3_000, 5);
    const leaveMs = Math.max(...leaving.map((p) => assignedAt(p) - stoppedAt));
    console.log(`SIGTERM → the leaver's partitions assigned to the others after ${leaveMs} ms`);
    // a leave, not an expiry: well under one session
    expect(leaveMs).toBeLessThan(SESSION_MS);
    expect(await Promise.race([g4.exited.then(() => g4.proc.exitCode), new Promise((r) => setTimeout(() => r('running'), slow(3000)))])).toBe(0);
  }, slow(30_000));
});
