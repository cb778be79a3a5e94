// The `scripts` section of the agent config: which scripts may run (by name and sha256), when, and
// with what limits. Resolved once at start; the sha256 is checked again at every run (scripts.ts).
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { Cron } from 'croner';
import { ConfigError } from '../runtime/config.js';
import { COMMAND_TOPIC_PREFIX } from '../runtime/tokens.js';

const NAME = '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$';
const int = (minimum: number, maximum: number) => ({ type: 'integer', minimum, maximum });
/** a list of at most 1000 objects with these keys and no others */
const listOf = <P extends object>(required: string[], properties: P) =>
  ({ type: 'array', maxItems: 1000, items: { type: 'object', additionalProperties: false, required, properties } }) as const;

/** the task of script output and results records */
export const SCRIPTS_TASK = 'scripts';

/** names the agent ships itself (scripts/agent/); a config's allow list may not reuse them */
export const BUILTIN_SCRIPTS = ['jstack', 'native-stack'] as const;

export interface RunAs { user: string; uid: number; gid: number; home: string }

export interface AllowedScript {
  name: string;
  /** lowercase hex; the file's bytes must hash to it at every run */
  sha256: string;
  timeoutMs: number;
  outputBytesMax: number;
  /** run as this user (uid/gid looked up at start); default the agent's own */
  runAs?: RunAs;
  cwd: string;
}

export interface ScheduleEntry { name: string; cron: string; args: string[] }

export interface ScriptsConfig {
  dirs: string[];
  allow: AllowedScript[];
  schedule: ScheduleEntry[];
  /** true: commands run; false: refused; 'auto': run only when the node refuses requests without a token */
  remote: { enabled: boolean | 'auto' };
  resultsTopic: string;
  /** per-host topic the agent reads commands from: agent.commands.<host> (fixed: the node guards that prefix) */
  commandsTopic: string;
  builtins: boolean;
  /** runs at once, all triggers together; a command past it is answered 'busy', a tick is skipped */
  runsMax: number;
  /** after SIGTERM to the run's process group, SIGKILL this much later */
  killGraceMs: number;
  output: { chunkBytes: number; lingerMs: number };
  /** where each run's verified copy of its script is executed from (a fresh 0755 dir per run) */
  runDir: string;
  /** the default timeout and output cap of built-in scripts */
  builtinTimeoutMs: number;
}

export const scriptsConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    dirs: { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 64 },
    allow: listOf(['name', 'sha256'], {
      name: { type: 'string', pattern: NAME },
      sha256: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' },
      timeoutMs: int(100, 24 * 3_600_000),
      outputBytesMax: int(0, 1024 * 1024 * 1024),
      user: { type: 'string', pattern: '^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}$' },
      cwd: { type: 'string', minLength: 1 },
    }),
    schedule: listOf(['name', 'cron'], {
      name: { type: 'string', pattern: NAME },
      cron: { type: 'string', minLength: 1 },
      args: { type: 'array', maxItems: 64, items: { type: 'string', maxLength: 4096 } },
    }),
    remote: { type: 'object', additionalProperties: false, properties: { enabled: { type: 'boolean' } } },
    resultsTopic: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' },
    builtins: { type: 'boolean' },
    runsMax: int(1, 256),
    killGraceMs: int(0, 600_000),
    output: {
      type: 'object',
      additionalProperties: false,
      properties: { chunkBytes: int(256, 1024 * 1024), lingerMs: int(0, 10_000) },
    },
    runDir: { type: 'string', minLength: 1 },
  },
} as const;

interface Raw {
  dirs?: string[];
  allow?: Array<{ name: string; sha256: string; timeoutMs?: number; outputBytesMax?: number; user?: string; cwd?: string }>;
  schedule?: Array<{ name: string; cron: string; args?: string[] }>;
  remote?: { enabled?: boolean };
  resultsTopic?: string;
  builtins?: boolean;
  runsMax?: number;
  killGraceMs?: number;
  output?: { chunkBytes?: number; lingerMs?: number };
  runDir?: string;
}

/** uid, gid and home of a user, from NSS (`getent passwd`), so LDAP users resolve as well as local ones. */
export function lookupUser(user: string): RunAs {
  let line: string;
  try {
    line = execFileSync('getent', ['passwd', user], { encoding: 'utf8', timeout: 5000 }).split('\n')[0];
  } catch {
    throw new ConfigError(`agent config: scripts: user ${user} does not exist (getent passwd ${user})`);
  }
  const f = line.split(':');
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (f.length < 7 || !Number.isInteger(uid) || !Number.isInteger(gid)) throw new ConfigError(`agent config: scripts: cannot read user ${user} from getent: ${line}`);
  return { user, uid, gid, home: f[5] || '/' };
}

/** Checks and completes a validated `scripts` section; `abs` resolves paths against the config's directory. */
export function resolveScriptsConfig(r: Raw | undefined, host: string, abs: (p: string) => string): ScriptsConfig | undefined {
  if (r === undefined) return undefined;
  const commandsTopic = COMMAND_TOPIC_PREFIX + host;
  if (commandsTopic.length > 128) throw new ConfigError(`agent config: host ${host} is too long for its command topic ${commandsTopic} (names are at most 128 characters)`);
  const builtins = r.builtins ?? true;
  const allow: AllowedScript[] = [];
  const seen = new Set<string>();
  for (const [i, a] of (r.allow ?? []).entries()) {
    if (seen.has(a.name)) throw new ConfigError(`agent config: /scripts/allow/${i} ${a.name} is listed twice`);
    if (builtins && (BUILTIN_SCRIPTS as readonly string[]).includes(a.name)) {
      throw new ConfigError(`agent config: /scripts/allow/${i} ${a.name} is a built-in script's name (set scripts.builtins: false to use your own)`);
    }
    seen.add(a.name);
    allow.push({
      name: a.name,
      sha256: a.sha256.toLowerCase(),
      timeoutMs: a.timeoutMs ?? 60_000,
      outputBytesMax: a.outputBytesMax ?? 1024 * 1024,
      ...(a.user !== undefined ? { runAs: lookupUser(a.user) } : {}),
      cwd: abs(a.cwd ?? '/'),
    });
  }
  const schedule: ScheduleEntry[] = (r.schedule ?? []).map((s, i) => {
    if (!seen.has(s.name) && !(builtins && (BUILTIN_SCRIPTS as readonly string[]).includes(s.name))) {
      throw new ConfigError(`agent config: /scripts/schedule/${i} ${s.name} is not on scripts.allow`);
    }
    try {
      new Cron(s.cron, { paused: true }).stop();
    } catch (err) {
      throw new ConfigError(`agent config: /scripts/schedule/${i} cron ${JSON.stringify(s.cron)}: ${(err as Error).message}`);
    }
    return { name: s.name, cron: s.cron, args: s.args ?? [] };
  });
  if (allow.length > 0 && (r.dirs ?? []).length === 0) throw new ConfigError('agent config: scripts.allow needs scripts.dirs (where the scripts are)');
  return {
    dirs: (r.dirs ?? []).map(abs),
    allow,
    schedule,
    remote: { enabled: r.remote?.enabled ?? 'auto' },
    resultsTopic: r.resultsTopic ?? 'agent.scripts',
    commandsTopic,
    builtins,
    runsMax: r.runsMax ?? 4,
    killGraceMs: r.killGraceMs ?? 2000,
    output: { chunkBytes: r.output?.chunkBytes ?? 64 * 1024, lingerMs: r.output?.lingerMs ?? 5 },
    runDir: abs(r.runDir ?? os.tmpdir()),
    builtinTimeoutMs: 30_000,
  };
}
