// The replicated anchors of the cluster benchmark, each started by the bench on loopback and
// stopped after its row (SIGKILLed should the bench die first):
// - Redis primary + 2 replicas (Debian's redis-server, `replicaof`); a write is `SET k v` then
//   `WAIT 2 <timeout>` on the same connection, done only when WAIT reports both replicas;
// - etcd, 3 members (Debian's etcd), written with `put` through the etcd3 client.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { Redis } from 'ioredis';
import { etcdBinary } from './cluster.js';
import { atExit, spawnLogged, waitFor, type LoggedProc } from './proc.js';
import { ensureRedisServer, freePort, redisVersion, type RedisPersistence } from './redis.js';

const HOST = '127.0.0.1';
/** start: every member ready within this */
const READY_TIMEOUT_MS = 30_000;
/** a port picked free can be taken before the server binds it: start again on new ports this often */
const START_ATTEMPTS = 3;

/**
 * A group of server processes under one temp dir; stop() (or the bench's exit) ends them all with
 * SIGKILL: their data is thrown away, and an etcd member given SIGTERM waits to hand its
 * leadership to peers that are stopping too.
 */
export interface AnchorGroup {
  pids: number[];
  version: string;
  stop(): Promise<void>;
}

function group(procs: LoggedProc[], dir: string): () => Promise<void> {
  const unhook = atExit(() => rmSync(dir, { recursive: true, force: true }));
  return async () => {
    await Promise.all(
      procs.map(async (p) => {
        p.child.kill('SIGKILL');
        await p.exited;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
    unhook();
  };
}

const tail = (procs: LoggedProc[], names: string[]): string =>
  procs.map((p, i) => `--- ${names[i]}\n${p.out.slice(-15).join('\n')}`).join('\n');

/** Retries `start` on new ports when a server lost its port to another process. */
async function withPortRetries<T>(what: string, start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (attempt >= START_ATTEMPTS || !/address already in use|EADDRINUSE/i.test((e as Error).message)) {
        throw new Error(`${what} did not start: ${(e as Error).message}`);
      }
    }
  }
}

// ---- Redis primary + replicas ------------------------------------------------------------------

export interface RedisGroup extends AnchorGroup {
  /** the primary's port; the replicas' ports follow in `replicaPorts` */
  port: number;
  replicaPorts: number[];
  persistence: RedisPersistence;
}

const redisPersistArgs = (p: RedisPersistence): string[] =>
  p === 'none' ? ['--appendonly', 'no'] : ['--appendonly', 'yes', '--appendfsync', p === 'aof-always' ? 'always' : 'everysec'];

/** Lines of `INFO replication` as a map. */
async function replicationInfo(port: number): Promise<Map<string, string>> {
  const c = new Redis({ host: HOST, port, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 1000 });
  try {
    await c.connect();
    const text = await c.info('replication');
    return new Map(text.split(/\r?\n/).filter((l) => l.includes(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
  } finally {
    c.disconnect();
  }
}

/** A primary and `replicas` replicas (`--replicaof`), ready when every replica's link is up and the primary lists them online. */
export async function startRedisGroup(persistence: RedisPersistence, replicas: number): Promise<RedisGroup> {
  const bin = ensureRedisServer();
  const version = redisVersion(bin);
  return withPortRetries('redis primary + replicas', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chicago-bench-redis-wait-'));
    const procs: LoggedProc[] = [];
    const names: string[] = [];
    const stop = group(procs, dir);
    const start = (name: string, port: number, extra: string[]): void => {
      const sub = join(dir, name);
      mkdirSync(sub, { recursive: true });
      names.push(name);
      procs.push(
        spawnLogged(bin, ['--port', String(port), '--bind', HOST, '--save', '', '--dir', sub, '--daemonize', 'no', ...redisPersistArgs(persistence), ...extra], `redis ${name}`),
      );
    };
    try {
      const port = await freePort();
      // replicas sync at once, not after the default 5 s wait for more replicas to join a diskless sync
      start('primary', port, ['--repl-diskless-sync-delay', '0']);
      await waitFor('the redis primary', () => procs[0]!.out.some((l) => l.includes('Ready to accept connections')) || exitedEarly(procs), READY_TIMEOUT_MS, () => tail(procs, names));
      failIfExited(procs, names);
      const replicaPorts: number[] = [];
      for (let i = 0; i < replicas; i++) {
        const rp = await freePort();
        replicaPorts.push(rp);
        start(`replica${i + 1}`, rp, ['--replicaof', HOST, String(port)]);
      }
      await waitFor(
        `${replicas} replicas in sync with the primary`,
        async () => {
          failIfExited(procs, names);
          try {
            const p = await replicationInfo(port);
            const online = [...p.entries()].filter(([k, v]) => /^slave\d+$/.test(k) && v.includes('state=online')).length;
            if (online < replicas) return false;
            for (const rp of replicaPorts) if ((await replicationInfo(rp)).get('master_link_status') !== 'up') return false;
            return true;
          } catch {
            return false;
          }
        },
        READY_TIMEOUT_MS,
        () => tail(procs, names),
        100,
      );
      return { port, replicaPorts, pids: procs.map((p) => p.pid), version, persistence, stop };
    } catch (e) {
      await stop();
      throw e;
    }
  });
}

function exitedEarly(procs: LoggedProc[]): boolean {
  return procs.some((p) => p.child.exitCode !== null || p.child.signalCode !== null);
}

function failIfExited(procs: LoggedProc[], names: string[]): void {
  if (exitedEarly(procs)) throw new Error(`a server exited during start:\n${tail(procs, names)}`);
}

/**
 * `SET k v` then `WAIT replicas timeoutMs` on one of `connections` connections to the primary. WAIT
 * blocks its connection until the replicas acknowledge, so a write goes to the connection with the
 * fewest writes outstanding (many connections stand for many clients). A WAIT that reports fewer
 * replicas than asked rejects: that write failed, whatever the primary holds.
 */
export class RedisWaitKv {
  private readonly outstanding: number[];
  private rr = 0;
  private constructor(
    private readonly conns: Redis[],
    private readonly replicas: number,
    private readonly waitTimeoutMs: number,
  ) {
    this.outstanding = conns.map(() => 0);
  }

  static async connect(port: number, connections: number, replicas: number, waitTimeoutMs: number): Promise<RedisWaitKv> {
    const conns: Redis[] = [];
    try {
      for (let i = 0; i < connections; i++) {
        const r = new Redis({ host: HOST, port, lazyConnect: true, enableAutoPipelining: true, maxRetriesPerRequest: 0, enableOfflineQueue: false });
        // a lost connection fails its writes (counted as errors); the event itself needs no report per reconnect attempt
        r.on('error', () => undefined);
        conns.push(r);
        await r.connect();
      }
    } catch (e) {
      for (const c of conns) c.disconnect();
      throw e;
    }
    return new RedisWaitKv(conns, replicas, waitTimeoutMs);
  }

  /** the least busy connection; ties go round robin so that idle connections share the load */
  private pick(): number {
    const n = this.conns.length;
    let best = this.rr;
    for (let j = 0; j < n; j++) {
      const i = (this.rr + j) % n;
      if (this.outstanding[i]! < this.outstanding[best]!) best = i;
      if (this.outstanding[best] === 0) break;
    }
    this.rr = (best + 1) % n;
    return best;
  }

  async put(key: string, value: Buffer): Promise<void> {
    const i = this.pick();
    const c = this.conns[i]!;
    this.outstanding[i]!++;
    try {
      // both in one write (auto-pipelining): WAIT covers this SET and every earlier one of the connection
      const [, acked] = await Promise.all([c.set(key, value), c.wait(this.replicas, this.waitTimeoutMs)]);
      if (acked < this.replicas) throw new Error(`WAIT ${this.replicas} ${this.waitTimeoutMs} answered ${acked}`);
    } finally {
      this.outstanding[i]!--;
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.conns.map((c) => c.quit().catch(() => c.disconnect())));
  }
}

// ---- etcd, 3 members ---------------------------------------------------------------------------

export interface EtcdGroup extends AnchorGroup {
  endpoints: string[];
}

async function etcdHealthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

function etcdVersion(bin: string): string {
  try {
    return /etcd Version: (\S+)/.exec(execFileSync(bin, ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** `members` etcd members on loopback (free client and peer ports, data dirs under one temp dir), ready when each reports healthy. */
export async function startEtcdGroup(members: number, log: (s: string) => void): Promise<EtcdGroup> {
  const bin = etcdBinary(log);
  const version = etcdVersion(bin);
  return withPortRetries(`etcd (${members} members)`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'chicago-bench-etcd3-'));
    const procs: LoggedProc[] = [];
    const stop = group(procs, dir);
    const names = Array.from({ length: members }, (_, i) => `m${i + 1}`);
    try {
      const ports: Array<{ client: number; peer: number }> = [];
      for (let i = 0; i < members; i++) ports.push({ client: await freePort(), peer: await freePort() });
      const peerUrl = (i: number): string => `http://${HOST}:${ports[i]!.peer}`;
      const clientUrl = (i: number): string => `http://${HOST}:${ports[i]!.client}`;
      const initial = names.map((n, i) => `${n}=${peerUrl(i)}`).join(',');
      names.forEach((name, i) => {
        procs.push(
          spawnLogged(
            bin,
            [
              '--name', name, '--data-dir', join(dir, name),
              '--listen-client-urls', clientUrl(i), '--advertise-client-urls', clientUrl(i),
              '--listen-peer-urls', peerUrl(i), '--initial-advertise-peer-urls', peerUrl(i),
              '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', `bench-${ports[0]!.client}`,
              '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
            ],
            `etcd ${name}`,
          ),
        );
      });
      const endpoints = names.map((_, i) => clientUrl(i));
      await waitFor(
        `${members} etcd members healthy`,
        async () => {
          failIfExited(procs, names);
          return (await Promise.all(endpoints.map(etcdHealthy))).every(Boolean);
        },
        READY_TIMEOUT_MS,
        () => tail(procs, names),
        100,
      );
      return { endpoints, pids: procs.map((p) => p.pid), version, stop };
    } catch (e) {
      await stop();
      throw e;
    }
  });
}

/**
 * `put` through etcd3 clients (each with a gRPC channel to every member; a call goes to a member
 * picked at random, which forwards to the raft leader). No retries: a failed put is an error.
 */
export class EtcdKv {
  private rr = 0;
  private constructor(private readonly clients: Etcd3[]) {}

  static connect(endpoints: string[], clients: number, timeoutMs: number): EtcdKv {
    const make = (): Etcd3 =>
      new Etcd3({
        hosts: endpoints,
        dialTimeout: timeoutMs,
        defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeoutMs }),
        faultHandling: { global: noop, host: () => noop },
      });
    return new EtcdKv(Array.from({ length: clients }, make));
  }

  async put(key: string, value: Buffer): Promise<void> {
    const c = this.clients[this.rr]!;
    this.rr = (this.rr + 1) % this.clients.length;
    await c.put(key).value(value).exec();
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}
