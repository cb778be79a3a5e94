// Test files that run in one shared worker thread instead of a process each (vitest.config.ts):
// pure in-process checks that start no process, thread or server and change no process-wide state,
// so what one leaves behind cannot reach the next. A fresh process per file costs about 0.4 s of
// CPU, more than most of these files' own tests. test/layers.test.ts holds each file to the rule;
// a file not listed runs in a process of its own.
export const IN_PROCESS_FILES = [
  'agent-files-unit', 'agent-health-unit', 'agent-speed', 'agent-spool-gap', 'agent-unit', 'anti-entropy-decide', 'bodies',
  'cli-tail-view', 'coalesce', 'control', 'copy-pacer', 'deadline', 'digest', 'disk-guard', 'frames', 'groups-unit',
  'guard-crs-libinjection', 'guard-crs', 'guard-group-unit', 'guard-iptable', 'guard-pm', 'guard-unit', 'handoff', 'partition',
  'placement', 'protocol-docs', 'replica', 'request-meter', 'tails', 'thread-codec', 'watermark',
].map((name) => `test/${name}.test.ts`);

/** what a listed file may not contain: processes, threads, sockets, mocks and process-wide state */
export const IN_PROCESS_FORBIDDEN =
  /child_process|worker_threads|node:net|node:http|node:dgram|launcher|startNode|spawn|execFile|new Worker|createServer|\.listen\(|vi\.mock|vi\.stub|useFakeTimers|process\.env\.\w+\s*=[^=]|process\.chdir|process\.on\(|process\.exitCode|globalThis\.\w+\s*=[^=]/;

/** the only test helpers a listed file may import */
export const IN_PROCESS_HELPERS = new Set(['slow', 'nemesis']);
