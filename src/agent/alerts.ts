// The alert rule engine, pure: (rules, state, sample, now) -> (state, transitions). A sample is a
// flat map of numbers (`disk./.usedPercent`, `load.1`, `app.web.up`, `ship.lagSeconds`, …; the
// names are listed in docs/agent.md); the caller turns transitions into records, webhooks and KV.

export type Op = '>' | '>=' | '<' | '<=' | '==' | '!=';

export interface AlertRule {
  name: string;
  /** a sample field; `*` matches any characters, and each matching field is an alert of its own */
  field: string;
  op: Op;
  threshold: number;
  /** the condition must hold this long before the alert fires */
  forMs: number;
  /** hysteresis: a firing alert holds while `field op clear` holds (default: the threshold) */
  clear?: number;
  /** and resolves once that has not held for this long */
  clearForMs: number;
  severity: string;
  description?: string;
}

interface Instance {
  rule: string;
  field: string;
  phase: 'pending' | 'firing';
  /** when the condition began to hold */
  sinceMs: number;
  firedAtMs?: number;
  /** when the (clear) condition stopped holding, while firing */
  clearingSinceMs?: number;
  value?: number;
}

export interface AlertState { readonly instances: Readonly<Record<string, Instance>> }

export interface Transition {
  id: string;
  rule: string;
  field: string;
  state: 'firing' | 'resolved';
  /** the field's value at the transition (absent when the field disappeared from the sample) */
  value?: number;
  op: Op;
  threshold: number;
  severity: string;
  description?: string;
  /** firing: when the condition began; resolved: when the alert fired */
  sinceMs: number;
  atMs: number;
}

export interface ActiveAlert { id: string; rule: string; field: string; value?: number; firedAtMs: number; severity: string; op: Op; threshold: number }

export const emptyAlertState: AlertState = { instances: {} };

export function holds(op: Op, value: number, threshold: number): boolean {
  switch (op) {
    case '>': return value > threshold;
    case '>=': return value >= threshold;
    case '<': return value < threshold;
    case '<=': return value <= threshold;
    case '==': return value === threshold;
    case '!=': return value !== threshold;
  }
}

/** `disk./.usedPercent > 90` → field, op, threshold. */
export function parseWhen(text: string): { field: string; op: Op; threshold: number } {
  const m = /^\s*(\S(?:.*?\S)?)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$/.exec(text);
  if (!m) throw new Error(`not a condition: '${text}' (want FIELD OP NUMBER, OP one of > >= < <= == !=)`);
  // `load.1 >> 3` or `load.1 => 3` would read as a field `load.1 >` that no sample has: the rule would never fire
  if (/[<>=!]$/.test(m[1])) throw new Error(`not a condition: '${text}' (the field '${m[1]}' ends in an operator; want FIELD OP NUMBER, OP one of > >= < <= == !=)`);
  return { field: m[1], op: m[2] as Op, threshold: Number(m[3]) };
}

/** '250ms', '30s', '5m', '1h', or a number of ms. */
export function durationMs(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new Error(`not a duration: '${v}'`);
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 'ms']!);
}

/**
 * Samples are an interval apart give or take a few ms (the next run is timed from this one's start):
 * `for: 30s` at 10 s intervals fires at the fourth sample, not at the fifth when it comes 1 ms early.
 */
export function alertSlackMs(intervalMs: number): number {
  return Math.min(100, intervalMs / 10);
}

function fieldMatcher(pattern: string): (f: string) => boolean {
  if (!pattern.includes('*')) return (f) => f === pattern;
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return (f) => re.test(f);
}

const idOf = (rule: AlertRule, field: string) => (rule.field.includes('*') ? `${rule.name}[${field}]` : rule.name);

/**
 * One evaluation of every rule against a sample. `slackMs`: a `for`/`clearFor` short of this much
 * counts as held, so a sample that comes a few ms early (timer jitter) does not wait a whole interval;
 * a condition first seen in this sample has held for no time, whatever the slack.
 */
export function evaluate(rules: readonly AlertRule[], state: AlertState, sample: ReadonlyMap<string, number>, nowMs: number, slackMs = 0): { state: AlertState; transitions: Transition[] } {
  const next: Record<string, Instance> = {};
  const transitions: Transition[] = [];
  const seen = new Set<string>();
  const held = (sinceMs: number, forMs: number) => forMs === 0 || (nowMs > sinceMs && nowMs - sinceMs >= forMs - slackMs);
  const fire = (rule: AlertRule, inst: Instance, atMs: number, kind: 'firing' | 'resolved', id: string) => {
    transitions.push({
      id, rule: rule.name, field: inst.field, state: kind, ...(inst.value !== undefined ? { value: inst.value } : {}),
      op: rule.op, threshold: rule.threshold, severity: rule.severity, ...(rule.description ? { description: rule.description } : {}),
      sinceMs: kind === 'firing' ? inst.sinceMs : inst.firedAtMs!, atMs,
    });
  };
  for (const rule of rules) {
    const match = fieldMatcher(rule.field);
    for (const [field, value] of sample) {
      if (!match(field)) continue;
      const id = idOf(rule, field);
      seen.add(id);
      const prev = state.instances[id];
      if (!prev || prev.phase === 'pending') {
        if (!holds(rule.op, value, rule.threshold)) continue;
        const inst: Instance = { rule: rule.name, field, phase: 'pending', sinceMs: prev?.sinceMs ?? nowMs, value };
        if (held(inst.sinceMs, rule.forMs)) {
          inst.phase = 'firing';
          inst.firedAtMs = nowMs;
          fire(rule, inst, nowMs, 'firing', id);
        }
        next[id] = inst;
        continue;
      }
      const inst: Instance = { ...prev, value };
      if (holds(rule.op, value, rule.clear ?? rule.threshold)) {
        delete inst.clearingSinceMs;
        next[id] = inst;
        continue;
      }
      inst.clearingSinceMs ??= nowMs;
      if (held(inst.clearingSinceMs, rule.clearForMs)) fire(rule, inst, nowMs, 'resolved', id);
      else next[id] = inst;
    }
  }
  // a field gone from the sample (an unmounted disk, a removed app) no longer holds its condition
  const byName = new Map(rules.map((r) => [r.name, r]));
  for (const [id, prev] of Object.entries(state.instances)) {
    if (seen.has(id) || prev.phase !== 'firing') continue;
    const rule = byName.get(prev.rule);
    if (!rule) continue;
    const inst: Instance = { ...prev, clearingSinceMs: prev.clearingSinceMs ?? nowMs };
    delete inst.value;
    if (held(inst.clearingSinceMs!, rule.clearForMs)) fire(rule, inst, nowMs, 'resolved', id);
    else next[id] = inst;
  }
  return { state: { instances: next }, transitions };
}

export function activeAlerts(rules: readonly AlertRule[], state: AlertState): ActiveAlert[] {
  const byName = new Map(rules.map((r) => [r.name, r]));
  const out: ActiveAlert[] = [];
  for (const [id, i] of Object.entries(state.instances)) {
    const r = byName.get(i.rule);
    if (i.phase !== 'firing' || !r) continue;
    out.push({ id, rule: i.rule, field: i.field, ...(i.value !== undefined ? { value: i.value } : {}), firedAtMs: i.firedAtMs!, severity: r.severity, op: r.op, threshold: r.threshold });
  }
  return out;
}

/**
 * The firing alerts as text, kept in the agent's spool with the transition records that changed
 * them, so a restarted agent neither fires an alert again nor forgets to resolve one. Pending
 * alerts are not kept: their `for:` starts again after a restart.
 */
export function alertStateText(state: AlertState): string {
  const firing: Record<string, Instance> = {};
  for (const [id, i] of Object.entries(state.instances)) if (i.phase === 'firing') firing[id] = i;
  return JSON.stringify(firing);
}

/** The state `alertStateText` wrote, keeping only alerts whose rule still exists; unreadable text is no state. */
export function restoreAlertState(rules: readonly AlertRule[], text: string | undefined): AlertState {
  if (!text) return emptyAlertState;
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch { return emptyAlertState; }
  if (!parsed || typeof parsed !== 'object') return emptyAlertState;
  const names = new Set(rules.map((r) => r.name));
  const instances: Record<string, Instance> = {};
  for (const [id, v] of Object.entries(parsed as Record<string, Partial<Instance>>)) {
    if (!v || typeof v.rule !== 'string' || !names.has(v.rule) || typeof v.field !== 'string') continue;
    if (typeof v.sinceMs !== 'number' || typeof v.firedAtMs !== 'number') continue;
    instances[id] = {
      rule: v.rule, field: v.field, phase: 'firing', sinceMs: v.sinceMs, firedAtMs: v.firedAtMs,
      ...(typeof v.clearingSinceMs === 'number' ? { clearingSinceMs: v.clearingSinceMs } : {}),
      ...(typeof v.value === 'number' ? { value: v.value } : {}),
    };
  }
  return { instances };
}

/** Events per minute over the last 60 s, in one-second buckets (fixed memory). */
export class RateWindow {
  private readonly buckets = new Float64Array(60);
  private readonly second = new Float64Array(60).fill(-1);

  add(nowMs: number, n = 1): void {
    const s = Math.floor(nowMs / 1000);
    const i = s % 60;
    if (this.second[i] !== s) {
      this.second[i] = s;
      this.buckets[i] = 0;
    }
    this.buckets[i] += n;
  }

  perMinute(nowMs: number): number {
    const s = Math.floor(nowMs / 1000);
    let sum = 0;
    for (let i = 0; i < 60; i++) if (this.second[i] > s - 60 && this.second[i] <= s) sum += this.buckets[i];
    return sum;
  }
}
