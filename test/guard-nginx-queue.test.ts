// The nginx enforcer's queue: changes arriving while a POST is in flight go together in the next one,
// the latest per target, and past limits.guardNginxQueuedTargetsMax targets a new one is refused.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
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
