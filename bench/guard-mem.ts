// Memory and speed of the guard's detection at many distinct addresses: parse + detect with the
// built-in scenarios (no CRS) over --ips distinct client addresses (a --v6-pct share IPv6), each
// sending --per-ip requests, round-robin (so with --ips-max below --ips every address is evicted
// before it comes back: the worst case for the table). Simulated time advances --rate events/s.
// Reports RSS before the detector exists, at the end and its peak, heap used, tracked addresses
// and events/s; writes bench/results/guard-mem-<time>.json.
//
//   npm run build && node --expose-gc dist/bench/guard-mem.js [--ips 1000000 --ips-max 100000 --per-ip 2 --v6-pct 20 --rate 50000]
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { detect, newDetector } from '../src/guard/detect.js';
import { Allowlist } from '../src/guard/ip.js';
import { parseNginx } from '../src/guard/parse.js';
import { compileScenarios, DEFAULT_SCENARIOS } from '../src/guard/scenarios.js';
import { machineInfo } from './proc.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

const MB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc;

function main(): void {
  const ips = Number(arg('ips', '1000000'));
  const ipsMax = Number(arg('ips-max', '100000'));
  const perIp = Number(arg('per-ip', '2'));
  const v6Pct = Number(arg('v6-pct', '20'));
  const rate = Number(arg('rate', '50000'));
  const outDir = arg('out', 'bench/results');
  const load0 = loadavg();
  gc?.();
  const rssBefore = process.memoryUsage().rss;

  const lim = { lineBytesMax: 64 * 1024, uriCharsMax: 16 * 1024, clockSkewMsMax: 86_400_000, prefixV4: 24, prefixV6: 64 };
  const state = newDetector(compileScenarios(DEFAULT_SCENARIOS, ['/login']), new Allowlist([]), { ipsMax, sketch: { epsilon: 0.001, delta: 0.01, topK: 100 } });
  const uris = Array.from({ length: 200 }, (_, i) => `/p/${i}?ref=${i % 7}`);
  const addr = (n: number): string => {
    // no traffic leaves the process: 10.0.0.0/8 and 2001:db8::/32, distinct for every n < 2^24
    if ((n * 2654435761) % 100 < v6Pct) return `2001:db8:${((n >>> 16) & 0xffff).toString(16)}:${(n & 0xffff).toString(16)}::${((n % 251) + 1).toString(16)}`;
    return `10.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
  };
  const t0Ms = 1_700_000_000_000;
  const total = ips * perIp;
  let alerts = 0;
  let rejected = 0;
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < total; i++) {
    const n = i % ips;
    const tMs = t0Ms + Math.floor((i * 1000) / rate);
    const line = `{"msec":"${(tMs / 1000).toFixed(3)}","remote_addr":"${addr(n)}","request_method":"GET","request_uri":"${uris[(n + i) % uris.length]}","server_protocol":"HTTP/1.1","status":"${i % 20 === 0 ? 404 : 200}","request_time":"0.001","http_user_agent":"Mozilla/5.0","http_referer":"-","host":"shop.example","body_bytes_sent":"512","connection_requests":"1"}`;
    const ev = parseNginx(line, tMs, lim);
    if (typeof ev === 'string') {
      rejected++;
      continue;
    }
    alerts += detect(state, ev, () => false).length;
  }
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const rssEnd = process.memoryUsage().rss;
  gc?.();
  const mem = process.memoryUsage();
  const result = {
    bench: 'guard-mem', ips, ipsMax, perIp, v6Pct, rate, events: total, rejected, alerts,
    tracked: state.ips.size, evictions: state.ips.evictions,
    eventsPerSec: Math.round(total / seconds), eventsPerCpuSec: Math.round(total / ((cpu.user + cpu.system) / 1e6)),
    rssBeforeMB: +(rssBefore / MB).toFixed(1), rssEndMB: +(rssEnd / MB).toFixed(1), rssAfterGcMB: +(mem.rss / MB).toFixed(1),
    rssPeakMB: +(process.resourceUsage().maxRSS / 1024).toFixed(1), heapUsedMB: +(mem.heapUsed / MB).toFixed(1), heapTotalMB: +(mem.heapTotal / MB).toFixed(1), ipStateMB: +(state.ips.bytes / MB).toFixed(1),
    arrayBuffersMB: +(mem.arrayBuffers / MB).toFixed(1), gcExposed: gc !== undefined,
    loadavg: { before: load0[0], after: loadavg()[0] }, machine: machineInfo(),
  };
  console.log(JSON.stringify(result));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `guard-mem-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify(result, null, 2) + '\n');
}

main();
