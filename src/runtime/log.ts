import { requireCjs } from './require.js';

const pino = requireCjs('pino') as typeof import('pino');

export type Logger = import('pino').Logger;

/**
 * Structured JSON logs on stdout; the level comes from config. CHICAGO_LOG_SYNC=1 writes each line
 * before the call returns (a debug trace of a process killed -9 then ends where it stopped).
 */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  const opts = { level, base: { pid: process.pid, ...bindings } };
  return process.env.CHICAGO_LOG_SYNC === '1' ? pino(opts, pino.destination({ dest: 1, sync: true })) : pino(opts);
}
