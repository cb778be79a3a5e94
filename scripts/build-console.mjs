// Builds the web console (src/console) into dist/console with the esbuild the project installs:
// one minified ES module, one stylesheet (the console's and uPlot's), and the page. Run by
// `npm run build`; prints the sizes, gzipped as the node serves them.
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
for (const f of readdirSync(out)) {
  const b = readFileSync(path.join(out, f));
  raw += b.length;
  gz += zlib.gzipSync(b, { level: 9 }).length;
}
console.log(`console: dist/console ${(raw / 1024).toFixed(1)} KiB, ${(gz / 1024).toFixed(1)} KiB gzipped`);
