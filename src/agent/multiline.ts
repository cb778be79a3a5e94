// Joining lines into events (stack traces). Pure: lines in, finished events out; the caller owns
// clocks and offsets. An event's `start` is the file offset of its first line, which is where the
// checkpoint points while the event is pending, so a restart re-reads the whole event. Line texts
// are the file's bytes as latin1 (one character per byte), so any bytes pass through unchanged and
// the caller turns an event back into the same bytes.
import type { MultilineConfig } from './config.js';

export interface Line { text: string; start: number; end: number; atMs: number }
export interface Event { text: string; start: number; end: number; lines: number; firstAtMs: number }

export interface Pending { lines: string[]; bytes: number; start: number; end: number; firstAtMs: number; lastAtMs: number; traceback: boolean }

/** A rule's second flag: a Python traceback or a Go panic block is open. */
function opensTrace(preset: MultilineConfig['preset'], line: string): boolean {
  if (preset === 'python') return line.startsWith('Traceback (most recent call last):');
  if (preset === 'go') return GO_START.test(line);
  return false;
}
export interface MultilineState { pending?: Pending }

type Rule = (p: Pending, line: string) => boolean;

// Java: the exception line after a log message ("java.lang.X: msg"), "\tat a.b(C.java:1)",
// "\t... 3 more", "Caused by: …", "\tSuppressed: …"; "Exception in thread …" starts an event.
const JAVA_CONT = /^(\s+at\s|\s+\.\.\.\s\d+\s(more|common frames omitted)|Caused by:|\s+Suppressed:|\s+\S|[\w$]+(\.[\w$]+)+(Exception|Error|Throwable)(:|$))/;
// Python: "Traceback (most recent call last):", indented frames, then the exception line ends it.
const PY_CHAIN = /^(During handling of the above exception|The above exception was the direct cause|Traceback \(most recent call last\):)/;

// Go: "panic: …" / "fatal error: …" then blank lines, "goroutine N [state]:", "pkg.fn(…)" and
// "\t/file.go:12 +0x1d" frames, "created by …", "[signal …]"; a "goroutine N [" block after a log
// line (debug.Stack) joins it.
const GO_START = /^(panic: |fatal error: |goroutine \d+ \[)/;
const GO_CONT = /^($|goroutine \d+ \[|\t|\s+|created by |\[signal |panic: |\[recovered\]|[\w./*()\[\]{}-]+\(.*\)$|\.\.\.\d* ?additional frames|exit status \d+$)/;
// Node: "Error: msg" / "TypeError [ERR_X]: msg" after a log line, "    at …" frames, "    ... 3 lines
// matching …", "[cause]: …" and "Caused by: …", an error's own properties ("  code: 'ENOENT'", "}"),
// the uncaught form ("file.js:12", the source line, its "^" marker and a blank line), and its
// "Node.js v20…" after a blank line at the end.
const NODE_CONT = /^(\s+at\s|\s+\.\.\.\s\d+\s(more|lines? matching)|\s*\[cause\]:|Caused by:|[\w$.]*(Error|Exception)( \[[\w-]+\])?(:\s|$)|\s+\S|\}$|\s*\^+\s*$|Node\.js v\d+)/;

function ruleOf(cfg: MultilineConfig): Rule {
  if (cfg.preset === 'go') {
    return (p, line) => {
      if (!p.traceback) return /^goroutine \d+ \[/.test(line);
      return GO_CONT.test(line);
    };
  }
  if (cfg.preset === 'node') {
    return (p, line) => {
      const prev = p.lines[p.lines.length - 1];
      // the uncaught form starts "file.js:12" and shows the source line after it
      if (p.lines.length === 1 && /^\S+:\d+$/.test(prev)) return true;
      if (line === '') return /^\s*(\^+|\})\s*$/.test(prev);
      return NODE_CONT.test(line);
    };
  }
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
    const bytes = line.text.length + 1;
    if (p && this.rule(p, line.text) && p.lines.length < this.cfg.maxLines && p.bytes + bytes <= this.cfg.maxBytes) {
      p.lines.push(line.text);
      p.bytes += bytes;
      p.end = line.end;
      p.lastAtMs = line.atMs;
      if (this.cfg.preset === 'go' && !p.traceback && /^goroutine \d+ \[/.test(line.text)) p.traceback = true;
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
      traceback: opensTrace(this.cfg.preset, line.text),
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

const TRACE = /^(Traceback \(most recent call last\):|Exception in thread |panic: |fatal error: )|\n\s+at \S+|\ngoroutine \d+ \[/;
/** Whether a line starting with char code c may start a trace (T, E, p, f): compares, not a Set lookup per line. */
function traceFirst(c: number): boolean {
  return c === 84 || c === 69 || c === 112 || c === 102;
}
/** chars of a line detectLevel looks at */
export const LEVEL_SCAN_CHARS = 200;

/** The level named near the start of an event, if any; a trace (Java, Python) is an error. */
export function detectLevel(text: string): string | undefined {
  const nl = text.indexOf('\n');
  const end = Math.min(nl < 0 ? text.length : nl, LEVEL_SCAN_CHARS);
  const m = LEVEL.exec(end === text.length ? text : text.slice(0, end));
  if (m) return LEVELS[m[1].toLowerCase()];
  // a single line is a trace only by its start (T, E, p, f): most lines skip the scan
  if (nl < 0 && !traceFirst(text.charCodeAt(0))) return undefined;
  if (TRACE.test(text)) return 'error';
  return undefined;
}

const LEVEL_ALL = new RegExp(LEVEL.source, 'gi');
const TRACE_STARTS = ['Traceback (most recent call last):', 'Exception in thread ', 'panic: ', 'fatal error: '];

function isWordChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

/**
 * detectLevel of each line of one text, asked in order, from one scan of the whole text: no string
 * per line. A line is [s, e) of the text with no newline in it, and the text's char before s is not
 * a word char (a newline, or s is 0), nor the one at e (a CR or newline, or the end).
 */
export class LineLevels {
  /** the first match at or after `from` (null: none) */
  private m: RegExpExecArray | null = null;
  private from = -1;

  constructor(private readonly text: string) {}

  of(s: number, e: number): string | undefined {
    const text = this.text;
    const limit = Math.min(e, s + LEVEL_SCAN_CHARS);
    // the last match found is this line's or a later one's (or there is none after it): no new scan
    if (this.from < 0 || (this.m !== null && this.m.index < s)) {
      LEVEL_ALL.lastIndex = s;
      this.m = LEVEL_ALL.exec(text);
      this.from = s;
    }
    const m = this.m;
    if (m !== null && m.index < limit && m.index + m[0].length <= limit) return LEVELS[m[1].toLowerCase()];
    // a word cut by the 200-char limit: detectLevel sees only its part before the limit
    if (limit < e && isWordChar(text.charCodeAt(limit - 1)) && isWordChar(text.charCodeAt(limit))) {
      let w = limit - 1;
      while (w > s && isWordChar(text.charCodeAt(w - 1))) w--;
      // the keywords are 3 to 8 letters
      if (limit - w >= 3 && limit - w <= 8) {
        const word = text.slice(w, limit).toLowerCase();
        if (Object.hasOwn(LEVELS, word)) return LEVELS[word];
      }
    }
    if (!traceFirst(text.charCodeAt(s))) return undefined;
    for (const p of TRACE_STARTS) if (p.length <= e - s && text.startsWith(p, s)) return 'error';
    return undefined;
  }
}
