// What every `chicago` run loads before it knows its command: only the catalog of commands and the
// few modules that parse a command line and report its outcome. A command's own code, and what it
// pulls in (the agent, the guard, the bridge, the server, yaml, crypto), loads in its run().
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/launcher.js';

/** static imports only: `import type` is erased and `import()` runs on demand */
const STATIC_IMPORT = /^(?:import(?!\s+type\s)|export(?!\s+type\s))[^;]*?\bfrom\s+['"]([^'"]+)['"]|^import\s+['"]([^'"]+)['"]/gms;

/** every module `entry` loads at start, relative to src/; packages and node: built-ins by name */
function loadedAtStart(entry: string): string[] {
  const src = path.join(repoRoot, 'src');
  const seen = new Set<string>();
  const todo = [path.join(src, entry)];
  while (todo.length > 0) {
    const file = todo.pop()!;
    const rel = path.relative(src, file);
    if (seen.has(rel)) continue;
    seen.add(rel);
    for (const m of readFileSync(file, 'utf8').matchAll(STATIC_IMPORT)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith('.')) todo.push(path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts'));
      else seen.add(spec);
    }
  }
  return [...seen].sort();
}

describe('chicago start-up', () => {
  it('loads only the command catalog and the command-line plumbing before it runs a command', () => {
    expect(loadedAtStart('cli/main.ts')).toEqual([
      'cli/args.ts', 'cli/catalog.ts', 'cli/errors.ts', 'cli/http.ts', 'cli/main.ts',
      'client/tls.ts', 'client/token.ts', 'node:fs', 'node:module', 'node:util', 'runtime/limits.ts',
    ]);
  });

  it('sees a static import (the check itself can fail)', () => {
    const text = "import { a } from './a.js';\nimport type { B } from './b.js';\nconst c = await import('./c.js');\nexport { d } from './d.js';";
    expect([...text.matchAll(STATIC_IMPORT)].map((m) => m[1] ?? m[2])).toEqual(['./a.js', './d.js']);
  });

  it("makes its requests without fetch (its first call compiles undici's WebAssembly parser)", () => {
    const http = readFileSync(path.join(repoRoot, 'src/cli/http.ts'), 'utf8');
    expect(http).not.toMatch(/\bfetch\(/);
  });
});
