// The nft enforcer: its pure queue (coalescing per element, the bound and its full policy, lines,
// what is resent after a refused line), then the enforcer against real nft in a network namespace
// of its own: batches with an element that has just timed out, an unban of one already gone, an
// overlapping prefix, the queue bound.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Decision } from '../src/guard/decisions.js';
import { NftEnforcer, type NftOptions } from '../src/guard/nft.js';
import { afterFailure, buildLines, mergeOp, NftQueue, type Pending, retryLines } from '../src/guard/nftqueue.js';
import { waitUntil } from './helpers/bridge.js';
import { slow } from './helpers/slow.js';
import { addNftNamespace, deleteNamespace } from './helpers/netns.js';

const run = promisify(execFile);

describe('nft queue (pure)', () => {
  it('one pending change per element: merges, keeps the later expiry, resolves every waiter', () => {
    expect(mergeOp('add', 'add')).toBe('add');
    expect(mergeOp('add', 'replace')).toBe('replace');
    expect(mergeOp('del', 'add')).toBe('replace');
    expect(mergeOp('replace', 'del')).toBe('del');
    expect(mergeOp('add', 'del')).toBe('del');
    const q = new NftQueue(10);
    const told: string[] = [];
    q.push('v4', '198.18.0.1', 'add', 1000, () => told.push('a'));
    q.push('v4', '198.18.0.2', 'add', 1000);
    q.push('v4', '198.18.0.1', 'replace', 5000, () => told.push('b'));
    q.push('v6', '2001:db8::1', 'del', 0);
    q.push('v6', '2001:db8::1', 'add', 7000);
    expect(q.size).toBe(3);
    const items = q.take(10);
    expect(items.map((p) => [p.target, p.op, p.untilMs])).toEqual([['198.18.0.1', 'replace', 5000], ['198.18.0.2', 'add', 1000], ['2001:db8::1', 'replace', 7000]]);
    for (const w of items[0].waiters) w(true);
    expect(told).toEqual(['a', 'b']);
    expect(q.size).toBe(0);
  });

  it('bounded: a new element is refused when full (its waiter told false); pending ones still merge; a resync is forced in', () => {
    const q = new NftQueue(2);
    const refused: boolean[] = [];
    expect(q.push('v4', 'a', 'add', 1)).toBe(true);
    expect(q.push('v4', 'b', 'add', 1)).toBe(true);
    expect(q.push('v4', 'c', 'add', 1, (ok) => refused.push(ok))).toBe(false);
    expect(refused).toEqual([false]);
    expect(q.push('v4', 'a', 'del', 0)).toBe(true);
    expect(q.dropped).toBe(1);
    expect(q.push('v4', 'd', 'add', 1, undefined, true)).toBe(true);
    expect(q.size).toBe(3);
    // put back after nft died: as replaces, merged with what came since
    const sent = q.take(2);
    q.push('v4', 'a', 'add', 9);
    q.putBack(sent);
    expect(q.take(10).map((p) => `${p.target}:${p.op}`)).toEqual(['d:add', 'a:replace', 'b:replace']);
  });

  it('lines: deletes before adds, per set, up to perLine elements; adds already expired are left out', () => {
    const it = (set: string, target: string, op: Pending['op'], untilMs = 600_000): Pending => ({ set, target, op, untilMs, waiters: [] });
    const lines = buildLines('g', [it('v4', '198.18.0.1', 'add'), it('v4', '198.18.0.2', 'replace'), it('v6', '2001:db8::1', 'del'), it('v4', '198.18.0.3', 'add'), it('v4', '198.18.0.4', 'add', 0), it('v4net', '198.18.9.0/24', 'replace', 90_500)], 0, 2);
    expect(lines.map((l) => l.text)).toEqual([
      'delete element inet g v4 { 198.18.0.2 }',
      'delete element inet g v6 { 2001:db8::1 }',
      'delete element inet g v4net { 198.18.9.0/24 }',
      'add element inet g v4 { 198.18.0.1 timeout 600s, 198.18.0.2 timeout 600s }',
      'add element inet g v4 { 198.18.0.3 timeout 600s }',
      'add element inet g v4net { 198.18.9.0/24 timeout 91s }',
    ]);
    const l = lines[3];
    expect(l.elems.map((e) => l.text.slice(e.start, e.end))).toEqual(['198.18.0.1 timeout 600s', '198.18.0.2 timeout 600s']);
  });

  it('after a refused line: drop the element the carets point at, else halve; a delete line gets its adds again', () => {
    const items = ['198.18.0.1', '198.18.0.2', '198.18.0.3'].map((t): Pending => ({ set: 'v4', target: t, op: 'replace', untilMs: 60_000, waiters: [] }));
    const [del] = buildLines('g', items, 0, 10);
    const at = del.text.indexOf('198.18.0.2');
    const r = afterFailure(del, at, at + 10);
    expect(r.refused.map((e) => e.item.target)).toEqual(['198.18.0.2']);
    expect(r.retry.map((g) => g.map((p) => p.target))).toEqual([['198.18.0.1', '198.18.0.3']]);
    expect(retryLines('g', 'del', 'v4', r.retry[0], 0).map((l) => l.text)).toEqual([
      'delete element inet g v4 { 198.18.0.1, 198.18.0.3 }',
      'add element inet g v4 { 198.18.0.1 timeout 60s, 198.18.0.3 timeout 60s }',
    ]);
    const halves = afterFailure(del, undefined, undefined);
    expect(halves.refused).toEqual([]);
    expect(halves.retry.map((g) => g.length)).toEqual([2, 1]);
    // carets outside every element (under the keyword): halves too
    expect(afterFailure(del, 0, 6).retry.length).toBe(2);
    // one element: nothing left to retry
    const [one] = buildLines('g', [items[0]], 0, 10);
    expect(afterFailure(one, undefined, undefined)).toEqual({ refused: one.elems, retry: [] });
  });
});

const NS = `chgn${process.pid}`;
const TABLE = `gm${process.pid}`;
let nsError: string | undefined;
const logs: Array<{ level: string; msg: string; extra?: object }> = [];

async function list(set: string): Promise<string> {
  const { stdout } = await run('ip', ['netns', 'exec', NS, 'nft', 'list', 'set', 'inet', TABLE, set], { timeout: slow(5000) });
  return stdout;
}

/** the element's timeout as nft lists it, e.g. '10m', or undefined when absent */
function timeoutOf(listing: string, target: string): string | undefined {
  const m = new RegExp(`[\\s{,]${target.replace(/[.:/]/g, '\\$&')} timeout (\\S+) expires`).exec(listing);
  return m?.[1];
}

const decision = (target: string, untilMs: number, scope: 'ip' | 'prefix' = 'ip'): Decision => ({
  target, scope, v6: target.includes(':'), scenario: 'test', detail: '', origin: 'guard', createdMs: Date.now(), untilMs, offense: 1,
});

function enforcer(o: { queueMax?: number; batchMax?: number; childLinesMax?: number; onTiming?: NftOptions['onTiming']; active?: NftOptions['active'] } = {}): NftEnforcer {
  return new NftEnforcer({
    command: ['ip', 'netns', 'exec', NS, 'nft'], table: TABLE, drop: false, batchMax: o.batchMax ?? 500, queueMax: o.queueMax ?? 1000,
    ...(o.childLinesMax ? { childLinesMax: o.childLinesMax } : {}),
    ...(o.onTiming ? { onTiming: o.onTiming } : {}),
    active: o.active ?? (() => []), log: (level, msg, extra) => logs.push({ level, msg, extra }),
  });
}

beforeAll(async () => {
  nsError = await addNftNamespace(NS);
});

afterAll(async () => {
  await deleteNamespace(NS);
});

describe('nft enforcer against real nft', () => {
  it('an extension batch with an element that has just timed out extends every other one and re-adds it', async (ctx) => {
    if (nsError) ctx.skip(`network namespaces or nftables are not available here: ${nsError}`);
    const timed: string[] = [];
    const nft = enforcer({ batchMax: 50, onTiming: (t) => timed.push(t.target) });
    await nft.start();
    try {
      const now = Date.now();
      const others = Array.from({ length: 40 }, (_, i) => `198.18.2.${i + 1}`);
      await Promise.all([nft.ban(decision('198.18.2.200', now + 1000), false), ...others.map((ip) => nft.ban(decision(ip, now + 120_000), false))]);
      const first = await list('v4');
      expect(timeoutOf(first, '198.18.2.200')).toBe('1s');
      for (const ip of others) expect(timeoutOf(first, ip)).toBe('2m');
      await waitUntil('the short ban timed out in the kernel', async () => timeoutOf(await list('v4'), '198.18.2.200') === undefined, slow(5000), 50);
      // one batch: extend all 41; the delete line names one element that is gone
      const later = Date.now() + 600_000;
      const ext = [...others.slice(0, 20), '198.18.2.200', ...others.slice(20)];
      timed.length = 0;
      await Promise.all(ext.map((ip) => nft.ban(decision(ip, later), true)));
      // each element's time once, at the ack of the batch that did its change (a resent one at its retry's)
      expect([...timed].sort()).toEqual([...ext].sort());
      const after = await list('v4');
      for (const ip of ext) expect(timeoutOf(after, ip), ip).toBe('10m');
      expect(nft.retries).toBeGreaterThan(0);
      expect(nft.errors).toBe(0);
      // an unban batch naming two elements already gone removes the rest
      await Promise.all([...others.slice(0, 10), '198.18.2.250', '198.18.2.251'].map((ip) => nft.unban(decision(ip, 0))));
      const left = await list('v4');
      for (const ip of others.slice(0, 10)) expect(timeoutOf(left, ip)).toBeUndefined();
      for (const ip of others.slice(10)) expect(timeoutOf(left, ip)).toBe('10m');
    } finally {
      await nft.close();
    }
  }, slow(20_000));

  it('a prefix overlapping one in the set is refused alone; the rest of its line goes in; IPv6 too', async (ctx) => {
    if (nsError) ctx.skip(`network namespaces or nftables are not available here: ${nsError}`);
    const nft = enforcer();
    await nft.start();
    try {
      const until = Date.now() + 300_000;
      await nft.ban(decision('198.18.9.0/24', until, 'prefix'), false);
      await Promise.all(['10.0.0.0/8', '198.18.0.0/16', '11.0.0.0/8'].map((p) => nft.ban(decision(p, until, 'prefix'), false)));
      await Promise.all(['2001:db8::1', '2001:db8::2'].map((ip) => nft.ban(decision(ip, until), false)));
      const v4net = await list('v4net');
      expect(v4net).toContain('10.0.0.0/8');
      expect(v4net).toContain('11.0.0.0/8');
      expect(v4net).toContain('198.18.9.0/24');
      expect(v4net).not.toContain('198.18.0.0/16');
      expect(nft.errors).toBe(1);
      expect(logs.some((l) => l.msg === 'nft refused an element' && JSON.stringify(l.extra).includes('198.18.0.0/16'))).toBe(true);
      const v6 = await list('v6');
      expect(timeoutOf(v6, '2001:db8::1')).toBe('5m');
      expect(timeoutOf(v6, '2001:db8::2')).toBe('5m');
    } finally {
      await nft.close();
    }
  }, slow(20_000));

  it('the queue is bounded: changes for new elements past queueMax are refused and counted, merged ones are not', async (ctx) => {
    if (nsError) ctx.skip(`network namespaces or nftables are not available here: ${nsError}`);
    const nft = enforcer({ queueMax: 3 });
    await nft.start();
    try {
      const until = Date.now() + 300_000;
      // the first goes out at once; while it is in flight three wait, the rest are refused
      const all = Array.from({ length: 10 }, (_, i) => nft.ban(decision(`198.18.3.${i + 1}`, until), false));
      const merged = nft.ban(decision('198.18.3.2', until + 60_000), true);
      expect(nft.queued).toBe(3);
      expect(nft.dropped).toBe(6);
      await Promise.all([...all, merged]);
      const v4 = await list('v4');
      for (let i = 1; i <= 4; i++) expect(timeoutOf(v4, `198.18.3.${i}`)).toBeDefined();
      for (let i = 5; i <= 10; i++) expect(timeoutOf(v4, `198.18.3.${i}`)).toBeUndefined();
      expect(timeoutOf(v4, '198.18.3.2')).toBe('6m');
      expect(logs.filter((l) => l.msg === 'nft queue full; change refused').length).toBeGreaterThanOrEqual(6);
    } finally {
      await nft.close();
    }
  }, slow(20_000));

  it("nft's interactive history is neither read nor written; each batch's write and ack times are reported", async (ctx) => {
    if (nsError) ctx.skip(`network namespaces or nftables are not available here: ${nsError}`);
    const home = mkdtempSync(join(tmpdir(), 'chicago-nft-home-'));
    const before = process.env.HOME;
    process.env.HOME = home;
    const times: Array<{ target: string; writtenUs: number; ackUs: number }> = [];
    const nft = new NftEnforcer({
      command: ['ip', 'netns', 'exec', NS, 'nft'], table: TABLE, drop: false, batchMax: 500, queueMax: 1000,
      active: () => [], log: () => {}, onTiming: (t) => times.push(t),
    });
    try {
      await nft.start();
      await nft.ban(decision('198.18.4.1', Date.now() + 60_000), false);
      await nft.ban(decision('198.18.4.2', Date.now() + 60_000), false);
      expect(timeoutOf(await list('v4'), '198.18.4.2')).toBe('1m');
    } finally {
      await nft.close();
      process.env.HOME = before;
    }
    // nft -i writes $HOME/.nft.history when its input ends
    expect(existsSync(join(home, '.nft.history'))).toBe(false);
    rmSync(home, { recursive: true, force: true });
    expect(times.map((t) => t.target)).toEqual(['198.18.4.1', '198.18.4.2']);
    for (const t of times) expect(t.ackUs).toBeGreaterThanOrEqual(t.writtenUs);
    expect(times[1].writtenUs).toBeGreaterThanOrEqual(times[0].ackUs);
  }, slow(20_000));

  it('a child that has read childLinesMax lines is replaced between batches: no restart, nothing lost, the old one exits', async (ctx) => {
    if (nsError) ctx.skip(`network namespaces or nftables are not available here: ${nsError}`);
    // the start's no-op and each ban are two lines each (the line, the ack): the second ban crosses 5
    const nft = enforcer({ childLinesMax: 5 });
    const logsFrom = logs.length;
    await nft.start();
    try {
      const until = Date.now() + 120_000;
      const first = nft.pid!;
      for (let i = 1; i <= 3; i++) await nft.ban(decision(`198.18.5.${i}`, until), false);
      expect(nft.pid).toBeDefined();
      expect(nft.pid).not.toBe(first);
      expect(nft.replaced).toBe(1);
      await waitUntil('the replaced child to exit', () => { try { process.kill(first, 0); return false; } catch { return true; } }, slow(5000), 10);
      for (let i = 4; i <= 5; i++) await nft.ban(decision(`198.18.5.${i}`, until), false);
      const v4 = await list('v4');
      for (let i = 1; i <= 5; i++) expect(timeoutOf(v4, `198.18.5.${i}`), `198.18.5.${i}`).toBe('2m');
      expect(nft.restarts).toBe(0);
      expect(logs.slice(logsFrom).filter((l) => l.msg === 'nft exited; restarting')).toEqual([]);
    } finally {
      await nft.close();
    }
  }, slow(20_000));
  it('a fresh child runs a no-op transaction before its first change (at start and after a restart), but not when changes wait at a replacement', async (ctx) => {
    if (nsError) ctx.skip(`network namespaces or nftables are not available here: ${nsError}`);
    const timed: Array<{ target: string; us: number }> = [];
    // the no-op is two lines (it and the ack), a ban two more: a child has read 4 after its first ban
    const nft = enforcer({ childLinesMax: 4, onTiming: (t) => timed.push({ target: t.target, us: t.ackUs - t.writtenUs }) });
    const logsFrom = logs.length;
    await nft.start();
    try {
      expect(nft.warmed).toBe(1); // start() returns once the first child is warm
      // a restarted child is warmed too
      process.kill(nft.pid!, 'SIGKILL');
      await waitUntil('the child restarted and warmed', () => nft.restarts === 1 && nft.warmed === 2, slow(5000), 5);
      // D waits while A is in flight; after A the child has read 4 lines and is replaced with D waiting: D goes first
      const until = Date.now() + 120_000;
      const pa = nft.ban(decision('198.18.6.1', until), false);
      const pd = nft.ban(decision('198.18.6.4', until), false);
      await Promise.all([pa, pd]);
      expect(nft.replaced).toBe(1);
      expect(nft.warmed).toBe(2);
      const v4 = await list('v4');
      for (const t of ['198.18.6.1', '198.18.6.4']) expect(timeoutOf(v4, t), t).toBe('2m');
      expect(nft.errors).toBe(0);
      expect(logs.slice(logsFrom).filter((l) => l.level === 'error')).toEqual([]);
      process.stderr.write(`nft warm: first ban after a restart written→ack ${(timed[0].us / 1000).toFixed(2)} ms\n`);
    } finally {
      await nft.close();
    }
  }, slow(20_000));
  it('a child restarted with decisions in force re-adds them as its first transaction, with no no-op ahead', async (ctx) => {
    if (nsError) ctx.skip(`network namespaces or nftables are not available here: ${nsError}`);
    const d = decision('198.18.6.9', Date.now() + 120_000);
    const active: Decision[] = [];
    const nft = enforcer({ active: () => active });
    await nft.start();
    try {
      expect(nft.warmed).toBe(1);
      await nft.ban(d, false);
      active.push(d);
      // the kernel loses the element with the child: only the re-add brings it back
      await run('ip', ['netns', 'exec', NS, 'nft', 'delete', 'element', 'inet', TABLE, 'v4', '{ 198.18.6.9 }'], { timeout: slow(5000) });
      process.kill(nft.pid!, 'SIGKILL');
      await waitUntil('the child restarted and the decision re-added', async () => nft.restarts === 1 && nft.pid !== undefined && nft.queued === 0 && timeoutOf(await list('v4'), d.target) !== undefined, slow(5000), 20);
      expect(nft.warmed).toBe(1);
      expect(nft.errors).toBe(0);
    } finally {
      await nft.close();
    }
  }, slow(20_000));
});
