// Required literals of a translated pattern: a set of strings at least one of which every match
// contains (lower-cased), in the manner of RE2's prefilter. A value that contains none of them
// cannot match, so the regex is not run; most benign values are settled by one Aho–Corasick walk.

interface Info {
  /** every string the node can match, when that set is small and known */
  exact: Set<string> | null;
  /** one of these occurs in every match (null: nothing known) */
  any: Set<string> | null;
}

const MAX_SET = 256;
const UNKNOWN: Info = { exact: null, any: null };

function score(s: Set<string> | null): number {
  if (s === null || s.size === 0) return -1;
  let min = Infinity;
  for (const x of s) min = Math.min(min, x.length);
  if (min === 0) return -1;
  return min * 4 - Math.log2(s.size);
}

function best(a: Set<string> | null, b: Set<string> | null): Set<string> | null {
  return score(a) >= score(b) ? (score(a) < 0 ? null : a) : b;
}

function asAny(i: Info): Set<string> | null {
  return best(i.exact, i.any);
}

function concat(a: Info, b: Info): Info {
  if (a.exact && b.exact && a.exact.size * b.exact.size <= MAX_SET) {
    const out = new Set<string>();
    for (const x of a.exact) for (const y of b.exact) out.add(x + y);
    return { exact: out, any: null };
  }
  return { exact: null, any: best(asAny(a), asAny(b)) };
}

function alternate(list: Info[]): Info {
  if (list.every((i) => i.exact) && list.reduce((n, i) => n + i.exact!.size, 0) <= MAX_SET) {
    const out = new Set<string>();
    for (const i of list) for (const x of i.exact!) out.add(x);
    return { exact: out, any: null };
  }
  const out = new Set<string>();
  for (const i of list) {
    const s = asAny(i);
    if (s === null) return UNKNOWN;
    for (const x of s) out.add(x);
  }
  return { exact: null, any: out.size > 4096 ? null : out };
}

/** Parses the JS source our translator produced (no lookarounds expected; those return UNKNOWN). */
export function requiredLiterals(source: string): string[] | null {
  let i = 0;
  const n = source.length;

  const readEscapeChar = (): string | null => {
    // i points past the backslash; returns a literal char or null for a class escape
    const c = source[i++];
    if (c === 'x') { const h = source.substr(i, 2); i += 2; return String.fromCharCode(parseInt(h, 16)); }
    if (c === 'u') { const h = source.substr(i, 4); i += 4; return String.fromCharCode(parseInt(h, 16)); }
    if (c === 'n') return '\n';
    if (c === 'r') return '\r';
    if (c === 't') return '\t';
    if (c === 'f') return '\f';
    if (c === 'v') return '\v';
    if (/[dDwWsSbB]/.test(c)) return null;
    return c;
  };

  const parseClass = (): Info => {
    // i points past '['
    let neg = false;
    if (source[i] === '^') { neg = true; i++; }
    const chars = new Set<string>();
    let complex = false;
    let first = true;
    while (i < n && (source[i] !== ']' || first)) {
      first = false;
      let c: string | null;
      if (source[i] === '\\') { i++; c = readEscapeChar(); } else c = source[i++];
      if (c === null) { complex = true; continue; }
      if (source[i] === '-' && source[i + 1] !== ']') { complex = true; i++; if (source[i] === '\\') { i++; readEscapeChar(); } else i++; continue; }
      chars.add(c.toLowerCase());
    }
    i++;
    if (neg || complex || chars.size !== 1) return UNKNOWN;
    return { exact: new Set(chars), any: null };
  };

  const parseAlt = (): Info => {
    const alts: Info[] = [parseSeq()];
    while (source[i] === '|') { i++; alts.push(parseSeq()); }
    return alternate(alts);
  };

  const parseSeq = (): Info => {
    let acc: Info = { exact: new Set(['']), any: null };
    while (i < n && source[i] !== '|' && source[i] !== ')') {
      let atom: Info;
      const c = source[i];
      if (c === '(') {
        i++;
        let look = false;
        if (source[i] === '?') {
          if (source[i + 1] === ':') i += 2;
          else { look = true; i += source[i + 1] === '<' ? 3 : 2; }
        }
        const inner = parseAlt();
        i++; // ')'
        atom = look ? { exact: new Set(['']), any: null } : inner;
      } else if (c === '[') { i++; atom = parseClass(); }
      else if (c === '\\') {
        i++;
        const ch = readEscapeChar();
        atom = ch === null ? (/[bB]/.test(source[i - 1]) ? { exact: new Set(['']), any: null } : UNKNOWN) : { exact: new Set([ch.toLowerCase()]), any: null };
      } else if (c === '^' || c === '$') { i++; atom = { exact: new Set(['']), any: null }; }
      else if (c === '.') { i++; atom = UNKNOWN; }
      else { i++; atom = { exact: new Set([c.toLowerCase()]), any: null }; }
      // quantifier
      let min = 1;
      let max = 1;
      const q = source[i];
      if (q === '*' || q === '+' || q === '?') {
        i++;
        min = q === '+' ? 1 : 0;
        max = q === '?' ? 1 : Infinity;
      } else if (q === '{') {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(i));
        if (m) {
          i += m[0].length;
          min = Number(m[1]);
          max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
        }
      }
      if (source[i] === '?') i++; // lazy
      if (min === 0) {
        atom = max === 1 && atom.exact ? { exact: new Set([...atom.exact, '']), any: null } : { exact: null, any: null };
        if (atom.exact && atom.exact.size > MAX_SET) atom = UNKNOWN;
      } else if (max !== 1) {
        atom = { exact: null, any: asAny(atom) };
      }
      acc = concat(acc, atom);
    }
    return acc;
  };

  try {
    const root = parseAlt();
    if (i !== n) return null;
    const s = asAny(root);
    if (s === null) return null;
    for (const x of s) if (x.length === 0) return null;
    return [...s];
  } catch {
    return null;
  }
}
