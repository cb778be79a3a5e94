// PCRE (as ModSecurity compiles @rx: DOTALL | MULTILINE, byte strings, ASCII case folding) to
// JavaScript, with a bound on the time any input can take:
// - 'linear': V8's linear-time engine (the `l` flag) for every pattern it accepts;
// - 'fallback' (default, ~20× faster on ordinary input): V8's backtracking engine, which V8 itself
//   abandons for the linear engine after `BACKTRACKS_BEFORE_FALLBACK` backtracks
//   (--enable-experimental-regexp-engine-on-excessive-backtracks), so a pathological input costs
//   that many backtracks plus one linear run.
// Patterns neither accepts (lookarounds, backreferences) run on the backtracking engine over an
// input cut to `backtrackCapBytes`; `RegexInfo.engine` says which engine each pattern got.
import v8 from 'node:v8';

let linearEnabled: boolean | null = null;
export const BACKTRACKS_BEFORE_FALLBACK = 5000;

/**
 * Turns on V8's linear engine and the fall-back to it on excessive backtracking (process-wide
 * flags, visible to worker threads; safe to call any number of times).
 */
export function enableLinearEngine(): boolean {
  if (linearEnabled !== null) return linearEnabled;
  v8.setFlagsFromString('--enable-experimental-regexp-engine');
  v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
  v8.setFlagsFromString(`--regexp-backtracks-before-fallback=${BACKTRACKS_BEFORE_FALLBACK}`);
  try {
    linearEnabled = new RegExp('a+b', 'l').test('aab');
  } catch {
    linearEnabled = false;
  }
  return linearEnabled;
}

export class RegexTranslateError extends Error {
  constructor(pattern: string, message: string) {
    super(`${message} in /${pattern.slice(0, 80)}${pattern.length > 80 ? '…' : ''}/`);
    this.name = 'RegexTranslateError';
  }
}

export interface Translated {
  source: string;
  /** uses lookarounds or backreferences: the linear engine cannot run it */
  needsBacktracking: boolean;
  /** atomic groups or possessive quantifiers were relaxed to ordinary ones (matches a superset) */
  relaxed: boolean;
}

const POSIX: Record<string, string> = {
  alpha: 'A-Za-z', digit: '0-9', alnum: 'A-Za-z0-9', upper: 'A-Z', lower: 'a-z',
  space: '\\t-\\r ', blank: ' \\t', punct: '!-\\/:-@\\[-`{-~', xdigit: '0-9A-Fa-f',
  word: 'A-Za-z0-9_', cntrl: '\\x00-\\x1f\\x7f', print: ' -~', graph: '!-~',
};

const SPACE_CLASS = '\\t-\\r ';
const VSPACE_CLASS = '\\n-\\r\\x85';
const HSPACE_CLASS = '\\t \\xa0';

function hex2(code: number): string {
  return code < 0x100 ? '\\x' + code.toString(16).padStart(2, '0') : '\\u' + code.toString(16).padStart(4, '0');
}

function isLetter(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

function swapCase(c: string): string {
  return c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
}

/** Escapes one literal character for use inside or outside a class. */
function lit(c: string): string {
  const code = c.charCodeAt(0);
  if (code < 0x20 || code >= 0x7f) return hex2(code);
  return /[\\^$.*+?()[\]{}|\/-]/.test(c) ? '\\' + c : c;
}

/** The case-swapped parts of a range lo..hi (ASCII letters only), as class items. */
function foldRange(lo: number, hi: number): string {
  let out = '';
  const add = (a: number, b: number, delta: number) => {
    const s = Math.max(lo, a);
    const e = Math.min(hi, b);
    if (s <= e) out += hex2(s + delta) + '-' + hex2(e + delta);
  };
  add(0x41, 0x5a, 0x20);
  add(0x61, 0x7a, -0x20);
  return out;
}

export function translatePcre(pattern: string): Translated {
  let i = 0;
  const n = pattern.length;
  let out = '';
  let needsBacktracking = false;
  let relaxed = false;
  // case-insensitivity per open group; (?i) changes the innermost
  const ciStack: boolean[] = [false];
  const ci = () => ciStack[ciStack.length - 1];

  /** Reads one escape after a backslash at i (i points past the backslash). Returns [kind, text]. */
  const readEscape = (inClass: boolean): { code?: number; cls?: string } => {
    const c = pattern[i++];
    if (c === undefined) throw new RegexTranslateError(pattern, 'trailing backslash');
    switch (c) {
      case 'x': {
        if (pattern[i] === '{') {
          const end = pattern.indexOf('}', i);
          const code = parseInt(pattern.slice(i + 1, end), 16);
          i = end + 1;
          return { code };
        }
        let h = '';
        while (h.length < 2 && /[0-9a-fA-F]/.test(pattern[i] ?? '')) h += pattern[i++];
        return { code: h === '' ? 0 : parseInt(h, 16) };
      }
      case 'n': return { code: 10 };
      case 'r': return { code: 13 };
      case 't': return { code: 9 };
      case 'f': return { code: 12 };
      case 'e': return { code: 27 };
      case 'a': return { code: 7 };
      case '0': {
        let o = '';
        while (o.length < 2 && /[0-7]/.test(pattern[i] ?? '')) o += pattern[i++];
        return { code: o === '' ? 0 : parseInt(o, 8) };
      }
      case 's': return { cls: inClass ? SPACE_CLASS : `[${SPACE_CLASS}]` };
      case 'S': return { cls: inClass ? '\\S' : `[^${SPACE_CLASS}]` };
      case 'v': return { cls: inClass ? VSPACE_CLASS : `[${VSPACE_CLASS}]` };
      case 'V': return { cls: inClass ? '\\V' : `[^${VSPACE_CLASS}]` };
      case 'h': return { cls: inClass ? HSPACE_CLASS : `[${HSPACE_CLASS}]` };
      case 'H': return { cls: inClass ? '\\H' : `[^${HSPACE_CLASS}]` };
      case 'd': case 'D': case 'w': case 'W': return { cls: '\\' + c };
      case 'b': case 'B':
        if (inClass) return c === 'b' ? { code: 8 } : { code: 'B'.charCodeAt(0) };
        return { cls: '\\' + c };
      case 'A': return { cls: '^' };
      case 'z': case 'Z': return { cls: '$' };
      default:
        if (c >= '1' && c <= '9') {
          needsBacktracking = true;
          let d = c;
          while (/[0-9]/.test(pattern[i] ?? '')) d += pattern[i++];
          return { cls: '\\' + d };
        }
        if (isLetter(c)) throw new RegexTranslateError(pattern, `unsupported escape \\${c}`);
        return { code: c.charCodeAt(0) };
    }
  };

  const emitLiteral = (code: number) => {
    const c = String.fromCharCode(code);
    if (ci() && isLetter(c)) out += `[${c}${swapCase(c)}]`;
    else out += lit(c);
  };

  const readClass = () => {
    // i points past '['
    let neg = false;
    if (pattern[i] === '^') { neg = true; i++; }
    let body = '';
    let first = true;
    const singles: number[] = [];
    while (i < n && (pattern[i] !== ']' || first)) {
      first = false;
      let lo: number | null = null;
      if (pattern[i] === '[' && pattern[i + 1] === ':') {
        const end = pattern.indexOf(':]', i + 2);
        const name = pattern.slice(i + 2, end);
        const negPosix = name.startsWith('^');
        const cls = POSIX[negPosix ? name.slice(1) : name];
        if (cls === undefined || negPosix) throw new RegexTranslateError(pattern, `POSIX class [:${name}:]`);
        body += cls;
        i = end + 2;
        continue;
      }
      if (pattern[i] === '\\') {
        i++;
        const e = readEscape(true);
        if (e.cls !== undefined) { body += e.cls; continue; }
        lo = e.code!;
      } else {
        lo = pattern.charCodeAt(i++);
      }
      // a range?
      if (pattern[i] === '-' && pattern[i + 1] !== ']' && i + 1 < n) {
        i++;
        let hi: number;
        if (pattern[i] === '\\') {
          i++;
          const e = readEscape(true);
          if (e.cls !== undefined) {
            // "a-\d": '-' is literal
            body += lit(String.fromCharCode(lo)) + '\\-' + e.cls;
            continue;
          }
          hi = e.code!;
        } else {
          hi = pattern.charCodeAt(i++);
        }
        body += hex2(lo) + '-' + hex2(hi);
        if (ci()) body += foldRange(lo, hi);
        continue;
      }
      singles.push(lo);
    }
    if (pattern[i] !== ']') throw new RegexTranslateError(pattern, 'unterminated class');
    i++;
    for (const code of singles) {
      const c = String.fromCharCode(code);
      body += lit(c);
      if (ci() && isLetter(c)) body += swapCase(c);
    }
    out += `[${neg ? '^' : ''}${body}]`;
  };

  while (i < n) {
    const c = pattern[i];
    if (c === '\\') {
      if (pattern[i + 1] === 'Q') {
        i += 2;
        const end = pattern.indexOf('\\E', i);
        const stop = end < 0 ? n : end;
        for (; i < stop; i++) emitLiteral(pattern.charCodeAt(i));
        i = end < 0 ? n : end + 2;
        continue;
      }
      i++;
      const e = readEscape(false);
      if (e.cls !== undefined) out += e.cls;
      else emitLiteral(e.code!);
      continue;
    }
    if (c === '[') { i++; readClass(); continue; }
    if (c === '(') {
      if (pattern[i + 1] !== '?') { out += '('; ciStack.push(ci()); i++; continue; }
      const rest = pattern.slice(i + 2, i + 4);
      if (rest.startsWith(':')) { out += '(?:'; ciStack.push(ci()); i += 3; continue; }
      if (rest.startsWith('=') || rest.startsWith('!')) { needsBacktracking = true; out += '(?' + rest[0]; ciStack.push(ci()); i += 3; continue; }
      if (rest === '<=' || rest === '<!') { needsBacktracking = true; out += '(?' + rest; ciStack.push(ci()); i += 4; continue; }
      if (rest.startsWith('>') || rest.startsWith('|')) { relaxed = relaxed || rest[0] === '>'; out += '(?:'; ciStack.push(ci()); i += 3; continue; }
      if (rest.startsWith('#')) { i = pattern.indexOf(')', i) + 1; continue; }
      const named = /^\(\?P?<([A-Za-z_]\w*)>/.exec(pattern.slice(i));
      if (named) { out += '('; ciStack.push(ci()); i += named[0].length; continue; }
      const flags = /^\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])/.exec(pattern.slice(i));
      if (!flags) throw new RegexTranslateError(pattern, `unsupported group at ${i}`);
      const on = flags[1];
      const off = flags[2] ?? '';
      for (const f of on + off) if (f !== 'i' && f !== 's' && f !== 'm') throw new RegexTranslateError(pattern, `inline flag ${f}`);
      const newCi = on.includes('i') ? true : off.includes('i') ? false : ci();
      i += flags[0].length;
      if (flags[3] === ':') { out += '(?:'; ciStack.push(newCi); } else ciStack[ciStack.length - 1] = newCi;
      continue;
    }
    if (c === ')') {
      if (ciStack.length <= 1) throw new RegexTranslateError(pattern, 'unbalanced )');
      ciStack.pop();
      out += ')';
      i++;
      continue;
    }
    if (c === '*' || c === '+' || c === '?' || c === '}') {
      out += c;
      i++;
      if (pattern[i] === '+') { relaxed = true; i++; }
      continue;
    }
    if (c === '{') {
      const q = /^\{\d+(?:,\d*)?\}/.exec(pattern.slice(i));
      if (q) { out += q[0]; i += q[0].length; if (pattern[i] === '+') { relaxed = true; i++; } continue; }
      out += '\\{';
      i++;
      continue;
    }
    if (c === '|' || c === '^' || c === '$' || c === '.') { out += c; i++; continue; }
    emitLiteral(pattern.charCodeAt(i));
    i++;
  }
  if (ciStack.length !== 1) throw new RegexTranslateError(pattern, 'unbalanced (');
  return { source: out, needsBacktracking, relaxed };
}

/** Widens bounded repeats the linear engine cannot replicate ({m,n} with n > 16) to {m,} (a superset). */
function widenRepeats(source: string): string {
  return source
    .replace(/(?<!\\)\{(\d+),(\d+)\}/g, (all, m: string, nn: string) => (Number(nn) > 16 ? `{${Math.min(Number(m), 16)},}` : all))
    .replace(/(?<!\\)\{(\d+)\}/g, (all, m: string) => (Number(m) > 16 ? '{16,}' : all));
}

export type RegexMode = 'linear' | 'fallback';

export interface RegexInfo {
  re: RegExp;
  engine: 'linear' | 'linear-widened' | 'fallback' | 'backtracking-capped';
  relaxed: boolean;
  /** the JS source (for prefilter extraction) */
  source: string;
  /** longest input given to the regex */
  cap: number;
}

export function compilePcre(pattern: string, backtrackCapBytes: number, mode: RegexMode = 'fallback'): RegexInfo {
  const t = translatePcre(pattern);
  if (!t.needsBacktracking && enableLinearEngine()) {
    for (const [source, engine] of [[t.source, 'linear'], [widenRepeats(t.source), 'linear-widened']] as const) {
      try {
        const linear = new RegExp(source, 'sml'); // proves the linear engine can take it
        if (mode === 'linear') return { re: linear, engine, relaxed: t.relaxed, source, cap: Infinity };
        return { re: new RegExp(t.source, 'sm'), engine: engine === 'linear' ? 'fallback' : engine, relaxed: t.relaxed, source: t.source, cap: Infinity };
      } catch {
        // next
      }
    }
  }
  return { re: new RegExp(t.source, 'sm'), engine: 'backtracking-capped', relaxed: t.relaxed, source: t.source, cap: backtrackCapBytes };
}
