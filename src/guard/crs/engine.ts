// The OWASP Core Rule Set evaluated from access-log fields: `compile()` loads the rules once
// (paranoia gates and configuration folded away, unevaluable rules set aside with a reason,
// prefilters merged), `evaluate()` runs the rest on one request with no I/O and returns the
// anomaly score and the matched rules.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { strict as assert } from 'node:assert';
import { parseRules, parseOperator, type Action, type RawRule, type Variable, type Directive } from './parse.js';
import { compileOperator, LIBINJECTION_OPERATORS, UNEVALUABLE_OPERATORS, type CompiledOperator, type OpFn, type OpMatch } from './operators.js';
import { DEFAULT_LIBINJECTION_LIBRARY, loadLibinjection, type Libinjection } from './libinjection.js';
import { TRANSFORMS, type Transform, uriDecode, urlDecode } from './transforms.js';
import { compilePcre, enableLinearEngine, type RegexMode } from './regex.js';
import { PhraseSetMatcher } from './pm.js';

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
  /** library exporting libinjection's C API, for @detectSQLi / @detectXSS (941100 941101 942100 942101); default Debian's libmodsecurity.so.3; null: set those rules aside */
  libinjectionLibrary?: string | null;
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
  /** libinjection's version and library when @detectSQLi / @detectXSS run, else why they are set aside */
  libinjection: { available: boolean; detail: string };
}

// ---------------------------------------------------------------------------------------------

interface Target {
  name: string;
  /** index into COLLECTIONS, or one of the CID_* constants */
  cid: number;
  key?: string;
  keyRe?: RegExp;
  count: boolean;
  /** the link's exclusions that can apply to this target's values, or null */
  excl: Target[] | null;
  /** TX by regex: the template keys that match, cached for the template they came from */
  tplOf?: ReadonlyMap<string, string>;
  tplKeys?: readonly string[];
}

interface SetVar {
  del: boolean;
  /** lower case, may hold macros */
  name: string;
  op: '=' | '+' | '-';
  value: string;
  /** name and value with their macros split (a constant name is lower case already) */
  nameM: Macro;
  valueM: Macro;
}

interface Link {
  targets: Target[];
  excludes: Target[];
  transforms: Transform[];
  /** id of the transformation chain (cache key) */
  tkey: number;
  /** ids of the chain's prefixes (tprefix[i]: the first i + 1 transformations), so chains share their common start */
  tprefix: number[];
  multiMatch: boolean;
  opName: string;
  opArg: string;
  op: OpFn | null;
  /** the shared literal prefilter of this link's transformation chain, and this link's set in it */
  pre: PhraseSetMatcher | null;
  /** index of `pre` among the rule set's shared prefilters (Value.pf), and this link's bit */
  preSlot: number;
  preBit: number;
  /** the operator without its own prefilter, run once a shared prefilter found a literal */
  bare: OpFn | null;
  /** the prefilter over untransformed values shared by every link (used when the chain leaves a value unchanged), its slot (Memo.g) and this link's bit */
  gpre: PhraseSetMatcher | null;
  gslot: number;
  gbit: number;
  /** index of this link's operator result in Memo.res (a static operator), or -1 */
  lid: number;
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
  /** the rule reads only the query's arguments and cookies: it cannot match a request with neither */
  argsOnly: boolean;
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
  /** per-value results shared across requests (bounded: MEMO_ENTRIES) */
  readonly memos: Map<string, Memo>;
  readonly backtrackCapBytes: number;
  readonly regexMode: RegexMode;
  readonly maxValueBytes: number;
  readonly rulesDir: string;
  readonly libinjection: Libinjection | null;
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

/** Why a rule cannot run from a log line, or null (`noLibinjection`: why libinjection is not there, or null). */
function unevaluableReason(r: RawRule, logged: ReadonlySet<string>, phase: number, noLibinjection: string | null): string | null {
  if (phase >= 3) return 'response phase';
  for (const l of chainLinks(r)) {
    if (r.kind === 'action' && l === r) continue;
    const op = l.operator.name.toLowerCase();
    if (UNEVALUABLE_OPERATORS.has(op)) return `@${l.operator.name}`;
    if (LIBINJECTION_OPERATORS.has(op) && noLibinjection !== null) return `@${l.operator.name} (libinjection unavailable: ${noLibinjection})`;
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
  const t: Target = { name: v.name, cid: cidOf(v.name), count: v.count, excl: null };
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
  const chainId = (list: readonly string[]): number => {
    const name = list.join(',');
    let id = transformIds.get(name);
    if (id === undefined) { id = transformIds.size; transformIds.set(name, id); }
    return id;
  };
  const tkey = chainId(names);
  const tprefix = names.map((_n, i) => chainId(names.slice(0, i + 1)));
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
    setvars.push({ del, name: name.slice(3), op, value, nameM: compileMacro(name.slice(3)), valueM: compileMacro(value) });
  }
  const vars = r.kind === 'action' ? [] : r.variables;
  const targets = vars.filter((v) => !v.exclude && variableUsable(v, logged)).map(compileTarget);
  const excludes = vars.filter((v) => v.exclude).map(compileTarget);
  for (const t of targets) {
    // MATCHED_VARS carry their own collection names; any other target only its own
    const apply = excludes.filter((x) => t.cid === CID_MATCHED_VARS || t.cid === CID_MATCHED_VARS_NAMES || x.name === t.name);
    t.excl = apply.length > 0 ? apply : null;
  }
  return {
    targets,
    excludes,
    transforms,
    tkey,
    tprefix,
    multiMatch: r.actions.some((a) => a.name.toLowerCase() === 'multimatch'),
    opName: r.operator.name,
    opArg: r.operator.arg,
    op: null,
    pre: null,
    preSlot: -1,
    preBit: 0,
    bare: null,
    gpre: null,
    gslot: -1,
    gbit: 0,
    lid: -1,
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
  const libraryName = options.libinjectionLibrary === undefined ? DEFAULT_LIBINJECTION_LIBRARY : options.libinjectionLibrary;
  const li = libraryName === null ? { lib: null, reason: 'disabled (libinjectionLibrary: null)' } : loadLibinjection(libraryName);

  let defaults: Action[] = [];
  interface Entry { raw?: RawRule; marker?: string; phase: number; id: number }
  const entries: Entry[] = [];
  const stats: RulesetStats = { total: 0, active: 0, activeIds: [], folded: 0, gatedOff: 0, setAside: [], partial: [], regexEngines: {}, relaxed: [], prefiltered: [], allHeaders: [],
    libinjection: li.lib !== null ? { available: true, detail: li.lib.describe } : { available: false, detail: li.reason } };
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

  const opOptions = { rulesDir, backtrackCapBytes, regexMode, libinjection: li.lib };
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
          phases[phase - 1].push({ id: 0, phase, msg: '', severity: '', log: false, marker: e.marker, skipTo: -1, argsOnly: false, head: null as unknown as Link, file: '' });
          continue;
        }
        const raw = e.raw!;
        const reason = unevaluableReason(raw, logged, phase, li.reason);
        if (reason !== null) {
          if (!seenSetAside.has(e.id)) st.setAside.push({ id: e.id, file: raw.file, reason });
          seenSetAside.add(e.id);
          neverRun.add(e);
          continue;
        }
        const rule = toRule(raw, e, logged, defaults);
        if (!isDynamic(e)) {
          st.folded++;
          const hit = runRule(rule, staticCtx, { ...opOptions, dynamicOps: new Map() });
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
  const byChain = new Map<number, Array<{ link: Link; c: CompiledOperator }>>();
  for (const list of phases) {
    list.forEach((rule, idx) => {
      if (rule.marker !== undefined) return;
      stats.active++;
      rule.argsOnly = rule.head.targets.length > 0 && rule.head.targets.every((t) => !t.count && ARGS_OR_COOKIES.has(t.name));
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
          if (c.literals !== undefined && c.bare !== undefined && !(l.multiMatch && l.transforms.length > 0)) {
            let g = byChain.get(l.tkey);
            if (g === undefined) { g = []; byChain.set(l.tkey, g); }
            g.push({ link: l, c });
          }
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
  // Links on the same transformation chain share one literal walk per value (PhraseSetMatcher).
  let lids = 0;
  for (const list of phases) for (const r of list) {
    for (let l: Link | undefined = r.marker === undefined ? r.head : undefined; l; l = l.next) {
      if (l.op !== null) l.lid = lids++;
    }
  }
  let preSlots = 0;
  for (const group of byChain.values()) {
    for (const g of group) g.link.bare = g.c.bare!;
    if (group.length < 2) continue;
    for (let at = 0; at < group.length; at += PhraseSetMatcher.MAX_SETS) {
      const part = group.slice(at, at + PhraseSetMatcher.MAX_SETS);
      const pre = new PhraseSetMatcher(part.map((g) => g.c.literals!));
      const slot = preSlots++;
      part.forEach((g, id) => { g.link.pre = pre; g.link.preSlot = slot; g.link.preBit = 1 << id; });
    }
  }
  // Most values come out of most chains unchanged (no escapes, no upper case): one set of walks
  // over the untransformed value then serves every link, whatever its chain.
  const every = [...byChain.values()].flat();
  for (let at = 0, slot = 0; at < every.length; at += PhraseSetMatcher.MAX_SETS, slot++) {
    const part = every.slice(at, at + PhraseSetMatcher.MAX_SETS);
    const gpre = new PhraseSetMatcher(part.map((g) => g.c.literals!));
    part.forEach((g, id) => { g.link.gpre = gpre; g.link.gslot = slot; g.link.gbit = 1 << id; });
  }
  return {
    phases: phases.slice(0, 2),
    template,
    threshold: Number(template.get('inbound_anomaly_score_threshold') ?? threshold),
    paranoiaLevel,
    loggedHeaders: logged,
    stats,
    dynamicOps: new Map(),
    memos: new Map(),
    backtrackCapBytes,
    regexMode,
    maxValueBytes,
    rulesDir,
    libinjection: li.lib,
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
    argsOnly: false,
    head: compileLink(raw, logged, defaults, true),
    file: raw.file,
  };
}

// ---------------------------------------------------------------------------------------------
// Per-request evaluation. Hot path: no per-rule allocation on a value that does not match —
// collections are built once per request and shared by every rule (with their transformation
// caches), targets iterate them in place, macros are pre-split at compile time.

/** Request collections, by index (Target.cid). */
const COLLECTIONS = [
  'REQUEST_METHOD', 'REQUEST_PROTOCOL', 'REQUEST_LINE', 'REQUEST_URI_RAW', 'REQUEST_URI', 'REQUEST_FILENAME', 'PATH_INFO',
  'REQUEST_BASENAME', 'QUERY_STRING', 'ARGS', 'ARGS_GET', 'ARGS_NAMES', 'ARGS_GET_NAMES', 'REQUEST_HEADERS',
  'REQUEST_HEADERS_NAMES', 'REQUEST_COOKIES', 'REQUEST_COOKIES_NAMES', 'REMOTE_ADDR', 'SERVER_NAME',
] as const;
const CID = new Map<string, number>(COLLECTIONS.map((c, i) => [c, i]));
/** Collections whose values repeat from request to request (a URI or an argument value mostly does not): their memos are shared. */
const SHARED_MEMO = COLLECTIONS.map((c) => ['REQUEST_METHOD', 'REQUEST_PROTOCOL', 'ARGS_NAMES', 'ARGS_GET_NAMES', 'REQUEST_HEADERS', 'REQUEST_HEADERS_NAMES', 'REQUEST_COOKIES_NAMES', 'SERVER_NAME'].includes(c));
const ARGS_OR_COOKIES = new Set(['ARGS', 'ARGS_GET', 'ARGS_NAMES', 'ARGS_GET_NAMES', 'REQUEST_COOKIES', 'REQUEST_COOKIES_NAMES']);
const CID_ARGS = COLLECTIONS.indexOf('ARGS');
/** Short argument values (page numbers, limits, flags) repeat too: memos shared up to this length. */
const MEMO_ARG_BYTES = 8;
const CID_TX = -1;
const CID_MATCHED_VAR = -2;
const CID_MATCHED_VAR_NAME = -3;
const CID_MATCHED_VARS = -4;
const CID_MATCHED_VARS_NAMES = -5;
const CID_NONE = -6;
const SPECIAL_CID: Record<string, number> = {
  TX: CID_TX, MATCHED_VAR: CID_MATCHED_VAR, MATCHED_VAR_NAME: CID_MATCHED_VAR_NAME, MATCHED_VARS: CID_MATCHED_VARS, MATCHED_VARS_NAMES: CID_MATCHED_VARS_NAMES,
};

function cidOf(name: string): number {
  return CID.get(name) ?? SPECIAL_CID[name] ?? CID_NONE;
}

interface Value {
  /** collection name (ARGS, TX …) */
  coll: string;
  /** key within the collection as sent ('' for scalars) */
  okey: string;
  /** key, lower case */
  key: string;
  raw: string;
  /** what rules worked out from `raw`: shared by every rule, and across requests for repeated values */
  memo: Memo | null;
  /** a request-collection value (memoized); false for TX and MATCHED_* values built per rule */
  kept: boolean;
}

/** Results that depend only on a value's bytes. */
interface Memo {
  /** transformation results by chain id (Link.tkey) */
  t: Array<string | undefined>;
  /** shared-prefilter hit masks by Link.preSlot */
  pf: Array<number | undefined>;
  /** hit masks of the prefilters over the untransformed value, by Link.gslot */
  g: Array<number | undefined>;
  /** multiMatch: the distinct transformation steps by chain id */
  steps: Array<string[] | undefined>;
  /** operator results by Link.lid (null: no match); kept only in memos shared across requests */
  res: Array<OpMatch | null | undefined> | null;
}

/** Values memoized across requests (User-Agent, Host, Referer, common arguments repeat): at most this many; the table is emptied when full. */
export const MEMO_ENTRIES = 4096;
/** Longer values are memoized for one request only. */
export const MEMO_VALUE_BYTES = 512;

function memoOf(v: Value): Memo {
  let m = v.memo;
  if (m === null) { m = { t: [], pf: [], g: [], steps: [], res: null }; v.memo = m; }
  return m;
}

/** A value of a request collection (kept: its memo serves every rule) or a transient one (TX, MATCHED_*, counts). */
function mk(coll: string, okey: string, raw: string, kept = false): Value {
  return { coll, okey, key: okey.toLowerCase(), raw, memo: null, kept };
}

/** MATCHED_VAR_NAME of a value: COLL or COLL:key. */
function nameOf(v: Value): string {
  return v.okey === '' ? v.coll : `${v.coll}:${v.okey}`;
}

interface RunOptions {
  rulesDir: string;
  backtrackCapBytes: number;
  regexMode: RegexMode;
  dynamicOps: Map<string, OpFn>;
  libinjection: Libinjection | null;
}

const NON_ASCII = /[^\x00-\x7f]/;
/** JS string from a log → byte string (one char per byte), as ModSecurity sees the request. */
function bytes(s: string): string {
  return NON_ASCII.test(s) ? Buffer.from(s, 'utf8').toString('latin1') : s;
}

const EMPTY: Value[] = [];
const URI_ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*(\/.*)$/s;

class Ctx {
  /** built collections by index (read directly on the hot path; `collection()` builds) */
  readonly colls: Array<Value[] | undefined> = new Array(COLLECTIONS.length);
  matchedVar = '';
  matchedVarName = '';
  matchedVars: Value[] = EMPTY;
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
    readonly template: ReadonlyMap<string, string>,
    logged: ReadonlySet<string>,
    private readonly cap: number,
    private readonly memos: Map<string, Memo> | null = null,
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

  /** Expands %{…} macros (compile time and rare paths; hot macros are pre-split, see Macro). */
  expand(s: string): string {
    if (s.indexOf('%{') < 0) return s;
    return s.replace(/%\{([^}]+)\}/g, (_m, ref: string) => this.macro(ref));
  }

  macro(ref: string): string {
    const dot = ref.indexOf('.');
    return this.macroRef((dot < 0 ? ref : ref.slice(0, dot)).toUpperCase(), dot < 0 ? undefined : ref.slice(dot + 1).toLowerCase());
  }

  macroRef(coll: string, key: string | undefined): string {
    if (coll === 'TX') return key === undefined ? '' : (this.txGet(key) ?? '');
    if (coll === 'MATCHED_VAR') return this.matchedVar;
    if (coll === 'MATCHED_VAR_NAME') return this.matchedVarName;
    const cid = CID.get(coll);
    if (cid === undefined) return '';
    const vals = this.collection(cid);
    if (key === undefined) return vals[0]?.raw ?? '';
    for (const v of vals) if (v.key === key) return v.raw;
    return '';
  }

  /** false when the request has no query arguments and no cookies */
  mayHaveArgs(): boolean {
    if (this.uriRaw.indexOf('?') >= 0) return true;
    for (const [n] of this.headers) if (n.length === 6 && n.toLowerCase() === 'cookie') return true;
    return false;
  }

  private parts?: { path: string; query: string | null; decoded: string };
  private argList?: Array<[string, string]>;
  private cookieList?: Array<[string, string]>;

  private pathParts(): { path: string; query: string | null; decoded: string } {
    if (this.parts !== undefined) return this.parts;
    const raw = this.uriRaw;
    const decoded = uriDecode(raw);
    const q = raw.indexOf('?');
    const dq = decoded.indexOf('?');
    this.parts = { path: dq < 0 ? decoded : decoded.slice(0, dq), query: q < 0 ? null : raw.slice(q + 1), decoded };
    return this.parts;
  }

  private args(): Array<[string, string]> {
    if (this.argList !== undefined) return this.argList;
    const { query } = this.pathParts();
    const out: Array<[string, string]> = [];
    if (query !== null && query !== '') {
      let start = 0;
      while (start <= query.length) {
        let end = query.indexOf('&', start);
        if (end < 0) end = query.length;
        if (end > start) {
          const eq = query.indexOf('=', start);
          const k = urlDecode(eq < 0 || eq > end ? query.slice(start, end) : query.slice(start, eq));
          const v = eq < 0 || eq > end ? '' : urlDecode(query.slice(eq + 1, end));
          out.push([k, v]);
        }
        start = end + 1;
      }
    }
    this.argList = out;
    return out;
  }

  private cookies(): Array<[string, string]> {
    if (this.cookieList !== undefined) return this.cookieList;
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
    this.cookieList = out;
    return out;
  }

  /** Values of a request variable (shared by every rule in this request, with their transformation caches). */
  collection(cid: number): Value[] {
    const have = this.colls[cid];
    if (have !== undefined) return have;
    const name = COLLECTIONS[cid];
    let vals: Value[];
    const one = (v: string): Value[] => [mk(name, '', v, true)];
    switch (name) {
      case 'REQUEST_METHOD': vals = one(this.method); break;
      case 'REQUEST_PROTOCOL': vals = one(this.protocol); break;
      case 'REQUEST_LINE': vals = one(`${this.method} ${this.uriRaw} ${this.protocol}`); break;
      case 'REQUEST_URI_RAW': vals = one(this.uriRaw); break;
      case 'REQUEST_URI': {
        let d = this.pathParts().decoded;
        const m = d.indexOf('://') > 0 ? URI_ABSOLUTE.exec(d) : null;
        if (m) d = m[1];
        vals = one(d);
        break;
      }
      case 'REQUEST_FILENAME': case 'PATH_INFO': vals = one(this.pathParts().path); break;
      case 'REQUEST_BASENAME': {
        const p = this.pathParts().path;
        const at = Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\'));
        vals = at >= 0 && at + 1 < p.length ? one(p.slice(at + 1)) : EMPTY;
        break;
      }
      case 'QUERY_STRING': { const q = this.pathParts().query; vals = q === null ? EMPTY : one(q); break; }
      case 'ARGS': case 'ARGS_GET': { const a = this.args(); vals = a.length === 0 ? EMPTY : a.map(([k, v]) => mk(name, k, v, true)); break; }
      case 'ARGS_NAMES': case 'ARGS_GET_NAMES': { const a = this.args(); vals = a.length === 0 ? EMPTY : a.map(([k]) => mk(name, k, k, true)); break; }
      case 'REQUEST_HEADERS': vals = this.headers.map(([k, v]) => mk(name, k, v, true)); break;
      case 'REQUEST_HEADERS_NAMES': vals = this.headers.map(([k]) => mk(name, k, k, true)); break;
      case 'REQUEST_COOKIES': { const c = this.cookies(); vals = c.length === 0 ? EMPTY : c.map(([k, v]) => mk(name, k, v, true)); break; }
      case 'REQUEST_COOKIES_NAMES': { const c = this.cookies(); vals = c.length === 0 ? EMPTY : c.map(([k]) => mk(name, k, k, true)); break; }
      case 'REMOTE_ADDR': vals = this.remoteAddr === '' ? EMPTY : one(this.remoteAddr); break;
      case 'SERVER_NAME': {
        const h = this.headers.find(([k]) => k.toLowerCase() === 'host');
        vals = h ? one(h[1].split(':')[0]) : EMPTY;
        break;
      }
      default: vals = EMPTY;
    }
    if (this.memos !== null) {
      if (SHARED_MEMO[cid]) for (const v of vals) v.memo = this.sharedMemo(v.raw);
      else if (cid === CID_ARGS) for (const v of vals) if (v.raw.length <= MEMO_ARG_BYTES) v.memo = this.sharedMemo(v.raw);
    }
    this.colls[cid] = vals;
    return vals;
  }

  private sharedMemo(raw: string): Memo | null {
    if (raw.length > MEMO_VALUE_BYTES) return null;
    const memos = this.memos!;
    let m = memos.get(raw);
    if (m === undefined) {
      if (memos.size >= MEMO_ENTRIES) memos.clear();
      m = { t: [], pf: [], g: [], steps: [], res: [] };
      memos.set(raw, m);
    }
    return m;
  }

  /** TX entries whose key matches keyRe (template keys that match are listed once per rule set). */
  txValues(t: Target): Value[] {
    const out: Value[] = [];
    const keyRe = t.keyRe;
    let tplKeys: readonly string[];
    if (this.tx !== this.template && t.tplOf === this.template && t.tplKeys !== undefined) tplKeys = t.tplKeys;
    else {
      tplKeys = [...this.template.keys()].filter((k) => keyRe === undefined || keyRe.test(k));
      if (this.tx !== this.template) { t.tplOf = this.template; t.tplKeys = tplKeys; }
    }
    for (const k of tplKeys) { const v = this.txGet(k); if (v !== undefined) out.push(mk('TX', k, v)); }
    if (this.tx !== this.template) {
      for (const [k, v] of this.tx) if (!this.template.has(k) && (keyRe === undefined || keyRe.test(k))) out.push(mk('TX', k, v));
    }
    return out;
  }
}

/** A string with %{…} macros split at compile time: literal parts and references alternate. */
type Macro = string | { parts: string[]; refs: MacroRef[] };
/** %{COLL.key}: collection upper case, key lower case */
interface MacroRef { coll: string; key: string | undefined }

function compileMacro(s: string): Macro {
  if (s.indexOf('%{') < 0) return s;
  const parts: string[] = [];
  const refs: MacroRef[] = [];
  let last = 0;
  for (const m of s.matchAll(/%\{([^}]+)\}/g)) {
    parts.push(s.slice(last, m.index));
    const dot = m[1].indexOf('.');
    refs.push({ coll: (dot < 0 ? m[1] : m[1].slice(0, dot)).toUpperCase(), key: dot < 0 ? undefined : m[1].slice(dot + 1).toLowerCase() });
    last = m.index! + m[0].length;
  }
  parts.push(s.slice(last));
  return { parts, refs };
}

function expandMacro(m: Macro, ctx: Ctx): string {
  if (typeof m === 'string') return m;
  let out = m.parts[0];
  for (let i = 0; i < m.refs.length; i++) out += ctx.macroRef(m.refs[i].coll, m.refs[i].key) + m.parts[i + 1];
  return out;
}

function excluded(excl: readonly Target[], v: Value): boolean {
  for (const x of excl) {
    if (x.name !== v.coll) continue;
    if (x.key !== undefined ? v.key === x.key : x.keyRe !== undefined ? x.keyRe.test(v.okey) : true) return true;
  }
  return false;
}

function transformed(link: Link, v: Value): string {
  if (link.transforms.length === 0) return v.raw;
  if (!v.kept) {
    let s = v.raw;
    for (const f of link.transforms) s = f(s);
    return s;
  }
  const c = memoOf(v).t;
  let s = c[link.tkey];
  if (s !== undefined) return s;
  const fs = link.transforms;
  const pre = link.tprefix;
  let from = 0;
  s = v.raw;
  for (let k = fs.length - 2; k >= 0; k--) {
    const p = c[pre[k]];
    if (p !== undefined) { s = p; from = k + 1; break; }
  }
  for (let j = from; j < fs.length; j++) { s = fs[j](s); c[pre[j]] = s; }
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
    const name = typeof sv.nameM === 'string' ? sv.nameM : expandMacro(sv.nameM, ctx).toLowerCase();
    if (sv.del) { ctx.tx.delete(name); continue; }
    const value = expandMacro(sv.valueM, ctx);
    if (sv.op === '=') ctx.tx.set(name, value);
    else {
      const cur = parseInt(ctx.txGet(name) ?? '0', 10) || 0;
      const d = parseInt(value, 10) || 0;
      ctx.tx.set(name, String(sv.op === '+' ? cur + d : cur - d));
    }
  }
}

/** Runs one link; like libmodsecurity 3, the link's setvars run once per matching value. */
function runLink(link: Link, ctx: Ctx, run: RunOptions): boolean {
  const op = link.op !== null ? link.op : opFor(link, ctx, run);
  const collect = link.next !== undefined && link.collectAll;
  const matched: Value[] | null = collect ? [] : null;
  let any = false;
  const targets = link.targets;
  for (let ti = 0; ti < targets.length; ti++) {
    const t = targets[ti];
    let vals: Value[];
    switch (t.cid) {
      case CID_TX:
        if (t.key !== undefined) {
          const x = ctx.txGet(t.key);
          vals = t.count ? EMPTY : x === undefined ? EMPTY : [mk('TX', t.key, x)];
          if (t.count) { if (testValue(link, op, mk('&TX', '', x === undefined ? '0' : '1'), ctx, matched)) any = true; continue; }
        } else vals = ctx.txValues(t);
        break;
      case CID_MATCHED_VAR: vals = [mk('MATCHED_VAR', '', ctx.matchedVar)]; break;
      case CID_MATCHED_VAR_NAME: vals = [mk('MATCHED_VAR_NAME', '', ctx.matchedVarName)]; break;
      case CID_MATCHED_VARS: vals = ctx.matchedVars; break;
      case CID_MATCHED_VARS_NAMES: vals = ctx.matchedVars.map((v) => ({ ...v, raw: nameOf(v), memo: null, kept: false })); break;
      case CID_NONE: vals = EMPTY; break;
      default: { const have = ctx.colls[t.cid]; vals = have !== undefined ? have : ctx.collection(t.cid); }
    }
    const key = t.key;
    const keyRe = t.keyRe;
    const excl = t.excl;
    if (t.count) {
      let n = 0;
      for (const v of vals) {
        if (key !== undefined ? v.key !== key : keyRe !== undefined && !keyRe.test(v.okey)) continue;
        if (excl !== null && excluded(excl, v)) continue;
        n++;
      }
      if (testValue(link, op, mk(`&${t.name}`, '', String(n)), ctx, matched)) any = true;
      continue;
    }
    for (let i = 0; i < vals.length; i++) {
      const v = vals[i];
      if (key !== undefined ? v.key !== key : keyRe !== undefined && !keyRe.test(v.okey)) continue;
      if (excl !== null && excluded(excl, v)) continue;
      if (testValue(link, op, v, ctx, matched)) any = true;
    }
  }
  if (!any) return false;
  if (link.next) {
    ctx.matchedVars = matched ?? EMPTY;
    return runLink(link.next, ctx, run);
  }
  return true;
}

/** Tests one value (each transformation step with multiMatch); on every match records it and runs the setvars. */
function testValue(link: Link, op: OpFn, v: Value, ctx: Ctx, matched: Value[] | null): boolean {
  if (!link.multiMatch || link.transforms.length === 0) {
    let m: OpMatch | null | undefined;
    let s: string;
    if (v.kept) {
      const memo = memoOf(v);
      const res = link.lid >= 0 ? memo.res : null;
      if (res !== null) {
        m = res[link.lid];
        if (m === null && !link.negated) return false; // seen before: no match
      }
      s = transformed(link, v);
      if (m === undefined) {
        // none of the literals: the pattern cannot match
        if (link.gpre !== null && s === v.raw) {
          let hits = memo.g[link.gslot];
          if (hits === undefined) { hits = link.gpre.scan(s); memo.g[link.gslot] = hits; }
          m = (hits & link.gbit) === 0 ? null : link.bare!(s);
        } else if (link.pre !== null) {
          let hits = memo.pf[link.preSlot];
          if (hits === undefined) { hits = link.pre.scan(s); memo.pf[link.preSlot] = hits; }
          m = (hits & link.preBit) === 0 ? null : link.bare!(s);
        } else m = op(s);
        if (res !== null) res[link.lid] = m;
      }
    } else {
      s = transformed(link, v);
      m = op(s);
    }
    if (!matchedBy(link, m, s, v, ctx)) return false;
    onMatch(link, v, ctx, matched);
    return true;
  }
  // multiMatch: a shared memo remembers only that no step matched (a non-negated link)
  const res = v.kept && link.lid >= 0 && !link.negated ? memoOf(v).res : null;
  if (res !== null && res[link.lid] === null) return false;
  const all = v.kept ? memoOf(v).steps : [];
  let steps = all[link.tkey];
  if (steps === undefined) {
    let s = v.raw;
    steps = [s];
    for (const f of link.transforms) { const nx = f(s); if (nx !== s) steps.push(nx); s = nx; }
    all[link.tkey] = steps;
  }
  let any = false;
  for (let i = 0; i < steps.length; i++) {
    if (matchedBy(link, op(steps[i]), steps[i], v, ctx)) { any = true; onMatch(link, v, ctx, matched); }
  }
  if (!any && res !== null) res[link.lid] = null;
  return any;
}

function onMatch(link: Link, v: Value, ctx: Ctx, matched: Value[] | null): void {
  if (matched !== null) matched.push({ coll: v.coll, okey: v.okey, key: v.key, raw: ctx.matchedVar, memo: null, kept: false });
  if (link.setvars.length > 0) applySetvars(link, ctx);
  if (link.engineOff) ctx.engineOff = true;
}

/** Whether operator result m is a match for the link (negation); records MATCHED_VAR and captures. */
function matchedBy(link: Link, m: OpMatch | null, s: string, v: Value, ctx: Ctx): boolean {
  const hit = link.negated ? m === null : m !== null;
  if (!hit) return false;
  ctx.matchedVar = s;
  ctx.matchedVarName = nameOf(v);
  if (link.capture && m !== null) {
    ctx.tx.set('0', m.data);
    if (m.groups) for (let g = 0; g < m.groups.length; g++) ctx.tx.set(String(g + 1), m.groups[g]);
  }
  return true;
}

function runRule(rule: Rule, ctx: Ctx, run: RunOptions): boolean {
  ctx.matchedVars = EMPTY;
  return runLink(rule.head, ctx, run);
}

/** Runs the rule set on one request. No I/O; the verdict depends only on the arguments (the ruleset's memo only saves work). */
export function evaluate(ruleset: Ruleset, request: GuardRequest): Verdict {
  const ctx = new Ctx(request, new Map(), ruleset.template, ruleset.loggedHeaders, ruleset.maxValueBytes, ruleset.memos);
  const matched: MatchedRule[] = [];
  const run: RunOptions = ruleset as unknown as RunOptions;
  const noArgs = !ctx.mayHaveArgs();
  for (const list of ruleset.phases) {
    for (let i = 0; i < list.length; i++) {
      const rule = list[i];
      if (rule.marker !== undefined) continue;
      if (rule.argsOnly && noArgs) continue;
      if (!runRule(rule, ctx, run)) continue;
      if (ctx.engineOff) return { score: 0, matched: [], blocked: false, truncated: ctx.truncated };
      if (rule.log && rule.id !== 0) matched.push({ id: rule.id, msg: ctx.expand(rule.msg), severity: rule.severity });
      if (rule.skipTo >= 0) i = rule.skipTo;
    }
  }
  const score = parseInt(ctx.txGet('anomaly_score') ?? '0', 10) || 0;
  return { score, matched, blocked: score >= ruleset.threshold, truncated: ctx.truncated };
}
