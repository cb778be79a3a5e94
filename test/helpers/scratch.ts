// Runs in every test file (vitest setupFiles): what a test file creates in the temp directory does
// not outlive it, whether its tests pass or fail. TMPDIR points at a directory of this file's own, so
// every os.tmpdir() path lands there: the tests' and helpers' mkdtemp, and what the processes they
// start create (an agent's script copies, a node's data dir). When the file ends (this afterAll runs
// after the file's own, as vitest runs afterAll hooks in reverse order), the children still running
// are killed and the directory removed. CHICAGO_TEST_KEEP_TMP=1 keeps it and says where it is.
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect } from 'vitest';
import { killChildren } from './children.js';

/** how long the end of a file waits for the children it kills */
const CHILD_EXIT_WAIT_MS = 5_000;

const parent = os.tmpdir();
const name = path.basename(expect.getState().testPath ?? 'test', '.test.ts').slice(0, 40);
const dir = mkdtempSync(path.join(parent, `chicago-test-${name}-`));
// mkdtemp makes it 0700; agents that run as another user (setpriv) need to reach their dirs in it
chmodSync(dir, 0o755);
process.env.TMPDIR = dir;

afterAll(async () => {
  await killChildren(CHILD_EXIT_WAIT_MS);
  process.env.TMPDIR = parent;
  if (process.env.CHICAGO_TEST_KEEP_TMP) {
    console.log(`CHICAGO_TEST_KEEP_TMP: this file's temporary files stay in ${dir}`);
    return;
  }
  try {
    // retried: a child that was not registered may still be writing when the removal starts
    rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 100 });
  } catch (err) {
    // a mount the test left (disk-full's tmpfs) keeps its mount point: say so, the tests passed or failed on their own
    console.warn(`could not remove ${dir}: ${(err as Error).message}`);
  }
});
