import { describe, expect, it } from 'vitest';
import { CopyPacer, type PacerOptions } from '../src/runtime/copy-pacer.js';

const o: PacerOptions = { minIntervalMs: 50, maxIntervalMs: 1000, samplesMin: 20, slack: 1.5, baselineWeight: 0.2 };

function windowOf(p: CopyPacer, latencyMs: number, copying: boolean, n = 100) {
  for (let i = 0; i < n; i++) p.record(latencyMs);
  return p.closeWindow(copying);
}

describe('copy pacer', () => {
  it('copies at full speed with nothing to protect: no baseline, or no foreground writes', () => {
    const p = new CopyPacer(o);
    expect(windowOf(p, 500, true).intervalMs).toBe(50); // slow writes, but no quiet window to compare with
    expect(windowOf(p, 2, true, 0).intervalMs).toBe(50);
  });

  it('widens the gap while writes are slower than slack × baseline, up to the max, and narrows it as they recover', () => {
    const p = new CopyPacer(o);
    expect(windowOf(p, 2, false)).toMatchObject({ baselineMs: 2, intervalMs: 50 });
    const widening = [1, 2, 3, 4, 5, 6].map(() => windowOf(p, 10, true).intervalMs);
    expect(widening).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(windowOf(p, 2.9, true).intervalMs).toBe(750); // within slack: narrower
    const narrowing = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(() => windowOf(p, 2, true).intervalMs);
    expect(narrowing.at(-1)).toBe(50);
    expect(narrowing).toEqual([...narrowing].sort((a, b) => b - a));
  });

  it('learns its baseline only from windows without copies, and judges by the p99', () => {
    const p = new CopyPacer(o);
    windowOf(p, 2, false);
    windowOf(p, 4, false);
    expect(windowOf(p, 50, true).baselineMs).toBeCloseTo(2.4); // 2 + 0.2 × (4 − 2); a copying window does not count
    for (let i = 0; i < 100; i++) p.record(50);
    expect(p.closeWindow(false, false).baselineMs).toBeCloseTo(2.4); // nor one while a move runs elsewhere
    // 1 % slow writes do not move the p99; 2 % do
    for (let i = 0; i < 99; i++) p.record(2);
    p.record(100);
    const before = p.intervalMs;
    expect(p.closeWindow(true).intervalMs).toBeLessThanOrEqual(before);
    for (let i = 0; i < 98; i++) p.record(2);
    for (let i = 0; i < 2; i++) p.record(100);
    expect(p.closeWindow(true).intervalMs).toBeGreaterThan(before);
  });

  it('keeps its gap through a window with too few writes to judge, and narrows it between copies', () => {
    const p = new CopyPacer(o);
    windowOf(p, 2, false);
    for (let i = 0; i < 4; i++) windowOf(p, 10, true);
    expect(windowOf(p, 100, true, 5).intervalMs).toBe(800);
    expect(windowOf(p, 100, false, 5).intervalMs).toBe(600); // the next copy starts near this pace
    const idle = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(() => windowOf(p, 2, false, 0).intervalMs);
    expect(idle.at(-1)).toBe(50);
  });
});
