// Access tokens and their scopes. A token is `chicago_<id>_<secret>`: the id (public, 12 hex
// digits) finds the config entry, the secret (32 random bytes) is checked against the entry's
// salted scrypt hash. Scopes are `resource:action:pattern` strings; patterns are globs over names.
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

export const TOKEN_PREFIX = 'chicago_';
const TOKEN_RE = /^chicago_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
const HASH_RE = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/;
/** scrypt cost: N=2^14, r=8, p=1 (16 MiB, tens of ms); verified once per token, then cached */
const SCRYPT = { N: 16384, r: 8, p: 1, keyLen: 32, saltLen: 16 } as const;

/** What each resource's scopes may say; `*` as the action means every action of that resource. */
export const SCOPE_ACTIONS = {
  kv: ['read', 'write'],
  topic: ['read', 'write', 'admin'],
  group: ['use'],
  cluster: ['read', 'admin', 'peer'],
  agent: ['exec'],
} as const;

export type Resource = keyof typeof SCOPE_ACTIONS;
export type Action<R extends Resource = Resource> = (typeof SCOPE_ACTIONS)[R][number];

export interface Scope {
  resource: Resource | '*';
  action: string;
  /** matches the resource name; undefined: any name */
  pattern?: RegExp;
  text: string;
}

export class ScopeError extends Error {}

/** `*`, `?` and literal characters; names are [A-Za-z0-9._-], so nothing else needs escaping rules */
export function globToRegExp(glob: string): RegExp {
  if (!/^[A-Za-z0-9._*?/-]+$/.test(glob)) throw new ScopeError(`scope pattern ${JSON.stringify(glob)} may hold only [A-Za-z0-9._/-], * and ?`);
  const body = glob.replace(/[.]/g, '\\.').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * Parses one scope: `*` (everything), `kv:read:<glob>`, `kv:write:<glob>`, `topic:read|write|admin:<glob>`,
 * `group:<glob>` (commit and read a group's offsets), `cluster:read` (status, metrics), `cluster:admin`,
 * `cluster:peer` (node-to-node links), `agent:exec:<host glob>`.
 */
export function parseScope(text: string): Scope {
  if (text === '*') return { resource: '*', action: '*', text };
  const parts = text.split(':');
  const resource = parts[0] as Resource;
  if (!(resource in SCOPE_ACTIONS)) throw new ScopeError(`scope ${JSON.stringify(text)}: unknown resource ${JSON.stringify(parts[0])} (${Object.keys(SCOPE_ACTIONS).join(', ')})`);
  // group:<glob> has a single action, so it is not spelled out
  if (resource === 'group') {
    if (parts.length !== 2) throw new ScopeError(`scope ${JSON.stringify(text)}: write group:<glob>`);
    return { resource, action: 'use', pattern: globToRegExp(parts[1]), text };
  }
  if (resource === 'cluster') {
    if (parts.length !== 2) throw new ScopeError(`scope ${JSON.stringify(text)}: write cluster:read, cluster:admin or cluster:peer`);
    if (!(SCOPE_ACTIONS.cluster as readonly string[]).includes(parts[1]) && parts[1] !== '*') throw new ScopeError(`scope ${JSON.stringify(text)}: unknown action ${JSON.stringify(parts[1])}`);
    return { resource, action: parts[1], text };
  }
  if (parts.length !== 3) throw new ScopeError(`scope ${JSON.stringify(text)}: write ${resource}:<action>:<pattern>`);
  const [, action, glob] = parts;
  if (action !== '*' && !(SCOPE_ACTIONS[resource] as readonly string[]).includes(action)) {
    throw new ScopeError(`scope ${JSON.stringify(text)}: ${resource} actions are ${SCOPE_ACTIONS[resource].join(', ')} or *`);
  }
  return { resource, action, pattern: glob === '*' ? undefined : globToRegExp(glob), text };
}

export function parseScopes(texts: readonly string[]): Scope[] {
  if (texts.length === 0) throw new ScopeError('a token needs at least one scope');
  return texts.map(parseScope);
}

/**
 * Topics whose records make a host agent run scripts: `agent.commands.<host>`. Writing to one needs
 * `agent:exec:<host>`; no `topic:write` scope (not even `topic:write:*`) reaches them.
 */
export const COMMAND_TOPIC_PREFIX = 'agent.commands.';

/** The scope a write to `topic` needs: `agent:exec:<host>` for a command topic, else `topic:write:<topic>`. */
export function topicWriteNeed(topic: string): [Resource, string, string] {
  if (topic.startsWith(COMMAND_TOPIC_PREFIX) && topic.length > COMMAND_TOPIC_PREFIX.length) return ['agent', 'exec', topic.slice(COMMAND_TOPIC_PREFIX.length)];
  return ['topic', 'write', topic];
}

/**
 * Describing a topic (partitions, offsets, retention) needs any scope that reads, writes or
 * administers it, as Kafka's Describe comes with Read, Write and Alter: a producer learns the
 * partitions it writes to without being allowed to read the records.
 */
export function mayDescribeTopic(scopes: readonly Scope[], topic: string): boolean {
  const [resource, action, name] = topicWriteNeed(topic);
  return allows(scopes, 'topic', 'read', topic) || allows(scopes, 'topic', 'admin', topic) || allows(scopes, resource, action, name);
}

/** True when one of `scopes` allows `action` on `resource` named `name` (no name: resource-wide actions). */
export function allows(scopes: readonly Scope[], resource: Resource, action: string, name?: string): boolean {
  return scopes.some((s) => {
    if (s.resource === '*') return true;
    if (s.resource !== resource) return false;
    if (s.action !== '*' && s.action !== action) return false;
    if (!s.pattern) return true;
    return name !== undefined && s.pattern.test(name);
  });
}

/** True when some scope could allow `action` on some name of `resource` (to filter lists). */
export function mayAny(scopes: readonly Scope[], resource: Resource, actions: readonly string[]): boolean {
  return scopes.some((s) => s.resource === '*' || (s.resource === resource && (s.action === '*' || actions.includes(s.action))));
}

// ---- tokens ----

export interface ParsedToken { id: string; secret: string }

export function parseToken(text: string): ParsedToken | undefined {
  const m = TOKEN_RE.exec(text);
  return m ? { id: m[1], secret: m[2] } : undefined;
}

export function newToken(): { token: string; id: string } {
  const id = randomBytes(6).toString('hex');
  return { token: `${TOKEN_PREFIX}${id}_${randomBytes(32).toString('base64url')}`, id };
}

function scryptAsync(secret: string, salt: Buffer, N: number, r: number, p: number, keyLen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, keyLen, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** `scrypt$N$r$p$salt$hash` (base64), the form the config holds */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(SCRYPT.saltLen);
  const key = await scryptAsync(secret, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p, SCRYPT.keyLen);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export function checkHashFormat(hash: string): void {
  const m = HASH_RE.exec(hash);
  if (!m) throw new ScopeError('hash must look like scrypt$N$r$p$salt$hash (from `chicago token create`)');
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N < 1024 || N > 1 << 20 || (N & (N - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16) throw new ScopeError(`scrypt parameters N=${N} r=${r} p=${p} are out of range`);
}

export async function verifySecret(secret: string, hash: string): Promise<boolean> {
  const m = HASH_RE.exec(hash);
  if (!m) return false;
  const expected = Buffer.from(m[5], 'base64');
  const key = await scryptAsync(secret, Buffer.from(m[4], 'base64'), Number(m[1]), Number(m[2]), Number(m[3]), expected.length);
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** a fast fingerprint of a presented token, for the verified-token cache (never logged) */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token).digest('base64');
}
