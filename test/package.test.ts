// The package as another project sees it: `import … from 'chicago'` resolves through package.json
// `exports` to the built client, with its TypeScript types.
import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '..');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'chicago-consumer-'));
  await mkdir(path.join(dir, 'node_modules'));
  await symlink(repo, path.join(dir, 'node_modules', 'chicago'), 'dir');
  await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', private: true }));
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('the chicago package from another project', () => {
  it('imports the client by name, in JavaScript and with types', async () => {
    const js = await run(process.execPath, ['--input-type=module', '-e',
      "const m = await import('chicago'); console.log(typeof m.ChicagoClient.connect, typeof m.Producer, typeof m.ChicagoError)"], { cwd: dir });
    expect(js.stdout.trim()).toBe('function function function');
    // a deep import is not part of the interface
    await expect(run(process.execPath, ['--input-type=module', '-e', "await import('chicago/dist/src/node/node.js')"], { cwd: dir })).rejects.toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/);

    await writeFile(path.join(dir, 'use.ts'), [
      "import { ChicagoClient, ChicagoError, type TailRecord, type ConnectOptions } from 'chicago';",
      "const opts: ConnectOptions = { url: 'http://127.0.0.1:7070' };",
      'export async function last(topic: string): Promise<TailRecord | undefined> {',
      '  const c: ChicagoClient = await ChicagoClient.connect(opts);',
      '  try { return undefined; } catch (e) { if (e instanceof ChicagoError) throw e; } finally { await c.close(); }',
      '  return undefined;',
      '}',
    ].join('\n'));
    // bad.ts has one type error: it must be reported (types really load), and use.ts none
    await writeFile(path.join(dir, 'bad.ts'), "import { ChicagoClient } from 'chicago';\nexport const n: number = ChicagoClient.connect;\n");
    const tsc = path.join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
    // TypeScript's own lib files are not this package's to check (a third of tsc's CPU): skipped;
    // the package's declarations and @types/node are still checked
    const args = ['--noEmit', '--skipDefaultLibCheck', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(repo, 'node_modules', '@types'), 'use.ts', 'bad.ts'];
    const out = await run(process.execPath, [tsc, ...args], { cwd: dir }).then(() => '', (e: { stdout: string }) => e.stdout);
    expect(out.trim().split('\n')).toEqual([expect.stringMatching(/^bad\.ts\(2,14\): error TS2322: /)]);
  }, 60_000);
});
