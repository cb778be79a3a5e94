// Aho–Corasick automaton for @pm / @pmFromFile: ASCII case-insensitive phrase search over byte
// strings, answering only "is any phrase present" (and which). Hand-written rather than taken from
// npm: the libraries there collect every match into arrays of objects per call, where a guard needs
// a dense 256-wide transition table walked once per value with no allocation.

export class PhraseMatcher {
  /** delta[state * 256 + byte] → next state (a full DFA: failure links are folded in) */
  private readonly delta: Int32Array;
  /** for each state the index of a phrase that ends there (or via its failure chain), else -1 */
  private readonly out: Int32Array;
  readonly phrases: readonly string[];

  constructor(phrases: Iterable<string>) {
    const list = [...new Set([...phrases].map((p) => fold(p)).filter((p) => p.length > 0))];
    this.phrases = list;
    const gotoRows: Array<Map<number, number>> = [new Map()];
    const outList: number[] = [-1];
    for (let p = 0; p < list.length; p++) {
      let s = 0;
      for (let i = 0; i < list[p].length; i++) {
        const b = list[p].charCodeAt(i) & 0xff;
        let nx = gotoRows[s].get(b);
        if (nx === undefined) {
          nx = gotoRows.length;
          gotoRows.push(new Map());
          outList.push(-1);
          gotoRows[s].set(b, nx);
        }
        s = nx;
      }
      if (outList[s] < 0) outList[s] = p;
    }
    const states = gotoRows.length;
    const delta = new Int32Array(states * 256);
    const fail = new Int32Array(states);
    const out = Int32Array.from(outList);
    const queue: number[] = [];
    for (let b = 0; b < 256; b++) {
      const nx = gotoRows[0].get(b);
      if (nx !== undefined) { delta[b] = nx; fail[nx] = 0; queue.push(nx); } else delta[b] = 0;
    }
    for (let qi = 0; qi < queue.length; qi++) {
      const s = queue[qi];
      if (out[s] < 0 && out[fail[s]] >= 0) out[s] = out[fail[s]];
      for (let b = 0; b < 256; b++) {
        const nx = gotoRows[s].get(b);
        if (nx !== undefined) {
          fail[nx] = delta[fail[s] * 256 + b];
          delta[s * 256 + b] = nx;
          queue.push(nx);
        } else {
          delta[s * 256 + b] = delta[fail[s] * 256 + b];
        }
      }
    }
    this.delta = delta;
    this.out = out;
  }

  /** The first phrase found in s (ASCII case-insensitive), or null. */
  find(s: string): string | null {
    const delta = this.delta;
    const out = this.out;
    let st = 0;
    for (let i = 0; i < s.length; i++) {
      let b = s.charCodeAt(i) & 0xff;
      if (b >= 0x41 && b <= 0x5a) b += 0x20;
      st = delta[st * 256 + b];
      if (out[st] >= 0) return this.phrases[out[st]];
    }
    return null;
  }
}

function fold(p: string): string {
  return p.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/**
 * Several phrase sets in one automaton: one walk over a value says which sets have a phrase in it.
 * Rules whose regexes share a transformation chain share one walk per value this way instead of
 * walking their own prefilter each.
 */
export class PhraseSetMatcher {
  private readonly delta: Int32Array;
  /** outIds[outStart[s] .. outStart[s + 1]) are the sets with a phrase ending at state s (failure chain folded in) */
  private readonly outStart: Int32Array;
  private readonly outIds: Int32Array;
  readonly sets: number;

  constructor(sets: ReadonlyArray<Iterable<string>>) {
    this.sets = sets.length;
    const gotoRows: Array<Map<number, number>> = [new Map()];
    const ends: Array<Set<number>> = [new Set()];
    sets.forEach((phrases, id) => {
      for (const raw of phrases) {
        const p = fold(raw);
        if (p.length === 0) continue;
        let s = 0;
        for (let i = 0; i < p.length; i++) {
          const b = p.charCodeAt(i) & 0xff;
          let nx = gotoRows[s].get(b);
          if (nx === undefined) {
            nx = gotoRows.length;
            gotoRows.push(new Map());
            ends.push(new Set());
            gotoRows[s].set(b, nx);
          }
          s = nx;
        }
        ends[s].add(id);
      }
    });
    const states = gotoRows.length;
    const delta = new Int32Array(states * 256);
    const fail = new Int32Array(states);
    const queue: number[] = [];
    for (let b = 0; b < 256; b++) {
      const nx = gotoRows[0].get(b);
      if (nx !== undefined) { delta[b] = nx; queue.push(nx); }
    }
    for (let qi = 0; qi < queue.length; qi++) {
      const s = queue[qi];
      for (const id of ends[fail[s]]) ends[s].add(id); // fail[s] is nearer the root: already complete
      for (let b = 0; b < 256; b++) {
        const nx = gotoRows[s].get(b);
        if (nx !== undefined) {
          fail[nx] = delta[fail[s] * 256 + b];
          delta[s * 256 + b] = nx;
          queue.push(nx);
        } else delta[s * 256 + b] = delta[fail[s] * 256 + b];
      }
    }
    const outStart = new Int32Array(states + 1);
    const ids: number[] = [];
    for (let s = 0; s < states; s++) {
      outStart[s] = ids.length;
      for (const id of ends[s]) ids.push(id);
    }
    outStart[states] = ids.length;
    this.delta = delta;
    this.outStart = outStart;
    this.outIds = Int32Array.from(ids);
  }

  /** Which sets have a phrase in s (ASCII case-insensitive): hits[id] === 1. */
  scan(s: string): Uint8Array {
    const hits = new Uint8Array(this.sets);
    const delta = this.delta;
    const outStart = this.outStart;
    const outIds = this.outIds;
    let st = 0;
    for (let i = 0; i < s.length; i++) {
      let b = s.charCodeAt(i) & 0xff;
      if (b >= 0x41 && b <= 0x5a) b += 0x20;
      st = delta[st * 256 + b];
      const a = outStart[st];
      const e = outStart[st + 1];
      for (let k = a; k < e; k++) hits[outIds[k]] = 1;
    }
    return hits;
  }
}
