// Decisions kept in the cluster: every change is a record of the `guard.decisions` topic (key: the
// target; followers such as middleware.ts and other guards apply it) and the current ones live in
// KV `blocklist/<target>` with a TTL, so whoever starts later reads what is in force.
import { type HttpReply, httpRequest } from '../client/http-json.js';
import { ChicagoError, type WireError } from '../runtime/errors.js';
import type { ChicagoClient } from '../client/index.js';
import type { Producer } from '../client/producer.js';
import type { Decision } from './decisions.js';
import { canonicalTarget } from './ip.js';

export interface DecisionRecord {
  action: 'ban' | 'unban';
  decision: Decision;
  /** the guard (or `cli`) that wrote it */
  by: string;
}

export function encodeRecord(r: DecisionRecord): string {
  return JSON.stringify(r);
}

export function decodeRecord(value: Uint8Array): DecisionRecord | undefined {
  try {
    const r = JSON.parse(Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8')) as DecisionRecord;
    const d = r?.decision;
    // anyone with topic:write on it writes here: a target that is no address or prefix is no decision
    if ((r.action !== 'ban' && r.action !== 'unban') || typeof d?.target !== 'string' || canonicalTarget(d.target) === undefined || typeof d.untilMs !== 'number') return undefined;
    return r;
  } catch {
    return undefined;
  }
}

/**
 * Creates the decisions topic (one partition: one order for every follower) when missing.
 */
export async function ensureDecisionsTopic(url: string, token: string | undefined, topic: string, o: { timeoutMs: number; ca?: string } = { timeoutMs: 10_000 }): Promise<void> {
  // node:http, not fetch: fetch would load undici into the guard (client/http-json.ts)
  const headers = { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const got = await httpRequest(`${url}/v1/topics/${encodeURIComponent(topic)}`, { headers, ...o });
  if (got.ok) return;
  // describing it takes any topic scope: a token refused here may not write to it either
  if (got.status === 403) throw replyError(`describing topic ${topic}`, got);
  const res = await httpRequest(`${url}/v1/topics`, { method: 'POST', headers, body: JSON.stringify({ name: topic, partitions: 1 }), ...o });
  if (!res.ok && res.status !== 409) throw replyError(`creating topic ${topic}`, res);
}

/** The node's `{"error":{code,message,retryable}}` as a ChicagoError (the CLI's `error CODE: …`, exit 2). */
function replyError(what: string, res: HttpReply): Error {
  try {
    const e = (JSON.parse(res.text) as { error?: WireError }).error;
    if (e && typeof e.code === 'string' && typeof e.message === 'string') return ChicagoError.fromWire({ ...e, message: `${what}: ${e.message}` });
  } catch { /* not the node's JSON */ }
  return new Error(`${what}: HTTP ${res.status} ${res.text.slice(0, 200)}`);
}

export class DecisionStore {
  private readonly producer: Producer;

  constructor(private readonly client: ChicagoClient, readonly topic: string, readonly keyspace: string, private readonly by: string) {
    this.producer = client.producer({ lingerMs: 0 });
  }

  /** Writes the record and the KV entry; resolves when both are acknowledged, with whether the KV held a decision for the target. */
  async put(action: 'ban' | 'unban', d: Decision): Promise<boolean> {
    const rec = encodeRecord({ action, decision: d, by: this.by });
    const kv = action === 'ban'
      ? this.client.kv.put(this.keyspace, d.target, JSON.stringify(d), { ttlSeconds: Math.max(1, Math.ceil((d.untilMs - Date.now()) / 1000)) }).then(() => true)
      : this.client.kv.delete(this.keyspace, d.target).then((r) => r.existed);
    const [, held] = await Promise.all([this.producer.send(this.topic, { key: d.target, value: rec, partition: 0 }), kv]);
    return held;
  }

  /** Every decision still in force. */
  async load(nowMs: number): Promise<Decision[]> {
    return loadDecisions(this.client, this.keyspace, nowMs);
  }

  async close(): Promise<void> {
    await this.producer.close();
  }
}

export async function loadDecisions(client: ChicagoClient, keyspace: string, nowMs: number): Promise<Decision[]> {
  const out: Decision[] = [];
  let after: Buffer | undefined;
  for (let page = 0; page < 100_000; page++) {
    const r = await client.kv.scan(keyspace, { limit: 1000, ...(after ? { after } : {}) });
    for (const it of r.items) {
      try {
        const d = JSON.parse(it.value.toString('utf8')) as Decision;
        if (typeof d?.target === 'string' && canonicalTarget(d.target) !== undefined && typeof d.untilMs === 'number' && d.untilMs > nowMs) out.push(d);
      } catch { /* not a decision */ }
    }
    if (!r.next) break;
    after = r.next;
  }
  return out;
}
