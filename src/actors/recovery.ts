// Rebuilding a partition from its store: at start, after a crash, after a copy is installed or
// abandoned. The worker runs it over RocksDB and the simulator over its in-memory store.
import { diskCodec } from '../runtime/codec.js';
import { epoch, partitionId, seq } from '../runtime/ids.js';
import { limits } from '../runtime/limits.js';
import * as K from '../storage/keys.js';
import { batchBaseOffset } from '../protocol/batch.js';
import { emptyStream, initialState, streamKeyOf, type CopyLedger, type PartitionMeta, type PartitionState, type ProducerWindow } from './partition.js';
import { carriesBatch, decodeEntry, encodeLogEntry, restoreHints, type Replica } from './replica.js';
import type { Storage } from './storage.js';

/** The hinted entries a replica kept on disk (replica.ts Hints). */
export function restoreStoredHints(r: Replica, store: Storage): void {
  restoreHints(r, store.get(K.hintHeaderKey), (function* (): Generator<[number, Uint8Array]> {
    for (const [k, v] of store.iterate(K.hintEntriesRange)) yield [K.seqOfHintKey(k), v];
  })());
}

/**
 * A partition's in-memory state from its store. The store's clear is synchronous to readers
 * (RocksDB range deletes apply before clear() returns), so nothing interleaves with a load.
 */
export function loadState(store: Storage, p: number): PartitionState {
  const metaBuf = store.get(K.metaKey);
  const meta = metaBuf ? diskCodec.decode<Partial<PartitionMeta>>(metaBuf) : {};
  if (store.get(K.installingKey)) {
    // A copy that a crash cut short (or that was abandoned): start empty and still incomplete; the
    // leader sends a complete one.
    void store.clear(K.contentRange);
    return initialState(partitionId(p), epoch(meta.epoch ?? 1), seq(0));
  }
  const state = initialState(partitionId(p), epoch(meta.epoch ?? 1), seq(meta.seq ?? 0));
  if (meta.epochs?.length) state.epochs = meta.epochs;
  const copies = store.get(K.copiesKey);
  if (copies) state.copies = diskCodec.decode<CopyLedger>(copies);
  for (const [k, v] of store.iterate(K.streamRange)) {
    const topicId = k.readUInt32BE(1);
    const tp = k.readUInt32BE(5);
    const st = Object.assign(emptyStream(topicId, tp), diskCodec.decode<object>(v));
    state.streams.set(streamKeyOf(topicId, tp), st);
    // A trim records its new start before its range delete runs; finish any that a crash cut short.
    if (st.start > 0) void store.clear({ gte: K.batchKey(topicId, tp, 0), lt: K.batchKey(topicId, tp, st.start) });
  }
  const producers: Array<[string, ProducerWindow]> = [];
  for (const [k, v] of store.iterate(K.producerRange)) {
    const sep = k.indexOf(0, 1);
    const producerId = k.subarray(1, sep).toString('utf8');
    producers.push([`${producerId}\0${k.readUInt32BE(sep + 1)}:${k.readUInt32BE(sep + 5)}`, diskCodec.decode<ProducerWindow>(v)]);
  }
  producers.sort((a, b) => a[1].usedAtMs - b[1].usedAtMs);
  for (const [key, w] of producers.slice(-limits.producersPerPartitionMax)) state.producers.set(key, w);
  return state;
}

/**
 * A data dir of format 2 or older stores each produced batch twice: in its stream and inside its
 * log entry. The log entries that still carry one are rewritten to name the stream's copy instead
 * (encodeLogEntry), a slice at a time through `put`. Entries whose stream no longer holds those
 * very bytes keep them: either form reads back. Returns how many it rewrote.
 */
export function compactLog(store: Storage, put: (key: Buffer, value: Buffer) => void): number {
  let n = 0;
  for (const [k, v] of store.iterate(K.logRange)) {
    if (!carriesBatch(v)) continue;
    const e = decodeEntry(v);
    const c = e.cmd;
    if (c.op !== 'produce' || !c.batch) continue;
    const stored = store.get(K.batchKey(c.topicId, c.tp, batchBaseOffset(c.batch)));
    if (!stored || !stored.equals(c.batch)) continue;
    put(k, encodeLogEntry(e));
    n++;
  }
  return n;
}

