// Reading back what a producer test wrote: records whose value is `v<n>` and header `n` its send counter.
import { expect } from 'vitest';
import { http } from './http.js';

/** The send counters of a partition's records, in offset order (checking each value matches its counter). */
export async function countersIn(url: string, topic: string, partition: number): Promise<number[]> {
  const got: number[] = [];
  for (let offset = 0; ;) {
    const r = await http(url, 'GET', `/v1/topics/${topic}/records?partition=${partition}&offset=${offset}&maxRecords=5000`);
    expect(r.status).toBe(200);
    for (const rec of r.body.records as Array<{ value: string; headers: Record<string, string> }>) {
      expect(rec.value).toBe(`v${rec.headers.n}`);
      got.push(Number(rec.headers.n));
    }
    if (r.body.nextOffset >= r.body.endOffset) return got;
    offset = r.body.nextOffset;
  }
}

/** Exactly once and in send order: no counter twice, counters ascending, every acknowledged one present. */
export function expectExactlyOnceInOrder(got: number[], acked: Iterable<number>): void {
  expect(new Set(got).size, 'no record twice').toBe(got.length);
  expect(got, 'send order').toEqual([...got].sort((a, b) => a - b));
  const present = new Set(got);
  expect([...acked].filter((i) => !present.has(i)), 'every acknowledged record').toEqual([]);
}
