// Real nginx with the Lua blocklist of examples/guard/nginx-guard.conf (private prefix, loopback
// ports), its JSON access log shipped by the real agent → node → guard → POST to nginx's loopback
// endpoint. An attacker on 127.0.0.2 floods until nginx answers 403; a client on 127.0.0.3 is
// still served.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { cliPath, freePort, type NodeHandle, OutputRing, repoRoot, startNode } from '../helpers/launcher.js';
import { type AgentProc, startAgent } from '../helpers/agent.js';
import { slow } from '../helpers/slow.js';
import { LUA_MODULE, nginxConf } from '../helpers/guard-net.js';

const CAPACITY = 50;

let node: NodeHandle;
let dir: string;
let nginx: ChildProcess | undefined;
let agent: AgentProc | undefined;
let guard: { proc: ChildProcess; stdout: OutputRing } | undefined;
let sitePort = 0;
const missing = existsSync('/usr/sbin/nginx') && existsSync(LUA_MODULE) ? undefined : 'nginx or libnginx-mod-http-lua is not installed (scripts/test-deps.sh installs them)';

function get(from: string, urlPath = '/'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: sitePort, path: urlPath, localAddress: from, agent: false, headers: { host: 'shop.example', 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0', accept: 'text/html' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  if (missing) return;
  node = await startNode();
  dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-guard-nginx-'));
  await mkdir(path.join(dir, 'tmp'));
  sitePort = await freePort();
  const guardPort = await freePort();
  const example = await readFile(path.join(repoRoot, 'examples/guard/nginx-guard.conf'), 'utf8');
  await writeFile(path.join(dir, 'guard.conf'), example.replaceAll('127.0.0.1:8765', `127.0.0.1:${guardPort}`));
  await writeFile(path.join(dir, 'nginx.conf'), nginxConf(dir, { listen: `127.0.0.1:${sitePort}`, workers: 1 }));
  await writeFile(path.join(dir, 'access.json'), '');
  // nginx's workers run as www-data: the served file must be readable by them
  await chmod(dir, 0o755);
  await mkdir(path.join(dir, 'www'));
  await writeFile(path.join(dir, 'www/index.html'), 'ok\n');
  nginx = spawn('/usr/sbin/nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let nginxErr = '';
  nginx.stderr!.setEncoding('utf8').on('data', (c: string) => { nginxErr += c; });
  process.once('exit', () => nginx?.kill('SIGKILL'));
  for (let i = 0; ; i++) {
    if (await get('127.0.0.3').then((s) => s === 200, () => false)) break;
    if (i > 100 || nginx.exitCode !== null) throw new Error(`nginx did not start: ${nginxErr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await writeFile(path.join(dir, 'agent.yaml'), [
    `node: { url: ${node.url} }`, 'host: web1', 'spool: { dir: ./spool, quotaBytes: 67108864, segmentBytes: 1048576 }',
    'pollIntervalMs: 10', 'batch: { lingerMs: 1 }', 'retry: { minMs: 20, maxMs: 500 }', 'logLevel: warn',
    'sources:', `  - { task: nginx, paths: [${dir}/access.json], topic: web-nginx }`,
  ].join('\n'));
  agent = startAgent(path.join(dir, 'agent.yaml'));
  await writeFile(path.join(dir, 'guard.yaml'), [
    `node: { url: ${node.url} }`, 'guardId: guard-nginx',
    'inputs: [{ topic: web-nginx, from: earliest }]',
    `scenarios: [{ name: http-flood, capacity: ${CAPACITY}, leakMs: 1000 }]`,
    `nginx: { urls: [http://127.0.0.1:${guardPort}/guard/blocklist] }`,
    'metrics: { host: 127.0.0.1, port: 0 }',
    'logLevel: info',
  ].join('\n'));
  const proc = spawn(process.execPath, [cliPath, 'guard', '--config', path.join(dir, 'guard.yaml')], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout = new OutputRing();
  proc.stdout!.setEncoding('utf8').on('data', (c: string) => stdout.feed(c));
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => stdout.feed(c));
  process.once('exit', () => proc.kill('SIGKILL'));
  guard = { proc, stdout };
  // the group's coordinator assigns the partitions (after its hold when the node has just started)
  await stdout.waitFor(/"msg":"partitions assigned"/, 20_000);
}, slow(40_000));

afterAll(async () => {
  guard?.proc.kill('SIGKILL');
  agent?.proc.kill('SIGKILL');
  nginx?.kill('SIGQUIT');
  await node?.stop();
});

describe('guard → nginx Lua blocklist', () => {
  it('a flooding 127.0.0.2 gets 403 soon after the trigger; 127.0.0.3 is still served', async (ctx) => {
    if (missing) ctx.skip(missing);
    let served = 0;
    let firstForbiddenAt = -1;
    const deadline = Date.now() + slow(15_000);
    // one request after another, as fast as they are answered; bounded in count and time
    for (let i = 0; i < 200_000 && Date.now() < deadline; i++) {
      const status = await get('127.0.0.2', '/');
      if (status === 200) served++;
      else if (status === 403) {
        firstForbiddenAt = i;
        break;
      }
    }
    if (firstForbiddenAt < 0) await writeFile("/tmp/guard-nginx-fail.log", [await (await fetch(`${node.url}/v1/groups/guard.web-nginx/offsets`)).text(), await (await fetch(JSON.parse(guard!.stdout.lines().find((l) => l.includes("metrics listening"))!).metrics)).text(), await (await fetch(`${node.url}/v1/topics/web-nginx`)).text(), guard!.stdout.text(), agent!.stdout.text(), agent!.stderr.text()].join("\n----\n"));
    expect(firstForbiddenAt).toBeGreaterThan(0);
    const ban = JSON.parse(await guard!.stdout.waitFor(/"msg":"decision ban"/, 5000)) as { target: string; scenario: string; latencyMs: { nginx: number } };
    expect(ban.scenario).toBe('http-flood');
    expect(ban.target).toBe('127.0.0.2');
    console.log(`nginx: ${served} attacker requests served in all (bucket capacity ${CAPACITY}; ${served - CAPACITY - 1} after the triggering one); line → nginx ack ${ban.latencyMs.nginx} ms (through the agent, polling every 10 ms)`);
    expect(await get('127.0.0.2')).toBe(403);
    expect(await get('127.0.0.3')).toBe(200);
    expect(served).toBeGreaterThan(CAPACITY);
  }, slow(30_000));
});
