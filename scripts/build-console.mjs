// Builds the web console (src/console) into dist/console with the esbuild the project installs:
// one minified ES module, one stylesheet (the console's and uPlot's), and the page. Run by
// `npm run build`; writes each file's gzip beside it (NAME.gz, what the node serves) and prints the sizes.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'src/console');
const out = path.join(root, 'dist/console');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [path.join(src, 'main.ts')],
  outfile: path.join(out, 'app.js'),
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome110', 'firefox110', 'safari16'],
  legalComments: 'none',
  logLevel: 'warning',
});
writeFileSync(path.join(out, 'app.css'), [
  readFileSync(path.join(root, 'node_modules/uplot/dist/uPlot.min.css'), 'utf8'),
  readFileSync(path.join(src, 'console.css'), 'utf8'),
].join('\n'));
copyFileSync(path.join(src, 'index.html'), path.join(out, 'index.html'));

let raw = 0;
let gz = 0;
// each file's gzip beside it, as the node serves it: a start only reads it (src/gateway/console.ts)
for (const f of readdirSync(out)) {
  const b = readFileSync(path.join(out, f));
  const z = zlib.gzipSync(b, { level: 9 });
  writeFileSync(path.join(out, `${f}.gz`), z);
  raw += b.length;
  gz += z.length;
}
console.log(`console: dist/console ${(raw / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzipped`);
