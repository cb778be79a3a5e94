import pino from 'pino';

export type Logger = pino.Logger;

/** Structured JSON logs on stdout; the level comes from config. */
export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { pid: process.pid, ...bindings } });
}
