// chicago guard --config FILE | guard ban|unban|list (docs/guard.md).
import { type Parsed, flag, parseDuration, str } from '../args.js';
import { UsageError } from '../errors.js';
import { DEFAULT_URL, caFrom, tokenFrom, wantsJson } from '../http.js';
import { line, table } from '../output.js';
import type { Decision } from '../../guard/decisions.js';

export async function guard(p: Parsed): Promise<void> {
  const config = str(p, 'config');
  if (!config) throw new UsageError('guard: --config FILE is required', 'guard');
  const { runGuard } = await import('../../guard/guard.js');
  await runGuard({ config });
}

async function withClient<T>(p: Parsed, fn: (c: import('../../client/index.js').ChicagoClient, o: { url: string; token?: string; ca?: string }) => Promise<T>): Promise<T> {
  const { ChicagoClient } = await import('../../client/index.js');
  const url = (str(p, 'url') ?? process.env.CHICAGO_URL ?? DEFAULT_URL).replace(/\/+$/, '');
  const token = tokenFrom(p);
  const ca = caFrom(p);
  const client = await ChicagoClient.connect({ url, clientName: 'chicago-cli-guard', ...(token ? { token } : {}), ...(ca ? { ca } : {}) });
  try {
    return await fn(client, { url, ...(token ? { token } : {}), ...(ca ? { ca } : {}) });
  } finally {
    client.close();
  }
}

async function withStore<T>(p: Parsed, fn: (s: import('../../guard/store.js').DecisionStore) => Promise<T>): Promise<T> {
  const { DecisionStore, ensureDecisionsTopic } = await import('../../guard/store.js');
  return withClient(p, async (client, { url, token, ca }) => {
    const topic = str(p, 'topic') ?? 'guard.decisions';
    await ensureDecisionsTopic(url, token, topic, { timeoutMs: 10_000, ...(ca ? { ca } : {}) });
    const store = new DecisionStore(client, topic, str(p, 'keyspace') ?? 'blocklist', 'cli');
    const out = await fn(store);
    await store.close();
    return out;
  });
}

async function target(p: Parsed) {
  const { canonicalTarget } = await import('../../guard/ip.js');
  const t = canonicalTarget(p.positionals[0]);
  if (!t) throw new UsageError(`'${p.positionals[0]}' is not an IP address or CIDR`, p.command);
  return t;
}

function manual(t: { value: string; v6: boolean; cidr: boolean }, detail: string, nowMs: number, untilMs: number): Decision {
  return { target: t.value, scope: t.cidr ? 'prefix' : 'ip', v6: t.v6, scenario: 'manual', detail, origin: 'manual', createdMs: nowMs, untilMs, offense: 1 };
}

export async function ban(p: Parsed): Promise<void> {
  const t = await target(p);
  const wide = (await import('../../guard/ip.js')).banTooWide(t);
  if (wide && !flag(p, 'force')) throw new UsageError(wide, p.command);
  const durationMs = parseDuration(str(p, 'duration') ?? '4h');
  if (durationMs === undefined || durationMs < 1000) throw new UsageError('--duration: a duration of at least 1s, like 30m or 4h', p.command);
  const now = Date.now();
  const d = manual(t, str(p, 'reason') ?? 'manual ban', now, now + durationMs);
  await withStore(p, (s) => s.put('ban', d));
  await line(wantsJson(p) ? JSON.stringify(d) : `banned ${d.target} until ${new Date(d.untilMs).toISOString()}`);
}

export async function unban(p: Parsed): Promise<void> {
  const t = await target(p);
  const now = Date.now();
  const d = manual(t, 'manual unban', now, now);
  // recorded either way (a guard may hold a ban the KV has not shown yet); said when none was stored
  const wasBanned = await withStore(p, (s) => s.put('unban', d));
  await line(wantsJson(p) ? JSON.stringify({ ...d, wasBanned }) : wasBanned ? `unbanned ${d.target}` : `${d.target} was not banned (the unban is recorded anyway)`);
}

export async function list(p: Parsed): Promise<void> {
  const now = Date.now();
  // reading the KV needs kv:read on it and nothing of the decisions topic
  const ds = await withClient(p, async (client) => (await import('../../guard/store.js')).loadDecisions(client, str(p, 'keyspace') ?? 'blocklist', now));
  ds.sort((a, b) => a.untilMs - b.untilMs);
  if (wantsJson(p)) {
    await line(JSON.stringify(ds));
    return;
  }
  await line(table(['TARGET', 'SCENARIO', 'OFFENSE', 'EXPIRES IN', 'DETAIL'], ds.map((d) => [d.target, d.scenario, d.offense, `${Math.round((d.untilMs - now) / 1000)}s`, d.detail])));
}

