// CommonJS packages through require. An ESM import of one has the loader scan the package's source
// for its export names first (cjs-module-lexer), in every thread that imports it: the packages every
// partition worker loads (pino, comlink, RocksDB's binding, crc32's loader) come through here. And
// packages only some starts need, loaded on first use: a node started from flags and env alone
// never parses YAML.
import { createRequire } from 'node:module';

/** require() resolving from this package, for the CommonJS packages named above */
export const requireCjs = createRequire(import.meta.url);

type Yaml = typeof import('yaml');
let yaml: Yaml | undefined;

/** the yaml package, for a config file in YAML */
export const yamlLib = (): Yaml => (yaml ??= requireCjs('yaml') as Yaml);
