// chicago token create: a new access token, printed once, and the line the node config needs.
import { hashSecret, newToken, parseScopes, parseToken, ScopeError } from '../../runtime/tokens.js';
import { type Parsed, flag, parseDuration, str } from '../args.js';
import { UsageError } from '../errors.js';
import { line } from '../output.js';

export async function tokenCreate(p: Parsed): Promise<void> {
  const raw = str(p, 'scopes');
  if (!raw) throw new UsageError('--scopes is required (e.g. --scopes topic:write:logs-*,kv:read:app)', p.command);
  const scopes = raw.split(',').map((s) => s.trim()).filter(Boolean);
  try {
    parseScopes(scopes);
  } catch (err) {
    if (err instanceof ScopeError) throw new UsageError(`--scopes: ${err.message}`, p.command);
    throw err;
  }
  const name = str(p, 'name');
  if (name !== undefined && (name.length === 0 || name.length > 128)) throw new UsageError('--name must have 1-128 characters', p.command);
  const expires = str(p, 'expires');
  let expiresAt: string | undefined;
  if (expires !== undefined) {
    const age = parseDuration(expires);
    const t = age !== undefined ? Date.now() + age : Date.parse(expires);
    if (Number.isNaN(t) || t <= Date.now()) throw new UsageError(`--expires: '${expires}' is neither a duration (30d) nor a future ISO-8601 time`, p.command);
    expiresAt = new Date(t).toISOString();
  }
  const { token, id } = newToken();
  const hash = await hashSecret(parseToken(token)!.secret);
  const entry = { id, hash, scopes, ...(name ? { name } : {}), ...(expiresAt ? { expiresAt } : {}) };
  if (flag(p, 'json')) return line(JSON.stringify({ token, entry }));
  await line(`token: ${token}`);
  await line('# shown once: keep it secret. Add this entry under security.tokens in the node config:');
  // loaded here: yaml is most of the CLI's start-up time, and only this command prints it
  const { default: YAML } = await import('yaml');
  await line(YAML.stringify([entry], { lineWidth: 0 }).trimEnd());
}
