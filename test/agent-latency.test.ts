// A line appended to a followed file reaches the spool within a bound once its fs.watch event fires:
// the stat poll is set to its longest so only the watch can bring the lines in time, and the event is
// answered by one read from the file's open handle (the source's fastReads count). A truncation seen
// by that read still goes through the whole pass (the copy, then the file from 0).
import { afterEach, describe, expect, it } from 'vitest';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveAgentConfig } from '../src/agent/config.js';
import { FileSource } from '../src/agent/files.js';
import { recordsOf, Spool, type Entry } from '../src/agent/spool.js';
import { createLogger } from '../src/runtime/log.js';
import { waitUntil } from './helpers/bridge.js';
import { slow } from './helpers/slow.js';

const LINES = 30;
/** one line, watch event → durable in the spool, on an idle machine (measured: ~1.5 ms, an fdatasync included) */
const LINE_MS = 25;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(tag: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `chicago-agent-latency-${tag}-`));
  const logs = path.join(dir, 'logs');
  mkdirSync(logs);
  const file = path.join(logs, 'app.log');
  // past the head (1 KiB) before the timed lines: a file read less than its head goes through the whole pass
  appendFileSync(file, Array.from({ length: 20 }, (_, i) => `warm ${i} ${'w'.repeat(80)}\n`).join(''));
  const cfg = resolveAgentConfig({ sources: [{ task: 't', paths: [path.join(logs, '*.log')], topic: 'lat' }], spool: { dir: path.join(dir, 'spool') }, pollIntervalMs: 60_000 }, dir, {});
  const { spool } = Spool.open(cfg.spool);
  const values: string[] = [];
  const arrived: number[] = [];
  // records become durable in the spool (the shipper's wake-up): their values, in order, with the time
  const append = spool.append.bind(spool);
  spool.append = async (entries: Entry[]) => {
    await append(entries);
    const t = performance.now();
    const flat = entries.flatMap((e) => (e.t === 'all' ? e.es : [e]));
    for (const e of flat) if (e.t === 'recs') for (const r of recordsOf(e)) { values.push(r.value); arrived.push(t); }
  };
  const src = new FileSource(cfg.sources[0], cfg, spool, createLogger('silent'));
  await src.start();
  cleanups.push(async () => {
    await src.stop();
    spool.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitUntil('the warm-up lines in the spool', () => values.length >= 20, slow(5000), 5);
  return { file, src, values, arrived };
}

describe('agent: a watched line reaches the spool at once', () => {
  it(`each of ${LINES} lines appended one at a time is durable in the spool within ${LINE_MS} ms (slowdown-scaled), read straight from the open file`, async () => {
    const { file, src, values, arrived } = await setup('one');
    const fast0 = src.stats.fastReads;
    const took: number[] = [];
    for (let i = 0; i < LINES; i++) {
      const n = values.length;
      const t0 = performance.now();
      appendFileSync(file, `line ${i}\n`);
      await waitUntil(`line ${i} in the spool`, () => values.length > n, slow(2000), 1);
      expect(values[n]).toBe(`line ${i}`);
      took.push(arrived[n] - t0);
    }
    took.sort((a, b) => a - b);
    console.log(`agent latency: appended → durable in the spool, ms: p50 ${took[LINES >> 1].toFixed(2)} max ${took[LINES - 1].toFixed(2)}; fast reads ${src.stats.fastReads - fast0} of ${LINES}`);
    expect(took[LINES - 1], `slowest line ${took[LINES - 1].toFixed(1)} ms`).toBeLessThan(slow(LINE_MS));
    // every line came by a read on its watch event, none by a pass (the poll is a minute away)
    expect(src.stats.fastReads - fast0).toBeGreaterThanOrEqual(LINES);
  });

  it('a truncation seen on a watch event goes through the whole pass: the rest of the file before it, then the new lines from 0', async () => {
    const { file, src, values } = await setup('trunc');
    const truncations0 = src.stats.truncations;
    appendFileSync(file, 'before 1\n');
    await waitUntil('before 1', () => values.includes('before 1'), slow(2000), 1);
    // truncated and written past the old read position with other bytes before the next read
    truncateSync(file, 0);
    appendFileSync(file, Array.from({ length: 30 }, (_, i) => `after ${i} ${'a'.repeat(60)}\n`).join(''));
    await waitUntil('the lines after the truncation', () => values.filter((v) => v.startsWith('after ')).length >= 30, slow(5000), 5);
    expect(src.stats.truncations - truncations0).toBe(1);
    const after = values.filter((v) => v.startsWith('after '));
    expect(after.map((v) => Number(v.split(' ')[1]))).toEqual(Array.from({ length: 30 }, (_, i) => i));
    // no warm-up line or 'before 1' read again
    expect(values.filter((v) => v === 'before 1')).toHaveLength(1);
    expect(values.filter((v) => v.startsWith('warm '))).toHaveLength(20);
  });
});
