// A thin layer over the etcd3 client: one key prefix per cluster, JSON values checked by the
// layout's parsers, a deadline on every call, and errors the node can act on
// (COORDINATION_UNAVAILABLE is retryable; anything else is a bug or a foreign writer).
import type { CallOptions } from '@grpc/grpc-js';
import { ConsecutiveBreaker, ConstantBackoff, circuitBreaker, handleWhen, isBrokenCircuitError, retry } from 'cockatiel';
import {
  ClientClosedError, Etcd3, EtcdLeaseInvalidError, GRPCDeadlineExceededError, type IKeyValue, type IWatchResponse,
  type Namespace, type Watcher, isRecoverableError,
} from 'etcd3';
import { EventEmitter } from 'node:events';
import { ChicagoError } from '../runtime/errors.js';
import { LayoutError } from './layout.js';

export interface CoordinationOptions {
  /** etcd client URLs, e.g. ['http://127.0.0.1:2379'] */
  endpoints: readonly string[];
  /** keys live under `/chicago/<cluster>/` */
  cluster?: string;
  /** deadline of one call, retries included */
  callTimeoutMs?: number;
  /** for https:// endpoints: the CA that signed etcd's certificate, and this node's client certificate (PEM) */
  tls?: { ca: string; cert?: string; key?: string };
}

/** A value as stored, with the revision a CAS compares against. */
export interface Stored<T> { value: T; modRevision: number; lease: string }

export type Parse<T> = (key: string, json: unknown) => T;

export const DEFAULT_CLUSTER = 'default';
/** etcd answers on loopback in about a millisecond; 1.5 s means it is down or partitioned away */
const CALL_TIMEOUT_MS = 1_500;
/** a mirror that lost its watch lists again after this long, doubling up to the max */
const RESYNC_BACKOFF_MS = 50;
const RESYNC_BACKOFF_MAX_MS = 1_000;

/** etcd revisions are int64 strings; they must stay exact as JS numbers. */
export function revision(s: string | number | undefined): number {
  const n = Number(s ?? 0);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`etcd: revision ${String(s)} is not a safe integer`);
  return n;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A connection to the cluster's etcd with its key prefix. */
export class Coordination {
  readonly cluster: string;
  readonly prefix: string;
  readonly callTimeoutMs: number;
  /** the etcd3 namespace of this cluster: every key is relative to `prefix` */
  readonly kv: Namespace;
  private readonly client: Etcd3;
  private closed = false;

  constructor(opts: CoordinationOptions) {
    if (opts.endpoints.length === 0) throw new ChicagoError('INVALID_ARGUMENT', 'etcd endpoints', 'none given');
    this.cluster = opts.cluster ?? DEFAULT_CLUSTER;
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(this.cluster)) throw new ChicagoError('INVALID_NAME', 'cluster', this.cluster);
    this.callTimeoutMs = opts.callTimeoutMs ?? CALL_TIMEOUT_MS;
    this.prefix = `/chicago/${this.cluster}/`;
    const timeout = this.callTimeoutMs;
    this.client = new Etcd3({
      hosts: [...opts.endpoints],
      ...(opts.tls ? {
        credentials: {
          rootCertificate: Buffer.from(opts.tls.ca),
          ...(opts.tls.cert && opts.tls.key ? { certChain: Buffer.from(opts.tls.cert), privateKey: Buffer.from(opts.tls.key) } : {}),
        },
      } : {}),
      dialTimeout: timeout,
      // Streams (watch, keepalive) live long; every unary call gets the call deadline.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      faultHandling: {
        // The library default opens a host's circuit for 5 s after 3 failures: far too long for a
        // failover budget of 500 ms. One quick retry on another endpoint, a short open circuit.
        global: retry(handleWhen(isRecoverableError), { maxAttempts: 1, backoff: new ConstantBackoff(20) }),
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 250, breaker: new ConsecutiveBreaker(3) }),
        // No watchBackoff: a PrefixMirror drops its watcher when the stream breaks and lists again
        // on its own schedule, so the client's reconnect never runs for it.
      },
    });
    this.kv = this.client.namespace(this.prefix);
  }

  /**
   * Runs one etcd call with a deadline. A call that times out may still be applied by etcd:
   * writers that care (CAS, creates) read back to learn the outcome.
   */
  async call<T>(what: string, fn: (opts: CallOptions) => Promise<T>, timeoutMs = this.callTimeoutMs): Promise<T> {
    if (this.closed) throw new ChicagoError('COORDINATION_UNAVAILABLE', `${what}: etcd client closed`);
    let timer: NodeJS.Timeout | undefined;
    const work = fn({ deadline: Date.now() + timeoutMs });
    work.catch(() => undefined); // it may lose the race below; its rejection is not news then
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ChicagoError('COORDINATION_UNAVAILABLE', `${what} timed out after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([work, late]);
    } catch (err) {
      throw coordinationError(what, err);
    } finally {
      clearTimeout(timer);
    }
  }

  async getJson<T>(key: string, parse: Parse<T>): Promise<Stored<T> | undefined> {
    const res = await this.call(`get ${key}`, (o) => this.kv.get(key).options(o).exec());
    const kv = res.kvs[0];
    return kv ? decode(key, kv, parse) : undefined;
  }

  /** Every key under `prefix` (relative to the cluster prefix), at one revision. */
  async listJson<T>(prefix: string, parse: Parse<T>): Promise<{ revision: number; entries: Map<string, Stored<T>> }> {
    const res = await this.call(`list ${prefix}`, (o) => this.kv.getAll().prefix(prefix).options(o).exec());
    if (res.more) throw new ChicagoError('INTERNAL', `list ${prefix}: etcd returned a partial range`);
    const entries = new Map<string, Stored<T>>();
    for (const kv of res.kvs) {
      const key = this.relative(kv.key);
      entries.set(key, decode(key, kv, parse));
    }
    return { revision: revision(res.header.revision), entries };
  }

  /** A cache of every key under `prefix` that follows etcd; see PrefixMirror. */
  mirror<T>(prefix: string, parse: Parse<T>): PrefixMirror<T> { return new PrefixMirror(this, prefix, parse); }

  /** Keys in range and txn responses carry the full prefix (only watches strip it). */
  relative(key: Buffer): string {
    const s = key.toString('utf8');
    return s.startsWith(this.prefix) ? s.slice(this.prefix.length) : s;
  }

  /** Closes the connection. Leases are not revoked: their keys expire after the TTL. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }
}

export function decode<T>(key: string, kv: IKeyValue, parse: Parse<T>): Stored<T> {
  let json: unknown;
  try {
    json = JSON.parse(kv.value.toString('utf8'));
  } catch {
    throw new LayoutError(key, 'value is not JSON');
  }
  return { value: parse(key, json), modRevision: revision(kv.mod_revision), lease: String(kv.lease ?? '0') };
}

export const encode = (value: unknown): string => JSON.stringify(value);

/** The lease a key was attached to is gone (expired or revoked). */
export function isLeaseLost(err: unknown): boolean {
  return err instanceof EtcdLeaseInvalidError || (err instanceof ChicagoError && err.cause instanceof EtcdLeaseInvalidError);
}

function coordinationError(what: string, err: unknown): ChicagoError {
  if (err instanceof ChicagoError) return err;
  if (err instanceof LayoutError) return withCause(new ChicagoError('INTERNAL', err.message), err);
  const msg = err instanceof Error ? err.message : String(err);
  const unavailable = err instanceof Error && (
    isRecoverableError(err) || isBrokenCircuitError(err) || err instanceof GRPCDeadlineExceededError
    || err instanceof ClientClosedError || err instanceof EtcdLeaseInvalidError);
  return withCause(new ChicagoError(unavailable ? 'COORDINATION_UNAVAILABLE' : 'INTERNAL', `${what}: ${msg}`), err);
}

function withCause(e: ChicagoError, cause: unknown): ChicagoError {
  (e as { cause?: unknown }).cause = cause;
  return e;
}

/** One key's change; `value` undefined means deleted. */
export interface Change<T> { key: string; value: T | undefined; modRevision: number }

interface MirrorEvents<T> {
  /** changes in revision order; `revision`: every event up to it is reflected */
  changes: [changes: Change<T>[], revision: number];
  /** a background problem (watch lost, relist failed, unreadable record); the mirror keeps trying */
  warning: [err: Error];
}

/**
 * The keys under a prefix, kept current: list at revision R, then watch from R+1, so no event is
 * missed. When the watch breaks (etcd restart, compaction, network) the mirror lists again and
 * delivers the difference, instead of trusting the client's resume point. Listeners run
 * synchronously, so nothing queues up inside; the state is bounded by the keys in etcd.
 */
export class PrefixMirror<T> extends EventEmitter<MirrorEvents<T>> {
  private readonly entries = new Map<string, Stored<T>>();
  /** every event up to this revision is reflected in `entries` */
  private applied = 0;
  private watcher: Watcher | undefined;
  private state: 'idle' | 'starting' | 'running' | 'resyncing' | 'closed' = 'idle';
  private resyncTimer: NodeJS.Timeout | undefined;
  private backoffMs = RESYNC_BACKOFF_MS;

  constructor(private readonly coord: Coordination, readonly prefix: string, private readonly parse: Parse<T>) {
    super();
  }

  get revision(): number { return this.applied; }
  get(key: string): Stored<T> | undefined { return this.entries.get(key); }
  values(): IterableIterator<Stored<T>> { return this.entries.values(); }
  keys(): IterableIterator<string> { return this.entries.keys(); }
  get size(): number { return this.entries.size; }
  get running(): boolean { return this.state === 'running' || this.state === 'resyncing'; }

  /** Lists and starts watching; emits `changes` once with the initial content (possibly empty). */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new Error(`mirror ${this.prefix}: start() in state ${this.state}`);
    this.state = 'starting';
    try {
      await this.sync(true);
      this.state = 'running';
    } catch (err) {
      this.state = 'idle';
      await this.dropWatcher();
      throw err;
    }
  }

  /**
   * Records a write this process made and saw acknowledged, so its own reads see it before the
   * watch delivers it. Ignored when the watch is already past that revision.
   */
  applyLocal(key: string, value: T | undefined, modRevision: number): void {
    if (!key.startsWith(this.prefix)) throw new Error(`mirror ${this.prefix}: foreign key ${key}`);
    if (modRevision < this.applied) return; // set() drops a repeat of the same revision
    const change = this.set(key, value === undefined ? undefined : { value, modRevision, lease: '0' }, modRevision);
    if (change) this.emit('changes', [change], this.applied);
  }

  async close(): Promise<void> {
    this.state = 'closed';
    clearTimeout(this.resyncTimer);
    await this.dropWatcher();
  }

  private async sync(initial: boolean): Promise<void> {
    const { revision: rev, entries } = await this.coord.listJson(this.prefix, this.parse);
    if (rev < this.applied) throw new Error(`mirror ${this.prefix}: etcd went back from revision ${this.applied} to ${rev}`);
    const changes: Change<T>[] = [];
    for (const [key, old] of this.entries) {
      if (!entries.has(key)) {
        this.entries.delete(key);
        changes.push({ key, value: undefined, modRevision: Math.max(old.modRevision, rev) });
      }
    }
    for (const [key, now] of entries) {
      if (this.entries.get(key)?.modRevision === now.modRevision) continue;
      this.entries.set(key, now);
      changes.push({ key, value: now.value, modRevision: now.modRevision });
    }
    this.applied = rev;
    if (initial || changes.length > 0) this.emit('changes', changes, rev);
    await this.watchFrom(rev + 1);
  }

  private async watchFrom(start: number): Promise<void> {
    const w = this.coord.kv.watch().prefix(this.prefix).startRevision(String(start)).watcher();
    this.watcher = w;
    w.on('data', (res) => this.onData(w, res));
    w.on('disconnected', (err) => this.lost(w, err));
    w.on('error', (err) => this.lost(w, err));
    await this.coord.call(`watch ${this.prefix}`, () => new Promise<void>((resolve, reject) => {
      w.once('connected', () => resolve());
      w.once('error', reject);
      w.once('disconnected', reject);
    }));
  }

  private onData(w: Watcher, res: IWatchResponse): void {
    if (w !== this.watcher) return;
    const changes: Change<T>[] = [];
    for (const ev of res.events) {
      const rev = revision(ev.kv.mod_revision);
      // One transaction writes many keys at one revision: only an older revision is a repeat.
      if (rev < this.applied) continue;
      // The watcher already stripped the cluster prefix from event keys.
      const key = ev.kv.key.toString('utf8');
      let stored: Stored<T> | undefined;
      if (ev.type === 'Put') {
        try {
          stored = decode(key, ev.kv, this.parse);
        } catch (err) {
          this.emit('warning', err as Error);
          this.applied = rev;
          continue;
        }
      }
      const change = this.set(key, stored, rev);
      this.applied = rev;
      if (change) changes.push(change);
    }
    if (changes.length > 0) this.emit('changes', changes, this.applied);
  }

  /** Updates one key; the change when the state differs, undefined for a repeat. */
  private set(key: string, stored: Stored<T> | undefined, modRevision: number): Change<T> | undefined {
    const old = this.entries.get(key);
    if (stored === undefined) {
      if (!old) return undefined;
      this.entries.delete(key);
    } else {
      if (old?.modRevision === modRevision) return undefined;
      this.entries.set(key, stored);
    }
    return { key, value: stored?.value, modRevision };
  }

  private lost(w: Watcher, err: Error): void {
    if (w !== this.watcher || this.state !== 'running') return;
    this.state = 'resyncing';
    this.emit('warning', err);
    void this.dropWatcher();
    this.scheduleResync();
  }

  private scheduleResync(): void {
    if (this.state === 'closed') return;
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(() => void this.resync(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, RESYNC_BACKOFF_MAX_MS);
  }

  private async resync(): Promise<void> {
    if (this.state !== 'resyncing') return;
    try {
      await this.sync(false);
      if (this.state !== 'resyncing') return void this.dropWatcher(); // closed meanwhile
      this.state = 'running';
      this.backoffMs = RESYNC_BACKOFF_MS;
    } catch (err) {
      if (this.state !== 'resyncing') return;
      this.emit('warning', err as Error);
      await this.dropWatcher();
      this.scheduleResync();
    }
  }

  private async dropWatcher(): Promise<void> {
    const w = this.watcher;
    this.watcher = undefined;
    if (!w) return;
    await this.coord.call(`unwatch ${this.prefix}`, () => w.cancel()).catch(() => undefined);
  }
}
