// ModSecurity operators the Core Rule Set uses on request data. Each compiles to a function of
// the (transformed) value that returns the matched data and captures, or null.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { PhraseMatcher } from './pm.js';
import { compilePcre, type RegexMode } from './regex.js';
import { requiredLiterals } from './prefilter.js';
import type { Libinjection } from './libinjection.js';

export interface OpMatch {
  /** what matched (TX.0 with `capture`) */
  data: string;
  /** TX.1 … TX.9 with `capture` */
  groups?: string[];
}

export type OpFn = (value: string) => OpMatch | null;

export interface CompiledOperator {
  fn: OpFn;
  /** how @rx runs: fallback, linear, linear-widened, backtracking-capped; other operators: 'native' */
  engine: string;
  relaxed: boolean;
  /** @rx with required literals checked first */
  prefiltered?: boolean;
  /** @rx with a prefilter, @pm: the literals (one of which every match contains) and the operator without its own prefilter */
  literals?: readonly string[];
  bare?: OpFn;
}

/** Operators that need data a log line does not carry. */
export const UNEVALUABLE_OPERATORS = new Set(['rbl', 'geolookup', 'inspectfile', 'fuzzyhash', 'verifycc', 'verifyssn', 'verifycpf']);

/** Leading integer of s (after white space, with sign), else 0: what ModSecurity's numeric operators compare. */
function toInt(s: string): number {
  const n = parseInt(s, 10);
  return Number.isNaN(n) ? 0 : n;
}

function parseByteRanges(arg: string): Uint8Array {
  const ok = new Uint8Array(256);
  for (const part of arg.split(',')) {
    const t = part.trim();
    if (t === '') continue;
    const [a, b] = t.split('-').map((x) => parseInt(x, 10));
    for (let c = a; c <= (b ?? a) && c < 256; c++) ok[c] = 1;
  }
  return ok;
}

/** Dotted quad → 32-bit integer, or -1 when s is not one. */
function ipv4ToInt(ip: string): number {
  let acc = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || ++dots > 3) return -1;
      acc = acc * 256 + octet;
      octet = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39 && digits < 3) {
      octet = octet * 10 + (c - 0x30);
      if (octet > 255) return -1;
      digits++;
    } else return -1;
  }
  if (digits === 0 || dots !== 3) return -1;
  return acc * 256 + octet;
}

/** An IPv6 address as a 128-bit integer (embedded IPv4 and zone ids handled), or null. */
export function ipv6ToBigInt(ip: string): bigint | null {
  const pct = ip.indexOf('%');
  const a = pct >= 0 ? ip.slice(0, pct) : ip;
  if (isIP(a) !== 6) return null;
  let groups: string[];
  const dbl = a.indexOf('::');
  const words = (s: string): string[] => {
    if (s === '') return [];
    const parts = s.split(':');
    const last = parts[parts.length - 1];
    if (last.includes('.')) {
      const v4 = ipv4ToInt(last);
      parts.splice(parts.length - 1, 1, (v4 >>> 16).toString(16), (v4 & 0xffff).toString(16));
    }
    return parts;
  };
  if (dbl >= 0) {
    const head = words(a.slice(0, dbl));
    const tail = words(a.slice(dbl + 2));
    groups = [...head, ...Array<string>(8 - head.length - tail.length).fill('0'), ...tail];
  } else groups = words(a);
  if (groups.length !== 8) return null;
  let x = 0n;
  for (const g of groups) x = (x << 16n) | BigInt(parseInt(g, 16));
  return x;
}

function ipMatcher(arg: string): OpFn {
  const v4: Array<[number, number]> = [];
  const v6: Array<[bigint, bigint]> = [];
  const ALL = (1n << 128n) - 1n;
  for (const raw of arg.split(/[,\s]+/)) {
    if (raw === '') continue;
    const [addr, bits] = raw.split('/');
    if (isIP(addr) === 4) {
      const b = bits === undefined ? 32 : Number(bits);
      const mask = b === 0 ? 0 : (~0 << (32 - b)) >>> 0;
      v4.push([(ipv4ToInt(addr) & mask) >>> 0, mask]);
    } else {
      const x = ipv6ToBigInt(addr);
      if (x === null) continue;
      const b = bits === undefined ? 128 : Number(bits);
      const mask = b <= 0 ? 0n : (ALL << BigInt(128 - Math.min(b, 128))) & ALL;
      v6.push([x & mask, mask]);
    }
  }
  return (value) => {
    const x = ipv4ToInt(value);
    if (x >= 0) {
      for (const [net, mask] of v4) if (((x & mask) >>> 0) === net) return { data: value };
    } else if (v6.length > 0) {
      const x = ipv6ToBigInt(value);
      if (x !== null) for (const [net, mask] of v6) if ((x & mask) === net) return { data: value };
    }
    return null;
  };
}

function validateUtf8(s: string): boolean {
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const b = s.charCodeAt(i);
    if (b < 0x80) continue;
    let len: number;
    if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) len = 3;
    else if (b >= 0xf0 && b <= 0xf4) len = 4;
    else return false;
    if (i + len > n) return false;
    for (let k = 1; k < len; k++) if ((s.charCodeAt(i + k) & 0xc0) !== 0x80) return false;
    i += len - 1;
  }
  return true;
}

const pmFileCache = new Map<string, string[]>();

function readPhraseFile(rulesDir: string, name: string): string[] {
  const path = name.startsWith('/') ? name : join(rulesDir, name);
  let list = pmFileCache.get(path);
  if (list === undefined) {
    list = readFileSync(path, 'latin1').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    pmFileCache.set(path, list);
  }
  return list;
}

export interface OperatorOptions {
  rulesDir: string;
  /** input bytes a backtracking regex may see (patterns the linear engine refuses) */
  backtrackCapBytes: number;
  regexMode: RegexMode;
  /** @detectSQLi / @detectXSS run on it; without it they cannot be compiled */
  libinjection?: Libinjection | null;
}

/** Operators that run in libinjection. */
export const LIBINJECTION_OPERATORS = new Set(['detectsqli', 'detectxss']);

/** Compiles an operator whose argument has had its macros expanded. */
export function compileOperator(name: string, arg: string, opts: OperatorOptions): CompiledOperator {
  const native = (fn: OpFn): CompiledOperator => ({ fn, engine: 'native', relaxed: false });
  switch (name.toLowerCase()) {
    case 'rx': {
      const info = compilePcre(arg, opts.backtrackCapBytes, opts.regexMode);
      const re = info.re;
      const cap = info.cap;
      const lits = requiredLiterals(info.source);
      const pre = lits === null ? null : new PhraseMatcher(lits);
      const bare: OpFn = (value) => {
        const m = re.exec(value.length > cap ? value.slice(0, cap) : value);
        if (m === null) return null;
        return { data: m[0], groups: m.length > 1 ? m.slice(1, 10).map((g) => g ?? '') : undefined };
      };
      const fn: OpFn = pre === null ? bare : (value) => {
        // a literal found only past the cap lets the regex run on the cut value: a superset, never a miss
        if (pre.find(value.length > cap ? value.slice(0, cap) : value) === null) return null;
        return bare(value);
      };
      return { fn, engine: info.engine, relaxed: info.relaxed, prefiltered: pre !== null, literals: lits ?? undefined, bare: pre === null ? undefined : bare };
    }
    case 'pm':
    case 'pmf':
    case 'pmfromfile': {
      const phrases = name.toLowerCase() === 'pm'
        ? arg.split(/\s+/).filter((p) => p !== '')
        : arg.split(/\s+/).filter((p) => p !== '').flatMap((f) => readPhraseFile(opts.rulesDir, f));
      const m = new PhraseMatcher(phrases);
      const fn: OpFn = (value) => {
        const hit = m.find(value);
        return hit === null ? null : { data: hit };
      };
      return { fn, engine: 'native', relaxed: false, literals: m.phrases, bare: fn };
    }
    case 'beginswith': return native((v) => (v.startsWith(arg) ? { data: arg } : null));
    case 'endswith': return native((v) => (v.endsWith(arg) ? { data: arg } : null));
    case 'contains': return native((v) => (v.includes(arg) ? { data: arg } : null));
    case 'containsword': {
      const word = /\w/;
      return native((v) => {
        if (arg === '') return { data: '' };
        for (let i = v.indexOf(arg); i >= 0; i = v.indexOf(arg, i + 1)) {
          const before = i === 0 ? '' : v[i - 1];
          const after = v[i + arg.length] ?? '';
          if (!word.test(before) && !word.test(after)) return { data: arg };
        }
        return null;
      });
    }
    case 'streq': return native((v) => (v === arg ? { data: v } : null));
    case 'within': return native((v) => (v !== '' && arg.includes(v) ? { data: v } : null));
    case 'eq': { const n = toInt(arg); return native((v) => (toInt(v) === n ? { data: v } : null)); }
    case 'ge': { const n = toInt(arg); return native((v) => (toInt(v) >= n ? { data: v } : null)); }
    case 'gt': { const n = toInt(arg); return native((v) => (toInt(v) > n ? { data: v } : null)); }
    case 'lt': { const n = toInt(arg); return native((v) => (toInt(v) < n ? { data: v } : null)); }
    case 'le': { const n = toInt(arg); return native((v) => (toInt(v) <= n ? { data: v } : null)); }
    case 'ipmatch': return native(ipMatcher(arg));
    case 'validatebyterange': {
      const ok = parseByteRanges(arg);
      return native((v) => {
        for (let i = 0; i < v.length; i++) if (!ok[v.charCodeAt(i) & 0xff]) return { data: v[i] };
        return null;
      });
    }
    case 'validateurlencoding':
      return native((v) => {
        for (let i = v.indexOf('%'); i >= 0; i = v.indexOf('%', i + 1)) {
          if (!/^[0-9a-fA-F]{2}$/.test(v.substr(i + 1, 2))) return { data: v.substr(i, 3) };
        }
        return null;
      });
    case 'validateutf8encoding': return native((v) => (validateUtf8(v) ? null : { data: v }));
    // as ModSecurity: with `capture`, TX.0 is the fingerprint (SQLi) or the whole value (XSS)
    case 'detectsqli': {
      const li = opts.libinjection;
      if (!li) throw new Error('@detectSQLi needs libinjection');
      return native((v) => { const fp = li.sqli(v); return fp === null ? null : { data: fp }; });
    }
    case 'detectxss': {
      const li = opts.libinjection;
      if (!li) throw new Error('@detectXSS needs libinjection');
      return native((v) => (li.xss(v) ? { data: v } : null));
    }
    case 'unconditionalmatch': return native((v) => ({ data: v }));
    case 'nomatch': return native(() => null);
    default:
      throw new Error(`operator @${name} is not supported`);
  }
}
