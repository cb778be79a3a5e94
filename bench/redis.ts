// The Redis 7 baseline: Debian's redis-server, started by the bench on a free loopback port,
// driven by ioredis through the same open-loop generator as Chicago.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export type RedisPersistence = 'none' | 'aof-everysec' | 'aof-always';

function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  const p = r.stdout.trim();
  return r.status === 0 && p !== '' ? p : undefined;
}

/** Finds redis-server, installing Debian's package when it is missing (needs root and apt). */
export function ensureRedisServer(log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): string {
  const found = which('redis-server');
  if (found) return found;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new Error('redis-server is not installed; run `sudo apt-get install -y redis-server` (Debian) first');
  }
  log('redis-server missing: apt-get update && apt-get install -y redis-server');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'redis-server']]) {
    const r = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (${r.status ?? r.signal})`);
  }
  // the package may start a system service on 6379; the bench uses its own instance and port
  spawnSync('sh', ['-c', 'service redis-server stop >/dev/null 2>&1 || true']);
  const after = which('redis-server');
  if (!after) throw new Error('redis-server still missing after apt-get install');
  return after;
}

export function redisVersion(bin: string): string {
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8' });
    return /v=(\S+)/.exec(out)?.[1] ?? out.trim();
  } catch {
    return 'unknown';
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  port: number;
  pid: number;
  version: string;
  persistence: RedisPersistence;
  stop(): Promise<void>;
}

export async function startRedis(persistence: RedisPersistence): Promise<RedisServer> {
  const bin = ensureRedisServer();
  const version = redisVersion(bin);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'chicago-bench-redis-'));
  const persist =
    persistence === 'none'
      ? ['--appendonly', 'no']
      : ['--appendonly', 'yes', '--appendfsync', persistence === 'aof-always' ? 'always' : 'everysec'];
  const child = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--daemonize', 'no', ...persist],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${lines.join('\n')}`)), 15_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      for (const l of chunk.split('\n')) {
        if (lines.length < 50) lines.push(l);
        if (l.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => lines.push(c));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited (${code}):\n${lines.join('\n')}`));
    });
  });
  return {
    port,
    pid: child.pid ?? -1,
    version,
    persistence,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** SET/GET over `connections` ioredis connections, round robin; commands pipeline on each. */
export class RedisKv {
  private constructor(private readonly conns: Redis[]) {}
  private rr = 0;

  static async connect(port: number, connections: number): Promise<RedisKv> {
    const conns: Redis[] = [];
    for (let i = 0; i < connections; i++) {
      const r = new Redis({
        host: '127.0.0.1',
        port,
        lazyConnect: true,
        enableAutoPipelining: true,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
      });
      await r.connect();
      conns.push(r);
    }
    return new RedisKv(conns);
  }

  private next(): Redis {
    const c = this.conns[this.rr]!;
    this.rr = (this.rr + 1) % this.conns.length;
    return c;
  }

  put(key: string, value: Buffer): Promise<unknown> {
    return this.next().set(key, value);
  }

  get(key: string): Promise<unknown> {
    return this.next().getBuffer(key);
  }

  async close(): Promise<void> {
    await Promise.all(this.conns.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
