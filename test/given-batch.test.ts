// A produce batch whose caller gives its buffer away (an HTTP body: threads.ts giveBatch) goes to
// the partition worker transferred, not copied; a write that comes back NOT_LEADER did not run,
// and the worker hands the batch back so that the router can send it again.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { WorkerHandle, giveBatch } from '../src/actors/threads.js';
import type { RequestBody } from '../src/actors/messages.js';
import type { ReplicaView } from '../src/actors/replica.js';
import { encodeBatch } from '../src/protocol/batch.js';
import { epoch, nodeId } from '../src/runtime/ids.js';
import { openDatabase } from '../src/storage/rocks.js';

const WORKER = new URL('../dist/src/actors/worker.js', import.meta.url);
const SELF = nodeId('self');
const OTHER = nodeId('other');

/** a batch over the inline bound, in an ArrayBuffer of its own */
function ownBatch(): Buffer {
  const enc = encodeBatch(Array.from({ length: 100 }, (_, i) => ({ value: `line ${i} `.padEnd(200, 'x') })));
  const own = Buffer.allocUnsafeSlow(enc.length);
  own.set(enc);
  return own;
}

describe('a batch given to its partition worker', () => {
  it('is transferred, and handed back with NOT_LEADER; a batch not given is copied', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'chicago-given-'));
    const db = await openDatabase(dir, 1, 64 * 1024 * 1024);
    const faults: Error[] = [];
    const w = new WorkerHandle(0, WORKER, db.handle, (err) => faults.push(err), () => {});
    try {
      // this node follows: every write is answered NOT_LEADER without running
      const view: ReplicaView = { epoch: epoch(1), leader: OTHER, replicas: [SELF, OTHER], live: [SELF, OTHER], copies: 2, isr: [OTHER], version: 1 };
      await w.control.open({ self: SELF, logLevel: 'warn', partitions: [{ p: 0, view }], syncPolicy: 'none', groupIntervalMs: 2, maintenanceIntervalMs: 60_000, antiEntropyIntervalMs: 60_000, replicationTimeoutMs: 1000 });

      const given = ownBatch();
      const bytes = Buffer.from(given);
      giveBatch(given);
      const body: Extract<RequestBody, { op: 'produce' }> = { p: 0, op: 'produce', topicId: 1, tp: 0, batch: given, batchBytes: 100 * 200, acks: 'all' };
      await expect(w.write(body, 0)).rejects.toMatchObject({ code: 'NOT_LEADER' });
      expect(given.byteLength).toBe(0); // its buffer went to the worker
      expect(body.batch === given).toBe(false); // (expect(detached).not.toBe reads it)
      expect(Buffer.compare(body.batch!, bytes)).toBe(0); // and came back

      const kept = ownBatch();
      const keptBody: Extract<RequestBody, { op: 'produce' }> = { ...body, batch: kept };
      await expect(w.write(keptBody, 0)).rejects.toMatchObject({ code: 'NOT_LEADER' });
      expect(keptBody.batch).toBe(kept);
      expect(kept.byteLength).toBe(bytes.length);

      // a view into a larger buffer is never given: copied
      const view2 = Buffer.concat([Buffer.alloc(8), ownBatch()]).subarray(8);
      giveBatch(view2);
      await expect(w.write({ ...body, batch: view2 }, 0)).rejects.toMatchObject({ code: 'NOT_LEADER' });
      expect(view2.byteLength).toBe(bytes.length);
      expect(faults).toEqual([]);
    } finally {
      await w.stop();
      await db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
