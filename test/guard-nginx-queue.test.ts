// The nginx enforcer's queue: changes arriving while a POST is in flight go together in the next one,
// the latest per target, and past limits.guardNginxQueuedTargetsMax targets a new one is refused.
// Against a real nginx with the example conf: a restart (an empty blocklist) gets every ban back.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LUA_MODULE, nginxConf } from './helpers/guard-net.js';
import { killOnExit } from './helpers/children.js';
import { freePort, repoRoot } from './helpers/launcher.js';
import { waitUntil } from './helpers/bridge.js';
import { NginxEnforcer } from '../src/guard/nginx.js';
import type { Decision } from '../src/guard/decisions.js';
import { limits } from '../src/runtime/limits.js';

const decision = (target: string, secs: number): Decision => ({
  target, scope: 'ip', v6: false, scenario: 't', detail: '', origin: 'manual', createdMs: Date.now(), untilMs: Date.now() + secs * 1000, offense: 1,
});

let server: http.Server | undefined;
const limit = limits.guardNginxQueuedTargetsMax;
afterEach(() => {
  server?.close();
  (limits as { guardNginxQueuedTargetsMax: number }).guardNginxQueuedTargetsMax = limit;
});

/** an nginx stand-in that holds each POST until released, and records the bodies */
async function blocklist(): Promise<{ url: string; bodies: string[]; release: () => void }> {
  const bodies: string[] = [];
  let held: Array<() => void> = [];
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => { bodies.push(body); held.push(() => res.end('ok')); });
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server!.address() as AddressInfo).port}/blocklist`;
  return { url, bodies, release: () => { const h = held; held = []; for (const f of h) f(); } };
}

const until = async (f: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(f()).toBe(true);
};

describe('nginx enforcer queue', () => {
  it('sends the latest change per target, in order, in the POST after the one in flight', async () => {
    const nginx = await blocklist();
    const e = new NginxEnforcer([nginx.url], 5_000, () => {});
    const first = e.ban(decision('198.18.0.1', 60));
    await until(() => nginx.bodies.length === 1);
    const later = [e.ban(decision('198.18.0.2', 60)), e.ban(decision('198.18.0.3', 60)), e.unban(decision('198.18.0.2', 0)), e.ban(decision('198.18.0.3', 120))];
    let settled = 0;
    for (const p of later) void p.then(() => { settled++; });
    nginx.release();
    await first;
    await until(() => nginx.bodies.length === 2);
    // a change settles only when the POST that carries it is answered
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(0);
    nginx.release();
    await Promise.all(later);
    expect(nginx.bodies[0]).toBe('ban 198.18.0.1 60\n');
    expect(nginx.bodies[1]).toBe('unban 198.18.0.2\nban 198.18.0.3 120\n');
  });

  it('a change resolves true once nginx answered it, false when its POST failed three times (no acknowledgement to time)', async () => {
    const nginx = await blocklist();
    const e = new NginxEnforcer([nginx.url], 5_000, () => {});
    const ok = e.ban(decision('198.18.2.1', 60));
    await until(() => nginx.bodies.length === 1);
    nginx.release();
    expect(await ok).toBe(true);
    const warnings: string[] = [];
    const down = new NginxEnforcer(['http://127.0.0.1:9/blocklist'], 1_000, (_l, msg) => { warnings.push(msg); });
    expect(await down.ban(decision('198.18.2.2', 60))).toBe(false);
    expect(down.failures).toBe(1);
    expect(warnings).toEqual(['nginx blocklist update failed']);
  });

  it('refuses a new target past the bound while a POST is in flight, and counts it', async () => {
    (limits as { guardNginxQueuedTargetsMax: number }).guardNginxQueuedTargetsMax = 2;
    const nginx = await blocklist();
    const warnings: string[] = [];
    const e = new NginxEnforcer([nginx.url], 5_000, (_l, msg) => { warnings.push(msg); });
    const first = e.ban(decision('198.18.1.1', 60));
    await until(() => nginx.bodies.length === 1);
    const later = ['198.18.1.2', '198.18.1.3', '198.18.1.4', '198.18.1.2'].map((t) => e.ban(decision(t, 60)));
    expect(e.refused).toBe(1);
    expect(warnings).toEqual(['nginx blocklist queue full: changes refused']);
    // the queued changes (however many calls carried them) settle only with their POST
    let settled = false;
    void Promise.race([later[0], later[3]]).then(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    nginx.release();
    await first;
    await until(() => nginx.bodies.length === 2);
    nginx.release();
    await Promise.all(later);
    // .2's second change replaces its first and goes after .3's
    expect(nginx.bodies[1]).toBe('ban 198.18.1.3 60\nban 198.18.1.2 60\n');
  });
});

const noNginx = existsSync('/usr/sbin/nginx') && existsSync(LUA_MODULE) ? undefined : 'nginx or libnginx-mod-http-lua is not installed (scripts/test-deps.sh installs them)';

/** a request to the site from `from` (any 127/8 address is local): its status */
function status(port: number, from: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/', localAddress: from, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0); });
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(noNginx)(`nginx enforcer against a real nginx (examples/guard/nginx-guard.conf)${noNginx ? `: ${noNginx}` : ''}`, () => {
  it('sends every ban in force again after an nginx restart emptied its blocklist, and an unban it missed', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-guard-nginx-restart-'));
    const procs: ChildProcess[] = [];
    try {
      await mkdir(path.join(dir, 'tmp'));
      await mkdir(path.join(dir, 'www'));
      await writeFile(path.join(dir, 'www/index.html'), 'ok\n');
      await chmod(dir, 0o755); // nginx's workers read the site as www-data
      const sitePort = await freePort();
      const ctlPort = await freePort();
      const example = await readFile(path.join(repoRoot, 'examples/guard/nginx-guard.conf'), 'utf8');
      await writeFile(path.join(dir, 'guard.conf'), example.replaceAll('127.0.0.1:8765', `127.0.0.1:${ctlPort}`));
      await writeFile(path.join(dir, 'nginx.conf'), nginxConf(dir, { listen: `127.0.0.1:${sitePort}`, workers: 1 }));
      const start = async (): Promise<ChildProcess> => {
        const p = spawn('/usr/sbin/nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: 'ignore', detached: true });
        killOnExit(p);
        procs.push(p);
        await waitUntil('nginx serving', () => status(sitePort, '127.0.0.9').then((s) => s === 200, () => false), 10_000, 50);
        return p;
      };
      const stopped = (p: ChildProcess) => new Promise<void>((r) => { if (p.exitCode !== null || p.signalCode !== null) r(); else p.once('exit', () => r()); });
      let nginx = await start();
      const logs: string[] = [];
      const active = new Map<string, Decision>();
      const e = new NginxEnforcer([`http://127.0.0.1:${ctlPort}/guard/blocklist`], 500, (_l, msg) => { logs.push(msg); }, { active: () => active.values(), checkIntervalMs: 200 });
      try {
        for (const t of ['127.0.0.2', '127.0.0.3']) {
          active.set(t, decision(t, 600));
          expect(await e.ban(active.get(t)!)).toBe(true);
        }
        expect([await status(sitePort, '127.0.0.2'), await status(sitePort, '127.0.0.3'), await status(sitePort, '127.0.0.9')]).toEqual([403, 403, 200]);

        // a restart empties the shared dict: the next check finds the marker lost and sends both bans again
        nginx.kill('SIGTERM'); // fast shutdown: the master waits for its workers (SIGKILL would leave them serving)
        await stopped(nginx);
        nginx = await start();
        const resent = e.resent;
        await waitUntil('the bans back in the restarted nginx', async () => (await status(sitePort, '127.0.0.2')) === 403 && (await status(sitePort, '127.0.0.3')) === 403, 10_000, 50);
        expect(e.resent).toBeGreaterThan(resent);

        // an unban that could not be delivered (nginx down) is not left in nginx's dict once it is back
        process.kill(-nginx.pid!, 'SIGSTOP'); // master and worker: the kernel takes the connections, nginx answers none
        active.delete('127.0.0.3');
        expect(await e.unban(decision('127.0.0.3', 0))).toBe(false);
        process.kill(-nginx.pid!, 'SIGCONT');
        await waitUntil('the missed unban applied', async () => (await status(sitePort, '127.0.0.3')) === 200, 10_000, 50);
        expect(await status(sitePort, '127.0.0.2')).toBe(403);

        // a second guard on the same nginx keeps its own marker: neither makes the other's lost in turn
        const e2 = new NginxEnforcer([`http://127.0.0.1:${ctlPort}/guard/blocklist`], 500, () => {}, { active: () => active.values(), checkIntervalMs: 200 });
        try {
          await waitUntil('the second guard\'s first full send', () => e2.resent === 1, 10_000, 20);
          const before = e.resent;
          await new Promise((r) => setTimeout(r, 1_500)); // several checks of both
          expect([e.resent, e2.resent]).toEqual([before, 1]);
          expect(await status(sitePort, '127.0.0.2')).toBe(403);
        } finally {
          e2.stop();
        }
      } finally {
        e.stop();
      }
    } finally {
      for (const p of procs) try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ }
      await rm(dir, { recursive: true, force: true });
    }
  });
});
