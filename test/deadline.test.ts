// runtime/deadline.ts: a request's deadline tied to a long-lived stop signal, which keeps nothing of
// the request once it is done (AbortSignal.any keeps a reference per call in the long-lived signal).
import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { deadline } from '../src/runtime/deadline.js';

describe('deadline', () => {
  it('aborts with a TimeoutError after its time', async () => {
    const d = deadline(20);
    await new Promise((r) => setTimeout(r, 60));
    expect(d.signal.aborted).toBe(true);
    expect((d.signal.reason as DOMException).name).toBe('TimeoutError');
  });

  it('aborts with the stop signal reason; a stop signal already aborted aborts it at once', () => {
    const stop = new AbortController();
    const d = deadline(10_000, stop.signal);
    stop.abort(new Error('stopping'));
    expect(d.signal.aborted).toBe(true);
    expect((d.signal.reason as Error).message).toBe('stopping');
    d.done();
    const late = deadline(10_000, stop.signal);
    expect(late.signal.aborted).toBe(true);
    late.done();
  });

  it('done() leaves nothing in the stop signal and no timer: 10,000 requests later it holds no listener', async () => {
    const stop = new AbortController();
    for (let i = 0; i < 10_000; i++) deadline(15, stop.signal).done();
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0);
    const d = deadline(15, stop.signal);
    d.done();
    await new Promise((r) => setTimeout(r, 50));
    expect(d.signal.aborted).toBe(false);
  });
});
