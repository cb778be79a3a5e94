// The guard's net, every case (`npm run test:long`; the short version is test/guard-net.test.ts):
// network namespaces for attackers and legitimate clients (198.18.0.0/15) → real nginx with the Lua
// blocklist and a JSON access log, and a real sshd, in a web namespace → the real agent → a node →
// the guard → an nftables table in the web namespace and nginx's shared dict. Cases run in order
// on one net; every load is bounded in count and time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { compile, DEBIAN_CRS_RULES_DIR, evaluate } from '../../src/guard/crs/index.js';
import { loggedHeaders } from '../../src/guard/parse.js';
import { loadCases, markUnevaluable, regressionDir } from '../../bench/guard-crs-cases.js';
import { GuardNet, inSet, netUnavailable, pct, WEB_TOPIC, type Decision } from '../helpers/guard-net.js';
import { slow } from '../helpers/slow.js';
import { waitUntil } from '../helpers/bridge.js';

const FLOOD_CAPACITY = 200;
let net: GuardNet | undefined;
let unavailable: string | undefined;
const latencies: Array<{ scenario: string; nft: number; nginx: number }> = [];

const isLegit = (t: string) => /^198\.18\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./.test(t);
const bans = () => net!.decisions();
const banOf = (target: string) => bans().find((d) => d.target === target);
const record = (d: Decision) => latencies.push({ scenario: d.scenario, nft: d.latencyMs.nft, nginx: d.latencyMs.nginx });
/** lines in every access log file (the live one and the rotated ones) */
const allLogFiles = () => [1, 2, 3, 4, 5].map((i) => `${net!.accessLog}.${i}`).filter((f) => existsSync(f)).concat(net!.accessLog);

beforeAll(async () => {
  unavailable = await netUnavailable();
  if (unavailable) {
    console.warn(`guard-net (long): SKIPPED: ${unavailable}`);
    return;
  }
  net = new GuardNet({
    sshd: true,
    scenarios: [
      `{ name: http-flood, capacity: ${FLOOD_CAPACITY}, leakMs: 10 }`,
      // one bad request is enough: each CRS case comes from an address of its own
      '{ name: http-bad-request, capacity: 0 }',
    ],
  });
  await net.start();
}, slow(120_000));

afterAll(async () => {
  if (latencies.length) {
    const nft = latencies.map((l) => l.nft).filter(Number.isFinite);
    const ngx = latencies.map((l) => l.nginx).filter(Number.isFinite);
    console.log(`guard-net (long): line → enforced over ${latencies.length} bans: nft p50 ${pct(nft, 0.5)} ms p99 ${pct(nft, 0.99)} ms; nginx p50 ${pct(ngx, 0.5)} ms p99 ${pct(ngx, 0.99)} ms (provisional: loaded 2-core box)`);
  }
  await net?.stop();
});

describe('guard net (long)', () => {
  it('legitimate replay: 200 clients browsing for 10 s, no ban', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    const ips = Array.from({ length: 200 }, (_, i) => `198.18.${64 + (i % 20)}.${20 + Math.floor(i / 20)}`);
    const paths = ['/', '/products', '/static/app.js', '/static/site.css', '/search?q=red+shoes&page=2', '/products?id=12&ref=home', '/cart', '/favicon.ico',
      '/search?q=O%27Reilly+books', '/robots.txt', '/login', '/products?sort=price&order=asc', '/search?q=caf%C3%A9+cr%C3%A8me'];
    const r = await net.load(net.legit, { sources: ips, rate: 400, durationMs: 10_000, paths, concurrency: 32 });
    console.log('guard-net (long) legit replay:', r.status, `${r.sent} requests`);
    expect((r.status['200'] ?? 0) + (r.status['404'] ?? 0)).toBe(r.sent);
    await waitUntil('the replay read by the guard', async () => (await net!.linesRead()) >= r.sent, slow(15_000), 100);
    expect(bans()).toEqual([]);
  }, slow(60_000));

  it('one address flooding at 5k req/s: cut off by nft and nginx; requests answered after the trigger counted', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    const flooder = '198.18.0.2'; // wrk binds no source address: the attackers' veth address
    const out = await net.wrk(net.attackers, { connections: 10, delayMs: 2, seconds: 4, path: '/products' });
    await waitUntil('flood ban logged', () => !!banOf(flooder), slow(10_000), 50);
    const ban = banOf(flooder)!;
    record(ban);
    expect(ban.scenario).toBe('http-flood');
    const lines = await net.accessLines(flooder);
    const before = lines.filter((l) => l.msec <= ban.eventMs!);
    const after = lines.filter((l) => l.msec > ban.eventMs! && l.status === '200').length;
    const rate = before.length / Math.max(0.001, (ban.eventMs! - lines[0].msec) / 1000);
    console.log(`guard-net (long) flood: ${Math.round(rate)} req/s answered before the trigger; ${after} answered after it (target ≤ capacity ${FLOOD_CAPACITY} + 10); line → decided ${ban.detectMs} ms, → nft ${ban.latencyMs.nft} ms, → nginx ${ban.latencyMs.nginx} ms\n${out.split('\n').slice(0, 4).join('\n')}`);
    expect(inSet(await net.nftSet('v4'), flooder)).toBe(true);
    // provisional ceiling on this loaded box: at most what 1 s of the flood brings (the benchmark holds the target)
    expect(after).toBeLessThan(slow(5000));
  }, slow(60_000));

  it('a 404 scanner is banned for probing', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    const scanner = '198.18.129.20';
    const r = await net.load(net.attackers, { sources: [scanner], rate: 40, durationMs: 5000, maxRequests: 200, paths: ['/page{i}', '/old/{i}/', '/item-{i}.html'], timeoutMs: 300 });
    await waitUntil('scanner ban', () => !!banOf(scanner), slow(10_000), 50);
    record(banOf(scanner)!);
    expect(banOf(scanner)!.scenario).toBe('http-404-probing');
    console.log(`guard-net (long) 404 scanner: ${r.status['404'] ?? 0} answered 404 before it was cut off (capacity 20)`);
    expect(r.status['404'] ?? 0).toBeLessThan(r.sent);
  }, slow(30_000));

  it('the Core Rule Set regression requests through nginx: the guard bans what CRS PL1 flags, from the logged line', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    if (!existsSync(`${DEBIAN_CRS_RULES_DIR}/REQUEST-901-INITIALIZATION.conf`)) return ctx.skip('modsecurity-crs is not installed (scripts/test-deps.sh)');
    const rs = compile(DEBIAN_CRS_RULES_DIR, { paranoiaLevel: 1 });
    const cases = loadCases(regressionDir(), ['user-agent', 'referer', 'host']);
    markUnevaluable(cases, rs);
    const usable = cases.filter((c) => !c.skip).slice(0, 4000);
    // one address per case (198.18.160.0/20); the expectation is CRS PL1 on the request as sent
    const sent = usable.map((c, i) => {
      const src = `198.18.${160 + (i >> 8)}.${i & 255}`;
      const lines = [`${c.request.method} ${Buffer.from(c.request.uri, 'utf8').toString('latin1')} ${c.request.protocol}`];
      for (const [k, v] of Object.entries(c.request.headers)) lines.push(`${k}: ${Buffer.from(v, 'utf8').toString('latin1')}`);
      lines.push('Connection: close');
      const hdr = (name: string) => Object.entries(c.request.headers).find(([k]) => k.toLowerCase() === name)?.[1] ?? '';
      const expected = evaluate(rs, { ...c.request, headers: loggedHeaders({ userAgent: hdr('user-agent'), referer: hdr('referer'), host: hdr('host') }), remoteAddr: src }).blocked;
      return { src, data: lines.join('\r\n') + '\r\n\r\n', expected, title: c.title };
    });
    const r = await net.load(net.attackers, { raw: sent.map(({ src, data }) => ({ src, data })), durationMs: 60_000, concurrency: 8, timeoutMs: 2000 });
    const logged = (await net.accessLines()).filter((l) => /^198\.18\.(1[6-7]\d)\./.test(l.remote_addr));
    await waitUntil('CRS lines read', async () => (await net!.linesRead()) >= (await net!.accessLines()).length, slow(20_000), 200);
    await new Promise((resolve) => setTimeout(resolve, slow(1000)));
    const flagged = new Set(bans().filter((d) => d.scenario === 'http-bad-request').map((d) => d.target));
    const loggedFrom = new Set(logged.map((l) => l.remote_addr));
    const inLog = sent.filter((s) => loggedFrom.has(s.src));
    const want = inLog.filter((s) => s.expected);
    const hit = want.filter((s) => flagged.has(s.src));
    const extra = inLog.filter((s) => !s.expected && flagged.has(s.src));
    console.log(`guard-net (long) CRS through nginx: ${sent.length} requests (${JSON.stringify(r.status)}), ${inLog.length} logged; PL1 flags ${want.length}, guard banned ${hit.length} of them (${(100 * hit.length / Math.max(1, want.length)).toFixed(1)} %), ${extra.length} more of ${inLog.length - want.length}`);
    const missed = want.filter((s) => !flagged.has(s.src)).slice(0, 10).map((s) => s.title);
    if (missed.length) console.log('missed:', missed.join(', '));
    if (extra.length) console.log('extra:', extra.slice(0, 10).map((s) => s.title).join(', '));
    expect(want.length).toBeGreaterThan(100);
    expect(hit.length / want.length).toBeGreaterThanOrEqual(0.95);
    expect(extra.length / Math.max(1, inLog.length - want.length)).toBeLessThanOrEqual(0.02);
    for (const d of bans().filter((x) => x.scenario === 'http-bad-request').slice(0, 50)) record(d);
  }, slow(180_000));

  it('2,000 addresses at a low rate each: their /24s are banned as prefixes, no address on its own', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    // 198.18.136.0/21: 8 /24s of 250 addresses. Asked for: 10 req/s each (20k req/s); the loader
    // sends what this box allows (printed) — each address stays far below the per-IP buckets
    const ips = Array.from({ length: 2000 }, (_, i) => `198.18.${136 + (i % 8)}.${1 + Math.floor(i / 8)}`);
    const r = await net.load(net.attackers, { sources: ips, rate: 20_000, durationMs: 12_000, maxRequests: 120_000, paths: ['/products', '/search?q=x'], concurrency: 64, timeoutMs: 300, socketsPerSource: 1 });
    const prefixes = Array.from({ length: 8 }, (_, i) => `198.18.${136 + i}.0/24`);
    console.log(`guard-net (long) 2,000 addresses: ${r.sent} requests in ${r.elapsedMs} ms (${Math.round(r.sent / (r.elapsedMs / 1000))} req/s, ${(r.sent / 2000 / (r.elapsedMs / 1000)).toFixed(1)} per address per s)`, r.status);
    await waitUntil('prefix bans', () => prefixes.every((p) => banOf(p)), slow(15_000), 100);
    for (const p of prefixes) {
      expect(banOf(p)!.scenario).toBe('http-prefix-flood');
      record(banOf(p)!);
    }
    const v4net = await net.nftSet('v4net');
    for (const p of prefixes) expect(v4net.includes(p), p).toBe(true);
    expect(bans().filter((d) => /^198\.18\.1(3[6-9]|4[0-3])\.\d+$/.test(d.target))).toEqual([]);
  }, slow(90_000));

  it('sshd brute force (the agent parses sshd\'s log): banned, then its connections are dropped', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    const src = '198.18.150.5';
    const outcomes: string[] = [];
    for (let i = 0; i < 12 && !banOf(src); i++) outcomes.push(await net.sshAttempt(net.attackers, i % 2 ? 'root' : `nosuch${i}`, src));
    await waitUntil('ssh ban', () => !!banOf(src), slow(15_000), 100);
    record(banOf(src)!);
    expect(banOf(src)!.scenario).toBe('ssh-bruteforce');
    // an attempt logs one to three events (invalid user, failed password, closed): the ban comes after a few
    expect(outcomes.slice(0, 2), 'sshd answered the first attempts').toEqual(['denied', 'denied']);
    console.log(`guard-net (long) sshd: attempts ${outcomes.join(' ')}; line → decided ${banOf(src)!.detectMs} ms, → nft ${banOf(src)!.latencyMs.nft} ms`);
    expect(await net.sshAttempt(net.attackers, 'root', src)).toBe('timeout'); // dropped by nft
    // another address of the same range still reaches sshd
    expect(await net.sshAttempt(net.attackers, 'root', '198.18.150.6')).toBe('denied');
  }, slow(120_000));

  it('logrotate during an attack: the attacker is banned, every line of both files is read once', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    const attacker = '198.18.131.1';
    const load = net.load(net.attackers, { sources: [attacker], rate: 300, durationMs: 5000, paths: ['/cart'], timeoutMs: 300 });
    await new Promise((r) => setTimeout(r, 700));
    await net.rotate();
    await load;
    expect(existsSync(`${net.accessLog}.1`)).toBe(true);
    await waitUntil('attacker banned', () => !!banOf(attacker), slow(10_000), 50);
    record(banOf(attacker)!);
    let total = 0;
    await waitUntil('every line read', async () => {
      total = 0;
      for (const f of allLogFiles()) total += (await net!.accessLines(undefined, [f])).length;
      return (await net!.linesRead()) >= total;
    }, slow(20_000), 200);
    expect(await net.linesRead()).toBe(total);
  }, slow(60_000));

  it('bad input (malformed lines, absurd fields, 1 MB URIs, non-IP addresses) is counted and skipped; the guard still bans', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    const before = await net.rejected();
    const good = (o: Record<string, string>) => JSON.stringify({ msec: (Date.now() / 1000).toFixed(3), remote_addr: '198.18.64.250', request_method: 'GET', request_uri: '/', server_protocol: 'HTTP/1.1', status: '200', request_time: '0.000', http_user_agent: 'x', http_referer: '', host: 'shop.example', body_bytes_sent: '1', connection_requests: '1', ...o });
    const bad = ['', 'not json', '{"msec":', '[1,2,3]', 'null', good({ remote_addr: 'localhost' }), good({ remote_addr: '1' }), good({ remote_addr: '::ffff:zz' }), good({ remote_addr: '999.1.1.1' }),
      good({ status: '0' }), good({ status: 'abc' }), good({ msec: '-5' }), good({ msec: '1e300' }), good({ request_method: 'X'.repeat(5000) }),
      good({ request_uri: '/' + 'a'.repeat(1024 * 1024) }), good({ http_user_agent: 'u'.repeat(1024 * 1024) })];
    await appendFile(net.accessLog, bad.map((l) => `${l}\n`).join(''));
    // a 1 MB URI sent to nginx as well (nginx answers 414 and logs it)
    await net.load(net.attackers, { raw: [{ src: '198.18.132.2', data: `GET /${'b'.repeat(1024 * 1024)} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n` }], durationMs: 5000, timeoutMs: 3000 });
    await waitUntil('bad lines counted', async () => {
      const now = await net!.rejected();
      return Object.keys(now).reduce((s, k) => s + now[k] - (before[k] ?? 0), 0) >= bad.length - 1;
    }, slow(15_000), 100);
    console.log('guard-net (long) bad input, rejected by reason:', await net.rejected());
    expect(net.guard.proc.exitCode).toBe(null);
    // still working: a new flooder is banned
    const flooder = '198.18.133.3';
    await net.load(net.attackers, { sources: [flooder], rate: 500, durationMs: 3000, paths: ['/'], timeoutMs: 300, concurrency: 16 });
    await waitUntil('a ban after the bad input', () => !!banOf(flooder), slow(10_000), 50).catch(async (err) => {
      console.log(await net!.metrics(), net!.guard.stdout.lines().slice(-20).join('\n'), net!.agent?.stdout.text().slice(-3000));
      throw err;
    });
    record(banOf(flooder)!);
  }, slow(60_000));

  it('guard kill -9 and restart: decisions restored into a fresh nft table; old traffic is not judged again', async (ctx) => {
    if (!net) return ctx.skip(unavailable);
    expect(bans().filter((d) => isLegit(d.target))).toEqual([]);
    const banned = bans().map((d) => d.target);
    net.guard.proc.kill('SIGKILL');
    await net.guard.exited;
    await net.nftDropTable();
    const t0 = Date.now();
    net.guard = net.startGuard();
    await net.guard.stdout.waitFor(/"msg":"decisions restored"/, slow(20_000));
    await waitUntil('restored into nft', async () => {
      const [v4, v4net] = await Promise.all([net!.nftSet('v4'), net!.nftSet('v4net')]);
      return banned.every((t) => (t.includes('/') ? v4net.includes(t) : inSet(v4, t)));
    }, slow(15_000), 100);
    console.log(`guard-net (long) restart: ${banned.length} decisions back in nft ${Date.now() - t0} ms after the restart began`);
    // the group's committed offsets: the new guard reads on from where the old one stopped, so the
    // attacks above are not judged (and banned) a second time
    await new Promise((r) => setTimeout(r, slow(2000)));
    console.log(`guard-net (long) restart: ${await net.linesRead(WEB_TOPIC)} lines read again after the restart`);
    expect(net.decisions('ban')).toEqual([]);
  }, slow(60_000));
});
