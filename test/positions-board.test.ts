// The board a partition worker leaves its replicas' positions on for its node's coordinator.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { BoardReader, BoardWriter, createBoard, type BoardPosition } from '../src/actors/positions-board.js';
import { limits } from '../src/runtime/limits.js';

const pos = (id: number, seq: number, over: Partial<BoardPosition> = {}): BoardPosition => ({
  id, seq, role: 'leader', incomplete: false, matched: { n2: seq, n3: seq - 1 }, isr: ['n1', 'n2', 'n3'], view: 7, confirmedSeq: seq - 1, ...over,
});

describe('positions board', () => {
  it('reads what was published, and is rewritten only when positions change', () => {
    const board = createBoard();
    const w = new BoardWriter(board);
    const r = new BoardReader(board);
    expect(r.read()).toBeUndefined(); // nothing published yet: the node asks the worker instead
    expect(w.publish([pos(0, 10), pos(3, 4, { role: 'follower', matched: {}, incomplete: true })])).toBe(true);
    const first = r.read();
    expect(first).toEqual([pos(0, 10), pos(3, 4, { role: 'follower', matched: {}, incomplete: true })]);
    expect(w.publish([pos(0, 10), pos(3, 4, { role: 'follower', matched: {}, incomplete: true })])).toBe(false);
    expect(r.read()).toBe(first); // unchanged: no copy, no decode
    expect(w.publish([pos(0, 11), pos(3, 4, { role: 'follower', matched: {}, incomplete: true })])).toBe(true);
    expect(r.read()?.[0]).toEqual(pos(0, 11));
    expect(w.publish([])).toBe(true);
    expect(r.read()).toEqual([]);
  });

  it('positions that do not fit read as unknown (the node asks the worker), and fit again later', () => {
    const board = createBoard();
    const w = new BoardWriter(board);
    const r = new BoardReader(board);
    const many = Array.from({ length: Math.ceil(limits.positionsBoardBytesMax / 40) + 1 }, (_, i) => pos(i, i * 1000));
    expect(w.publish(many)).toBe(true);
    expect(r.read()).toBeUndefined();
    expect(w.publish(many)).toBe(false);
    expect(w.publish([pos(1, 1)])).toBe(true);
    expect(r.read()).toEqual([pos(1, 1)]);
  });

  it('a reader on another thread never sees a torn board while the writer rewrites it', async () => {
    const board = createBoard();
    const r = new BoardReader(board);
    // the writer thread publishes, by the built BoardWriter, positions whose fields all equal one counter, as fast as it can
    const built = pathToFileURL(path.resolve('dist/src/actors/positions-board.js')).href;
    const src = `
      const { workerData } = require('node:worker_threads');
      import(workerData.built).then(({ BoardWriter }) => {
        const w = new BoardWriter(workerData.board);
        for (let i = 1; i <= workerData.n; i++) {
          const rows = Array.from({ length: 1 + (i % 5) }, (_, p) => ({ id: p, seq: i, role: 'leader', incomplete: false, matched: { n2: i }, isr: ['n'.repeat(1 + (i % 7))], view: i, confirmedSeq: i }));
          if (!w.publish(rows)) throw new Error('not rewritten at ' + i);
        }
      });`;
    const worker = new Worker(src, { eval: true, workerData: { board, built, n: 200_000 } });
    const done = new Promise((resolve, reject) => { worker.once('exit', resolve); worker.once('error', reject); });
    let reads = 0;
    const versions = new Set<number>();
    let finished = false;
    void done.then(() => { finished = true; });
    const deadline = Date.now() + 10_000;
    while (!finished && Date.now() < deadline) {
      for (let k = 0; k < 1000; k++) {
        const got = r.read();
        if (!got) continue;
        reads++;
        const i = got[0]!.seq;
        versions.add(i);
        expect(got).toHaveLength(1 + (i % 5));
        for (const p of got) expect([p.seq, p.view, p.confirmedSeq, p.matched.n2, p.isr[0]!.length]).toEqual([i, i, i, i, 1 + (i % 7)]);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    await done;
    expect(reads).toBeGreaterThan(0);
    expect(versions.size).toBeGreaterThan(1); // it read while the writer wrote
  });
});
