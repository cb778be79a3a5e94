// Joining lines into events (stack traces). Pure: lines in, finished events out; the caller owns
// clocks and offsets. An event's `start` is the file offset of its first line, which is where the
// checkpoint points while the event is pending, so a restart re-reads the whole event.
import type { MultilineConfig } from './config.js';

export interface Line { text: string; start: number; end: number; atMs: number }
export interface Event { text: string; start: number; end: number; lines: number; firstAtMs: number }

export interface Pending { lines: string[]; bytes: number; start: number; end: number; firstAtMs: number; lastAtMs: number; traceback: boolean }
export interface MultilineState { pending?: Pending }

type Rule = (p: Pending, line: string) => boolean;

// Java: the exception line after a log message ("java.lang.X: msg"), "\tat a.b(C.java:1)",
// "\t... 3 more", "Caused by: …", "\tSuppressed: …"; "Exception in thread …" starts an event.
const JAVA_CONT = /^(\s+at\s|\s+\.\.\.\s\d+\s(more|common frames omitted)|Caused by:|\s+Suppressed:|\s+\S|[\w$]+(\.[\w$]+)+(Exception|Error|Throwable)(:|$))/;
// Python: "Traceback (most recent call last):", indented frames, then the exception line ends it.
const PY_CHAIN = /^(During handling of the above exception|The above exception was the direct cause|Traceback \(most recent call last\):)/;

function ruleOf(cfg: MultilineConfig): Rule {
  if (cfg.preset === 'java') return (_p, line) => JAVA_CONT.test(line);
  if (cfg.preset === 'python') {
    return (p, line) => {
      if (/^\s/.test(line)) return true;
      if (!p.traceback) return false;
      if (line === '' || PY_CHAIN.test(line)) return true;
      // the exception line after the frames: joins when the previous line was a frame or source line
      const prev = p.lines[p.lines.length - 1];
      return /^\s/.test(prev);
    };
  }
  const start = cfg.start !== undefined ? new RegExp(cfg.start) : undefined;
  const cont = cfg.continue !== undefined ? new RegExp(cfg.continue) : undefined;
  return (_p, line) => {
    if (start && start.test(line)) return false;
    if (cont) return cont.test(line);
    return true;
  };
}

export class Multiline {
  private readonly rule: Rule;
  constructor(private readonly cfg: MultilineConfig) {
    this.rule = ruleOf(cfg);
  }

  /** Adds a line; returns the events it finished (0, 1 or 2). */
  push(s: MultilineState, line: Line, out: Event[]): void {
    const p = s.pending;
    const bytes = Buffer.byteLength(line.text) + 1;
    if (p && this.rule(p, line.text) && p.lines.length < this.cfg.maxLines && p.bytes + bytes <= this.cfg.maxBytes) {
      p.lines.push(line.text);
      p.bytes += bytes;
      p.end = line.end;
      p.lastAtMs = line.atMs;
      if (this.cfg.preset === 'python' && p.traceback && !/^\s/.test(line.text) && line.text !== '' && !PY_CHAIN.test(line.text)) {
        // the exception line ends a traceback
        out.push(finish(p));
        s.pending = undefined;
      }
      return;
    }
    if (p) out.push(finish(p));
    s.pending = {
      lines: [line.text], bytes, start: line.start, end: line.end, firstAtMs: line.atMs, lastAtMs: line.atMs,
      traceback: this.cfg.preset === 'python' && line.text.startsWith('Traceback (most recent call last):'),
    };
  }

  /** Ends the pending event when it has been quiet for quietMs (or always, with force). */
  flush(s: MultilineState, nowMs: number, out: Event[], force = false): void {
    const p = s.pending;
    if (!p) return;
    if (!force && nowMs - p.lastAtMs < this.cfg.quietMs) return;
    out.push(finish(p));
    s.pending = undefined;
  }

  /** When the pending event will be due, or undefined. */
  dueAt(s: MultilineState): number | undefined {
    return s.pending ? s.pending.lastAtMs + this.cfg.quietMs : undefined;
  }
}

function finish(p: Pending): Event {
  return { text: p.lines.join('\n'), start: p.start, end: p.end, lines: p.lines.length, firstAtMs: p.firstAtMs };
}

const LEVEL = /\b(TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|ERR|CRIT(?:ICAL)?|FATAL|SEVERE|PANIC)\b/i;
const LEVELS: Record<string, string> = {
  trace: 'trace', debug: 'debug', info: 'info', notice: 'info', warn: 'warn', warning: 'warn', error: 'error', err: 'error',
  crit: 'fatal', critical: 'fatal', fatal: 'fatal', severe: 'error', panic: 'fatal',
};

/** The level named near the start of an event, if any; a trace (Java, Python) is an error. */
export function detectLevel(text: string): string | undefined {
  const head = text.slice(0, 200);
  const m = LEVEL.exec(head.split('\n', 1)[0]);
  if (m) return LEVELS[m[1].toLowerCase()];
  if (/^Traceback \(most recent call last\):|^Exception in thread |\n\s+at \S+\(/.test(text)) return 'error';
  return undefined;
}
