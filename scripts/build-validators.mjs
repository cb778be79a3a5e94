// Compiles the config schemas into plain validator modules with ajv's standalone code, once per
// build, so that a node's start neither loads ajv nor compiles them (src/runtime/compiled-schema.ts).
// Run by `npm run build` after tsc: reads the schemas from dist, writes dist/src/runtime/validators/.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import standaloneCode from 'ajv/dist/standalone/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runtime = path.join(root, 'dist/src/runtime');
const { schemaDigest } = await import(path.join(runtime, 'compiled-schema.js'));
const { configSpec } = await import(path.join(runtime, 'config.js'));
const { bridgeConfigSpec } = await import(path.join(root, 'dist/src/bridge/config.js'));
const { agentConfigSpec } = await import(path.join(root, 'dist/src/agent/config.js'));
const { guardConfigSpec } = await import(path.join(root, 'dist/src/guard/config.js'));

const out = path.join(runtime, 'validators');
mkdirSync(out, { recursive: true });
const specs = [configSpec, bridgeConfigSpec, agentConfigSpec, guardConfigSpec];
for (const spec of specs) {
  const ajv = new Ajv({ ...spec.options, code: { source: true } });
  const code = standaloneCode(ajv, ajv.compile(spec.schema));
  // the digest says which schema and options this code was made from: another one is not used
  writeFileSync(path.join(out, `${spec.name}.cjs`), `${code}\nmodule.exports.digest = ${JSON.stringify(schemaDigest(spec))};\n`);
}
console.log(`validators: ${path.relative(root, out)} (${specs.map((s) => s.name).join(', ')})`);
