// The guard's fixed-memory per-address state (src/guard/iptable.ts): keys of both families, LRU
// eviction order, hash collisions and deletion, the distinct-value pool and its full policy, and
// the column buckets against bucket.ts's reference `pour` on random event sequences.
import { describe, expect, it } from 'vitest';
import { type BucketSpec, newBucket, pour, type PourResult } from '../src/guard/bucket.js';
import { IpState, IpTable, ipKey, SeenPool } from '../src/guard/iptable.js';

const key = (ip: string) => {
  const k = new Uint32Array(4);
  ipKey(ip, k);
  return [...k];
};

let seed = 11;
const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);

describe('address keys', () => {
  it('IPv4 as the IPv4-mapped form, IPv6 in all its spellings, anything else hashed apart', () => {
    expect(key('198.18.7.9')).toEqual([0, 0, 0xffff, 0xc612_0709]);
    expect(key('0.0.0.0')).toEqual([0, 0, 0xffff, 0]);
    expect(key('255.255.255.255')).toEqual([0, 0, 0xffff, 0xffffffff]);
    expect(key('::ffff:198.18.7.9')).toEqual(key('198.18.7.9'));
    expect(key('2001:db8::1')).toEqual([0x20010db8, 0, 0, 1]);
    expect(key('2001:0db8:0:0:0:0:0:1')).toEqual(key('2001:db8::1'));
    expect(key('2001:DB8::1')).toEqual(key('2001:db8::1'));
    expect(key('::')).toEqual([0, 0, 0, 0]);
    expect(key('::1')).toEqual([0, 0, 0, 1]);
    expect(key('1::')).toEqual([0x10000, 0, 0, 0]);
    expect(key('fe80::1%eth0')).toEqual(key('fe80::1'));
    expect(key('2001:db8:1:2:3:4:5:6')).toEqual([0x20010db8, 0x10002, 0x30004, 0x50006]);
    expect(key('64:ff9b::198.18.0.1')).toEqual([0x0064ff9b, 0, 0, 0xc6120001]);
    const odd = ['1.2.3', '1.2.3.4.5', '256.1.1.1', '1::2::3', 'x', '2001:db8:1:2:3:4:5:6:7', ':1:2'].map(key);
    for (const k of odd) expect(k[0]).toBe(0xfffffffe);
    expect(new Set(odd.map((k) => k.join())).size).toBe(odd.length);
  });
});

describe('IpTable', () => {
  it('evicts the least recently used address; a lookup makes an address the most recent', () => {
    const t = new IpTable(3);
    const evicted: number[] = [];
    t.onEvict = (e) => evicted.push(e);
    const a = t.upsert('198.18.0.1');
    const b = t.upsert('198.18.0.2');
    const c = t.upsert('2001:db8::3');
    expect(t.get('198.18.0.1')).toBe(a); // a is now the most recent: b is the oldest
    t.upsert('198.18.0.2'); // and now c is
    expect(t.added).toBe(false);
    const d = t.upsert('198.18.0.4');
    expect(t.added).toBe(true);
    expect(evicted).toEqual([c]);
    expect(d).toBe(c); // the evicted entry's row is reused
    expect(t.get('2001:db8::3')).toBe(-1);
    expect([...t.entries()]).toEqual([d, b, a]);
    expect(t.size).toBe(3);
    expect(t.evictions).toBe(1);
    // IPv4 and its mapped IPv6 spelling are one address
    expect(t.get('::ffff:198.18.0.4')).toBe(d);
  });

  it('keeps every address findable through collisions, evictions and backward-shift deletion', () => {
    // a small table: 64 slots for 32 entries, so probe chains are long and wrap around
    const t = new IpTable(32);
    const live = new Map<string, number>();
    const order: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const ip = rnd() < 0.3 ? `2001:db8::${Math.floor(rnd() * 200).toString(16)}` : `198.18.${Math.floor(rnd() * 2)}.${Math.floor(rnd() * 100)}`;
      const entry = t.upsert(ip);
      if (!t.added) expect(live.get(ip)).toBe(entry);
      const at = order.indexOf(ip);
      if (at >= 0) order.splice(at, 1);
      order.unshift(ip);
      if (order.length > 32) live.delete(order.pop()!);
      live.set(ip, entry);
      expect(t.size).toBe(live.size);
      if (i % 97 === 0) {
        for (const [k, e] of live) expect(t.get(k)).toBe(e);
        // the lookups above changed the order: rebuild it from the table's own
        const byEntry = new Map([...live].map(([k, e]) => [e, k]));
        order.splice(0, order.length, ...[...t.entries()].map((e) => byEntry.get(e)!));
      }
    }
    expect(t.evictions).toBeGreaterThan(4000);
  });

  it('two addresses with the same 32-bit hash are two entries (keys are compared whole)', () => {
    // birthday search over random IPv6 addresses: a full 32-bit collision is expected within
    // ~2^17 of them (10⁶ without one: a chance of e⁻¹¹⁶)
    const t = new IpTable(4);
    const seen = new Map<number, string>();
    let pair: [string, string] | undefined;
    const g = () => Math.floor(rnd() * 0x10000).toString(16);
    for (let i = 0; i < 1_000_000 && !pair; i++) {
      const ip = `2001:db8:${g()}:${g()}:${g()}:${g()}:${g()}:${g()}`;
      const h = t.hash(ip);
      const other = seen.get(h);
      if (other) pair = [other, ip];
      else seen.set(h, ip);
    }
    expect(pair).toBeDefined();
    const [x, y] = pair!;
    const ex = t.upsert(x);
    const ey = t.upsert(y);
    expect(t.added).toBe(true);
    expect(ey).not.toBe(ex);
    expect(t.get(x)).toBe(ex);
    expect(t.get(y)).toBe(ey);
    // and removing one leaves the other findable
    t.upsert('198.18.0.1'); t.upsert('198.18.0.2'); t.upsert('198.18.0.3'); // x is the oldest now
    expect(t.get(x)).toBe(-1);
    expect(t.get(y)).toBe(ey);
  });

  it('the eviction order under random use matches a reference LRU', () => {
    const t = new IpTable(50);
    const ref = new Map<string, number>(); // insertion order = LRU order
    for (let i = 0; i < 20_000; i++) {
      const ip = `198.18.${Math.floor(rnd() * 3)}.${Math.floor(rnd() * 40)}`;
      const entry = t.upsert(ip);
      expect(t.added).toBe(!ref.has(ip));
      ref.delete(ip);
      ref.set(ip, entry);
      if (ref.size > 50) ref.delete(ref.keys().next().value as string);
    }
    expect([...t.entries()].reverse()).toEqual([...ref.values()]);
  });
});

describe('SeenPool', () => {
  it('keeps values oldest first, drops the oldest past the bound, frees blocks', () => {
    const p = new SeenPool(2, 8, () => false);
    for (let v = 1; v <= 9; v++) expect(p.add(0, v, 100)).toBe(true);
    expect(p.add(0, 5, 100)).toBe(false);
    expect(p.list(0)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(p.blocksUsed).toBe(3);
    for (let v = 10; v <= 14; v++) p.add(0, v, 10);
    expect(p.list(0)).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    expect(p.blocksUsed).toBe(3); // 5…8 | 9…12 | 13 14
    expect(p.add(0, 1, 10)).toBe(true); // dropped values count as new again
    p.clear(0);
    expect(p.blocksUsed).toBe(0);
    expect(p.size(0)).toBe(0);
  });

  it('full: reclaims first; a set that cannot get a block starts over; with none at all the value is not kept', () => {
    let reclaimed = 0;
    const p = new SeenPool(2, 2, () => {
      if (p.size(1) === 0) return false;
      reclaimed++;
      p.clear(1);
      return true;
    });
    for (let v = 1; v <= 4; v++) p.add(1, v, 100);
    for (let v = 1; v <= 4; v++) p.add(0, v, 100);
    expect(p.add(0, 5, 100)).toBe(true); // set 1 gave its block
    expect(reclaimed).toBe(1);
    expect(p.list(0)).toEqual([1, 2, 3, 4, 5]);
    for (let v = 6; v <= 8; v++) p.add(0, v, 100); // both blocks full
    expect(p.add(0, 9, 100)).toBe(true); // nothing left to reclaim: set 0 starts over
    expect(p.list(0)).toEqual([9]);
    const q = new SeenPool(2, 1, () => false);
    for (let v = 1; v <= 4; v++) q.add(0, v, 100);
    expect(q.add(1, 7, 100)).toBe(false); // the only block is another set's: not kept, not counted
    expect(q.size(1)).toBe(0);
  });
});

describe('IpState buckets against the reference', () => {
  const specs: BucketSpec[] = [
    { capacity: 5, leakMs: 1000, blackholeMs: 3000, distinct: false },
    { capacity: 3, leakMs: 700, blackholeMs: 0, distinct: true },
    { capacity: 0, leakMs: 100, blackholeMs: 500, distinct: false },
    { capacity: 40, leakMs: 13, blackholeMs: 2000, distinct: true },
  ];

  it('gives the same result as bucket.ts pour for every event of random sequences', () => {
    const st = new IpState(1000, specs.map((bucket) => ({ type: 'leaky' as const, bucket })));
    const ref = new Map<string, ReturnType<typeof newBucket>>();
    const counts: Record<PourResult, number> = { poured: 0, overflow: 0, blackholed: 0, duplicate: 0 };
    let t = 1_700_000_000_000;
    for (let i = 0; i < 30_000; i++) {
      t += Math.floor(rnd() * 60) - 5; // mostly forward, sometimes a little back
      const ip = rnd() < 0.5 ? `198.18.0.${Math.floor(rnd() * 20)}` : `2001:db8::${Math.floor(rnd() * 20).toString(16)}`;
      const sc = Math.floor(rnd() * specs.length);
      const value = `/u${Math.floor(rnd() * 6)}`;
      st.enter(ip);
      const got = st.pour(sc, t, value);
      const b = ref.get(`${ip} ${sc}`) ?? newBucket(t);
      ref.set(`${ip} ${sc}`, b);
      expect(got).toBe(pour(specs[sc], b, t, value));
      counts[got]++;
    }
    // every outcome happened often enough for the comparison to mean something
    for (const n of Object.values(counts)) expect(n).toBeGreaterThan(200);
  });

  it('an evicted address starts from zero', () => {
    const st = new IpState(1000, [{ type: 'leaky', bucket: specs[0] }]);
    st.enter('198.18.0.1');
    for (let i = 0; i < 5; i++) expect(st.pour(0, 1000)).toBe('poured');
    for (let i = 0; i < 1000; i++) st.enter(`198.19.${i >> 8}.${i & 255}`);
    st.enter('198.18.0.1');
    expect(st.levelAt(0, 1000)).toBe(0);
    expect(st.pour(0, 1000)).toBe('poured');
    expect(st.evictions).toBe(2);
  });

  it('keeps counting across a month of event time (the u32 time base moves)', () => {
    const st = new IpState(1000, [{ type: 'leaky', bucket: { capacity: 3, leakMs: 86_400_000, blackholeMs: 86_400_000, distinct: false } }]);
    const day = 86_400_000;
    let t = 1_700_000_000_000;
    st.enter('198.18.0.1');
    const seen: PourResult[] = [];
    for (let d = 0; d < 60; d++, t += day / 2) seen.push(st.pour(0, t));
    expect(st.rebases).toBeGreaterThan(0);
    // half a day between events, one leaks per day: 1, 1.5 … 3 after 5 events, the 6th overflows, then a day's blackhole
    expect(seen.slice(0, 8)).toEqual(['poured', 'poured', 'poured', 'poured', 'poured', 'overflow', 'blackholed', 'poured']);
    expect(seen.filter((r) => r === 'overflow').length).toBeGreaterThan(5);
    const b = newBucket(1_700_000_000_000);
    const ref = seen.map((_, d) => pour({ capacity: 3, leakMs: day, blackholeMs: day, distinct: false }, b, 1_700_000_000_000 + d * (day / 2)));
    expect(seen).toEqual(ref);
  });

  it('a distinct pool shorter than the traffic evicts the oldest addresses, never the current one', () => {
    const st = new IpState(100, [{ type: 'leaky', bucket: { capacity: 1000, leakMs: 60_000, blackholeMs: 0, distinct: true } }], 10);
    for (let i = 0; i < 10; i++) {
      st.enter(`198.18.0.${i}`);
      for (let v = 0; v < 4; v++) st.pour(0, 1000, `/v${v}`); // one block each: the pool is full
    }
    st.enter('198.18.1.1');
    expect(st.pour(0, 1000, '/x')).toBe('poured');
    expect(st.evictions).toBe(1); // 198.18.0.0 gave its block
    for (let v = 0; v < 39; v++) st.pour(0, 1000, `/y${v}`);
    expect(st.size).toBe(1); // it took every block, evicting all the others
    expect(st.seen.blocksUsed).toBe(10);
    expect(st.pour(0, 1000, '/z')).toBe('poured'); // no one left to evict: its own set starts over
    expect(st.seen.blocksUsed).toBe(1);
    expect(st.pour(0, 1000, '/y0')).toBe('poured');
  });
});
