// Trusting a private CA (a cluster's own, or a test's) for HTTPS and WSS. The WebSocket client takes
// `ca` directly; fetch takes an undici dispatcher, one per CA (connections are pooled in it).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Agent } from 'undici';

// loaded on first use: undici is ~15 MB of a process's memory, and only a private CA needs it
const require = createRequire(import.meta.url);

const agents = new Map<string, Agent>();

/** The dispatcher that trusts `ca` (PEM), for fetch's `dispatcher` option; undefined: the system CAs. */
export function caDispatcher(ca: string | undefined): Agent | undefined {
  if (!ca) return undefined;
  let agent = agents.get(ca);
  if (!agent) {
    agent = new (require('undici') as typeof import('undici')).Agent({ connect: { ca } });
    agents.set(ca, agent);
  }
  return agent;
}

export class CaFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CaFileError';
  }
}

/** PEM text of a CA file (--ca, CHICAGO_CA); undefined when none is given. */
export function readCa(file: string | undefined): string | undefined {
  if (!file) return undefined;
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CaFileError(`cannot read the CA file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new CaFileError(`the CA file ${file} holds no PEM certificate`);
  return pem;
}
