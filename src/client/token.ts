// Where a client finds its token: an explicit value, a file (its first line), or the environment
// (CHICAGO_TOKEN, then CHICAGO_TOKEN_FILE). Shared by the CLI, the bridge and the bench.
import { readFileSync } from 'node:fs';

export class TokenFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenFileError';
  }
}

export function resolveToken(opts: { token?: string; tokenFile?: string; env?: NodeJS.ProcessEnv } = {}): string | undefined {
  const env = opts.env ?? process.env;
  if (opts.token) return opts.token.trim();
  const file = opts.tokenFile ?? (env.CHICAGO_TOKEN ? undefined : env.CHICAGO_TOKEN_FILE);
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new TokenFileError(`cannot read the token file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    const token = text.split('\n')[0].trim();
    if (!token) throw new TokenFileError(`the token file ${file} is empty`);
    return token;
  }
  return env.CHICAGO_TOKEN?.trim() || undefined;
}

/** The Authorization header for a token, or none. */
export function authHeader(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}
