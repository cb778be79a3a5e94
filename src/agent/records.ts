// One record format for everything the agent ships: headers host, task, source, seq, time and
// (when known) level on every record, whatever produced it (files, journald, scripts, health).
import { isUtf8 } from 'node:buffer';
import type { Entry, Spool } from './spool.js';

export interface AgentEvent {
  /** the record's value: text, or bytes (kept as bytes when they are not UTF-8) */
  value: string | Buffer;
  /** a path, a journald unit, a script name */
  source: string;
  /** event time (the first line's read time for a file; the source's own timestamp when it has one) */
  timeMs: number;
  level?: string;
  /** more headers; the standard ones above win */
  headers?: Record<string, string>;
}


/** A value for the spool: text when the bytes are UTF-8, base64 flagged otherwise (never replaced by U+FFFD). */
export function spoolValue(v: string | Buffer): { value: string; enc?: 'base64' } {
  if (typeof v === 'string') return v.isWellFormed() ? { value: v } : { value: Buffer.from(v, 'utf16le').toString('base64'), enc: 'base64' };
  // Buffer's decoder keeps a leading BOM (TextDecoder would drop it)
  return isUtf8(v) ? { value: v.toString('utf8') } : { value: v.toString('base64'), enc: 'base64' };
}

// the lines of one read share their read time: one toISOString for all of them
let lastMs = Number.NaN;
let lastIso = '';
function isoTime(ms: number): string {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}

/**
 * Spool entries for events of one task, seqs taken now: the caller appends them in this same turn
 * (seqs are gap-free only if every taken seq is appended).
 */
export function recordEntries(spool: Spool, host: string, task: string, topic: string, events: AgentEvent[]): Entry[] {
  const out: Entry[] = [];
  for (const ev of events) {
    const headers: Record<string, string> = { ...ev.headers, host, task, source: ev.source, time: isoTime(ev.timeMs) };
    if (ev.level) headers.level = ev.level;
    const seq = spool.takeSeq(task);
    headers.seq = String(seq);
    out.push({ t: 'rec', task, seq, topic, ...spoolValue(ev.value), headers });
  }
  return out;
}
