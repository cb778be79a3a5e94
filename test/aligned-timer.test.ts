// Periodic work on the wall clock's multiples of its period (runtime/aligned-timer.ts), and the
// loop delay a periodic task measures in place of a monitor timer (runtime/loop-delay.ts).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AlignedInterval } from '../src/runtime/aligned-timer.js';
import { LoopDelay } from '../src/runtime/loop-delay.js';

describe('AlignedInterval', () => {
  beforeEach(() => { vi.useFakeTimers(); vi.setSystemTime(1_000_037); });
  afterEach(() => { vi.useRealTimers(); });

  it('runs at the multiples of its period, whenever it was started', async () => {
    const runs: number[] = [];
    const t = new AlignedInterval(50, () => runs.push(Date.now()));
    expect(t.dueAt).toBe(1_000_050);
    await vi.advanceTimersByTimeAsync(200);
    expect(runs).toEqual([1_000_050, 1_000_100, 1_000_150, 1_000_200]);
    const others: number[] = [];
    const other = new AlignedInterval(100, () => others.push(Date.now()));
    await vi.advanceTimersByTimeAsync(100);
    expect(runs.slice(4)).toEqual([1_000_250, 1_000_300]);
    expect(others).toEqual([1_000_300]); // with the other's run at 300: one moment
    t.stop();
    other.stop();
    await vi.advanceTimersByTimeAsync(500);
    expect(runs).toHaveLength(6);
    expect(others).toHaveLength(1);
  });

  it('never runs twice for one boundary, and skips the boundaries a stall passed', async () => {
    const t = new AlignedInterval(100, () => undefined);
    expect(t.dueAt).toBe(1_000_100);
    // a run that fires a ms short of its boundary (the loop's clock trails Date.now()) aims at the next one
    expect(t.nextDueAt(1_000_099)).toBe(1_000_200);
    // a run 350 ms late is not made up: the next boundary after now
    expect(t.nextDueAt(1_000_450)).toBe(1_000_500);
    t.stop();
  });

  it('changes period: a longer one from the next run, a shorter one at once, both on shared moments', async () => {
    const runs: number[] = [];
    const t: AlignedInterval = new AlignedInterval(50, () => {
      runs.push(Date.now());
      if (runs.length === 2) t.setPeriod(100); // within a run: the next one comes a long period on
    });
    await vi.advanceTimersByTimeAsync(363); // to 1_000_400
    expect(runs).toEqual([1_000_050, 1_000_100, 1_000_200, 1_000_300, 1_000_400]);
    await vi.advanceTimersByTimeAsync(10);
    // between runs: the run due at 500 moves to the next multiple of 50
    t.setPeriod(50);
    expect(t.dueAt).toBe(1_000_450);
    await vi.advanceTimersByTimeAsync(100);
    expect(runs.slice(5)).toEqual([1_000_450, 1_000_500]);
    // a longer period between runs leaves the armed run where it is
    t.setPeriod(100);
    expect(t.dueAt).toBe(1_000_550);
    t.stop();
  });

  it('keeps running when the wall clock steps back or forward', async () => {
    const runs: number[] = [];
    const t = new AlignedInterval(100, () => runs.push(Date.now()));
    await vi.advanceTimersByTimeAsync(63); // the run at 1_000_100
    expect(runs).toEqual([1_000_100]);
    // stepped back 10 s: the next run comes within a period of the new clock, not 10 s later
    vi.setSystemTime(990_120);
    await vi.advanceTimersByTimeAsync(100);
    expect(runs.length).toBeGreaterThanOrEqual(2);
    await vi.advanceTimersByTimeAsync(300);
    expect(runs.length).toBeGreaterThanOrEqual(5);
    // stepped forward: the next boundary after the new now
    vi.setSystemTime(2_000_020);
    await vi.advanceTimersByTimeAsync(200);
    expect(runs.at(-1)).toBeGreaterThanOrEqual(2_000_100);
    expect(runs.at(-1)! % 100).toBe(0);
    t.stop();
  });
});

describe('AlignedInterval lateness', () => {
  afterEach(() => { vi.useRealTimers(); });

  it('is measured on the monotonic clock: a wall clock stepped forward is not a late run', async () => {
    const lates: number[] = [];
    const t: AlignedInterval = new AlignedInterval(50, () => lates.push(t.lateMs()));
    vi.setSystemTime(Date.now() + 10_000); // Date alone: the timer armed before the step fires on time
    await new Promise((r) => setTimeout(r, 300));
    t.stop();
    expect(lates.length).toBeGreaterThan(0);
    expect(Math.max(...lates)).toBeLessThan(1_000);
  });
});

describe('LoopDelay fed by a periodic task', () => {
  it('reports how late the task ran, and nothing once taken', () => {
    const d = new LoopDelay();
    d.fedBy();
    for (const ms of [0, 0, 1, 2, 40]) d.late(ms);
    const out = d.take();
    expect(out.max).toBeCloseTo(40, 0);
    expect(out.p50).toBeLessThan(2);
    expect(d.take()).toEqual({ p50: 0, p99: 0, max: 0 });
  });

  it('reads the window without ending it (a status read), ends it when taken (the scrape)', () => {
    const d = new LoopDelay();
    d.fedBy();
    d.late(30);
    expect(d.peek().max).toBeCloseTo(30, 0);
    d.late(5);
    expect(d.peek().max).toBeCloseTo(30, 0);
    expect(d.take().max).toBeCloseTo(30, 0);
    expect(d.peek()).toEqual({ p50: 0, p99: 0, max: 0 });
  });
});

describe('lease keepalives on the multiples of their interval', () => {
  it('go at most about an interval apart, never twice at once', async () => {
    const { keepaliveDue } = await import('../src/cluster/membership.js');
    expect(keepaliveDue(1_000_037, 500)).toBe(1_000_500);
    expect(keepaliveDue(1_000_500, 500)).toBe(1_001_000);
    expect(keepaliveDue(1_000_498, 500)).toBe(1_001_000); // sent just short of a multiple: the next one
    for (let t = 1_000_000; t < 1_001_000; t += 7) {
      const gap = keepaliveDue(t, 500) - t;
      expect(gap).toBeGreaterThanOrEqual(50);
      expect(gap).toBeLessThanOrEqual(550);
    }
  });
});
