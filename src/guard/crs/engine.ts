// The OWASP Core Rule Set evaluated from access-log fields: `compile()` loads the rules once
// (paranoia gates and configuration folded away, unevaluable rules set aside with a reason),
// `evaluate()` runs the rest on one request with no I/O and returns the anomaly score.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { strict as assert } from 'node:assert';
import { parseRules, parseOperator, type Action, type RawRule, type Variable, type Directive } from './parse.js';
import { compileOperator, UNEVALUABLE_OPERATORS, type CompiledOperator, type OpFn } from './operators.js';
import { TRANSFORMS, type Transform, uriDecode, urlDecode } from './transforms.js';
import { compilePcre, enableLinearEngine, type RegexMode } from './regex.js';

export const DEBIAN_CRS_RULES_DIR = '/usr/share/modsecurity-crs/rules';
export const DEBIAN_CRS_SETUP = '/etc/modsecurity/crs/crs-setup.conf';
/** Headers a JSON access log carries by default: $http_user_agent, $http_referer, $host. */
export const DEFAULT_LOGGED_HEADERS = ['user-agent', 'referer', 'host'] as const;

export interface CompileOptions {
  /** CRS paranoia level 1–4 (tx.paranoia_level); default 1 */
  paranoiaLevel?: number;
  /** tx.inbound_anomaly_score_threshold; default 5 */
  inboundThreshold?: number;
  /** lower-case names of the request headers the log carries; rules reading any other header are set aside */
  loggedHeaders?: readonly string[];
  /** further crs-setup.conf settings (tx.<name>), e.g. { arg_length: 400, crs_validate_utf8_encoding: 1 } */
  setup?: Readonly<Record<string, string | number>>;
  /** crs-setup.conf to read before the rules; default the Debian one when present, null for none */
  setupFile?: string | null;
  /** longest input a pattern the linear engine refuses may see on the backtracking engine; default 1024 */
  backtrackCapBytes?: number;
  /** 'fallback' (default): backtracking engine that V8 moves to the linear one on excessive backtracking; 'linear': linear engine only */
  regexMode?: RegexMode;
  /** longest value (URI, header) inspected, in bytes; the rest is not looked at and the verdict says `truncated`; default 8192 (nginx's large_client_header_buffers) */
  maxValueBytes?: number;
}

export interface GuardRequest {
  method: string;
  /** the request target as sent ($request_uri) */
  uri: string;
  /** HTTP/1.1 … ($server_protocol) */
  protocol: string;
  /** header name → value, for the headers the log carries */
  headers: Record<string, string>;
  /** client address ($remote_addr), for the few rules that look at it */
  remoteAddr?: string;
}

export interface MatchedRule {
  id: number;
  msg: string;
  severity: string;
}

export interface Verdict {
  score: number;
  matched: MatchedRule[];
  blocked: boolean;
  /** a value was longer than maxValueBytes and only its start was inspected */
  truncated: boolean;
}

export interface SetAside {
  id: number;
  file: string;
  reason: string;
}

export interface RulesetStats {
  /** rules (chain heads) in the files read */
  total: number;
  /** evaluated per request */
  active: number;
  activeIds: number[];
  /** folded at compile time (configuration, paranoia gates) */
  folded: number;
  /** skipped by the paranoia level or a disabled exclusion package */
  gatedOff: number;
  setAside: SetAside[];
  /** evaluated on the variables a log line has; some of their targets (bodies, XML, files) are not */
  partial: number[];
  /** @rx engines: linear, linear-widened, backtracking-capped */
  regexEngines: Record<string, number[]>;
  /** atomic groups / possessive quantifiers relaxed */
  relaxed: number[];
  /** @rx rules whose regex runs only when one of its required literals is present */
  prefiltered: number[];
  /** active rules reading every request header (REQUEST_HEADERS or REQUEST_HEADERS_NAMES without a key) */
  allHeaders: number[];
}

// ---------------------------------------------------------------------------------------------

interface Target {
  name: string;
  key?: string;
  keyRe?: RegExp;
  count: boolean;
}

interface SetVar {
  del: boolean;
  /** lower case, may hold macros */
  name: string;
  op: '=' | '+' | '-';
  value: string;
}

interface Link {
  targets: Target[];
  excludes: Target[];
  transforms: Transform[];
  /** id of the transformation chain (cache key) */
  tkey: number;
  multiMatch: boolean;
  opName: string;
  opArg: string;
  op: OpFn | null;
  negated: boolean;
  capture: boolean;
  setvars: SetVar[];
  engineOff: boolean;
  /** the next link reads MATCHED_VARS: collect every match */
  collectAll: boolean;
  next?: Link;
}

interface Rule {
  id: number;
  phase: number;
  msg: string;
  severity: string;
  log: boolean;
  marker?: string;
  skipAfter?: string;
  /** index to continue at after skipAfter, in this rule's phase list */
  skipTo: number;
  head: Link;
  file: string;
}

export interface Ruleset {
  readonly phases: readonly (readonly Rule[])[];
  readonly template: ReadonlyMap<string, string>;
  readonly threshold: number;
  readonly paranoiaLevel: number;
  readonly loggedHeaders: ReadonlySet<string>;
  readonly stats: RulesetStats;
  /** runtime-compiled operators for arguments with request-dependent macros */
  readonly dynamicOps: Map<string, OpFn>;
  readonly backtrackCapBytes: number;
  readonly regexMode: RegexMode;
  readonly maxValueBytes: number;
  readonly rulesDir: string;
}

/** Variables a log line provides (besides TX and the MATCHED_* ones). */
const LOG_VARIABLES = new Set([
  'REQUEST_URI', 'REQUEST_URI_RAW', 'REQUEST_FILENAME', 'REQUEST_BASENAME', 'REQUEST_LINE', 'REQUEST_METHOD',
  'REQUEST_PROTOCOL', 'ARGS', 'ARGS_NAMES', 'ARGS_GET', 'ARGS_GET_NAMES', 'QUERY_STRING', 'REQUEST_HEADERS',
  'REQUEST_HEADERS_NAMES', 'REQUEST_COOKIES', 'REQUEST_COOKIES_NAMES', 'REMOTE_ADDR', 'PATH_INFO', 'SERVER_NAME',
]);
const STATE_VARIABLES = new Set(['TX', 'MATCHED_VAR', 'MATCHED_VAR_NAME', 'MATCHED_VARS', 'MATCHED_VARS_NAMES']);
const BODY_VARIABLES = new Set([
  'REQUEST_BODY', 'REQUEST_BODY_LENGTH', 'ARGS_POST', 'ARGS_POST_NAMES', 'FILES', 'FILES_NAMES', 'FILES_SIZES',
  'FILES_COMBINED_SIZE', 'FILES_TMPNAMES', 'FILES_TMP_CONTENT', 'XML', 'MULTIPART_PART_HEADERS', 'MULTIPART_STRICT_ERROR',
  'MULTIPART_UNMATCHED_BOUNDARY', 'REQBODY_PROCESSOR', 'REQBODY_ERROR', 'REQBODY_PROCESSOR_ERROR', 'ARGS_COMBINED_SIZE',
  'MULTIPART_FILENAME', 'MULTIPART_NAME', 'INBOUND_DATA_ERROR', 'URLENCODED_ERROR',
]);
const COLLECTION_STATE = new Set(['IP', 'GLOBAL', 'SESSION', 'USER', 'RESOURCE', 'GEO']);
const SEVERITY_NAMES: Record<string, string> = { 0: 'EMERGENCY', 1: 'ALERT', 2: 'CRITICAL', 3: 'ERROR', 4: 'WARNING', 5: 'NOTICE', 6: 'INFO', 7: 'DEBUG' };

function chainLinks(r: RawRule): RawRule[] {
  const out: RawRule[] = [];
  for (let l: RawRule | undefined = r; l; l = l.chained) out.push(l);
  return out;
}

function action(r: RawRule, name: string): string | undefined {
  const a = r.actions.find((x) => x.name.toLowerCase() === name);
  return a === undefined ? undefined : (a.value ?? '');
}

function macroRefs(s: string): string[] {
  return [...s.matchAll(/%\{([^}]+)\}/g)].map((m) => m[1].toLowerCase());
}

/** Why a rule cannot run from a log line, or null. */
function unevaluableReason(r: RawRule, logged: ReadonlySet<string>, phase: number): string | null {
  if (phase >= 3) return 'response phase';
  for (const l of chainLinks(r)) {
    if (r.kind === 'action' && l === r) continue;
    const op = l.operator.name.toLowerCase();
    if (UNEVALUABLE_OPERATORS.has(op)) return op === 'detectsqli' || op === 'detectxss' ? `@${l.operator.name} (libinjection)` : `@${l.operator.name}`;
    const usable = l.variables.filter((v) => !v.exclude && variableUsable(v, logged));
    if (usable.length > 0) continue;
    const first = l.variables.find((v) => !v.exclude);
    if (first === undefined) return 'no variables';
    if (BODY_VARIABLES.has(first.name) || first.name.startsWith('MULTIPART')) return 'request body';
    if (COLLECTION_STATE.has(first.name)) return 'persistent collections (IP/GLOBAL/GEO)';
    if (first.name === 'REQUEST_HEADERS' || first.name === 'REQUEST_HEADERS_NAMES') return 'header not in the log';
    if (first.name.startsWith('REQUEST_COOKIES')) return 'cookies not in the log';
    return `variable ${first.name}`;
  }
  return null;
}

function variableUsable(v: Variable, logged: ReadonlySet<string>): boolean {
  if (STATE_VARIABLES.has(v.name)) return true;
  if (!LOG_VARIABLES.has(v.name)) return false;
  if (v.name === 'REQUEST_HEADERS' && v.key !== undefined) return logged.has(v.key.toLowerCase());
  if (v.name.startsWith('REQUEST_COOKIES')) return logged.has('cookie');
  return true;
}

function readDirectives(rulesDir: string, setupFile: string | null): Directive[] {
  const out: Directive[] = [];
  if (setupFile !== null && existsSync(setupFile)) out.push(...parseRules(readFileSync(setupFile, 'latin1'), setupFile));
  const files = readdirSync(rulesDir).filter((f) => f.endsWith('.conf')).sort();
  for (const f of files) out.push(...parseRules(readFileSync(join(rulesDir, f), 'latin1'), f));
  return out;
}

function compileTarget(v: Variable): Target {
  const t: Target = { name: v.name, count: v.count };
  if (v.key !== undefined) t.key = v.key.toLowerCase();
  if (v.keyRegex !== undefined) t.keyRe = compilePcre('(?i)' + v.keyRegex, 4096).re; // collection keys are case-insensitive
  return t;
}

const transformIds = new Map<string, number>();

function compileLink(r: RawRule, logged: ReadonlySet<string>, defaults: Action[], isHead: boolean): Link {
  const actions = isHead ? [...defaults.filter((a) => a.name.toLowerCase() === 't'), ...r.actions] : r.actions;
  let transforms: Transform[] = [];
  const names: string[] = [];
  for (const a of actions) {
    if (a.name.toLowerCase() !== 't') continue;
    const t = (a.value ?? '').toLowerCase();
    if (t === 'none') { transforms = []; names.length = 0; continue; }
    const fn = TRANSFORMS[t];
    if (fn === undefined) throw new Error(`transformation t:${a.value} is not supported (${r.file}:${r.line})`);
    transforms.push(fn);
    names.push(t);
  }
  const tname = names.join(',');
  let tkey = transformIds.get(tname);
  if (tkey === undefined) { tkey = transformIds.size; transformIds.set(tname, tkey); }
  const setvars: SetVar[] = [];
  for (const a of r.actions) {
    if (a.name.toLowerCase() !== 'setvar' || a.value === undefined) continue;
    let s = a.value;
    const del = s.startsWith('!');
    if (del) s = s.slice(1);
    const eq = s.indexOf('=');
    const name = (eq < 0 ? s : s.slice(0, eq)).trim().toLowerCase();
    let value = eq < 0 ? '1' : s.slice(eq + 1);
    let op: SetVar['op'] = '=';
    if (value.startsWith('+')) { op = '+'; value = value.slice(1); } else if (value.startsWith('-')) { op = '-'; value = value.slice(1); }
    if (!name.startsWith('tx.')) continue; // IP/GLOBAL collections are not kept
    setvars.push({ del, name: name.slice(3), op, value });
  }
  const vars = r.kind === 'action' ? [] : r.variables;
  return {
    targets: vars.filter((v) => !v.exclude && variableUsable(v, logged)).map(compileTarget),
    excludes: vars.filter((v) => v.exclude).map(compileTarget),
    transforms,
    tkey,
    multiMatch: r.actions.some((a) => a.name.toLowerCase() === 'multimatch'),
    opName: r.operator.name,
    opArg: r.operator.arg,
    op: null,
    negated: r.operator.negated,
    capture: r.actions.some((a) => a.name.toLowerCase() === 'capture'),
    setvars,
    engineOff: r.actions.some((a) => a.name.toLowerCase() === 'ctl' && /^ruleengine\s*=\s*off$/i.test(a.value ?? '')),
    collectAll: r.chained !== undefined && r.chained.variables.some((v) => v.name === 'MATCHED_VARS' || v.name === 'MATCHED_VARS_NAMES'),
    next: r.chained ? compileLink(r.chained, logged, defaults, false) : undefined,
  };
}

/** TX keys a rule reads (variables and macros) and writes (setvar). */
function txUse(r: RawRule): { reads: string[]; readsRequest: boolean; writes: string[] } {
  const reads: string[] = [];
  const writes: string[] = [];
  let readsRequest = false;
  for (const l of chainLinks(r)) {
    for (const v of l.variables) {
      if (v.exclude) continue;
      if (v.name === 'TX') {
        if (v.key === undefined || v.keyRegex !== undefined) readsRequest = true; // whole collection / by regex
        else if (/^\d$/.test(v.key)) readsRequest = true; // captures
        else reads.push(v.key.toLowerCase());
      } else readsRequest = true;
    }
    for (const m of macroRefs(l.operator.arg)) m.startsWith('tx.') && !/^tx\.\d$/.test(m) ? reads.push(m.slice(3)) : (readsRequest = true);
    for (const a of l.actions) {
      if (a.name.toLowerCase() !== 'setvar' || a.value === undefined) continue;
      for (const m of macroRefs(a.value)) m.startsWith('tx.') && !/^tx\.\d$/.test(m) ? reads.push(m.slice(3)) : (readsRequest = true);
      const name = a.value.replace(/^!/, '').split('=')[0].trim().toLowerCase();
      if (name.startsWith('tx.')) writes.push(name.slice(3));
    }
  }
  return { reads, readsRequest, writes };
}

export function compile(rulesDir: string = DEBIAN_CRS_RULES_DIR, options: CompileOptions = {}): Ruleset {
  enableLinearEngine();
  const paranoiaLevel = options.paranoiaLevel ?? 1;
  const threshold = options.inboundThreshold ?? 5;
  assert(Number.isInteger(paranoiaLevel) && paranoiaLevel >= 1 && paranoiaLevel <= 4, 'paranoiaLevel is 1–4');
  assert(Number.isInteger(threshold) && threshold >= 1, 'inboundThreshold is a positive integer');
  const logged = new Set((options.loggedHeaders ?? DEFAULT_LOGGED_HEADERS).map((h) => h.toLowerCase()));
  const backtrackCapBytes = options.backtrackCapBytes ?? 1024;
  const regexMode = options.regexMode ?? 'fallback';
  const maxValueBytes = options.maxValueBytes ?? 8192;
  assert(maxValueBytes >= 256, 'maxValueBytes is at least 256');
  const setupFile = options.setupFile === undefined ? DEBIAN_CRS_SETUP : options.setupFile;
  const directives = readDirectives(rulesDir, setupFile);

  let defaults: Action[] = [];
  interface Entry { raw?: RawRule; marker?: string; phase: number; id: number }
  const entries: Entry[] = [];
  const stats: RulesetStats = { total: 0, active: 0, activeIds: [], folded: 0, gatedOff: 0, setAside: [], partial: [], regexEngines: {}, relaxed: [], prefiltered: [], allHeaders: [] };
  for (const d of directives) {
    if (d.kind === 'defaultAction') { defaults = d.actions; continue; }
    if (d.kind === 'marker') { entries.push({ marker: d.name, phase: 0, id: 0 }); continue; }
    if (d.kind !== 'rule') continue;
    const r = d.rule;
    const phaseStr = action(r, 'phase') ?? defaults.find((a) => a.name === 'phase')?.value ?? '2';
    const phase = phaseStr === 'request' ? 2 : phaseStr === 'response' ? 4 : Number(phaseStr);
    const id = Number(action(r, 'id') ?? 0);
    stats.total++;
    entries.push({ raw: r, phase, id });
  }

  // Which TX keys depend on the request: written by a rule that reads the request, to a fixpoint.
  // Rules that never run (gated off, set aside) are left out, so a second pass may fold more.
  const uses = new Map<Entry, ReturnType<typeof txUse>>();
  for (const e of entries) if (e.raw) uses.set(e, txUse(e.raw));
  const dynamicKeysOf = (skip: ReadonlySet<Entry>): Set<string> => {
    const keys = new Set<string>();
    for (let changed = true; changed;) {
      changed = false;
      for (const e of entries) {
        if (!e.raw || skip.has(e)) continue;
        const u = uses.get(e)!;
        if (!u.readsRequest && !u.reads.some((k) => keys.has(k))) continue;
        for (const w of u.writes) if (!keys.has(w)) { keys.add(w); changed = true; }
      }
    }
    return keys;
  };

  const opOptions = { rulesDir, backtrackCapBytes, regexMode };
  const build = (dynamicKeys: ReadonlySet<string>) => {
    const isDynamic = (e: Entry) => {
      const u = uses.get(e)!;
      return u.readsRequest || u.reads.some((k) => dynamicKeys.has(k));
    };
    // Configuration the way crs-setup.conf gives it (rules 900000 and 900110).
    const template = new Map<string, string>([
      ['paranoia_level', String(paranoiaLevel)],
      ['inbound_anomaly_score_threshold', String(threshold)],
    ]);
    for (const [k, v] of Object.entries(options.setup ?? {})) template.set(k.toLowerCase(), String(v));
    const staticCtx = new Ctx(null, template, template, logged, maxValueBytes);
    const phases: Rule[][] = [[], [], [], []];
    const seenSetAside = new Set<number>();
    const neverRun = new Set<Entry>();
    const st = { folded: 0, gatedOff: 0, setAside: [] as SetAside[] };
    for (const phase of [1, 2]) {
      const list = entries.filter((e) => e.marker !== undefined || e.phase === phase);
      for (let i = 0; i < list.length; i++) {
        const e = list[i];
        if (e.marker !== undefined) {
          phases[phase - 1].push({ id: 0, phase, msg: '', severity: '', log: false, marker: e.marker, skipTo: -1, head: null as unknown as Link, file: '' });
          continue;
        }
        const raw = e.raw!;
        const reason = unevaluableReason(raw, logged, phase);
        if (reason !== null) {
          if (!seenSetAside.has(e.id)) st.setAside.push({ id: e.id, file: raw.file, reason });
          seenSetAside.add(e.id);
          neverRun.add(e);
          continue;
        }
        const rule = toRule(raw, e, logged, defaults);
        if (!isDynamic(e)) {
          st.folded++;
          const hit = runRule(rule, staticCtx, { rulesDir, backtrackCapBytes, regexMode, dynamicOps: new Map() });
          if (hit && rule.skipAfter !== undefined) {
            let j = i + 1;
            while (j < list.length && list[j].marker !== rule.skipAfter) {
              if (list[j].raw) { neverRun.add(list[j]); if (!seenSetAside.has(list[j].id)) st.gatedOff++; }
              j++;
            }
            i = j - 1;
          }
          continue;
        }
        phases[phase - 1].push(rule);
      }
    }
    for (const e of entries) if (e.raw && e.phase >= 3) neverRun.add(e);
    return { phases, template, staticCtx, seenSetAside, neverRun, st };
  };
  let dynamicKeys = dynamicKeysOf(new Set());
  let built = build(dynamicKeys);
  for (let pass = 0; pass < 4; pass++) {
    const next = dynamicKeysOf(built.neverRun);
    if (next.size === dynamicKeys.size) break;
    dynamicKeys = next;
    built = build(dynamicKeys);
  }
  const { phases, template, staticCtx, seenSetAside } = built;
  stats.folded = built.st.folded;
  stats.gatedOff = built.st.gatedOff;
  stats.setAside = built.st.setAside;
  // every response-phase rule is set aside too
  for (const e of entries) {
    if (e.raw && e.phase >= 3 && !seenSetAside.has(e.id)) {
      stats.setAside.push({ id: e.id, file: e.raw.file, reason: 'response phase' });
      seenSetAside.add(e.id);
    }
  }

  // Rules whose only effect is a TX variable no remaining rule reads (IP-collection keys, sampling).
  for (let removed = true; removed;) {
    removed = false;
    const reads = new Set<string>(['anomaly_score']);
    const readRes: RegExp[] = [];
    for (const list of phases) for (const r of list) {
      for (let l: Link | undefined = r.marker === undefined ? r.head : undefined; l; l = l.next) {
        for (const t of l.targets) if (t.name === 'TX') { if (t.key !== undefined) reads.add(t.key); else readRes.push(t.keyRe ?? /(?:)/); }
        for (const m of [...macroRefs(l.opArg), ...macroRefs(r.msg), ...l.setvars.flatMap((sv) => macroRefs(sv.value + sv.name))]) if (m.startsWith('tx.')) reads.add(m.slice(3));
      }
    }
    const used = (name: string) => reads.has(name) || readRes.some((re) => name.includes('%{') || re.test(name));
    for (const list of phases) {
      for (let i = list.length - 1; i >= 0; i--) {
        const r = list[i];
        if (r.marker !== undefined || r.log || r.skipAfter !== undefined) continue;
        let effect = false;
        for (let l: Link | undefined = r.head; l; l = l.next) if (l.engineOff || l.setvars.some((sv) => used(sv.name))) effect = true;
        if (effect) continue;
        list.splice(i, 1);
        stats.folded++;
        removed = true;
      }
    }
  }

  // Operators, with configuration macros expanded; skip targets resolved.
  for (const list of phases) {
    list.forEach((rule, idx) => {
      if (rule.marker !== undefined) return;
      stats.active++;
      stats.activeIds.push(rule.id);
      if (rule.skipAfter !== undefined) {
        const at = list.findIndex((r, j) => j > idx && r.marker === rule.skipAfter);
        rule.skipTo = at < 0 ? list.length : at;
      }
      for (let l: Link | undefined = rule.head; l; l = l.next) {
        const refs = macroRefs(l.opArg);
        if (refs.every((m) => m.startsWith('tx.') && !dynamicKeys.has(m.slice(3)) && !/^tx\.\d$/.test(m))) {
          const arg = staticCtx.expand(l.opArg);
          const c: CompiledOperator = compileOperator(l.opName, arg, opOptions);
          l.op = c.fn;
          if (l.opName === 'rx') {
            (stats.regexEngines[c.engine] ??= []).push(rule.id);
            if (c.relaxed) stats.relaxed.push(rule.id);
            if (c.prefiltered) stats.prefiltered.push(rule.id);
          }
        }
      }
      const partial = (raw: RawRule | undefined): boolean => raw !== undefined && raw.variables.some((v) => !v.exclude && !variableUsable(v, logged));
      const raw = entries.find((e) => e.id === rule.id && e.raw)?.raw;
      if (raw && chainLinks(raw).some((l) => partial(l))) stats.partial.push(rule.id);
      if (raw && chainLinks(raw).some((l) => l.variables.some((v) => !v.exclude && v.key === undefined && v.keyRegex === undefined && (v.name === 'REQUEST_HEADERS' || v.name === 'REQUEST_HEADERS_NAMES')))) stats.allHeaders.push(rule.id);
    });
  }
  return {
    phases: phases.slice(0, 2),
    template,
    threshold: Number(template.get('inbound_anomaly_score_threshold') ?? threshold),
    paranoiaLevel,
    loggedHeaders: logged,
    stats,
    dynamicOps: new Map(),
    backtrackCapBytes,
    regexMode,
    maxValueBytes,
    rulesDir,
  };
}

function toRule(raw: RawRule, e: { id: number; phase: number }, logged: ReadonlySet<string>, defaults: Action[]): Rule {
  const sev = action(raw, 'severity') ?? '';
  return {
    id: e.id,
    phase: e.phase,
    msg: action(raw, 'msg') ?? '',
    severity: (SEVERITY_NAMES[sev] ?? sev).toUpperCase(),
    log: raw.actions.every((a) => a.name.toLowerCase() !== 'nolog'),
    skipAfter: chainLinks(raw).map((l) => action(l, 'skipafter')).find((x) => x !== undefined),
    skipTo: -1,
    head: compileLink(raw, logged, defaults, true),
    file: raw.file,
  };
}

// ---------------------------------------------------------------------------------------------

interface Value {
  name: string;
  /** collection name (ARGS, TX …) */
  coll: string;
  /** key within the collection, lower case ('' for scalars) */
  key: string;
  raw: string;
  cache?: Map<number, string>;
}

interface RunOptions {
  rulesDir: string;
  backtrackCapBytes: number;
  regexMode: RegexMode;
  dynamicOps: Map<string, OpFn>;
}

const NON_ASCII = /[^\x00-\x7f]/;
/** JS string from a log → byte string (one char per byte), as ModSecurity sees the request. */
function bytes(s: string): string {
  return NON_ASCII.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

class Ctx {
  private readonly colls = new Map<string, Value[]>();
  matchedVar = '';
  matchedVarName = '';
  matchedVars: Value[] = [];
  engineOff = false;
  private readonly method: string;
  private readonly uriRaw: string;
  private readonly protocol: string;
  private readonly headers: Array<[string, string]>;
  private readonly remoteAddr: string;
  truncated = false;

  constructor(
    req: GuardRequest | null,
    readonly tx: Map<string, string>,
    private readonly template: ReadonlyMap<string, string>,
    logged: ReadonlySet<string>,
    private readonly cap: number,
  ) {
    this.method = this.capped(req?.method ?? '');
    this.uriRaw = this.capped(req?.uri ?? '');
    this.protocol = this.capped(req?.protocol ?? '');
    this.remoteAddr = this.capped(req?.remoteAddr ?? '');
    this.headers = [];
    if (req) {
      for (const name in req.headers) {
        if (!logged.has(name.toLowerCase())) continue;
        const v = req.headers[name];
        if (typeof v === 'string') this.headers.push([this.capped(name), this.capped(v)]);
      }
    }
  }

  private capped(s: string): string {
    const b = bytes(s.length > this.cap * 4 ? s.slice(0, this.cap * 4) : s);
    if (b.length <= this.cap && s.length <= this.cap * 4) return b;
    this.truncated = true;
    return b.slice(0, this.cap);
  }

  txGet(k: string): string | undefined {
    const v = this.tx.get(k);
    return v !== undefined ? v : this.template.get(k);
  }

  expand(s: string): string {
    if (s.indexOf('%{') < 0) return s;
    return s.replace(/%\{([^}]+)\}/g, (_m, ref: string) => this.macro(ref));
  }

  private macro(ref: string): string {
    const dot = ref.indexOf('.');
    const coll = (dot < 0 ? ref : ref.slice(0, dot)).toUpperCase();
    const key = dot < 0 ? undefined : ref.slice(dot + 1).toLowerCase();
    if (coll === 'TX') return key === undefined ? '' : (this.txGet(key) ?? '');
    if (coll === 'MATCHED_VAR') return this.matchedVar;
    if (coll === 'MATCHED_VAR_NAME') return this.matchedVarName;
    const vals = this.collection(coll);
    if (key === undefined) return vals[0]?.raw ?? '';
    return vals.find((v) => v.key === key)?.raw ?? '';
  }

  private parts?: { path: string; query: string | null; decoded: string };
  private argList?: Array<[string, string]>;

  private pathParts(): { path: string; query: string | null; decoded: string } {
    if (this.parts !== undefined) return this.parts;
    this.parts = this.splitUri();
    return this.parts;
  }

  private splitUri(): { path: string; query: string | null; decoded: string } {
    const raw = this.uriRaw;
    const decoded = uriDecode(raw);
    const q = raw.indexOf('?');
    const dq = decoded.indexOf('?');
    return { path: dq < 0 ? decoded : decoded.slice(0, dq), query: q < 0 ? null : raw.slice(q + 1), decoded };
  }

  private args(): Array<[string, string]> {
    if (this.argList === undefined) this.argList = this.splitArgs();
    return this.argList;
  }

  private splitArgs(): Array<[string, string]> {
    const { query } = this.pathParts();
    if (query === null || query === '') return [];
    const out: Array<[string, string]> = [];
    for (const pair of query.split('&')) {
      if (pair === '') continue;
      const eq = pair.indexOf('=');
      const k = urlDecode(eq < 0 ? pair : pair.slice(0, eq));
      const v = eq < 0 ? '' : urlDecode(pair.slice(eq + 1));
      out.push([k, v]);
    }
    return out;
  }

  private cookies(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const [n, v] of this.headers) {
      if (n.toLowerCase() !== 'cookie') continue;
      for (const c of v.split(';')) {
        const eq = c.indexOf('=');
        const k = (eq < 0 ? c : c.slice(0, eq)).replace(/^\s+/, '');
        if (k === '') continue;
        out.push([k, eq < 0 ? '' : c.slice(eq + 1).replace(/\s+$/, '')]);
      }
    }
    return out;
  }

  /** Values of a request variable (shared by every rule in this request, with their transformation caches). */
  collection(name: string): Value[] {
    let vals = this.colls.get(name);
    if (vals !== undefined) return vals;
    const one = (v: string): Value[] => [mk(name, '', v)];
    switch (name) {
      case 'REQUEST_METHOD': vals = one(this.method); break;
      case 'REQUEST_PROTOCOL': vals = one(this.protocol); break;
      case 'REQUEST_LINE': vals = one(`${this.method} ${this.uriRaw} ${this.protocol}`); break;
      case 'REQUEST_URI_RAW': vals = one(this.uriRaw); break;
      case 'REQUEST_URI': {
        let d = this.pathParts().decoded;
        const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*(\/.*)$/s.exec(d);
        if (m) d = m[1];
        vals = one(d);
        break;
      }
      case 'REQUEST_FILENAME': case 'PATH_INFO': vals = one(this.pathParts().path); break;
      case 'REQUEST_BASENAME': {
        const p = this.pathParts().path;
        const at = Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\'));
        vals = at >= 0 && at + 1 < p.length ? one(p.slice(at + 1)) : [];
        break;
      }
      case 'QUERY_STRING': { const q = this.pathParts().query; vals = q === null ? [] : one(q); break; }
      case 'ARGS': case 'ARGS_GET': vals = this.args().map(([k, v]) => mk(name, k, v)); break;
      case 'ARGS_NAMES': case 'ARGS_GET_NAMES': vals = this.args().map(([k]) => mk(name, k, k)); break;
      case 'REQUEST_HEADERS': vals = this.headers.map(([k, v]) => mk(name, k, v)); break;
      case 'REQUEST_HEADERS_NAMES': vals = this.headers.map(([k]) => mk(name, k, k)); break;
      case 'REQUEST_COOKIES': vals = this.cookies().map(([k, v]) => mk(name, k, v)); break;
      case 'REQUEST_COOKIES_NAMES': vals = this.cookies().map(([k]) => mk(name, k, k)); break;
      case 'REMOTE_ADDR': vals = this.remoteAddr === '' ? [] : one(this.remoteAddr); break;
      case 'SERVER_NAME': {
        const h = this.headers.find(([k]) => k.toLowerCase() === 'host');
        vals = h ? one(h[1].split(':')[0]) : [];
        break;
      }
      default: vals = [];
    }
    this.colls.set(name, vals);
    return vals;
  }

  txValues(keyRe?: RegExp): Value[] {
    const keys = new Set([...this.template.keys(), ...this.tx.keys()]);
    const out: Value[] = [];
    for (const k of keys) {
      if (keyRe !== undefined && !keyRe.test(k)) continue;
      const v = this.txGet(k);
      if (v !== undefined) out.push(mk('TX', k, v));
    }
    return out;
  }
}

function mk(coll: string, key: string, raw: string): Value {
  return { name: key === '' ? coll : `${coll}:${key}`, coll, key: key.toLowerCase(), raw };
}

function selected(t: Target, v: Value): boolean {
  if (t.key !== undefined) return v.key === t.key;
  if (t.keyRe !== undefined) return t.keyRe.test(v.name.slice(v.coll.length + 1));
  return true;
}

function resolveTargets(link: Link, ctx: Ctx): Value[] {
  const out: Value[] = [];
  for (const t of link.targets) {
    let vals: Value[];
    switch (t.name) {
      case 'TX':
        if (t.key !== undefined && !t.count) {
          const v = ctx.txGet(t.key);
          vals = v === undefined ? [] : [mk('TX', t.key, v)];
          if (vals.length) { out.push(vals[0]); }
          continue;
        }
        vals = ctx.txValues(t.keyRe);
        break;
      case 'MATCHED_VAR': vals = [mk('MATCHED_VAR', '', ctx.matchedVar)]; break;
      case 'MATCHED_VAR_NAME': vals = [mk('MATCHED_VAR_NAME', '', ctx.matchedVarName)]; break;
      case 'MATCHED_VARS': vals = ctx.matchedVars; break;
      case 'MATCHED_VARS_NAMES': vals = ctx.matchedVars.map((v) => ({ ...v, raw: v.name, cache: undefined })); break;
      default: vals = ctx.collection(t.name);
    }
    let picked = t.key === undefined && t.keyRe === undefined ? vals : vals.filter((v) => selected(t, v));
    if (link.excludes.length > 0) {
      picked = picked.filter((v) => !link.excludes.some((x) => x.name === v.coll && selected(x, v)));
    }
    if (t.count) { out.push(mk(`&${t.name}`, '', String(picked.length))); continue; }
    for (const v of picked) out.push(v);
  }
  return out;
}

function transformed(link: Link, v: Value): string {
  if (link.transforms.length === 0) return v.raw;
  let c = v.cache;
  if (c === undefined) { c = new Map(); v.cache = c; }
  let s = c.get(link.tkey);
  if (s === undefined) {
    s = v.raw;
    for (const f of link.transforms) s = f(s);
    c.set(link.tkey, s);
  }
  return s;
}

function opFor(link: Link, ctx: Ctx, run: RunOptions): OpFn {
  if (link.op !== null) return link.op;
  const arg = ctx.expand(link.opArg);
  const key = `${link.opName}\0${arg}`;
  let fn = run.dynamicOps.get(key);
  if (fn === undefined) {
    fn = compileOperator(link.opName, arg, run).fn;
    if (run.dynamicOps.size < 1024) run.dynamicOps.set(key, fn);
  }
  return fn;
}

function applySetvars(link: Link, ctx: Ctx): void {
  for (const sv of link.setvars) {
    const name = ctx.expand(sv.name).toLowerCase();
    if (sv.del) { ctx.tx.set(name, ''); ctx.tx.delete(name); continue; }
    const value = ctx.expand(sv.value);
    if (sv.op === '=') ctx.tx.set(name, value);
    else {
      const cur = parseInt(ctx.txGet(name) ?? '0', 10) || 0;
      const d = parseInt(value, 10) || 0;
      ctx.tx.set(name, String(sv.op === '+' ? cur + d : cur - d));
    }
  }
}

function runLink(link: Link, ctx: Ctx, run: RunOptions): boolean {
  const values = resolveTargets(link, ctx);
  if (values.length === 0) return false;
  const op = opFor(link, ctx, run);
  let any = false;
  const matched: Value[] = [];
  for (const v of values) {
    let hit = false;
    if (link.multiMatch && link.transforms.length > 0) {
      let s = v.raw;
      const steps = [s];
      for (const f of link.transforms) { const nx = f(s); if (nx !== s) steps.push(nx); s = nx; }
      for (const st of steps) if (check(link, op, st, v, ctx)) { hit = true; break; }
    } else {
      hit = check(link, op, transformed(link, v), v, ctx);
    }
    if (hit) {
      any = true;
      matched.push({ name: v.name, coll: v.coll, key: v.key, raw: ctx.matchedVar });
      if (!link.collectAll) break;
    }
  }
  if (!any) return false;
  applySetvars(link, ctx);
  if (link.engineOff) ctx.engineOff = true;
  if (link.next) {
    ctx.matchedVars = matched;
    return runLink(link.next, ctx, run);
  }
  return true;
}

function check(link: Link, op: OpFn, s: string, v: Value, ctx: Ctx): boolean {
  const m = op(s);
  const hit = link.negated ? m === null : m !== null;
  if (!hit) return false;
  ctx.matchedVar = s;
  ctx.matchedVarName = v.name;
  if (link.capture && m !== null) {
    ctx.tx.set('0', m.data);
    if (m.groups) for (let g = 0; g < m.groups.length; g++) ctx.tx.set(String(g + 1), m.groups[g]);
  }
  return true;
}

function runRule(rule: Rule, ctx: Ctx, run: RunOptions): boolean {
  ctx.matchedVars = [];
  return runLink(rule.head, ctx, run);
}

/** Runs the rule set on one request. Pure: reads nothing but its arguments. */
export function evaluate(ruleset: Ruleset, request: GuardRequest): Verdict {
  const ctx = new Ctx(request, new Map(), ruleset.template, ruleset.loggedHeaders, ruleset.maxValueBytes);
  const matched: MatchedRule[] = [];
  const run: RunOptions = ruleset as unknown as RunOptions;
  for (const list of ruleset.phases) {
    for (let i = 0; i < list.length; i++) {
      const rule = list[i];
      if (rule.marker !== undefined) continue;
      if (!runRule(rule, ctx, run)) continue;
      if (ctx.engineOff) return { score: 0, matched: [], blocked: false, truncated: ctx.truncated };
      if (rule.log && rule.id !== 0) matched.push({ id: rule.id, msg: ctx.expand(rule.msg), severity: rule.severity });
      if (rule.skipTo >= 0) i = rule.skipTo;
    }
  }
  const score = parseInt(ctx.txGet('anomaly_score') ?? '0', 10) || 0;
  return { score, matched, blocked: score >= ruleset.threshold, truncated: ctx.truncated };
}
