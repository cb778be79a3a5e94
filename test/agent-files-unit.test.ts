// The file source's pure parts: multiline presets for Go and Node against real traces (captured
// from `go run` with GOTRACEBACK=all and from node 20's uncaught-error output), rotated names
// (dated, extension, compressed), the rotation decision, and bytes kept as bytes.
import { describe, expect, it } from 'vitest';
import { Multiline, detectLevel, type Event, type MultilineState } from '../src/agent/multiline.js';
import { isRotatedName, rotatedName } from '../src/agent/identity.js';
import { rotateDue } from '../src/agent/rotate.js';
import { rotationOf } from '../src/agent/files.js';
import { spoolValue, wtf8 } from '../src/agent/records.js';
import { ConfigError, resolveAgentConfig } from '../src/agent/config.js';

function run(ml: Multiline, lines: string[]): { events: Event[]; s: MultilineState } {
  const s: MultilineState = {};
  const events: Event[] = [];
  let off = 0;
  lines.forEach((text, i) => {
    ml.push(s, { text, start: off, end: off + text.length + 1, atMs: i }, events);
    off += text.length + 1;
  });
  ml.flush(s, 1e9, events, true);
  return { events, s };
}
const ML = { quietMs: 100, maxLines: 500, maxBytes: 256 * 1024 };

// `go run main.go` with GOTRACEBACK=all: a recovered panic re-panicking, three goroutines
const GO_PANIC = [
  "2026/12/06 09:21:53 INFO starting",
  "panic: runtime error: index out of range [5] with length 3 [recovered]",
  "\tpanic: wrapped: runtime error: index out of range [5] with length 3: inner",
  "",
  "goroutine 1 [running]:",
  "main.main.func2()",
  "\t/tmp/gp/main.go:23 +0xa5",
  "panic({0x4c7600?, 0xddd6a896090?})",
  "\t/usr/local/go/src/runtime/panic.go:860 +0x13a",
  "main.(*server).handle(...)",
  "\t/tmp/gp/main.go:12",
  "main.main()",
  "\t/tmp/gp/main.go:27 +0xdc",
  "",
  "goroutine 7 [chan receive]:",
  "main.worker(...)",
  "\t/tmp/gp/main.go:14",
  "created by main.main in goroutine 1",
  "\t/tmp/gp/main.go:19 +0xb7",
  "",
  "goroutine 8 [runnable]:",
  "main.main.func1()",
  "\t/tmp/gp/main.go:20",
  "created by main.main in goroutine 1",
  "\t/tmp/gp/main.go:20 +0xc5",
  "exit status 2"
];

// node 20, an uncaught error with a cause chain and an own property
const NODE_UNCAUGHT = [
  "/tmp/t.js:2",
  "function outer() { try { inner(); } catch (e) { const err = new Error('request failed', { cause: e }); err.code = 'E_REQ'; throw err; } }",
  "                                                                                                                           ^",
  "",
  "Error: request failed",
  "    at outer (/tmp/t.js:2:61)",
  "    at Object.<anonymous> (/tmp/t.js:3:1)",
  "    ... 5 lines matching cause stack trace ...",
  "    at node:internal/main/run_main_module:28:49 {",
  "  code: 'E_REQ',",
  "  [cause]: TypeError: bad input",
  "      at inner (/tmp/t.js:1:26)",
  "      at outer (/tmp/t.js:2:26)",
  "      ... 6 lines matching cause stack trace ...",
  "      at node:internal/main/run_main_module:28:49 {",
  "    [cause]: Error: disk full",
  "        at inner (/tmp/t.js:1:62)",
  "        at outer (/tmp/t.js:2:26)",
  "        at Object.<anonymous> (/tmp/t.js:3:1)",
  "        at Module._compile (node:internal/modules/cjs/loader:1521:14)",
  "        at Module._extensions..js (node:internal/modules/cjs/loader:1623:10)",
  "        at Module.load (node:internal/modules/cjs/loader:1266:32)",
  "        at Module._load (node:internal/modules/cjs/loader:1091:12)",
  "        at Function.executeUserEntryPoint [as runMain] (node:internal/modules/run_main:164:12)",
  "        at node:internal/main/run_main_module:28:49",
  "  }",
  "}",
  "",
  "Node.js v20.20.2"
];

describe('multiline presets: go and node', () => {
  it('go: a goroutine panic with all goroutines is one event after the log line before it', () => {
    const ml = new Multiline({ ...ML, preset: 'go' });
    const { events } = run(ml, [...GO_PANIC, '2026/12/06 09:22:00 INFO restarted']);
    expect(events.map((e) => e.lines)).toEqual([1, GO_PANIC.length - 1, 1]);
    expect(events[1].text.startsWith('panic: runtime error: index out of range')).toBe(true);
    expect(events[1].text).toContain('goroutine 8 [runnable]:');
    expect(events[1].text.endsWith('exit status 2')).toBe(true);
    expect(detectLevel(events[1].text)).toBe('fatal');
    expect(events[2].text).toBe('2026/12/06 09:22:00 INFO restarted');
  });

  it('go: a debug.Stack dump after a log line joins it; "fatal error:" starts a block', () => {
    const ml = new Multiline({ ...ML, preset: 'go' });
    const { events } = run(ml, [
      '2026/12/06 ERROR handler failed', 'goroutine 12 [running]:', 'runtime/debug.Stack()', '\t/usr/local/go/src/runtime/debug/stack.go:26 +0x5e',
      'main.handler(0xc000010000)', '\t/app/main.go:40 +0x25', '2026/12/06 INFO next',
      'fatal error: all goroutines are asleep - deadlock!', '', 'goroutine 1 [chan receive]:', 'main.main()', '\t/app/main.go:9 +0x2d', 'after',
    ]);
    expect(events.map((e) => e.lines)).toEqual([6, 1, 5, 1]);
  });

  it('node: an uncaught error with [cause] chain, properties and the Node.js version line is one event', () => {
    const ml = new Multiline({ ...ML, preset: 'node' });
    const { events } = run(ml, ['{"level":30,"msg":"listening"}', ...NODE_UNCAUGHT, '{"level":30,"msg":"restarted"}']);
    expect(events.map((e) => e.lines)).toEqual([1, NODE_UNCAUGHT.length, 1]);
    expect(events[1].text).toContain('[cause]: Error: disk full');
  });

  it('node: a logged error stack, "Caused by:" and a TypeError [ERR_X] join the log line before them', () => {
    const ml = new Multiline({ ...ML, preset: 'node' });
    const { events } = run(ml, [
      '2026-12-06T09:00:00Z ERROR request failed', 'TypeError [ERR_INVALID_ARG_TYPE]: The "path" argument must be of type string',
      '    at Object.open (node:fs:580:10)', '    at main (/app/index.js:3:6)', 'Caused by: Error: inner', '    at x (/app/y.js:1:1)',
      '2026-12-06T09:00:01Z INFO ok',
    ]);
    expect(events.map((e) => e.lines)).toEqual([6, 1]);
    expect(detectLevel(events[0].text)).toBe('error');
  });

  it('counts bytes as latin1 (one per byte): a line of any bytes passes through unchanged', () => {
    const ml = new Multiline({ ...ML, continue: '^\\s' });
    const raw = Buffer.from([0x66, 0xff, 0xfe, 0x00, 0xc3, 0x28, 0x0a]);
    const { events } = run(ml, [raw.toString('latin1', 0, 6), ' more']);
    expect(Buffer.from(events[0].text, 'latin1')).toEqual(Buffer.concat([raw.subarray(0, 6), Buffer.from('\n more')]));
  });
});

describe('rotated names, rotation decision, bytes', () => {
  it('knows .1, dated (dateext, dateformat forms), extension-kept and compressed names; not other files', () => {
    for (const n of ['app.log.1', 'app.log-20261206', 'app.log.2026-12-06', 'app.log-2026120613', 'app.log_20261206-1733491200', 'app-20261206.log', 'app.1.log']) {
      expect(isRotatedName('app.log', n), n).toBe(true);
    }
    expect(rotatedName('app.log', 'app.log.1.gz')).toEqual({ compressed: 'gz' });
    expect(rotatedName('app.log', 'app.log-20261206.gz')).toEqual({ compressed: 'gz' });
    expect(rotatedName('app.log', 'app-20261206.log.gz')).toEqual({ compressed: 'gz' });
    expect(isRotatedName('app.log', 'app.log.1.gz')).toBe(false);
    for (const n of ['app.log', 'app.logx', 'app-web.log', 'apps.log', 'other.log.1']) expect(rotatedName('app.log', n), n).toBeUndefined();
  });

  it('a glob pass finds the base a name is a rotated copy of by lookup (the same answers as comparing every pair)', () => {
    const names = ['app.log', 'app.log.1', 'app.log.2.gz', 'app-20261206.log', 'app-20261206.log.gz', 'app.log-20261206', 'app.log_20261206-1733491200',
      'app-web.log', 'apps.log', 'other.log', 'other.log.1', 'x.y.z', 'x.y.z.3', 'a-b_c.d.e', 'a-b_c-20261206.d.e', 'lone.log.1'];
    const set = new Set(names);
    for (const n of names) {
      const pairs = names.map((b) => rotatedName(b, n)).filter((r) => r !== undefined);
      const want = pairs.find((r) => r.compressed !== undefined) ?? pairs[0];
      expect(rotationOf(set, n), n).toEqual(want);
    }
    expect(rotationOf(set, 'app.log.2.gz')).toEqual({ compressed: 'gz' });
    expect(rotationOf(set, 'app-20261206.log')).toEqual({});
    expect(rotationOf(set, 'lone.log.1')).toBeUndefined();
  });

  it('rotates at maxBytes or maxAgeMs, never an empty file', () => {
    const ro = { keep: 3, mode: 'copytruncate' as const, compress: false };
    expect(rotateDue({ ...ro, maxBytes: 100 }, 99, 0, 1e9)).toBe(false);
    expect(rotateDue({ ...ro, maxBytes: 100 }, 100, 0, 0)).toBe(true);
    expect(rotateDue({ ...ro, maxAgeMs: 1000 }, 5, 0, 999)).toBe(false);
    expect(rotateDue({ ...ro, maxAgeMs: 1000 }, 5, 0, 1000)).toBe(true);
    expect(rotateDue({ ...ro, maxAgeMs: 1000 }, 0, 0, 5000)).toBe(false);
  });

  it('keeps bytes that are not UTF-8 as base64, a BOM included; UTF-8 stays text', () => {
    expect(spoolValue(Buffer.from([0xef, 0xbb, 0xbf, 0x61]))).toEqual({ value: '\ufeffa' });
    expect(spoolValue(Buffer.from('héllo'))).toEqual({ value: 'héllo' });
    const bad = Buffer.from([0x61, 0xff, 0x00, 0xc3, 0x28]);
    expect(spoolValue(bad)).toEqual({ value: bad.toString('base64'), enc: 'base64' });
  });

  it('checks sources[].rotate: needs a trigger, signal only with rename, unknown keys rejected', () => {
    const src = { task: 't', paths: ['/x.log'], topic: 'logs' };
    const r = resolveAgentConfig({ sources: [{ ...src, rotate: { maxBytes: 4096, mode: 'rename', signal: { pidFile: 'app.pid' } } }] }, '/run', {});
    expect(r.sources[0].rotate).toEqual({ maxBytes: 4096, keep: 5, mode: 'rename', signal: { pidFile: '/run/app.pid', signal: 'SIGHUP' }, compress: false });
    expect(() => resolveAgentConfig({ sources: [{ ...src, rotate: { keep: 2 } }] }, '/', {})).toThrow(/maxBytes or maxAgeMs/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, rotate: { maxBytes: 4096, signal: { pidFile: 'p' } } }] }, '/', {})).toThrow(/mode rename/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, rotate: { maxBytes: 4096, mode: 'rename', signal: { pidFile: 'p', signal: 'SIGNOPE' } } }] }, '/', {})).toThrow(/not a signal/);
    expect(() => resolveAgentConfig({ sources: [{ ...src, rotate: { maxBytes: 4096, size: 5 } }] }, '/', {})).toThrow(ConfigError);
    expect(() => resolveAgentConfig({ sources: [{ ...src, rotate: { maxBytes: 4096, size: 5 } }] }, '/', {})).toThrow(/\(size\)/);
  });
});

describe('text without a UTF-8 form', () => {
  it('keeps lone surrogates as their generalized UTF-8 bytes, pairs and other text as UTF-8', () => {
    expect(wtf8('a\ud800b')).toEqual(Buffer.from([0x61, 0xed, 0xa0, 0x80, 0x62]));
    expect(wtf8('\udfff')).toEqual(Buffer.from([0xed, 0xbf, 0xbf]));
    expect(wtf8('x\ud83d\ude00\udc00')).toEqual(Buffer.concat([Buffer.from('x\u{1f600}'), Buffer.from([0xed, 0xb0, 0x80])]));
    expect(wtf8('é€')).toEqual(Buffer.from('é€'));
    expect(spoolValue('a\ud800')).toEqual({ value: Buffer.from([0x61, 0xed, 0xa0, 0x80]).toString('base64'), enc: 'base64' });
    expect(spoolValue('plain')).toEqual({ value: 'plain' });
  });
});
