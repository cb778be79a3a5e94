import { describe, expect, it } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { configFromEnv, loadConfig, ConfigError } from '../src/runtime/config.js';
import { checkLimits, limits } from '../src/runtime/limits.js';
import { ERRORS } from '../src/runtime/errors.js';

async function file(name: string, text: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'chicago-cfg-'));
  const p = path.join(dir, name);
  await writeFile(p, text);
  return p;
}

describe('config', () => {
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
