// Detection: `detect(state, event, nowMs)` → alerts. The state (per-IP columns in iptable.ts,
// sketches per prefix scenario) is owned by the caller and updated in place; no I/O, no clock:
// `nowMs` is the event's own time ($msec), so replaying a log gives the same alerts.
import { type BucketSpec, LruMap } from './bucket.js';
import { IpState } from './iptable.js';
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

interface PrefixState {
  sketch: WindowedSketch;
  top: TopK;
  blackholes: LruMap<number>;
}

export interface DetectorOptions {
  /** addresses with state kept at once; the least recently seen is forgotten first (iptable.ts) */
  ipsMax: number;
  /** 4-value blocks for the distinct values of all addresses' buckets (default one per address and distinct scenario) */
  seenBlocks?: number;
  sketch: { epsilon: number; delta: number; topK: number };
}

export interface DetectorState {
  scenarios: Scenario[];
  specs: BucketSpec[];
  ips: IpState;
  prefixes: Array<PrefixState | undefined>;
  allowlist: Allowlist;
  counters: { events: number; allowlisted: number; alerts: number };
}

export function newDetector(scenarios: Scenario[], allowlist: Allowlist, opts: DetectorOptions): DetectorState {
  const specs = scenarios.map((s) => ({
    capacity: s.spec.capacity ?? 0, leakMs: s.spec.leakMs ?? 1000, blackholeMs: s.spec.blackholeMs ?? 0, distinct: s.spec.distinct !== undefined,
  }));
  return {
    scenarios,
    specs,
    ips: new IpState(opts.ipsMax, scenarios.map((s, i) => ({ type: s.spec.type, bucket: specs[i] })), opts.seenBlocks),
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
  return state.ips.forget(sources);
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
  let entered = false;
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
    if (!entered) {
      state.ips.enter(ip, source);
      entered = true;
    }
    if (s.type === 'ratio') continue; // counted below over every event of the source
    const spec = state.specs[sc.index];
    if (state.ips.pour(sc.index, nowMs, sc.distinctOf(ev)) === 'overflow') {
      alert('ip', ip, `more than ${spec.capacity} events, leaking one per ${spec.leakMs} ms`);
    }
  }
  // ratio scenarios count every event of their source and the matching ones
  for (const sc of state.scenarios) {
    const s = sc.spec;
    if (s.type !== 'ratio' || ev.kind !== s.source) continue;
    if (!entered) {
      state.ips.enter(ip, source);
      entered = true;
    }
    const r = state.ips.count(sc.index, nowMs, sc.match(ev, crs), { windowMs: s.windowMs ?? 60_000, min: s.min ?? 1, threshold: s.threshold ?? 1, blackholeMs: s.blackholeMs ?? 0 });
    if (r) alerts.push({ scenario: s.name, scope: 'ip', target: ip, v6: ev.client.v6, eventMs: nowMs, detail: `${r.matched} of ${r.total} requests matched`, dryRun: s.dryRun === true });
  }
  state.counters.alerts += alerts.length;
  return alerts;
}
