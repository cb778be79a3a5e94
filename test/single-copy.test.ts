// A produced batch is stored once: in its stream, under its base offset. The replication log entry
// names those bytes (base, length, CRC) rather than repeating them; a resend reads them back, and
// retention, which removes the batch, trims the log with it. Older data dirs shed their copies.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { MemStore } from './sim/store.js';
import { startNode } from './helpers/launcher.js';
import { http } from './helpers/http.js';
import { catchUp } from '../src/actors/catch-up.js';
import { initialState, type Command } from '../src/actors/partition.js';
import { carriesBatch, createReplica, decodeEntry, handle, readLogEntry, type Effect, type ReplicaView } from '../src/actors/replica.js';
import { retentionCommands } from '../src/actors/maintenance.js';
import { PartitionReader } from '../src/actors/reads.js';
import { decodeBatch, encodeBatch } from '../src/protocol/batch.js';
import { epoch, nodeId, partitionId, seq } from '../src/runtime/ids.js';
import { openDatabase, partitionStore } from '../src/storage/rocks.js';
import * as K from '../src/storage/keys.js';
import { limits } from '../src/runtime/limits.js';
import { diskCodec } from '../src/runtime/codec.js';
import { digestSlices } from '../src/actors/anti-entropy.js';

const L = nodeId('L');
const F = nodeId('F');

function leader(copies = 1): { r: ReturnType<typeof createReplica>; store: MemStore; write: (cmd: Command, at: number) => Effect[] } {
  const view: ReplicaView = { epoch: epoch(1), leader: L, replicas: [L, F], live: [L, F], copies, isr: [L], version: 1 };
  const r = createReplica(L, initialState(partitionId(0), epoch(1), seq(0)), view);
  const store = new MemStore();
  const run = (effects: Effect[]) => { for (const e of effects) if (e.kind === 'write') store.apply(e.ops); return effects; };
  run(handle(r, { type: 'view', view }, 0));
  let id = 0;
  return { r, store, write: (cmd, at) => run(handle(r, { type: 'write', id: ++id, cmd, acks: 'one', timeoutMs: 1000 }, at)) };
}

const value = (n: number, fill: string) => Buffer.alloc(n, fill);

describe('single-copy storage (unit)', () => {
  it('logs a produce by reference: the batch bytes are in the stream once, and a resend reads them back', () => {
    const { r, store, write } = leader();
    const batch = encodeBatch([{ key: Buffer.from('k'), value: value(4000, 'a'), headers: { h: 'v' } }]);
    write({ op: 'produce', topicId: 1, tp: 0, batch, batchBytes: 4003 }, 10);
    // a produce of records (the JSON form) replicates and is logged as the batch it became
    write({ op: 'produce', topicId: 1, tp: 0, records: [[null, value(3000, 'b'), null]] }, 20);
    write({ op: 'kvPut', ks: 'ks', key: Buffer.from('x'), value: Buffer.from('y') }, 30);

    const log = [...store.iterate(K.logRange)];
    expect(log.map(([k]) => K.seqOfLogKey(k))).toEqual([1, 2, 3]);
    for (const [, v] of log.slice(0, 2)) {
      expect(carriesBatch(v)).toBe(false);
      expect(v.length).toBeLessThan(200); // the head only: 4,000 and 3,000 value bytes live in the stream
    }
    const batches = [...store.iterate(K.batchRange(1, 0))];
    expect(batches.map(([k]) => K.baseOffsetOfBatchKey(k))).toEqual([0, 1]);

    const sent = catchUp(r, L, 0, 40, store);
    expect(sent.kind).toBe('append');
    if (sent.kind !== 'append') return;
    expect(sent.msg.entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    const [first, second] = sent.msg.entries.map((e) => e.cmd as Extract<Command, { op: 'produce' }>);
    expect(Buffer.from(first.batch!).equals(batches[0][1])).toBe(true);
    expect(Buffer.from(second.batch!).equals(batches[1][1])).toBe(true);
    expect(second.records).toBeUndefined();
    expect(second.batchBytes).toBe(3000);
    expect(decodeBatch(second.batch!).records[0][1].equals(value(3000, 'b'))).toBe(true);
  });

  it('a resend counts the batches it reads back against catchUpBytesMax, not the short entries that name them', () => {
    const { r, store, write } = leader();
    const each = Math.ceil(limits.catchUpBytesMax / 3);
    for (let i = 0; i < 6; i++) write({ op: 'produce', topicId: 1, tp: 0, batch: encodeBatch([{ key: null, value: value(each, 'h') }]), batchBytes: each }, 10 + i);
    const sent = catchUp(r, L, 0, 40, store);
    if (sent.kind !== 'append') throw new Error('expected an append');
    // three batches reach the bound; the rest go in the next resend
    expect(sent.msg.entries.map((e) => e.seq)).toEqual([1, 2, 3]);
    const rest = catchUp(r, L, 3, 50, store);
    expect(rest.kind === 'append' && rest.msg.entries.map((e) => e.seq)).toEqual([4, 5, 6]);
  });

  it('digests a time index alike whether its entries name their seq or not (a cluster mid-upgrade), and tells counts apart', () => {
    const digestOf = (value: unknown) => {
      const store = new MemStore();
      store.apply([{ type: 'put', key: K.timeIndexKey(1, 0, 5, 0), value: diskCodec.encode(value) }]);
      const slices = digestSlices(store, { partition: 0, seq: 1, epoch: 1 });
      let step = slices.next();
      while (!step.done) step = slices.next();
      return step.value.ranges.timeIndex;
    };
    expect(digestOf([3, 100, 7])).toBe(digestOf([3, 100]));
    expect(digestOf([3, 100, 7])).not.toBe(digestOf([4, 100, 7]));
    expect(digestOf([3, 100, 7])).not.toBe(digestOf([3, 101]));
  });

  it('a follower applying the logged entries stores the same bytes as its leader', () => {
    const { r, store, write } = leader();
    write({ op: 'produce', topicId: 1, tp: 0, records: [[Buffer.from('k'), value(100, 'c'), { a: 'b' }]] }, 10);
    write({ op: 'produce', topicId: 1, tp: 0, batch: encodeBatch([{ key: null, value: value(50, 'd') }]), batchBytes: 50 }, 20);
    const sent = catchUp(r, L, 0, 30, store);
    if (sent.kind !== 'append') throw new Error('expected an append');
    const view: ReplicaView = { epoch: epoch(1), leader: L, replicas: [L, F], live: [L, F], copies: 1, isr: [L], version: 1 };
    const f = createReplica(F, initialState(partitionId(0), epoch(1), seq(0)), view);
    const fstore = new MemStore();
    for (const e of [...handle(f, { type: 'view', view }, 0), ...handle(f, { type: 'peer', msg: sent.msg }, 40)]) if (e.kind === 'write') fstore.apply(e.ops);
    expect(fstore.digest()).toBe(store.digest());
    const logOf = (s: MemStore) => [...s.iterate(K.logRange)].map(([k, v]) => `${K.seqOfLogKey(k)}:${v.toString('hex')}`);
    expect(logOf(fstore)).toEqual(logOf(store));
  });

  it('retention trims the log with the batches it removes; a follower behind that gets a full copy', () => {
    const { r, store, write } = leader();
    for (let i = 0; i < 4; i++) write({ op: 'produce', topicId: 1, tp: 0, batch: encodeBatch([{ key: null, value: value(100, 'e') }]), batchBytes: 100 }, 10 + i);
    write({ op: 'kvPut', ks: 'ks', key: Buffer.from('x'), value: Buffer.from('y') }, 20);
    const reader = new PartitionReader(() => r.state, store as never);
    const cmds = retentionCommands(r.state, store as never, reader, new Map([[1, { bytes: 250 }]]), 30);
    expect(cmds).toHaveLength(1);
    const trim = cmds[0] as Extract<Command, { op: 'trim' }>;
    expect(trim.newStart).toBe(2);
    expect(trim.logThrough).toBe(2); // the seq that appended the last batch it removes
    write(trim, 40);
    expect([...store.iterate(K.batchRange(1, 0))].map(([k]) => K.baseOffsetOfBatchKey(k))).toEqual([2, 3]);
    expect([...store.iterate(K.logRange)].map(([k]) => K.seqOfLogKey(k))).toEqual([3, 4, 5, 6]);
    expect(catchUp(r, L, 1, 50, store).kind).toBe('logMissing');
    const fromTrim = catchUp(r, L, 2, 50, store);
    expect(fromTrim.kind === 'append' && fromTrim.msg.entries.map((e) => e.seq)).toEqual([3, 4, 5, 6]);
  });

  it('an entry whose batch is gone or is other bytes under the same offset cannot be resent', () => {
    const { r, store, write } = leader();
    write({ op: 'produce', topicId: 1, tp: 0, batch: encodeBatch([{ key: null, value: value(10, 'f') }]), batchBytes: 10 }, 10);
    const entry = [...store.iterate(K.logRange)][0][1];
    expect(readLogEntry(entry, store)).toBeDefined();
    write({ op: 'dropStream', topicId: 1, tp: 0 }, 20);
    expect(readLogEntry(entry, store)).toBeUndefined();
    write({ op: 'produce', topicId: 1, tp: 0, batch: encodeBatch([{ key: null, value: value(10, 'g') }]), batchBytes: 10 }, 30);
    expect(readLogEntry(entry, store)).toBeUndefined(); // offset 0 again, other bytes (CRC)
    expect(catchUp(r, L, 0, 40, store).kind).toBe('logMissing');
    expect(decodeEntry(entry).seq).toBe(1);
  });

  it('a leader held alone keeps no log; a follower behind what it wrote then gets a full copy, one behind the gap the log up to it', () => {
    const { r, store, write } = leader();
    const put = (k: string, at: number) => write({ op: 'kvPut', ks: 'ks', key: Buffer.from(k), value: Buffer.from('v') }, at);
    put('a', 10);
    put('b', 11); // seqs 1, 2 logged: F is a replica
    const alone: ReplicaView = { ...r.view, replicas: [L], live: [L], isr: [L], version: 2 };
    handle(r, { type: 'view', view: alone }, 12);
    put('c', 13);
    put('d', 14); // seqs 3, 4: no follower needs them
    handle(r, { type: 'view', view: { ...alone, replicas: [L, F], live: [L, F], version: 3 } }, 15);
    put('e', 16); // seq 5 logged again
    expect([...store.iterate(K.logRange)].map(([k]) => K.seqOfLogKey(k))).toEqual([1, 2, 5]);
    const behind = catchUp(r, L, 0, 20, store);
    expect(behind.kind === 'append' && behind.msg.entries.map((e) => e.seq)).toEqual([1, 2]);
    expect(catchUp(r, L, 2, 20, store).kind).toBe('logMissing');
    const current = catchUp(r, L, 4, 20, store);
    expect(current.kind === 'append' && current.msg.entries.map((e) => e.seq)).toEqual([5]);
  });

  it('a leader left alone in a partition of N > 1 copies keeps its log: the follower that returns catches up from it', () => {
    const { r, store, write } = leader(2);
    const put = (k: string, at: number) => write({ op: 'kvPut', ks: 'ks', key: Buffer.from(k), value: Buffer.from('v') }, at);
    put('a', 10);
    put('b', 11);
    // F's node left the membership (a restart longer than its lease): placement shrinks the set to L
    handle(r, { type: 'view', view: { ...r.view, replicas: [L], live: [L], isr: [L], version: 2 } }, 12);
    put('c', 13);
    put('d', 14);
    expect([...store.iterate(K.logRange)].map(([k]) => K.seqOfLogKey(k))).toEqual([1, 2, 3, 4]);
    // F is back with what it held (seq 2): a log catch-up, not a full copy of the partition
    handle(r, { type: 'view', view: { ...r.view, replicas: [L, F], live: [L, F], version: 3 } }, 15);
    const back = catchUp(r, L, 2, 20, store);
    expect(back.kind === 'append' && back.msg.entries.map((e) => e.seq)).toEqual([3, 4]);
  });

  it('an acks=all write a leader alone takes while a stand-in is on its way reaches the stand-in as a hint, not after a full copy', () => {
    const { r, store } = leader(2);
    const S = nodeId('S');
    handle(r, { type: 'view', view: { ...r.view, replicas: [L], live: [L], isr: [L], spares: 1, version: 2 } }, 10);
    const wrote = handle(r, { type: 'write', id: 1, cmd: { op: 'kvPut', ks: 'ks', key: Buffer.from('k'), value: Buffer.from('v') }, acks: 'all', timeoutMs: 1000, prior: null }, 11);
    for (const e of wrote) if (e.kind === 'write') store.apply(e.ops);
    expect(r.pending.map((w) => w.seq)).toEqual([1]); // waits for a second copy
    const added = handle(r, { type: 'view', view: { ...r.view, replicas: [L, S], live: [L, S], spares: 0, version: 3 } }, 12);
    const resend = added.find((e) => e.kind === 'resend');
    expect(resend?.kind === 'resend' && resend.fromSeq).toBe(0);
    const tail = catchUp(r, L, 0, 12, store);
    expect(tail.kind === 'append' && tail.msg.entries.map((e) => e.seq)).toEqual([1]);
  });
});

/** Sum of key + value bytes of one kind in partition 0 of a stopped node's data dir. */
async function kindBytes(dir: string, partitions: number): Promise<{ batch: number; log: number; logCarrying: number; logEntries: number }> {
  const db = await openDatabase(path.join(dir, 'rocksdb'), partitions, 64 * 1024 * 1024);
  try {
    const out = { batch: 0, log: 0, logCarrying: 0, logEntries: 0 };
    for (let p = 0; p < partitions; p++) {
      const store = partitionStore(db, p);
      for (const [k, v] of store.iterate({ gte: Buffer.from([K.Kind.batch]), lt: Buffer.from([K.Kind.batch + 1]) })) out.batch += k.length + v.length;
      for (const [k, v] of store.iterate(K.logRange)) {
        out.log += k.length + v.length;
        out.logEntries++;
        if (carriesBatch(v)) out.logCarrying++;
      }
    }
    return out;
  } finally {
    await db.close();
  }
}

describe('single-copy storage (node)', () => {
  it('stores a produced MiB once on a single node: its partition, held alone, keeps no replication log', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'chicago-once-'));
    try {
      const n = await startNode({ dataDir: dir, env: { CHICAGO_MAINTENANCE_INTERVAL_MS: '3600000' } });
      try {
        expect((await http(n.url, 'POST', '/v1/topics', { name: 'once', partitions: 1 })).status).toBeLessThan(300);
        // 2 MiB in 64 requests of 8 records of 4 KiB, half as JSON, half as batches
        for (let i = 0; i < 64; i++) {
          const records = Array.from({ length: 8 }, (_, j) => ({ key: `k${i}.${j}`, value: 'v'.repeat(4096) }));
          const res = i % 2 === 0
            ? await http(n.url, 'POST', '/v1/topics/once/records', records)
            : await fetch(`${n.url}/v1/topics/once/records`, { method: 'POST', headers: { 'content-type': 'application/vnd.chicago.record-batch' }, body: encodeBatch(records.map((r) => ({ key: Buffer.from(r.key), value: Buffer.from(r.value) }))) });
          expect(res.status).toBeLessThan(300);
        }
      } finally {
        await n.stop();
      }
      const meta = JSON.parse(await readFile(path.join(dir, 'chicago.json'), 'utf8')) as { partitions: number; format: number };
      expect(meta.format).toBe(4);
      const b = await kindBytes(dir, meta.partitions);
      expect(b.batch).toBeGreaterThan(2 * 1024 * 1024);
      expect(b.batch).toBeLessThan(2.2 * 1024 * 1024);
      expect(b.logEntries).toBe(0); // a log by reference, with a follower: the unit tests above
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('opens a format 2 data dir (written by the previous build), reads it, and rewrites its log without the batch copies', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'chicago-once-f2-'));
    try {
      // test/fixtures/data-dir-format2.gen.mjs wrote it: one partition, topic "old", 6 JSON records then 3 batches
      await promisify(execFile)('tar', ['-xzf', path.resolve('test/fixtures/data-dir-format2.tar.gz'), '-C', dir]);
      // its records are in a zstd-compressed write-ahead log only (no table files): this build, which
      // writes its log uncompressed, recovers them from it
      const files = await readdir(path.join(dir, 'rocksdb'));
      expect(files.filter((f) => f.endsWith('.sst'))).toEqual([]);
      expect(await readFile(path.join(dir, 'rocksdb', files.find((f) => f.startsWith('OPTIONS-'))!), 'utf8')).toMatch(/^\s*wal_compression=kZSTD$/m);
      const before = await kindBytes(dir, 1);
      expect(before.logCarrying).toBe(3); // the batch produces; the JSON ones stored records
      const n = await startNode({ dataDir: dir, nodeId: 'vm' });
      try {
        expect(JSON.parse(await readFile(path.join(dir, 'chicago.json'), 'utf8')).format).toBe(4);
        expect((await http(n.url, 'POST', '/v1/topics/old/records', [{ value: 'new' }])).status).toBeLessThan(300);
        const got = (await http(n.url, 'GET', '/v1/topics/old/records?offset=0&maxRecords=100')).body.records;
        expect(got.map((r: { value: string }) => r.value)).toEqual(['json-0', 'json-0b', 'json-1', 'json-1b', 'json-2', 'json-2b', 'batch-0', 'batch-1', 'batch-2', 'new']);
        expect(got[6].headers).toEqual({ n: '0' });
      } finally {
        await n.stop();
      }
      const options = (await readdir(path.join(dir, 'rocksdb'))).filter((f) => f.startsWith('OPTIONS-')).sort().at(-1)!;
      expect(await readFile(path.join(dir, 'rocksdb', options), 'utf8')).toMatch(/^\s*wal_compression=kNoCompression$/m);
      const after = await kindBytes(dir, 1);
      expect(after.logCarrying).toBe(0);
      expect(after.logEntries).toBe(before.logEntries); // the new produce is not logged: the partition is held alone
      expect(after.log).toBeLessThan(before.log);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
