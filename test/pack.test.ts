// The package as npm ships it: `npm pack` of the built tree, installed into an empty project from the
// npm cache (no repository, no devDependencies), runs `chicago` — help, a server answering /v1/health,
// the console's assets — and `chicago/client` imports from a plain .mjs file.
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { killOnExit, repoRoot } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

const run = promisify(execFile);
let dir: string;
let project: string;
let tarball: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'chicago-pack-'));
  const packed = await run('npm', ['pack', '--pack-destination', dir, '--json'], { cwd: repoRoot });
  tarball = path.join(dir, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0]!.filename);
  project = path.join(dir, 'project');
  await run('mkdir', [project]);
  await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'empty', private: true, type: 'module' }));
  // --prefer-offline: the repository's own `npm ci` filled the cache with every dependency. npm runs no
  // install scripts here; the native dependencies load from the prebuilt binaries they ship.
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: project, timeout: slow(60_000) });
}, slow(90_000));
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('npm pack', () => {
  it('ships the built code, the console, the bin and the agent scripts, and no tests', async () => {
    const files = (await run('tar', ['tzf', tarball])).stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    for (const f of ['bin/chicago.js', 'dist/src/cli/main.js', 'dist/src/client/index.d.ts', 'dist/console/index.html', 'dist/bench/args.js', 'scripts/agent/jstack', 'README.md', 'package.json']) {
      expect(files).toContain(f);
    }
    expect(files.filter((f) => /^(test|src|bench|docs|examples)\/|^dist\/test\/|results\//.test(f))).toEqual([]);
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    // every runtime import is a dependency, so it was installed
    const installed = await readdir(path.join(project, 'node_modules'));
    expect(installed).toEqual(expect.arrayContaining(['chicago', 'msgpackr', 'uWebSockets.js', 'etcd3', 'pino']));
    expect(installed).not.toContain('typescript');
    expect(installed).not.toContain('vitest');
  });

  it('installs into an empty project: chicago --help, a server with /v1/health and /ui, chicago/client', async () => {
    // the bin link npm made, run as a shell runs it (npx would only find this same link, for 0.6 s of CPU more)
    const bin = path.join(project, 'node_modules', '.bin', 'chicago');
    const help = await run(bin, ['--help'], { cwd: project });
    expect(help.stdout).toMatch(/^usage: chicago <command>/);

    await writeFile(path.join(project, 'use.mjs'), [
      "import { connect, ChicagoClient } from 'chicago/client';",
      "import * as root from 'chicago';",
      'const c = await connect({ url: process.argv[2] });',
      "await c.kv.put('pack', 'k', 'v');",
      "const got = await c.kv.get('pack', 'k');",
      'c.close();',
      "console.log(typeof ChicagoClient.connect, root.connect === connect, got.value.toString());",
    ].join('\n'));

    const server = spawn(bin, ['server', '--data-dir', path.join(dir, 'data'), '--port', '0'], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] });
    killOnExit(server);
    let log = '';
    server.stderr.on('data', (b: Buffer) => { log += b.toString(); });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`server not serving in time:\n${log}`)), slow(15_000));
        server.stdout.on('data', (b: Buffer) => {
          log += b.toString();
          const m = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"serving"/.exec(log);
          if (m) { clearTimeout(timer); resolve(m[1]!); }
        });
        server.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}:\n${log}`)); });
      });
      const health = await fetch(`${url}/v1/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok' });
      const ui = await fetch(`${url}/ui/`);
      expect(ui.status).toBe(200);
      expect(await ui.text()).toMatch(/<html/i);

      const use = await run(process.execPath, ['use.mjs', url], { cwd: project, timeout: slow(10_000) });
      expect(use.stdout.trim()).toBe('function true v');
    } finally {
      server.kill('SIGTERM');
      if (server.exitCode === null) await new Promise((r) => server.once('exit', r));
    }
  }, slow(30_000));
});
