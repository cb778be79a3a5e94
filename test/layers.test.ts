// The source tree's layers: a folder imports only folders below it, so `runtime` runs under
// everything and nothing reaches back up (a cycle between folders fails here with the import that
// closes it). A new top-level folder must be given its place below.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/launcher.js';

/** lower runs under higher; equal ranks may not import each other */
const LAYERS: Record<string, number> = {
  types: 0, runtime: 0,
  protocol: 1,
  storage: 2, net: 2, client: 2,
  actors: 3, agent: 3, guard: 3, bridge: 3,
  cluster: 4,
  node: 5,
  gateway: 6,
  server: 7,
  cli: 8,
  /** the web console: browser code, bundled apart by scripts/build-console.mjs; imports only itself */
  console: 2,
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

const IMPORT = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+)(['"])(\.{1,2}\/[^'"]+)\1/g;

describe('layers', () => {
  const src = path.join(repoRoot, 'src');
  const files = sources(src);

  it('gives every top-level folder of src/ a place', () => {
    const folders = new Set(files.map((f) => path.relative(src, f).split(path.sep)[0]).filter((t) => !t.endsWith('.ts')));
    expect([...folders].filter((f) => !(f in LAYERS))).toEqual([]);
  });

  it('has no import that runs back up the layers', () => {
    const upward: string[] = [];
    for (const file of files) {
      const from = path.relative(src, file).split(path.sep)[0];
      for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
        const target = path.relative(src, path.resolve(path.dirname(file), m[2]));
        const to = target.split(path.sep)[0];
        if (to === from || to.startsWith('..')) continue;
        if (!(LAYERS[to] < LAYERS[from])) upward.push(`${path.relative(src, file)} → ${target} (${from} ${LAYERS[from]}, ${to} ${LAYERS[to]})`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('catches an upward import (the check itself can fail)', () => {
    const line = "import { ChicagoNode } from '../node/node.js';";
    const m = [...line.matchAll(IMPORT)];
    expect(m).toHaveLength(1);
    expect(LAYERS[path.relative(src, path.resolve(path.join(src, 'runtime'), m[0][2])).split(path.sep)[0]] < LAYERS.runtime).toBe(false);
  });
});
