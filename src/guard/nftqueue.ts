// The nft enforcer's pure part: pending changes per set element, coalesced and bounded, turned
// into nft lines; and what to resend when nft refuses a line.
// - One pending change per element: a later change merges into it (add+add → add with the later
//   expiry; anything then del → del; del then add, or an extension → replace = delete then add).
// - Bounded: at most `max` elements pending. Full policy: a change for an element not already
//   pending is refused (`dropped` counts it; the caller logs it); changes to pending elements
//   always merge, and `force` (the re-add of every decision in force after nft restarts) is
//   bounded by the decisions in force.
// - A line names many elements and nft applies it whole or not at all: `delete element` of one
//   element that has just timed out fails the line. Such a line is resent without the element
//   nft's error points at (its caret columns), or split in halves when the error points at none.

export type ElemOp = 'add' | 'replace' | 'del';

export interface Pending {
  set: string;
  target: string;
  op: ElemOp;
  /** expiry of the element for add/replace */
  untilMs: number;
  /** told true once nft holds the change, false when it was refused */
  waiters: Array<(ok: boolean) => void>;
}

export function mergeOp(prev: ElemOp, next: ElemOp): ElemOp {
  if (next === 'del') return 'del';
  if (prev === 'add' && next === 'add') return 'add';
  return 'replace';
}

export class NftQueue {
  private readonly pending = new Map<string, Pending>();
  dropped = 0;

  constructor(readonly max: number) {}

  get size(): number { return this.pending.size; }

  /** Queues a change; false when refused (the queue is full and the element not in it). */
  push(set: string, target: string, op: ElemOp, untilMs: number, waiter?: (ok: boolean) => void, force = false): boolean {
    const key = `${set} ${target}`;
    const p = this.pending.get(key);
    if (p) {
      p.op = mergeOp(p.op, op);
      if (op !== 'del') p.untilMs = untilMs;
      if (waiter) p.waiters.push(waiter);
      return true;
    }
    if (!force && this.pending.size >= this.max) {
      this.dropped++;
      waiter?.(false);
      return false;
    }
    this.pending.set(key, { set, target, op, untilMs, waiters: waiter ? [waiter] : [] });
    return true;
  }

  /** Takes up to `n` pending changes, oldest first. */
  take(n: number): Pending[] {
    const out: Pending[] = [];
    for (const [k, p] of this.pending) {
      if (out.length >= n) break;
      this.pending.delete(k);
      out.push(p);
    }
    return out;
  }

  /**
   * Puts changes that were sent but not acknowledged back (nft died): as replaces, since nft may or
   * may not have applied them, merged into whatever was queued for the element since.
   */
  putBack(items: Pending[]): void {
    for (const it of items) {
      const key = `${it.set} ${it.target}`;
      const p = this.pending.get(key);
      const op: ElemOp = it.op === 'del' ? 'del' : 'replace';
      if (p) {
        // the newer change wins; the older one's waiters wait for it
        p.op = mergeOp(op, p.op);
        p.waiters.unshift(...it.waiters);
      } else {
        this.pending.set(key, { ...it, op });
      }
    }
  }
}

export interface LineElem {
  item: Pending;
  /** the element's text's columns in the line */
  start: number;
  end: number;
}

export interface NftLine {
  text: string;
  kind: 'add' | 'del';
  set: string;
  elems: LineElem[];
}

/** nft text of one element of a line */
function elemText(kind: 'add' | 'del', it: Pending, nowMs: number): string {
  return kind === 'del' ? it.target : `${it.target} timeout ${Math.ceil((it.untilMs - nowMs) / 1000)}s`;
}

export function line(table: string, kind: 'add' | 'del', set: string, items: Pending[], nowMs: number): NftLine {
  let text = `${kind === 'add' ? 'add' : 'delete'} element inet ${table} ${set} { `;
  const elems: LineElem[] = [];
  items.forEach((item, i) => {
    if (i > 0) text += ', ';
    const t = elemText(kind, item, nowMs);
    elems.push({ item, start: text.length, end: text.length + t.length });
    text += t;
  });
  return { text: text + ' }', kind, set, elems };
}

/**
 * The lines for `items`: every delete first (del, replace), then every add (add, replace; one
 * already expired is not added), one line per set of up to `perLine` elements.
 */
export function buildLines(table: string, items: Pending[], nowMs: number, perLine: number): NftLine[] {
  const dels = new Map<string, Pending[]>();
  const adds = new Map<string, Pending[]>();
  for (const it of items) {
    if (it.op !== 'add') (dels.get(it.set) ?? dels.set(it.set, []).get(it.set)!).push(it);
    if (it.op !== 'del' && Math.ceil((it.untilMs - nowMs) / 1000) >= 1) (adds.get(it.set) ?? adds.set(it.set, []).get(it.set)!).push(it);
  }
  const out: NftLine[] = [];
  for (const [kind, bySet] of [['del', dels], ['add', adds]] as const) {
    for (const [set, list] of bySet) {
      for (let i = 0; i < list.length; i += perLine) out.push(line(table, kind, set, list.slice(i, i + perLine), nowMs));
    }
  }
  return out;
}

/**
 * What to do after nft refused `failed` with its error's carets at columns [caretStart, caretEnd)
 * (undefined when it showed none): `refused` is the element the error points at (a delete of it
 * failed because it is gone, which is what was wanted; an add of it is refused), `retry` the rest
 * to send again — in halves when no element is pointed at, and for a delete line with its adds
 * again (they ran while the element was still there, which keeps the old expiry).
 */
export function afterFailure(failed: NftLine, caretStart: number | undefined, caretEnd: number | undefined): { refused: LineElem[]; retry: Pending[][] } {
  const hit = caretStart === undefined ? undefined : failed.elems.find((e) => caretStart < e.end && (caretEnd ?? caretStart + 1) > e.start);
  if (failed.elems.length === 1) return { refused: failed.elems, retry: [] };
  if (hit) return { refused: [hit], retry: [failed.elems.filter((e) => e !== hit).map((e) => e.item)] };
  const half = Math.ceil(failed.elems.length / 2);
  return { refused: [], retry: [failed.elems.slice(0, half).map((e) => e.item), failed.elems.slice(half).map((e) => e.item)] };
}

/** The lines that resend `items` of a failed line of `kind`. */
export function retryLines(table: string, kind: 'add' | 'del', set: string, items: Pending[], nowMs: number): NftLine[] {
  const out = [line(table, kind, set, items, nowMs)];
  if (kind === 'del') {
    const readd = items.filter((it) => it.op === 'replace' && Math.ceil((it.untilMs - nowMs) / 1000) >= 1);
    if (readd.length > 0) out.push(line(table, 'add', set, readd, nowMs));
  }
  return out;
}
