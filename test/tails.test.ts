// Live tails at a partition's leader get fresh appends pushed from the producer's request, but
// only once readers may see them: an append answered before it was confirmed (acks=one in a
// cluster) waits for its worker to confirm it in the same epoch.
import { describe, expect, it } from 'vitest';
import { appendOf, StreamWatchers, type StreamSource } from '../src/node/tails.js';
import type { StoredRecord } from '../src/protocol/api.js';
import type { FetchReply } from '../src/actors/messages.js';
import type { WireRecord } from '../src/actors/partition.js';

const SKEY = '1:0';
const rec = (v: string): WireRecord => [null, Buffer.from(v), null];

/** A leader's stream of `values`, of which readers may see the first `end`. */
function leaderSource(values: string[], visible: { end: number }): StreamSource & { reads: number } {
  return {
    reads: 0,
    read(offset, maxRecords) {
      this.reads++;
      const upto = Math.min(visible.end, offset + maxRecords);
      const records: FetchReply['records'] = values.slice(offset, upto).map((v, i) => [offset + i, 0, null, Buffer.from(v), null]);
      return Promise.resolve({ records, next: Math.max(offset, upto), start: 0, end: visible.end });
    },
    appendsArriveHere: () => true,
  };
}

async function settle(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
}

/** A tail from offset 0 at the leader of `values`, opened and settled; nothing is visible yet. */
async function tailAtLeader(values: string[]) {
  const visible = { end: 0 };
  const source = leaderSource(values, visible);
  const got: string[] = [];
  const w = new StreamWatchers(async () => 0);
  w.openTail(SKEY, 0, 0, 1 << 20, source, { push: (rs: StoredRecord[]) => got.push(...rs.map((r) => Buffer.from(r.value).toString())), close: () => {} });
  await settle();
  return { visible, source, got, w };
}

describe('tails at the leader', () => {
  it('push an unconfirmed append only once it is confirmed in its epoch, without a read', async () => {
    const values: string[] = [];
    const { visible, source, got, w } = await tailAtLeader(values);
    const readsBefore = source.reads;

    values.push('a', 'b');
    w.appended(SKEY, appendOf(0, 1, [rec('a'), rec('b')]), 7);
    await settle();
    expect(got).toEqual([]);

    visible.end = 2;
    w.confirmed([[SKEY, 2, 7]]);
    await settle();
    expect(got).toEqual(['a', 'b']);
    expect(source.reads).toBe(readsBefore);
  });

  it('drop what an older epoch held back: a failover may have replaced it', async () => {
    const { visible, got, w } = await tailAtLeader(['new']);

    w.appended(SKEY, appendOf(0, 1, [rec('lost')]), 7); // answered in epoch 7, never confirmed
    visible.end = 1;
    w.confirmed([[SKEY, 1, 9]]); // epoch 9's leader confirms a different record at offset 0
    await settle();
    expect(got).toEqual(['new']);
  });
  it('push a produced batch to a tail of batches as stored, without decoding its records', async () => {
    const visible = { end: 0 };
    const source = leaderSource([], visible);
    const got: Array<[number, number]> = [];
    const w = new StreamWatchers(async () => 0);
    w.openTail(SKEY, 0, 0, 1 << 20, source, {
      push: () => { throw new Error('a tail of batches gets batches'); },
      pushBatches: (first, batches, bytes) => { got.push([first, bytes]); expect(batches).toHaveLength(1); },
      close: () => {},
    });
    await settle();
    const readsBefore = source.reads;
    const bytes = Buffer.alloc(100, 7);
    w.appended(SKEY, { base: 0, ts: 1, count: 3, records: () => { throw new Error('decoded'); }, batch: () => bytes });
    visible.end = 3;
    await settle();
    expect(got).toEqual([[0, 100]]);
    expect(source.reads).toBe(readsBefore);
  });
});
