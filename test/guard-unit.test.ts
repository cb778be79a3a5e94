// The guard's pure modules: bucket semantics against CrowdSec's leaky bucket, sketch error bounds,
// top-K, decisions (extension, escalation, cap, dry-run), allowlist, parsing of bad input, config.
import { describe, expect, it } from 'vitest';
import { type BucketSpec, LruMap, levelAt, newBucket, pour } from '../src/guard/bucket.js';
import { CountMinSketch, TopK, WindowedSketch } from '../src/guard/sketch.js';
import { type DecisionPolicy, decide, expire, newDecisions } from '../src/guard/decisions.js';
import type { Alert } from '../src/guard/detect.js';
import { detect, newDetector } from '../src/guard/detect.js';
import { Allowlist, banTooWide, canonicalTarget, parseIp } from '../src/guard/ip.js';
import { parseNginx, parseSsh } from '../src/guard/parse.js';
import { compileScenarios, DEFAULT_SCENARIOS } from '../src/guard/scenarios.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadGuardConfig, resolveGuardConfig } from '../src/guard/config.js';
import { loadAgentConfig } from '../src/agent/config.js';
import { tableScript } from '../src/guard/nft.js';
import { loggedHeaders } from '../src/guard/parse.js';
import { compile, evaluate } from '../src/guard/crs/index.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const spec = (o: Partial<BucketSpec> = {}): BucketSpec => ({ capacity: 5, leakMs: 10_000, blackholeMs: 60_000, distinct: false, ...o });

describe('leaky bucket (CrowdSec semantics)', () => {
  it('holds `capacity` events and overflows on the next one', () => {
    const s = spec();
    const b = newBucket(0);
    for (let i = 0; i < 5; i++) expect(pour(s, b, 0)).toBe('poured');
    expect(pour(s, b, 0)).toBe('overflow');
  });

  it('leaks one event per leakspeed, continuously', () => {
    const s = spec();
    const b = newBucket(0);
    for (let i = 0; i < 5; i++) pour(s, b, 0);
    // 9.999 s: not a whole event has leaked yet
    const early = structuredClone(b);
    expect(pour(s, early, 9_999)).toBe('overflow');
    // 10 s: exactly one leaked, one more fits, then full again
    expect(pour(s, b, 10_000)).toBe('poured');
    expect(pour(s, b, 10_000)).toBe('overflow');
    // half-way leaks: level 5 at t=0 is 2.5 at 25 s
    const c = newBucket(0);
    for (let i = 0; i < 5; i++) pour(s, c, 0);
    expect(levelAt(s, c, 25_000)).toBeCloseTo(2.5);
    expect(levelAt(s, c, 60_000)).toBe(0);
  });

  it('a steady rate at the leak speed never overflows; just above it does', () => {
    const s = spec({ capacity: 10, leakMs: 100 });
    const b = newBucket(0);
    for (let t = 0; t < 60_000; t += 100) expect(pour(s, b, t)).toBe('poured');
    const c = newBucket(0);
    let overflowAt = -1;
    for (let t = 0, i = 0; i < 2000 && overflowAt < 0; t += 90, i++) if (pour(s, c, t) === 'overflow') overflowAt = t;
    // gains 1/10 of an event per pour beyond the leak: full after ~100 pours
    expect(overflowAt).toBeGreaterThan(8_000);
    expect(overflowAt).toBeLessThan(10_000);
  });

  it('blackholes the key after an overflow, then counts afresh', () => {
    const s = spec({ capacity: 2, blackholeMs: 60_000 });
    const b = newBucket(0);
    pour(s, b, 0); pour(s, b, 0);
    expect(pour(s, b, 0)).toBe('overflow');
    expect(pour(s, b, 1)).toBe('blackholed');
    expect(pour(s, b, 59_999)).toBe('blackholed');
    expect(pour(s, b, 60_000)).toBe('poured');
  });

  it('distinct: repeated values are not poured; the set ends with the bucket', () => {
    const s = spec({ capacity: 3, distinct: true });
    const b = newBucket(0);
    expect(pour(s, b, 0, '/a')).toBe('poured');
    expect(pour(s, b, 0, '/a')).toBe('duplicate');
    expect(pour(s, b, 0, '/b')).toBe('poured');
    expect(pour(s, b, 0, '/c')).toBe('poured');
    expect(pour(s, b, 0, '/d')).toBe('overflow');
    // drained bucket: /a counts again
    const c = newBucket(0);
    pour(s, c, 0, '/a');
    expect(pour(s, c, 10_001, '/a')).toBe('poured');
  });

  it('capacity 0 is a trigger: every event overflows (outside the blackhole)', () => {
    const s = spec({ capacity: 0, blackholeMs: 0 });
    const b = newBucket(0);
    expect(pour(s, b, 0)).toBe('overflow');
    expect(pour(s, b, 1)).toBe('overflow');
  });

  it('LruMap evicts the least recently used entry and counts it', () => {
    const m = new LruMap<number>(3);
    m.set('a', 1); m.set('b', 2); m.set('c', 3);
    m.get('a');
    m.set('d', 4);
    expect(m.get('b')).toBeUndefined();
    expect(m.get('a')).toBe(1);
    expect(m.size).toBe(3);
    expect(m.evictions).toBe(1);
  });
});

describe('count-min sketch and top-K', () => {
  it('never underestimates, and overestimates by at most ε·N in ≥ 1−δ of keys', () => {
    const eps = 0.001;
    const cms = new CountMinSketch(eps, 0.01);
    const truth = new Map<string, number>();
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 200_000; i++) {
      // a skewed stream over 20k keys
      const k = `198.18.${Math.floor(rnd() ** 3 * 20_000)}`;
      cms.add(k);
      truth.set(k, (truth.get(k) ?? 0) + 1);
    }
    let over = 0;
    for (const [k, n] of truth) {
      const e = cms.estimate(k);
      expect(e).toBeGreaterThanOrEqual(n);
      if (e - n > eps * cms.total) over++;
    }
    expect(over / truth.size).toBeLessThanOrEqual(0.01);
    expect(cms.bytes).toBe(cms.width * cms.depth * 4);
  });

  it('windowed: counts fade after two windows', () => {
    const w = new WindowedSketch(1000, 0.01, 0.01);
    for (let i = 0; i < 100; i++) w.add('p', 0);
    expect(w.estimate('p', 0)).toBe(100);
    w.advance(1000);
    expect(w.estimate('p', 1000)).toBe(100); // all of the previous window still overlaps
    expect(w.estimate('p', 1500)).toBe(50);
    w.advance(2000);
    expect(w.estimate('p', 2000)).toBe(0);
  });

  it('Space-Saving keeps every key above N/K with a bounded error', () => {
    const top = new TopK(10, 4);
    const heavy = ['a', 'b', 'c'];
    let n = 0;
    for (let i = 0; i < 10_000; i++) {
      top.add(i % 2 === 0 ? heavy[(i / 2) % 3] : `noise${i}`, `ip${i % 7}`);
      n++;
    }
    const got = top.top(3).map((e) => e.key).sort();
    expect(got).toEqual(heavy);
    // each heavy key is ~1667 > N/K = 1000; count − error never exceeds the truth
    for (const e of top.top(3)) expect(e.count - e.error).toBeLessThanOrEqual(Math.ceil(5000 / 3));
    expect(top.size).toBe(10);
    expect(top.get('a')!.members.size).toBeLessThanOrEqual(4);
    top.decay();
    expect(top.get('a')!.count).toBeGreaterThan(0);
    expect(n).toBe(10_000);
  });
});

const policy: DecisionPolicy = { escalation: { factor: 4, maxMs: 86_400_000, memoryMs: 86_400_000 }, newBansPerMinuteMax: 3, offendersMax: 1000, extendMinMs: 1000 };
const alert = (target: string, o: Partial<Alert> = {}): Alert => ({ scenario: 'http-flood', scope: 'ip', target, v6: false, eventMs: 0, detail: '', dryRun: false, ...o });

describe('decisions', () => {
  it('one decision per target: a second alert extends it', () => {
    const s = newDecisions(policy, new Allowlist([]));
    const [e1] = decide(s, { kind: 'alert', alert: alert('198.18.0.1'), durationMs: 60_000 }, 0);
    expect(e1.type).toBe('ban');
    const [e2] = decide(s, { kind: 'alert', alert: alert('198.18.0.1'), durationMs: 60_000 }, 30_000);
    expect(e2.type).toBe('extend');
    expect((e2 as { decision: { untilMs: number } }).decision.untilMs).toBe(90_000);
    expect(s.active.size).toBe(1);
    // an alert that would not lengthen it by extendMinMs does nothing
    expect(decide(s, { kind: 'alert', alert: alert('198.18.0.1'), durationMs: 60_000 }, 30_500)).toEqual([]);
  });

  it('escalates repeat offenders: base × factor^(n−1), capped', () => {
    const s = newDecisions(policy, new Allowlist([]));
    const lengths: number[] = [];
    let t = 0;
    for (let i = 0; i < 8; i++) {
      const [e] = decide(s, { kind: 'alert', alert: alert('198.18.0.2'), durationMs: 60_000 }, t);
      const d = (e as { decision: { untilMs: number; createdMs: number; offense: number } }).decision;
      lengths.push(d.untilMs - t);
      t = d.untilMs + 1;
      s.recentBansMs.length = 0;
      expect(expire(s, t).length).toBe(1);
    }
    expect(lengths.slice(0, 4)).toEqual([60_000, 240_000, 960_000, 3_840_000]);
    expect(Math.max(...lengths)).toBe(86_400_000);
  });

  it('caps new automatic bans per minute; manual bans and extensions pass', () => {
    const s = newDecisions(policy, new Allowlist([]));
    const types = [1, 2, 3, 4].map((i) => decide(s, { kind: 'alert', alert: alert(`198.18.0.${i}`), durationMs: 60_000 }, 1000)[0].type);
    expect(types).toEqual(['ban', 'ban', 'ban', 'capped']);
    expect(decide(s, { kind: 'manual', target: '198.18.0.9', scope: 'ip', v6: false, durationMs: 60_000, reason: 'x' }, 1000)[0].type).toBe('ban');
    expect(decide(s, { kind: 'alert', alert: alert('198.18.0.1'), durationMs: 60_000 }, 20_000)[0].type).toBe('extend');
    // a minute later there is room again
    expect(decide(s, { kind: 'alert', alert: alert('198.18.0.4'), durationMs: 60_000 }, 61_001)[0].type).toBe('ban');
  });

  it('dry-run and allowlisted alerts change nothing', () => {
    const s = newDecisions(policy, new Allowlist(['198.18.5.0/24']));
    expect(decide(s, { kind: 'alert', alert: alert('198.18.0.7', { dryRun: true }), durationMs: 60_000 }, 0)[0].type).toBe('dry');
    expect(decide(s, { kind: 'alert', alert: alert('198.18.5.7'), durationMs: 60_000 }, 0)[0].type).toBe('allowlisted');
    expect(decide(s, { kind: 'alert', alert: alert('198.18.0.0/16', { scope: 'prefix' }), durationMs: 60_000 }, 0)[0].type).toBe('allowlisted');
    expect(s.active.size).toBe(0);
  });

  it('no decision covers an allowlisted address: not a manual one, nor one from the CLI, another guard or the store', () => {
    const s = newDecisions(policy, new Allowlist(['198.18.5.0/24', '127.0.0.0/8']));
    const d = { target: '198.18.5.9', scope: 'ip' as const, v6: false, scenario: 'manual', detail: '', origin: 'manual' as const, createdMs: 0, untilMs: 100_000, offense: 1 };
    expect(decide(s, { kind: 'restore', decision: d }, 0)).toEqual([{ type: 'allowlisted', target: '198.18.5.9' }]);
    expect(decide(s, { kind: 'restore', decision: { ...d, target: '0.0.0.0/0', scope: 'prefix' } }, 0)[0].type).toBe('allowlisted');
    expect(decide(s, { kind: 'manual', target: '198.18.0.0/16', scope: 'prefix', v6: false, durationMs: 60_000, reason: 'x' }, 0)[0].type).toBe('allowlisted');
    expect(s.active.size).toBe(0);
    expect(decide(s, { kind: 'restore', decision: { ...d, target: '198.18.6.9' } }, 0)[0].type).toBe('ban');
  });

  it('restore keeps the later expiry; unban removes', () => {
    const s = newDecisions(policy, new Allowlist([]));
    const d = { target: '198.18.0.3', scope: 'ip' as const, v6: false, scenario: 'x', detail: '', origin: 'guard' as const, createdMs: 0, untilMs: 100_000, offense: 1 };
    expect(decide(s, { kind: 'restore', decision: d }, 0)[0].type).toBe('ban');
    expect(decide(s, { kind: 'restore', decision: { ...d, untilMs: 50_000 } }, 0)).toEqual([]);
    expect(decide(s, { kind: 'restore', decision: { ...d, untilMs: 10 } }, 100)).toEqual([]);
    expect(decide(s, { kind: 'unban', target: '198.18.0.3' }, 0)[0].type).toBe('unban');
    expect(s.active.size).toBe(0);
  });
});

describe('addresses and allowlist', () => {
  it('parses IPv4, IPv6, mapped IPv4; refuses everything else', () => {
    expect(parseIp('198.18.7.9')).toEqual({ ip: '198.18.7.9', v6: false, prefix: '198.18.7.0/24' });
    expect(parseIp('2001:db8:1:2:3:4:5:6')).toEqual({ ip: '2001:db8:1:2:3:4:5:6', v6: true, prefix: '2001:db8:1:2::/64' });
    expect(parseIp('::ffff:198.18.0.1')!.ip).toBe('198.18.0.1');
    for (const bad of ['', 'localhost', '1', '0x7f.0.0.1', '999.1.1.1', '1.2.3.4; rm -rf', 'a'.repeat(1000), 42, null]) expect(parseIp(bad)).toBeUndefined();
    expect(canonicalTarget('198.18.7.9/24')).toEqual({ value: '198.18.7.0/24', v6: false, cidr: true });
    expect(canonicalTarget('2001:db8::1/128')).toEqual({ value: '2001:db8::1', v6: true, cidr: false });
    // an IPv4-mapped target is the IPv4 one (an IPv6 set never sees IPv4 packets)
    expect(canonicalTarget('::ffff:10.1.2.3/104')).toEqual({ value: '10.0.0.0/8', v6: false, cidr: true });
    expect(canonicalTarget('::ffff:1.2.3.4/128')).toEqual({ value: '1.2.3.4', v6: false, cidr: false });
    // a manual ban shorter than /8 (IPv6 /16) needs --force
    const wide = (text: string) => banTooWide(canonicalTarget(text)!);
    expect(wide('10.0.0.0/7')).toBe('10.0.0.0/7 covers 33554432 addresses; a prefix shorter than /8 needs --force');
    expect(wide('::ffff:10.0.0.0/103')).toContain('10.0.0.0/7');
    expect(wide('::/15')).toBe('::/15 covers 2^113 addresses; a prefix shorter than /16 needs --force');
    for (const ok of ['10.0.0.0/8', '2001::/16', '198.18.7.7', '2001:db8::1']) expect(wide(ok)).toBeUndefined();
  });

  it('matches CIDRs of both families', () => {
    const a = new Allowlist(['10.0.0.0/8', '2001:db8::/32', '198.18.0.1']);
    expect(a.has('10.1.2.3')).toBe(true);
    expect(a.has('11.1.2.3')).toBe(false);
    expect(a.has('2001:db8:ffff::1')).toBe(true);
    expect(a.has('2001:db9::1')).toBe(false);
    expect(a.has('198.18.0.1')).toBe(true);
    expect(a.has('198.18.0.2')).toBe(false);
    expect(a.has('10.9.0.0/16')).toBe(true);
  });
});

const lim = { lineBytesMax: 64 * 1024, uriCharsMax: 16 * 1024, clockSkewMsMax: 86_400_000, prefixV4: 24, prefixV6: 64 };
const nginx = (o: Record<string, unknown> = {}) => JSON.stringify({ msec: '1700000000.123', remote_addr: '198.18.0.1', request_method: 'GET', request_uri: '/a?b=1', server_protocol: 'HTTP/1.1', status: '404', request_time: '0.002', http_user_agent: 'x', http_referer: '-', host: 'h', body_bytes_sent: '10', connection_requests: '3', ...o });

describe('parsing', () => {
  it('reads nginx JSON lines', () => {
    const ev = parseNginx(nginx(), 1_700_000_000_000, lim);
    expect(ev).toMatchObject({ kind: 'http', timeMs: 1_700_000_000_123, method: 'GET', path: '/a', status: 404, requestTimeMs: 2, connectionRequests: 3, referer: '' });
  });

  it('refuses malformed and absurd lines with a reason', () => {
    const now = 1_700_000_000_000;
    expect(parseNginx('{', now, lim)).toBe('json');
    expect(parseNginx('[1]', now, lim)).toBe('json');
    expect(parseNginx(nginx({ remote_addr: 'evil' }), now, lim)).toBe('address');
    expect(parseNginx(nginx({ status: '9999' }), now, lim)).toBe('status');
    expect(parseNginx(nginx({ request_method: 'GET /x' }), now, lim)).toBe('method');
    expect(parseNginx(nginx({ msec: '99999999999' }), now, lim)).toBe('time');
    expect(parseNginx(nginx({ request_uri: '/' + 'a'.repeat(1024 * 1024) }), now, lim)).toBe('too_long');
    expect(parseNginx(nginx({ request_uri: '/' + 'a'.repeat(20_000) }), now, { ...lim, lineBytesMax: 1024 * 1024 })).toBe('uri');
    expect(parseNginx(nginx({ http_user_agent: { x: 1 } }), now, lim)).toBe('field');
  });

  it('reads sshd records by their headers', () => {
    expect(parseSsh({ 'ssh.event': 'failed', 'ssh.ip': '2001:db8::5', 'ssh.user': 'root' }, 5, lim)).toMatchObject({ kind: 'ssh', event: 'failed', user: 'root', timeMs: 5 });
    expect(parseSsh({ 'ssh.event': 'failed', 'ssh.ip': 'UNKNOWN' }, 5, lim)).toBe('address');
    expect(parseSsh({}, 5, lim)).toBe('not_ssh');
  });
});

describe('detection with the default scenarios', () => {
  const det = () => newDetector(compileScenarios(DEFAULT_SCENARIOS, ['/login']), new Allowlist(['198.18.200.0/24']), { ipsMax: 1000, sketch: { epsilon: 0.001, delta: 0.01, topK: 50 } });
  const ev = (ip: string, t: number, o: Record<string, unknown> = {}) => parseNginx(nginx({ remote_addr: ip, msec: (t / 1000).toFixed(3), status: '200', ...o }), t, lim) as Exclude<ReturnType<typeof parseNginx>, string>;

  it('flood, 404 probing, sensitive files, traversal, login brute force, sshd', () => {
    const s = det();
    const first = (f: (i: number) => ReturnType<typeof ev> | ReturnType<typeof parseSsh>, n: number) => {
      for (let i = 0; i < n; i++) {
        const a = detect(s, f(i) as never, () => false);
        if (a.length > 0) return { i, scenario: a[0].scenario };
      }
      return undefined;
    };
    expect(first(() => ev('198.18.0.1', 1000), 500)).toEqual({ i: 200, scenario: 'http-flood' });
    // one per ms against a leak of one per 10 ms: 0.9 net per event → 200 / 0.9 ≈ 222
    expect(first((i) => ev('198.18.0.10', 1000 + i), 500)).toEqual({ i: 222, scenario: 'http-flood' });
    expect(first((i) => ev('198.18.0.2', 1000 + i * 100, { status: '404', request_uri: `/probe${i}` }), 100)).toEqual({ i: 21, scenario: 'http-404-probing' }); // 0.05 leaks per event
    expect(first((i) => ev('198.18.0.3', 1000 + i * 100, { request_uri: ['/.env', '/.git/config', '/wp-config.php'][i % 3] }), 10)).toEqual({ i: 2, scenario: 'http-sensitive-files' });
    expect(first(() => ev('198.18.0.4', 1000, { request_uri: '/static/..%2f..%2fetc/passwd' }), 3)).toEqual({ i: 0, scenario: 'http-path-traversal' });
    expect(first((i) => ev('198.18.0.5', 1000 + i * 100, { request_method: 'POST', request_uri: '/login', status: '401' }), 30)).toEqual({ i: 10, scenario: 'http-login-bruteforce' });
    expect(first((i) => parseSsh({ 'ssh.event': i % 2 ? 'failed' : 'invalid_user', 'ssh.ip': '198.18.0.6', 'ssh.user': `u${i}` }, 1000 + i * 100, lim), 20)).toEqual({ i: 5, scenario: 'ssh-bruteforce' });
    // allowlisted: nothing, however much
    expect(first((i) => ev('198.18.200.1', 1000 + i), 500)).toBeUndefined();
    // 4xx ratio: 50 requests, 80 % 4xx, at a pace no bucket catches
    expect(first((i) => ev('198.18.0.7', 1000 + i * 1000, { status: i % 5 === 0 ? '200' : '403', request_uri: `/r${i % 3}` }), 60)).toEqual({ i: 49, scenario: 'http-4xx-ratio' });
  });

  it('the CRS verdict is asked only for events that reach a CRS scenario, at most once', () => {
    const s = det();
    let asked = 0;
    detect(s, ev('198.18.0.8', 1000), () => { asked++; return true; });
    expect(asked).toBe(1);
    const a = detect(s, ev('198.18.0.8', 1001), () => true);
    expect(a.map((x) => x.scenario)).toEqual(['http-bad-request']);
    detect(s, parseSsh({ 'ssh.event': 'failed', 'ssh.ip': '198.18.0.9' }, 1000, lim) as never, () => { asked++; return true; });
    expect(asked).toBe(1);
  });

  it('bounds per-IP state by ipsMax', () => {
    const s = det();
    for (let i = 0; i < 5000; i++) detect(s, ev(`198.18.${i >> 8}.${i & 255}`, 1000 + i), () => false);
    expect(s.ips.size).toBe(1000);
    expect(s.ips.evictions).toBe(4000);
  });
});

describe('config', () => {
  it('rejects unknown keys and bad values; merges scenarios by name', () => {
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], bogus: 1 }, '/')).toThrow(ConfigError);
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w', partitions: [0, 0] }] }, '/')).toThrow(/partitions/);
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], allowlist: ['nope'] }, '/')).toThrow(/allowlist/);
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], scenarios: [{ name: 'new-one' }] }, '/')).toThrow(/type and source/);
    // a filter expression that does not compile, or not on the linear engine, is a config error (exit 78), not a crash at start
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], scenarios: [{ name: 'x', type: 'leaky', source: 'http', filter: { paths: ['('] } }] }, '/')).toThrow(ConfigError);
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], scenarios: [{ name: 'x', type: 'leaky', source: 'http', filter: { uri: ['(?<=a)b'] } }] }, '/')).toThrow(/scenarios: scenario x: .*linear time/);
    const c = resolveGuardConfig({ inputs: [{ topic: 'w', partitions: [1, 3] }], scenarios: [{ name: 'http-flood', capacity: 7 }, { name: 'http-crawl', enabled: false }, { name: 'ssh-bruteforce', dryRun: true }] }, '/');
    expect(c.inputs[0]).toEqual({ topic: 'w', format: 'nginx', partitions: [1, 3], from: 'latest' });
    expect(c.scenarios.find((s) => s.name === 'http-flood')!.capacity).toBe(7);
    expect(c.scenarios.find((s) => s.name === 'http-flood')!.leakMs).toBe(10);
    expect(c.scenarios.find((s) => s.name === 'http-crawl')).toBeUndefined();
    expect(c.scenarios.find((s) => s.name === 'ssh-bruteforce')!.dryRun).toBe(true);
  });

  it('loads examples/guard/guard.yaml, whose sshd input is the topic examples/agent.yaml ships auth.log to', () => {
    const guard = loadGuardConfig(path.join(repoRoot, 'examples/guard/guard.yaml'), {});
    const agent = loadAgentConfig(path.join(repoRoot, 'examples/agent.yaml'), {});
    const sshdTopics = agent.sources.filter((s) => s.parse === 'sshd').map((s) => s.topic);
    const sshdInputs = guard.inputs.filter((i) => i.format === 'sshd').map((i) => i.topic);
    expect(sshdInputs.length).toBeGreaterThan(0);
    for (const t of sshdInputs) expect(sshdTopics).toContain(t);
  });

  it('nft table: timeout sets for both families', () => {
    const t = tableScript('g', true);
    expect(t).toContain('add set inet g v4 { type ipv4_addr; flags timeout; }');
    expect(t).toContain('add set inet g v6 { type ipv6_addr; flags timeout; }');
    expect(t).toContain('ip6 saddr @v6net drop');
  });
});

describe('CRS on a log line', () => {
  it('an absent User-Agent (logged as "") is not an empty one: a plain request to a numeric Host passes', () => {
    const ev = parseNginx(nginx({ http_user_agent: '', host: '127.0.0.1', request_uri: '/item/1', status: '200' }), 1_700_000_000_000, lim);
    if (typeof ev === 'string') throw new Error(ev);
    expect(loggedHeaders(ev)).toEqual({ Host: '127.0.0.1' });
    const rules = compile();
    expect(evaluate(rules, { method: ev.method, uri: ev.uri, protocol: ev.protocol, headers: loggedHeaders(ev), remoteAddr: ev.client.ip }).blocked).toBe(false);
    const sqli = parseNginx(nginx({ request_uri: "/p?id=1'%20UNION%20SELECT%20password%20FROM%20users--" }), 1_700_000_000_000, lim);
    if (typeof sqli === 'string') throw new Error(sqli);
    expect(evaluate(rules, { method: sqli.method, uri: sqli.uri, protocol: sqli.protocol, headers: loggedHeaders(sqli), remoteAddr: sqli.client.ip }).blocked).toBe(true);
  });
});

describe('decisions read from the store or the topic', () => {
  it('a target that is no address or prefix is no decision, and the allowlist does not throw on it', async () => {
    const { decodeRecord } = await import('../src/guard/store.js');
    const rec = (target: unknown) => Buffer.from(JSON.stringify({ action: 'ban', by: 'x', decision: { target, untilMs: Date.now() + 60_000 } }));
    expect(decodeRecord(rec('198.18.0.1'))?.decision.target).toBe('198.18.0.1');
    for (const bad of ['not-an-ip', '198.18.0.1/99', '', '1', 7]) expect(decodeRecord(rec(bad)), String(bad)).toBeUndefined();
    const allow = new Allowlist(['10.0.0.0/8']);
    expect([allow.has('not-an-ip'), allow.has('10.1.2.3'), allow.has('0.0.0.0/0')]).toEqual([false, true, true]);
    const d = newDecisions(policy, allow);
    expect(() => decide(d, { kind: 'restore', decision: { target: 'not-an-ip', scope: 'ip', v6: false, scenario: 'm', detail: '', origin: 'manual', createdMs: 0, untilMs: Date.now() + 60_000, offense: 1 } }, Date.now())).not.toThrow();
  });
});
