// The CRS 3.3.4 regression cases (../shared/data/crs-3.3.4-regression, YAML per rule id) as
// requests a log line can express: method, request target, protocol and the logged headers.
import { readdirSync, readFileSync, existsSync, statSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { GuardRequest, Ruleset } from '../src/guard/crs/index.js';

export interface RegressionCase {
  title: string;
  ruleId: number;
  /** true: the rule must fire; false: it must not */
  fires: boolean;
  request: GuardRequest;
  /** headers the case sends that the log does not carry */
  dropped: string[];
  /** why the case cannot be run from a log line (absent: it can) */
  skip?: string;
  /** a form-body case whose body was moved to the query string of a GET (loadCases transposeBodies) */
  transposed?: boolean;
}

/** Percent-encodes what may not appear raw in a request target (controls, space, #, non-ASCII). */
function targetSafe(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1').replace(/[\x00-\x20#\x7f-\xff]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}

/** Headers every regression case sends (with the suite's standard values) that no rule outcome depends on. */
const HARMLESS_DROPPED = new Set(['accept', 'accept-charset', 'accept-encoding', 'accept-language', 'connection', 'cache-control', 'keep-alive', 'pragma']);

export function regressionDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    process.env.CRS_REGRESSION_DIR,
    resolve(here, '../../shared/data/crs-3.3.4-regression'),
    resolve(here, '../../../shared/data/crs-3.3.4-regression'),
    resolve(here, '../../../../shared/data/crs-3.3.4-regression'),
    '/work/shared/data/crs-3.3.4-regression',
  ];
  for (const c of candidates) if (c && existsSync(c) && statSync(c).isDirectory()) return c;
  throw new Error('CRS regression cases not found (set CRS_REGRESSION_DIR)');
}

function idOf(s: unknown): number | null {
  const m = /id\s*"?(\d{6})/.exec(String(s ?? ''));
  return m ? Number(m[1]) : null;
}

/** Every stage of every case, with a skip reason where a log line cannot carry the request. */
export function loadCases(dir: string, loggedHeaders: readonly string[], opts: { transposeBodies?: boolean } = {}): RegressionCase[] {
  const logged = new Set(loggedHeaders.map((h) => h.toLowerCase()));
  const out: RegressionCase[] = [];
  const files = readdirSync(dir).filter((d) => d.startsWith('REQUEST-')).sort()
    .flatMap((d) => readdirSync(join(dir, d)).filter((f) => f.endsWith('.yaml')).sort().map((f) => join(dir, d, f)));
  for (const f of files) {
    const doc = parse(readFileSync(f, 'utf8')) as { tests?: Array<{ test_title: string; stages: Array<{ stage: { input: Record<string, unknown>; output: Record<string, unknown> } }> }> };
    for (const t of doc.tests ?? []) {
      t.stages.forEach((s, si) => {
        const input = s.stage.input ?? {};
        const output = s.stage.output ?? {};
        const pos = idOf(output.log_contains);
        const neg = idOf(output.no_log_contains);
        const headers: Record<string, string> = {};
        const dropped: string[] = [];
        for (const [k, v] of Object.entries((input.headers ?? {}) as Record<string, unknown>)) {
          if (logged.has(k.toLowerCase())) headers[k] = String(v);
          else dropped.push(k);
        }
        const c: RegressionCase = {
          title: t.stages.length > 1 ? `${t.test_title}#${si + 1}` : t.test_title,
          ruleId: pos ?? neg ?? 0,
          fires: pos !== null,
          request: {
            method: String(input.method ?? 'GET'),
            uri: String(input.uri ?? '/'),
            protocol: String(input.version ?? 'HTTP/1.1'),
            headers,
          },
          dropped,
        };
        const data = input.data;
        if (pos === null && neg === null) c.skip = 'expects an HTTP status, not a rule';
        else if (input.raw_request !== undefined || input.encoded_request !== undefined) c.skip = 'raw request bytes';
        else if (data !== undefined && data !== null && String(Array.isArray(data) ? data.join('') : data) !== '') {
          const ct = Object.entries((input.headers ?? {}) as Record<string, unknown>).find(([k]) => k.toLowerCase() === 'content-type')?.[1];
          const body = String(Array.isArray(data) ? data.join('\n') : data);
          if (opts.transposeBodies && (ct === undefined || /^application\/x-www-form-urlencoded/i.test(String(ct)))) {
            c.transposed = true;
            c.request.method = 'GET';
            c.request.uri = c.request.uri + (c.request.uri.includes('?') ? '&' : '?') + targetSafe(body);
          } else c.skip = 'request body';
        }
        out.push(c);
      });
    }
  }
  return out;
}

/** Marks cases whose rule the rule set does not run, or that depend on a header the log drops. */
export function markUnevaluable(cases: RegressionCase[], rs: Ruleset): void {
  const active = new Set(rs.stats.activeIds);
  const aside = new Map(rs.stats.setAside.map((a) => [a.id, a.reason]));
  const allHeaders = new Set(rs.stats.allHeaders);
  for (const c of cases) {
    if (c.skip) continue;
    if (!active.has(c.ruleId)) {
      c.skip = aside.has(c.ruleId) ? `rule set aside: ${aside.get(c.ruleId)}` : 'rule not active at this paranoia level';
      continue;
    }
    const harmless = (h: string) => HARMLESS_DROPPED.has(h) || (c.transposed === true && (h === 'content-type' || h === 'content-length'));
    if (allHeaders.has(c.ruleId) && c.dropped.some((h) => !harmless(h.toLowerCase()))) {
      c.skip = 'rule reads every header and the case sends one the log does not carry';
    }
  }
}

export function firedIds(matched: Array<{ id: number }>): Set<number> {
  return new Set(matched.map((m) => m.id));
}
