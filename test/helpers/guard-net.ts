// The guard's test net: network namespaces for a web host, attackers and legitimate clients, on
// veth pairs with addresses from 198.18.0.0/15; real nginx (Lua blocklist, JSON access log) and
// optionally a real sshd in the web namespace; the real `chicago agent` shipping the access log
// (and sshd's log) to a node on loopback; the `chicago guard` process enforcing in an nftables
// table of the web namespace and in nginx's shared dict. The host's firewall is never touched.
//
//   root ns: node (127.0.0.1), agent, guard ── veth 198.19.X.1/30 ── web ns: 198.19.X.2:8765 (blocklist endpoint)
//   attackers ns: every address of 198.18.128.0/17 (a local route) ── veth 198.18.0.2 ── web ns 198.18.0.1:80
//   legit ns:     every address of 198.18.64.0/18                    ── veth 198.18.0.6 ── web ns 198.18.0.5:80
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type AgentProc, startAgent } from './agent.js';
import { waitUntil } from './bridge.js';
import { cliPath, killOnExit, type NodeHandle, OutputRing, repoRoot, startNode } from './launcher.js';
import { slow } from './slow.js';

const run = promisify(execFile);
export const LUA_MODULE = '/usr/lib/nginx/modules/ngx_http_lua_module.so';
export const WEB_IP_ATTACKERS = '198.18.0.1';
export const WEB_IP_LEGIT = '198.18.0.5';
export const TABLE = 'chicago_guard_net';
export const WEB_TOPIC = 'net-web';
export const SSH_TOPIC = 'net-ssh';

/**
 * nginx.conf for a test: everything under `dir` (pid, logs, temp paths), the Lua module, the
 * guard's `dir/guard.conf` (the example's http-level part), one site serving `dir/www` with the
 * guard_json access log `dir/access.json`.
 */
export function nginxConf(dir: string, o: { listen: string; workers: number }): string {
  const tmp = path.join(dir, 'tmp');
  return `
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module ${LUA_MODULE};
worker_processes ${o.workers};
error_log ${dir}/error.log warn;
pid ${dir}/nginx.pid;
events { worker_connections 8192; }
http {
  client_body_temp_path ${tmp}/body; proxy_temp_path ${tmp}/proxy; fastcgi_temp_path ${tmp}/fastcgi;
  uwsgi_temp_path ${tmp}/uwsgi; scgi_temp_path ${tmp}/scgi;
  keepalive_requests 100000;
  include ${dir}/guard.conf;
  server {
    listen ${o.listen};
    server_name shop.example;
    access_log ${dir}/access.json guard_json;
    # not a return directive: it answers in the rewrite phase, before access_by_lua runs
    location / { root ${dir}/www; index index.html; try_files $uri $uri/ =404; }
  }
}
`;
}

/** Why the net cannot run here (undefined: it can). Creates and deletes a namespace to find out. */
export async function netUnavailable(): Promise<string | undefined> {
  for (const [bin, pkg] of [['/usr/sbin/nginx', 'nginx'], [LUA_MODULE, 'libnginx-mod-http-lua'], ['/usr/sbin/nft', 'nftables'], ['/usr/sbin/ip', 'iproute2']]) {
    if (!existsSync(bin)) return `${pkg} is not installed (scripts/test-deps.sh installs it)`;
  }
  const probe = `cgnp${process.pid.toString(36)}`;
  try {
    await run('ip', ['netns', 'add', probe]);
    await run('ip', ['netns', 'exec', probe, 'nft', 'list', 'tables']);
  } catch (err) {
    return `the kernel refuses network namespaces or nftables here: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    await run('ip', ['netns', 'del', probe]).catch(() => undefined);
  }
  return undefined;
}

export interface GuardProc { proc: ChildProcess; stdout: OutputRing; exited: Promise<unknown> }
export interface Decision { target: string; scenario: string; latencyMs: Record<string, number>; detectMs?: number; eventMs?: number; time: number }
export interface LoadResult { sent: number; status: Record<string, number>; timeouts: number; errors: number; elapsedMs: number; blockedAtMs: number; sentBeforeBlocked: number; bySource: Record<string, Record<string, number>> }
export interface LoadSpec {
  sources?: string[]; rate?: number; durationMs: number; maxRequests?: number; paths?: string[]; concurrency?: number;
  timeoutMs?: number; headers?: Record<string, string>; raw?: Array<{ src: string; data: string }>; perSource?: boolean; socketsPerSource?: number;
}

export interface NetOptions {
  /** the guard's `scenarios:` entries (YAML flow mappings) */
  scenarios: string[];
  sshd?: boolean;
  /** extra guard config lines */
  guardExtra?: string[];
}

export class GuardNet {
  readonly id = process.pid.toString(36).slice(-5);
  readonly web = `cgnw${this.id}`;
  readonly attackers = `cgna${this.id}`;
  readonly legit = `cgnl${this.id}`;
  /** root ↔ web link, per run so parallel runs do not share an address on the host */
  readonly rootIp = `198.19.${100 + (process.pid % 150)}.1`;
  readonly webCtlIp = `198.19.${100 + (process.pid % 150)}.2`;
  node!: NodeHandle;
  dir!: string;
  agent: AgentProc | undefined;
  guard!: GuardProc;
  guardConfig!: string;
  private nginx: ChildProcess | undefined;
  private sshd: ChildProcess | undefined;
  private cleanups: Array<() => Promise<unknown>> = [];
  private metricsUrl = '';
  private loads = 0;

  constructor(private readonly opts: NetOptions) {}

  get accessLog(): string { return path.join(this.dir, 'access.json'); }
  get authLog(): string { return path.join(this.dir, 'auth.log'); }

  private async ip(...args: string[]): Promise<void> { await run('ip', args, { timeout: slow(10_000) }); }

  async start(): Promise<void> {
    this.node = await startNode();
    for (const [name, partitions] of [[WEB_TOPIC, 4], [SSH_TOPIC, 1]] as const) {
      const res = await fetch(`${this.node.url}/v1/topics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name, partitions }) });
      if (res.status !== 201) throw new Error(`topic ${name}: HTTP ${res.status}`);
    }
    this.dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-guard-net-'));
    await chmod(this.dir, 0o755);
    await this.buildNamespaces();
    await this.startNginx();
    if (this.opts.sshd) await this.startSshd();
    await this.startAgent();
    await this.writeGuardConfig();
    this.guard = this.startGuard();
    await this.guard.stdout.waitFor(/"msg":"guard running"/, slow(20_000));
  }

  private async buildNamespaces(): Promise<void> {
    const { web, attackers, legit } = this;
    for (const ns of [web, attackers, legit]) {
      await this.ip('netns', 'add', ns);
      this.cleanups.push(() => this.ip('netns', 'del', ns));
      await this.ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    // veth pairs: web↔attackers, web↔legit, root↔web (the names are per run; ≤ 15 characters)
    const pairs: Array<[string, string, string, string, string, string]> = [
      [`${web}a`, web, `${WEB_IP_ATTACKERS}/30`, `${attackers}w`, attackers, '198.18.0.2/30'],
      [`${web}l`, web, `${WEB_IP_LEGIT}/30`, `${legit}w`, legit, '198.18.0.6/30'],
      [`${web}r`, web, `${this.webCtlIp}/30`, `cgnr${this.id}`, '', `${this.rootIp}/30`],
    ];
    for (const [a, nsA, addrA, b, nsB, addrB] of pairs) {
      await this.ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
      if (!nsB) this.cleanups.push(() => this.ip('link', 'del', b).catch(() => undefined));
      await this.ip('link', 'set', a, 'netns', nsA);
      if (nsB) await this.ip('link', 'set', b, 'netns', nsB);
      await this.ip('-n', nsA, 'addr', 'add', addrA, 'dev', a);
      await this.ip('-n', nsA, 'link', 'set', a, 'up');
      await this.ip(...(nsB ? ['-n', nsB] : []), 'addr', 'add', addrB, 'dev', b);
      await this.ip(...(nsB ? ['-n', nsB] : []), 'link', 'set', b, 'up');
    }
    // every address of the client ranges is local in its namespace (bind to any of them), and the
    // web host routes the range back over the veth
    await this.ip('-n', attackers, 'route', 'add', 'local', '198.18.128.0/17', 'dev', 'lo');
    await this.ip('-n', web, 'route', 'add', '198.18.128.0/17', 'via', '198.18.0.2');
    await this.ip('-n', legit, 'route', 'add', 'local', '198.18.64.0/18', 'dev', 'lo');
    await this.ip('-n', web, 'route', 'add', '198.18.64.0/18', 'via', '198.18.0.6');
  }

  private async startNginx(): Promise<void> {
    const dir = this.dir;
    const tmp = path.join(dir, 'tmp');
    await mkdir(tmp);
    await mkdir(path.join(dir, 'www/static'), { recursive: true });
    for (const p of ['index.html', 'cart', 'products', 'search', 'login', 'static/app.js', 'static/site.css', 'robots.txt']) await writeFile(path.join(dir, 'www', p), `${p}\n`);
    const example = await readFile(path.join(repoRoot, 'examples/guard/nginx-guard.conf'), 'utf8');
    // the blocklist endpoint listens on the web host's side of the root link, for the guard only
    await writeFile(path.join(dir, 'guard.conf'), example.replace('listen 127.0.0.1:8765;', `listen ${this.webCtlIp}:8765;`).replace('allow 127.0.0.1;', `allow ${this.rootIp};`));
    await writeFile(path.join(dir, 'nginx.conf'), nginxConf(dir, { listen: '80 backlog=4096', workers: 2 }));
    await writeFile(this.accessLog, '');
    this.nginx = spawn('ip', ['netns', 'exec', this.web, '/usr/sbin/nginx', '-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    this.nginx.stderr!.setEncoding('utf8').on('data', (c: string) => { err += c; });
    const proc = this.nginx;
    killOnExit(proc);
    this.cleanups.push(async () => { proc.kill('SIGQUIT'); await new Promise((r) => setTimeout(r, 200)); proc.kill('SIGKILL'); });
    await waitUntil(`nginx serving in ${this.web} (${err})`, async () => {
      const r = await this.load(this.legit, { sources: ['198.18.64.1'], rate: 100, durationMs: 1000, maxRequests: 1, paths: ['/robots.txt'] });
      return r.status['200'] === 1;
    }, slow(15_000), 100);
  }

  private async startSshd(): Promise<void> {
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(this.dir, 'host_key')]);
    await mkdir('/run/sshd', { recursive: true });
    await writeFile(this.authLog, '');
    // sshd logs to stderr (-e); each line is appended to auth.log as rsyslog writes it
    const sshd = spawn('ip', ['netns', 'exec', this.web, '/usr/sbin/sshd', '-D', '-e', '-f', '/dev/null',
      '-o', `ListenAddress=${WEB_IP_ATTACKERS}:22`, '-o', `ListenAddress=${WEB_IP_LEGIT}:22`, '-o', `HostKey=${path.join(this.dir, 'host_key')}`,
      '-o', `PidFile=${path.join(this.dir, 'sshd.pid')}`, '-o', 'UsePAM=no', '-o', 'PasswordAuthentication=yes', '-o', 'KbdInteractiveAuthentication=no',
      '-o', 'PermitRootLogin=yes', '-o', 'LogLevel=INFO', '-o', 'MaxAuthTries=3', '-o', 'MaxStartups=100'], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.sshd = sshd;
    killOnExit(sshd);
    this.cleanups.push(async () => { sshd.kill('SIGKILL'); });
    let pending = '';
    let chain = Promise.resolve();
    let listening = false;
    sshd.stderr!.setEncoding('utf8').on('data', (c: string) => {
      pending += c;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      const text = lines.filter((l) => l.trim()).map((l) => `${new Date().toISOString()} web sshd[${sshd.pid}]: ${l.replace(/\r$/, '')}\n`).join('');
      if (text.includes('Server listening')) listening = true;
      if (text) chain = chain.then(() => appendFile(this.authLog, text));
    });
    await waitUntil('sshd listening', () => listening, slow(10_000), 50);
  }

  /**
   * One ssh login with a wrong password from address `from` of namespace `ns`: 'denied' when sshd
   * answered (and logged a failure), 'timeout' when no connection was made (dropped), else ssh's error.
   */
  async sshAttempt(ns: string, user: string, from: string): Promise<string> {
    return run('ip', ['netns', 'exec', ns, 'sshpass', '-p', 'wrong', 'ssh', '-b', from, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password', '-o', 'NumberOfPasswordPrompts=1', '-o', 'ConnectTimeout=3',
      `${user}@${ns === this.legit ? WEB_IP_LEGIT : WEB_IP_ATTACKERS}`, 'true'], { timeout: slow(15_000) }).then(() => 'logged in', (e: { code?: number; stderr?: string }) => {
      const err = String(e.stderr ?? '');
      if (e.code === 5 || err.includes('Permission denied')) return 'denied';
      if (err.includes('timed out')) return 'timeout';
      return `exit ${e.code}: ${err.trim().split('\n').pop()}`;
    });
  }

  private async startAgent(): Promise<void> {
    const lines = [
      `node: { url: ${this.node.url} }`, 'host: web', 'spool: { dir: ./spool, quotaBytes: 67108864, segmentBytes: 1048576 }',
      'pollIntervalMs: 10', 'batch: { lingerMs: 1 }', 'retry: { minMs: 20, maxMs: 500 }', 'logLevel: warn',
      'sources:', `  - { task: nginx, paths: [${this.accessLog}], topic: ${WEB_TOPIC}, key: { json: remote_addr } }`,
    ];
    if (this.opts.sshd) lines.push(`  - { task: sshd, paths: [${this.authLog}], topic: ${SSH_TOPIC}, parse: sshd }`);
    await writeFile(path.join(this.dir, 'agent.yaml'), lines.join('\n'));
    this.agent = startAgent(path.join(this.dir, 'agent.yaml'));
    const agent = this.agent;
    this.cleanups.push(async () => { agent.proc.kill('SIGKILL'); });
  }

  private async writeGuardConfig(): Promise<void> {
    this.guardConfig = path.join(this.dir, 'guard.yaml');
    await writeFile(this.guardConfig, [
      `node: { url: ${this.node.url} }`, 'guardId: guard-net',
      'inputs:', `  - { topic: ${WEB_TOPIC}, from: earliest }`, ...(this.opts.sshd ? [`  - { topic: ${SSH_TOPIC}, format: sshd, from: earliest }`] : []),
      'scenarios:', ...this.opts.scenarios.map((s) => `  - ${s}`),
      `nftables: { command: [ip, netns, exec, ${this.web}, nft], table: ${TABLE} }`,
      `nginx: { urls: [http://${this.webCtlIp}:8765/guard/blocklist] }`,
      'metrics: { host: 127.0.0.1, port: 0 }',
      'logLevel: info',
      ...(this.opts.guardExtra ?? []),
    ].join('\n'));
  }

  startGuard(): GuardProc {
    const proc = spawn(process.execPath, [cliPath, 'guard', '--config', this.guardConfig], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout = new OutputRing();
    proc.stdout!.setEncoding('utf8').on('data', (c: string) => stdout.feed(c));
    proc.stderr!.setEncoding('utf8').on('data', (c: string) => stdout.feed(c));
    const exited = new Promise((resolve) => proc.once('close', resolve));
    killOnExit(proc);
    this.cleanups.push(async () => { proc.kill('SIGKILL'); });
    this.metricsUrl = '';
    return { proc, stdout, exited };
  }

  /** Runs the load script in `ns`; resolves with its counts. */
  async load(ns: string, spec: LoadSpec): Promise<LoadResult> {
    const host = ns === this.legit ? WEB_IP_LEGIT : WEB_IP_ATTACKERS;
    const full = { host, port: 80, rate: 1000, maxRequests: 1_000_000, paths: ['/'], concurrency: 16, ...spec };
    const specFile = path.join(this.dir, `load-${++this.loads}.json`);
    await writeFile(specFile, JSON.stringify(full));
    const { stdout } = await run('ip', ['netns', 'exec', ns, process.execPath, path.join(repoRoot, 'test/helpers/guard-net-load.mjs'), specFile],
      { timeout: spec.durationMs + slow(30_000), maxBuffer: 64 * 1024 * 1024 });
    return JSON.parse(stdout) as LoadResult;
  }

  /**
   * wrk from `ns` (source: the namespace's veth address, 198.18.0.2 or 198.18.0.6) at about
   * `connections × 1000 / delayMs` requests/s (wrk's per-connection delay) for `seconds`.
   */
  async wrk(ns: string, o: { connections: number; delayMs: number; seconds: number; path: string }): Promise<string> {
    const script = path.join(this.dir, `wrk-${o.delayMs}.lua`);
    await writeFile(script, `function delay() return ${o.delayMs} end\n`);
    const host = ns === this.legit ? WEB_IP_LEGIT : WEB_IP_ATTACKERS;
    const { stdout } = await run('ip', ['netns', 'exec', ns, 'wrk', '-t1', `-c${o.connections}`, `-d${o.seconds}s`, '--timeout', '1s', '-s', script, `http://${host}${o.path}`],
      { timeout: slow(o.seconds * 1000 + 30_000) });
    return stdout;
  }

  decisions(effect = 'ban', g: GuardProc = this.guard): Decision[] {
    return g.stdout.lines().filter((l) => l.includes(`"msg":"decision ${effect}"`)).map((l) => JSON.parse(l) as Decision);
  }

  async metrics(g: GuardProc = this.guard): Promise<string> {
    if (!this.metricsUrl) {
      await g.stdout.waitFor(/"msg":"metrics listening"/, slow(10_000));
      this.metricsUrl = (JSON.parse(g.stdout.lines().find((l) => l.includes('"msg":"metrics listening"'))!) as { metrics: string }).metrics;
    }
    return (await fetch(this.metricsUrl)).text();
  }

  async linesRead(topic = WEB_TOPIC): Promise<number> {
    const m = new RegExp(`^guard_lines_total\\{topic="${topic}"\\} (\\d+)$`, 'm').exec(await this.metrics());
    return m ? Number(m[1]) : 0;
  }

  async rejected(): Promise<Record<string, number>> {
    const text = await this.metrics();
    return Object.fromEntries([...text.matchAll(/^guard_rejected_total\{reason="([a-z_]+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
  }

  async nftSet(set: 'v4' | 'v4net' | 'v6' | 'v6net'): Promise<string> {
    const { stdout } = await run('ip', ['netns', 'exec', this.web, 'nft', 'list', 'set', 'inet', TABLE, set], { timeout: slow(5000) });
    return stdout;
  }

  /** logrotate (rename, new file, USR1 to nginx to reopen), as Debian's /etc/logrotate.d/nginx does. */
  async rotate(): Promise<void> {
    const conf = path.join(this.dir, 'logrotate.conf');
    await writeFile(conf, `${this.accessLog} {\n  rotate 5\n  missingok\n  nocompress\n  create 0644 root root\n  postrotate\n    kill -USR1 $(cat ${this.dir}/nginx.pid)\n  endscript\n}\n`);
    await run('logrotate', ['-f', '-s', path.join(this.dir, 'logrotate.state'), conf], { timeout: slow(10_000) });
  }

  /** The guard's table gone, as on a rebooted or new front end. */
  async nftDropTable(): Promise<void> {
    await run('ip', ['netns', 'exec', this.web, 'nft', 'delete', 'table', 'inet', TABLE], { timeout: slow(5000) });
  }

  /** Removes an address from the nft set (so that nginx's own refusal can be seen). */
  async nftForget(ip: string): Promise<void> {
    await run('ip', ['netns', 'exec', this.web, 'nft', 'delete', 'element', 'inet', TABLE, 'v4', `{ ${ip} }`], { timeout: slow(5000) });
  }

  /** Lines of the access log (and its rotated copies), parsed; `src` keeps one client's. */
  async accessLines(src?: string, files = [this.accessLog]): Promise<Array<{ msec: number; remote_addr: string; status: string; request_uri: string }>> {
    const out: Array<{ msec: number; remote_addr: string; status: string; request_uri: string }> = [];
    for (const f of files) {
      const text = await readFile(f, 'utf8').catch(() => '');
      for (const l of text.split('\n')) {
        if (!l.startsWith('{"msec"')) continue;
        const j = JSON.parse(l) as { msec: string; remote_addr: string; status: string; request_uri: string };
        if (src === undefined || j.remote_addr === src) out.push({ ...j, msec: Math.round(Number(j.msec) * 1000) });
      }
    }
    return out;
  }

  async stop(): Promise<void> {
    for (const c of this.cleanups.reverse()) await c().catch(() => undefined);
    await this.node?.stop();
  }
}

/** `[ip…]` in a listing of an nft set */
export const inSet = (listing: string, target: string) => new RegExp(`[\\s{,]${target.replace(/[.:/]/g, '\\$&')} timeout \\S+ expires`).test(listing);

export const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
