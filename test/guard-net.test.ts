// The guard's net, short version (the long one is test/long/guard-net.test.ts): attackers and
// legitimate clients in network namespaces send real HTTP to real nginx (Lua blocklist, JSON access
// log) in a web namespace; the real agent ships the log to a node; the guard bans through an
// nftables table in the web namespace and nginx's shared dict. Skips, saying why, only where the
// kernel refuses namespaces (or a Debian package is missing).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendFile } from 'node:fs/promises';
import { GuardNet, inSet, netUnavailable, type Decision } from './helpers/guard-net.js';
import { slow } from './helpers/slow.js';
import { waitUntil } from './helpers/bridge.js';

const CAPACITY = 100;
let net: GuardNet | undefined;
let unavailable: string | undefined;

const legitIps = Array.from({ length: 40 }, (_, i) => `198.18.${64 + (i % 8)}.${10 + i}`);
const legitPaths = ['/', '/products', '/static/app.js', '/static/site.css', '/search?q=red+shoes&page=2', '/cart', '/favicon.ico'];

beforeAll(async () => {
  unavailable = await netUnavailable();
  if (unavailable) {
    console.warn(`guard-net: SKIPPED: ${unavailable}`);
    return;
  }
  net = new GuardNet({ scenarios: [`{ name: http-flood, capacity: ${CAPACITY}, leakMs: 10 }`] });
  await net.start();
}, slow(60_000));

afterAll(async () => {
  await net?.stop();
});

describe('guard net (short): namespaces → nginx → agent → node → guard → nft + nginx', () => {
  it('a flooding address is cut off in nft and nginx soon after its trigger; a 404 scanner and SQL injection are banned; legitimate clients never', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    const flooder = '198.18.128.7';
    const scanner = '198.18.129.9';
    const sqli = '198.18.130.11';
    const [legit, flood, scan, bad] = await Promise.all([
      net.load(net.legit, { sources: legitIps, rate: 80, durationMs: 4000, paths: legitPaths, perSource: true }),
      // bounded: 2,000 req/s for at most 4 s
      net.load(net.attackers, { sources: [flooder], rate: 2000, durationMs: 4000, paths: ['/products', '/'], concurrency: 32, timeoutMs: 300, socketsPerSource: 32 }),
      net.load(net.attackers, { sources: [scanner], rate: 50, durationMs: 3000, maxRequests: 60, paths: ['/wp-{i}.php', '/old/{i}', '/admin{i}/'] }),
      net.load(net.attackers, { sources: [sqli], rate: 5, durationMs: 2000, maxRequests: 3, paths: ["/products?id=1'%20UNION%20SELECT%20password%20FROM%20users--"] }),
    ]);
    console.log('guard-net short: legit', legit.status, 'flood', flood.status, flood.sent, 'scan', scan.status, 'sqli', bad.status);
    await waitUntil('bans of the flooder, the scanner and the injector logged', () => {
      const t = new Set(net!.decisions().map((d) => d.target));
      return t.has(flooder) && t.has(scanner) && t.has(sqli);
    }, slow(10_000), 50);
    const byTarget = new Map(net.decisions().map((d) => [d.target, d] as [string, Decision]));
    expect(byTarget.get(flooder)!.scenario).toBe('http-flood');
    expect(byTarget.get(scanner)!.scenario).toBe('http-404-probing');
    expect(byTarget.get(sqli)!.scenario).toBe('http-bad-request');
    const v4 = await net.nftSet('v4');
    for (const ip of [flooder, scanner, sqli]) expect(inSet(v4, ip), ip).toBe(true);
    // no legitimate address banned, and every legitimate request answered
    expect(net.decisions().filter((d) => d.target.startsWith('198.18.6') || d.target.startsWith('198.18.7'))).toEqual([]);
    expect((legit.status['200'] ?? 0) + (legit.status['404'] ?? 0)).toBe(legit.sent);
    // the flood: the line that overflowed the bucket → nginx and nft acknowledged it
    const ban = byTarget.get(flooder)!;
    const lines = await net.accessLines(flooder);
    const answeredAfter = lines.filter((l) => l.msec > ban.eventMs! && l.status === '200').length;
    console.log(`guard-net short: flood at ${Math.round(flood.sentBeforeBlocked / (flood.blockedAtMs / 1000))} req/s from one address until cut off; ${answeredAfter} answered after the trigger (capacity ${CAPACITY}); line → nft ${ban.latencyMs.nft} ms, → nginx ${ban.latencyMs.nginx} ms; line → decided ${ban.detectMs} ms`);
    // provisional bound on a loaded 2-core box (the target, capacity + 10, is for the benchmark)
    expect(answeredAfter).toBeLessThan(slow(2000));
    // once banned, nothing more is answered: nft drops the address's packets
    const after = await net.load(net.attackers, { sources: [flooder], rate: 10, durationMs: 1000, maxRequests: 3, timeoutMs: 300 });
    expect(after.status['200'] ?? 0).toBe(0);
    expect(after.timeouts).toBe(after.sent);
    // and nginx refuses it on its own: out of the nft set, the address gets 403 from the Lua check
    await net.nftForget(flooder);
    const viaNginx = await net.load(net.attackers, { sources: [flooder], rate: 10, durationMs: 1000, maxRequests: 3, timeoutMs: 1000 });
    expect(viaNginx.status).toEqual({ 403: 3 });
  }, slow(60_000));

  it('bad lines in the access log are counted and skipped; the guard keeps running', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    const before = await net.rejected();
    const good = (o: Record<string, string>) => JSON.stringify({ msec: (Date.now() / 1000).toFixed(3), remote_addr: '198.18.64.200', request_method: 'GET', request_uri: '/', server_protocol: 'HTTP/1.1', status: '200', request_time: '0.000', http_user_agent: 'x', http_referer: '', host: 'shop.example', body_bytes_sent: '1', connection_requests: '1', ...o });
    const bad = ['not json at all', '{"msec":"1.0","remote_addr":', JSON.stringify([1, 2, 3]), good({ remote_addr: 'evil.example' }), good({ remote_addr: '0x7f.1' }),
      good({ status: '9999' }), good({ msec: String(Date.now() / 1000 + 40 * 86_400) }), good({ request_uri: '/' + 'a'.repeat(100_000) })];
    await appendFile(net.accessLog, bad.map((l) => `${l}\n`).join(''));
    await waitUntil('bad lines counted', async () => {
      const now = await net!.rejected();
      return Object.keys(now).reduce((s, k) => s + now[k] - (before[k] ?? 0), 0) >= bad.length;
    }, slow(10_000), 100);
    const now = await net.rejected();
    for (const reason of ['json', 'address', 'status', 'time', 'too_long']) expect(now[reason] ?? 0, reason).toBeGreaterThan(before[reason] ?? 0);
    expect(net.guard.proc.exitCode).toBe(null);
  }, slow(20_000));
});
