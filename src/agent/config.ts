// The host agent's configuration: one schema (unknown keys rejected), read from a YAML/JSON file.
// The token comes from the file (token, tokenFile) or the environment (CHICAGO_TOKEN, CHICAGO_TOKEN_FILE).
import os from 'node:os';
import path from 'node:path';
import { ConfigError, parseConfigFile } from '../runtime/config.js';
import { type SchemaSpec, lazyValidator } from '../runtime/compiled-schema.js';
import { limits } from '../runtime/limits.js';
import { nodeSchema } from '../client/config-node.js';
import { CaFileError, readCa } from '../client/tls.js';
import { TokenFileError, resolveToken } from '../client/token.js';
import { SCRIPTS_TASK, type ScriptsConfig, resolveScriptsConfig, scriptsConfigSchema } from './scripts-config.js';
import { type MonitorConfig, type RawMonitor, alertsSchema, healthSchema, resolveMonitorConfig, statusSchema } from './monitor-config.js';
import type { JournaldConfig } from './journald.js';

export { ConfigError };

export type MultilinePreset = 'java' | 'python' | 'go' | 'node';

export interface MultilineConfig {
  /** a line matching this starts a new event; other lines continue the pending one */
  start?: string;
  /** a line matching this continues the pending event; other lines start a new one */
  continue?: string;
  preset?: MultilinePreset;
  /** an event ends this long after its last line */
  quietMs: number;
  maxLines: number;
  maxBytes: number;
}

export interface SourceConfig {
  /** the `task` header of every record from this source; one task ships to one topic */
  task: string;
  /** globs (`*`, `?` in the file name; the directory is literal) */
  paths: string[];
  topic: string;
  multiline?: MultilineConfig;
  /** sshd: auth.log lines from sshd get ssh.* headers (event, user, ip, port, method) */
  parse?: 'sshd';
  /** the agent rotates this source's files itself (size or age) */
  rotate?: RotateConfig;
  /** each record's key, from its line: records with one key land in one partition (a client IP for the guard) */
  key?: RecordKeySpec;
}

/** Where a record's key comes from: a top-level field of a JSON line, or a regex's first capture group (else its match). */
export type RecordKeySpec = { json: string } | { regex: string };

export interface RotateConfig {
  /** rotate a file once it holds this many bytes */
  maxBytes?: number;
  /** rotate a file this long after the agent started following it or last rotated it */
  maxAgeMs?: number;
  /** rotated copies kept (name.1 … name.keep); older ones are deleted */
  keep: number;
  /** rename: name → name.1 and a new empty name (writers reopen on `signal`); copytruncate: copy, then truncate in place */
  mode: 'rename' | 'copytruncate';
  /** after a rename, this signal goes to the process whose pid is in pidFile */
  signal?: { pidFile: string; signal: NodeJS.Signals };
  /** gzip name.2 and older (name.1 stays plain: a writer or the agent may still be at it) */
  compress: boolean;
}

export interface AgentConfig {
  node: { url: string; token?: string; ca?: string; timeoutMs: number };
  host: string;
  spool: { dir: string; quotaBytes: number; segmentBytes: number };
  pollIntervalMs: number;
  /** a rotated (renamed or deleted) file is closed once read to its end and unchanged this long */
  rotatedIdleMs: number;
  /** longest line kept whole; longer lines are cut into pieces of this size */
  maxLineBytes: number;
  /** inFlightMax: batches of one unkeyed task in flight at once (1: the next is sent after the ack) */
  batch: { maxRecords: number; maxBytes: number; lingerMs: number; inFlightMax: number };
  retry: { minMs: number; maxMs: number };
  topicPartitions: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  sources: SourceConfig[];
  /** scripts on demand and on schedule (docs/agent.md); absent: none */
  scripts?: ScriptsConfig;
  /** health checks, alert rules, the status port (monitor-config.ts) */
  monitor: MonitorConfig;
  journald: JournaldConfig[];
}

const NAME = '^[A-Za-z0-9._-]{1,128}$';
const int = (minimum: number, maximum: number) => ({ type: 'integer', minimum, maximum });

export const agentConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    node: nodeSchema,
    host: { type: 'string', pattern: NAME },
    spool: {
      type: 'object',
      additionalProperties: false,
      properties: {
        dir: { type: 'string', minLength: 1 },
        quotaBytes: int(1024 * 1024, Number.MAX_SAFE_INTEGER),
        segmentBytes: int(64 * 1024, 1024 * 1024 * 1024),
      },
    },
    pollIntervalMs: int(10, 60_000),
    rotatedIdleMs: int(100, 3_600_000),
    maxLineBytes: int(1024, 4 * 1024 * 1024 - 64 * 1024),
    batch: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxRecords: int(1, 100_000),
        // the node refuses updates of 20 MB or more
        maxBytes: int(1024, 16 * 1024 * 1024),
        lingerMs: int(0, 10_000),
        // the node recognises a resend among a producer's last batches: no more may be in flight
        inFlightMax: int(1, limits.producerRecentBatchesMax),
      },
    },
    retry: {
      type: 'object',
      additionalProperties: false,
      properties: { minMs: int(1, 60_000), maxMs: int(1, 600_000) },
    },
    topicPartitions: int(1, 1024),
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    scripts: scriptsConfigSchema,
    health: healthSchema,
    alerts: alertsSchema,
    status: statusSchema,
    sources: {
      type: 'array',
      minItems: 1,
      maxItems: 1000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['task', 'paths', 'topic'],
        properties: {
          task: { type: 'string', pattern: NAME },
          paths: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
          topic: { type: 'string', pattern: NAME },
          parse: { enum: ['sshd'] },
          key: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            maxProperties: 1,
            properties: { json: { type: 'string', minLength: 1, maxLength: 256 }, regex: { type: 'string', minLength: 1, maxLength: 1024 } },
          },
          multiline: {
            type: 'object',
            additionalProperties: false,
            properties: {
              preset: { enum: ['java', 'python', 'go', 'node'] },
              start: { type: 'string', minLength: 1 },
              continue: { type: 'string', minLength: 1 },
              quietMs: int(1, 600_000),
              maxLines: int(1, 100_000),
              maxBytes: int(1024, 4 * 1024 * 1024 - 64 * 1024),
            },
          },
          rotate: {
            type: 'object',
            additionalProperties: false,
            properties: {
              maxBytes: int(1024, Number.MAX_SAFE_INTEGER),
              maxAgeMs: int(1000, 365 * 24 * 3_600_000),
              keep: int(1, 1000),
              mode: { enum: ['rename', 'copytruncate'] },
              signal: {
                type: 'object',
                additionalProperties: false,
                required: ['pidFile'],
                properties: { pidFile: { type: 'string', minLength: 1 }, signal: { type: 'string', pattern: '^SIG[A-Z0-9]+$' } },
              },
              compress: { type: 'boolean' },
            },
          },
        },
      },
    },
    journald: {
      type: 'array',
      minItems: 1,
      maxItems: 100,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['task', 'topic'],
        properties: {
          task: { type: 'string', pattern: NAME },
          topic: { type: 'string', pattern: NAME },
          units: { type: 'array', items: { type: 'string', minLength: 1 } },
          identifiers: { type: 'array', items: { type: 'string', minLength: 1 } },
          // FIELD=value (journalctl's match syntax), or + between alternatives
          matches: { type: 'array', items: { type: 'string', pattern: '^([A-Z0-9_]+=.*|\\+)$' } },
          from: { enum: ['head', 'tail'] },
          maxMessageBytes: int(1024, 4 * 1024 * 1024 - 64 * 1024),
          // a journald namespace (journalctl --namespace: NAME, +NAME with the default one, * for all), or a directory of journal files (--directory)
          namespace: { type: 'string', pattern: '^(\\+?[A-Za-z0-9_.:-]{1,64}|\\*)$' },
          directory: { type: 'string', minLength: 1 },
        },
      },
    },
  },
} as const;

// checked against the JSON Schema meta-schema by test/config.test.ts, not at each start
export const agentConfigSpec: SchemaSpec = { name: 'agent-config', schema: agentConfigSchema, options: { allErrors: true, strict: true, validateSchema: false, meta: false } };
const validator = lazyValidator(agentConfigSpec);

type Raw = {
  node?: { url?: string; token?: string; tokenFile?: string; ca?: string; timeoutMs?: number };
  host?: string;
  spool?: Partial<AgentConfig['spool']>;
  pollIntervalMs?: number;
  rotatedIdleMs?: number;
  maxLineBytes?: number;
  batch?: Partial<AgentConfig['batch']>;
  retry?: Partial<AgentConfig['retry']>;
  topicPartitions?: number;
  logLevel?: AgentConfig['logLevel'];
  scripts?: Parameters<typeof resolveScriptsConfig>[0];
  sources?: Array<Omit<SourceConfig, 'multiline' | 'rotate'> & { multiline?: Partial<MultilineConfig>; rotate?: Partial<Omit<RotateConfig, 'signal'>> & { signal?: { pidFile: string; signal?: string } } }>;
  journald?: Array<Pick<JournaldConfig, 'task' | 'topic'> & Partial<JournaldConfig>>;
} & RawMonitor;

function hostName(): string {
  return os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 128) || 'host';
}

/** Checks and completes a parsed config; `base` resolves relative paths (the config file's directory). */
export function resolveAgentConfig(raw: unknown, base: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const validate = validator();
  if (!validate(raw)) {
    const msg = (validate.errors ?? [])
      .map((e) => `${e.instancePath || '/'} ${e.message}${e.keyword === 'additionalProperties' ? ` (${(e.params as { additionalProperty: string }).additionalProperty})` : ''}`)
      .join('; ');
    throw new ConfigError(`agent config: ${msg}`);
  }
  const r = raw as unknown as Raw;
  const abs = (p: string) => path.resolve(base, p);
  let token: string | undefined;
  let ca: string | undefined;
  try {
    token = resolveToken({ token: r.node?.token, tokenFile: r.node?.tokenFile ? abs(r.node.tokenFile) : undefined, env });
    ca = readCa(r.node?.ca ? abs(r.node.ca) : env.CHICAGO_CA);
  } catch (err) {
    if (err instanceof TokenFileError || err instanceof CaFileError) throw new ConfigError(`agent config: ${err.message}`);
    throw err;
  }
  if (!r.sources && !r.journald && !r.scripts) throw new ConfigError('agent config: / needs sources, journald or scripts');
  const topicOfTask = new Map<string, string>();
  const sources: SourceConfig[] = (r.sources ?? []).map((s, i) => {
    const seen = topicOfTask.get(s.task);
    if (seen !== undefined && seen !== s.topic) {
      throw new ConfigError(`agent config: /sources/${i} task ${s.task} ships to ${s.topic}, another source of it to ${seen}; a task has one topic`);
    }
    topicOfTask.set(s.task, s.topic);
    let multiline: MultilineConfig | undefined;
    if (s.multiline) {
      const m = s.multiline;
      if (!m.preset && !m.start && !m.continue) throw new ConfigError(`agent config: /sources/${i}/multiline needs preset, start or continue`);
      for (const key of ['start', 'continue'] as const) {
        if (m[key] === undefined) continue;
        try {
          new RegExp(m[key]!);
        } catch (err) {
          throw new ConfigError(`agent config: /sources/${i}/multiline/${key} is not a valid regular expression: ${(err as Error).message}`);
        }
      }
      multiline = { ...m, quietMs: m.quietMs ?? 1000, maxLines: m.maxLines ?? 500, maxBytes: m.maxBytes ?? 256 * 1024 };
    }
    let rotate: RotateConfig | undefined;
    if (s.rotate) {
      const ro = s.rotate;
      if (ro.maxBytes === undefined && ro.maxAgeMs === undefined) throw new ConfigError(`agent config: /sources/${i}/rotate needs maxBytes or maxAgeMs`);
      const mode = ro.mode ?? 'copytruncate';
      if (ro.signal && mode !== 'rename') throw new ConfigError(`agent config: /sources/${i}/rotate/signal goes with mode rename`);
      const signal = ro.signal ? { pidFile: abs(ro.signal.pidFile), signal: (ro.signal.signal ?? 'SIGHUP') as NodeJS.Signals } : undefined;
      if (signal && !(signal.signal in os.constants.signals)) throw new ConfigError(`agent config: /sources/${i}/rotate/signal/signal ${signal.signal} is not a signal`);
      rotate = { ...(ro.maxBytes !== undefined ? { maxBytes: ro.maxBytes } : {}), ...(ro.maxAgeMs !== undefined ? { maxAgeMs: ro.maxAgeMs } : {}), keep: ro.keep ?? 5, mode, ...(signal ? { signal } : {}), compress: ro.compress ?? false };
    }
    if (s.key && 'regex' in s.key) {
      try {
        new RegExp(s.key.regex);
      } catch (err) {
        throw new ConfigError(`agent config: /sources/${i}/key/regex is not a valid regular expression: ${(err as Error).message}`);
      }
    }
    return { task: s.task, topic: s.topic, paths: s.paths.map(abs), ...(multiline ? { multiline } : {}), ...(s.parse ? { parse: s.parse } : {}), ...(rotate ? { rotate } : {}), ...(s.key ? { key: s.key } : {}) };
  });
  const journaldTasks = new Set<string>();
  const journald: JournaldConfig[] = (r.journald ?? []).map((j, i) => {
    const seen = topicOfTask.get(j.task);
    if (seen !== undefined && seen !== j.topic) {
      throw new ConfigError(`agent config: /journald/${i} task ${j.task} ships to ${j.topic}, another source of it to ${seen}; a task has one topic`);
    }
    topicOfTask.set(j.task, j.topic);
    // the task names the saved journal cursor
    if (journaldTasks.has(j.task)) throw new ConfigError(`agent config: /journald/${i} task ${j.task} has another journald source; one journald source per task`);
    journaldTasks.add(j.task);
    if (j.namespace !== undefined && j.directory !== undefined) throw new ConfigError(`agent config: /journald/${i} has namespace and directory; one journal per source`);
    return {
      task: j.task,
      topic: j.topic,
      units: j.units ?? [],
      identifiers: j.identifiers ?? [],
      matches: j.matches ?? [],
      from: j.from ?? 'tail',
      maxMessageBytes: j.maxMessageBytes ?? r.maxLineBytes ?? 1024 * 1024,
      ...(j.namespace !== undefined ? { namespace: j.namespace } : {}),
      ...(j.directory !== undefined ? { directory: abs(j.directory) } : {}),
    };
  });
  const retry = { minMs: r.retry?.minMs ?? 100, maxMs: r.retry?.maxMs ?? 5000 };
  if (retry.maxMs < retry.minMs) throw new ConfigError('agent config: retry.maxMs is below retry.minMs');
  const spool = {
    dir: abs(r.spool?.dir ?? './agent-spool'),
    quotaBytes: r.spool?.quotaBytes ?? 256 * 1024 * 1024,
    segmentBytes: r.spool?.segmentBytes ?? 16 * 1024 * 1024,
  };
  const host = r.host ?? hostName();
  const scripts = resolveScriptsConfig(r.scripts, host, abs);
  if (spool.segmentBytes * 2 > spool.quotaBytes) throw new ConfigError('agent config: spool.quotaBytes must be at least twice spool.segmentBytes');
  const monitor = resolveMonitorConfig(r, base, (msg) => { throw new ConfigError(`agent config: ${msg}`); });
  // health, alerts and scripts ship as tasks of their own: one sharing a source's task name must share its topic
  const own: Array<[string, string, string]> = [];
  if (monitor.health?.enabled) own.push(['/health/task', monitor.health.task, monitor.health.topic]);
  if (monitor.alerts) own.push(['/alerts/task', monitor.alerts.task, monitor.alerts.topic]);
  if (scripts) own.push(['/scripts (task scripts)', SCRIPTS_TASK, scripts.resultsTopic]);
  for (const [where, task, topic] of own) {
    const seen = topicOfTask.get(task);
    if (seen !== undefined && seen !== topic) throw new ConfigError(`agent config: ${where} ${task} ships to ${topic}, another source of it to ${seen}; a task has one topic`);
    topicOfTask.set(task, topic);
  }
  // a pattern on a task nothing ships would count nothing, and its rule never fire
  for (const [i, p] of (monitor.alerts?.logPatterns ?? []).entries()) {
    if (p.task !== undefined && !topicOfTask.has(p.task)) throw new ConfigError(`agent config: /alerts/logPatterns/${i}/task ${p.task} is no task of this agent (${[...topicOfTask.keys()].join(', ')})`);
  }
  return {
    node: {
      url: (r.node?.url ?? env.CHICAGO_URL ?? 'http://127.0.0.1:7070').replace(/\/+$/, ''),
      ...(token ? { token } : {}),
      ...(ca ? { ca } : {}),
      timeoutMs: r.node?.timeoutMs ?? 30_000,
    },
    host,
    spool,
    pollIntervalMs: r.pollIntervalMs ?? 250,
    rotatedIdleMs: r.rotatedIdleMs ?? 5000,
    maxLineBytes: r.maxLineBytes ?? 1024 * 1024,
    batch: { maxRecords: r.batch?.maxRecords ?? 5000, maxBytes: r.batch?.maxBytes ?? 4 * 1024 * 1024, lingerMs: r.batch?.lingerMs ?? 20, inFlightMax: r.batch?.inFlightMax ?? 4 },
    retry,
    topicPartitions: r.topicPartitions ?? 4,
    logLevel: r.logLevel ?? 'info',
    sources,
    ...(scripts ? { scripts } : {}),
    monitor,
    journald,
  };
}

export function loadAgentConfig(file: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  return resolveAgentConfig(parseConfigFile(file), path.dirname(path.resolve(file)), env);
}
