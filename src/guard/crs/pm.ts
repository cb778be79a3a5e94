// Aho–Corasick automaton for @pm / @pmFromFile: ASCII case-insensitive phrase search over byte
// strings, answering only "is any phrase present" (and which). Hand-written rather than taken from
// npm: the libraries there collect every match into arrays of objects per call, where a guard needs
// a dense transition table walked once per value with no allocation.

/**
 * The DFA of an Aho–Corasick automaton over folded phrases. `label(phrase index)` gives each end
 * state its value; `merge(state value, value along the failure link)` folds the failure chain in,
 * so every state carries what ends there or at any suffix of it.
 * Its columns are byte classes, not bytes: one per byte that occurs in a phrase, one for all the
 * others (they all lead where a mismatch leads), `width` of them per row, unpadded; its cells are
 * 16-bit while the states fit (CRS's largest set has 17,438), so CRS's sets take 6 MB where
 * 256-wide 32-bit rows took 67 MB. `cls[input byte]` folds ASCII A–Z to a–z as well.
 */
function buildDfa(list: readonly string[], label: (p: number) => number, merge: (own: number, viaFail: number) => number, none: number): { delta: Uint16Array | Int32Array; out: Int32Array; cls: Uint16Array; width: number } {
  const classOf = new Int32Array(256); // phrase byte → its class (0: in no phrase)
  let classes = 1;
  for (const p of list) for (let i = 0; i < p.length; i++) { const b = p.charCodeAt(i) & 0xff; if (classOf[b] === 0) classOf[b] = classes++; }
  const width = classes;
  // an input byte's class: that of the byte it folds to (a phrase byte in A–Z, which no input folds to, is never reached, as before)
  const cls = new Uint16Array(256);
  for (let b = 0; b < 256; b++) cls[b] = classOf[b >= 0x41 && b <= 0x5a ? b + 0x20 : b];
  const gotoRows: Array<Map<number, number>> = [new Map()];
  const outList: number[] = [none];
  for (let p = 0; p < list.length; p++) {
    let s = 0;
    for (let i = 0; i < list[p].length; i++) {
      const c = classOf[list[p].charCodeAt(i) & 0xff];
      let nx = gotoRows[s].get(c);
      if (nx === undefined) {
        nx = gotoRows.length;
        gotoRows.push(new Map());
        outList.push(none);
        gotoRows[s].set(c, nx);
      }
      s = nx;
    }
    outList[s] = merge(outList[s], label(p));
  }
  const states = gotoRows.length;
  const delta = states <= 0x10000 ? new Uint16Array(states * width) : new Int32Array(states * width);
  const fail = new Int32Array(states);
  const out = Int32Array.from(outList);
  const queue: number[] = [];
  for (let c = 0; c < classes; c++) {
    const nx = gotoRows[0].get(c);
    if (nx !== undefined) { delta[c] = nx; queue.push(nx); }
  }
  for (let qi = 0; qi < queue.length; qi++) {
    const s = queue[qi];
    out[s] = merge(out[s], out[fail[s]]); // fail[s] is nearer the root: already complete
    for (let c = 0; c < classes; c++) {
      const nx = gotoRows[s].get(c);
      if (nx !== undefined) {
        fail[nx] = delta[fail[s] * width + c];
        delta[s * width + c] = nx;
        queue.push(nx);
      } else delta[s * width + c] = delta[fail[s] * width + c];
    }
  }
  return { delta, out, cls, width };
}

export class PhraseMatcher {
  /** delta[state * width + cls[byte]] → next state (a full DFA: failure links are folded in) */
  private readonly delta: Uint16Array | Int32Array;
  private readonly cls: Uint16Array;
  private readonly width: number;
  /** for each state the index of a phrase that ends there (or via its failure chain), else -1 */
  private readonly out: Int32Array;
  readonly phrases: readonly string[];

  constructor(phrases: Iterable<string>) {
    const list = [...new Set([...phrases].map((p) => fold(p)).filter((p) => p.length > 0))];
    this.phrases = list;
    const { delta, out, cls, width } = buildDfa(list, (p) => p, (own, via) => (own >= 0 ? own : via), -1);
    this.delta = delta;
    this.out = out;
    this.cls = cls;
    this.width = width;
  }

  /** The first phrase found in s (ASCII case-insensitive), or null. */
  find(s: string): string | null {
    const delta = this.delta;
    const out = this.out;
    const cls = this.cls;
    const width = this.width;
    let st = 0;
    for (let i = 0; i < s.length; i++) {
      st = delta[st * width + cls[s.charCodeAt(i) & 0xff]];
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
  /** delta[state * width + cls[byte]] → next state */
  private readonly delta: Uint16Array | Int32Array;
  /** per state: the sets with a phrase ending there, failure chain folded in */
  private readonly outMask: Int32Array;
  private readonly cls: Uint16Array;
  private readonly width: number;
  readonly sets: number;

  constructor(sets: ReadonlyArray<Iterable<string>>) {
    if (sets.length > PhraseSetMatcher.MAX_SETS) throw new Error(`PhraseSetMatcher takes at most ${PhraseSetMatcher.MAX_SETS} sets`);
    this.sets = sets.length;
    const list: string[] = [];
    const owner: number[] = [];
    sets.forEach((phrases, id) => {
      for (const p of phrases) { const f = fold(p); if (f.length > 0) { list.push(f); owner.push(id); } }
    });
    const { delta, out, cls, width } = buildDfa(list, (p) => 1 << owner[p], (own, via) => own | via, 0);
    this.delta = delta;
    this.outMask = out;
    this.cls = cls;
    this.width = width;
  }

  /** Bit id is set when set id has a phrase in s (ASCII case-insensitive). */
  scan(s: string): number {
    const delta = this.delta;
    const outMask = this.outMask;
    const cls = this.cls;
    const width = this.width;
    let st = 0;
    let mask = 0;
    for (let i = 0; i < s.length; i++) {
      st = delta[st * width + cls[s.charCodeAt(i) & 0xff]];
      mask |= outMask[st];
    }
    return mask;
  }
}
