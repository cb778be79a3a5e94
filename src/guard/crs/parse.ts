// ModSecurity rule language (the subset the OWASP Core Rule Set uses): SecRule, SecAction,
// SecMarker, SecComponentSignature and SecDefaultAction, with line continuations, double-quoted
// arguments, single-quoted action values and chained rules.

export interface Variable {
  /** collection or scalar name, upper case: ARGS, REQUEST_HEADERS, TX, REQUEST_URI … */
  name: string;
  /** key selector (`ARGS:foo`); lower case for case-insensitive collections */
  key?: string;
  /** key selector given as /regex/ */
  keyRegex?: string;
  /** `&VAR`: the number of values */
  count: boolean;
  /** `!VAR:key`: an exclusion from the rest of the list */
  exclude: boolean;
}

export interface Action {
  name: string;
  value?: string;
}

export interface Operator {
  name: string;
  arg: string;
  negated: boolean;
}

export interface RawRule {
  kind: 'rule' | 'action';
  file: string;
  line: number;
  variables: Variable[];
  operator: Operator;
  actions: Action[];
  /** the next link when this rule has the `chain` action */
  chained?: RawRule;
}

export type Directive =
  | { kind: 'rule'; rule: RawRule }
  | { kind: 'marker'; name: string; file: string; line: number }
  | { kind: 'defaultAction'; actions: Action[] }
  | { kind: 'other'; name: string };

export class RuleSyntaxError extends Error {
  constructor(file: string, line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = 'RuleSyntaxError';
  }
}

/** Joins continued lines and drops comments; yields [line number, logical line]. */
function logicalLines(text: string): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  const lines = text.split(/\r?\n/);
  let acc = '';
  let start = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (acc === '') {
      const t = line.trimStart();
      if (t === '' || t.startsWith('#')) continue;
      start = i + 1;
    }
    if (line.endsWith('\\')) {
      acc += line.slice(0, -1);
      continue;
    }
    acc += line;
    out.push([start, acc.trim()]);
    acc = '';
  }
  if (acc !== '') out.push([start, acc.trim()]);
  return out;
}

/** Splits a directive line into its words: "quoted" words or bare words. */
function words(line: string, file: string, lineNo: number): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < line.length) {
    while (i < line.length && /\s/.test(line[i])) i++;
    if (i >= line.length) break;
    if (line[i] === '"') {
      let j = i + 1;
      let w = '';
      while (j < line.length && line[j] !== '"') {
        // as Apache's ap_getword_conf: \" and \\ are unescaped, other backslashes kept
        if (line[j] === '\\' && (line[j + 1] === '"' || line[j + 1] === '\\')) {
          w += line[j + 1];
          j += 2;
          continue;
        }
        w += line[j++];
      }
      if (j >= line.length) throw new RuleSyntaxError(file, lineNo, 'unterminated quoted argument');
      out.push(w);
      i = j + 1;
    } else {
      let j = i;
      while (j < line.length && !/\s/.test(line[j])) j++;
      out.push(line.slice(i, j));
      i = j;
    }
  }
  return out;
}

export function parseVariables(spec: string, file = '?', line = 0): Variable[] {
  const out: Variable[] = [];
  let i = 0;
  while (i < spec.length) {
    let exclude = false;
    let count = false;
    if (spec[i] === '!') { exclude = true; i++; }
    if (spec[i] === '&') { count = true; i++; }
    let j = i;
    while (j < spec.length && spec[j] !== ':' && spec[j] !== '|') j++;
    const name = spec.slice(i, j).toUpperCase();
    if (name === '') throw new RuleSyntaxError(file, line, `empty variable in ${spec}`);
    const v: Variable = { name, count, exclude };
    if (spec[j] === ':') {
      j++;
      if (name === 'XML') {
        // an XPath expression, not a regex
        let k = j;
        while (k < spec.length && spec[k] !== '|') k++;
        v.key = spec.slice(j, k);
        j = k;
      } else if (spec[j] === '/') {
        let k = j + 1;
        while (k < spec.length && !(spec[k] === '/' && spec[k - 1] !== '\\')) k++;
        v.keyRegex = spec.slice(j + 1, k);
        j = k + 1;
      } else if (spec[j] === "'") {
        const k = spec.indexOf("'", j + 1);
        v.key = spec.slice(j + 1, k);
        j = k + 1;
      } else {
        let k = j;
        while (k < spec.length && spec[k] !== '|') k++;
        v.key = spec.slice(j, k);
        j = k;
      }
    }
    out.push(v);
    if (j < spec.length && spec[j] !== '|') throw new RuleSyntaxError(file, line, `bad variable list ${spec}`);
    i = j + 1;
  }
  return out;
}

export function parseOperator(spec: string): Operator {
  let s = spec;
  let negated = false;
  if (s.startsWith('!')) { negated = true; s = s.slice(1); }
  if (!s.startsWith('@')) return { name: 'rx', arg: s, negated };
  const sp = s.search(/\s/);
  if (sp < 0) return { name: s.slice(1), arg: '', negated };
  return { name: s.slice(1, sp), arg: s.slice(sp + 1).replace(/^\s+/, ''), negated };
}

export function parseActions(spec: string, file = '?', line = 0): Action[] {
  const out: Action[] = [];
  let i = 0;
  const n = spec.length;
  while (i < n) {
    while (i < n && (spec[i] === ',' || /\s/.test(spec[i]))) i++;
    if (i >= n) break;
    let j = i;
    while (j < n && spec[j] !== ':' && spec[j] !== ',') j++;
    const name = spec.slice(i, j).trim();
    if (spec[j] !== ':') {
      out.push({ name });
      i = j + 1;
      continue;
    }
    j++;
    while (j < n && spec[j] === ' ') j++;
    let value = '';
    if (spec[j] === "'") {
      let k = j + 1;
      while (k < n && spec[k] !== "'") {
        if (spec[k] === '\\' && spec[k + 1] === "'") { value += "'"; k += 2; continue; }
        value += spec[k++];
      }
      if (k >= n) throw new RuleSyntaxError(file, line, `unterminated action value in ${name}`);
      j = k + 1;
    } else {
      let k = j;
      while (k < n && spec[k] !== ',') k++;
      value = spec.slice(j, k).trim();
      j = k;
    }
    out.push({ name, value });
    i = j + 1;
  }
  return out;
}

export function parseRules(text: string, file: string): Directive[] {
  const out: Directive[] = [];
  let pendingChain: RawRule | null = null;
  for (const [lineNo, line] of logicalLines(text)) {
    const w = words(line, file, lineNo);
    const name = w[0];
    let rule: RawRule | null = null;
    if (name === 'SecRule') {
      if (w.length < 3) throw new RuleSyntaxError(file, lineNo, 'SecRule needs variables and an operator');
      rule = {
        kind: 'rule', file, line: lineNo,
        variables: parseVariables(w[1], file, lineNo),
        operator: parseOperator(w[2]),
        actions: w[3] === undefined ? [] : parseActions(w[3], file, lineNo),
      };
    } else if (name === 'SecAction') {
      rule = {
        kind: 'action', file, line: lineNo, variables: [],
        operator: { name: 'unconditionalMatch', arg: '', negated: false },
        actions: parseActions(w[1] ?? '', file, lineNo),
      };
    } else if (name === 'SecMarker') {
      out.push({ kind: 'marker', name: w[1], file, line: lineNo });
      continue;
    } else if (name === 'SecDefaultAction') {
      out.push({ kind: 'defaultAction', actions: parseActions(w[1] ?? '', file, lineNo) });
      continue;
    } else {
      out.push({ kind: 'other', name });
      continue;
    }
    if (pendingChain) {
      pendingChain.chained = rule;
    } else {
      out.push({ kind: 'rule', rule });
    }
    pendingChain = rule.actions.some((a) => a.name === 'chain') ? rule : null;
  }
  if (pendingChain) throw new RuleSyntaxError(file, pendingChain.line, 'chain without a following rule');
  return out;
}
