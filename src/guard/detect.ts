// Detection: `detect(state, event, nowMs)` → alerts. The state (buckets per IP in one LRU map,
// sketches per prefix scenario) is owned by the caller and updated in place; no I/O, no clock:
// `nowMs` is the event's own time ($msec), so replaying a log gives the same alerts.
import { type Bucket, type BucketSpec, LruMap, newBucket, pour } from './bucket.js';
import type { Allowlist } from './ip.js';
import type { GuardEvent } from './parse.js';
import type { Scenario } from './scenarios.js';
import { TopK, WindowedSketch } from './sketch.js';

export interface Alert {
  scenario: string;
  scope: 'ip' | 'prefix';
  /** the address, or the prefix (198.18.7.0/24) */
  target: string;
  v6: boolean;
  /** the triggering event's time ($msec) */
  eventMs: number;
  detail: string;
  dryRun: boolean;
}

interface RatioState { startMs: number; total: number; matched: number; blackholeUntilMs: number }

interface IpState {
  buckets: Array<Bucket | undefined>;
  ratios: Array<RatioState | undefined>;
  /** the input partition the address was last seen in (the caller's number for it): `forget` drops by it */
  source?: number;
}

interface PrefixState {
  sketch: WindowedSketch;
  top: TopK;
  blackholes: LruMap<number>;
}

export interface DetectorOptions {
  /** addresses with state kept at once; the least recently seen is forgotten first (bucket.ts LruMap) */
  ipsMax: number;
  sketch: { epsilon: number; delta: number; topK: number };
}

export interface DetectorState {
  scenarios: Scenario[];
  specs: BucketSpec[];
  ips: LruMap<IpState>;
  prefixes: Array<PrefixState | undefined>;
  allowlist: Allowlist;
  counters: { events: number; allowlisted: number; alerts: number };
}

export function newDetector(scenarios: Scenario[], allowlist: Allowlist, opts: DetectorOptions): DetectorState {
  return {
    scenarios,
    specs: scenarios.map((s) => ({
      capacity: s.spec.capacity ?? 0, leakMs: s.spec.leakMs ?? 1000, blackholeMs: s.spec.blackholeMs ?? 0, distinct: s.spec.distinct !== undefined,
    })),
    ips: new LruMap(opts.ipsMax),
    prefixes: scenarios.map((s) => s.spec.type !== 'prefix' ? undefined : {
      sketch: new WindowedSketch(s.spec.windowMs ?? 10_000, opts.sketch.epsilon, opts.sketch.delta),
      top: new TopK(opts.sketch.topK, s.spec.minIps ?? 1),
      blackholes: new LruMap(10_000),
    }),
    allowlist,
    counters: { events: 0, allowlisted: 0, alerts: 0 },
  };
}

/** bytes held by the prefix sketches and top-K lists (the `sketch memory` metric) */
export function sketchBytes(state: DetectorState): number {
  let b = 0;
  for (const p of state.prefixes) if (p) b += p.sketch.bytes + p.top.bytes;
  return b;
}

/**
 * Drops the per-address state last fed from one of `sources` (partitions this guard no longer
 * reads: their next owner counts those addresses). Returns how many addresses were dropped.
 * Prefix sketches are shared by all addresses and age out with their window.
 */
export function forget(state: DetectorState, sources: ReadonlySet<number>): number {
  const gone: string[] = [];
  for (const [ip, st] of state.ips.entries()) if (st.source !== undefined && sources.has(st.source)) gone.push(ip);
  for (const ip of gone) state.ips.delete(ip);
  return gone.length;
}

/**
 * One event through every scenario. `crsBlocked` is asked at most once, and only when a scenario
 * that needs the Core Rule Set verdict got that far (the verdict is the costly part). `source`
 * tags the address's state with the input partition the event came from (see `forget`).
 */
export function detect(state: DetectorState, ev: GuardEvent, crsBlocked: () => boolean, source?: number): Alert[] {
  state.counters.events++;
  const ip = ev.client.ip;
  if (state.allowlist.has(ip)) {
    state.counters.allowlisted++;
    return [];
  }
  let verdict: boolean | undefined;
  const crs = () => (verdict ??= crsBlocked());
  const nowMs = ev.timeMs;
  const alerts: Alert[] = [];
  let st: IpState | undefined;
  for (const sc of state.scenarios) {
    if (!sc.match(ev, crs)) continue;
    const s = sc.spec;
    const alert = (scope: 'ip' | 'prefix', target: string, detail: string) => {
      alerts.push({ scenario: s.name, scope, target, v6: ev.client.v6, eventMs: nowMs, detail, dryRun: s.dryRun === true });
    };
    if (s.type === 'prefix') {
      const p = state.prefixes[sc.index]!;
      const prefix = ev.client.prefix;
      if (p.sketch.advance(nowMs)) p.top.decay();
      const est = p.sketch.add(prefix, nowMs);
      const entry = p.top.add(prefix, ip);
      if (est >= (s.threshold ?? Infinity) && entry.members.size >= (s.minIps ?? 1) && nowMs >= (p.blackholes.get(prefix) ?? 0)) {
        p.blackholes.set(prefix, nowMs + (s.blackholeMs ?? 0));
        alert('prefix', prefix, `~${Math.round(est)} requests in ${s.windowMs} ms from ≥${entry.members.size} addresses`);
      }
      continue;
    }
    if (!st) {
      st = state.ips.get(ip);
      if (!st) {
        st = { buckets: [], ratios: [] };
        state.ips.set(ip, st);
      }
      st.source = source;
    }
    if (s.type === 'ratio') continue; // counted below over every event of the source
    const spec = state.specs[sc.index];
    const b = (st.buckets[sc.index] ??= newBucket(nowMs));
    if (pour(spec, b, nowMs, sc.distinctOf(ev)) === 'overflow') {
      alert('ip', ip, `more than ${spec.capacity} events, leaking one per ${spec.leakMs} ms`);
    }
  }
  // ratio scenarios count every event of their source and the matching ones
  for (const sc of state.scenarios) {
    const s = sc.spec;
    if (s.type !== 'ratio' || ev.kind !== s.source) continue;
    if (!st) {
      st = state.ips.get(ip) ?? { buckets: [], ratios: [] };
      state.ips.set(ip, st);
      st.source = source;
    }
    let r = st.ratios[sc.index];
    const windowMs = s.windowMs ?? 60_000;
    if (!r || nowMs - r.startMs >= windowMs) r = st.ratios[sc.index] = { startMs: nowMs, total: 0, matched: 0, blackholeUntilMs: r?.blackholeUntilMs ?? 0 };
    r.total++;
    if (sc.match(ev, crs)) r.matched++;
    if (nowMs >= r.blackholeUntilMs && r.total >= (s.min ?? 1) && r.matched / r.total >= (s.threshold ?? 1)) {
      r.blackholeUntilMs = nowMs + (s.blackholeMs ?? 0);
      alerts.push({ scenario: s.name, scope: 'ip', target: ip, v6: ev.client.v6, eventMs: nowMs, detail: `${r.matched} of ${r.total} requests matched`, dryRun: s.dryRun === true });
      r.total = 0;
      r.matched = 0;
      r.startMs = nowMs;
    }
  }
  state.counters.alerts += alerts.length;
  return alerts;
}
