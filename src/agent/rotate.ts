// The agent rotating the files it ships (sources[].rotate): when a file is due (a pure decision),
// the rotated copies shift (name.1 → name.2 …, the oldest deleted), then either the file is renamed
// to name.1 and a new empty one made in its place (the writer told by a signal), or it is copied to
// name.1 and truncated in place. Copies older than name.1 may be gzipped.
import { constants, createReadStream, createWriteStream, fdatasyncSync, fstatSync, ftruncateSync, readSync, writeSync } from 'node:fs';
import { type FileHandle, open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { RotateConfig } from './config.js';

/** Whether a followed file is due: at maxBytes, or maxAgeMs after `sinceMs`, and never when empty. */
export function rotateDue(ro: RotateConfig, size: number, sinceMs: number, nowMs: number): boolean {
  if (size === 0) return false;
  if (ro.maxBytes !== undefined && size >= ro.maxBytes) return true;
  return ro.maxAgeMs !== undefined && nowMs - sinceMs >= ro.maxAgeMs;
}

/** The rotated copies' names: name.i, and name.i.gz when compressed. */
export function copyName(file: string, i: number, gz = false): string {
  return `${file}.${i}${gz ? '.gz' : ''}`;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(() => true, () => false);
}

/** Makes room for a new name.1: deletes name.keep, moves name.i to name.i+1 (plain or .gz). */
export async function shiftCopies(file: string, keep: number): Promise<void> {
  for (const gz of [false, true]) await rm(copyName(file, keep, gz), { force: true });
  for (let i = keep - 1; i >= 1; i--) {
    for (const gz of [false, true]) {
      const from = copyName(file, i, gz);
      if (await exists(from)) await rename(from, copyName(file, i + 1, gz));
    }
  }
}

/** Gzips name.2 … name.keep that are plain (name.1 stays plain: its writer or the agent may still be at it). */
export async function compressCopies(file: string, keep: number): Promise<void> {
  for (let i = 2; i <= keep; i++) {
    const plain = copyName(file, i);
    if (!(await exists(plain))) continue;
    const gz = copyName(file, i, true);
    const tmp = path.join(path.dirname(file), `.${path.basename(gz)}.agent-tmp`);
    await pipeline(createReadStream(plain), createGzip(), createWriteStream(tmp));
    const fh = await open(tmp, 'r');
    await fh.datasync();
    await fh.close();
    await rename(tmp, gz);
    await rm(plain, { force: true });
  }
}

/** rename mode: file → name.1, a new empty file with the old one's mode and owner, then the writer's signal. */
export async function renameRotate(file: string, ro: RotateConfig): Promise<{ signalled?: number }> {
  const st = await stat(file);
  await shiftCopies(file, ro.keep);
  await rename(file, copyName(file, 1));
  const fh = await open(file, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, st.mode & 0o7777);
  await fh.chown(st.uid, st.gid).catch(() => {});
  await fh.close();
  if (!ro.signal) return {};
  const pid = Number((await readFile(ro.signal.pidFile, 'utf8')).trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`rotate: ${ro.signal.pidFile} holds no pid`);
  process.kill(pid, ro.signal.signal);
  return { signalled: pid };
}

const COPY_CHUNK_BYTES = 1024 * 1024;
/** the last copy before the truncate is done synchronously once this little is left */
const SYNC_TAIL_BYTES = 1024 * 1024;

/**
 * copytruncate mode on the agent's own handle: copies the file to name.1 (durable), then copies what
 * was appended meanwhile and truncates with no await between the last fstat and the ftruncate, so
 * only bytes a writer appends in that window (microseconds) are in neither file. The caller then
 * treats the file as truncated: what it had not read yet is read from name.1.
 * Writers must append (O_APPEND), as for logrotate's copytruncate.
 */
export async function copyTruncate(file: string, fh: FileHandle, ro: RotateConfig): Promise<{ copiedBytes: number; windowUs: number; lostBytes: number }> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.agent-rotating`);
  const wfh = await open(file, 'r+');
  let out: FileHandle | undefined;
  try {
    const a = await wfh.stat();
    const b = await fh.stat();
    if (a.ino !== b.ino || a.dev !== b.dev) throw new Error(`rotate: ${file} is no longer the followed file`);
    const st = await stat(file);
    out = await open(tmp, 'w', st.mode & 0o7777);
    await out.chown(st.uid, st.gid).catch(() => {});
    const buf = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
    let copied = 0;
    // bulk copy while the file grows faster than the tail bound
    for (let i = 0; i < 10_000; i++) {
      const size = (await wfh.stat()).size;
      if (size - copied <= SYNC_TAIL_BYTES) break;
      while (copied < size) {
        const { bytesRead } = await wfh.read(buf, 0, Math.min(buf.length, size - copied), copied);
        if (bytesRead === 0) break;
        await out.write(buf, 0, bytesRead, copied);
        copied += bytesRead;
      }
    }
    await out.datasync();
    await shiftCopies(file, ro.keep);
    await rename(tmp, copyName(file, 1));
    // the tail, synchronously: copy what is there, and truncate once nothing came in meanwhile
    const ofd = out.fd;
    const wfd = wfh.fd;
    let windowUs = 0;
    let lostBytes = 0;
    for (let i = 0; ; i++) {
      const size = fstatSync(wfd).size;
      while (copied < size) {
        const n = readSync(wfd, buf, 0, Math.min(buf.length, size - copied), copied);
        if (n === 0) break;
        let w = 0;
        while (w < n) w += writeSync(ofd, buf, w, n - w, copied + w);
        copied += n;
      }
      const t0 = process.hrtime.bigint();
      const now = fstatSync(wfd).size;
      // a writer that outruns a synchronous copy 100 times over loses what it wrote last (a gap)
      if (now === copied || i >= 100) {
        ftruncateSync(wfd, 0);
        windowUs = Number(process.hrtime.bigint() - t0) / 1000;
        lostBytes = now - copied;
        break;
      }
    }
    fdatasyncSync(ofd);
    return { copiedBytes: copied, windowUs, lostBytes };
  } finally {
    await out?.close().catch(() => {});
    await wfh.close().catch(() => {});
    await rm(tmp, { force: true });
  }
}
