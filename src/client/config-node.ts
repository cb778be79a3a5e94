// Pieces every client-side config (agent, guard) resolves the same way: schema errors as one
// message, and the node's token and CA from the file or the environment.
import type { ErrorObject } from 'ajv';
import { ConfigError } from '../runtime/config.js';
import { CaFileError, readCa } from './tls.js';
import { TokenFileError, resolveToken } from './token.js';

/** `node:` — where the node is and how to reach it */
export const nodeSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    url: { type: 'string', pattern: '^https?://' },
    token: { type: 'string', minLength: 1 },
    tokenFile: { type: 'string', minLength: 1 },
    ca: { type: 'string', minLength: 1 },
    timeoutMs: { type: 'integer', minimum: 100, maximum: 600_000 },
  },
} as const;

/** ajv's errors as `/path message (key)`, joined */
export function schemaMessage(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .map((e) => `${e.instancePath || '/'} ${e.message}${e.keyword === 'additionalProperties' ? ` (${(e.params as { additionalProperty: string }).additionalProperty})` : ''}`)
    .join('; ');
}

/** token (token, tokenFile, CHICAGO_TOKEN[_FILE]) and CA (ca, CHICAGO_CA); `what` prefixes errors */
export function nodeSecrets(
  node: { token?: string; tokenFile?: string; ca?: string } | undefined, abs: (p: string) => string, env: NodeJS.ProcessEnv, what: string,
): { token?: string; ca?: string } {
  try {
    const token = resolveToken({ token: node?.token, tokenFile: node?.tokenFile ? abs(node.tokenFile) : undefined, env });
    const ca = readCa(node?.ca ? abs(node.ca) : env.CHICAGO_CA);
    return { ...(token ? { token } : {}), ...(ca ? { ca } : {}) };
  } catch (err) {
    if (err instanceof TokenFileError || err instanceof CaFileError) throw new ConfigError(`${what}: ${err.message}`);
    throw err;
  }
}
