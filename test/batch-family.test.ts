// A partition's record batches live in a column family of their own (storage/rocks.ts
// batchColumnName): one store over both families reads and clears as one key space, and a data
// dir that kept its batches in the partition's family (format 3 and older) has them moved at open.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BatchWriter, ColumnStore, batchColumnName, columnName, openDatabase, partitionStore } from '../src/storage/rocks.js';
import * as K from '../src/storage/keys.js';
import { startNode } from './helpers/launcher.js';
import { http } from './helpers/http.js';

const MEMORY = 64 * 1024 * 1024;
const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'chicago-batchfam-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const keysOf = (entries: Iterable<[Buffer, Buffer]>): string[] => [...entries].map(([k]) => k.toString('hex'));
const batchRange = { gte: Buffer.from([K.Kind.batch]), lt: Buffer.from([K.Kind.batch + 1]) };

describe('batch column family (store)', () => {
  it('keeps batch keys in their family and reads, reverses and clears ranges across both in key order', async () => {
    const dir = await tempDir();
    const db = await openDatabase(dir, 1, MEMORY);
    try {
      const store = partitionStore(db, 0);
      const w = new BatchWriter(db);
      const keys = [
        K.metaKey, K.kvKey('ks', Buffer.from('a')),
        K.batchKey(1, 0, 0), K.batchKey(1, 0, 10), K.batchKey(2, 0, 0),
        K.timeIndexKey(1, 0, 5, 0), K.logKey(3),
      ];
      for (const k of keys) w.put(store, k, Buffer.from(k.toString('hex')));
      w.write(false);
      const sorted = keys.map((k) => k.toString('hex')).sort();

      // where they are on disk
      const main = new ColumnStore(db, db.columns[columnName(0)]);
      const batches = new ColumnStore(db, db.columns[batchColumnName(0)]);
      expect(keysOf(main.iterate(batchRange))).toEqual([]);
      expect(keysOf(batches.iterate(K.allRange))).toEqual([K.batchKey(1, 0, 0), K.batchKey(1, 0, 10), K.batchKey(2, 0, 0)].map((k) => k.toString('hex')));

      // one key space through the partition's store
      expect(keysOf(store.iterate(K.allRange))).toEqual(sorted);
      expect(keysOf(store.iterate({ ...K.allRange, reverse: true }))).toEqual([...sorted].reverse());
      expect(keysOf(store.iterate(K.allRange, 2))).toEqual(sorted); // chunked the same
      expect(keysOf(store.range({ gte: K.batchKey(1, 0, 5), lt: K.logKey(0) }, 10))).toEqual([K.batchKey(1, 0, 10), K.batchKey(2, 0, 0), K.timeIndexKey(1, 0, 5, 0)].map((k) => k.toString('hex')));
      expect(keysOf(store.range({ gte: K.batchKey(1, 0, 0), lt: K.batchKey(1, 0, 11), reverse: true }, 1))).toEqual([K.batchKey(1, 0, 10).toString('hex')]);
      expect(store.get(K.batchKey(1, 0, 10))?.toString()).toBe(K.batchKey(1, 0, 10).toString('hex'));
      expect(store.get(K.metaKey)?.toString()).toBe(K.metaKey.toString('hex'));

      w.del(store, K.batchKey(2, 0, 0));
      w.write(false);
      expect(store.get(K.batchKey(2, 0, 0))).toBeUndefined();

      // a clear spanning both families
      await store.clear({ gte: K.kvKey('ks', Buffer.from('')), lt: K.logKey(0) });
      expect(keysOf(store.iterate(K.allRange))).toEqual([K.metaKey, K.logKey(3)].map((k) => k.toString('hex')));
      expect(keysOf(batches.iterate(K.allRange))).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it('clears the partition family in one range delete before the batch family (a crash between leaves only unnamed batches)', async () => {
    const dir = await tempDir();
    const db = await openDatabase(dir, 1, MEMORY);
    try {
      const store = partitionStore(db, 0);
      const calls: Array<{ column: unknown; gte: Buffer; lt: Buffer }> = [];
      const clear = db.clear.bind(db);
      (db as { clear: unknown }).clear = (o: { column: unknown; gte: Buffer; lt: Buffer }) => { calls.push(o); return clear(o); };
      await store.clear(K.copyRange);
      expect(calls.map((c) => [c.column, c.gte.toString('hex'), c.lt.toString('hex')])).toEqual([
        [db.columns[columnName(0)], K.copyRange.gte.toString('hex'), K.copyRange.lt.toString('hex')],
        [db.columns[batchColumnName(0)], batchRange.gte.toString('hex'), batchRange.lt.toString('hex')],
      ]);
      calls.length = 0;
      // inside the batch kind (a retention trim): the batch family alone
      await store.clear(K.batchRange(1, 0));
      expect(calls.map((c) => c.column)).toEqual([db.columns[batchColumnName(0)]]);
      calls.length = 0;
      await store.clear(K.logRange);
      expect(calls.map((c) => c.column)).toEqual([db.columns[columnName(0)]]);
    } finally {
      await db.close();
    }
  });

  it('a walk over both families sees one point in time, however many turns it spans (a snapshot copy)', async () => {
    const dir = await tempDir();
    const db = await openDatabase(dir, 1, MEMORY);
    try {
      const store = partitionStore(db, 0);
      const w = new BatchWriter(db);
      for (const k of [K.metaKey, K.batchKey(1, 0, 0), K.timeIndexKey(1, 0, 0, 0)]) w.put(store, k, Buffer.from('before'));
      w.write(false);
      const walk = store.iterate(K.snapshotRange, 1);
      const first = walk.next();
      expect(first.done).toBe(false);
      // written after the walk began, in every family it has still to read
      for (const k of [K.batchKey(1, 0, 10), K.timeIndexKey(1, 0, 10, 0)]) w.put(store, k, Buffer.from('after'));
      w.put(store, K.batchKey(1, 0, 0), Buffer.from('after'));
      w.write(false);
      const rest = [...walk];
      expect([first.value!, ...rest].map(([k, v]) => `${k.toString('hex')}=${v.toString()}`)).toEqual(
        [K.metaKey, K.batchKey(1, 0, 0), K.timeIndexKey(1, 0, 0, 0)].map((k) => `${k.toString('hex')}=before`));
    } finally {
      await db.close();
    }
  });

  it('moves the batches of an older data dir out of the partition family at open, more than a write slice of them', async () => {
    const dir = await tempDir();
    let db = await openDatabase(dir, 2, MEMORY);
    // the older layout: batches written into the partition's own family
    const old = new ColumnStore(db, db.columns[columnName(1)]);
    const w = new BatchWriter(db);
    const value = (i: number): Buffer => Buffer.alloc(1024 * 1024, i);
    for (let i = 0; i < 10; i++) { w.put(old, K.batchKey(1, 0, i * 100), value(i)); w.write(false); }
    w.put(old, K.timeIndexKey(1, 0, 1, 0), Buffer.from('index'));
    w.write(false);
    await db.close();

    db = await openDatabase(dir, 2, MEMORY);
    try {
      const main = new ColumnStore(db, db.columns[columnName(1)]);
      expect(keysOf(main.iterate(batchRange))).toEqual([]);
      expect(main.get(K.timeIndexKey(1, 0, 1, 0))?.toString()).toBe('index');
      const store = partitionStore(db, 1);
      const moved = [...store.iterate(batchRange, 4)];
      expect(moved.length).toBe(10);
      moved.forEach(([k, v], i) => {
        expect(k.equals(K.batchKey(1, 0, i * 100))).toBe(true);
        expect(v.equals(value(i))).toBe(true);
      });
      expect([...partitionStore(db, 0).iterate(K.allRange)]).toEqual([]);
    } finally {
      await db.close();
    }
  });
});

describe('batch column family (node)', () => {
  it('reads a format 3 dir whose batches are in the partition family, moves them and marks it 4', async () => {
    const dir = await tempDir();
    const meta = path.join(dir, 'chicago.json');
    let n = await startNode({ dataDir: dir });
    try {
      await http(n.url, 'POST', '/v1/topics', { name: 'bf', partitions: 1 });
      for (let i = 0; i < 3; i++) expect((await http(n.url, 'POST', '/v1/topics/bf/records', [{ value: `before-${i}` }])).status).toBe(200);
    } finally {
      await n.stop();
    }
    // back to the format 3 layout: every batch into its partition's family
    const { partitions } = JSON.parse(await readFile(meta, 'utf8')) as { partitions: number };
    const db = await openDatabase(path.join(dir, 'rocksdb'), partitions, MEMORY);
    let movedBack = 0;
    try {
      const w = new BatchWriter(db);
      for (let p = 0; p < partitions; p++) {
        const main = new ColumnStore(db, db.columns[columnName(p)]);
        const batches = new ColumnStore(db, db.columns[batchColumnName(p)]);
        for (const [k, v] of batches.iterate(batchRange)) { w.put(main, k, v); w.del(batches, k); movedBack++; }
      }
      w.write(true);
    } finally {
      await db.close();
    }
    expect(movedBack).toBe(3);
    await writeFile(meta, JSON.stringify({ ...JSON.parse(await readFile(meta, 'utf8')), format: 3 }));

    n = await startNode({ dataDir: dir });
    try {
      expect(JSON.parse(await readFile(meta, 'utf8')).format).toBe(4);
      expect((await http(n.url, 'POST', '/v1/topics/bf/records', [{ value: 'after' }])).status).toBe(200);
      const read = await http(n.url, 'GET', '/v1/topics/bf/records?offset=0');
      expect(read.body.records.map((r: { value: string }) => r.value)).toEqual(['before-0', 'before-1', 'before-2', 'after']);
    } finally {
      await n.stop();
    }
  });
});
