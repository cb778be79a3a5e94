// The CRS phrase matchers (@pm) against a plain search: same answers on random values, with
// ASCII case folding, bytes in no phrase, and characters past 0xff (matched by their low byte).
import { describe, expect, it } from 'vitest';
import { PhraseMatcher, PhraseSetMatcher } from '../src/guard/crs/pm.js';
import { rng } from './helpers/nemesis.js';

const ALPHABET = 'abcABC/<>=\'" -_.%0\u0141\u0161\u00e9';
const lowByte = (s: string): string => Array.from(s, (ch) => String.fromCharCode(ch.charCodeAt(0) & 0xff)).join('');
const fold = (s: string): string => lowByte(s).replace(/[A-Z]/g, (c) => c.toLowerCase());
/** what the matchers answer: a phrase byte in A–Z (from a character past 0xff) matches nothing */
const present = (value: string, phrase: string): boolean => {
  const p = lowByte(phrase.replace(/[A-Z]/g, (c) => c.toLowerCase()));
  return p.length > 0 && fold(value).includes(p);
};

describe('CRS phrase matchers', () => {
  it('find the same phrases as a plain search on random values', () => {
    const r = rng(7);
    const word = (min: number, max: number): string => Array.from({ length: min + Math.floor(r() * (max - min + 1)) }, () => ALPHABET[Math.floor(r() * ALPHABET.length)]).join('');
    for (let round = 0; round < 40; round++) {
      const sets = Array.from({ length: 1 + Math.floor(r() * 5) }, () => Array.from({ length: 1 + Math.floor(r() * 8) }, () => word(1, 4)));
      const all = new PhraseMatcher(sets.flat());
      const many = new PhraseSetMatcher(sets);
      for (let v = 0; v < 200; v++) {
        const value = word(0, 30);
        const want = sets.map((set) => set.some((p) => present(value, p)));
        const found = all.find(value);
        expect(found !== null, `${JSON.stringify(sets)} in ${JSON.stringify(value)}`).toBe(want.some(Boolean));
        if (found !== null) expect(fold(value).includes(lowByte(found))).toBe(true);
        const mask = many.scan(value);
        want.forEach((w, i) => expect(((mask >>> i) & 1) === 1, `set ${i} ${JSON.stringify(sets[i])} in ${JSON.stringify(value)}`).toBe(w));
      }
    }
  });
});
