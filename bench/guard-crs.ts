// Detection quality of the guard's CRS evaluator against ModSecurity: real nginx (Debian 1.22) with
// libnginx-mod-http-modsecurity and the same CRS 3.3.4 at paranoia level 1 in blocking mode, on a
// loopback port with its own prefix, config, pid and logs. The CRS regression requests a log line
// can carry (and, as a second set, the form-body cases moved into the query string) go through
// nginx; ModSecurity's verdict (403, rule ids in the error log) is compared with evaluate() on the
// same request. Writes bench/results/guard-crs-<time>.json and prints the table.
//
//   npm run bench:guard-crs [-- --pl 1 --out bench/results]
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync, statSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { compile, evaluate, DEBIAN_CRS_RULES_DIR, type GuardRequest } from '../src/guard/crs/index.js';
import { loadCases, markUnevaluable, regressionDir, type RegressionCase } from './guard-crs-cases.js';
import { machineInfo } from './proc.js';

const NGINX = '/usr/sbin/nginx';
const MODSEC_MODULE = '/usr/lib/nginx/modules/ngx_http_modsecurity_module.so';
const CRS_SETUP = '/etc/modsecurity/crs/crs-setup.conf';
const LOGGED = ['user-agent', 'referer', 'host', 'cookie'];

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : dflt;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const a = s.address(); s.close(() => (typeof a === 'object' && a ? res(a.port) : rej(new Error('no port')))); });
  });
}

function ensureInstalled(): void {
  if (existsSync(NGINX) && existsSync(MODSEC_MODULE) && existsSync(`${DEBIAN_CRS_RULES_DIR}/REQUEST-901-INITIALIZATION.conf`)) return;
  console.error('[bench:guard-crs] installing nginx, libnginx-mod-http-modsecurity, modsecurity-crs (scripts/test-deps.sh)');
  execFileSync('bash', [resolve('scripts/test-deps.sh')], { stdio: 'inherit' });
}

interface Nginx { proc: ChildProcess; port: number; dir: string; errorLog: string }

async function startNginx(pl: number): Promise<Nginx> {
  const dir = mkdtempSync(join(tmpdir(), 'chicago-crs-nginx-'));
  const port = await freePort();
  mkdirSync(join(dir, 'www'));
  mkdirSync(join(dir, 'tmp'));
  writeFileSync(join(dir, 'www', 'index.html'), 'ok\n');
  writeFileSync(join(dir, 'modsec.conf'), [
    'SecRuleEngine On',
    'SecRequestBodyAccess On',
    'SecRequestBodyLimit 13107200',
    'SecRequestBodyNoFilesLimit 131072',
    'SecRequestBodyLimitAction Reject',
    'SecResponseBodyAccess Off',
    'SecAuditEngine Off',
    'SecArgumentSeparator &',
    'SecCookieFormat 0',
    `Include ${CRS_SETUP}`,
    // paranoia level and threshold the way crs-setup.conf's rules 900000/900110 set them
    `SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=${pl}"`,
    'SecAction "id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=5,setvar:tx.outbound_anomaly_score_threshold=4"',
    `Include ${DEBIAN_CRS_RULES_DIR}/*.conf`,
    '',
  ].join('\n'));
  const errorLog = join(dir, 'error.log');
  writeFileSync(join(dir, 'nginx.conf'), `
load_module ${MODSEC_MODULE};
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${errorLog} info;
events { worker_connections 128; }
http {
  access_log off;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  modsecurity on;
  modsecurity_rules_file ${dir}/modsec.conf;
  server {
    listen 127.0.0.1:${port};
    server_name localhost;
    root ${dir}/www;
    location / { try_files $uri /index.html; }
  }
}
`);
  const proc = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', errorLog], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (b: Buffer) => { stderr += b.toString(); });
  const deadline = Date.now() + 60_000; // loading CRS takes a few seconds
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nginx exited: ${stderr}`);
    try { await send(port, 'GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'); break; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`nginx did not listen on ${port}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, port, dir, errorLog };
}

function send(port: number, raw: string): Promise<number> {
  return new Promise((res, rej) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => { s.destroy(); rej(new Error('timeout')); }, 10_000);
    s.on('connect', () => s.end(Buffer.from(raw, 'latin1')));
    s.on('data', (b) => { buf += b.toString('latin1'); });
    s.on('error', (e) => { clearTimeout(timer); rej(e); });
    s.on('close', () => {
      clearTimeout(timer);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf);
      if (m) res(Number(m[1])); else rej(new Error(`no status: ${JSON.stringify(buf.slice(0, 80))}`));
    });
  });
}

function rawRequest(r: GuardRequest): string {
  const lines = [`${r.method} ${Buffer.from(r.uri, 'utf8').toString('latin1')} ${r.protocol}`];
  for (const [k, v] of Object.entries(r.headers)) lines.push(`${k}: ${Buffer.from(v, 'utf8').toString('latin1')}`);
  lines.push('Connection: close');
  return lines.join('\r\n') + '\r\n\r\n';
}

class LogTail {
  private pos: number;
  constructor(private readonly path: string) { this.pos = statSync(path).size; }
  read(): string {
    const size = statSync(this.path).size;
    if (size <= this.pos) return '';
    const fd = openSync(this.path, 'r');
    const b = Buffer.alloc(size - this.pos);
    readSync(fd, b, 0, b.length, this.pos);
    closeSync(fd);
    this.pos = size;
    return b.toString('latin1');
  }
}

interface Row { title: string; ruleId: number; fires: boolean; transposed: boolean; nginxStatus: number; msIds: number[]; msBlocked: boolean; guardIds: number[]; guardBlocked: boolean }

async function main(): Promise<void> {
  const pl = Number(arg('pl', '1'));
  const outDir = arg('out', 'bench/results');
  ensureInstalled();
  const rs = compile(DEBIAN_CRS_RULES_DIR, { paranoiaLevel: pl, loggedHeaders: LOGGED });
  const all: RegressionCase[] = [
    ...loadCases(regressionDir(), LOGGED),
    ...loadCases(regressionDir(), LOGGED, { transposeBodies: true }).filter((c) => c.transposed),
  ];
  // ModSecurity sees exactly what the log carries: the request line and the logged headers.
  const cases = all.filter((c) => !c.skip);
  const skipped: Record<string, number> = {};
  for (const c of all) if (c.skip) skipped[c.skip] = (skipped[c.skip] ?? 0) + 1;
  const ngx = await startNginx(pl);
  const rows: Row[] = [];
  try {
    const tail = new LogTail(ngx.errorLog);
    for (const c of cases) {
      tail.read();
      let status: number;
      try { status = await send(ngx.port, rawRequest(c.request)); } catch { status = 0; }
      await new Promise((r) => setImmediate(r));
      const log = tail.read();
      const msIds = [...new Set([...log.matchAll(/ModSecurity: (?:Warning|Access denied)[^\n]*?\[id "(\d+)"\]/g)].map((m) => Number(m[1])))];
      const v = evaluate(rs, { ...c.request, remoteAddr: '127.0.0.1' });
      rows.push({
        title: c.title, ruleId: c.ruleId, fires: c.fires, transposed: c.transposed === true, nginxStatus: status,
        msIds, msBlocked: status === 403, guardIds: v.matched.map((m) => m.id), guardBlocked: v.blocked,
      });
    }
    // throughput of both on the same requests (nginx: sequential, one connection per request)
    const sample = cases.slice(0, Math.min(cases.length, 400));
    let t0 = performance.now();
    for (const c of sample) await send(ngx.port, rawRequest(c.request)).catch(() => 0);
    const nginxRps = sample.length / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < 2000) { for (const c of cases) evaluate(rs, c.request); n += cases.length; }
    const guardRps = n / ((performance.now() - t0) / 1000);
    // benign mix throughput (mostly ordinary URIs)
    const benign = benignMix();
    t0 = performance.now();
    n = 0;
    while (performance.now() - t0 < 3000) { for (const r of benign) evaluate(rs, r); n += benign.length; }
    const guardBenignRps = n / ((performance.now() - t0) / 1000);
    report(rows, { pl, skipped, nginxRps, guardRps, guardBenignRps, outDir, stats: rs.stats });
  } finally {
    ngx.proc.kill('SIGTERM');
    await new Promise((r) => ngx.proc.once('exit', r));
    rmSync(ngx.dir, { recursive: true, force: true });
  }
}

export function benignMix(): GuardRequest[] {
  const uas = [
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1',
    'Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0',
    'curl/8.4.0',
  ];
  const uris = ['/', '/index.html', '/static/app.3f2a1c.js', '/img/logo.png', '/api/v1/users/12345', '/search?q=blue+shoes&page=2',
    '/products/widget-2000?color=red&size=m', '/login', '/blog/2024/05/hello-world', '/api/v1/orders?since=2024-01-01T00:00:00Z&limit=50',
    '/favicon.ico', '/css/site.css?v=12', '/?utm_source=news&utm_medium=email', '/cart?add=991&qty=2'];
  const out: GuardRequest[] = [];
  for (let i = 0; i < 1000; i++) {
    out.push({ method: i % 10 === 0 ? 'POST' : 'GET', uri: uris[i % uris.length], protocol: 'HTTP/1.1',
      headers: { 'User-Agent': uas[i % uas.length], Referer: 'https://example.com/', Host: 'example.com' } });
  }
  // 2 % attacks
  for (let i = 0; i < 20; i++) out[i * 50].uri = i % 2 ? '/?q=%3Cscript%3Ealert(1)%3C/script%3E' : '/?id=1%27%20UNION%20SELECT%20pw%20FROM%20users--';
  return out;
}

function pct(a: number, b: number): string { return b === 0 ? 'n/a' : `${((100 * a) / b).toFixed(1)} %`; }

function report(rows: Row[], o: { pl: number; skipped: Record<string, number>; nginxRps: number; guardRps: number; guardBenignRps: number; outDir: string; stats: unknown }): void {
  const judged = rows.filter((r) => r.nginxStatus !== 0 && r.nginxStatus !== 400 && r.nginxStatus !== 414);
  const rejectedByNginx = rows.length - judged.length;
  const sets = { 'log-line cases': judged.filter((r) => !r.transposed), 'bodies moved to the query': judged.filter((r) => r.transposed), all: judged };
  const table: Record<string, unknown> = {};
  for (const [name, rs] of Object.entries(sets)) {
    const pos = rs.filter((r) => r.fires);
    const neg = rs.filter((r) => !r.fires);
    const msPos = pos.filter((r) => r.msBlocked);
    const both = msPos.filter((r) => r.guardBlocked);
    const msRule = pos.filter((r) => r.msIds.includes(r.ruleId));
    const bothRule = msRule.filter((r) => r.guardIds.includes(r.ruleId));
    table[name] = {
      positiveCases: pos.length,
      negativeCases: neg.length,
      modsecBlockedPositive: msPos.length,
      guardBlockedPositive: pos.filter((r) => r.guardBlocked).length,
      recallBlockedVsModsec: pct(both.length, msPos.length),
      modsecFiredRuleUnderTest: msRule.length,
      recallRuleVsModsec: pct(bothRule.length, msRule.length),
      falsePositivesModsec: neg.filter((r) => r.msBlocked).length,
      falsePositivesGuard: neg.filter((r) => r.guardBlocked).length,
      missedVsModsec: msPos.filter((r) => !r.guardBlocked).map((r) => r.title),
      guardOnly: pos.filter((r) => r.guardBlocked && !r.msBlocked).length,
    };
  }
  const result = {
    bench: 'guard-crs', crs: '3.3.4 (Debian modsecurity-crs)', modsecurity: 'libmodsecurity3 + libnginx-mod-http-modsecurity 1.0.3, nginx 1.22',
    paranoiaLevel: o.pl, loggedHeaders: LOGGED, requests: rows.length, rejectedByNginx, skipped: o.skipped, table,
    throughput: { nginxModsecSequentialRps: Math.round(o.nginxRps), guardRegressionMixRps: Math.round(o.guardRps), guardBenignMixRps: Math.round(o.guardBenignRps) },
    machine: machineInfo(), at: new Date().toISOString(), rows,
  };
  mkdirSync(o.outDir, { recursive: true });
  const file = join(o.outDir, `guard-crs-${result.at.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(result, null, 1));
  const { rows: _r, machine: _m, ...summary } = result;
  for (const t of Object.values(table) as Array<Record<string, unknown>>) if (Array.isArray(t.missedVsModsec) && t.missedVsModsec.length > 30) t.missedVsModsec = [...t.missedVsModsec.slice(0, 30), '…'];
  console.log(JSON.stringify(summary, null, 1));
  console.log(`written ${file}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
