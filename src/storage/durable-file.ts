// A small file replaced whole or not at all, and still there after a crash: written to a temporary
// name and fsynced, renamed over the old one, then the directory fsynced (the rename lives in it).
import { open, rename } from 'node:fs/promises';
import path from 'node:path';

export async function writeFileDurably(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  const dir = await open(path.dirname(file), 'r');
  try { await dir.sync(); } finally { await dir.close(); }
}
