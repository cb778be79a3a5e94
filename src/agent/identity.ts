// Whether a saved file offset can be trusted, as pure functions of what the files look like now.
// A file is dev + inode + a hash of its head (up to 1 KiB, growing with the file) + a hash of the up
// to 1 KiB before the saved offset; an offset is trusted only when all of them match.
import { createHash } from 'node:crypto';
import type { FileCkpt } from './spool.js';

export const HEAD_BYTES_MAX = 1024;
export const TAIL_BYTES_MAX = 1024;

export function hashBytes(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 32);
}

/** The byte range whose hash is the tail hash of `offset`. */
export function tailRange(offset: number): [number, number] {
  return [Math.max(0, offset - TAIL_BYTES_MAX), offset];
}

/** What a candidate file looks like, read at the checkpoint's head length and offset. */
export interface Probe {
  dev: number;
  ino: number;
  size: number;
  /** hash of the candidate's first ck.headLen bytes; undefined when it is shorter */
  headHash?: string;
  /** hash of the candidate's bytes in tailRange(ck.offset); undefined when it is shorter */
  tailHash?: string;
}

export type Verdict =
  /** the same file, the offset holds */
  | 'resume'
  /** the same inode with other or fewer bytes (copytruncate, or inode reuse): finish a rotated copy whose head and tail match, then start at 0 */
  | 'rewritten'
  /** another inode: the file is elsewhere (renamed) or gone */
  | 'elsewhere';

export function judge(ck: FileCkpt, p: Probe): Verdict {
  if (p.dev !== ck.dev || p.ino !== ck.ino) return 'elsewhere';
  return sameContent(ck, p) ? 'resume' : 'rewritten';
}

/** The candidate holds the bytes the checkpoint read (whatever its inode): its head and the bytes before the offset match. */
export function sameContent(ck: FileCkpt, p: Probe): boolean {
  return p.size >= ck.offset && p.size >= ck.headLen && p.headHash === ck.headHash && p.tailHash === ck.tailHash;
}

export type Growth = 'idle' | 'read' | 'truncated';

/** The head a followed file had when it was found (or restarted at 0): its length, hash, and its first `len` bytes as read now. */
export interface HeadLook { len: number; hash: string; now: Buffer }

/**
 * A followed file between reads: `size` from fstat, `before` the bytes just before readPos as read
 * now, `held` the same range as read earlier. Truncated when it shrank below what was read, when the
 * bytes before the read position changed (truncated, then written past it again), or, while less
 * than its head is read (`head`, given then), when the head it was found with changed or shrank: a
 * copytruncate before the first read (the bytes before readPos are none, and a shrink to a size still
 * above readPos looked like bytes gone unread, while its rotated copy holds them).
 */
export function growth(readPos: number, size: number, before?: Buffer, held?: Buffer, head?: HeadLook): Growth {
  if (size < readPos) return 'truncated';
  if (before && held && !before.equals(held)) return 'truncated';
  if (head && head.len > readPos && (size < head.len || head.now.length < head.len || hashBytes(head.now.subarray(0, head.len)) !== head.hash)) return 'truncated';
  return size > readPos ? 'read' : 'idle';
}

/**
 * Whether `next` is written over `prev`, the checkpoint the spool holds under the same key. One at
 * offset 0 (nothing of the file read, no piece of a cut line shipped) says only "read this file from
 * 0", and its head may be empty (a file just truncated) or short, which a later generation matches as
 * well: written over a checkpoint past 0 (the end of the rotated copy just finished, or where the
 * generation before a copytruncate was read to), a kill -9 and another copytruncate before the next
 * read would resume the new generation at 0 and never read the copy holding the lines in between.
 * The older checkpoint stays until something of the file is read: a restart finds the file rewritten,
 * finishes the copy that checkpoint names (nothing left of it), reads the copies made after it, then
 * the file from 0.
 */
export function supersedes(prev: FileCkpt | undefined, next: FileCkpt): boolean {
  return prev === undefined || next.offset > 0 || next.cut !== undefined || prev.offset === 0;
}

/**
 * A rotated copy that holds the generation still in the file at the path: its bytes are where the
 * file's are (compared over its first up to 1 KiB) and the file is at least as long. logrotate's
 * copytruncate is still copying (it truncates after the copy), or has not truncated yet: read now, the
 * copy would end where the copying is, and the file would be read from 0 as well (the lines twice; the
 * rest of the copy never). Those lines are read from the file, and from the copy once the truncate
 * shows. An empty copy holds nothing to read either way.
 */
export function copyInProgress(copyHead: Buffer, copySize: number, fileHead: Buffer, fileSize: number): boolean {
  return copyHead.length > 0 && fileSize >= copySize && fileHead.length >= copyHead.length && fileHead.subarray(0, copyHead.length).equals(copyHead);
}

/**
 * Of two rotated files of one name, whether `other` is closed before `mine`: the older generation (its
 * last write earlier; the one found first when they tie). A checkpoint left of an older one after a
 * newer one closed (its checkpoint removed) would make a restart read the newer one whole again, as a
 * file rotated away unread; the order they were found in is not their age (a restart finds the newer
 * ones while resuming the oldest).
 */
export function closesFirst(other: { mtimeMs: number; foundBefore: boolean }, mine: { mtimeMs: number }): boolean {
  return other.mtimeMs < mine.mtimeMs || (other.mtimeMs === mine.mtimeMs && other.foundBefore);
}

const COMPRESSED = /\.(gz|bz2|xz|zst|lz4|Z)$/;

/**
 * A rotated copy of `base`: base.1, base-20261206, base.2026-12-06, base-2026120613 (any `dateformat`
 * that starts with `.`, `-` or `_`), the same with logrotate's `extension` kept last (app-20261206.log
 * or app.1.log for app.log: digits only, so app-web.log is another file), each also compressed (.gz,
 * .xz, …). `compressed` names the suffix.
 */
export function rotatedName(base: string, name: string): { compressed?: string } | undefined {
  if (name === base) return undefined;
  const c = COMPRESSED.exec(name);
  const plain = c ? name.slice(0, -c[0].length) : name;
  const compressed = c ? c[1] : undefined;
  if (plain.startsWith(base) && /^[._-][^/]+$/.test(plain.slice(base.length))) return compressed ? { compressed } : {};
  const dot = base.lastIndexOf('.');
  if (dot > 0) {
    const stem = base.slice(0, dot);
    const ext = base.slice(dot);
    if (plain.startsWith(stem) && plain.endsWith(ext) && plain.length > base.length && /^[._-]\d[\d._-]*$/.test(plain.slice(stem.length, -ext.length))) {
      return compressed ? { compressed } : {};
    }
  }
  return undefined;
}

/**
 * Where a rotated copy stands among its siblings, larger = rotated later: base.1 is newer than
 * base.2; dated names sort by their date text. Undefined for a name that is not a rotated copy.
 */
export function rotationRank(base: string, name: string): string | undefined {
  const r = rotatedName(base, name);
  if (!r) return undefined;
  const plain = r.compressed ? name.slice(0, -(r.compressed.length + 1)) : name;
  const n = /\.(\d{1,9})$/.exec(plain) ?? /^[^.]+\.(\d{1,9})\.[^.]+$/.exec(plain);
  if (n && plain.length - n[1].length <= base.length + 1) return `n${String(1e9 - Number(n[1])).padStart(10, '0')}`;
  return `d${plain}`;
}

/** A rotated copy of `base` that can be read as it is (not compressed). */
export function isRotatedName(base: string, name: string): boolean {
  const r = rotatedName(base, name);
  return r !== undefined && r.compressed === undefined;
}

/** A glob of the file name (`*`, `?`, `[...]`) as a RegExp. */
export function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += '[' + glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']';
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}
