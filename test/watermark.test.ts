// A leader answers readers only with what every in-sync replica holds (its high watermark): a
// failover elects only in-sync replicas, so nothing a reader saw can be lost. The pure replica
// (src/actors/replica.ts) drives a real RocksDB column family read through PartitionReader, as the
// worker does.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RocksLevel } from '@nxtedition/rocksdb';
import { ColumnStore, columnName, openDatabase } from '../src/storage/rocks.js';
import { PartitionReader, type ReadView } from '../src/actors/reads.js';
import { initialState, type Command, type ProduceResult } from '../src/actors/partition.js';
import {
  canServeReads, createReplica, handle, hiddenRows, needsPrior, READ_LEASE_MS, rowOf, visibleEnd, visibleRow,
  type Acks, type Effect, type Replica, type ReplicaView,
} from '../src/actors/replica.js';
import { epoch, nodeId, partitionId, seq } from '../src/runtime/ids.js';
import { limits } from '../src/runtime/limits.js';

const L = nodeId('leader');
const F = nodeId('f');
const G = nodeId('g');
const TOPIC = 1;
const SKEY = `${TOPIC}:0`;

let dir: string;
let db: RocksLevel;
let column = 0;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'chicago-watermark-'));
  db = await openDatabase(dir, 4, 64 * 1024 * 1024);
});
afterAll(async () => {
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

/** A replica over its own column family, with the worker's part: effects applied, rows read first. */
class Leader {
  readonly store = new ColumnStore(db, db.columns[columnName(column++)]);
  readonly r: Replica;
  readonly reader: PartitionReader;
  readonly replies = new Map<number, Extract<Effect, { kind: 'reply' }>>();
  readonly visible: Array<[string, number, number]> = [];
  private nextId = 1;
  now = 0;

  constructor(view: ReplicaView, atSeq = 0) {
    this.r = createReplica(view.leader!, initialState(partitionId(0), view.epoch, seq(atSeq)), view);
    const readView: ReadView = { row: (row) => visibleRow(this.r, row), hiddenRows: () => hiddenRows(this.r), streamEnd: (skey) => visibleEnd(this.r, skey) };
    this.reader = new PartitionReader(() => this.r.state, this.store, readView);
    this.run({ type: 'view', view });
    this.now = READ_LEASE_MS; // past any read lease of a leader before it
  }

  run(m: Parameters<typeof handle>[1]): void {
    for (const e of handle(this.r, m, this.now)) {
      if (e.kind === 'write') {
        const b = db.batch();
        for (const op of e.ops) {
          if (op.type === 'put') b.put(op.key, op.value, { column: this.store.column });
          else if (op.type === 'del') b.del(op.key, { column: this.store.column });
        }
        b._writeSync({ sync: false });
        void b.close();
      }
      if (e.kind === 'reply') this.replies.set(e.id, e);
      if (e.kind === 'visible') this.visible.push(...e.streams);
    }
  }

  write(cmd: Command, acks: Acks): number {
    const id = this.nextId++;
    const row = rowOf(cmd);
    const prior = row && needsPrior(this.r, row) ? this.store.get(row) ?? null : undefined;
    this.run({ type: 'write', id, cmd, acks, timeoutMs: 10_000, prior });
    return id;
  }

  ack(from: string, s: number): void {
    this.now += 1;
    this.run({ type: 'peer', msg: { t: 'ack', p: 0, epoch: this.r.state.epoch, from: nodeId(from), seq: s, end: s, copy: 0, echo: this.now } });
  }

  get(key: string): string | undefined {
    const v = this.reader.kvGet('ks', Buffer.from(key), this.now);
    return v ? Buffer.from(v.value).toString() : undefined;
  }

  scan(): string[] {
    return this.reader.scan('ks', undefined, undefined, 100, this.now).map((i) => `${i.key.toString()}=${i.value.toString()}`);
  }

  fetch(): string[] {
    return this.reader.fetch(TOPIC, 0, { kind: 'earliest' }, 100, 1 << 20).records.map((r) => Buffer.from(r[3]).toString());
  }
}

const put = (key: string, value: string): Command => ({ op: 'kvPut', ks: 'ks', key: Buffer.from(key), value: Buffer.from(value) });
const del = (key: string): Command => ({ op: 'kvDel', ks: 'ks', key: Buffer.from(key), existed: true });
const produce = (...values: string[]): Command => ({ op: 'produce', topicId: TOPIC, tp: 0, records: values.map((v) => [null, Buffer.from(v), null]) });
const three: ReplicaView = { epoch: epoch(2), leader: L, replicas: [L, F, G], live: [L, F, G], copies: 3, isr: [L, F, G], version: 1 };

describe('high watermark', () => {
  it('shows readers a write only once every in-sync replica holds it', () => {
    const l = new Leader(three);
    l.ack('f', 0);
    l.ack('g', 0);
    expect(canServeReads(l.r, l.now)).toBe(true);

    l.write(put('a', '1'), 'one'); // seq 1
    const p = l.write(produce('x', 'y'), 'one'); // seq 2
    expect((l.replies.get(p)!.reply as { res: ProduceResult }).res.hiddenIn).toBe(2);
    expect(l.get('a')).toBeUndefined();
    expect(l.scan()).toEqual([]);
    expect(l.fetch()).toEqual([]);
    expect(l.reader.streamInfo(TOPIC, 0).end).toBe(0);

    l.ack('f', 2); // one of two: still not safe from a failover to g
    expect(l.get('a')).toBeUndefined();
    l.ack('g', 1);
    expect(l.get('a')).toBe('1');
    expect(l.fetch()).toEqual([]);
    expect(l.visible).toEqual([]);
    l.ack('g', 2);
    expect(l.fetch()).toEqual(['x', 'y']);
    expect(l.visible).toEqual([[SKEY, 2, 2]]);
  });

  it('keeps showing the confirmed value (or absence) of a key while newer writes are unconfirmed', () => {
    const l = new Leader(three);
    for (const n of ['f', 'g']) l.ack(n, 0);
    l.write(put('a', '1'), 'one'); // 1
    l.write(put('b', '1'), 'one'); // 2
    for (const n of ['f', 'g']) l.ack(n, 2);
    l.write(put('a', '2'), 'one'); // 3
    l.write(del('b'), 'one'); // 4
    l.write(put('c', '1'), 'one'); // 5
    l.write(put('a', '3'), 'all'); // 6
    expect(l.get('a')).toBe('1');
    expect(l.get('b')).toBe('1'); // deleted, but not confirmed deleted
    expect(l.get('c')).toBeUndefined();
    expect(l.scan()).toEqual(['a=1', 'b=1']);
    for (const n of ['f', 'g']) l.ack(n, 4);
    expect(l.get('a')).toBe('2');
    expect(l.scan()).toEqual(['a=2']);
    for (const n of ['f', 'g']) l.ack(n, 6);
    expect(l.scan()).toEqual(['a=3', 'c=1']);
    expect([...hiddenRows(l.r)]).toEqual([]);
  });

  it('stops waiting for a replica once it leaves the in-sync set', () => {
    const l = new Leader(three);
    for (const n of ['f', 'g']) l.ack(n, 0);
    l.write(produce('x'), 'one');
    l.ack('f', 1);
    expect(l.fetch()).toEqual([]);
    l.run({ type: 'view', view: { ...three, isr: [L, F], live: [L, F], version: 2 } });
    expect(l.fetch()).toEqual(['x']);
    expect(l.visible).toEqual([[SKEY, 1, 2]]);
  });

  it('a new leader answers no read until its followers hold everything it has', () => {
    // It took office at seq 3 (entries of the last term it may hold beyond what readers saw).
    const l = new Leader({ ...three, epoch: epoch(5) }, 3);
    expect(canServeReads(l.r, l.now)).toBe(false);
    l.ack('f', 3);
    expect(canServeReads(l.r, l.now)).toBe(false);
    l.ack('g', 3);
    expect(canServeReads(l.r, l.now)).toBe(true);
  });

  it('a new leader answers no read while the leader it last answered may still hold a read lease', () => {
    // As a follower it answered the old leader's append at t=1000 (their link had just healed)...
    const r = createReplica(G, initialState(partitionId(0), epoch(2), seq(0)), { ...three, leader: L });
    handle(r, { type: 'view', view: { ...three, leader: L } }, 900);
    handle(r, { type: 'peer', msg: { t: 'append', p: 0, epoch: 2, leader: L, prevSeq: 0, prevEpoch: 0, entries: [], at: 995 } }, 1000);
    // ...and is elected at t=1010, alone in the in-sync set: its watermark is complete at once.
    handle(r, { type: 'view', view: { ...three, epoch: epoch(3), leader: G, isr: [G], version: 2 } }, 1010);
    expect(canServeReads(r, 1010)).toBe(false);
    expect(canServeReads(r, 1000 + READ_LEASE_MS - 1)).toBe(false);
    expect(canServeReads(r, 1000 + READ_LEASE_MS)).toBe(true);
  });

  it('refuses writes (OVERLOADED) while its in-sync replicas leave too much unconfirmed, and takes them again once they confirm', () => {
    const l = new Leader(three);
    for (const n of ['f', 'g']) l.ack(n, 0);
    const big = Buffer.alloc(limits.valueBytesMax);
    let refused: Extract<Effect, { kind: 'reply' }> | undefined;
    let written = 0;
    while (!refused) {
      const id = l.write({ op: 'kvPut', ks: 'ks', key: Buffer.from(`k${written}`), value: big }, 'one');
      const reply = l.replies.get(id)!;
      if (reply.reply.ok) written++;
      else refused = reply;
      expect(written).toBeLessThanOrEqual(limits.unconfirmedBytesMax / limits.valueBytesMax + 1);
    }
    expect(refused.reply.ok === false && refused.reply.code).toBe('OVERLOADED');
    expect(written).toBeGreaterThanOrEqual(limits.unconfirmedBytesMax / limits.valueBytesMax);
    for (const n of ['f', 'g']) l.ack(n, written);
    const id = l.write(put('after', '1'), 'one');
    expect(l.replies.get(id)!.reply.ok).toBe(true);
  });

  it('a leader alone in the in-sync set shows its writes at once', () => {
    const l = new Leader({ ...three, isr: [L] });
    const p = l.write(produce('x'), 'one');
    l.write(put('a', '1'), 'one');
    expect((l.replies.get(p)!.reply as { res: ProduceResult }).res.hiddenIn).toBeUndefined();
    expect(l.fetch()).toEqual(['x']);
    expect(l.get('a')).toBe('1');
  });
});
