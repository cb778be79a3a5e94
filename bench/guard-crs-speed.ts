// Speed of the guard's CRS evaluator on one core: evaluate() over a benign mix of nginx access-log
// requests (pages, assets, searches, API calls, tracking parameters; browser, mobile, bot and
// tool User-Agents; referers) with ~2 % attacks from the CRS regression corpus interleaved.
// Single thread, no I/O in the loop; bounded by --count and --seconds. Reports throughput and the
// per-evaluate latency (HdrHistogram, ns), evaluations per CPU-second, the load average before and after, and writes
// bench/results/guard-crs-speed-<time>.json.
//
//   npm run bench:guard-crs-speed [-- --pl 1 --count 300000 --seconds 20 --attack-pct 2 --seed 1]
//   … -- --cpu-prof .scratch/crs.cpuprofile   (V8 CPU profile of the measured loop only, for Chrome DevTools)
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Session } from 'node:inspector';
import hdr from 'hdr-histogram-js';
import type { Histogram } from 'hdr-histogram-js';
import { compile, evaluate, DEBIAN_CRS_RULES_DIR, type GuardRequest, type Ruleset } from '../src/guard/crs/index.js';
import { loadCases, markUnevaluable, regressionDir } from './guard-crs-cases.js';
import { machineInfo } from './proc.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

/** xorshift32: the same mix for the same seed. */
function rng(seed: number): () => number {
  let x = (seed >>> 0) || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

const UAS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15',
  'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.97',
  'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
  'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)',
  'curl/7.88.1',
  'python-requests/2.31.0',
  'okhttp/4.12.0',
  'Prometheus/2.45.0',
];
const WORDS = ['blue', 'running', 'shoes', 'winter', 'jacket', 'kids', 'sale', 'organic', 'coffee', 'beans', 'laptop', 'stand', 'garden', 'chair', 'été', 'straße', 'naïve', 'café'];
const SLUGS = ['how-to-choose-running-shoes', 'spring-collection-2024', 'release-notes-v3-2', 'shipping-and-returns', 'about-us', 'privacy-policy', 'careers'];
const SORTS = ['price_asc', 'price_desc', 'newest', 'rating'];
const EXT = ['js', 'css', 'png', 'jpg', 'webp', 'svg', 'woff2'];

function benign(r: () => number): GuardRequest {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
  const n = (max: number) => Math.floor(r() * max);
  const hex = (len: number) => Array.from({ length: len }, () => '0123456789abcdef'[n(16)]).join('');
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
  const words = () => Array.from({ length: 1 + n(3) }, () => encodeURIComponent(pick(WORDS)).replace(/%20/g, '+')).join('+');
  let method = 'GET';
  let uri: string;
  const k = r();
  if (k < 0.35) uri = `/static/${pick(['js', 'css', 'img', 'fonts'])}/${pick(['app', 'vendor', 'main', 'logo', 'hero', 'icons'])}.${hex(8)}.${pick(EXT)}`;
  else if (k < 0.40) uri = pick(['/favicon.ico', '/robots.txt', '/sitemap.xml', '/manifest.json', '/apple-touch-icon.png']);
  else if (k < 0.55) uri = pick(['/', `/blog/${2020 + n(5)}/${String(1 + n(12)).padStart(2, '0')}/${pick(SLUGS)}`, `/products/${n(100000)}`, `/category/${pick(WORDS)}?page=${1 + n(20)}&sort=${pick(SORTS)}`, `/${pick(SLUGS)}`]);
  else if (k < 0.65) uri = `/search?q=${words()}&page=${1 + n(5)}${r() < 0.3 ? `&filter=brand%3A${pick(WORDS)}` : ''}`;
  else if (k < 0.85) {
    const api = pick([
      `/api/v1/orders?since=2024-0${1 + n(9)}-0${1 + n(9)}T00:00:00Z&limit=${pick([10, 20, 50, 100])}`,
      `/api/v2/users/${n(1e6)}/cart`,
      `/api/v1/items/${uuid()}`,
      `/api/v1/recommendations?user=${n(1e6)}&ctx=home&exclude=${n(1e5)},${n(1e5)},${n(1e5)}`,
      '/api/v1/events',
      `/graphql?operationName=GetProduct&variables=%7B%22id%22%3A%22${n(99999)}%22%7D`,
      '/healthz',
    ]);
    uri = api;
    if (api === '/api/v1/events' || api.startsWith('/api/v2/users')) method = r() < 0.7 ? 'POST' : 'GET';
  } else if (k < 0.93) uri = `/?utm_source=${pick(['google', 'newsletter', 'facebook', 'twitter'])}&utm_medium=${pick(['cpc', 'email', 'social'])}&utm_campaign=${pick(SLUGS).replace(/-/g, '_')}${r() < 0.5 ? `&gclid=EAIaIQobChMI${hex(20)}` : ''}`;
  else if (k < 0.97) uri = pick([`/login?next=%2Faccount%2Forders`, `/account/orders/${n(1e6)}`, `/logout`, `/cart/add?sku=${hex(10).toUpperCase()}&qty=${1 + n(3)}`, `/password/reset?token=${hex(40)}`]);
  else uri = `/download/${pick(SLUGS)}.pdf`;
  if (method === 'GET') { const m = r(); if (m < 0.03) method = 'HEAD'; else if (m < 0.05) method = 'POST'; else if (m < 0.055) method = 'OPTIONS'; }
  const headers: Record<string, string> = { 'User-Agent': pick(UAS), Host: 'shop.example.com' };
  const ref = r();
  if (ref < 0.45) headers.Referer = `https://shop.example.com/${pick(['', 'search?q=' + words(), 'products/' + n(100000), 'category/' + pick(WORDS)])}`;
  else if (ref < 0.6) headers.Referer = 'https://www.google.com/';
  return { method, uri, protocol: r() < 0.8 ? 'HTTP/1.1' : 'HTTP/2.0', headers, remoteAddr: `198.18.${n(256)}.${1 + n(254)}` };
}

function newHistogramNs(): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: 3, useWebAssembly: false, autoResize: false });
}

function main(): void {
  const pl = Number(arg('pl', '1'));
  const maxCount = Number(arg('count', '300000'));
  const maxSeconds = Number(arg('seconds', '20'));
  const attackPct = Number(arg('attack-pct', '2'));
  const seed = Number(arg('seed', '1'));
  const outDir = arg('out', 'bench/results');
  const poolSize = Number(arg('pool', '20000'));
  const load0 = loadavg();

  const t0 = performance.now();
  const rs: Ruleset = compile(DEBIAN_CRS_RULES_DIR, { paranoiaLevel: pl });
  const compileMs = performance.now() - t0;

  // Attacks: the regression cases whose rule must fire and that a log line carries (bodies moved to the query).
  const cases = loadCases(regressionDir(), ['user-agent', 'referer', 'host'], { transposeBodies: true });
  markUnevaluable(cases, rs);
  const attacks = cases.filter((c) => !c.skip && c.fires).map((c) => c.request);
  const r = rng(seed);
  const pool: Array<{ req: GuardRequest; attack: boolean }> = [];
  for (let i = 0; i < poolSize; i++) {
    const attack = r() * 100 < attackPct;
    pool.push(attack ? { req: attacks[Math.floor(r() * attacks.length)], attack } : { req: benign(r), attack });
  }

  // Warm-up: every request once (JIT, lazily compiled operators).
  for (const p of pool) evaluate(rs, p.req);

  const profileFile = arg('cpu-prof', '');
  const session = profileFile === '' ? null : new Session();
  if (session !== null) {
    session.connect();
    session.post('Profiler.enable');
    session.post('Profiler.start');
  }
  const hist = newHistogramNs();
  const benignHist = newHistogramNs();
  let n = 0;
  let benignN = 0;
  let benignNs = 0;
  let blockedBenign = 0;
  let blockedAttack = 0;
  let attackN = 0;
  const deadline = performance.now() + maxSeconds * 1000;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  while (n < maxCount) {
    const p = pool[n % pool.length];
    const a = performance.now();
    const v = evaluate(rs, p.req);
    const ns = Math.max(1, Math.round((performance.now() - a) * 1e6));
    hist.recordValue(ns);
    if (p.attack) { attackN++; if (v.blocked) blockedAttack++; } else { benignN++; benignNs += ns; benignHist.recordValue(ns); if (v.blocked) blockedBenign++; }
    n++;
    if ((n & 1023) === 0 && performance.now() > deadline) break;
  }
  const elapsedS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const load1 = loadavg();
  if (session !== null) {
    session.post('Profiler.stop', (err, res) => {
      if (err === null) writeFileSync(profileFile, JSON.stringify(res.profile));
      session.disconnect();
    });
  }
  const pct = (h: Histogram) => ({
    p50: h.getValueAtPercentile(50) / 1000, p90: h.getValueAtPercentile(90) / 1000, p99: h.getValueAtPercentile(99) / 1000,
    p999: h.getValueAtPercentile(99.9) / 1000, max: h.maxValue / 1000, mean: h.mean / 1000,
  });
  const result = {
    bench: 'guard-crs-speed',
    time: new Date().toISOString(),
    machine: machineInfo(),
    loadAvg: { before: load0.map((x) => +x.toFixed(2)), after: load1.map((x) => +x.toFixed(2)) },
    config: { paranoiaLevel: pl, maxCount, maxSeconds, attackPct, seed, poolSize, attackCases: attacks.length, activeRules: rs.stats.active },
    compileMs: Math.round(compileMs),
    evaluations: n,
    elapsedS: +elapsedS.toFixed(3),
    cpuS: +cpuS.toFixed(3),
    throughputPerS: Math.round(n / elapsedS),
    /** evaluations per second of this process's CPU time: the per-core rate, less skewed by other jobs on the machine */
    perCpuSecond: Math.round(n / cpuS),
    benignThroughputPerS: Math.round(benignN / (benignNs / 1e9)),
    latencyUs: pct(hist),
    benignLatencyUs: pct(benignHist),
    benign: { evaluations: benignN, blocked: blockedBenign },
    attack: { evaluations: attackN, blocked: blockedAttack },
  };
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `guard-crs-speed-${result.time.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result, null, 2));
  console.error(`[bench:guard-crs-speed] ${result.throughputPerS} evaluations/s wall, ${result.perCpuSecond} per CPU-second (benign only ${result.benignThroughputPerS}/s), p50 ${result.latencyUs.p50} µs p99 ${result.latencyUs.p99} µs, load ${load0[0].toFixed(1)}→${load1[0].toFixed(1)}; ${file}`);
}

main();
