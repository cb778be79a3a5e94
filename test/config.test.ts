import { describe, expect, it } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { Ajv } from 'ajv';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { configFromEnv, configSpec, defaultConfig, loadConfig, ConfigError } from '../src/runtime/config.js';
import { bridgeConfigSpec } from '../src/bridge/config.js';
import { agentConfigSpec } from '../src/agent/config.js';
import { guardConfigSpec } from '../src/guard/config.js';
import { schemaDigest, type SchemaSpec } from '../src/runtime/compiled-schema.js';
import { checkLimits, limits } from '../src/runtime/limits.js';
import { ERRORS } from '../src/runtime/errors.js';

async function file(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-cfg-'));
  const p = path.join(dir, name);
  await writeFile(p, text);
  return p;
}

describe('config', () => {
  it('has schemas that are valid JSON Schema (a start does not check them against the meta-schema)', () => {
    for (const spec of [configSpec, bridgeConfigSpec, agentConfigSpec, guardConfigSpec]) {
      const ajv = new Ajv({ strict: true });
      expect(ajv.validateSchema(spec.schema), `${spec.name}: ${ajv.errorsText()}`).toBe(true);
    }
  });

  it('layers defaults < file < env < flags', async () => {
    const f = await file('c.yaml', 'port: 8000\nsync:\n  policy: group\nworkers: 3\n');
    const c = loadConfig({ file: f, env: { CHICAGO_PORT: '9000', CHICAGO_SYNC_GROUP_INTERVAL_MS: '5' }, flags: { port: 9100 } });
    expect(c).toMatchObject({ port: 9100, workers: 3, sync: { policy: 'group', groupIntervalMs: 5 }, dataDir: './data' });
  });

  it('reads JSON files and comma-separated etcd endpoints from env', async () => {
    const f = await file('c.json', '{"partitions": 16}');
    expect(loadConfig({ file: f, env: { CHICAGO_ETCD: 'http://a:2379, http://b:2379' } })).toMatchObject({ partitions: 16, etcd: ['http://a:2379', 'http://b:2379'] });
  });

  it('rejects unknown keys, naming them', async () => {
    const f = await file('c.yaml', 'port: 8000\ncolour: blue\n');
    expect(() => loadConfig({ file: f })).toThrow(/colour/);
    expect(() => loadConfig({ flags: { sync: { policy: 'sometimes' } } })).toThrow(ConfigError);
    // a value outside a list is told the list
    expect(() => loadConfig({ flags: { sync: { policy: 'sometimes' } } })).toThrow('/sync/policy must be equal to one of the allowed values (none, group, always)');
  });

  it('explains renamed keys', async () => {
    const f = await file('c.yaml', 'data_dir: /tmp/x\n');
    expect(() => loadConfig({ file: f })).toThrow(/"data_dir" is now "dataDir"/);
  });

  it('reports a malformed file clearly', async () => {
    const f = await file('c.yaml', 'port: [1,\n');
    expect(() => loadConfig({ file: f })).toThrow(/not valid YAML/);
    expect(() => loadConfig({ file: '/nonexistent/chicago.yaml' })).toThrow(/cannot read config file/);
  });

  it('never throws anything but ConfigError on arbitrary YAML (fuzz)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-cfg-'));
    const p = path.join(dir, 'f.yaml');
    const fs = await import('node:fs');
    fc.assert(fc.property(fc.string({ maxLength: 200 }), (text) => {
      fs.writeFileSync(p, text);
      try { loadConfig({ file: p }); } catch (e) { expect(e).toBeInstanceOf(ConfigError); }
    }), { numRuns: 300 });
  });

  it('maps only CHICAGO_ names the schema knows', () => {
    expect(configFromEnv({ CHICAGO_URL: 'http://x', CHICAGO_LOG_LEVEL: 'debug' })).toEqual({ logLevel: 'debug' });
  });
});

const validatorsDir = fileURLToPath(new URL('../dist/src/runtime/validators/', import.meta.url));

describe.skipIf(!existsSync(path.join(validatorsDir, 'config.cjs')))('the validators `npm run build` compiles (scripts/build-validators.mjs)', () => {
  const load = (spec: SchemaSpec) => createRequire(import.meta.url)(path.join(validatorsDir, `${spec.name}.cjs`)) as ((data: unknown) => boolean) & { errors?: unknown; digest: string };

  it('were made from the schemas and options in the sources', () => {
    expect(load(configSpec).digest).toBe(schemaDigest(configSpec));
    expect(load(bridgeConfigSpec).digest).toBe(schemaDigest(bridgeConfigSpec));
    expect(load(agentConfigSpec).digest).toBe(schemaDigest(agentConfigSpec));
    expect(load(guardConfigSpec).digest).toBe(schemaDigest(guardConfigSpec));
  });

  it('accept and refuse what ajv compiling the schema at start does, with the same errors', () => {
    const cases: Array<[SchemaSpec, unknown[]]> = [
      [configSpec, [defaultConfig(), { ...defaultConfig(), port: 'x', workers: 0, colour: 1, nodeId: 'a b', sync: { policy: 'sometimes' } }, { security: { tokens: [{ id: 1 }] } }, []]],
      [bridgeConfigSpec, [{}, { group: 1, mappings: [], kafka: { brokers: 'b' } }, { group: 'g', mappings: [{ chicago: 't', kafka: 'k' }], kafka: { brokers: ['b:9092'] }, chicago: { url: 'http://x' } }]],
      [agentConfigSpec, [{}, { sources: [{ task: 'app', paths: ['/var/log/app.log'], topic: 'logs' }] }, { sources: [{ task: 1, paths: 'x', colour: 2 }], spool: { quotaBytes: -1 }, health: { intervalMs: 'often' } }]],
      [guardConfigSpec, [{}, { inputs: [{ topic: 'access' }] }, { inputs: [{ topic: 'a', format: 'apache' }], scenarios: [{ name: 1 }], extra: true }]],
    ];
    for (const [spec, inputs] of cases) {
      const compiled = load(spec);
      const runtime = new Ajv(spec.options).compile(spec.schema);
      for (const input of inputs) {
        const a = structuredClone(input);
        const b = structuredClone(input);
        expect(compiled(a)).toBe(runtime(b));
        expect(compiled.errors).toEqual(runtime.errors);
        expect(a).toEqual(b); // defaults filled in alike
      }
    }
  });
});

describe('limits and errors', () => {
  it('hold their stated relations', () => {
    expect(() => checkLimits()).not.toThrow();
    expect(() => checkLimits({ ...limits, batchBytesMax: 30_000_000 })).toThrow(/20 MB/);
  });

  it('give every error a unique wire number, an HTTP status and a retry flag', () => {
    const wires = Object.values(ERRORS).map((e) => e.wire);
    expect(new Set(wires).size).toBe(wires.length);
    for (const [code, e] of Object.entries(ERRORS)) {
      expect(e.status, code).toBeGreaterThanOrEqual(400);
      expect(typeof e.retryable, code).toBe('boolean');
    }
    expect(ERRORS.OUTCOME_UNKNOWN.retryable).toBe(true);
  });
});
