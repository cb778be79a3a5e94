// The bridge's configuration: one schema (YAML or JSON file, or the `bridge` section of a node
// config), defaults filled in, unknown keys rejected, limits checked against each other.
import { readFileSync } from 'node:fs';
import { lazyValidator, type SchemaSpec } from '../runtime/compiled-schema.js';
import { yamlLib } from '../runtime/require.js';
import { limits } from '../runtime/limits.js';

export type BridgeMode = 'exactly-once' | 'at-least-once';
/** how a Kafka partition is chosen: Kafka's own murmur2 of the key, the Chicago partition, or a header's hash */
export type PartitionBy = 'key' | 'chicago-partition' | `header:${string}`;

export interface Mapping {
  /** a Chicago topic name, or a pattern where `*` matches any run of name characters */
  chicago: string;
  /** Kafka topic; `${task}`, `${host}`, `${source}` (record headers), `${topic}`, `${partition}` (Chicago) are substituted */
  kafka: string;
  partitionBy: PartitionBy;
  /** what a missing header becomes in a topic template */
  missing: string;
}

export interface BridgeConfig {
  chicago: { url: string; requestTimeoutMs: number; token?: string; tokenFile?: string; caFile?: string };
  kafka: {
    brokers: string[];
    clientId: string;
    /** compacted Kafka topic holding each Chicago partition's delivered position; default chicago-bridge.GROUP.checkpoints */
    checkpointTopic: string;
    transactionTimeoutMs: number;
    /** create missing Kafka topics (routed ones and the checkpoint topic) with these settings */
    createTopics: { enabled: boolean; partitions: number; replicationFactor: number };
  };
  /** the Chicago consumer group whose committed offsets the bridge advances */
  group: string;
  mode: BridgeMode;
  /** where a Chicago partition without checkpoint or committed offset starts */
  start: 'earliest' | 'latest';
  mappings: Mapping[];
  limits: {
    /** no Kafka request carries more record bytes than this (keep under the broker's message.max.bytes) */
    maxRequestBytes: number;
    /** record bytes held in memory per round (one transaction) across all partitions */
    roundBytesMax: number;
    fetchMaxRecords: number;
    fetchWaitMs: number;
    /** task sequence counters kept per Chicago partition; the least recently used is forgotten */
    tasksPerPartitionMax: number;
  };
  /** Chicago topic receiving records that can never be delivered (oversize), with a reason header */
  deadLetter: { topic: string; partitions: number };
  lag: { alertRecords: number; alertSeconds: number; intervalMs: number };
  retry: { initialMs: number; maxMs: number };
  /** the standalone bridge serves GET /metrics here; port 0 = not served */
  metrics: { host: string; port: number };
  /** how often topic patterns are re-listed and partition counts re-read */
  refreshMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

const NAME = '^[A-Za-z0-9._-]{1,128}$';

export const bridgeConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kafka', 'mappings'],
  properties: {
    chicago: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        url: { type: 'string', pattern: '^https?://', default: 'http://127.0.0.1:7070' },
        requestTimeoutMs: { type: 'integer', minimum: 100, maximum: 600_000, default: 30_000 },
        /** an access token (docs/security.md); or tokenFile, or CHICAGO_TOKEN / CHICAGO_TOKEN_FILE */
        token: { type: 'string', minLength: 1 },
        tokenFile: { type: 'string', minLength: 1 },
        /** a CA file (PEM) to trust for an https:// url */
        caFile: { type: 'string', minLength: 1 },
      },
    },
    kafka: {
      type: 'object',
      additionalProperties: false,
      required: ['brokers'],
      properties: {
        brokers: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[^\\s:,]+:[0-9]{1,5}$' } },
        clientId: { type: 'string', pattern: NAME, default: 'chicago-bridge' },
        checkpointTopic: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,249}$' },
        transactionTimeoutMs: { type: 'integer', minimum: 1000, maximum: 900_000, default: 60_000 },
        createTopics: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            enabled: { type: 'boolean', default: true },
            partitions: { type: 'integer', minimum: 1, maximum: 10_000, default: 1 },
            replicationFactor: { type: 'integer', minimum: 1, maximum: 15, default: 1 },
          },
        },
      },
    },
    group: { type: 'string', pattern: NAME, default: 'kafka-bridge' },
    mode: { enum: ['exactly-once', 'at-least-once'], default: 'exactly-once' },
    start: { enum: ['earliest', 'latest'], default: 'earliest' },
    mappings: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['chicago', 'kafka'],
        properties: {
          chicago: { type: 'string', pattern: '^[A-Za-z0-9._*-]{1,128}$' },
          kafka: { type: 'string', minLength: 1, maxLength: 249, pattern: '^([A-Za-z0-9._-]|\\$\\{(task|host|source|topic|partition)\\})+$' },
          partitionBy: { type: 'string', pattern: '^(key|chicago-partition|header:[A-Za-z0-9._-]{1,64})$', default: 'key' },
          missing: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$', default: 'unknown' },
        },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxRequestBytes: { type: 'integer', minimum: 4096, maximum: limits.batchBytesMax, default: 1_000_000 },
        roundBytesMax: { type: 'integer', minimum: 4096, maximum: 256 * 1024 * 1024, default: 8 * 1024 * 1024 },
        fetchMaxRecords: { type: 'integer', minimum: 1, maximum: limits.fetchRecordsMax, default: 5_000 },
        fetchWaitMs: { type: 'integer', minimum: 0, maximum: limits.fetchWaitMsMax, default: 500 },
        tasksPerPartitionMax: { type: 'integer', minimum: 1, maximum: 100_000, default: 1_000 },
      },
    },
    deadLetter: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        topic: { type: 'string', pattern: NAME },
        partitions: { type: 'integer', minimum: 1, maximum: 1024, default: 1 },
      },
    },
    lag: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        alertRecords: { type: 'integer', minimum: 1, default: 100_000 },
        alertSeconds: { type: 'number', exclusiveMinimum: 0, default: 60 },
        intervalMs: { type: 'integer', minimum: 100, maximum: 600_000, default: 5_000 },
      },
    },
    retry: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        initialMs: { type: 'integer', minimum: 10, maximum: 60_000, default: 200 },
        maxMs: { type: 'integer', minimum: 10, maximum: 600_000, default: 10_000 },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        host: { type: 'string', minLength: 1, default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 0 },
      },
    },
    refreshMs: { type: 'integer', minimum: 100, maximum: 3_600_000, default: 5_000 },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
  },
} as const;

/** Renamed or commonly mistaken keys, with what to write instead. */
const RENAMED: Record<string, string> = {
  topics: 'mappings',
  maxBytes: 'limits.maxRequestBytes',
  maxRequestBytes: 'limits.maxRequestBytes',
  bootstrap: 'kafka.brokers',
  brokers: 'kafka.brokers',
  url: 'chicago.url',
  dlq: 'deadLetter',
};

export class BridgeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BridgeConfigError';
  }
}

// The schema is fixed, so a start does not check it against the JSON Schema meta-schema:
// test/bridge-unit.test.ts does, once.
export const bridgeConfigSpec: SchemaSpec = { name: 'bridge-config', schema: bridgeConfigSchema, options: { allErrors: true, useDefaults: true, strict: true, validateSchema: false, meta: false } };
// made at first use: a node without a bridge section skips the cost
const validator = lazyValidator(bridgeConfigSpec);

/** Validates a parsed config object (it is not modified) and returns the resolved config. */
export function resolveBridgeConfig(input: unknown): BridgeConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new BridgeConfigError('bridge config must be an object');
  for (const k of Object.keys(input)) {
    if (k in RENAMED && !(k in bridgeConfigSchema.properties)) throw new BridgeConfigError(`bridge config: "${k}" is not a key; use "${RENAMED[k]}"`);
  }
  const c = structuredClone(input) as Record<string, unknown>;
  const validate = validator();
  if (!validate(c)) {
    const msgs = (validate.errors ?? []).map((e) =>
      e.keyword === 'additionalProperties'
        ? `${e.instancePath || '/'}: unknown key "${(e.params as { additionalProperty: string }).additionalProperty}"`
        : `${e.instancePath || '/'} ${e.message}`,
    );
    throw new BridgeConfigError(`bridge config is invalid:\n  ${msgs.join('\n  ')}`);
  }
  const cfg = c as unknown as BridgeConfig;
  cfg.kafka.checkpointTopic ??= `chicago-bridge.${cfg.group}.checkpoints`;
  cfg.deadLetter.topic ??= `${cfg.group}.dead-letter`;
  checkBridgeConfig(cfg);
  return cfg;
}

/** Relations between settings; a broken one is a configuration error caught at start. */
export function checkBridgeConfig(c: BridgeConfig): void {
  const rules: Array<[boolean, string]> = [
    [c.limits.maxRequestBytes < 20 * 1000 * 1000, 'limits.maxRequestBytes must stay under 20 MB'],
    [c.limits.roundBytesMax >= c.limits.maxRequestBytes, 'limits.roundBytesMax must hold at least one full request'],
    [c.retry.maxMs >= c.retry.initialMs, 'retry.maxMs must be at least retry.initialMs'],
    [c.limits.fetchWaitMs < c.chicago.requestTimeoutMs, 'limits.fetchWaitMs must be shorter than chicago.requestTimeoutMs'],
    [!c.mappings.some((m) => m.chicago === c.deadLetter.topic || globMatches(m.chicago, c.deadLetter.topic)),
      'the dead-letter topic must not be bridged itself'],
  ];
  for (const [ok, why] of rules) if (!ok) throw new BridgeConfigError(`bridge config: ${why}`);
}

export function loadBridgeConfig(file: string): BridgeConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new BridgeConfigError(`cannot read bridge config ${file}: ${(e as Error).message}`);
  }
  // loaded outside the parse's try: a missing package is not a config file's fault
  const yaml = yamlLib();
  let parsed: unknown;
  try {
    parsed = yaml.parse(text);
  } catch (e) {
    throw new BridgeConfigError(`bridge config ${file} is not valid YAML/JSON: ${(e as Error).message}`);
  }
  return resolveBridgeConfig(parsed);
}

/** `*` matches any run of characters; everything else is literal. */
export function globMatches(pattern: string, name: string): boolean {
  if (!pattern.includes('*')) return pattern === name;
  const re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('.*') + '$');
  return re.test(name);
}
