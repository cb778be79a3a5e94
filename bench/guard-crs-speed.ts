// Speed of the guard's CRS evaluator on one core: evaluate() over a benign mix of nginx access-log
// requests (pages, assets, searches, API calls, tracking parameters; browser, mobile, bot and
// tool User-Agents; referers) with ~2 % attacks from the CRS regression corpus interleaved.
// Single thread, no I/O in the loop; bounded by --count and --seconds. Reports throughput and the
// per-evaluate latency (HdrHistogram, ns), evaluations per CPU-second, the load average before and after, and writes
// bench/results/guard-crs-speed-<time>.json.
//
//   npm run bench:guard-crs-speed [-- --pl 1 --count 300000 --seconds 20 --attack-pct 2 --seed 1]
//   … -- --libinjection off   (941100/942100 set aside: the cost of libinjection, by difference)
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
import { benign, rng } from './guard-crs-traffic.js';
import { machineInfo } from './proc.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
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
  const libinjection = arg('libinjection', 'on') !== 'off';
  const rs: Ruleset = compile(DEBIAN_CRS_RULES_DIR, { paranoiaLevel: pl, ...(libinjection ? {} : { libinjectionLibrary: null }) });
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
  const benignCount = { evaluations: 0, ns: 0, blocked: 0 };
  const attackCount = { evaluations: 0, blocked: 0 };
  const deadline = performance.now() + maxSeconds * 1000;
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  while (n < maxCount) {
    const p = pool[n % pool.length];
    const a = performance.now();
    const v = evaluate(rs, p.req);
    const ns = Math.max(1, Math.round((performance.now() - a) * 1e6));
    hist.recordValue(ns);
    if (p.attack) { attackCount.evaluations++; if (v.blocked) attackCount.blocked++; } else { benignCount.evaluations++; benignCount.ns += ns; benignHist.recordValue(ns); if (v.blocked) benignCount.blocked++; }
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
    config: { paranoiaLevel: pl, maxCount, maxSeconds, attackPct, seed, poolSize, attackCases: attacks.length, activeRules: rs.stats.active, libinjection: rs.stats.libinjection },
    compileMs: Math.round(compileMs),
    evaluations: n,
    elapsedS: +elapsedS.toFixed(3),
    cpuS: +cpuS.toFixed(3),
    throughputPerS: Math.round(n / elapsedS),
    /** evaluations per second of this process's CPU time: the per-core rate, less skewed by other jobs on the machine */
    perCpuSecond: Math.round(n / cpuS),
    benignThroughputPerS: Math.round(benignCount.evaluations / (benignCount.ns / 1e9)),
    latencyUs: pct(hist),
    benignLatencyUs: pct(benignHist),
    benign: { evaluations: benignCount.evaluations, blocked: benignCount.blocked },
    attack: attackCount,
  };
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `guard-crs-speed-${result.time.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  console.log(JSON.stringify(result, null, 2));
  console.error(`[bench:guard-crs-speed] ${result.throughputPerS} evaluations/s wall, ${result.perCpuSecond} per CPU-second (benign only ${result.benignThroughputPerS}/s), p50 ${result.latencyUs.p50} µs p99 ${result.latencyUs.p99} µs, load ${load0[0].toFixed(1)}→${load1[0].toFixed(1)}; ${file}`);
}

main();
