// The node's topic catalog, kept in the `default` column family. Single-node for now; the cluster
// moves it to etcd. Topic ids are never reused, so a re-created topic starts from offset 0 while
// the old incarnation's data is still being removed.
import type { RocksLevel } from '@nxtedition/rocksdb';
import { ColumnStore } from '../storage/rocks.js';
import { diskCodec } from '../runtime/codec.js';
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import type { RetentionSpec, TopicSpec } from '../protocol/api.js';
import type { TopicMeta } from '../cluster/coordinator.js';

export type { TopicMeta };


const TOPIC_PREFIX = Buffer.from('topic/');
const NEXT_ID_KEY = Buffer.from('meta/nextTopicId');

export class Catalog {
  private readonly store: ColumnStore;
  private readonly byName = new Map<string, TopicMeta>();
  private nextId = 1;

  constructor(private readonly db: RocksLevel) {
    this.store = new ColumnStore(db, db.columns.default);
    const next = this.store.get(NEXT_ID_KEY);
    if (next) this.nextId = diskCodec.decode<number>(next);
    for (const [, v] of this.store.iterate({ gte: TOPIC_PREFIX, lt: Buffer.from('topic0') })) {
      const t = diskCodec.decode<TopicMeta>(v);
      this.byName.set(t.name, t);
    }
  }

  get(name: string): TopicMeta {
    const t = this.byName.get(name);
    if (!t) throw new ChicagoError('TOPIC_NOT_FOUND', name);
    return t;
  }

  find(name: string): TopicMeta | undefined { return this.byName.get(name); }
  byId(id: number): TopicMeta | undefined {
    for (const t of this.byName.values()) if (t.id === id) return t;
    return undefined;
  }
  list(): TopicMeta[] { return [...this.byName.values()].sort((a, b) => a.name.localeCompare(b.name)); }

  create(spec: TopicSpec, nowMs: number): TopicMeta {
    if (this.byName.has(spec.name)) throw new ChicagoError('TOPIC_EXISTS', spec.name);
    if (this.byName.size >= limits.topicsMax) throw new ChicagoError('OVERLOADED', 'topic catalog', `${this.byName.size} topics`);
    const meta: TopicMeta = { ...spec, id: this.nextId, createdAtMs: nowMs };
    this.nextId++;
    this.write([[this.keyOf(spec.name), diskCodec.encode(meta)], [NEXT_ID_KEY, diskCodec.encode(this.nextId)]]);
    this.byName.set(spec.name, meta);
    return meta;
  }

  remove(name: string): TopicMeta {
    const t = this.get(name);
    const b = this.db.batch();
    b.del(this.keyOf(name), { column: this.store.column });
    b._writeSync({ sync: true });
    void b.close();
    this.byName.delete(name);
    return t;
  }

  setRetention(name: string, retention: RetentionSpec): TopicMeta {
    const meta: TopicMeta = { ...this.get(name), retention };
    this.write([[this.keyOf(name), diskCodec.encode(meta)]]);
    this.byName.set(name, meta);
    return meta;
  }

  /** Raises the partition count (new partitions are empty streams); fewer is refused, the same a no-op. */
  setPartitions(name: string, partitions: number): TopicMeta {
    const now = this.get(name);
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > limits.topicPartitionsMax) throw new ChicagoError('INVALID_ARGUMENT', 'partitions', partitions);
    if (partitions < now.partitions) throw new ChicagoError('INVALID_ARGUMENT', 'partitions', `topic ${name} has ${now.partitions}; partitions can only be added`);
    if (partitions === now.partitions) return now;
    const meta: TopicMeta = { ...now, partitions };
    this.write([[this.keyOf(name), diskCodec.encode(meta)]]);
    this.byName.set(name, meta);
    return meta;
  }

  retention(): Array<{ topicId: number; retention: RetentionSpec }> {
    return this.list().map((t) => ({ topicId: t.id, retention: t.retention }));
  }

  private keyOf(name: string): Buffer { return Buffer.concat([TOPIC_PREFIX, Buffer.from(name)]); }

  // Catalog changes are rare and must survive a crash: always fsynced.
  private write(entries: Array<[Buffer, Buffer]>): void {
    const b = this.db.batch();
    for (const [k, v] of entries) b.put(k, v, { column: this.store.column });
    b._writeSync({ sync: true });
    void b.close();
  }
}
