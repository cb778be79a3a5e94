// Cluster membership on etcd leases: a node's key `nodes/<id>` lives exactly as long as its lease.
// The lease is the truth about who is up; node-to-node heartbeats only make suspicion faster.
import { EventEmitter } from 'node:events';
import type { Lease } from 'etcd3';
import { ChicagoError } from '../runtime/errors.js';
import type { NodeId } from '../runtime/ids.js';
import { type Coordination, type PrefixMirror, encode, isLeaseLost, revision, sleep } from './etcd.js';
import { type NodeRecord, type NodeState, keys, parseNode } from './layout.js';

/**
 * etcd 3.4 raises any TTL below 3/2 × election timeout (1 s by default) to 2 s, so 2 s is the
 * smallest lease it grants. A keepalive every 500 ms leaves three misses before expiry: a pause or
 * GC stall under ~1.5 s never drops the key, a kill -9 drops it within TTL + etcd's 500 ms sweep.
 */
export const LEASE_TTL_S = 2;
export const KEEPALIVE_INTERVAL_MS = 500;
/**
 * When the keepalive after one sent at `sentAtMs` goes: on the first multiple of the interval on the
 * wall clock at least a tenth of an interval later (at most 1.1 intervals), where the node's
 * periodic checks fall (cluster.ts): the thread wakes once for both.
 */
export function keepaliveDue(sentAtMs: number, intervalMs: number): number {
  const due = Math.floor((sentAtMs + intervalMs) / intervalMs) * intervalMs;
  return due - sentAtMs < intervalMs / 10 ? due + intervalMs : due;
}
/** one keepalive round trip; the next starts only after this one ends, so they never pile up */
const KEEPALIVE_TIMEOUT_MS = 1_000;
const REREGISTER_BACKOFF_MS = 100;
const REREGISTER_BACKOFF_MAX_MS = 1_000;
/** polling a key held by another lease while waiting for it to expire */
const TAKEOVER_POLL_MS = 200;

export interface MembershipOptions {
  ttlSeconds?: number;
  keepaliveIntervalMs?: number;
  /**
   * How long register() waits for a key of the same node id held by another lease to expire (a
   * restart right after kill -9). Still held after that: another live process uses this id.
   */
  takeoverWaitMs?: number;
  nowMs?: () => number;
}

export interface MembershipView {
  /** etcd revision the view reflects */
  revision: number;
  /** every registered node (joining, up, leaving); a node missing here is down */
  nodes: ReadonlyMap<NodeId, NodeRecord>;
}

/** Node ids of the view in one of `states`, sorted: the input placement wants. */
export function nodesIn(view: MembershipView, ...states: NodeState[]): NodeId[] {
  return [...view.nodes.values()].filter((n) => states.includes(n.state)).map((n) => n.id).sort();
}

interface MembershipEvents {
  /** the lease may be gone (etcd said so, or no keepalive succeeded within the TTL); re-registering */
  leaseLost: [why: string];
  /** the key is written with a new lease after a loss */
  reregistered: [leaseId: string];
  /** background trouble that does not stop anything: a failed keepalive, a broken watch */
  warning: [err: Error];
}

type Lifecycle = 'idle' | 'registering' | 'registered' | 'lost' | 'closed';

export class Membership extends EventEmitter<MembershipEvents> {
  private readonly ttlSeconds: number;
  private readonly keepaliveIntervalMs: number;
  private readonly takeoverWaitMs: number;
  private readonly now: () => number;
  private state: Lifecycle = 'idle';
  private self: NodeRecord | undefined;
  private lease: Lease | undefined;
  private leaseId = '';
  /** the lease lives at least until then: the send time of the last acknowledged keepalive + TTL */
  private leaseSafeUntilMs = 0;
  private timer: NodeJS.Timeout | undefined;
  /** one write to our key at a time, so a state change and a re-register never interleave */
  private writes: Promise<unknown> = Promise.resolve();
  private mirror: PrefixMirror<NodeRecord> | undefined;
  private readonly watchers = new Set<(view: MembershipView) => void>();

  constructor(private readonly coord: Coordination, opts: MembershipOptions = {}) {
    super();
    this.ttlSeconds = opts.ttlSeconds ?? LEASE_TTL_S;
    this.keepaliveIntervalMs = opts.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS;
    this.takeoverWaitMs = opts.takeoverWaitMs ?? this.ttlSeconds * 1000 + 1_500;
    this.now = opts.nowMs ?? Date.now;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) throw new Error(`membership: TTL ${this.ttlSeconds} s`);
    if (this.keepaliveIntervalMs * 3 > this.ttlSeconds * 1000) throw new Error('membership: keepalive must fit 3 times in the TTL');
  }

  get currentLeaseId(): string { return this.leaseId; }
  get registered(): boolean { return this.state === 'registered'; }

  /** Writes `nodes/<id>` on a fresh lease and keeps it alive. Waits out a previous incarnation's key. */
  async register(self: { id: NodeId; url: string; state: NodeState }): Promise<void> {
    if (this.state !== 'idle') throw new Error(`membership: register() in state ${this.state}`);
    keys.node(self.id); // validates the id as a key segment
    this.state = 'registering';
    this.self = { id: self.id, url: self.url, state: self.state, startedAtMs: this.now() };
    try {
      await this.serial(() => this.establish(undefined));
    } catch (err) {
      this.state = 'idle';
      throw err;
    }
    this.state = 'registered';
    this.scheduleKeepalive(this.keepaliveIntervalMs);
  }

  /** Rewrites our record with a new state; while re-registering, the new state is written then. */
  async setState(state: NodeState): Promise<void> {
    const self = this.self;
    if (!self || this.state === 'idle' || this.state === 'closed') throw new Error(`membership: setState() in state ${this.state}`);
    self.state = state;
    await this.serial(async () => {
      if (this.state !== 'registered') throw new ChicagoError('COORDINATION_UNAVAILABLE', 'node lease lost; state is written on re-register');
      const key = keys.node(self.id);
      try {
        await this.coord.call(`set ${key} ${state}`, (o) => this.coord.kv.put(key).value(encode(self)).lease(this.leaseId).options(o).exec());
      } catch (err) {
        if (isLeaseLost(err)) this.onLeaseLost('lease not found on write');
        throw err;
      }
    });
  }

  /**
   * Calls `listener` with the current view, then after every change. The first call lists all
   * nodes; the watch starts at that list's revision, so no join or leave falls in between.
   */
  async watch(listener: (view: MembershipView) => void): Promise<() => void> {
    if (this.state === 'closed') throw new Error('membership: watch() after close');
    this.watchers.add(listener);
    if (!this.mirror) {
      const m = this.coord.mirror(keys.nodesPrefix, parseNode);
      this.mirror = m;
      m.on('changes', (_changes, rev) => this.publish(rev));
      m.on('warning', (err) => this.emit('warning', err));
      try {
        await m.start();
      } catch (err) {
        this.mirror = undefined;
        this.watchers.delete(listener);
        throw err;
      }
    } else if (this.mirror.running) {
      listener(this.view(this.mirror.revision));
    }
    return () => { this.watchers.delete(listener); };
  }

  /** The latest view (empty until watch() was called). */
  view(rev = this.mirror?.revision ?? 0): MembershipView {
    const nodes = new Map<NodeId, NodeRecord>();
    if (this.mirror) for (const s of this.mirror.values()) nodes.set(s.value.id, s.value);
    return { revision: rev, nodes };
  }

  /** Graceful exit: deletes our key and revokes the lease, so others see the leave at once. */
  async leave(): Promise<void> {
    const self = this.self;
    const lease = this.lease;
    await this.close();
    if (!self || !lease) return;
    const key = keys.node(self.id);
    const leaseId = this.leaseId;
    // Delete only if the key is still ours: a successor with the same id may already own it.
    await this.coord.call(`leave ${key}`, (o) =>
      this.coord.kv.if(key, 'Lease', '==', leaseId).then(this.coord.kv.delete().key(key)).options(o).commit());
    await this.coord.call('revoke lease', (o) => lease.revoke(o));
  }

  /** Stops keepalives and watches without leaving: the key expires after the TTL, as after a crash. */
  async close(): Promise<void> {
    this.state = 'closed';
    clearTimeout(this.timer);
    this.lease?.release();
    this.watchers.clear();
    await this.mirror?.close();
  }

  private publish(rev: number): void {
    const v = this.view(rev);
    for (const w of this.watchers) w(v);
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.writes.then(op, op);
    this.writes = run.catch(() => undefined);
    return run;
  }

  /**
   * Writes our key on a fresh lease. A key held by another lease is waited out first (without a
   * lease of our own, which could expire meanwhile); one held by `previousLease` is ours to take over.
   */
  private async establish(previousLease: string | undefined): Promise<void> {
    const self = this.self!;
    const key = keys.node(self.id);
    const kv = this.coord.kv;
    const waitUntil = this.now() + this.takeoverWaitMs;
    for (;;) {
      const held = (await this.coord.call(`get ${key}`, (o) => kv.get(key).options(o).exec())).kvs[0];
      if (held && String(held.lease) !== previousLease) {
        if (this.now() > waitUntil) {
          throw new ChicagoError('INVALID_ARGUMENT', 'node id', `${self.id} is registered by another live process (lease ${String(held.lease)})`);
        }
        if (this.state === 'closed') throw new ChicagoError('SHUTTING_DOWN');
        await sleep(TAKEOVER_POLL_MS);
        continue;
      }
      const lease = kv.lease(this.ttlSeconds, { autoKeepAlive: false, deadline: Date.now() + this.coord.callTimeoutMs });
      lease.on('lost', () => undefined); // reported through keepaliveOnce's rejection instead
      const sentAt = this.now();
      const id = await this.coord.call('grant lease', () => lease.grant());
      const cmp = held ? kv.if(key, 'Mod', '==', revision(held.mod_revision)) : kv.if(key, 'Create', '==', 0);
      const put = kv.put(key).value(encode(self)).lease(id);
      let won = false;
      try {
        won = (await this.coord.call(`register ${key}`, (o) => cmp.then(put).options(o).commit())).succeeded;
      } finally {
        if (!won) void lease.revoke().catch(() => undefined);
      }
      if (!won) continue; // the key changed between our read and our write: look again
      const old = this.lease;
      this.lease = lease;
      this.leaseId = id;
      this.leaseSafeUntilMs = sentAt + this.ttlSeconds * 1000;
      // Only now: revoking the old lease earlier would delete our key and look like a leave.
      if (old) void old.revoke().catch(() => undefined);
      return;
    }
  }

  private scheduleKeepalive(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.keepalive(), delayMs);
  }

  private async keepalive(): Promise<void> {
    const lease = this.lease;
    if (this.state !== 'registered' || !lease) return;
    const sentAt = this.now();
    try {
      const res = await this.coord.call('lease keepalive', (o) => lease.keepaliveOnce(o), KEEPALIVE_TIMEOUT_MS);
      const ttl = Number(res.TTL);
      if (!(ttl > 0)) throw new ChicagoError('INTERNAL', `keepalive answered TTL ${ttl}`);
      if (lease !== this.lease) return;
      this.leaseSafeUntilMs = Math.max(this.leaseSafeUntilMs, sentAt + ttl * 1000);
    } catch (err) {
      if (this.state !== 'registered' || lease !== this.lease) return;
      if (isLeaseLost(err)) return this.onLeaseLost('etcd says the lease expired');
      this.emit('warning', err as Error);
      if (this.now() >= this.leaseSafeUntilMs) return this.onLeaseLost(`no keepalive acknowledged for ${this.ttlSeconds} s`);
    }
    this.scheduleKeepalive(Math.max(0, keepaliveDue(sentAt, this.keepaliveIntervalMs) - this.now()));
  }

  private onLeaseLost(why: string): void {
    if (this.state !== 'registered') return;
    this.state = 'lost';
    clearTimeout(this.timer);
    this.emit('leaseLost', why);
    void this.reregister(REREGISTER_BACKOFF_MS);
  }

  private async reregister(backoffMs: number): Promise<void> {
    if (this.state !== 'lost') return;
    const previous = this.leaseId;
    try {
      await this.serial(() => this.establish(previous));
    } catch (err) {
      if (this.state !== 'lost') return;
      this.emit('warning', err as Error);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.reregister(Math.min(backoffMs * 2, REREGISTER_BACKOFF_MAX_MS)), backoffMs);
      return;
    }
    if (this.state !== 'lost') return; // closed meanwhile; the new lease is released with the rest
    this.state = 'registered';
    this.emit('reregistered', this.leaseId);
    this.scheduleKeepalive(this.keepaliveIntervalMs);
  }
}
