// bench/hop-times.ts joins the rows of CHICAGO_HOP_TIMES files across threads and nodes: a write at
// leader n1 replicated to n2 and n3, with known times at every point, comes out as its hops.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hopTable, stallTable } from '../bench/hop-times.js';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

function write(dir: string, file: string, rows: unknown[]): void { writeFileSync(join(dir, file), JSON.stringify(rows)); }

function row(table: string, hop: string): number[] {
  const line = table.split('\n').find((l) => l.startsWith(`| ${hop}`));
  expect(line, hop).toBeDefined();
  return line!.split('|').slice(2, 6).map((x) => Number(x.trim()));
}

/**
 * One write, request id 7 at worker 0 for partition 3 (seq 42), at leader `l` replicated to `f2`
 * and `f3`, with known times from `t`; `gateway` rows go before the gateway's own.
 */
function replicatedWrite(dir: string, [l, f2, f3]: string[], t: number, gateway: unknown[] = []): void {
  write(dir, `${l}-main.json`, [...gateway, ['gEnq', t, 0, 7, 3], ['gPost', t + 10, 0, 7], ['gReply', t + 1000, 0, 7]]);
  write(dir, `${l}-worker-5.json`, [
    ['wRecv', t + 30, 7], ['wSeq', t + 80, 7, 3, 42], ['wWritten', t + 100],
    ['wSend', t + 110, 3, f2, 42], ['wSend', t + 120, 3, f3, 42],
    ['wAck', t + 520, 3, f2, 42, t + 500], ['wAck', t + 730, 3, f3, 42, t + 700],
    ['wReply', t + 800, 7],
  ]);
  // f2 answers in 200 µs of its own, f3 in 300
  write(dir, `${f2}-worker-9.json`, [['fAppend', t + 250, 3, 42, t + 210], ['fAckSent', t + 410, 3, 42]]);
  write(dir, `${f3}-worker-10.json`, [['fAppend', t + 260, 3, 42, t + 220], ['fAckSent', t + 520, 3, 42]]);
}

describe('hop-times join', () => {
  it('splits a replicated write into its hops, the commit waiting for the later ack', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hop-times-'));
    dirs.push(dir);
    replicatedWrite(dir, ['n1', 'n2', 'n3'], 10_000_000); // µs; the writes start after the skipped warm-up
    const table = hopTable(dir, 0);
    expect(table).toContain('writes joined: 1');
    expect(row(table, '1 gateway queue')[0]).toBe(10);
    expect(row(table, '2 gateway → worker')[0]).toBe(20);
    expect(row(table, '3 worker: received')[0]).toBe(50);
    expect(row(table, '4 worker: RocksDB')[0]).toBe(20);
    expect(row(table, '5 worker: written')[0]).toBe(20); // the last follower's send
    expect(row(table, '6 link leader')).toEqual([100, 100, 100, 100]); // 210-110 and 220-120
    expect(row(table, '8 follower')[3]).toBe(260); // n3: 520-260
    expect(row(table, '9 link follower')[3]).toBe(180); // n3: 700-520
    expect(row(table, '11 leader: last ack')[0]).toBe(100); // 800 - 700 (n3's, the later)
    expect(row(table, '12 worker → gateway')[0]).toBe(200);
    expect(row(table, '= gateway enqueue')[0]).toBe(1000);
  });

  it('joins the files of node ids with dashes, and a run past the stack\'s spread limit', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hop-times-'));
    dirs.push(dir);
    const t = 10_000_000;
    // 150,000 more writes at the gateway (Math.min(...rows) overflows near 120,000) that join nothing
    replicatedWrite(dir, ['node-a', 'node-b', 'node-c'], t, Array.from({ length: 150_000 }, (_, i) => ['gEnq', t + i, 0, 1000 + i, 0]));
    const table = hopTable(dir, 0);
    expect(table).toContain('writes joined: 1');
    expect(row(table, '= gateway enqueue')[0]).toBe(1000);
  });

  it('joins the rows a thread appended over several dumps, its earlier run\'s file emptied at start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hop-times-'));
    dirs.push(dir);
    // the module reads CHICAGO_HOP_TIMES when it loads
    process.env.CHICAGO_HOP_TIMES = dir;
    const { HopTimes, nowUs } = await import('../src/runtime/hop-times.js');
    delete process.env.CHICAGO_HOP_TIMES;
    expect(HopTimes.enabled).toBe(true);
    replicatedWrite(dir, ['n1', 'n2', 'n3'], nowUs());
    // a gateway file of an earlier run, and this run's gateway rows over two dumps
    write(dir, 'n1-main.json', [['gEnq', 1, 0, 7, 3], ['gPost', 2, 0, 7], ['gReply', 3, 0, 7]]);
    const gateway = new HopTimes();
    gateway.start('n1', 'main');
    gateway.note('gEnq', 0, 7, 3);
    gateway.note('gPost', 0, 7);
    gateway.dump();
    gateway.note('gReply', 0, 7);
    gateway.dump();
    const table = hopTable(dir, 0);
    expect(table).toContain('writes joined: 1');
    expect(row(table, '= gateway enqueue')[0]).toBeGreaterThanOrEqual(0);
    expect(row(table, '= gateway enqueue')[0]).toBeLessThan(60_000_000);
  });

  it('leaves out a write whose follower legs are missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hop-times-'));
    dirs.push(dir);
    const t = 10_000_000;
    write(dir, 'n1-main.json', [['gEnq', t, 0, 1, 0], ['gPost', t + 10, 0, 1], ['gReply', t + 900, 0, 1]]);
    write(dir, 'n1-worker-1.json', [['wRecv', t + 20, 1], ['wSeq', t + 40, 1, 0, 5], ['wWritten', t + 50], ['wReply', t + 800, 1]]);
    expect(hopTable(dir, 0)).toContain('writes joined: 0');
  });

  it('names what kept threads busy while the slow writes waited', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hop-times-'));
    dirs.push(dir);
    const t = 10_000_000;
    // three writes at n1: 1 ms, 8 ms (a scavenge on n2's worker and a stall there), 6 ms (a stall alone on n1)
    write(dir, 'n1-main.json', [
      ['gEnq', t, 0, 1, 0], ['gReply', t + 1_000, 0, 1],
      ['gEnq', t + 10_000, 0, 2, 0], ['gReply', t + 18_000, 0, 2],
      ['gEnq', t + 30_000, 0, 3, 0], ['gReply', t + 36_000, 0, 3],
      ['stall', t + 35_000, 3_000],
      ['task', t + 50_000, 'check', 400],
    ]);
    write(dir, 'n2-worker-1.json', [['gc', t + 15_000, 1, 4_000], ['stall', t + 15_500, 3_500]]);
    const table = stallTable(dir, 0);
    expect(table).toContain('writes 3, of them 2 (66.67 %) took ≥ 5 ms');
    expect(table).toMatch(/\| gc scavenge \| 1 \| 50\.0 % \|/);
    expect(table).toMatch(/\| a stall nothing recorded explains \| 1 \| 50\.0 % \|/);
    expect(table).toMatch(/\| n2-worker-1 \| gc scavenge \| 1 \| 4\.0 \| 4\.00 \| 4\.00 \|/);
    expect(table).toMatch(/\| n1-main \| task check \| 1 \| 0\.4 \|/);
  });
});
