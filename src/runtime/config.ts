// One config schema for file, env and flags. Precedence: defaults < file < CHICAGO_* env < flags.
// Unknown keys are rejected; renamed keys say what they became.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { lazyValidator, type SchemaSpec } from './compiled-schema.js';
import { yamlLib } from './require.js';
import { checkHashFormat, parseScopes, ScopeError } from './tokens.js';

export type SyncPolicy = 'none' | 'group' | 'always';

export interface Config {
  nodeId: string;
  host: string;
  port: number;
  dataDir: string;
  /** worker threads hosting partition actors */
  workers: number;
  /** node partitions (actors / column families); fixed when the data dir is created */
  partitions: number;
  sync: { policy: SyncPolicy; groupIntervalMs: number };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** etcd endpoints; empty means a single-node cluster */
  etcd: string[];
  /** how often TTL expiry and topic retention run */
  maintenanceIntervalMs: number;
  /** how often a leader sends its partitions' digests to their followers (anti-entropy) */
  antiEntropyIntervalMs: number;
  defaults: { topicPartitions: number; replicas: number };
  /**
   * The Kafka bridge run in-process (docs/bridge.md), as written in the file: checked here with
   * the bridge's own schema, resolved at start with the node's own URL as the default chicago.url.
   */
  bridge?: Record<string, unknown>;
  security: SecurityConfig;
  /** disk-full protection (docs/operations: writes are refused below minFreeBytes; a reserve file keeps room for deletes) */
  storage: { minFreeBytes: number; reserveBytes: number };
  /** the cap on what the node buffers (request bodies, queued requests, WebSocket send buffers, large HTTP answers not yet sent, for 20 s what a closed WebSocket left unsent) */
  memory: { maxBytes: number };
  /** HTTPS/WSS on the gateway and TLS on the links between nodes (docs/security.md) */
  tls?: TlsConfig;
}

export interface TlsConfig {
  /** this node's certificate (PEM), for its port and as its client certificate on links */
  certFile: string;
  keyFile: string;
  /** the cluster CA (PEM): verifies other nodes' certificates; worker links require a certificate it signed */
  caFile?: string;
  /** the CA of etcd's certificate, for https:// etcd endpoints (default caFile); the node presents certFile/keyFile to etcd */
  etcdCaFile?: string;
}

/** One access token as the config holds it: never the token itself, only its salted hash. */
export interface TokenEntry {
  /** the token's public id (the 12 hex digits after `chicago_`) */
  id: string;
  /** scrypt$N$r$p$salt$hash from `chicago token create` */
  hash: string;
  scopes: string[];
  /** shown in logs instead of the token */
  name?: string;
  /** ISO-8601; the token is refused from then on */
  expiresAt?: string;
  /** refused, kept in the file as a record */
  revoked?: boolean;
}

export interface SecurityConfig {
  /** tokens accepted by this node; none on a loopback address: the node runs open */
  tokens: TokenEntry[];
  /** browser origins allowed to call this node (CORS and WebSocket Origin); none by default */
  allowedOrigins: string[];
  /** run without tokens on a non-loopback address (refused otherwise) */
  insecure: boolean;
  /** in a cluster with tokens: the token (with cluster:peer) this node presents to the others, or a file holding it */
  peerToken?: string;
  peerTokenFile?: string;
}

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    nodeId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    dataDir: { type: 'string', minLength: 1 },
    workers: { type: 'integer', minimum: 1, maximum: 64 },
    partitions: { type: 'integer', minimum: 1, maximum: 4096 },
    sync: {
      type: 'object',
      additionalProperties: false,
      properties: {
        policy: { enum: ['none', 'group', 'always'] },
        groupIntervalMs: { type: 'number', minimum: 0.1, maximum: 1000 },
      },
    },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    etcd: { type: 'array', items: { type: 'string', minLength: 1 } },
    maintenanceIntervalMs: { type: 'integer', minimum: 10, maximum: 3_600_000 },
    antiEntropyIntervalMs: { type: 'integer', minimum: 100, maximum: 86_400_000 },
    defaults: {
      type: 'object',
      additionalProperties: false,
      properties: {
        topicPartitions: { type: 'integer', minimum: 1, maximum: 1024 },
        replicas: { type: 'integer', minimum: 1, maximum: 15 },
      },
    },
    // validated by the bridge's own schema (src/bridge/config.ts) in loadConfig
    bridge: { type: 'object' },
    memory: {
      type: 'object',
      additionalProperties: false,
      properties: { maxBytes: { type: 'integer', minimum: 64 * 1024 * 1024, maximum: Number.MAX_SAFE_INTEGER } },
    },
    storage: {
      type: 'object',
      additionalProperties: false,
      properties: {
        minFreeBytes: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
        reserveBytes: { type: 'integer', minimum: 0, maximum: 64 * 1024 * 1024 * 1024 },
      },
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      required: ['certFile', 'keyFile'],
      properties: {
        certFile: { type: 'string', minLength: 1 },
        keyFile: { type: 'string', minLength: 1 },
        caFile: { type: 'string', minLength: 1 },
        etcdCaFile: { type: 'string', minLength: 1 },
      },
    },
    security: {
      type: 'object',
      additionalProperties: false,
      properties: {
        tokens: {
          type: 'array',
          maxItems: 10_000,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['id', 'hash', 'scopes'],
            properties: {
              id: { type: 'string', pattern: '^[0-9a-f]{12}$' },
              hash: { type: 'string', minLength: 1, maxLength: 512 },
              scopes: { type: 'array', minItems: 1, maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 256 } },
              name: { type: 'string', maxLength: 128 },
              expiresAt: { type: 'string', minLength: 1, maxLength: 64 },
              revoked: { type: 'boolean' },
            },
          },
        },
        allowedOrigins: { type: 'array', maxItems: 256, items: { type: 'string', pattern: '^(https?://[^/\\s]+|\\*)$' } },
        insecure: { type: 'boolean' },
        peerToken: { type: 'string', minLength: 1 },
        peerTokenFile: { type: 'string', minLength: 1 },
      },
    },
  },
} as const;

export function defaultConfig(): Config {
  return {
    nodeId: os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'node',
    host: '127.0.0.1',
    port: 7070,
    dataDir: './data',
    workers: Math.max(1, Math.min(os.availableParallelism(), 4)),
    partitions: 8,
    sync: { policy: 'none', groupIntervalMs: 2 },
    logLevel: 'info',
    etcd: [],
    maintenanceIntervalMs: 5000,
    antiEntropyIntervalMs: 30_000,
    defaults: { topicPartitions: 4, replicas: 3 },
    security: { tokens: [], allowedOrigins: [], insecure: false },
    storage: { minFreeBytes: 256 * 1024 * 1024, reserveBytes: 128 * 1024 * 1024 },
    memory: { maxBytes: 1024 * 1024 * 1024 },
  };
}

/** Old or common spellings, and what to write instead. */
const RENAMED: Record<string, string> = {
  data_dir: 'dataDir',
  datadir: 'dataDir',
  node_id: 'nodeId',
  threads: 'workers',
  fsync: 'sync.policy',
  log_level: 'logLevel',
};

// The schema is fixed, so a start does not check it against the JSON Schema meta-schema:
// test/config.test.ts does, once.
export const configSpec: SchemaSpec = { name: 'config', schema: configSchema, options: { allErrors: true, strict: true, validateSchema: false, meta: false } };
const validator = lazyValidator(configSpec);

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Plain = Record<string, unknown>;

function isPlain(v: unknown): v is Plain {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function merge(base: Plain, over: Plain): Plain {
  const out: Plain = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isPlain(v) && isPlain(out[k]) ? merge(out[k] as Plain, v) : v;
  }
  return out;
}

function explainRenames(obj: Plain, where: string): void {
  for (const k of Object.keys(obj)) {
    if (k in RENAMED) throw new ConfigError(`${where}: "${k}" is now "${RENAMED[k]}"`);
  }
}

/** YAML with its warnings (unknown tags, …) treated as errors: a config file must mean one thing. */
function parseYaml(yaml: ReturnType<typeof yamlLib>, text: string): unknown {
  const doc = yaml.parseDocument(text, { prettyErrors: false });
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) throw new Error(problem.message);
  return doc.toJS();
}

export function parseConfigFile(path: string): Plain {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  // loaded outside the parse's try: a missing package is not a config file's fault
  const yaml = path.endsWith('.json') ? undefined : yamlLib();
  let parsed: unknown;
  try {
    parsed = yaml ? parseYaml(yaml, text) : JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (!isPlain(parsed)) throw new ConfigError(`config file ${path} must hold a mapping`);
  explainRenames(parsed, path);
  return parsed;
}

/** CHICAGO_DATA_DIR → dataDir, CHICAGO_SYNC_POLICY → sync.policy; only names the schema knows. */
export function configFromEnv(env: NodeJS.ProcessEnv): Plain {
  const out: Plain = {};
  const visit = (props: Record<string, { type?: string; properties?: object }>, path: string[]) => {
    for (const [key, spec] of Object.entries(props)) {
      const p = [...path, key];
      if (spec.properties) { visit(spec.properties as typeof props, p); continue; }
      if (spec.type === 'object' || key === 'tokens') continue; // free-form sections (bridge) and token lists: file only
      const name = 'CHICAGO_' + p.map((s) => s.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
      const raw = env[name];
      if (raw === undefined || raw === '') continue;
      let value: unknown = raw;
      if (spec.type === 'integer' || spec.type === 'number') value = Number(raw);
      else if (spec.type === 'boolean') value = raw === '1' || raw === 'true' ? true : raw === '0' || raw === 'false' ? false : raw;
      else if (spec.type === 'array') value = raw.split(',').map((s) => s.trim()).filter(Boolean);
      let target = out;
      for (const seg of p.slice(0, -1)) target = (target[seg] ??= {}) as Plain;
      target[key] = value;
    }
  };
  visit(configSchema.properties as never, []);
  return out;
}

export interface ConfigSources { file?: string; env?: NodeJS.ProcessEnv; flags?: Plain }

/** What the schema cannot say: scopes parse, hashes have the right form, dates are dates, ids are unique. */
function checkSecurity(sec: SecurityConfig): void {
  const ids = new Set<string>();
  for (const [i, t] of sec.tokens.entries()) {
    const where = `security.tokens[${i}]${t.name ? ` (${t.name})` : ''}`;
    if (ids.has(t.id)) throw new ConfigError(`invalid config: ${where}: id ${t.id} appears twice`);
    ids.add(t.id);
    try {
      parseScopes(t.scopes);
      checkHashFormat(t.hash);
    } catch (e) {
      if (e instanceof ScopeError) throw new ConfigError(`invalid config: ${where}: ${e.message}`);
      throw e;
    }
    if (t.expiresAt !== undefined && Number.isNaN(Date.parse(t.expiresAt))) throw new ConfigError(`invalid config: ${where}: expiresAt ${JSON.stringify(t.expiresAt)} is not an ISO-8601 time`);
  }
}

/**
 * Sections owned by the layers above (the bridge's, say) are checked by the check they pass in,
 * keyed by section name, so a bad section fails at start like a bad key.
 */
export function loadConfig(sources: ConfigSources = {}, sectionChecks: Record<string, (section: unknown) => unknown> = {}): Config {
  let merged: Plain = defaultConfig() as unknown as Plain;
  if (sources.file) merged = merge(merged, parseConfigFile(sources.file));
  if (sources.env) merged = merge(merged, configFromEnv(sources.env));
  if (sources.flags) merged = merge(merged, sources.flags);
  const validate = validator();
  if (!validate(merged)) {
    const why = (validate.errors ?? [])
      .map((e) => `${e.instancePath || '/'} ${e.message}${e.params && 'additionalProperty' in e.params ? ` "${String(e.params.additionalProperty)}"` : ''}${e.params && 'allowedValues' in e.params ? ` (${(e.params.allowedValues as unknown[]).join(', ')})` : ''}`)
      .join('; ');
    throw new ConfigError(`invalid config: ${why}`);
  }
  checkSecurity(merged.security as SecurityConfig);
  for (const [name, check] of Object.entries(sectionChecks)) {
    if (merged[name] === undefined) continue;
    try {
      check(merged[name]);
    } catch (e) {
      throw new ConfigError(`invalid config: ${name} section: ${(e as Error).message}`);
    }
  }
  return merged as unknown as Config;
}

/** Top-level keys whose values differ between two resolved configs, but for `security` (SIGHUP reloads that one). */
export function keysNeedingRestart(running: Config, next: Config): string[] {
  const keys = new Set([...Object.keys(running), ...Object.keys(next)]);
  keys.delete('security');
  const a = running as unknown as Plain;
  const b = next as unknown as Plain;
  return [...keys].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).sort();
}

/** A loopback host name or address: what an unauthenticated port may listen on. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
