// Scenarios: what to count and when to decide. Each is a filter over events plus a counter:
// - leaky: a per-IP leaky bucket (bucket.ts, CrowdSec semantics); capacity 0 decides on every event;
// - ratio: per IP, a fixed window from its first event; decides once `min` events are in and the
//   share of matching ones reaches `threshold` (the 4xx ratio);
// - prefix: per /24 or /64, a sliding-window count-min sketch and a top-K; decides when a prefix
//   reaches `threshold` events in the window from at least `minIps` different addresses.
import { enableLinearEngine } from './crs/index.js';
import type { GuardEvent, HttpEvent } from './parse.js';

export interface ScenarioSpec {
  name: string;
  type: 'leaky' | 'ratio' | 'prefix';
  source: 'http' | 'ssh';
  filter?: {
    methods?: string[];
    /** codes (404) or classes ('4xx') */
    status?: Array<number | string>;
    /** regular expressions over the lower-cased path; `$loginPaths` stands for the configured login paths */
    paths?: string[];
    /** regular expressions over the lower-cased raw URI (path and query) */
    uri?: string[];
    sshEvents?: string[];
    /** the OWASP CRS verdict says blocked (anomaly score ≥ the configured threshold) */
    crs?: boolean;
  };
  capacity?: number;
  leakMs?: number;
  blackholeMs?: number;
  distinct?: 'uri' | 'path' | 'user';
  windowMs?: number;
  min?: number;
  threshold?: number;
  minIps?: number;
  /** first ban's length; repeat offenders get longer ones (decisions.ts) */
  durationMs?: number;
  dryRun?: boolean;
}

const SEC = 1000;
const MIN = 60 * SEC;

export const DEFAULT_SCENARIOS: ScenarioSpec[] = [
  { name: 'http-flood', type: 'leaky', source: 'http', capacity: 200, leakMs: 10, blackholeMs: MIN, durationMs: 10 * MIN },
  { name: 'http-404-probing', type: 'leaky', source: 'http', filter: { status: [404] }, distinct: 'path', capacity: 20, leakMs: 2 * SEC, blackholeMs: MIN, durationMs: 30 * MIN },
  {
    name: 'http-sensitive-files', type: 'leaky', source: 'http', capacity: 2, leakMs: 20 * SEC, blackholeMs: MIN, durationMs: 60 * MIN,
    filter: { paths: ['/\\.(env|git|svn|hg|htpasswd|htaccess|ds_store|aws|ssh)(/|$)', '/(wp-config\\.php|config\\.php\\.bak|web\\.config|id_rsa|etc/passwd|etc/shadow|backup\\.sql|dump\\.sql)$', '\\.(bak|old|orig|swp|sql|tar\\.gz|zip)$'] },
  },
  { name: 'http-path-traversal', type: 'leaky', source: 'http', capacity: 0, leakMs: SEC, blackholeMs: MIN, durationMs: 60 * MIN, filter: { uri: ['\\.\\./', '\\.\\.\\\\', '%2e%2e(%2f|/|%5c)', '\\.\\.%2f', '\\.\\.%5c', '%252e%252e'] } },
  { name: 'http-crawl', type: 'leaky', source: 'http', distinct: 'uri', capacity: 300, leakMs: 500, blackholeMs: MIN, durationMs: 10 * MIN },
  { name: 'http-4xx-ratio', type: 'ratio', source: 'http', filter: { status: ['4xx'] }, windowMs: MIN, min: 50, threshold: 0.8, blackholeMs: MIN, durationMs: 10 * MIN },
  { name: 'http-login-bruteforce', type: 'leaky', source: 'http', filter: { methods: ['POST'], paths: ['$loginPaths'], status: [401, 403] }, capacity: 10, leakMs: 10 * SEC, blackholeMs: MIN, durationMs: 60 * MIN },
  { name: 'http-bad-request', type: 'leaky', source: 'http', filter: { crs: true }, capacity: 1, leakMs: 60 * SEC, blackholeMs: MIN, durationMs: 60 * MIN },
  { name: 'http-prefix-flood', type: 'prefix', source: 'http', windowMs: 10 * SEC, threshold: 1000, minIps: 50, blackholeMs: MIN, durationMs: 10 * MIN },
  { name: 'ssh-bruteforce', type: 'leaky', source: 'ssh', filter: { sshEvents: ['failed', 'invalid_user', 'max_attempts', 'too_many_failures', 'not_allowed', 'root_refused'] }, capacity: 5, leakMs: 10 * SEC, blackholeMs: MIN, durationMs: 60 * MIN },
];

export interface Scenario {
  spec: ScenarioSpec;
  index: number;
  match(ev: GuardEvent, crsBlocked: () => boolean): boolean;
  distinctOf(ev: GuardEvent): string | undefined;
  usesCrs: boolean;
}

/**
 * One regular expression for a list (an alternation). It must compile on V8's linear engine (no
 * lookarounds, no backreferences), which proves it linear-capable; it then runs on the faster
 * backtracking engine, which V8 moves to the linear one after 5,000 backtracks
 * (enableLinearEngine sets those flags), so no input can stall the guard.
 */
function regexOf(list: string[] | undefined, loginPaths: string[], name: string): RegExp | undefined {
  if (!list) return undefined;
  const linear = enableLinearEngine();
  const parts = list.map((src) => src === '$loginPaths' ? `^(?:${loginPaths.map((p) => p.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})$` : src);
  for (const [i, src] of parts.entries()) {
    try {
      if (linear) new RegExp(src, 'l');
      else new RegExp(src);
    } catch (err) {
      throw new Error(`scenario ${name}: /${list[i]}/ cannot run in linear time (no lookarounds or backreferences): ${(err as Error).message}`);
    }
  }
  return new RegExp(parts.map((p) => `(?:${p})`).join('|'));
}

function statusMatcher(list: Array<number | string> | undefined): ((s: number) => boolean) | undefined {
  if (!list) return undefined;
  const exact = new Set<number>();
  const classes = new Set<number>();
  for (const s of list) {
    if (typeof s === 'number') exact.add(s);
    else if (/^[1-5]xx$/.test(s)) classes.add(Number(s[0]));
    else throw new Error(`status '${s}' is neither a code nor a class like 4xx`);
  }
  return (st) => exact.has(st) || classes.has(Math.floor(st / 100));
}

export function compileScenarios(specs: ScenarioSpec[], loginPaths: string[]): Scenario[] {
  return specs.map((spec, index) => {
    const f = spec.filter ?? {};
    const methods = f.methods ? new Set(f.methods.map((m) => m.toUpperCase())) : undefined;
    const status = statusMatcher(f.status);
    const paths = regexOf(f.paths, loginPaths, spec.name);
    const uris = regexOf(f.uri, loginPaths, spec.name);
    const sshEvents = f.sshEvents ? new Set(f.sshEvents) : undefined;
    const matchHttp = (ev: HttpEvent, crsBlocked: () => boolean): boolean => {
      if (methods && !methods.has(ev.method)) return false;
      if (status && !status(ev.status)) return false;
      if (paths && !paths.test(ev.path.toLowerCase())) return false;
      if (uris && !uris.test(ev.uri.toLowerCase())) return false;
      if (f.crs && !crsBlocked()) return false;
      return true;
    };
    return {
      spec, index, usesCrs: f.crs === true,
      match(ev, crsBlocked) {
        if (ev.kind !== spec.source) return false;
        if (ev.kind === 'ssh') return !sshEvents || sshEvents.has(ev.event);
        return matchHttp(ev, crsBlocked);
      },
      distinctOf(ev) {
        if (!spec.distinct) return undefined;
        if (ev.kind === 'ssh') return spec.distinct === 'user' ? ev.user : undefined;
        return spec.distinct === 'path' ? ev.path : spec.distinct === 'uri' ? ev.uri : undefined;
      },
    };
  });
}
