// Who is asking, and may they: bearer tokens checked against the config's salted hashes, scopes
// checked per operation, browser origins checked against the allowed list. With no tokens
// configured (only allowed on a loopback address) every request is allowed.
import { isIP } from 'node:net';
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import type { SecurityConfig, TokenEntry } from '../runtime/config.js';
import type { Logger } from '../runtime/log.js';
import { allows, mayAny, mayDescribeTopic, parseScopes, parseToken, tokenFingerprint, verifySecret, type Resource, type Scope } from '../runtime/tokens.js';

/** The caller of a request: a token's id, name and scopes; `open` when the node runs without tokens. */
export interface Principal {
  readonly id: string;
  readonly name: string;
  readonly scopes: readonly Scope[];
}

const OPEN: Principal = { id: 'open', name: 'open', scopes: parseScopes(['*']) };
const BEARER = /^bearer\s+/i;

interface Entry { id: string; name: string; hash: string; scopes: Scope[]; expiresAtMs?: number; revoked: boolean }

/** Why a request was refused, for the metric's label and the log (never the token). */
export type RefusalReason = 'missing' | 'malformed' | 'unknown' | 'mismatch' | 'expired' | 'revoked' | 'scope' | 'origin';

export class AuthError extends ChicagoError {
  /** `token` names the token presented (its public id, and its name when the node knows it), for the log */
  constructor(code: 'UNAUTHENTICATED' | 'FORBIDDEN', readonly reason: RefusalReason, message: string, readonly token?: { id: string; name?: string }) {
    super(code, message);
  }
}

export class Authenticator {
  private entries = new Map<string, Entry>();
  /** fingerprint of a presented token → the id it was verified for; bounded, least recently used goes */
  private readonly verified = new Map<string, string>();
  private verifying = 0;
  private origins = new Set<string>();
  private anyOrigin = false;
  private refusalWindowStartMs = 0;
  private refusalLines = 0;
  private refusalsNotLogged = 0;

  constructor(sec: SecurityConfig) {
    this.reload(sec);
  }

  /** Takes a new token list and origins (SIGHUP): revoked and removed tokens stop working at once. */
  reload(sec: SecurityConfig): void {
    const entries = new Map<string, Entry>();
    for (const t of sec.tokens) entries.set(t.id, toEntry(t));
    this.entries = entries;
    this.verified.clear();
    this.origins = new Set(sec.allowedOrigins.filter((o) => o !== '*'));
    this.anyOrigin = sec.allowedOrigins.includes('*');
  }

  /** no tokens configured: every request is allowed */
  get open(): boolean { return this.entries.size === 0; }

  /** the caller when the node runs without tokens */
  authenticateOpen(): Principal {
    if (!this.open) throw new Error('authenticateOpen on a node with tokens');
    return OPEN;
  }

  /**
   * The caller of an `Authorization` header value (or a bare token, from a WebSocket hello).
   * `missing` says where the token goes on the edge that asks.
   */
  async authenticate(presented: string | undefined, missing = 'send Authorization: Bearer <token>'): Promise<Principal> {
    if (this.open) return OPEN;
    if (presented === undefined || presented === '') throw new AuthError('UNAUTHENTICATED', 'missing', missing);
    // the scheme is case-insensitive (RFC 9110): `bearer` and `BEARER` are Bearer too
    const token = (BEARER.test(presented) ? presented.replace(BEARER, '') : presented).trim();
    const parsed = parseToken(token);
    if (!parsed) throw new AuthError('UNAUTHENTICATED', 'malformed', 'the token is not of the form chicago_<id>_<secret>');
    const entry = this.entries.get(parsed.id);
    if (!entry) throw new AuthError('UNAUTHENTICATED', 'unknown', 'unknown token', { id: parsed.id });
    const named = { id: entry.id, name: entry.name };
    if (entry.revoked) throw new AuthError('UNAUTHENTICATED', 'revoked', `token ${entry.id} is revoked`, named);
    if (entry.expiresAtMs !== undefined && Date.now() >= entry.expiresAtMs) throw new AuthError('UNAUTHENTICATED', 'expired', `token ${entry.id} expired`, named);
    const fp = tokenFingerprint(token);
    if (this.verified.get(fp) === entry.id) {
      // refresh its place in the LRU order
      this.verified.delete(fp);
      this.verified.set(fp, entry.id);
      return principalOf(entry);
    }
    if (this.verifying >= limits.tokenVerificationsMax) throw new ChicagoError('OVERLOADED', 'token verification', `${this.verifying} checks running`);
    this.verifying++;
    let ok: boolean;
    try {
      ok = await verifySecret(parsed.secret, entry.hash);
    } finally {
      this.verifying--;
    }
    // the list may have been reloaded while scrypt ran
    const now = this.entries.get(parsed.id);
    if (!ok || now === undefined || now.hash !== entry.hash) throw new AuthError('UNAUTHENTICATED', 'mismatch', 'wrong token', named);
    if (this.verified.size >= limits.verifiedTokensMax) this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(fp, entry.id);
    return principalOf(now);
  }

  /**
   * Whether a caller authenticated earlier still may act: its token was not revoked, removed,
   * changed or expired since (a WebSocket checks this on every request, a reload takes effect at once).
   */
  stillValid(who: Principal): boolean {
    if (who === OPEN) return this.open;
    const e = this.entries.get(who.id);
    // a reload that keeps the token as it was (same hash, same scopes) keeps its connections
    return e !== undefined && !e.revoked && (e.expiresAtMs === undefined || Date.now() < e.expiresAtMs)
      && e.hash === entryHash(who) && sameScopes(e.scopes, who.scopes);
  }

  /** Throws FORBIDDEN unless `who` may do `action` on `resource` `name`. */
  authorize(who: Principal, resource: Resource, action: string, name?: string): void {
    if (allows(who.scopes, resource, action, name)) return;
    const what = name === undefined ? `${resource}:${action}` : `${resource}:${action}:${name}`;
    throw new AuthError('FORBIDDEN', 'scope', `token ${who.name} has no scope for ${what}`, { id: who.id, name: who.name });
  }

  /** Throws FORBIDDEN unless `who` may describe topic `name` (mayDescribeTopic). */
  authorizeDescribe(who: Principal, name: string): void {
    if (mayDescribeTopic(who.scopes, name)) return;
    throw new AuthError('FORBIDDEN', 'scope', `token ${who.name} has no scope to read, write or administer topic ${name}`, { id: who.id, name: who.name });
  }

  may(who: Principal, resource: Resource, action: string, name?: string): boolean {
    return allows(who.scopes, resource, action, name);
  }

  mayAny(who: Principal, resource: Resource, actions: readonly string[]): boolean {
    return mayAny(who.scopes, resource, actions);
  }

  /** A browser's Origin header: absent (not a browser) or on the allowed list. */
  originAllowed(origin: string): boolean {
    return origin === '' || this.anyOrigin || this.origins.has(origin);
  }

  /**
   * A page the node served itself (the console at /ui) opening its WebSocket: the Origin is the
   * address the browser reached the node by (`Host`, with the listener's scheme). Only for an IP
   * address or `localhost` in `Host`: a name could be an attacker's, re-pointed at the node (DNS
   * rebinding), so a console reached by name needs that origin in `security.allowedOrigins`.
   * Tokens are still required as for any other client.
   */
  sameOrigin(origin: string, host: string, secure: boolean): boolean {
    return sameOriginByAddress(origin, host, secure);
  }

  /**
   * Logs a refused request with the token's id and name (never the token), at most
   * authRefusalLogLinesPerSecondMax lines a second on all edges together: past that the lines are
   * dropped and counted, and the next line logged says how many (a flood of bad tokens must not
   * flood the log; chicago_auth_refused_total counts every one).
   */
  logRefusal(log: Logger, edge: 'http' | 'ws', e: AuthError, where: Record<string, unknown>): void {
    const now = Date.now();
    if (now - this.refusalWindowStartMs >= 1000) {
      this.refusalWindowStartMs = now;
      this.refusalLines = 0;
    }
    if (this.refusalLines >= limits.authRefusalLogLinesPerSecondMax) {
      this.refusalsNotLogged++;
      return;
    }
    this.refusalLines++;
    const notLogged = this.refusalsNotLogged;
    this.refusalsNotLogged = 0;
    log.warn({ edge, code: e.code, reason: e.reason, ...(e.token ? { token: e.token } : {}), ...where, ...(notLogged > 0 ? { notLogged } : {}) }, 'request refused');
  }

  /** the origin to echo in Access-Control-Allow-Origin, or undefined for none */
  corsOrigin(origin: string): string | undefined {
    return origin !== '' && (this.anyOrigin || this.origins.has(origin)) ? origin : undefined;
  }
}

/** see Authenticator.sameOrigin */
export function sameOriginByAddress(origin: string, host: string, secure: boolean): boolean {
  if (origin === '' || host === '' || origin !== `${secure ? 'https' : 'http'}://${host}`) return false;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+))(?::\d{1,5})?$/.exec(host);
  if (!m) return false;
  if (m[1] !== undefined) return isIP(m[1]) === 6;
  return m[2].toLowerCase() === 'localhost' || isIP(m[2]) === 4;
}

function toEntry(t: TokenEntry): Entry {
  return {
    id: t.id,
    name: t.name ?? t.id,
    hash: t.hash,
    scopes: parseScopes(t.scopes),
    ...(t.expiresAt !== undefined ? { expiresAtMs: Date.parse(t.expiresAt) } : {}),
    revoked: t.revoked === true,
  };
}

const hashes = new WeakMap<Principal, string>();
const entryHash = (who: Principal) => hashes.get(who);
const sameScopes = (a: readonly Scope[], b: readonly Scope[]) => a.length === b.length && a.every((s, i) => s.text === b[i].text);

function principalOf(e: Entry): Principal {
  const who = { id: e.id, name: e.name, scopes: e.scopes };
  hashes.set(who, e.hash);
  return who;
}
