// ModSecurity transformations over byte strings (one JS char per byte, 0..255), as libmodsecurity
// 3.0 implements them for the ones the Core Rule Set uses.
import { createHash } from 'node:crypto';

export type Transform = (s: string) => string;

const HEX = /^[0-9a-fA-F]$/;
const isHex = (c: string | undefined) => c !== undefined && HEX.test(c);
const NON_ASCII = /[\x80-\xff]/;

const UPPER = /[A-Z]/;
export function lowercase(s: string): string {
  if (!UPPER.test(s)) return s;
  if (!NON_ASCII.test(s)) return s.toLowerCase();
  return s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

function lowByteUnicode(hex4: string): string {
  let code = parseInt(hex4.slice(2), 16);
  // full-width ASCII (U+FF01..U+FF5E) maps to ASCII
  if (code > 0 && code < 0x5f && (hex4[0] === 'f' || hex4[0] === 'F') && (hex4[1] === 'f' || hex4[1] === 'F')) code += 0x20;
  return String.fromCharCode(code);
}

/** %XX and '+' → space, invalid escapes kept; with `uni` also %uHHHH (the low byte, full-width ASCII folded). */
const PERCENT_U = /%[uU]/;
function percentDecode(s: string, uni: boolean): string {
  if (s.indexOf('%') < 0 && s.indexOf('+') < 0) return s;
  // without %u, the built-in unescape() does exactly this: %XX decoded, an invalid escape kept
  if (!PERCENT_U.test(s)) return unescape(s.indexOf('+') < 0 ? s : s.replace(/\+/g, ' '));
  let out = '';
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s[i];
    if (c === '+') { out += ' '; continue; }
    if (c !== '%') { out += c; continue; }
    if (uni && (s[i + 1] === 'u' || s[i + 1] === 'U') && i + 5 < n &&
      isHex(s[i + 2]) && isHex(s[i + 3]) && isHex(s[i + 4]) && isHex(s[i + 5])) {
      out += lowByteUnicode(s.substr(i + 2, 4));
      i += 5;
    } else if (isHex(s[i + 1]) && isHex(s[i + 2])) {
      out += String.fromCharCode(parseInt(s.substr(i + 1, 2), 16));
      i += 2;
    } else out += c;
  }
  return out;
}

export const urlDecode: Transform = (s) => percentDecode(s, false);
export const urlDecodeUni: Transform = (s) => percentDecode(s, true);

/** The request URI decoding ModSecurity v3 applies for REQUEST_URI / REQUEST_FILENAME: %XX only. */
export function uriDecode(s: string): string {
  if (s.indexOf('%') < 0) return s;
  if (!PERCENT_U.test(s)) return unescape(s);
  return s.replace(/%([0-9a-fA-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

const ENTITIES: Record<string, string> = { quot: '"', amp: '&', lt: '<', gt: '>', nbsp: '\xa0' };

export function htmlEntityDecode(s: string): string {
  if (s.indexOf('&') < 0) return s;
  return s.replace(/&(?:#[xX]([0-9a-fA-F]{1,8})|#([0-9]{1,10})|(quot|amp|lt|gt|nbsp));?/gi, (m, hex?: string, dec?: string, name?: string) => {
    if (hex !== undefined) return String.fromCharCode(parseInt(hex, 16) & 0xff);
    if (dec !== undefined) return String.fromCharCode(parseInt(dec, 10) & 0xff);
    return ENTITIES[name!.toLowerCase()] ?? m;
  });
}

const JS_SIMPLE: Record<string, string> = { a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };

/** Walks s, handing each backslash escape at i to `esc`, which returns its text and the index of its last char. */
function decodeBackslashes(s: string, esc: (s: string, i: number) => [string, number]): string {
  if (s.indexOf('\\') < 0) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== '\\') { out += s[i]; continue; }
    const [text, last] = esc(s, i);
    out += text;
    i = last;
  }
  return out;
}

export const jsDecode: Transform = (str) => decodeBackslashes(str, (s, i) => {
  const n = s.length;
  if (i + 1 >= n) return ['\\', i];
  const d = s[i + 1];
  if (d === 'u' && i + 5 < n && isHex(s[i + 2]) && isHex(s[i + 3]) && isHex(s[i + 4]) && isHex(s[i + 5])) {
    return [lowByteUnicode(s.substr(i + 2, 4)), i + 5];
  }
  if (d === 'x' && i + 3 < n && isHex(s[i + 2]) && isHex(s[i + 3])) return [String.fromCharCode(parseInt(s.substr(i + 2, 2), 16)), i + 3];
  if (d >= '0' && d <= '7') {
    let j = i + 1;
    let o = '';
    while (j < n && o.length < 3 && s[j] >= '0' && s[j] <= '7') o += s[j++];
    return [String.fromCharCode(parseInt(o, 8) & 0xff), j - 1];
  }
  return [JS_SIMPLE[d] ?? d, i + 1];
});

export const cssDecode: Transform = (str) => decodeBackslashes(str, (s, i) => {
  const n = s.length;
  if (i + 1 >= n) return ['', i]; // a trailing backslash is dropped
  let j = i + 1;
  let h = '';
  while (j < n && h.length < 6 && isHex(s[j])) h += s[j++];
  if (h.length > 0) {
    let code = parseInt(h.slice(-2), 16);
    const full = h.length >= 4 ? h.padStart(6, '0') : '';
    if (full !== '' && /^00[fF][fF]/.test(full) && code > 0 && code < 0x5f) code += 0x20;
    if (j < n && /[\t-\r ]/.test(s[j])) j++; // one whitespace after the escape is eaten
    return [String.fromCharCode(code), j - 1];
  }
  if (s[j] === '\n') return ['', j];
  return [s[j], j];
});

export const removeNulls: Transform = (s) => (s.indexOf('\0') < 0 ? s : s.replace(/\0/g, ''));
const WS_RUN = /[\t-\r\xa0]| {2}/;
const WS = /[\t-\r \xa0]/;
export const compressWhitespace: Transform = (s) => (WS_RUN.test(s) ? s.replace(/[\t-\r \xa0]+/g, ' ') : s);
export const removeWhitespace: Transform = (s) => (WS.test(s) ? s.replace(/[\t-\r \xa0]+/g, '') : s);
const EDGE_WS = /^[\t-\r ]|[\t-\r ]$/;
export const trim: Transform = (s) => (EDGE_WS.test(s) ? s.replace(/^[\t-\r ]+|[\t-\r ]+$/g, '') : s);

export function replaceComments(s: string): string {
  if (s.indexOf('/*') < 0) return s;
  return s.replace(/\/\*[\s\S]*?(?:\*\/|$)/g, ' ');
}

const COMMENT_START = /\/\*|<!--|--|#/;
export function removeComments(s: string): string {
  if (!COMMENT_START.test(s)) return s;
  return s.replace(/\/\*[\s\S]*?(?:\*\/|$)|<!--[\s\S]*?(?:-->|$)|--.*$|#.*$/gm, '');
}

/** ModSecurity's cmdLine: drop \ " ' ^, drop spaces before / and (, , and ; to space, squeeze spaces, lowercase. */
const CMDLINE_CHANGES = /[\\"'^,;\t-\r A-Z]/;
export function cmdLine(s: string): string {
  if (!CMDLINE_CHANGES.test(s)) return s; // nothing to drop, squeeze or lowercase
  let out = '';
  let space = false;
  for (let i = 0; i < s.length; i++) {
    let c = s[i];
    if (c === '\\' || c === '"' || c === "'" || c === '^') continue;
    if (c === ',' || c === ';' || c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f') {
      space = true;
      continue;
    }
    if ((c === '/' || c === '(') && space) space = false; // spaces before / and ( are dropped
    if (space) { out += ' '; space = false; }
    if (c >= 'A' && c <= 'Z') c = c.toLowerCase();
    out += c;
  }
  if (space) out += ' ';
  return out;
}

export function normalizePath(s: string, win = false): string {
  let p = win ? s.replace(/\\/g, '/') : s;
  if (p.indexOf('.') < 0 && p.indexOf('//') < 0) return p;
  const abs = p.startsWith('/');
  const trailing = p.endsWith('/') || p.endsWith('/.') || p.endsWith('/..');
  const parts: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
      else if (!abs) parts.push('..');
      continue;
    }
    parts.push(seg);
  }
  p = (abs ? '/' : '') + parts.join('/');
  if (trailing && parts.length > 0) p += '/';
  return p;
}

const B64 = new Int8Array(256).fill(-1);
for (let i = 0; i < 64; i++) B64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;

/** Base64 with every non-alphabet character skipped and a trailing partial byte dropped. */
export function base64Decode(s: string): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const d = c < 256 ? B64[c] : -1;
    if (d < 0) continue;
    acc = ((acc << 6) | d) & 0xffffff;
    bits += 6;
    if (bits >= 8) { bits -= 8; out += String.fromCharCode((acc >> bits) & 0xff); }
  }
  return out;
}

export function hexDecode(s: string): string {
  let out = '';
  for (let i = 0; i + 1 < s.length; i += 2) out += String.fromCharCode(parseInt(s.substr(i, 2), 16) || 0);
  return out;
}

export const hexEncode: Transform = (s) => Buffer.from(s, 'latin1').toString('hex');
export const sha1: Transform = (s) => createHash('sha1').update(Buffer.from(s, 'latin1')).digest().toString('latin1');
export const md5: Transform = (s) => createHash('md5').update(Buffer.from(s, 'latin1')).digest().toString('latin1');
export const length: Transform = (s) => String(s.length);

/** UTF-8 multi-byte sequences to %uHHHH text (ASCII and invalid bytes pass through). */
export function utf8toUnicode(s: string): string {
  if (!NON_ASCII.test(s)) return s;
  let out = '';
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const b = s.charCodeAt(i);
    let len = 0;
    let cp = 0;
    if (b >= 0xc2 && b <= 0xdf) { len = 2; cp = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) { len = 3; cp = b & 0x0f; }
    else if (b >= 0xf0 && b <= 0xf4) { len = 4; cp = b & 0x07; }
    let ok = len > 0 && i + len <= n;
    for (let k = 1; ok && k < len; k++) {
      const cb = s.charCodeAt(i + k);
      if ((cb & 0xc0) !== 0x80) ok = false;
      else cp = (cp << 6) | (cb & 0x3f);
    }
    if (!ok) { out += s[i]; continue; }
    out += '%u' + cp.toString(16).padStart(4, '0');
    i += len - 1;
  }
  return out;
}

export const TRANSFORMS: Record<string, Transform> = {
  lowercase,
  urldecode: urlDecode,
  urldecodeuni: urlDecodeUni,
  htmlentitydecode: htmlEntityDecode,
  jsdecode: jsDecode,
  cssdecode: cssDecode,
  removenulls: removeNulls,
  compresswhitespace: compressWhitespace,
  removewhitespace: removeWhitespace,
  replacecomments: replaceComments,
  removecomments: removeComments,
  cmdline: cmdLine,
  normalizepath: (s) => normalizePath(s),
  normalisepath: (s) => normalizePath(s),
  normalizepathwin: (s) => normalizePath(s, true),
  normalisepathwin: (s) => normalizePath(s, true),
  base64decode: base64Decode,
  hexdecode: hexDecode,
  hexencode: hexEncode,
  sha1,
  md5,
  length,
  utf8tounicode: utf8toUnicode,
  trim,
  trimleft: (s) => s.replace(/^[\t-\r ]+/, ''),
  trimright: (s) => s.replace(/[\t-\r ]+$/, ''),
};
