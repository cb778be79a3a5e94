// The reference client of the /v1/ws protocol (docs/protocol.md). Against a cluster, KV requests go
// straight to their partition's leader (router.ts), as do tails and produces to a pinned partition; the rest
// goes to the node connected to, which forwards.
import { ChicagoError } from '../runtime/errors.js';
import type { Acks, GroupDescription, GroupOffset, PartitionInfo, TopicSpec } from '../protocol/api.js';
import { ACCEPT_RANGES, checkName } from '../protocol/frames.js';
import { Session, type Reply, type SessionOptions } from './session.js';
import { Router } from './router.js';
import { Producer, type ProducerMode, type ProducerOptions } from './producer.js';
import { TailStream, type TailOptions } from './tail.js';
import { toBytes } from './bytes.js';
import { GroupConsumer, type SubscribeOptions } from './group.js';

export { Producer, TailStream, ChicagoError, GroupConsumer };
/** decodes a fetch answered as application/vnd.chicago.record-batch (docs/protocol.md, "Record batches") */
export { decodeStoredBatches, BATCH_CONTENT_TYPE, type StoredBatchRecord } from '../protocol/batch.js';
export type { SubscribeOptions, GroupRecord, GroupPartitionRef } from './group.js';
export type { ProducerOptions, ProducerMode, TailOptions };
export type { OutRecord, ProducerStats, RecordPosition, SendResult } from './producer.js';
export type { TailFrom, TailRecord } from './tail.js';

export interface ConnectOptions {
  /** the node's HTTP URL (or a ws:// URL); default http://127.0.0.1:7070, env CHICAGO_URL is not read here */
  url?: string;
  /** give up connecting (first time) after this long; default 10 s */
  connectTimeoutMs?: number;
  /** deadline of each request; default 30 s */
  requestTimeoutMs?: number;
  /** reconnect backoff, doubling from min to max; default 50 ms → 2 s */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** sent in hello, shows up in server logs */
  clientName?: string;
  /** the access token (chicago_…) sent in hello; see docs/security.md */
  token?: string;
  /** PEM of a CA to trust for https:// and wss:// URLs (a cluster's own); default the system CAs */
  ca?: string;
}

export interface KvWriteOptions { acks?: Acks; ttlSeconds?: number }
export interface KvItem { key: Buffer; value: Buffer; version: number }

export class ChicagoClient {
  private constructor(private readonly session: Session, private readonly router: Router) {}

  static async connect(opts: ConnectOptions = {}): Promise<ChicagoClient> {
    const sessionOpts: SessionOptions = {
      url: opts.url ?? 'http://127.0.0.1:7070',
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 30_000,
      backoffMinMs: opts.backoffMinMs ?? 50,
      backoffMaxMs: opts.backoffMaxMs ?? 2_000,
      clientName: opts.clientName ?? 'chicago-ts',
      ...(opts.token ? { token: opts.token } : {}),
      ...(opts.ca ? { ca: opts.ca } : {}),
      // its producer reads compact produce answers (one range per batch, not one offset per record)
      accept: [ACCEPT_RANGES],
    };
    const session = await Session.open(sessionOpts);
    return new ChicagoClient(session, new Router(session, sessionOpts));
  }

  /** true while a socket is open; requests made while false wait for the reconnection */
  get connected(): boolean { return this.session.isUp; }

  readonly kv = {
    put: async (ks: string, key: string | Uint8Array, value: string | Uint8Array, opts: KvWriteOptions = {}): Promise<{ version: number; replicas: number }> => {
      checkName('keyspace', ks);
      const k = toBytes(key);
      const r = await this.router.kv(ks, k, {
        op: 'kv.put', ks, key: k, value: toBytes(value), acks: opts.acks ?? 'all', ttl: opts.ttlSeconds,
      }, 'write');
      return { version: num(r, 'version'), replicas: num(r, 'replicas') };
    },
    get: async (ks: string, key: string | Uint8Array): Promise<{ value: Buffer; version: number } | undefined> => {
      checkName('keyspace', ks);
      const k = toBytes(key);
      const r = await this.router.kv(ks, k, { op: 'kv.get', ks, key: k }, 'read');
      if (r.found !== true) return undefined;
      return { value: buf(r, 'value'), version: num(r, 'version') };
    },
    delete: async (ks: string, key: string | Uint8Array, opts: { acks?: Acks } = {}): Promise<{ version: number; replicas: number; existed: boolean }> => {
      checkName('keyspace', ks);
      const k = toBytes(key);
      const r = await this.router.kv(ks, k, { op: 'kv.delete', ks, key: k, acks: opts.acks ?? 'all' }, 'write');
      return { version: num(r, 'version'), replicas: num(r, 'replicas'), existed: r.existed === true };
    },
    /** one page; pass `next` as `after` for the following one */
    scan: async (ks: string, opts: { prefix?: string | Uint8Array; limit?: number; after?: string | Uint8Array } = {}): Promise<{ items: KvItem[]; next?: Buffer }> => {
      checkName('keyspace', ks);
      const r = await this.session.request({
        op: 'kv.scan', ks, prefix: opts.prefix === undefined ? undefined : toBytes(opts.prefix),
        after: opts.after === undefined ? undefined : toBytes(opts.after), limit: opts.limit ?? 1000,
      }, 'read');
      if (!Array.isArray(r.items)) throw new ChicagoError('INTERNAL', 'scan reply without items');
      const items = (r.items as unknown[]).map((it) => {
        if (!Array.isArray(it) || !Buffer.isBuffer(it[0]) || !Buffer.isBuffer(it[1]) || typeof it[2] !== 'number') {
          throw new ChicagoError('INTERNAL', 'scan item is not [key, value, version]');
        }
        return { key: it[0], value: it[1], version: it[2] };
      });
      return r.next === undefined ? { items } : { items, next: buf(r, 'next') };
    },
  };

  producer<M extends ProducerMode = 'acked'>(opts: ProducerOptions<M> = {}): Producer<M> {
    return new Producer<M>(this.session, opts, this.router);
  }

  tail(topic: string, partition: number, opts: TailOptions = {}): TailStream {
    return new TailStream(this.session, topic, partition, opts, this.router);
  }

  /**
   * Join `group` as a member and read the partitions of `topics` the coordinator assigns, from
   * their committed offsets; iterate the result, `close()` to leave (docs/protocol.md "Group membership").
   */
  subscribe(group: string, topics: string[], opts: SubscribeOptions = {}): GroupConsumer {
    return new GroupConsumer(this.session, group, topics, opts, this.router);
  }

  /** `offset` is the next offset the group will read (last consumed + 1); with `fence`, refused (FENCED) unless that member owns the partition at that generation */
  async commitOffset(group: string, topic: string, partition: number, offset: number, fence?: { member: string; generation: number }): Promise<void> {
    await this.session.request({ op: 'commit', group, topic, partition, offset, ...(fence ?? {}) }, 'write');
  }

  /** Low level membership calls; `subscribe` does all of this. */
  readonly groups = {
    join: async (group: string, topics: string[], opts: { member?: string; sessionTimeoutMs?: number } = {}): Promise<GroupMembershipReply> =>
      membership(await this.session.request({ op: 'join', group, topics, ...opts }, 'write')),
    heartbeat: async (group: string, member: string, generation: number): Promise<GroupMembershipReply> =>
      membership(await this.session.request({ op: 'heartbeat', group, member, generation }, 'write')),
    leave: async (group: string, member: string): Promise<void> => { await this.session.request({ op: 'leave', group, member }, 'write'); },
    members: async (group: string): Promise<GroupDescription> => (await this.session.request({ op: 'members', group }, 'read')) as unknown as GroupDescription,
    /** removes the group's committed offsets: GROUP_NOT_EMPTY while it has live members, NOT_FOUND when it has none */
    delete: async (group: string): Promise<{ removed: number }> => ({ removed: (await this.session.request({ op: 'group.delete', group }, 'write')).removed as number }),
  };

  /** The topics this token may see (name, partition count, replicas, retention). */
  async topics(): Promise<Array<TopicSpec & { createdAtMs: number }>> {
    const r = await this.session.request({ op: 'topics' }, 'read');
    return (r.topics ?? []) as Array<TopicSpec & { createdAtMs: number }>;
  }

  /** One topic with each partition's start and end offsets, bytes, leader and replicas. */
  async topic(name: string): Promise<TopicMetadata> {
    return (await this.session.request({ op: 'topic', topic: checkName('topic', name) }, 'read')) as unknown as TopicMetadata;
  }

  async groupOffsets(group: string, topic?: string): Promise<GroupOffset[]> {
    const r = await this.session.request({ op: 'offsets', group, topic }, 'read');
    return (r.offsets ?? []) as GroupOffset[];
  }

  /** Drop the connection. Pending writes reject OUTCOME_UNKNOWN; flush producers first. */
  close(): void {
    this.router.close();
    this.session.close();
  }
}

/** `ChicagoClient.connect` as a plain function: `import { connect } from 'chicago/client'`. */
export function connect(opts: ConnectOptions = {}): Promise<ChicagoClient> {
  return ChicagoClient.connect(opts);
}

/** The `topic` op's answer: `partitions` is the per-partition detail, `partitionCount` the count. */
export interface TopicMetadata extends Omit<TopicSpec, 'partitions'> { createdAtMs: number; partitionCount: number; partitions: PartitionInfo[] }

export interface GroupMembershipReply { member: string; generation: number; assigned: Array<{ topic: string; partition: number }>; renewed: boolean }

function membership(r: Reply): GroupMembershipReply {
  return { member: String(r.member), generation: num(r, 'generation'), assigned: (r.assigned ?? []) as GroupMembershipReply['assigned'], renewed: r.renewed === true };
}

function num(r: Reply, f: string): number {
  const v = r[f];
  if (typeof v !== 'number') throw new ChicagoError('INTERNAL', `reply field '${f}' is not a number`);
  return v;
}

function buf(r: Reply, f: string): Buffer {
  const v = r[f];
  if (!Buffer.isBuffer(v)) throw new ChicagoError('INTERNAL', `reply field '${f}' is not bytes`);
  return v;
}
