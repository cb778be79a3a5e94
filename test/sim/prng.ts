// A tiny seeded PRNG (splitmix32 for seeding, xorshift128 for the stream). Nothing in the
// simulator may use Math.random or the wall clock: the seed alone decides every choice.
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next(); this.b = next(); this.c = next(); this.d = next() | 1;
  }

  /** uniform in [0, 2^32) */
  u32(): number {
    const t = this.a ^ (this.a << 11);
    this.a = this.b; this.b = this.c; this.c = this.d;
    this.d = (this.d ^ (this.d >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return this.d;
  }
  /** uniform in [0, 1) */
  float(): number { return this.u32() / 4294967296; }
  /** uniform integer in [lo, hi] */
  int(lo: number, hi: number): number { return lo + Math.floor(this.float() * (hi - lo + 1)); }
  chance(p: number): boolean { return this.float() < p; }
  pick<T>(xs: readonly T[]): T { return xs[Math.floor(this.float() * xs.length)]; }
  /** a fresh, independent generator (so adding a draw in one place does not shift another) */
  fork(): Prng { return new Prng(this.u32()); }
}
