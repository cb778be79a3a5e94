// The nemesis checker against synthetic histories: each kind of violation must be caught, and
// clean (including legitimately concurrent or unknown-outcome) histories must pass.
import { describe, expect, it } from 'vitest';
import { check, History, type FinalState, type Op, type OpBody, type Outcome, type ViolationKind } from './helpers/checker.js';

/** Builds a history with explicit times. */
function builder() {
  const ops: Op[] = [];
  const add = <B extends OpBody>(body: B, invokeMs: number, completeMs: number, outcome: Outcome, node = 'n1', client = 0): Op & B => {
    const op = { ...body, id: ops.length, client, node, invokeMs, completeMs, outcome } as Op & B;
    ops.push(op);
    return op;
  };
  return {
    ops,
    put: (key: string, value: string, t0: number, t1: number, outcome: Outcome = 'ok', version?: number) =>
      add({ type: 'kv-put', key, value, version, replicas: outcome === 'ok' ? 3 : undefined }, t0, t1, outcome),
    get: (key: string, value: string | null, t0: number, t1: number, version?: number) =>
      add({ type: 'kv-get', key, found: value !== null, value: value ?? undefined, version }, t0, t1, 'ok'),
    produce: (values: string[], at: Array<[number, number]> | undefined, t0: number, t1: number, outcome: Outcome = 'ok') =>
      add({ type: 'produce', topic: 't', values, records: at?.map(([partition, offset]) => ({ partition, offset })), replicas: outcome === 'ok' ? 3 : undefined }, t0, t1, outcome),
    read: (partition: number, fromOffset: number, records: Array<[number, string]>, endOffset: number | undefined, t0: number, t1: number, outOfRange = false) =>
      add({ type: 'read', topic: 't', partition, fromOffset, records: records.map(([offset, value]) => ({ offset, value })), endOffset, outOfRange }, t0, t1, 'ok'),
  };
}

const log = (partition: number, values: string[], startOffset = 0) => ({
  topic: 't',
  partition,
  startOffset,
  records: values.map((value, i) => ({ offset: startOffset + i, value })),
});
const same = (partition: number, seq = 10) => ({
  partition,
  expectedCopies: 3,
  copies: ['n1', 'n2', 'n3'].map((node) => ({ node, seq, digest: `d${seq}` })),
});
const finalKv = (key: string, value: string | null, version?: number, nodes = ['n1', 'n2']) =>
  nodes.map((node) => ({ key, node, found: value !== null, value: value ?? undefined, version }));

function kinds(ops: Op[], final: FinalState, expectedReplicas?: number): ViolationKind[] {
  const r = check(ops, final, { expectedReplicas });
  return [...new Set(r.violations.map((v) => v.kind))].sort();
}

describe('checker: clean histories pass', () => {
  it('sequential and concurrent KV, unknown and failed writes, streams, reads', () => {
    const h = builder();
    h.put('a', 'a1', 0, 10, 'ok', 1);
    h.get('a', 'a1', 11, 12, 1);
    h.put('a', 'a2', 20, 30, 'ok', 2);
    h.put('a', 'a3', 25, 35, 'ok', 3); // concurrent with a2: either may win
    h.get('a', 'a2', 26, 28, 2); // overlaps a3: a2 is fine
    h.get('a', 'a3', 40, 41, 3);
    h.put('a', 'a4', 50, Infinity, 'unknown'); // never answered: may or may not be there
    h.get('a', 'a4', 60, 61, 4);
    h.put('b', 'b1', 0, 5, 'unknown'); // timed out and did not apply
    h.put('b', 'b2', 10, 12, 'fail'); // definite failure, not applied
    h.get('b', null, 20, 21);
    h.get('c', null, 0, 1); // never written
    h.produce(['x0', 'x1'], [[0, 0], [0, 1]], 0, 10);
    h.produce(['y0'], [[1, 0]], 5, 15);
    h.produce(['z0'], undefined, 20, 30, 'unknown'); // applied at 0:2 after all
    h.produce(['w0'], undefined, 20, 30, 'fail'); // not applied
    h.produce(['x2'], [[0, 3]], 40, 50);
    h.read(0, 0, [[0, 'x0'], [1, 'x1']], 2, 11, 12);
    h.read(0, 1, [[1, 'x1'], [2, 'z0'], [3, 'x2']], 4, 60, 61);
    h.read(1, 0, [], 0, 1, 2); // before y0 was acked: may miss it
    const final: FinalState = {
      kv: [...finalKv('a', 'a4', 4), ...finalKv('b', null), ...finalKv('c', null)],
      logs: [log(0, ['x0', 'x1', 'z0', 'x2']), log(1, ['y0'])],
      replicas: [same(0), same(1)],
    };
    const r = check(h.ops, final, { expectedReplicas: 3 });
    expect(r.violations, r.text).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.text).toContain('0 violation');
  });

  it('the final value may be an unknown-outcome write later than the last ack', () => {
    const h = builder();
    h.put('k', 'v1', 0, 10, 'ok', 5);
    h.put('k', 'v2', 20, Infinity, 'unknown');
    expect(kinds(h.ops, { kv: finalKv('k', 'v2', 9), logs: [], replicas: [] })).toEqual([]);
    expect(kinds(h.ops, { kv: finalKv('k', 'v1', 5), logs: [], replicas: [] })).toEqual([]);
  });

  it('the History recorder produces checkable ops', () => {
    const hist = new History();
    const p = hist.invoke(0, 'n1', { type: 'kv-put', key: 'k', value: 'v' });
    hist.complete(p, 'ok', { version: 1, replicas: 3 });
    const g = hist.invoke(1, 'n2', { type: 'kv-get', key: 'k' });
    hist.complete(g, 'ok', { found: true, value: 'v', version: 1 });
    expect(p.completeMs).toBeLessThanOrEqual(g.invokeMs);
    expect(() => hist.complete(p, 'ok')).toThrow(/twice/);
    expect(check(hist.ops, { kv: finalKv('k', 'v', 1), logs: [], replicas: [] }).ok).toBe(true);
  });
});

describe('checker: each violation is caught', () => {
  const empty = (): FinalState => ({ kv: [], logs: [], replicas: [] });

  it('lost acked KV write (final read older, absent, or lower version)', () => {
    const h = builder();
    h.put('k', 'v1', 0, 10, 'ok', 1);
    h.put('k', 'v2', 20, 30, 'ok', 2);
    expect(kinds(h.ops, { ...empty(), kv: finalKv('k', 'v1', 1) })).toEqual(['lost-write']);
    expect(kinds(h.ops, { ...empty(), kv: finalKv('k', null) })).toEqual(['lost-write']);
    // concurrent puts: real time allows either, but the version says v2 came after
    const c = builder();
    c.put('k', 'v1', 0, 30, 'ok', 1);
    c.put('k', 'v2', 10, 20, 'ok', 2);
    expect(kinds(c.ops, { ...empty(), kv: finalKv('k', 'v1', 1) })).toEqual(['lost-write']);
    expect(kinds(c.ops, { ...empty(), kv: finalKv('k', 'v2', 2) })).toEqual([]);
  });

  it('missing final read of an acked key is incomplete, not a pass', () => {
    const h = builder();
    h.put('k', 'v1', 0, 10, 'ok', 1);
    expect(kinds(h.ops, empty())).toEqual(['incomplete']);
  });

  it('final reads that disagree between nodes', () => {
    const h = builder();
    h.put('k', 'v1', 0, 10, 'ok', 1);
    h.put('k', 'v2', 20, Infinity, 'unknown');
    const kv = [...finalKv('k', 'v1', 1, ['n1']), ...finalKv('k', 'v2', 2, ['n2'])];
    expect(kinds(h.ops, { ...empty(), kv })).toEqual(['replica-divergence']);
  });

  it('read-your-writes: a get after an acked put returns an older value', () => {
    const h = builder();
    h.put('k', 'v1', 0, 10, 'ok', 1);
    h.put('k', 'v2', 20, 30, 'ok', 2);
    h.get('k', 'v1', 31, 32, 1);
    expect(kinds(h.ops, { ...empty(), kv: finalKv('k', 'v2', 2) })).toEqual(['stale-read']);
    const a = builder();
    a.put('k', 'v1', 0, 10, 'ok', 1);
    a.get('k', null, 11, 12);
    expect(kinds(a.ops, { ...empty(), kv: finalKv('k', 'v1', 1) })).toEqual(['stale-read']);
    // by version alone: the get overlaps nothing but saw a lower version
    const v = builder();
    v.put('k', 'v1', 0, 40, 'ok', 1);
    v.put('k', 'v2', 5, 10, 'ok', 2);
    v.get('k', 'v1', 20, 21, 1);
    expect(kinds(v.ops, { ...empty(), kv: finalKv('k', 'v1', 3) })).toEqual(expect.arrayContaining(['stale-read']));
    // a put of unknown outcome may land after its client gave up: a later version is no stale read...
    const u = builder();
    u.put('k', 'v1', 0, 10, 'unknown');
    u.put('k', 'v2', 20, 30, 'ok', 2);
    u.get('k', 'v1', 40, 41, 3);
    expect(kinds(u.ops, { ...empty(), kv: finalKv('k', 'v1', 3) })).toEqual([]);
    // ...but a lower version than an acked put that completed before the read still is
    const l = builder();
    l.put('k', 'v1', 0, 10, 'unknown');
    l.put('k', 'v2', 20, 30, 'ok', 2);
    l.get('k', 'v1', 40, 41, 1);
    expect(kinds(l.ops, { ...empty(), kv: finalKv('k', 'v2', 2) })).toEqual(expect.arrayContaining(['stale-read']));
  });

  it('phantom values: never written, or read before being written', () => {
    const h = builder();
    h.put('k', 'v1', 0, 10, 'ok', 1);
    h.get('k', 'zzz', 11, 12, 7);
    expect(kinds(h.ops, { ...empty(), kv: finalKv('k', 'v1', 1) })).toEqual(['phantom-value']);
    const f = builder();
    f.get('k', 'v1', 0, 5, 1);
    f.put('k', 'v1', 10, 20, 'ok', 1);
    expect(kinds(f.ops, { ...empty(), kv: finalKv('k', 'v1', 1) })).toEqual(['phantom-value']);
    const g = builder();
    g.put('k', 'v1', 0, 10, 'ok', 1);
    expect(kinds(g.ops, { ...empty(), kv: [...finalKv('k', 'v1', 1), ...finalKv('other', 'x', 1, ['n1'])] })).toEqual(['phantom-value']);
  });

  it('a write answered as failed is visible', () => {
    const h = builder();
    h.put('k', 'v1', 0, 10, 'ok', 1);
    h.put('k', 'v2', 20, 30, 'fail');
    expect(kinds(h.ops, { ...empty(), kv: finalKv('k', 'v2', 2) })).toEqual(['failed-write-visible']);
    const s = builder();
    s.produce(['a'], undefined, 0, 10, 'fail');
    expect(kinds(s.ops, { ...empty(), logs: [log(0, ['a'])] })).toEqual(['failed-write-visible']);
  });

  it('an ack reporting fewer replicas than asked for', () => {
    const h = builder();
    const p = h.put('k', 'v1', 0, 10, 'ok', 1);
    p.replicas = 1;
    expect(kinds(h.ops, { ...empty(), kv: finalKv('k', 'v1', 1) }, 3)).toEqual(['dishonest-ack']);
    expect(kinds(h.ops, { ...empty(), kv: finalKv('k', 'v1', 1) })).toEqual([]);
  });

  it('stream: acked record lost', () => {
    const h = builder();
    h.produce(['a', 'b'], [[0, 0], [0, 1]], 0, 10);
    expect(kinds(h.ops, { ...empty(), logs: [log(0, ['a'])] })).toEqual(['stream-lost']);
  });

  it('stream: duplicate value, duplicate offset, two acks sharing an offset', () => {
    const h = builder();
    h.produce(['a'], [[0, 0]], 0, 10);
    h.produce(['b'], [[0, 1]], 20, 30);
    expect(kinds(h.ops, { ...empty(), logs: [log(0, ['a', 'b', 'a'])] })).toEqual(['stream-duplicate']);
    expect(kinds(h.ops, { ...empty(), logs: [log(0, ['a']), log(1, ['b', 'a'])] })).toEqual(expect.arrayContaining(['stream-duplicate']));
    const dupOffset = { ...log(0, ['a', 'b']), records: [{ offset: 0, value: 'a' }, { offset: 1, value: 'b' }, { offset: 1, value: 'c' }] };
    const d = builder();
    d.produce(['a'], [[0, 0]], 0, 10);
    d.produce(['b'], [[0, 1]], 20, 30);
    d.produce(['c'], undefined, 20, 30, 'unknown');
    expect(kinds(d.ops, { ...empty(), logs: [dupOffset] })).toEqual(['stream-duplicate']);
    const s = builder();
    s.produce(['a'], [[0, 0]], 0, 10);
    s.produce(['b'], [[0, 0]], 0, 10);
    expect(kinds(s.ops, { ...empty(), logs: [log(0, ['a'])] })).toEqual(expect.arrayContaining(['stream-duplicate', 'stream-lost']));
  });

  it('stream: gap in offsets', () => {
    const h = builder();
    h.produce(['a'], [[0, 0]], 0, 10);
    h.produce(['b'], [[0, 2]], 20, 30);
    const gap = { ...log(0, []), records: [{ offset: 0, value: 'a' }, { offset: 2, value: 'b' }] };
    expect(kinds(h.ops, { ...empty(), logs: [gap] })).toEqual(['stream-gap']);
    const late = builder();
    late.read(0, 0, [[0, 'a'], [2, 'b']], 3, 40, 41);
    expect(kinds([...h.ops, ...late.ops.map((o) => ({ ...o, id: 99 }))], { ...empty(), logs: [gap] })).toEqual(['stream-gap']);
  });

  it('stream: order differs from append order', () => {
    const h = builder();
    h.produce(['a'], [[0, 0]], 0, 10);
    h.produce(['b'], [[0, 1]], 20, 30);
    expect(kinds(h.ops, { ...empty(), logs: [log(0, ['b', 'a'])] })).toEqual(['stream-reorder']);
    // acked in real-time order but the offsets say otherwise
    const r = builder();
    r.produce(['a'], [[0, 1]], 0, 10);
    r.produce(['b'], [[0, 0]], 20, 30);
    expect(kinds(r.ops, { ...empty(), logs: [log(0, ['b', 'a'])] })).toEqual(['stream-reorder']);
    // one batch, values out of order
    const b = builder();
    b.produce(['a', 'b'], [[0, 1], [0, 0]], 0, 10);
    expect(kinds(b.ops, { ...empty(), logs: [log(0, ['b', 'a'])] })).toEqual(['stream-reorder']);
    // concurrent batches may land in either order
    const c = builder();
    c.produce(['a'], [[0, 1]], 0, 30);
    c.produce(['b'], [[0, 0]], 10, 20);
    expect(kinds(c.ops, { ...empty(), logs: [log(0, ['b', 'a'])] })).toEqual([]);
  });

  it('stream: a record nobody produced', () => {
    const h = builder();
    h.produce(['a'], [[0, 0]], 0, 10);
    expect(kinds(h.ops, { ...empty(), logs: [log(0, ['a', 'ghost'])] })).toEqual(['stream-phantom']);
  });

  it('stream: a read after an acked append does not see it', () => {
    const h = builder();
    h.produce(['a'], [[0, 0]], 0, 10);
    h.produce(['b'], [[0, 1]], 20, 30);
    h.read(0, 0, [[0, 'a']], 1, 31, 32);
    expect(kinds(h.ops, { ...empty(), logs: [log(0, ['a', 'b'])] })).toEqual(['stream-stale-read']);
    const o = builder();
    o.produce(['a'], [[0, 0]], 0, 10);
    o.read(0, 0, [], undefined, 11, 12, true);
    expect(kinds(o.ops, { ...empty(), logs: [log(0, ['a'])] })).toEqual(['stream-stale-read']);
  });

  it('stream: a read saw a record that the final log does not hold there', () => {
    const h = builder();
    h.produce(['a'], [[0, 0]], 0, 10);
    h.produce(['u'], undefined, 20, Infinity, 'unknown');
    h.produce(['b'], [[0, 1]], 40, 50);
    h.read(0, 0, [[0, 'a'], [1, 'u']], 2, 25, 26); // u was visible, then lost on failover
    expect(kinds(h.ops, { ...empty(), logs: [log(0, ['a', 'b'])] })).toEqual(['stream-read-diverged']);
  });

  it('replicas: differing digests or seqs, and too few copies', () => {
    const d = same(3);
    d.copies[2] = { node: 'n3', seq: 10, digest: 'other' };
    expect(kinds([], { ...empty(), replicas: [same(0), d] })).toEqual(['replica-divergence']);
    const s = same(4);
    s.copies[1] = { node: 'n2', seq: 9, digest: 'd10' };
    expect(kinds([], { ...empty(), replicas: [s] })).toEqual(['replica-divergence']);
    const u = same(5);
    u.copies.pop();
    expect(kinds([], { ...empty(), replicas: [u] })).toEqual(['under-replicated']);
  });

  it('the report names every violation and its operations', () => {
    const h = builder();
    h.put('k', 'v1', 0, 10, 'ok', 1);
    h.put('k', 'v2', 20, 30, 'ok', 2);
    h.get('k', 'v1', 31, 32, 1);
    h.produce(['a', 'b'], [[0, 0], [0, 1]], 0, 10);
    const r = check(h.ops, { kv: finalKv('k', 'v1', 1), logs: [log(0, ['a'])], replicas: [] });
    expect(r.ok).toBe(false);
    expect(r.counts).toMatchObject({ 'lost-write': 2, 'stale-read': 1, 'stream-lost': 1 });
    expect(r.text).toMatch(/lost-write: 2/);
    expect(r.text).toMatch(/#1 .*put k=v2 v2/);
    expect(r.text).toMatch(/stream-lost: 1\n.*acked record b/);
  });
});

describe('checker: simulated linearizable histories never fail, their corruptions always do', () => {
  /** Small seeded PRNG (LCG) so a failing seed can be replayed. */
  const prng = (seed: number) => () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);

  /**
   * Clients run operations with random durations; each takes effect at a random instant inside its
   * own [invoke, complete] (a linearizable store). Some writes fail (no effect) or end unknown
   * (effect or not, possibly never answered).
   */
  function simulate(seed: number) {
    const r = prng(seed);
    const ops: Op[] = [];
    const events: Array<{ at: number; run: () => void }> = [];
    const reg = new Map<string, { value: string; version: number }>();
    const logs = [[], []] as string[][];
    let seq = 0;
    for (let c = 0; c < 5; c++) {
      let t = r() * 5;
      for (let i = 0; i < 40; i++) {
        const invokeMs = t;
        const completeMs = t + 0.1 + r() * 8;
        const at = invokeMs + (completeMs - invokeMs) * r();
        const roll = r();
        const outcome: Outcome = roll < 0.1 ? 'fail' : roll < 0.2 ? 'unknown' : 'ok';
        const applies = outcome === 'ok' || (outcome === 'unknown' && r() < 0.5);
        const base = { id: 0, client: c, node: 'n1', invokeMs, completeMs: outcome === 'unknown' && r() < 0.5 ? Infinity : completeMs, outcome, replicas: outcome === 'ok' ? 3 : undefined };
        const key = `k${Math.floor(r() * 3)}`;
        const kind = r();
        if (kind < 0.35) {
          const op = { ...base, type: 'kv-put', key, value: `c${c}-${i}` } as Op & { type: 'kv-put' };
          ops.push(op);
          if (applies) events.push({ at, run: () => { const version = ++seq; reg.set(key, { value: op.value, version }); if (outcome === 'ok') op.version = version; } });
        } else if (kind < 0.6) {
          const op = { ...base, outcome: 'ok', completeMs, type: 'kv-get', key } as Op & { type: 'kv-get' };
          ops.push(op);
          events.push({ at, run: () => { const v = reg.get(key); op.found = v !== undefined; op.value = v?.value; op.version = v?.version; } });
        } else if (kind < 0.85) {
          const partition = Math.floor(r() * 2);
          const values = [`p${c}-${i}-a`, `p${c}-${i}-b`].slice(0, 1 + Math.floor(r() * 2));
          const op = { ...base, type: 'produce', topic: 't', values } as Op & { type: 'produce' };
          ops.push(op);
          if (applies) events.push({ at, run: () => { const start = logs[partition].length; logs[partition].push(...values); if (outcome === 'ok') op.records = values.map((_, j) => ({ partition, offset: start + j })); } });
        } else {
          const partition = Math.floor(r() * 2);
          const op = { ...base, outcome: 'ok', completeMs, type: 'read', topic: 't', partition, fromOffset: 0 } as Op & { type: 'read' };
          ops.push(op);
          events.push({ at, run: () => { op.fromOffset = Math.floor(logs[partition].length * r()); op.records = logs[partition].slice(op.fromOffset).map((value, j) => ({ offset: op.fromOffset + j, value })); op.endOffset = logs[partition].length; } });
        }
        t = completeMs + r() * 2;
      }
    }
    events.sort((a, b) => a.at - b.at).forEach((e) => e.run());
    ops.sort((a, b) => a.invokeMs - b.invokeMs).forEach((op, id) => (op.id = id));
    const final: FinalState = {
      kv: ['k0', 'k1', 'k2'].flatMap((key) => finalKv(key, reg.get(key)?.value ?? null, reg.get(key)?.version)),
      logs: logs.map((values, partition) => log(partition, values)),
      replicas: [same(0), same(1)],
    };
    return { ops, final, reg, logs };
  }

  it('200 seeds: zero violations', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const { ops, final } = simulate(seed);
      const r = check(ops, final, { expectedReplicas: 3 });
      expect(r.violations, `seed ${seed}\n${r.text}`).toEqual([]);
    }
  });

  it('200 seeds: a lost write, a dropped record or a swapped pair is always caught', () => {
    let caught = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const { ops, final } = simulate(seed);
      // roll back the last acked put of some key to absent
      const lastPut = [...ops].reverse().find((o) => o.type === 'kv-put' && o.outcome === 'ok') as (Op & { type: 'kv-put' }) | undefined;
      if (lastPut) {
        const kv = final.kv.map((f) => (f.key === lastPut.key ? { ...f, found: false, value: undefined, version: undefined } : f));
        expect(check(ops, { ...final, kv }).counts['lost-write'], `seed ${seed}`).toBeGreaterThan(0);
        caught++;
      }
      // drop an acked record from its log (the ones after it shift down)
      const acked = ops.find((o) => o.type === 'produce' && o.outcome === 'ok') as (Op & { type: 'produce' }) | undefined;
      if (acked) {
        const { partition } = acked.records![0];
        const logs = final.logs.map((l) => (l.partition === partition ? log(partition, l.records.map((x) => x.value).filter((v) => v !== acked.values[0])) : l));
        expect(check(ops, { ...final, logs }).counts['stream-lost'], `seed ${seed}`).toBeGreaterThan(0);
        // swap two neighbours in a log holding at least two acked records
        const l = final.logs.find((x) => x.records.length >= 2)!;
        const values = l.records.map((x) => x.value);
        [values[0], values[1]] = [values[1], values[0]];
        const swapped = final.logs.map((x) => (x === l ? log(l.partition, values) : x));
        expect(check(ops, { ...final, logs: swapped }).ok, `seed ${seed}`).toBe(false);
      }
    }
    expect(caught).toBeGreaterThan(150);
  });
});
