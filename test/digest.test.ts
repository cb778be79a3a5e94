// Anti-entropy digests are computed a slice at a time on the worker; writes that land between
// slices must not change the answer (the iterator pins the state the digest started at).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RocksLevel } from '@nxtedition/rocksdb';
import { ColumnStore, columnName, openDatabase } from '../src/storage/rocks.js';
import { PartitionReader } from '../src/actors/reads.js';
import { initialState } from '../src/actors/partition.js';
import { epoch, partitionId, seq } from '../src/runtime/ids.js';
import * as K from '../src/storage/keys.js';

let dir: string;
let db: RocksLevel;
let store: ColumnStore;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'chicago-digest-'));
  db = await openDatabase(dir, 1, 64 * 1024 * 1024);
  store = new ColumnStore(db, db.columns[columnName(0)]);
});
afterAll(async () => {
  await db?.close();
  await rm(dir, { recursive: true, force: true });
});

async function put(key: Buffer, value: string): Promise<void> {
  await db.batch().put(key, Buffer.from(value), { column: store.column }).write();
}

describe('partition digest', () => {
  it('is the state it started at, whatever is written between its slices', async () => {
    for (let i = 0; i < 20; i++) await put(K.kvKey('ks', Buffer.from(`k${i}`)), `v${i}`);
    await put(Buffer.from([K.Kind.stream, 0, 1]), 'stream');
    await put(K.logKey(7), 'the log is not state');
    const reader = new PartitionReader(() => initialState(partitionId(0), epoch(1), seq(21)), store);
    const before = reader.digest();
    expect(before.keys).toBe(21);

    const job = reader.digestSlices(1);
    let slices = 0;
    let r = job.next();
    while (!r.done) {
      if (slices++ === 3) {
        await put(K.kvKey('ks', Buffer.from('k5')), 'changed');
        await put(K.kvKey('ks', Buffer.from('new')), 'added');
      }
      r = job.next();
    }
    expect(slices).toBe(21);
    expect(r.value).toEqual(before);

    const after = reader.digest();
    expect(after.digest).not.toBe(before.digest);
    expect(after.ranges.stream).toBe(before.ranges.stream);
    expect(after.ranges.kv).not.toBe(before.ranges.kv);
  });
});
