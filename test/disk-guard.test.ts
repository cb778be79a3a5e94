// The disk-full decision (src/storage/disk-guard.ts decide), pure: when writes stop and resume,
// when the reserve file goes and comes back. And the reserve file itself: real blocks.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decide, DiskGuard, RESERVE_FILE, type DiskState } from '../src/storage/disk-guard.js';

const MiB = 1024 * 1024;
const s = { minFreeBytes: 100 * MiB, reserveBytes: 40 * MiB };
const ok: DiskState = { full: false, availBytes: 1000 * MiB, reserve: true };

describe('disk guard decisions', () => {
  it('stops writes below the mark and keeps the reserve while running', () => {
    expect(decide(ok, 101 * MiB, s)).toEqual({ next: { full: false, availBytes: 101 * MiB, reserve: true }, effects: [] });
    expect(decide(ok, 99 * MiB, s)).toEqual({ next: { full: true, availBytes: 99 * MiB, reserve: true }, effects: [] });
  });

  it('resumes only above 1.25 × the mark (hysteresis), plus room for the reserve when it is gone', () => {
    const full = { ...ok, full: true };
    expect(decide(full, 120 * MiB, s).next.full).toBe(true);
    expect(decide(full, 126 * MiB, s).next.full).toBe(false);
    const noReserve = { ...full, reserve: false };
    expect(decide(noReserve, 126 * MiB, s).next.full).toBe(true);
    expect(decide(noReserve, 164 * MiB, s).next.full).toBe(true);
    expect(decide(noReserve, 166 * MiB, s)).toEqual({ next: { full: false, availBytes: 166 * MiB, reserve: true }, effects: ['create-reserve'] });
  });

  it('releases the reserve when starting on a full disk, so the database can open', () => {
    const start: DiskState = { full: false, availBytes: Number.MAX_SAFE_INTEGER, reserve: true };
    expect(decide(start, 50 * MiB, s, true)).toEqual({ next: { full: true, availBytes: 50 * MiB, reserve: false }, effects: ['release-reserve'] });
    expect(decide(start, 500 * MiB, s, true).effects).toEqual([]);
  });

  it('makes the reserve on a fresh node only when it fits above the resume mark', () => {
    const fresh: DiskState = { full: false, availBytes: Number.MAX_SAFE_INTEGER, reserve: false };
    expect(decide(fresh, 160 * MiB, s).effects).toEqual([]);
    expect(decide(fresh, 170 * MiB, s).effects).toEqual(['create-reserve']);
  });
});

describe('the reserve file', () => {
  it('holds its bytes in real blocks (not a sparse file) once the guard starts', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'chicago-reserve-'));
    const guard = new DiskGuard(dir, { minFreeBytes: MiB, reserveBytes: 8 * MiB });
    try {
      guard.start(60_000);
      const st = statSync(path.join(dir, RESERVE_FILE));
      expect(st.size).toBe(8 * MiB);
      expect(st.blocks * 512).toBeGreaterThanOrEqual(8 * MiB);
    } finally {
      guard.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
