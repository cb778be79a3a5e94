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
 * Up to 31 phrase sets in one automaton: one walk over a value gives a bit mask of the sets with
 * a phrase in it. Rules whose patterns share a transformation chain share one walk per value this
 * way instead of each walking its own prefilter.
 */
export class PhraseSetMatcher {
  static readonly MAX_SETS = 31;
  /** delta[state + byte] → next state, states premultiplied by 256 */
  private readonly delta: Int32Array;
  /** per state (index state >> 8): the sets with a phrase ending there, failure chain folded in */
  private readonly outMask: Int32Array;
  readonly sets: number;

  constructor(sets: ReadonlyArray<Iterable<string>>) {
    if (sets.length > PhraseSetMatcher.MAX_SETS) throw new Error(`PhraseSetMatcher takes at most ${PhraseSetMatcher.MAX_SETS} sets`);
    this.sets = sets.length;
    const gotoRows: Array<Map<number, number>> = [new Map()];
    const ends: number[] = [0];
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
            ends.push(0);
            gotoRows[s].set(b, nx);
          }
          s = nx;
        }
        ends[s] |= 1 << id;
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
      ends[s] |= ends[fail[s]]; // fail[s] is nearer the root: already complete
      for (let b = 0; b < 256; b++) {
        const nx = gotoRows[s].get(b);
        if (nx !== undefined) {
          fail[nx] = delta[fail[s] * 256 + b];
          delta[s * 256 + b] = nx;
          queue.push(nx);
        } else delta[s * 256 + b] = delta[fail[s] * 256 + b];
      }
    }
    for (let i = 0; i < delta.length; i++) delta[i] <<= 8;
    this.delta = delta;
    this.outMask = Int32Array.from(ends);
  }

  /** Bit id is set when set id has a phrase in s (ASCII case-insensitive). */
  scan(s: string): number {
    const delta = this.delta;
    const outMask = this.outMask;
    let st = 0;
    let mask = 0;
    for (let i = 0; i < s.length; i++) {
      let b = s.charCodeAt(i) & 0xff;
      if (b >= 0x41 && b <= 0x5a) b += 0x20;
      st = delta[st + b];
      mask |= outMask[st >> 8];
    }
    return mask;
  }
}
