// What a kv write costs between the gateway thread and its partition worker: the messages travel in
// the shared msgpack structures (no field names on the wire), posted bytes own exactly their
// ArrayBuffer (a structured clone copies a view's whole buffer), and a partition's meta is encoded
// lazily yet as of its op.
import { describe, expect, it } from 'vitest';
import { diskCodec, threadCodec } from '../src/runtime/codec.js';
import { initialState, metaOp, step, type PartitionMeta } from '../src/actors/partition.js';
import { epoch, partitionId, seq } from '../src/runtime/ids.js';

/** Every message posted through a fake port. */
function capture(): { port: { postMessage(v: unknown, t?: ArrayBuffer[]): void }; posted: unknown[] } {
  const posted: unknown[] = [];
  return { port: { postMessage: (v) => { posted.push(v); } }, posted };
}

const key = Buffer.from('user:42');
const value = Buffer.alloc(200, 7);
// as node.ts kvPut builds the body and threads.ts enqueue puts the id in front of it
const putRequest = { id: 9, p: 3, op: 'kvPut', ks: 'bench', key, value, ttlMs: undefined, acks: 'one' };
const delRequest = { id: 10, p: 3, op: 'kvDel', ks: 'bench', key, acks: 'one' };
// as worker.ts execute and post build them
const output = { replies: [{ id: 9, ok: true, res: { version: 77 }, replicas: 1 }, { id: 10, ok: true, res: { version: 78, existed: true }, replicas: 1 }], visible: undefined };

describe('thread messages of kv writes', () => {
  it('carry no field names and decode to what was sent', () => {
    const tx = threadCodec();
    const rx = threadCodec();
    for (const msg of [[putRequest, delRequest], output]) {
      const bytes = Buffer.from(tx.encode(msg));
      const text = bytes.toString('latin1');
      for (const name of ['ttlMs', 'acks', 'replies', 'replicas', 'version', 'existed']) expect(text).not.toContain(name);
      expect(rx.decode(bytes)).toEqual(msg);
    }
  });

  it('a different key order still decodes (its names travel inline)', () => {
    const tx = threadCodec();
    const rx = threadCodec();
    const reordered = [{ p: 3, op: 'kvPut', ks: 'bench', key, value, acks: 'one', id: 9 }];
    const bytes = Buffer.from(tx.encode(reordered));
    expect(bytes.toString('latin1')).toContain('acks');
    expect(rx.decode(bytes)).toEqual(reordered);
  });

  it('are posted in bytes that own exactly their ArrayBuffer, small and large', () => {
    const codec = threadCodec();
    const { port, posted } = capture();
    codec.post(port, [putRequest]);
    codec.post(port, [{ ...putRequest, value: Buffer.alloc(64 * 1024, 1) }]);
    codec.postBeside(port, [putRequest], [new ArrayBuffer(8)]);
    const first = posted[0] as Uint8Array;
    expect(first.byteOffset).toBe(0);
    expect(first.buffer.byteLength).toBe(first.byteLength);
    expect((posted[1] as Uint8Array).byteLength).toBeGreaterThan(64 * 1024);
    const beside = (posted[2] as [Uint8Array, ArrayBuffer])[0];
    expect(beside.buffer.byteLength).toBe(beside.byteLength);
    expect(threadCodec().decode(Buffer.from(first))).toEqual([putRequest]);
  });
});

describe('partition meta op', () => {
  it('holds the meta as of its step, whatever happens to the state after', () => {
    const s = initialState(partitionId(0), epoch(3), seq(0));
    s.epochs.push([3, 1]);
    const { ops } = step(s, { op: 'kvPut', ks: 'ks', key, value }, 1000);
    const meta = ops.find((o) => o.type === 'put' && o.key[0] === 0 && o.key[1] === 0x6d)!;
    // later steps, and a new epoch, before the value is first read
    step(s, { op: 'kvPut', ks: 'ks', key, value }, 1001);
    s.epochs.push([4, 3]);
    s.epoch = epoch(4);
    expect(meta.type).toBe('put');
    const read = diskCodec.decode<PartitionMeta>((meta as { value: Buffer }).value);
    expect(read).toEqual({ seq: 1, epoch: 3, epochs: [[3, 1]] });
    expect(diskCodec.decode<PartitionMeta>((metaOp(s) as { value: Buffer }).value)).toEqual({ seq: 2, epoch: 4, epochs: [[3, 1], [4, 3]] });
  });
});
