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

  it('every byte value, in a phrase and in a value, and characters past 0xff whose low byte is each ASCII letter', () => {
    // every byte 0x00–0xff, and U+0100 + each letter byte: low bytes A–Z and a–z
    const chars = [...Array.from({ length: 256 }, (_, b) => String.fromCharCode(b)), ...Array.from({ length: 26 }, (_, i) => String.fromCharCode(0x141 + i, 0x161 + i)).join('')];
    // one-byte phrases: every value byte against every phrase byte
    for (const ph of chars) {
      const all = new PhraseMatcher([ph]);
      const many = new PhraseSetMatcher([[ph], ['zz']]);
      for (const v of chars) {
        const want = present(v, ph);
        expect(all.find(v) !== null, `${ph.charCodeAt(0)} in ${v.charCodeAt(0)}`).toBe(want);
        expect(many.scan(v) & 1, `${ph.charCodeAt(0)} in ${v.charCodeAt(0)}`).toBe(want ? 1 : 0);
      }
    }
    // longer phrases and values over the whole range, so the classes of many bytes share one automaton
    const r = rng(11);
    const word = (min: number, max: number): string => Array.from({ length: min + Math.floor(r() * (max - min + 1)) }, () => chars[Math.floor(r() * chars.length)]).join('');
    for (let round = 0; round < 40; round++) {
      const sets = Array.from({ length: 1 + Math.floor(r() * 5) }, () => Array.from({ length: 1 + Math.floor(r() * 40) }, () => word(1, 3)));
      const all = new PhraseMatcher(sets.flat());
      const many = new PhraseSetMatcher(sets);
      for (let v = 0; v < 200; v++) {
        // values built from the phrases' own characters and others, so matches occur
        const pool = sets.flat().join('');
        const value = Array.from({ length: Math.floor(r() * 40) }, () => (r() < 0.7 ? pool[Math.floor(r() * pool.length)] : chars[Math.floor(r() * chars.length)])).join('');
        const want = sets.map((set) => set.some((p) => present(value, p)));
        expect(all.find(value) !== null, `${JSON.stringify(sets)} in ${JSON.stringify(value)}`).toBe(want.some(Boolean));
        const mask = many.scan(value);
        want.forEach((w, i) => expect(((mask >>> i) & 1) === 1, `set ${i} in ${JSON.stringify(value)}`).toBe(w));
      }
    }
  });
});
