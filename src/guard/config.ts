// The guard's configuration: one schema (unknown keys rejected), read from a YAML/JSON file.
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, parseConfigFile } from '../runtime/config.js';
import { type SchemaSpec, lazyValidator } from '../runtime/compiled-schema.js';
import { nodeSchema, nodeSecrets, schemaMessage } from '../client/config-node.js';
import { limits } from '../runtime/limits.js';
import { Allowlist } from './ip.js';
import { DEFAULT_SCENARIOS, type ScenarioSpec, compileScenarios } from './scenarios.js';

export { ConfigError };

export interface InputConfig {
  topic: string;
  format: 'nginx' | 'sshd';
  /** 'all': shared with the other members of `group`; or the partition numbers this guard reads alone */
  partitions: 'all' | number[];
  /** where to start when the group has no committed offset */
  from: 'latest' | 'earliest';
}

export interface GuardConfig {
  node: { url: string; token?: string; ca?: string; timeoutMs: number };
  /** this guard's name in decisions it makes */
  guardId: string;
  /** consumer group: guards in one group share the partitions; its committed offsets say where reading resumes */
  group: string;
  /** group session: a member silent this long is removed and its partitions go to the others */
  membership: { sessionTimeoutMs: number; heartbeatIntervalMs: number; commitIntervalMs: number };
  inputs: InputConfig[];
  allowlist: string[];
  loginPaths: string[];
  scenarios: ScenarioSpec[];
  prefixBits: { v4: number; v6: number };
  limits: { ipsMax: number; lineBytesMax: number; uriCharsMax: number; clockSkewMsMax: number };
  sketch: { epsilon: number; delta: number; topK: number };
  crs: { enabled: boolean; rulesDir?: string; paranoiaLevel: number; inboundThreshold: number };
  decisions: {
    topic: string;
    keyspace: string;
    escalation: { factor: number; maxMs: number; memoryMs: number };
    newBansPerMinuteMax: number;
    offendersMax: number;
  };
  nftables?: { command: string[]; table: string; drop: boolean; batchMax: number; queueMax: number };
  nginx?: { urls: string[]; timeoutMs: number; checkIntervalMs: number };
  metrics?: { host: string; port: number };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

const NAME = '^[A-Za-z0-9._-]{1,128}$';
const int = (minimum: number, maximum: number) => ({ type: 'integer', minimum, maximum });
const strList = { type: 'array', items: { type: 'string', minLength: 1 } };

const scenarioSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: NAME },
    enabled: { type: 'boolean' },
    type: { enum: ['leaky', 'ratio', 'prefix'] },
    source: { enum: ['http', 'ssh'] },
    filter: {
      type: 'object',
      additionalProperties: false,
      properties: {
        methods: strList,
        status: { type: 'array', items: { anyOf: [int(100, 599), { type: 'string', pattern: '^[1-5]xx$' }] } },
        paths: strList,
        uri: strList,
        sshEvents: strList,
        crs: { type: 'boolean' },
      },
    },
    capacity: int(0, 1_000_000),
    leakMs: int(1, 86_400_000),
    blackholeMs: int(0, 86_400_000),
    distinct: { enum: ['uri', 'path', 'user'] },
    windowMs: int(100, 86_400_000),
    min: int(1, 1_000_000),
    threshold: { type: 'number', minimum: 0 },
    minIps: int(1, 65_536),
    durationMs: int(1000, 365 * 86_400_000),
    dryRun: { type: 'boolean' },
  },
} as const;

export const guardConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['inputs'],
  properties: {
    node: nodeSchema,
    guardId: { type: 'string', pattern: NAME },
    group: { type: 'string', pattern: NAME },
    membership: {
      type: 'object',
      additionalProperties: false,
      properties: {
        sessionTimeoutMs: int(limits.groupSessionTimeoutMsMin, limits.groupSessionTimeoutMsMax),
        heartbeatIntervalMs: int(10, limits.groupSessionTimeoutMsMax),
        commitIntervalMs: int(10, 60_000),
      },
    },
    inputs: {
      type: 'array',
      minItems: 1,
      maxItems: 100,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['topic'],
        properties: {
          topic: { type: 'string', pattern: NAME },
          format: { enum: ['nginx', 'sshd'] },
          partitions: { anyOf: [{ const: 'all' }, { type: 'array', minItems: 1, uniqueItems: true, items: int(0, 65_535) }] },
          from: { enum: ['latest', 'earliest'] },
        },
      },
    },
    allowlist: strList,
    loginPaths: strList,
    scenarios: { type: 'array', maxItems: 1000, items: scenarioSchema },
    prefixBits: { type: 'object', additionalProperties: false, properties: { v4: int(8, 32), v6: int(16, 128) } },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ipsMax: int(1000, 100_000_000),
        lineBytesMax: int(1024, 4 * 1024 * 1024),
        uriCharsMax: int(256, 4 * 1024 * 1024),
        clockSkewMsMax: int(1000, 30 * 86_400_000),
      },
    },
    sketch: {
      type: 'object',
      additionalProperties: false,
      properties: { epsilon: { type: 'number', exclusiveMinimum: 0, maximum: 0.5 }, delta: { type: 'number', exclusiveMinimum: 0, maximum: 0.5 }, topK: int(1, 100_000) },
    },
    crs: {
      type: 'object',
      additionalProperties: false,
      properties: { enabled: { type: 'boolean' }, rulesDir: { type: 'string', minLength: 1 }, paranoiaLevel: int(1, 4), inboundThreshold: int(1, 1000) },
    },
    decisions: {
      type: 'object',
      additionalProperties: false,
      properties: {
        topic: { type: 'string', pattern: NAME },
        keyspace: { type: 'string', pattern: NAME },
        escalation: {
          type: 'object',
          additionalProperties: false,
          properties: { factor: { type: 'number', minimum: 1, maximum: 100 }, maxMs: int(1000, 365 * 86_400_000), memoryMs: int(0, 365 * 86_400_000) },
        },
        newBansPerMinuteMax: int(0, 1_000_000),
        offendersMax: int(100, 100_000_000),
      },
    },
    nftables: {
      type: 'object',
      additionalProperties: false,
      properties: {
        command: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
        table: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]{0,63}$' },
        drop: { type: 'boolean' },
        batchMax: int(1, 10_000),
        queueMax: int(1, 10_000_000),
      },
    },
    nginx: {
      type: 'object',
      additionalProperties: false,
      required: ['urls'],
      properties: { urls: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^http://' } }, timeoutMs: int(10, 60_000), checkIntervalMs: int(100, 3_600_000) },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      properties: { host: { type: 'string', minLength: 1 }, port: int(0, 65_535) },
    },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  },
} as const;

// checked against the JSON Schema meta-schema by test/config.test.ts, not at each start
export const guardConfigSpec: SchemaSpec = { name: 'guard-config', schema: guardConfigSchema, options: { allErrors: true, strict: true, validateSchema: false, meta: false } };
const validator = lazyValidator(guardConfigSpec);

type Raw = Partial<Omit<GuardConfig, 'inputs' | 'scenarios' | 'node'>> & {
  node?: { url?: string; token?: string; tokenFile?: string; ca?: string; timeoutMs?: number };
  inputs: Array<Partial<InputConfig> & { topic: string }>;
  scenarios?: Array<Partial<ScenarioSpec> & { name: string; enabled?: boolean }>;
  [k: string]: unknown;
};

/** Built-in scenarios with the file's entries merged by name; `enabled: false` removes one. */
function mergeScenarios(list: Raw['scenarios']): ScenarioSpec[] {
  const byName = new Map(DEFAULT_SCENARIOS.map((s) => [s.name, { ...s }]));
  for (const [i, s] of (list ?? []).entries()) {
    const { enabled, ...rest } = s;
    if (enabled === false) {
      byName.delete(s.name);
      continue;
    }
    const base = byName.get(s.name);
    const merged = { ...(base ?? {}), ...rest } as ScenarioSpec;
    if (!merged.type || !merged.source) throw new ConfigError(`guard config: /scenarios/${i} (${s.name}) is new and needs type and source`);
    byName.set(s.name, merged);
  }
  return [...byName.values()];
}

/** `guard.<topics>`: guards reading the same topics share a group by default; long lists are hashed. */
export function defaultGroup(topics: readonly string[]): string {
  const name = `guard.${[...new Set(topics)].sort().join('.')}`;
  return name.length <= 128 ? name : `guard.${createHash('sha256').update(name).digest('hex').slice(0, 32)}`;
}

export function resolveGuardConfig(raw: unknown, base: string, env: NodeJS.ProcessEnv = process.env): GuardConfig {
  const validate = validator();
  if (!validate(raw)) throw new ConfigError(`guard config: ${schemaMessage(validate.errors)}`);
  const r = raw as unknown as Raw;
  const { token, ca } = nodeSecrets(r.node, (p) => path.resolve(base, p), env, 'guard config');
  const abs = (p: string) => path.resolve(base, p);
  const allowlist = r.allowlist ?? [];
  const bad = Allowlist.check(allowlist);
  if (bad !== undefined) throw new ConfigError(`guard config: /allowlist '${bad}' is not an address or CIDR`);
  const scenarios = mergeScenarios(r.scenarios);
  const loginPaths = r.loginPaths ?? ['/login', '/wp-login.php', '/user/login', '/admin/login', '/api/login'];
  try {
    // a filter expression that does not compile (or not on the linear engine) is the config's fault
    compileScenarios(scenarios, loginPaths);
  } catch (err) {
    throw new ConfigError(`guard config: /scenarios: ${(err as Error).message}`);
  }
  const sessionTimeoutMs = r.membership?.sessionTimeoutMs ?? 600;
  const heartbeatIntervalMs = r.membership?.heartbeatIntervalMs ?? Math.max(10, Math.floor(sessionTimeoutMs / 4));
  if (heartbeatIntervalMs * 2 > sessionTimeoutMs) throw new ConfigError(`guard config: /membership/heartbeatIntervalMs ${heartbeatIntervalMs} is more than half of sessionTimeoutMs ${sessionTimeoutMs}`);
  return {
    node: {
      url: (r.node?.url ?? env.CHICAGO_URL ?? 'http://127.0.0.1:7070').replace(/\/+$/, ''),
      ...(token ? { token } : {}),
      ...(ca ? { ca } : {}),
      timeoutMs: r.node?.timeoutMs ?? 10_000,
    },
    guardId: r.guardId ?? (os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 120) || 'guard'),
    group: r.group ?? defaultGroup(r.inputs.map((i) => i.topic)),
    membership: { sessionTimeoutMs, heartbeatIntervalMs, commitIntervalMs: r.membership?.commitIntervalMs ?? 500 },
    inputs: r.inputs.map((i) => ({ topic: i.topic, format: i.format ?? 'nginx', partitions: i.partitions ?? 'all', from: i.from ?? 'latest' })),
    allowlist,
    loginPaths,
    scenarios,
    prefixBits: { v4: r.prefixBits?.v4 ?? 24, v6: r.prefixBits?.v6 ?? 64 },
    limits: {
      ipsMax: r.limits?.ipsMax ?? 100_000,
      lineBytesMax: r.limits?.lineBytesMax ?? 64 * 1024,
      uriCharsMax: r.limits?.uriCharsMax ?? 16 * 1024,
      clockSkewMsMax: r.limits?.clockSkewMsMax ?? 86_400_000,
    },
    sketch: { epsilon: r.sketch?.epsilon ?? 0.001, delta: r.sketch?.delta ?? 0.01, topK: r.sketch?.topK ?? 100 },
    crs: {
      enabled: r.crs?.enabled ?? true,
      ...(r.crs?.rulesDir ? { rulesDir: abs(r.crs.rulesDir) } : {}),
      paranoiaLevel: r.crs?.paranoiaLevel ?? 1,
      inboundThreshold: r.crs?.inboundThreshold ?? 5,
    },
    decisions: {
      topic: r.decisions?.topic ?? 'guard.decisions',
      keyspace: r.decisions?.keyspace ?? 'blocklist',
      escalation: {
        factor: r.decisions?.escalation?.factor ?? 4,
        maxMs: r.decisions?.escalation?.maxMs ?? 7 * 86_400_000,
        memoryMs: r.decisions?.escalation?.memoryMs ?? 7 * 86_400_000,
      },
      newBansPerMinuteMax: r.decisions?.newBansPerMinuteMax ?? 1000,
      offendersMax: r.decisions?.offendersMax ?? 100_000,
    },
    ...(r.nftables ? {
      nftables: { command: r.nftables.command ?? ['nft'], table: r.nftables.table ?? 'chicago_guard', drop: r.nftables.drop ?? true, batchMax: r.nftables.batchMax ?? 500, queueMax: r.nftables.queueMax ?? 100_000 },
    } : {}),
    ...(r.nginx ? { nginx: { urls: r.nginx.urls, timeoutMs: r.nginx.timeoutMs ?? 1000, checkIntervalMs: r.nginx.checkIntervalMs ?? limits.guardNginxCheckIntervalMs } } : {}),
    ...(r.metrics ? { metrics: { host: r.metrics.host ?? '127.0.0.1', port: r.metrics.port ?? 9465 } } : {}),
    logLevel: r.logLevel ?? 'info',
  };
}

export function loadGuardConfig(file: string, env: NodeJS.ProcessEnv = process.env): GuardConfig {
  return resolveGuardConfig(parseConfigFile(file), path.dirname(path.resolve(file)), env);
}
