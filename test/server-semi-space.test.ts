// `chicago server` caps V8's young generation of its partition workers through their resourceLimits
// (runtime/young-gc.ts): the size given there is two semi-spaces and a large-object space of one, so
// the cap must come out as the semi-space asked for, not three times it.
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { serverSemiSpaceMb, workerYoungGenerationMb } from '../src/runtime/young-gc.js';
import { limits } from '../src/runtime/limits.js';

const saved = process.env.CHICAGO_SERVER_SEMI_SPACE_MB;
afterEach(() => {
  if (saved === undefined) delete process.env.CHICAGO_SERVER_SEMI_SPACE_MB;
  else process.env.CHICAGO_SERVER_SEMI_SPACE_MB = saved;
});

// a thread that keeps a third of what it allocates for a while: V8 grows its semi-spaces to the cap
const CHURN = `
const v8 = require('node:v8');
const keep = [];
for (let i = 0; i < 3e6; i++) { const o = { a: i, b: 'x' + i }; if (i % 3 === 0) keep.push(o); if (keep.length > 200000) keep.length = 0; }
require('node:worker_threads').parentPort.postMessage(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size);
`;

function newSpaceBytes(youngMb: number | undefined): Promise<number> {
  const w = new Worker(CHURN, { eval: true, ...(youngMb ? { resourceLimits: { maxYoungGenerationSizeMb: youngMb } } : {}) });
  return new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); }).finally(() => w.terminate()) as Promise<number>;
}

describe('server semi-space', () => {
  it('defaults to the limit, takes CHICAGO_SERVER_SEMI_SPACE_MB, and 0 leaves V8 alone', () => {
    delete process.env.CHICAGO_SERVER_SEMI_SPACE_MB;
    expect(serverSemiSpaceMb()).toBe(limits.serverSemiSpaceMb);
    process.env.CHICAGO_SERVER_SEMI_SPACE_MB = '';
    expect(serverSemiSpaceMb()).toBe(limits.serverSemiSpaceMb);
    process.env.CHICAGO_SERVER_SEMI_SPACE_MB = '4';
    expect(workerYoungGenerationMb()).toBe(12);
    process.env.CHICAGO_SERVER_SEMI_SPACE_MB = '0';
    expect(workerYoungGenerationMb()).toBeUndefined();
    process.env.CHICAGO_SERVER_SEMI_SPACE_MB = 'lots';
    expect(serverSemiSpaceMb()).toBe(limits.serverSemiSpaceMb);
  });

  it('a worker given the young generation it computes keeps semi-spaces of that size', async () => {
    delete process.env.CHICAGO_SERVER_SEMI_SPACE_MB;
    const semi = serverSemiSpaceMb() * 1024 * 1024;
    const capped = await newSpaceBytes(workerYoungGenerationMb());
    expect(capped).toBeLessThanOrEqual(2 * semi);
    expect(capped).toBeGreaterThan(semi / 2);
    // without the cap V8 grows the same churn well past it: the cap is what holds it
    expect(await newSpaceBytes(undefined)).toBeGreaterThan(2 * semi);
  }, 30_000);

  it('a worker under the cap still allocates objects far larger than its young generation', async () => {
    delete process.env.CHICAGO_SERVER_SEMI_SPACE_MB;
    const youngMb = workerYoungGenerationMb()!;
    // a batch's decoded records and strings: young large objects past the whole young generation
    const big = `
const keep = [];
for (let i = 0; i < 20; i++) {
  const a = new Array(${youngMb} * 262144).fill(i);
  const s = 'x'.repeat(${youngMb} << 20) + i;
  if (i % 5 === 0) keep.push(a.length + s.length);
}
require('node:worker_threads').parentPort.postMessage(keep.length);
`;
    const w = new Worker(big, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: youngMb } });
    const got = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); }).finally(() => w.terminate());
    expect(got).toBe(4);
  }, 30_000);
});
