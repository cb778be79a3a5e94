// Packages only some starts of a process need, loaded on first use: a node started from flags and
// env alone never parses YAML. Through require, which also spares the ESM loader's scan of a
// CommonJS package for its export names.
import { createRequire } from 'node:module';

type Yaml = typeof import('yaml');
let yaml: Yaml | undefined;

/** the yaml package, for a config file in YAML */
export const yamlLib = (): Yaml => (yaml ??= createRequire(import.meta.url)('yaml') as Yaml);
