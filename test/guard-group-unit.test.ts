// The guard's side of group membership, without a node: the per-address state a revoked partition
// leaves behind is dropped (and only that), and the group's configuration.
import { describe, expect, it } from 'vitest';
import { ConfigError, defaultGroup, resolveGuardConfig } from '../src/guard/config.js';
import { detect, forget, newDetector } from '../src/guard/detect.js';
import { Allowlist } from '../src/guard/ip.js';
import { parseNginx } from '../src/guard/parse.js';
import { compileScenarios, DEFAULT_SCENARIOS } from '../src/guard/scenarios.js';

const lim = { lineBytesMax: 65_536, uriCharsMax: 16_384, clockSkewMsMax: 86_400_000, prefixV4: 24, prefixV6: 64 };
const ev = (ip: string, t: number) => parseNginx(JSON.stringify({
  msec: (t / 1000).toFixed(3), remote_addr: ip, request_method: 'GET', request_uri: '/', server_protocol: 'HTTP/1.1', status: '200',
  request_time: '0.001', http_user_agent: 'ua', http_referer: '-', host: 'h', body_bytes_sent: '1', connection_requests: '1',
}), t, lim) as Exclude<ReturnType<typeof parseNginx>, string>;

describe('releasing revoked partitions', () => {
  it('forget drops the addresses last seen in the given partitions, keeps the rest and their counts', () => {
    const s = newDetector(compileScenarios(DEFAULT_SCENARIOS, []), new Allowlist([]), { ipsMax: 1000, sketch: { epsilon: 0.01, delta: 0.01, topK: 10 } });
    // 198.18.0.1 fills its flood bucket to one short of overflowing, from partition 1
    for (let i = 0; i < 200; i++) expect(detect(s, ev('198.18.0.1', 1000), () => false, 1)).toEqual([]);
    for (let i = 0; i < 150; i++) detect(s, ev('198.18.0.2', 1000), () => false, 2);
    detect(s, ev('198.18.0.3', 1000), () => false, 3);
    // an address seen in two partitions belongs to the last one
    detect(s, ev('198.18.0.3', 1000), () => false, 1);
    detect(s, ev('198.18.0.4', 1000), () => false);
    expect(forget(s, new Set([2]))).toBe(1);
    expect(s.ips.get('198.18.0.2')).toBeUndefined();
    expect(forget(s, new Set([3, 7]))).toBe(0);
    // partition 1 is kept: its address overflows on the next event, counts intact
    expect(detect(s, ev('198.18.0.1', 1000), () => false, 1).map((a) => a.scenario)).toEqual(['http-flood']);
    expect(forget(s, new Set([1]))).toBe(2);
    expect(s.ips.size).toBe(1); // untagged state (a pinned input's caller gives no source) is never dropped by a source
    // forgotten: counting starts over
    for (let i = 0; i < 200; i++) expect(detect(s, ev('198.18.0.2', 2000), () => false, 2)).toEqual([]);
  });
});

describe('group config', () => {
  it('defaults: group guard.<topics>, session 600 ms, heartbeat a quarter of it', () => {
    const c = resolveGuardConfig({ inputs: [{ topic: 'web' }, { topic: 'auth', format: 'sshd' }] }, '/');
    expect(c.group).toBe('guard.auth.web');
    expect(c.membership).toEqual({ sessionTimeoutMs: 600, heartbeatIntervalMs: 150, commitIntervalMs: 500 });
    expect(resolveGuardConfig({ inputs: [{ topic: 'web' }], group: 'edge', membership: { sessionTimeoutMs: 2000 } }, '/')).toMatchObject({ group: 'edge', membership: { sessionTimeoutMs: 2000, heartbeatIntervalMs: 500 } });
    const long = defaultGroup(Array.from({ length: 20 }, (_, i) => `site-${i}-access-log`));
    expect(long).toMatch(/^guard\.[0-9a-f]{32}$/);
    expect(defaultGroup(['b', 'a', 'b'])).toBe('guard.a.b');
  });

  it('refuses sessions the coordinator refuses, and heartbeats too slow for the session', () => {
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], membership: { sessionTimeoutMs: 100 } }, '/')).toThrow(ConfigError);
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], membership: { sessionTimeoutMs: 5000 } }, '/')).toThrow(ConfigError);
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], membership: { sessionTimeoutMs: 600, heartbeatIntervalMs: 400 } }, '/')).toThrow(/heartbeatIntervalMs/);
    expect(() => resolveGuardConfig({ inputs: [{ topic: 'w' }], membership: { bogus: 1 } }, '/')).toThrow(ConfigError);
  });
});
