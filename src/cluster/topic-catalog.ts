// The cluster-wide topic catalog: `topics/<name>` records in etcd, followed by every node's cache.
// Same surface as the single node's Catalog (src/node/catalog.ts); writes are async. Topic ids come
// from `topicSeq`, bumped in the same transaction that creates the topic, so an id is never reused
// and a re-created topic never meets its old incarnation's data.
import { EventEmitter } from 'node:events';
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import type { RetentionSpec, TopicSpec } from '../protocol/api.js';
import type { TopicMeta } from './coordinator.js';
import { type Coordination, type PrefixMirror, decode, encode, revision } from './etcd.js';
import { LayoutError, type TopicRecord, keys, parseTopic, parseTopicSeq } from './layout.js';

/** create() retries a lost race for the next id; each round one of the racers wins */
const CREATE_DEADLINE_MS = 10_000;
const NAME = new RegExp(`^[A-Za-z0-9._-]{1,${limits.nameLengthMax}}$`);

export interface TopicChange { name: string; topic: TopicMeta | undefined }

interface CatalogEvents {
  /** created (`topic` set) or deleted (`topic` undefined) topics, in revision order */
  changes: [changes: TopicChange[]];
  warning: [err: Error];
}

export class TopicCatalog extends EventEmitter<CatalogEvents> {
  private readonly mirror: PrefixMirror<TopicRecord>;

  constructor(private readonly coord: Coordination) {
    super();
    this.mirror = coord.mirror(keys.topicsPrefix, parseTopic);
    this.mirror.on('warning', (err) => this.emit('warning', err));
    this.mirror.on('changes', (changes) => {
      if (changes.length === 0) return;
      this.emit('changes', changes.map((c) => ({ name: c.key.slice(keys.topicsPrefix.length), topic: c.value })));
    });
  }

  /** Loads every topic and follows changes. No other method may be called before. */
  async start(): Promise<void> { await this.mirror.start(); }
  async close(): Promise<void> { await this.mirror.close(); }

  get(name: string): TopicMeta {
    const t = this.find(name);
    if (!t) throw new ChicagoError('TOPIC_NOT_FOUND', name);
    return t;
  }

  find(name: string): TopicMeta | undefined {
    this.checkStarted();
    return NAME.test(name) ? this.mirror.get(keys.topic(name))?.value : undefined;
  }

  byId(id: number): TopicMeta | undefined {
    this.checkStarted();
    for (const s of this.mirror.values()) if (s.value.id === id) return s.value;
    return undefined;
  }

  list(): TopicMeta[] {
    this.checkStarted();
    return [...this.mirror.values()].map((s) => s.value).sort((a, b) => a.name.localeCompare(b.name));
  }

  retention(): Array<{ topicId: number; retention: RetentionSpec }> {
    return this.list().map((t) => ({ topicId: t.id, retention: t.retention }));
  }

  /**
   * Creates the topic with the next id. One transaction: `topicSeq` still at the revision read
   * and the name absent → bump `topicSeq`, write the topic. A lost race for the id reads again.
   */
  async create(spec: TopicSpec, nowMs: number): Promise<TopicMeta> {
    this.checkStarted();
    if (!NAME.test(spec.name)) throw new ChicagoError('INVALID_NAME', 'topic', spec.name);
    if (!Number.isInteger(spec.partitions) || spec.partitions < 1 || spec.partitions > limits.topicPartitionsMax) {
      throw new ChicagoError('INVALID_ARGUMENT', 'partitions', spec.partitions);
    }
    if (!Number.isInteger(spec.replicas) || spec.replicas < 1) throw new ChicagoError('INVALID_ARGUMENT', 'replicas', spec.replicas);
    if (this.find(spec.name)) throw new ChicagoError('TOPIC_EXISTS', spec.name);
    if (this.mirror.size >= limits.topicsMax) throw new ChicagoError('OVERLOADED', 'topic catalog', `${this.mirror.size} topics`);

    const kv = this.coord.kv;
    const key = keys.topic(spec.name);
    // Through the parser, so the record is checked and in the exact form a reader decodes.
    let base: TopicMeta;
    try {
      base = parseTopic(key, JSON.parse(encode({ id: 1, ...spec, createdAtMs: nowMs })));
    } catch (err) {
      if (err instanceof LayoutError) throw new ChicagoError('INVALID_ARGUMENT', 'topic spec', err.message);
      throw err;
    }
    const deadline = Date.now() + CREATE_DEADLINE_MS;
    for (;;) {
      const seq = await this.coord.getJson(keys.topicSeq, parseTopicSeq);
      const meta: TopicMeta = { ...base, id: (seq?.value ?? 0) + 1 };
      let res;
      try {
        res = await this.coord.call(`create ${key}`, (o) => kv
          .if(keys.topicSeq, 'Mod', '==', seq?.modRevision ?? 0)
          .and(key, 'Create', '==', 0)
          .then(kv.put(keys.topicSeq).value(encode(meta.id)), kv.put(key).value(encode(meta)))
          .else(kv.get(key))
          .options(o)
          .commit());
      } catch (err) {
        return this.afterUnknown(meta, err);
      }
      if (res.succeeded) {
        this.mirror.applyLocal(key, meta, revision(res.header.revision));
        return meta;
      }
      const held = res.responses[0]?.response_range?.kvs[0];
      if (held) {
        const other = decode(key, held, parseTopic);
        this.mirror.applyLocal(key, other.value, other.modRevision);
        throw new ChicagoError('TOPIC_EXISTS', spec.name);
      }
      if (Date.now() > deadline) throw new ChicagoError('COORDINATION_UNAVAILABLE', `create topic ${spec.name}: lost the race for an id until the deadline`);
    }
  }

  /** Deletes the topic; returns what it was. Its id stays retired. */
  async remove(name: string): Promise<TopicMeta> {
    this.checkStarted();
    if (!NAME.test(name)) throw new ChicagoError('TOPIC_NOT_FOUND', name);
    const kv = this.coord.kv;
    const key = keys.topic(name);
    const res = await this.coord.call(`delete ${key}`, (o) =>
      kv.if(key, 'Create', '>', 0).then(kv.get(key), kv.delete().key(key)).options(o).commit());
    const held = res.responses[0]?.response_range?.kvs[0];
    if (!res.succeeded || !held) throw new ChicagoError('TOPIC_NOT_FOUND', name);
    const meta = decode(key, held, parseTopic).value;
    this.mirror.applyLocal(key, undefined, revision(res.header.revision));
    return meta;
  }

  /**
   * Replaces the topic's retention: one transaction on the topic key at the revision read (another
   * change in between reads again), so an alter never undoes a concurrent delete or re-create.
   */
  async setRetention(name: string, retention: RetentionSpec): Promise<TopicMeta> {
    return this.alter(name, 'retention', (now) => ({ ...now, retention }));
  }

  /**
   * Raises the topic's partition count, as Kafka's `--alter --partitions`: checked against the record
   * the compare-and-swap is on, so two alters never shrink a topic between them. Fewer is refused;
   * the same count is a no-op.
   */
  async setPartitions(name: string, partitions: number): Promise<TopicMeta> {
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > limits.topicPartitionsMax) {
      throw new ChicagoError('INVALID_ARGUMENT', 'partitions', partitions);
    }
    return this.alter(name, 'partitions', (now) => {
      if (partitions < now.partitions) throw new ChicagoError('INVALID_ARGUMENT', 'partitions', `topic ${name} has ${now.partitions}; partitions can only be added`);
      return partitions === now.partitions ? undefined : { ...now, partitions };
    });
  }

  /** One transaction on the topic key at the revision read; `change` answers undefined for no change. */
  private async alter(name: string, what: string, change: (now: TopicMeta) => TopicMeta | undefined): Promise<TopicMeta> {
    this.checkStarted();
    if (!NAME.test(name)) throw new ChicagoError('TOPIC_NOT_FOUND', name);
    const kv = this.coord.kv;
    const key = keys.topic(name);
    const deadline = Date.now() + CREATE_DEADLINE_MS;
    for (;;) {
      const now = await this.coord.getJson(key, parseTopic);
      if (!now) throw new ChicagoError('TOPIC_NOT_FOUND', name);
      const wanted = change(now.value);
      if (!wanted) return now.value;
      let meta: TopicMeta;
      try {
        meta = parseTopic(key, JSON.parse(encode(wanted)));
      } catch (err) {
        if (err instanceof LayoutError) throw new ChicagoError('INVALID_ARGUMENT', what, err.message);
        throw err;
      }
      const res = await this.coord.call(`alter ${key}`, (o) => kv
        .if(key, 'Mod', '==', now.modRevision)
        .then(kv.put(key).value(encode(meta)))
        .options(o)
        .commit());
      if (res.succeeded) {
        this.mirror.applyLocal(key, meta, revision(res.header.revision));
        return meta;
      }
      if (Date.now() > deadline) throw new ChicagoError('COORDINATION_UNAVAILABLE', `alter topic ${name}: changed by others until the deadline`);
    }
  }

  /** The create transaction timed out. The topic key is written atomically with the id, so it tells. */
  private async afterUnknown(meta: TopicMeta, cause: unknown): Promise<TopicMeta> {
    if (!(cause instanceof ChicagoError) || cause.code !== 'COORDINATION_UNAVAILABLE') throw cause;
    const key = keys.topic(meta.name);
    let now;
    try {
      now = await this.coord.getJson(key, parseTopic);
    } catch {
      throw new ChicagoError('OUTCOME_UNKNOWN', `create topic ${meta.name}: ${cause.message}`);
    }
    if (!now) throw new ChicagoError('OUTCOME_UNKNOWN', `create topic ${meta.name}: ${cause.message}`);
    this.mirror.applyLocal(key, now.value, now.modRevision);
    if (encode(now.value) === encode(meta)) return now.value;
    throw new ChicagoError('TOPIC_EXISTS', meta.name);
  }

  private checkStarted(): void {
    if (!this.mirror.running) throw new Error('topic catalog: not started (or closed)');
  }
}
