// The CRS phrase matchers (@pm) against a plain search: same answers on random values, with
// ASCII case folding, bytes in no phrase, and characters past 0xff (matched by their low byte).
import { describe, expect, it } from 'vitest';
import { PhraseMatcher, PhraseSetMatcher } from '../src/guard/crs/pm.js';
import { rng } from './helpers/nemesis.js';

const ALPHABET = 'abcABC/<>=\'" -_.%0\u0141\u0161\u00e9';
const lowByte = (s: string): string => Array.from(s, (ch) => String.fromCharCode(ch.charCodeAt(0) & 0xff)).join('');
const fold = (s: string): string => lowByte(s).replace(/[A-Z]/g, (c) => c.toLowerCase());
/** a phrase as the matchers look for it: its low bytes, A–Z folded (one from a character past 0xff then matches nothing) */
const needle = (phrase: string): string => lowByte(phrase.replace(/[A-Z]/g, (c) => c.toLowerCase()));

/**
 * Both matchers built from `sets` answer each value as the plain search does. Checked by hand, a
 * message built only for a mismatch: this runs about a million times in the byte-by-byte case.
 */
function agree(sets: string[][], values: Iterable<string>): void {
  const all = new PhraseMatcher(sets.flat());
  const many = new PhraseSetMatcher(sets);
  const needles = sets.map((set) => set.map(needle).filter((p) => p.length > 0));
  for (const value of values) {
    const folded = fold(value);
    const want = needles.map((set) => set.some((p) => folded.includes(p)));
    const found = all.find(value);
    if ((found !== null) !== want.some(Boolean)) expect.fail(`${JSON.stringify(sets)} in ${JSON.stringify(value)}: found ${JSON.stringify(found)}`);
    if (found !== null && !folded.includes(lowByte(found))) expect.fail(`found ${JSON.stringify(found)}, not in ${JSON.stringify(value)}`);
    const mask = many.scan(value);
    for (let i = 0; i < want.length; i++) {
      if ((((mask >>> i) & 1) === 1) !== want[i]) expect.fail(`set ${i} ${JSON.stringify(sets[i])} in ${JSON.stringify(value)}: scan says ${want[i] ? 'absent' : 'present'}`);
    }
  }
}

/** `rounds` random groups of 1–5 sets of 1–`phrasesMax` phrases of 1–`phraseMax` characters, each against 200 values */
function randomRounds(seed: number, chars: readonly string[], o: { rounds: number; phrasesMax: number; phraseMax: number; value: (r: () => number, sets: string[][]) => string }): void {
  const r = rng(seed);
  const pick = (): string => chars[Math.floor(r() * chars.length)];
  const word = (): string => Array.from({ length: 1 + Math.floor(r() * o.phraseMax) }, pick).join('');
  for (let round = 0; round < o.rounds; round++) {
    const sets = Array.from({ length: 1 + Math.floor(r() * 5) }, () => Array.from({ length: 1 + Math.floor(r() * o.phrasesMax) }, word));
    agree(sets, Array.from({ length: 200 }, () => o.value(r, sets)));
  }
}

describe('CRS phrase matchers', () => {
  it('find the same phrases as a plain search on random values', () => {
    const chars = [...ALPHABET];
    randomRounds(7, chars, { rounds: 40, phrasesMax: 8, phraseMax: 4, value: (r) => Array.from({ length: Math.floor(r() * 31) }, () => chars[Math.floor(r() * chars.length)]).join('') });
  });

  it('every byte value, in a phrase and in a value, and characters past 0xff whose low byte is each ASCII letter', () => {
    // every byte 0x00–0xff, and U+0141–015A, U+0161–017A: low bytes A–Z and a–z
    const chars = [...Array.from({ length: 256 }, (_, b) => String.fromCharCode(b)), ...Array.from({ length: 26 }, (_, i) => String.fromCharCode(0x141 + i, 0x161 + i)).join('')];
    // one-byte phrases: every value character against every phrase character
    for (const ph of chars) agree([[ph], ['zz']], chars);
    // longer phrases over the whole range, so the classes of many bytes share one automaton; values
    // mostly of the phrases' own characters, so matches occur
    randomRounds(11, chars, {
      rounds: 40, phrasesMax: 40, phraseMax: 3,
      value: (r, sets) => {
        const pool = sets.flat().join('');
        return Array.from({ length: Math.floor(r() * 40) }, () => (r() < 0.7 ? pool[Math.floor(r() * pool.length)] : chars[Math.floor(r() * chars.length)])).join('');
      },
    });
  });

  it('past 65,536 states (32-bit rows), as below it (16-bit rows)', () => {
    // 6,000 random 14-letter phrases share few prefixes: ≈ 75,000 states
    const r = rng(11);
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    const word = (n: number): string => Array.from({ length: n }, () => letters[Math.floor(r() * 26)]).join('');
    const sets = [Array.from({ length: 3000 }, () => word(14)), Array.from({ length: 3000 }, () => word(14))];
    const phrases = sets.flat();
    const values = Array.from({ length: 60 }, (_, i) => i % 3 === 0 ? `${word(5)}${phrases[i * 17 % phrases.length].toUpperCase()}${word(5)}` : word(40));
    const m = new PhraseMatcher(phrases);
    expect((m as unknown as { delta: ArrayLike<number> }).delta).toBeInstanceOf(Int32Array);
    agree(sets, values);
  });
});

