// The agent's record-batch buffers (shipper.ts BatchBuffers): reused only once given back, bounded,
// and dropped when the agent goes idle.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BatchBuffers, encodeShipBatch, shippedValueBytes } from '../src/agent/shipper.js';
import { limits } from '../src/runtime/limits.js';
import type { Span } from '../src/agent/spool.js';

afterEach(() => { vi.useRealTimers(); });

describe('agent batch buffers', () => {
  it('hands a buffer out again only once it is given back, and never one it did not hand out', () => {
    const pool = new BatchBuffers();
    const a = pool.take(1000);
    const b = pool.take(1000);
    expect(a.length).toBe(1000);
    expect(b.buffer).not.toBe(a.buffer); // a is still out
    pool.give(a);
    const c = pool.take(900);
    expect(c.buffer).toBe(a.buffer);
    expect(c.length).toBe(900);
    pool.give(c);
    const bigger = pool.take(5000); // the kept one is too small: a new one, the small one dropped
    expect(bigger.buffer).not.toBe(a.buffer);
    expect(pool.take(10).buffer).not.toBe(a.buffer);
    pool.give(Buffer.allocUnsafeSlow(100)); // not its own: ignored
    expect(pool.take(10).buffer.byteLength).toBeGreaterThanOrEqual(12);
  });

  it('keeps at most agentBatchBuffersKeptMax and none after agentBatchBuffersIdleMs without a batch', () => {
    vi.useFakeTimers();
    const pool = new BatchBuffers();
    const out = Array.from({ length: limits.agentBatchBuffersKeptMax + 2 }, () => pool.take(64));
    for (const b of out) pool.give(b);
    const again = Array.from({ length: limits.agentBatchBuffersKeptMax + 2 }, () => pool.take(64));
    const reused = again.filter((b) => out.some((o) => o.buffer === b.buffer));
    expect(reused.length).toBe(limits.agentBatchBuffersKeptMax);
    for (const b of again) pool.give(b);
    vi.advanceTimersByTime(limits.agentBatchBuffersIdleMs + 10);
    const after = pool.take(64);
    expect(again.some((b) => b.buffer === after.buffer)).toBe(false);
  });

  it('encodes the same batch into a reused buffer as into a fresh one', () => {
    const pool = new BatchBuffers();
    const lines = ['first line', 'second', 'a third, longer line of text'];
    const span = (seq: number): Span => ({ e: { t: 'recs', task: 't', topic: 'x', seq, h: { host: 'h', seq: String(seq) }, v: lines, a: 1 }, i: 0, j: lines.length }) as Span;
    const fresh = encodeShipBatch([span(7)], 1000);
    const dirty = pool.take(fresh.length * 2);
    dirty.fill(0xab);
    pool.give(dirty);
    const reused = encodeShipBatch([span(7)], 1000, pool.take);
    expect(reused.buffer).toBe(dirty.buffer);
    expect(reused.equals(fresh)).toBe(true);
  });

  it('counts the value bytes of lines read as byte ranges without the newlines between them', () => {
    const data = Buffer.from('first line\nsecond\r\na third\n');
    const vb = { data, starts: Uint32Array.of(0, 11, 19), ends: Uint32Array.of(10, 17, 26) };
    const span = (): Span => ({ e: { t: 'recs', task: 't', topic: 'x', seq: 1, h: { host: 'h' }, v: [], vb, a: 1 }, i: 0, j: 3 }) as unknown as Span;
    const encoded = [span()];
    encodeShipBatch(encoded, 1000);
    expect(shippedValueBytes(encoded)).toBe(10 + 6 + 7); // as the encoder counted them
    expect(shippedValueBytes([span()])).toBe(10 + 6 + 7); // counted again (not encoded here)
  });
});
