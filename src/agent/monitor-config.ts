// The `health`, `alerts` and `status` sections of the agent's config: their schema (part of the one
// schema in config.ts) and their resolved form with defaults.
import path from 'node:path';
import { type AlertRule, durationMs, parseWhen } from './alerts.js';
import type { WebhookConfig } from './webhook.js';

export interface AppConfig {
  name: string;
  /** the process: its pid in a file, the first process whose command line matches, or a pid */
  pidFile?: string;
  match?: string;
  pid?: number;
  /** app stats: a Prometheus text endpoint, or a command that prints JSON */
  prometheus?: string;
  command?: string[];
  timeoutMs: number;
}

export interface ServicesConfig {
  /** init.d scripts whose `status` exit code is reported (0 running, 3 stopped, …); 'all' = every script */
  initd?: string[] | 'all';
  initdDir: string;
  /** systemd units (`systemctl show`), used only when PID 1 is systemd */
  systemd?: string[];
  intervalMs: number;
  timeoutMs: number;
  concurrency: number;
}

export interface HealthConfig {
  enabled: boolean;
  intervalMs: number;
  topic: string;
  task: string;
  kvKeyspace: string;
  ttlSeconds: number;
  /** mount points to check; default every mounted filesystem that is not a pseudo one */
  mounts?: string[];
  apps: AppConfig[];
  services: ServicesConfig;
}

export interface LogPattern { name: string; task?: string; regex: string }

export interface AlertsConfig { topic: string; task: string; rules: AlertRule[]; logPatterns: LogPattern[]; webhook?: WebhookConfig }

export interface StatusConfig { host: string; port: number }

export interface MonitorConfig { health?: HealthConfig; alerts?: AlertsConfig; status?: StatusConfig }

const NAME = '^[A-Za-z0-9._-]{1,128}$';
const int = (minimum: number, maximum: number) => ({ type: 'integer', minimum, maximum });
const duration = { anyOf: [{ type: 'string', pattern: '^\\d+(\\.\\d+)?(ms|s|m|h)?$' }, { type: 'integer', minimum: 0, maximum: 86_400_000 }] };

export const healthSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    intervalMs: int(100, 3_600_000),
    topic: { type: 'string', pattern: NAME },
    task: { type: 'string', pattern: NAME },
    kvKeyspace: { type: 'string', pattern: NAME },
    ttlSeconds: int(1, 86_400),
    mounts: { type: 'array', maxItems: 1000, items: { type: 'string', minLength: 1 } },
    apps: {
      type: 'array',
      maxItems: 100,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: { type: 'string', pattern: NAME },
          pidFile: { type: 'string', minLength: 1 },
          match: { type: 'string', minLength: 1 },
          pid: int(1, 2 ** 22),
          prometheus: { type: 'string', pattern: '^https?://' },
          command: { type: 'array', minItems: 1, items: { type: 'string' } },
          timeoutMs: int(10, 60_000),
        },
      },
    },
    services: {
      type: 'object',
      additionalProperties: false,
      properties: {
        initd: { anyOf: [{ const: 'all' }, { type: 'array', maxItems: 1000, items: { type: 'string', pattern: NAME } }] },
        initdDir: { type: 'string', minLength: 1 },
        systemd: { type: 'array', maxItems: 1000, items: { type: 'string', pattern: '^[A-Za-z0-9@._:-]{1,256}$' } },
        intervalMs: int(1000, 3_600_000),
        timeoutMs: int(100, 600_000),
        concurrency: int(1, 64),
      },
    },
  },
} as const;

export const alertsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    topic: { type: 'string', pattern: NAME },
    task: { type: 'string', pattern: NAME },
    rules: {
      type: 'array',
      maxItems: 1000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'when'],
        properties: {
          name: { type: 'string', pattern: NAME },
          when: { type: 'string', minLength: 3 },
          for: duration,
          clear: { type: 'number' },
          clearFor: duration,
          severity: { type: 'string', pattern: NAME },
          description: { type: 'string', maxLength: 1000 },
        },
      },
    },
    logPatterns: {
      type: 'array',
      maxItems: 100,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'regex'],
        properties: { name: { type: 'string', pattern: NAME }, task: { type: 'string', pattern: NAME }, regex: { type: 'string', minLength: 1 } },
      },
    },
    webhook: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: {
        url: { type: 'string', pattern: '^https?://' },
        timeoutMs: int(100, 120_000),
        maxQueue: int(1, 100_000),
        maxAttempts: int(1, 100),
        retry: { type: 'object', additionalProperties: false, properties: { minMs: int(1, 60_000), maxMs: int(1, 3_600_000) } },
        headers: { type: 'object', additionalProperties: { type: 'string' } },
      },
    },
  },
} as const;

export const statusSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { listen: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):\\d{1,5}$' } },
} as const;

type RawApp = Omit<AppConfig, 'timeoutMs'> & { timeoutMs?: number };
interface RawHealth { intervalMs?: number; topic?: string; task?: string; kvKeyspace?: string; ttlSeconds?: number; mounts?: string[]; apps?: RawApp[]; services?: Partial<ServicesConfig> }
interface RawRule { name: string; when: string; for?: string | number; clear?: number; clearFor?: string | number; severity?: string; description?: string }
interface RawAlerts { topic?: string; task?: string; rules?: RawRule[]; logPatterns?: LogPattern[]; webhook?: Partial<Omit<WebhookConfig, 'retry'>> & { url: string; retry?: Partial<WebhookConfig['retry']> } }
export interface RawMonitor { health?: RawHealth; alerts?: RawAlerts; status?: { listen?: string } }

/** Checks what the schema cannot and fills in defaults; `fail` throws the config error. */
export function resolveMonitorConfig(r: RawMonitor, base: string, fail: (msg: string) => never): MonitorConfig {
  const out: MonitorConfig = {};
  const abs = (p: string) => path.resolve(base, p);
  if (r.health || r.alerts) {
    const h = r.health ?? {};
    const intervalMs = h.intervalMs ?? 10_000;
    const names = new Set<string>();
    const apps = (h.apps ?? []).map((a, i): AppConfig => {
      if (names.has(a.name)) fail(`/health/apps/${i} name ${a.name} is used twice`);
      names.add(a.name);
      const ways = [a.pidFile, a.match, a.pid].filter((x) => x !== undefined).length;
      if (ways > 1) fail(`/health/apps/${i} takes one of pidFile, match, pid`);
      if (ways === 0 && !a.prometheus && !a.command) fail(`/health/apps/${i} needs pidFile, match, pid, prometheus or command`);
      if (a.prometheus && a.command) fail(`/health/apps/${i} takes prometheus or command, not both`);
      if (a.match) checkRegex(a.match, `/health/apps/${i}/match`, fail);
      return { ...a, ...(a.pidFile ? { pidFile: abs(a.pidFile) } : {}), ...(a.command ? { command: a.command } : {}), timeoutMs: a.timeoutMs ?? 2000 };
    });
    const s = h.services ?? {};
    out.health = {
      enabled: r.health !== undefined,
      intervalMs,
      topic: h.topic ?? 'health',
      task: h.task ?? 'health',
      kvKeyspace: h.kvKeyspace ?? 'agent',
      // a host is gone once about three reports are missing
      ttlSeconds: h.ttlSeconds ?? Math.max(1, Math.ceil((3 * intervalMs) / 1000)),
      ...(h.mounts ? { mounts: h.mounts.map(abs) } : {}),
      apps,
      services: {
        ...(s.initd ? { initd: s.initd } : {}),
        initdDir: abs(s.initdDir ?? '/etc/init.d'),
        ...(s.systemd ? { systemd: s.systemd } : {}),
        intervalMs: s.intervalMs ?? 60_000,
        timeoutMs: s.timeoutMs ?? 5000,
        concurrency: s.concurrency ?? 4,
      },
    };
  }
  if (r.alerts) {
    const a = r.alerts;
    const seen = new Set<string>();
    const rules = (a.rules ?? []).map((x, i): AlertRule => {
      if (seen.has(x.name)) fail(`/alerts/rules/${i} name ${x.name} is used twice`);
      seen.add(x.name);
      let when;
      try {
        when = parseWhen(x.when);
      } catch (err) {
        fail(`/alerts/rules/${i}/when: ${(err as Error).message}`);
      }
      return {
        name: x.name,
        ...when,
        forMs: durationMs(x.for ?? 0),
        ...(x.clear !== undefined ? { clear: x.clear } : {}),
        clearForMs: durationMs(x.clearFor ?? 0),
        severity: x.severity ?? 'warning',
        ...(x.description ? { description: x.description } : {}),
      };
    });
    const logPatterns = a.logPatterns ?? [];
    logPatterns.forEach((p, i) => checkRegex(p.regex, `/alerts/logPatterns/${i}/regex`, fail));
    let webhook: WebhookConfig | undefined;
    if (a.webhook) {
      const w = a.webhook;
      const retry = { minMs: w.retry?.minMs ?? 500, maxMs: w.retry?.maxMs ?? 60_000 };
      if (retry.maxMs < retry.minMs) fail('/alerts/webhook/retry.maxMs is below retry.minMs');
      webhook = { url: w.url, timeoutMs: w.timeoutMs ?? 5000, maxQueue: w.maxQueue ?? 1000, maxAttempts: w.maxAttempts ?? 10, retry, headers: w.headers ?? {} };
    }
    out.alerts = { topic: a.topic ?? 'alerts', task: a.task ?? 'alerts', rules, logPatterns, ...(webhook ? { webhook } : {}) };
  }
  if (r.status) {
    const listen = r.status.listen ?? '127.0.0.1:9464';
    const i = listen.lastIndexOf(':');
    const port = Number(listen.slice(i + 1));
    if (port > 65535) fail(`/status/listen: port ${port} is out of range`);
    out.status = { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port };
  }
  return out;
}

function checkRegex(re: string, where: string, fail: (msg: string) => never): void {
  try {
    new RegExp(re);
  } catch (err) {
    fail(`${where} is not a valid regular expression: ${(err as Error).message}`);
  }
}
