// Joins the rows a cluster's nodes wrote with CHICAGO_HOP_TIMES=DIR (src/runtime/hop-times.ts) into
// per-hop percentiles of acknowledged writes: where a replicated write's time goes between the
// leader's gateway, its partition worker, the followers' workers and back.
//
//   node dist/bench/hop-times.js DIR [--skip-s S]
//
// --skip-s drops the writes of the first S seconds (default 2: the bench's warmup).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HopRow } from '../src/runtime/hop-times.js';

interface Keyed { at: number; seq: number; extra: number }

/** rows of one kind keyed by (node, p[, peer]) in time order, with their seq: the first at or past a seq */
class BySeq {
  private readonly m = new Map<string, Keyed[]>();
  add(key: string, k: Keyed): void {
    let a = this.m.get(key);
    if (!a) this.m.set(key, (a = []));
    a.push(k);
  }
  sort(): void { for (const a of this.m.values()) a.sort((x, y) => x.at - y.at); }
  /** the first row at or after `afterUs` whose seq reaches `seq` */
  first(key: string, seq: number, afterUs: number): Keyed | undefined {
    const a = this.m.get(key);
    if (!a) return undefined;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid].at < afterUs) lo = mid + 1; else hi = mid; }
    for (let i = lo; i < a.length && i < lo + 64; i++) if (a[i].seq >= seq) return a[i];
    return undefined;
  }
}

/** a file's rows: one JSON array a line, as the nodes append them (or one array of them all) */
function readRows(file: string): HopRow[] {
  const text = readFileSync(file, 'utf8');
  if (text.startsWith('[[')) return JSON.parse(text) as HopRow[];
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as HopRow);
}

export function hopTable(dir: string, skipS = 2): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  const gEnq = new Map<string, { at: number; p: number }>();
  const gPost = new Map<string, number>();
  const gReply = new Map<string, number>();
  /** node/id/p → worker rows */
  const wRecv = new Map<string, number>();
  const wSeq = new Map<string, { at: number; seq: number; file: string }>();
  const wReply = new Map<string, number>();
  const written = new Map<string, number[]>(); // file → times
  const wSend = new BySeq(); // node/p/to
  const fAppend = new BySeq(); // node/p (extra: receive time)
  const fAckSent = new BySeq(); // node/p
  const wAck = new BySeq(); // node/p/from (extra: receive time)
  const nodes = new Set<string>();
  for (const f of files) {
    const rows = readRows(join(dir, f));
    // DIR/<node>-<thread>.json, the thread `main` or `worker-<id>`: a node id may hold dashes too
    const node = f.replace(/-(main|worker-\d+)\.json$/, '');
    nodes.add(node);
    const times: number[] = [];
    for (const [point, at, ...k] of rows) {
      switch (point) {
        case 'gEnq': gEnq.set(`${node}/${k[0]}/${k[1]}`, { at, p: k[2] as number }); break;
        case 'gPost': gPost.set(`${node}/${k[0]}/${k[1]}`, at); break;
        case 'gReply': gReply.set(`${node}/${k[0]}/${k[1]}`, at); break;
        case 'wRecv': wRecv.set(`${f}/${k[0]}`, at); break;
        case 'wSeq': wSeq.set(`${node}/${k[0]}/${k[1]}`, { at, seq: k[2] as number, file: f }); break;
        case 'wReply': wReply.set(`${f}/${k[0]}`, at); break;
        case 'wWritten': times.push(at); break;
        case 'wSend': wSend.add(`${node}/${k[0]}/${k[1]}`, { at, seq: k[2] as number, extra: 0 }); break;
        case 'fAppend': fAppend.add(`${node}/${k[0]}`, { at, seq: k[1] as number, extra: k[2] as number }); break;
        case 'fAckSent': fAckSent.add(`${node}/${k[0]}`, { at, seq: k[1] as number, extra: 0 }); break;
        case 'wAck': wAck.add(`${node}/${k[0]}/${k[1]}`, { at, seq: k[2] as number, extra: k[3] as number }); break;
      }
    }
    written.set(f, times.sort((a, b) => a - b));
  }
  for (const b of [wSend, fAppend, fAckSent, wAck]) b.sort();
  const firstAfter = (a: number[], t: number): number | undefined => {
    let lo = 0;
    let hi = a.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] < t) lo = mid + 1; else hi = mid; }
    return a[lo];
  };
  const hops: Record<string, number[]> = {};
  const add = (name: string, us: number | undefined) => { if (us !== undefined && Number.isFinite(us)) (hops[name] ??= []).push(us); };
  // a loop, not Math.min(...all): spread past about 100k rows overflows the stack
  let first = Infinity;
  for (const { at } of gEnq.values()) first = Math.min(first, at);
  const t0 = first + skipS * 1e6;
  let joined = 0;
  for (const [key, enq] of gEnq) {
    if (enq.at < t0) continue;
    const [node, , id] = key.split('/');
    const post = gPost.get(key);
    const reply = gReply.get(key);
    const seqRow = wSeq.get(`${node}/${id}/${enq.p}`);
    if (post === undefined || reply === undefined || !seqRow) continue;
    const recv = wRecv.get(`${seqRow.file}/${id}`);
    const wrep = wReply.get(`${seqRow.file}/${id}`);
    const wr = firstAfter(written.get(seqRow.file) ?? [], seqRow.at);
    if (recv === undefined || wrep === undefined || wr === undefined) continue;
    // per follower: the send, its receipt and ack there, the ack's receipt here
    let lastAck: { inUs: number; drainUs: number } | undefined;
    let lastSend = 0;
    const legs: Array<Record<string, number>> = [];
    for (const peer of nodes) {
      if (peer === node) continue;
      const send = wSend.first(`${node}/${enq.p}/${peer}`, seqRow.seq, seqRow.at);
      if (!send) continue;
      const app = fAppend.first(`${peer}/${enq.p}`, seqRow.seq, send.at);
      const ackSent = app && fAckSent.first(`${peer}/${enq.p}`, seqRow.seq, app.at);
      const ack = ackSent && wAck.first(`${node}/${enq.p}/${peer}`, seqRow.seq, ackSent.at);
      if (!app || !ackSent || !ack) continue;
      lastSend = Math.max(lastSend, send.at);
      legs.push({ net: app.extra - send.at, fdrain: app.at - app.extra, fwrite: ackSent.at - app.at, back: ack.extra - ackSent.at, ldrain: ack.at - ack.extra });
      if (!lastAck || ack.extra > lastAck.inUs) lastAck = { inUs: ack.extra, drainUs: ack.at };
    }
    if (!lastAck || legs.length < 2) continue;
    joined++;
    add('1 gateway queue (enqueue → posted to worker)', post - enq.at);
    add('2 gateway → worker thread hop', recv - post);
    add('3 worker: received → write stepped', seqRow.at - recv);
    add('4 worker: RocksDB batch write (its fsync too under sync always)', wr - seqRow.at);
    add('5 worker: written → appends sent (the group fsync under sync group)', lastSend - wr);
    for (const l of legs) {
      add('6 link leader → follower (socket + wake)', l.net);
      add('7 follower: frame in → stepped', l.fdrain);
      add('8 follower: stepped → written → ack sent', l.fwrite);
      add('9 link follower → leader (socket + wake)', l.back);
      add('10 leader: ack in → stepped', l.ldrain);
    }
    add('11 leader: last ack in → reply posted', wrep - lastAck.inUs);
    add('12 worker → gateway thread hop', reply - wrep);
    add('= gateway enqueue → reply (all hops)', reply - enq.at);
    add('  of which: appends sent → last ack in', lastAck.inUs - lastSend);
  }
  const pct = (a: number[], q: number) => a[Math.min(a.length - 1, Math.floor(q * a.length))];
  const lines = [`writes joined: ${joined}`, '| hop | p50 µs | p90 µs | p99 µs | max µs |', '|---|---:|---:|---:|---:|'];
  for (const name of Object.keys(hops).sort((a, b) => parseInt(a) - parseInt(b) || a.localeCompare(b))) {
    const a = hops[name].sort((x, y) => x - y);
    lines.push(`| ${name} | ${pct(a, 0.5)} | ${pct(a, 0.9)} | ${pct(a, 0.99)} | ${a[a.length - 1]} |`);
  }
  return lines.join('\n');
}

const GC_KINDS: Record<number, string> = { 1: 'gc scavenge', 2: 'gc minor mark-compact', 4: 'gc mark-compact', 8: 'gc incremental', 16: 'gc weak callbacks' };
const SLOW_WRITE_US = 5_000;

/**
 * What kept each thread busy (the `stall`, `gc` and `task` rows), and for the writes that took
 * SLOW_WRITE_US or more from gateway enqueue to reply, which of those overlapped them on any thread
 * of any node: a stall no GC or timed task explains is a thread that was busy with something else or
 * waited for a core.
 */
export function stallTable(dir: string, skipS = 2): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  const rowsOf = new Map(files.map((f) => [f.slice(0, -5), readRows(join(dir, f))]));
  let first = Infinity;
  for (const rows of rowsOf.values()) for (const [point, at] of rows) if (point === 'gEnq') first = Math.min(first, at);
  const from = first + skipS * 1e6;
  const busy: Array<{ from: number; to: number; what: string }> = [];
  const lines = ['| thread | what | count | total ms | p50 ms | max ms |', '|---|---|---:|---:|---:|---:|'];
  const slow: Array<[number, number]> = [];
  let writes = 0;
  for (const [thread, rows] of rowsOf) {
    const byWhat = new Map<string, number[]>();
    const enq = new Map<string, number>();
    for (const [point, at, ...k] of rows) {
      if (at < from && point !== 'gReply') continue;
      let what: string | undefined;
      let us = 0;
      if (point === 'stall') { what = 'loop late ≥ 2 ms'; us = k[0] as number; busy.push({ from: at - us - 2_000, to: at, what: 'stall' }); }
      else if (point === 'gc') { what = GC_KINDS[k[0] as number] ?? `gc ${k[0]}`; us = k[1] as number; }
      else if (point === 'task') { what = `task ${k[0]}`; us = k[1] as number; }
      else if (point === 'gEnq') enq.set(`${k[0]}/${k[1]}`, at);
      else if (point === 'gReply') {
        const t0 = enq.get(`${k[0]}/${k[1]}`);
        if (t0 !== undefined) { writes++; if (at - t0 >= SLOW_WRITE_US) slow.push([t0, at]); }
      }
      if (!what) continue;
      if (point !== 'stall' && us >= 1_000) busy.push({ from: at - us, to: at, what });
      const a = byWhat.get(what) ?? [];
      a.push(us / 1000);
      byWhat.set(what, a);
    }
    for (const [what, a] of [...byWhat].sort()) {
      a.sort((x, y) => x - y);
      lines.push(`| ${thread} | ${what} | ${a.length} | ${a.reduce((x, y) => x + y, 0).toFixed(1)} | ${a[a.length >> 1].toFixed(2)} | ${a[a.length - 1].toFixed(2)} |`);
    }
  }
  const causes = new Map<string, number>();
  for (const [t0, t1] of slow) {
    const over = new Set(busy.filter((b) => b.to > t0 && b.from < t1).map((b) => b.what));
    const named = [...over].filter((w) => w !== 'stall').sort();
    const key = named.length > 0 ? named.join(' + ') : over.has('stall') ? 'a stall nothing recorded explains' : 'no thread stalled';
    causes.set(key, (causes.get(key) ?? 0) + 1);
  }
  lines.push('', `writes ${writes}, of them ${slow.length} (${(100 * slow.length / Math.max(writes, 1)).toFixed(2)} %) took ≥ ${SLOW_WRITE_US / 1000} ms; overlapping them:`, '| busy with (≥ 1 ms, any thread) | slow writes | share |', '|---|---:|---:|');
  for (const [key, n] of [...causes].sort((a, b) => b[1] - a[1])) lines.push(`| ${key} | ${n} | ${(100 * n / slow.length).toFixed(1)} % |`);
  return lines.join('\n');
}

if (process.argv[1]?.endsWith('hop-times.js')) {
  const dir = process.argv[2];
  if (!dir) { console.error('usage: node dist/bench/hop-times.js DIR [--skip-s S]'); process.exit(2); }
  const i = process.argv.indexOf('--skip-s');
  const skipS = i > 0 ? Number(process.argv[i + 1]) : 2;
  console.log(hopTable(dir, skipS));
  console.log('');
  console.log(stallTable(dir, skipS));
}
