// A guard started (or restarted) under attack meets its first lines with cold code: V8 runs every
// function interpreted until it has been called often enough to be compiled, and the OWASP CRS
// rules' regular expressions are compiled on their first use (the first requests cost 5–17 ms
// each instead of 0.2–0.5 ms). Before it reads traffic, the guard runs its own path (parse, detect,
// decide, CRS) over synthetic lines on throwaway state: nothing it counts or decides is kept.
import { evaluate, type Ruleset } from './crs/index.js';
import { decide, type DecisionPolicy, newDecisions } from './decisions.js';
import { detect, newDetector } from './detect.js';
import { Allowlist } from './ip.js';
import { loggedHeaders, type ParseLimits, parseNginx, parseSsh } from './parse.js';
import type { Scenario } from './scenarios.js';

export interface WarmResult { lines: number; crsRequests: number; alerts: number; ms: number }

const UAS = ['Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', 'curl/8.5.0', ''];
/** benign requests and the attacks the built-in scenarios and CRS look for */
const URIS = ['/', '/index.html', '/products?id=12&q=red+shoes', '/static/app.js', '/search?q=a%20b', '/.env', '/../../etc/passwd',
  "/item?id=1'%20OR%20'1'='1", '/q?s=<script>alert(1)</script>', '/login', '/wp-config.php.bak', '/a/b/c?x=1&y=2'];
const STATUS = [200, 200, 200, 304, 404, 401, 403, 500];

/** An address in a documentation range: 192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32. */
function addr(i: number): string {
  if (i % 5 === 4) return `2001:db8:${(i >> 8) & 0xff}::${(i & 0xff) + 1}`;
  return `${i % 2 ? '192.0.2' : '198.51.100'}.${(i % 250) + 1}`;
}

/**
 * Runs `lines` synthetic nginx lines (and sshd events if a scenario reads them) through parse →
 * detect → decide on fresh state, and CRS over up to `crsRequests` distinct requests; stops at
 * `msMax`. Pure apart from the clock: the scenarios are only read.
 */
export function warmUp(o: {
  scenarios: Scenario[]; crs: Ruleset | undefined; limits: ParseLimits; policy: DecisionPolicy;
  lines: number; crsRequests: number; msMax: number; nowMs: number;
}): WarmResult {
  const t0 = performance.now();
  const allow = new Allowlist([]);
  const det = newDetector(o.scenarios, allow, { ipsMax: 1000, sketch: { epsilon: 0.01, delta: 0.1, topK: 10 } });
  const dec = newDecisions({ ...o.policy, offendersMax: Math.min(o.policy.offendersMax, 1000) }, allow);
  const ssh = o.scenarios.some((s) => s.spec.source === 'ssh');
  let crsDone = 0;
  let alerts = 0;
  let n = 0;
  for (; n < o.lines; n++) {
    if ((n & 63) === 0 && performance.now() - t0 > o.msMax) break;
    const tMs = o.nowMs + n;
    const method = n % 13 === 0 ? 'POST' : 'GET';
    const line = JSON.stringify({
      msec: (tMs / 1000).toFixed(3), remote_addr: addr(n % 300), request_method: method, request_uri: `${URIS[n % URIS.length]}${n % 3 ? '' : `&n=${n}`}`,
      server_protocol: 'HTTP/1.1', status: String(STATUS[n % STATUS.length]), request_time: '0.001', http_user_agent: UAS[n % UAS.length],
      http_referer: n % 4 ? '-' : 'https://shop.example/', host: 'shop.example', body_bytes_sent: '512', connection_requests: '1',
    });
    const ev = ssh && n % 7 === 0
      ? parseSsh({ 'ssh.event': n % 2 ? 'failed' : 'invalid_user', 'ssh.ip': addr(n % 300), 'ssh.user': `u${n % 9}` }, tMs, o.limits)
      : parseNginx(Buffer.from(line), tMs, o.limits); // records arrive as bytes
    if (typeof ev === 'string') continue;
    const found = detect(det, ev, () => {
      if (!o.crs || ev.kind !== 'http' || crsDone >= o.crsRequests) return false;
      crsDone++;
      return evaluate(o.crs, { method: ev.method, uri: ev.uri, protocol: ev.protocol, headers: loggedHeaders(ev), remoteAddr: ev.client.ip }).blocked;
    });
    for (const alert of found) {
      alerts++;
      decide(dec, { kind: 'alert', alert, durationMs: 600_000 }, tMs);
    }
  }
  return { lines: n, crsRequests: crsDone, alerts, ms: Math.round((performance.now() - t0) * 10) / 10 };
}
