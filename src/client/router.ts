// Routing straight to partition leaders: the client learns the placement from any node
// (GET /v1/cluster/placement), computes a key's (or a topic partition's) cluster partition with
// the server's own hash, and sends to that partition's leader over a session to that node. Told
// NOT_LEADER (leadership moved) or SHUTTING_DOWN (the node is stopping), it learns the placement
// again and retries once: both mean the request did not run. A node that no longer leads still
// forwards, so a stale route costs a hop, never an error.
import { ChicagoError } from '../runtime/errors.js';
import { kvPartition, streamPartition } from '../runtime/hash.js';
import { Session, type Reply, type RequestBody, type RequestKind, type SessionOptions } from './session.js';
import { authHeader } from './token.js';
import { httpRequest } from './http-json.js';

interface Placement { partitions: number; leaders: Array<string | null>; urls: Map<string, string> }

/** Placement answers older than this are fetched again before use. */
const PLACEMENT_MAX_AGE_MS = 30_000;
const PLACEMENT_TIMEOUT_MS = 2_000;
/** even when told the placement is stale, ask at most this often */
const PLACEMENT_MIN_AGE_MS = 100;

export class Router {
  private placement: Placement | undefined;
  private fetchedAt = 0;
  private refreshing: Promise<void> | undefined;
  /** one session per node URL; the seed is the session the client connected with */
  private readonly sessions = new Map<string, Promise<Session>>();
  /** the sessions above that have opened */
  private readonly opened = new Map<string, Session>();

  constructor(private readonly seed: Session, private readonly opts: SessionOptions) {
    this.sessions.set(httpUrl(opts.url), Promise.resolve(seed));
    this.opened.set(httpUrl(opts.url), seed);
  }

  /** Send a KV request to the leader of its key's partition (the seed node when unknown). */
  async kv(ks: string, key: Uint8Array, body: RequestBody, kind: RequestKind): Promise<Reply> {
    for (let attempt = 0; ; attempt++) {
      const session = await this.sessionFor((n) => kvPartition(ks, key, n));
      try {
        return await session.request(body, kind);
      } catch (err) {
        // neither ran the request: the node no longer leads it, or it is stopping
        if (!(err instanceof ChicagoError) || !(err.code === 'NOT_LEADER' || err.code === 'SHUTTING_DOWN') || attempt > 0) throw err;
        await this.refresh(true);
      }
    }
  }

  /** The session to the node leading a topic partition (subscriptions wait for it to open). */
  async stream(topic: string, tp: number): Promise<Session> {
    return this.sessionFor((n) => streamPartition(topic, tp, n));
  }

  /**
   * Without waiting (a producer's batches): the session to the leader of a topic partition if it is
   * open, else one that forwards, while the leader's session opens in the background.
   */
  streamNow(topic: string, tp: number): Session {
    void this.refresh(false);
    const url = this.leaderUrl((n) => streamPartition(topic, tp, n));
    if (!url) return this.fallbackNow();
    const session = this.opened.get(url);
    if (session?.isUp) return session;
    if (session) void this.refresh(true); // its node is down: a failover is under way
    else if (!this.sessions.has(url)) void this.connect(url).catch(() => undefined);
    return this.fallbackNow();
  }

  /** Told the placement is stale (NOT_LEADER): learn it again, at most every PLACEMENT_MIN_AGE_MS. */
  stale(): void { void this.refresh(true); }

  private async sessionFor(partitionOf: (partitions: number) => number): Promise<Session> {
    await this.refresh(false);
    const url = this.leaderUrl(partitionOf);
    if (!url) return this.fallbackNow();
    const session = await this.connect(url).catch(() => undefined);
    if (session?.isUp) return session;
    // The leader's node is down or unreachable: a failover is under way. Requests queued on its
    // session would wait for a reconnect; a live node forwards them to whoever leads next.
    void this.refresh(true);
    return this.fallbackNow();
  }

  private leaderUrl(partitionOf: (partitions: number) => number): string | undefined {
    const pl = this.placement;
    if (!pl) return undefined;
    const leader = pl.leaders[partitionOf(pl.partitions)];
    return leader ? pl.urls.get(leader) : undefined;
  }

  private connect(url: string): Promise<Session> {
    let s = this.sessions.get(url);
    if (!s) {
      s = Session.open({ ...this.opts, url }, { firstDialOnly: true }); // a leader's node that refuses is down: the seed forwards
      s.then((session) => this.opened.set(url, session), () => {
        // A node we cannot reach is not worth remembering: the seed forwards meanwhile.
        this.sessions.delete(url);
      });
      this.sessions.set(url, s);
    }
    return s;
  }

  /** The seed while it is up, else any node this client has a live session to. */
  private fallbackNow(): Session {
    if (this.seed.isUp) return this.seed;
    for (const session of this.opened.values()) if (session.isUp) return session;
    return this.seed;
  }

  /** Learn the placement (again when `force`, or when it is old); failures leave the seed in charge. */
  private refresh(force: boolean): Promise<void> {
    const age = Date.now() - this.fetchedAt;
    if (age < (force ? PLACEMENT_MIN_AGE_MS : PLACEMENT_MAX_AGE_MS)) return this.refreshing ?? Promise.resolve();
    this.refreshing ??= (async () => {
      try {
        // Asked at most once per PLACEMENT_MAX_AGE_MS unless told NOT_LEADER, answer or not.
        this.fetchedAt = Date.now();
        const res = await httpRequest(`${httpUrl(this.opts.url)}/v1/cluster/placement`, { headers: authHeader(this.opts.token), timeoutMs: PLACEMENT_TIMEOUT_MS, ...(this.opts.ca ? { ca: this.opts.ca } : {}) });
        if (!res.ok) return;
        const body = JSON.parse(res.text) as { clustered: boolean; partitions: number; leaders: Array<string | null>; nodes: Array<{ id: string; url: string }> };
        // A single node leads everything: routing would only add sessions to the same place.
        this.placement = body.clustered ? { partitions: body.partitions, leaders: body.leaders, urls: new Map(body.nodes.map((n) => [n.id, n.url])) } : undefined;
      } catch {
        // keep what we had; the seed node forwards
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  close(): void {
    for (const [url, s] of this.sessions) {
      if (url === httpUrl(this.opts.url)) continue;
      void s.then((x) => x.close(), () => undefined);
    }
    this.sessions.clear();
    this.opened.clear();
  }
}

function httpUrl(url: string): string {
  return url.replace(/^ws/, 'http').replace(/\/v1\/ws$/, '').replace(/\/$/, '');
}
