// The one place where command lines are parsed and their values checked.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './errors.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;
type Value = string | boolean | Array<string | boolean> | undefined;

export interface Parsed {
  command: string;
  positionals: string[];
  values: Record<string, Value>;
}

export interface Command {
  /** as typed: 'kv put', 'tail' */
  name: string;
  /** what follows the name in the usage line */
  synopsis: string;
  summary: string;
  /** more on flags and behaviour, shown by `chicago help COMMAND` */
  details?: string;
  options: OptionSpec;
  /** how many positionals the command takes */
  args: readonly [min: number, max: number];
  run(p: Parsed): Promise<void>;
}

/** Options every command that talks to a node takes. */
export const clientOptions = {
  url: { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  ca: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies OptionSpec;

export const helpOption = { help: { type: 'boolean', short: 'h' } } as const satisfies OptionSpec;

/**
 * `--offset -10` as `--offset=-10`: a negative number after a flag that takes a value is that value
 * (kcat's `-o -10`), where parseArgs would call it ambiguous.
 */
function joinNegativeValues(cmd: Command, argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const name = a.startsWith('--') ? a.slice(2) : undefined;
    const next = argv[i + 1];
    if (name !== undefined && !name.includes('=') && cmd.options[name]?.type === 'string' && next !== undefined && /^-\d+(\.\d+)?$/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(a);
  }
  return out;
}

export function parse(cmd: Command, argv: string[]): Parsed {
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(cmd, argv), options: { ...cmd.options, ...helpOption }, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs names the offending flag in its message; that is what the user needs.
    throw new UsageError((err as Error).message, cmd.name);
  }
  const { positionals, values } = parsed;
  if (values.help) return { command: cmd.name, positionals, values };
  const [min, max] = cmd.args;
  if (positionals.length < min) throw new UsageError(`${cmd.name}: missing arguments`, cmd.name);
  if (positionals.length > max) {
    throw new UsageError(`${cmd.name}: unexpected argument '${positionals[max]}'`, cmd.name);
  }
  return { command: cmd.name, positionals, values };
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

export function list(p: Parsed, name: string): string[] {
  const v = p.values[name];
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

export function int(p: Parsed, name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  const n = /^-?\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got '${v}'`, p.command);
  }
  return n;
}

/** One of a fixed set of words. */
export function choice<T extends string>(p: Parsed, name: string, allowed: readonly T[]): T | undefined {
  const v = str(p, name);
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`--${name} must be one of ${allowed.join('|')}, got '${v}'`, p.command);
  }
  return v as T;
}

const unitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** '250' (ms), '250ms', '5s', '1.5m', '2h', '1d' → milliseconds; undefined when not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * unitMs[m[2] ?? 'ms']);
}

/**
 * A point in time as ms since the epoch: an ISO date, a relative age ('5m' = five minutes ago)
 * or a bare integer taken as an epoch in ms.
 */
export function parseTime(text: string, nowMs: number): number | undefined {
  if (/^\d+$/.test(text)) return Number(text);
  const age = parseDuration(text);
  if (age !== undefined) return nowMs - age;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}
