// Health and alerts against real components: a node, the agent process, a zombie made by a test
// process, a full tmpfs (mounted here), a CPU burner, init.d scripts, a Prometheus endpoint, a
// webhook that first answers 500; then `chicago hosts|alerts|agent status`, and the host's KV
// entry expiring after the agent is killed.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import http from 'node:http';
import { appendFile, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentProc, readTopic, startAgent } from './helpers/agent.js';
import { waitUntil } from './helpers/bridge.js';
import { alertSlackMs } from '../src/agent/alerts.js';
import { type CliResult, type NodeHandle, runCli, startNode } from './helpers/launcher.js';

const run = promisify(execFile);
const HOST = 'healthhost';

let node: NodeHandle;
let dir: string;
let disk: string;
let mounted = false;
let agent: AgentProc | undefined;
const children: ChildProcess[] = [];
const servers: http.Server[] = [];

/** webhook bodies in arrival order, with the status each got */
const hooks: Array<{ body: Record<string, unknown>; status: number }> = [];

function serve(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  servers.push(s);
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
}

function child(cmd: string, args: string[]): ChildProcess {
  const c = spawn(cmd, args, { stdio: 'ignore' });
  children.push(c);
  return c;
}

interface Health {
  host: string;
  zombies: { count: number; processes: Array<{ pid: number; comm: string; ppid: number; parentComm: string }> };
  disks: Array<{ path: string; usedPercent: number }>;
  apps: Array<{ name: string; up: number; pid?: number; cpuPercent?: number; rssBytes?: number; threads?: number; fds?: number; stats?: Record<string, number>; error?: string }>;
  services: Array<{ name: string; code: number; state: string }>;
  memory: { totalBytes: number };
  load: Record<string, number>;
  time: string;
}

async function latestHealth(): Promise<Health | undefined> {
  const recs = await readTopic(node.url, 'health').catch(() => []);
  const mine = recs.filter((r) => r.headers.host === HOST).sort((a, b) => Number(a.headers.seq) - Number(b.headers.seq));
  return mine.length ? (JSON.parse(mine[mine.length - 1].value) as Health) : undefined;
}

beforeAll(async () => {
  node = await startNode();
  dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-agent-health-'));
  disk = path.join(dir, 'disk');
  await mkdir(disk);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', disk]);
  mounted = true;
});

afterAll(async () => {
  agent?.proc.kill('SIGKILL');
  for (const c of children) c.kill('SIGKILL');
  for (const s of servers) s.closeAllConnections(), s.close();
  if (mounted) await run('umount', ['-l', disk]).catch(() => {});
  await node?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('agent health and alerts', () => {
  it('zombies with their parent, a CPU burner, app stats, init.d services, a full disk alert to a webhook and its clearing, hosts and alerts in KV', async () => {
    // a webhook that fails its first request: the first message must be retried
    const hookUrl = await serve((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => { body += c; });
      req.on('end', () => {
        const status = hooks.length === 0 ? 500 : 200;
        hooks.push({ body: JSON.parse(body) as Record<string, unknown>, status });
        res.writeHead(status).end();
      });
    });
    const promUrl = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('# TYPE app_queue_depth gauge\napp_queue_depth{queue="jobs"} 42\napp_up 1\n');
    });
    // init.d: one running service, one stopped (LSB status 3)
    const initd = path.join(dir, 'init.d');
    await mkdir(initd);
    await writeFile(path.join(initd, 'svc-ok'), '#!/bin/sh\n[ "$1" = status ] && exit 0\nexit 1\n');
    await writeFile(path.join(initd, 'svc-stopped'), '#!/bin/sh\n[ "$1" = status ] && { echo stopped; exit 3; }\nexit 1\n');
    await chmod(path.join(initd, 'svc-ok'), 0o755);
    await chmod(path.join(initd, 'svc-stopped'), 0o755);

    // a parent that never waits: sh forks `sleep 0.1` and becomes `sleep 120` (exec), which never reaps it
    const zparent = child('sh', ['-c', 'sleep 0.1 & exec sleep 120']);
    // a CPU burner, bounded in time; found by its pid file and by its command line
    const marker = `burn-marker-${process.pid}`;
    const burner = child(process.execPath, ['-e', 'const end = Date.now() + 120000; while (Date.now() < end) {}', marker]);
    await writeFile(path.join(dir, 'burner.pid'), String(burner.pid));

    await mkdir(path.join(dir, 'logs'));
    const appLog = path.join(dir, 'logs', 'app.log');
    await writeFile(appLog, 'started\n');
    const config = path.join(dir, 'agent.yaml');
    await writeFile(config, `
node: { url: ${node.url} }
host: ${HOST}
spool: { dir: ./spool, quotaBytes: 67108864, segmentBytes: 1048576 }
pollIntervalMs: 50
batch: { lingerMs: 5 }
retry: { minMs: 20, maxMs: 500 }
sources:
  - { task: app, paths: [./logs/app.log], topic: health-app-logs }
health:
  intervalMs: 500
  mounts: [${disk}]
  apps:
    - { name: burner, pidFile: ./burner.pid }
    - { name: burner-by-match, match: '${marker}' }
    - { name: web, prometheus: '${promUrl}/metrics' }
    - { name: cmd, command: ['${process.execPath}', '-e', 'console.log(JSON.stringify({ queue: { depth: 7 }, ok: true }))'] }
    - { name: gone, pid: 4000000 }
  services: { initd: all, initdDir: ./init.d, intervalMs: 1000, timeoutMs: 5000 }
alerts:
  rules:
    - { name: disk-full, when: 'disk.*.usedPercent > 90', for: 600ms, clear: 50, severity: critical }
    - { name: app-errors, when: 'log.errors.perMinute >= 3' }
  logPatterns:
    - { name: errors, task: app, regex: 'ERROR' }
  webhook: { url: '${hookUrl}/hook', timeoutMs: 2000, retry: { minMs: 100, maxMs: 1000 } }
status: { listen: '127.0.0.1:0' }
`);
    agent = startAgent(config);
    await agent.stdout.waitFor(/"msg":"agent running"/, 20_000);
    const statusLine = agent.stdout.lines().find((l) => l.includes('status listening'))!;
    const statusUrl = (JSON.parse(statusLine) as { status: string }).status;

    // zombies, apps, services in the health topic
    let h: Health | undefined;
    await waitUntil('a health record with the zombie, the burner busy and the stopped service', async () => {
      h = await latestHealth();
      const z = h?.zombies.processes.find((p) => p.ppid === zparent.pid);
      const b = h?.apps.find((a) => a.name === 'burner');
      return !!z && (b?.cpuPercent ?? 0) > 20 && (h?.services.length ?? 0) === 2;
    }, 20_000);
    const z = h!.zombies.processes.find((p) => p.ppid === zparent.pid)!;
    expect(z).toMatchObject({ comm: 'sleep', ppid: zparent.pid, parentComm: 'sleep' });
    expect(h!.zombies.count).toBeGreaterThanOrEqual(1);
    const app = (name: string) => h!.apps.find((a) => a.name === name)!;
    expect(app('burner')).toMatchObject({ up: 1, pid: burner.pid, threads: expect.any(Number), fds: expect.any(Number), restarts: 0 });
    expect(app('burner').rssBytes).toBeGreaterThan(1024 * 1024);
    expect(app('burner-by-match')).toMatchObject({ up: 1, pid: burner.pid });
    expect(app('web')).toMatchObject({ up: 1, stats: { 'app_queue_depth{queue="jobs"}': 42, app_up: 1 } });
    expect(app('cmd')).toMatchObject({ up: 1, stats: { 'queue.depth': 7, ok: 1 } });
    expect(app('gone')).toMatchObject({ up: 0 });
    expect(h!.services.map((s) => [s.name, s.code, s.state])).toEqual([['svc-ok', 0, 'running'], ['svc-stopped', 3, 'stopped']]);
    expect(h!.disks).toEqual([expect.objectContaining({ path: disk })]);
    expect(h!.disks[0].usedPercent).toBeLessThan(50);
    expect(h!.memory.totalBytes).toBeGreaterThan(0);

    // a restart: another process in the pid file counts once
    const burner2 = child(process.execPath, ['-e', 'setTimeout(() => {}, 120000)']);
    await writeFile(path.join(dir, 'burner.pid'), String(burner2.pid));
    await waitUntil('the restart counted', async () => {
      const b = (await latestHealth())?.apps.find((a) => a.name === 'burner');
      return b?.pid === burner2.pid;
    }, 10_000);
    expect((await latestHealth())!.apps.find((a) => a.name === 'burner')).toMatchObject({ up: 1, pid: burner2.pid, restarts: 1 });
    burner.kill('SIGKILL');

    // chicago hosts: this host, alive, in text and JSON (a report over two intervals old reads as not
    // alive: on a loaded machine one 500 ms interval may run late, so the next reports are waited for)
    type HostsJson = { hosts: Array<{ host: string; alive: boolean; ttlSeconds: number }> };
    let hostsOut: CliResult = { code: null, signal: null, stdout: '', stderr: '' };
    let hostsJson: HostsJson = { hosts: [] };
    const aliveRow = new RegExp(`^${HOST}\\s+yes\\s`, 'm');
    await waitUntil('chicago hosts shows the host alive', async () => {
      hostsOut = await runCli(['hosts', '--url', node.url]);
      const j = await runCli(['hosts', '--url', node.url, '--json']);
      hostsJson = j.code === 0 ? JSON.parse(j.stdout) as HostsJson : { hosts: [] };
      return hostsOut.code === 0 && aliveRow.test(hostsOut.stdout) && hostsJson.hosts[0]?.alive === true;
    }, 10_000);
    expect(hostsOut.code, hostsOut.stderr).toBe(0);
    expect(hostsOut.stdout).toMatch(aliveRow);
    expect(hostsJson.hosts).toEqual([expect.objectContaining({ host: HOST, alive: true, ttlSeconds: 2 })]);

    // fill the tmpfs: the disk alert fires after its `for:`, reaches the webhook after one 500
    await run('dd', ['if=/dev/zero', `of=${path.join(disk, 'fill')}`, 'bs=64k', 'count=64']).catch(() => {});
    const diskId = `disk-full[disk.${disk}.usedPercent]`;
    await waitUntil('the disk alert at the webhook', () => hooks.some((x) => x.body.id === diskId && x.body.state === 'firing' && x.status === 200), 20_000);
    const firing = hooks.filter((x) => x.body.id === diskId && x.body.state === 'firing');
    expect(firing.map((x) => x.status)).toEqual([500, 200]);
    expect(firing[1].body).toMatchObject({ host: HOST, rule: 'disk-full', field: `disk.${disk}.usedPercent`, op: '>', threshold: 90, severity: 'critical' });
    expect(firing[1].body.value as number).toBeGreaterThan(90);
    // for: 600ms, a sample up to the slack (a tenth of the 500 ms interval) early counting as on time
    expect((firing[1].body.atMs as number) - (firing[1].body.sinceMs as number)).toBeGreaterThanOrEqual(600 - alertSlackMs(500));

    // chicago alerts lists it
    await waitUntil('chicago alerts to list the disk alert', async () => (await runCli(['alerts', '--url', node.url])).stdout.includes(diskId), 10_000);
    const alertsOut = await runCli(['alerts', '--url', node.url, '--json']);
    expect(JSON.parse(alertsOut.stdout)).toEqual({ alerts: [expect.objectContaining({ host: HOST, id: diskId, rule: 'disk-full', severity: 'critical' })] });

    // the log-pattern rate: three ERROR lines in a minute
    await appendFile(appLog, 'x ERROR one\nx ERROR two\nok\nx ERROR three\n');
    await waitUntil('the log-pattern alert at the webhook', () => hooks.some((x) => x.body.id === 'app-errors' && x.body.state === 'firing'), 20_000);

    // the agent's status port
    const st = await runCli(['agent', 'status', '--agent', statusUrl]);
    expect(st.code, st.stderr).toBe(0);
    expect(st.stdout).toContain(`agent host=${HOST}`);
    expect(st.stdout).toMatch(/alerts firing: 2 \(webhook sent=\d+ failedAttempts=1 /);
    expect(st.stdout).toMatch(/^app\s+health-app-logs\s+5\s/m);
    const scrape = async () => (await fetch(`${statusUrl}/metrics`)).text();
    await waitUntil('the five app lines acknowledged', async () => /^chicago_agent_records_shipped_total\{task="app"\} 5$/m.test(await scrape()), 10_000);
    const metrics = await scrape();
    // the lines' own bytes (7 + 11 + 11 + 2 + 13), not their newlines
    expect(metrics).toMatch(/^chicago_agent_bytes_shipped_total\{task="app"\} 44$/m);
    expect(metrics).toMatch(/^chicago_agent_alerts_firing 2$/m);
    expect(metrics).toMatch(/^chicago_agent_lines_read_total\{task="app"\} 5$/m);
    expect(metrics).toMatch(/^chicago_agent_webhook_failed_attempts_total 1$/m);
    expect(metrics).toMatch(/^chicago_agent_health_run_seconds_count [1-9]/m);
    expect(metrics).toMatch(/^chicago_agent_ship_lag_seconds\{task="health"\} /m);

    // kill -9 and restart while the disk alert fires: it is not sent again, and it still resolves
    agent.proc.kill('SIGKILL');
    await agent.exited;
    const runsBefore = (await latestHealth())?.time;
    agent = startAgent(config);
    await agent.stdout.waitFor(/"msg":"agent running"/, 20_000);
    // four runs: without the kept state the alert would fire again on the third (its `for:` is 600 ms)
    await waitUntil('four health records from the restarted agent', async () => {
      const recs = await readTopic(node.url, 'health').catch(() => []);
      return recs.filter((r) => (JSON.parse(r.value) as Health).time > (runsBefore ?? '')).length >= 4;
    }, 15_000);
    const diskTransitions = async () => (await readTopic(node.url, 'alerts').catch(() => [])).filter((r) => r.headers.alert === diskId).map((r) => r.headers.state);
    expect(await diskTransitions()).toEqual(['firing']);
    expect(hooks.filter((x) => x.body.id === diskId && x.body.state === 'firing').length).toBe(2);

    // remove the file: the alert resolves (below the clear threshold), at the webhook and in KV
    await rm(path.join(disk, 'fill'));
    await waitUntil('the disk alert resolved at the webhook', () => hooks.some((x) => x.body.id === diskId && x.body.state === 'resolved'), 20_000);
    await waitUntil('chicago alerts without the disk alert', async () => !(await runCli(['alerts', '--url', node.url])).stdout.includes(diskId), 10_000);
    // the alerts topic holds both transitions
    await waitUntil('both transitions in the alerts topic', async () => {
      const recs = (await readTopic(node.url, 'alerts').catch(() => [])).filter((r) => r.headers.alert === diskId);
      return recs.map((r) => r.headers.state).join(',') === 'firing,resolved';
    }, 10_000);

    // killed: hosts/<host> expires with its TTL (about three intervals)
    agent.proc.kill('SIGKILL');
    await agent.exited;
    const killedAt = Date.now();
    await waitUntil('hosts/<host> to expire', async () => (await runCli(['kv', 'get', 'agent', `hosts/${HOST}`, '--url', node.url])).code === 1, 15_000);
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(500);
    expect((await runCli(['hosts', '--url', node.url])).stdout).not.toContain(HOST);
  });

  // the status port has no authentication: off loopback the agent says so (the node refuses to start there without tokens)
  it('status.listen off loopback logs a warning; on loopback none', async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), 'chicago-agent-status-'));
    const start = async (listen: string) => {
      const config = path.join(d, `agent-${listen.replace(/\W/g, '')}.yaml`);
      await writeFile(config, `node: { url: ${node.url} }\nspool: { dir: ./spool-${listen.replace(/\W/g, '')} }\nsources: [{ task: s, paths: [./none.log], topic: status-warn }]\nstatus: { listen: "${listen}" }\n`);
      const a = startAgent(config);
      try {
        await a.stdout.waitFor(/"msg":"status listening"/, 30_000);
        // a warning comes right after that line
        await new Promise((r) => setTimeout(r, 500));
        return a.stdout.lines();
      } finally {
        a.proc.kill('SIGTERM');
        await a.exited;
      }
    };
    const open = await start('0.0.0.0:0');
    const warning = open.find((l) => l.includes('is not a loopback address'));
    expect(warning, open.join('\n')).toBeDefined();
    expect(JSON.parse(warning!)).toMatchObject({ level: 40, host: '0.0.0.0' });
    const loopback = await start('127.0.0.1:0');
    expect(loopback.some((l) => l.includes('is not a loopback address'))).toBe(false);
  });
});
