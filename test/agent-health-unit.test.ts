// Health parsers on recorded /proc, `systemctl show` and Prometheus text; the alert rule engine
// (for:, hysteresis, resolve, wildcards, vanished fields); webhook backoff; the monitor config.
import { describe, expect, it } from 'vitest';
import { type AlertRule, RateWindow, activeAlerts, alertSlackMs, alertStateText, durationMs, emptyAlertState, evaluate, parseWhen, restoreAlertState } from '../src/agent/alerts.js';
import { resolveAgentConfig } from '../src/agent/config.js';
import { flattenHealth, Health, type HealthSample, lsbState, systemdCode } from '../src/agent/health.js';
import { createLogger } from '../src/runtime/log.js';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  cpuPercent, dataMounts, flattenNumbers, parseLoadavg, parseMeminfo, parseMounts, parsePidStat, parseProcStat,
  parsePrometheusText, parseSystemctlShow,
} from '../src/agent/procfs.js';
import { backoffMs } from '../src/agent/webhook.js';

const STAT_A = 'cpu  1382356 528 97684 426080 3040 0 9735 1962 0 0\ncpu0 691234 230 48494 213339 1685 0 4764 1028 0 0\nintr 1 2 3\n';
const STAT_B = 'cpu  1382456 528 97684 426380 3140 0 9735 1962 0 0\ncpu0 691234 230 48494 213339 1685 0 4764 1028 0 0\n';
const MEMINFO = [
  'MemTotal:       24731408 kB', 'MemFree:        11887112 kB', 'MemAvailable:   23933900 kB', 'Buffers:          209744 kB',
  'Cached:         11520720 kB', 'SwapCached:            0 kB', 'Active(anon):     123456 kB', 'SwapTotal:       1048576 kB', 'SwapFree:         786432 kB', '',
].join('\n');
const MOUNTS = [
  'proc /proc proc rw,relatime 0 0',
  'sysfs /sys sysfs rw,relatime 0 0',
  'tmpfs /dev/shm tmpfs rw,relatime,size=24731408k 0 0',
  '/dev/vda / ext4 rw,relatime 0 0',
  '/dev/vdb /srv/my\\040data xfs rw 0 0',
  '/dev/vda /run/netns ext4 rw,relatime 0 0',
  'cgroup2 /sys/fs/cgroup cgroup2 rw 0 0',
  '/dev/vdc /srv/my\\040data ext4 rw 0 0',
  '',
].join('\n');

describe('procfs parsers', () => {
  it('/proc/stat → CPU busy and iowait percent between two readings', () => {
    const a = parseProcStat(STAT_A);
    const b = parseProcStat(STAT_B);
    expect(a.idle).toBe(426080);
    // 100 user + 300 idle + 100 iowait ticks: busy 20 %, iowait 20 %
    expect(cpuPercent(a, b)).toEqual({ usedPercent: 20, iowaitPercent: 20 });
    expect(cpuPercent(b, b)).toEqual({ usedPercent: 0, iowaitPercent: 0 });
    expect(() => parseProcStat('intr 1 2\n')).toThrow(/cpu/);
  });

  it('/proc/meminfo → bytes and percents', () => {
    const m = parseMeminfo(MEMINFO);
    expect(m.totalBytes).toBe(24731408 * 1024);
    expect(m.availableBytes).toBe(23933900 * 1024);
    expect(m.availablePercent).toBeCloseTo(96.78, 2);
    expect(m.swapUsedPercent).toBe(25);
    // without MemAvailable (old kernels): free + cached
    expect(parseMeminfo('MemTotal: 100 kB\nMemFree: 10 kB\nCached: 20 kB\n').availablePercent).toBe(30);
  });

  it('/proc/loadavg', () => {
    expect(parseLoadavg('4.17 2.91 3.35 1/97 26301\n')).toEqual({ 1: 4.17, 5: 2.91, 15: 3.35 });
  });

  it('/proc/PID/stat, with a comm holding spaces and parentheses', () => {
    const s = parsePidStat('26302 (cat) R 26297 26297 16945 0 -1 4194304 99 0 0 0 7 3 0 0 20 0 1 0 961368 3133440 412 18446744073709551615 94600309637120\n');
    expect(s).toMatchObject({ pid: 26302, comm: 'cat', state: 'R', ppid: 26297, cpuTicks: 10, threads: 1, startTicks: 961368, rssPages: 412 });
    const z = parsePidStat('77 (a (b) c) Z 12 77 77 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 5000 0 0 18446744073709551615 0');
    expect(z).toMatchObject({ pid: 77, comm: 'a (b) c', state: 'Z', ppid: 12, startTicks: 5000 });
  });

  it('/proc/self/mounts: escapes decoded; pseudo filesystems skipped; a path mounted over keeps its last mount', () => {
    const all = parseMounts(MOUNTS);
    expect(all).toHaveLength(8);
    expect(all[4].path).toBe('/srv/my data');
    const data = dataMounts(all);
    expect(data.map((m) => [m.path, m.fsType])).toEqual([['/', 'ext4'], ['/srv/my data', 'ext4'], ['/run/netns', 'ext4']]);
  });

  it('systemctl show: one unit per block, states as LSB-like codes', () => {
    const text = [
      'Id=ssh.service', 'ActiveState=active', 'SubState=running', 'MainPID=812', 'NRestarts=0', '',
      'Id=cron.service', 'ActiveState=failed', 'SubState=failed', 'MainPID=0', 'NRestarts=3', '',
      'Id=nginx.service', 'ActiveState=inactive', 'SubState=dead', 'MainPID=0', 'NRestarts=0', '',
      'Id=nope.service', 'ActiveState=inactive', 'SubState=dead', '',
    ].join('\n');
    const units = parseSystemctlShow(text);
    expect(units.map((u) => [u.id, u.activeState, u.subState, u.mainPid, u.restarts])).toEqual([
      ['ssh.service', 'active', 'running', 812, 0],
      ['cron.service', 'failed', 'failed', 0, 3],
      ['nginx.service', 'inactive', 'dead', 0, 0],
      ['nope.service', 'inactive', 'dead', 0, 0],
    ]);
    expect(units.map((u) => systemdCode(u.activeState))).toEqual([0, 1, 3, 3]);
    expect(lsbState(3)).toBe('stopped');
    expect(lsbState(-1)).toBe('no answer');
  });

  it('Prometheus text: labels with braces and escaped quotes, special values, comments, a cap', () => {
    const text = [
      '# HELP http_requests_total Total requests.',
      '# TYPE http_requests_total counter',
      'http_requests_total{method="post",code="200"} 1027 1395066363000',
      'http_requests_total{method="post",code="400"}    3 1395066363000',
      'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9',
      'odd{label="a}b"} 2',
      'metric_without_labels 12.47',
      'inf_metric +Inf',
      'nan_metric NaN',
      'broken{label="x" 5',
      'no_value',
      '',
    ].join('\n');
    const m = parsePrometheusText(text, 100);
    expect(m.get('http_requests_total{method="post",code="200"}')).toBe(1027);
    expect(m.get('http_requests_total{method="post",code="400"}')).toBe(3);
    expect(m.get('msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""}')).toBe(1.458255915e9);
    expect(m.get('odd{label="a}b"}')).toBe(2);
    expect(m.get('metric_without_labels')).toBe(12.47);
    expect(m.get('inf_metric')).toBe(Infinity);
    expect(Number.isNaN(m.get('nan_metric'))).toBe(true);
    expect(m.size).toBe(7);
    expect(parsePrometheusText(text, 2).size).toBe(2);
  });

  it('a command JSON: numeric and boolean leaves as dotted paths, capped', () => {
    const m = flattenNumbers({ queue: 7, ok: true, name: 'x', pool: { active: 3, idle: 1, nested: [5] } }, 100);
    expect([...m]).toEqual([['queue', 7], ['ok', 1], ['pool.active', 3], ['pool.idle', 1], ['pool.nested.0', 5]]);
    expect(flattenNumbers({ a: 1, b: 2, c: 3 }, 2).size).toBe(2);
  });
});

describe('zombies', () => {
  it('counts zombies with their parent; the agent\'s own just-exited children (reaped within a turn) are not counted', async () => {
    const proc = await mkdtemp(path.join(os.tmpdir(), 'chicago-proc-'));
    const stat = (pid: number, comm: string, state: string, ppid: number) => `${pid} (${comm}) ${state} ${ppid} ${pid} ${pid} 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 5000 0 0 18446744073709551615 0\n`;
    const write = async (pid: number, text: string) => { await mkdir(path.join(proc, String(pid))); await writeFile(path.join(proc, String(pid), 'stat'), text); };
    await write(process.pid, stat(process.pid, 'node', 'S', 1));
    await write(900001, stat(900001, 'hwclock.sh', 'Z', process.pid));
    await write(900002, stat(900002, 'worker', 'Z', 900003));
    await write(900003, stat(900003, 'sloppy-parent', 'S', 1));
    const cfg = resolveAgentConfig({ health: {}, sources: [{ task: 'a', paths: ['/x'], topic: 't' }] }, '/', {}).monitor.health!;
    const h = new Health(cfg, createLogger('silent'), proc);
    const s = await h.collect(Date.now());
    expect(s.zombies).toEqual({ count: 1, processes: [{ pid: 900002, comm: 'worker', ppid: 900003, parentComm: 'sloppy-parent' }] });
  });
});

describe('health fields', () => {
  it('a sample flattens to the fields rules name', () => {
    const s: HealthSample = {
      time: '', timeMs: 0, intervalMs: 10_000,
      load: { 1: 1.5, 5: 1, 15: 0.5 },
      cpu: { usedPercent: 12, iowaitPercent: 1, cores: 2 },
      memory: { totalBytes: 100, availableBytes: 4, availablePercent: 4, swapTotalBytes: 0, swapUsedPercent: 0 },
      disks: [{ path: '/', fsType: 'ext4', device: '/dev/vda', totalBytes: 100, availBytes: 5, usedPercent: 95, inodesUsedPercent: 3 }],
      zombies: { count: 2, processes: [] },
      apps: [{ name: 'web', up: 1, pid: 10, cpuPercent: 50, restarts: 1, stats: { 'q{a="b"}': 3 } }],
      services: [{ name: 'nginx', kind: 'initd', code: 3, state: 'stopped', checkedAtMs: 0 }],
    };
    const f = flattenHealth(s);
    expect(Object.fromEntries(f)).toMatchObject({
      'load.1': 1.5, 'disk./.usedPercent': 95, 'memory.availablePercent': 4, 'zombies.count': 2,
      'app.web.up': 1, 'app.web.cpuPercent': 50, 'app.web.restarts': 1, 'app.web.stats.q{a="b"}': 3, 'service.nginx': 3,
    });
    expect(f.has('app.web.rssBytes')).toBe(false);
  });
});

const rule = (over: Partial<AlertRule> & Pick<AlertRule, 'name' | 'field' | 'op' | 'threshold'>): AlertRule => ({ forMs: 0, clearForMs: 0, severity: 'warning', ...over });
const sample = (o: Record<string, number>) => new Map(Object.entries(o));

describe('alert engine', () => {
  it('parses conditions and durations', () => {
    expect(parseWhen('disk./.usedPercent > 90')).toEqual({ field: 'disk./.usedPercent', op: '>', threshold: 90 });
    expect(parseWhen('memory.availablePercent<5.5')).toEqual({ field: 'memory.availablePercent', op: '<', threshold: 5.5 });
    expect(parseWhen('service.nginx != 0')).toEqual({ field: 'service.nginx', op: '!=', threshold: 0 });
    expect(parseWhen('disk./srv/my data.usedPercent >= 1e2').field).toBe('disk./srv/my data.usedPercent');
    expect(() => parseWhen('load.1 ~ 4')).toThrow(/not a condition/);
    // a doubled or swapped operator is a typo, not a field named `load.1 >` that never fires
    for (const typo of ['load.1 >> 3', 'load.1 => 3', 'load.1 =< 3', 'load.1 !== 3', 'load.1 === 3']) expect(() => parseWhen(typo), typo).toThrow(/ends in an operator/);
    expect(() => parseWhen('load.1 > four')).toThrow();
    expect([durationMs('30s'), durationMs('1.5m'), durationMs('250ms'), durationMs(40), durationMs('2h')]).toEqual([30_000, 90_000, 250, 40, 7_200_000]);
  });

  it('for: fires only after the condition held that long; a break restarts the wait', () => {
    const rules = [rule({ name: 'load', field: 'load.1', op: '>', threshold: 4, forMs: 30_000 })];
    let st = emptyAlertState;
    let r = evaluate(rules, st, sample({ 'load.1': 5 }), 0);
    expect(r.transitions).toEqual([]);
    r = evaluate(rules, (st = r.state), sample({ 'load.1': 5 }), 20_000);
    expect(r.transitions).toEqual([]);
    // the condition breaks: the wait starts again
    r = evaluate(rules, (st = r.state), sample({ 'load.1': 3 }), 25_000);
    r = evaluate(rules, (st = r.state), sample({ 'load.1': 6 }), 30_000);
    r = evaluate(rules, (st = r.state), sample({ 'load.1': 6 }), 50_000);
    expect(r.transitions).toEqual([]);
    r = evaluate(rules, (st = r.state), sample({ 'load.1': 7 }), 60_000);
    expect(r.transitions).toEqual([expect.objectContaining({ id: 'load', state: 'firing', value: 7, sinceMs: 30_000, atMs: 60_000 })]);
    expect(activeAlerts(rules, r.state)).toEqual([expect.objectContaining({ id: 'load', firedAtMs: 60_000, value: 7 })]);
    // firing again is not a new transition
    r = evaluate(rules, (st = r.state), sample({ 'load.1': 8 }), 70_000);
    expect(r.transitions).toEqual([]);
    r = evaluate(rules, (st = r.state), sample({ 'load.1': 1 }), 80_000);
    expect(r.transitions).toEqual([expect.objectContaining({ id: 'load', state: 'resolved', value: 1, sinceMs: 60_000, atMs: 80_000 })]);
    expect(activeAlerts(rules, r.state)).toEqual([]);
    expect(r.state.instances).toEqual({});
  });

  it('for: and clearFor: count a sample a few ms early (timer jitter) as on time', () => {
    const rules = [rule({ name: 'app-down', field: 'app.app.up', op: '==', threshold: 0, forMs: 30_000, clearForMs: 20_000 })];
    const slack = alertSlackMs(10_000);
    // samples 10 s apart, each 1 ms early: for: 30s fires at the fourth one (29,997 ms after the first), not at the fifth
    let r = evaluate(rules, emptyAlertState, sample({ 'app.app.up': 0 }), 0, slack);
    for (const t of [9_999, 19_998]) r = evaluate(rules, r.state, sample({ 'app.app.up': 0 }), t, slack);
    expect(r.transitions).toEqual([]);
    r = evaluate(rules, r.state, sample({ 'app.app.up': 0 }), 29_997, slack);
    expect(r.transitions).toEqual([expect.objectContaining({ state: 'firing', atMs: 29_997 })]);
    r = evaluate(rules, r.state, sample({ 'app.app.up': 1 }), 39_996, slack);
    r = evaluate(rules, r.state, sample({ 'app.app.up': 1 }), 49_995, slack);
    expect(r.transitions).toEqual([]);
    r = evaluate(rules, r.state, sample({ 'app.app.up': 1 }), 59_994, slack);
    expect(r.transitions).toEqual([expect.objectContaining({ state: 'resolved', atMs: 59_994 })]);
    // a sample a whole second early does not count
    r = evaluate(rules, emptyAlertState, sample({ 'app.app.up': 0 }), 0, slack);
    expect(evaluate(rules, r.state, sample({ 'app.app.up': 0 }), 29_000, slack).transitions).toEqual([]);    // a for: within the slack still needs a second sample: the first has held for no time
    const short = [rule({ name: 'blip', field: 'app.app.up', op: '==', threshold: 0, forMs: 50, clearForMs: 50 })];
    const first = evaluate(short, emptyAlertState, sample({ 'app.app.up': 0 }), 1_000, slack);
    expect(first.transitions).toEqual([]);
    expect(evaluate(short, first.state, sample({ 'app.app.up': 0 }), 1_100, slack).transitions).toEqual([expect.objectContaining({ state: 'firing' })]);
  });

  it('firing alerts survive a restart through their text: no second firing, a resolve still comes', () => {
    const rules = [rule({ name: 'load', field: 'load.1', op: '>', threshold: 4, forMs: 10_000 }), rule({ name: 'mem', field: 'mem', op: '<', threshold: 5, forMs: 10_000 })];
    let r = evaluate(rules, emptyAlertState, sample({ 'load.1': 5, mem: 3 }), 0);
    r = evaluate(rules, r.state, sample({ 'load.1': 5, mem: 3 }), 10_000);
    expect(r.transitions.map((t) => t.id)).toEqual(['load', 'mem']);
    // mem pending again is not kept; a rule removed from the config drops its alert
    r = evaluate(rules, r.state, sample({ 'load.1': 5, mem: 3 }), 11_000);
    const text = alertStateText(r.state);
    const restored = restoreAlertState([rules[0]], text);
    expect(activeAlerts([rules[0]], restored)).toEqual([expect.objectContaining({ id: 'load', firedAtMs: 10_000 })]);
    expect(evaluate([rules[0]], restored, sample({ 'load.1': 6 }), 20_000).transitions).toEqual([]);
    expect(evaluate([rules[0]], restored, sample({ 'load.1': 1 }), 20_000).transitions).toEqual([expect.objectContaining({ id: 'load', state: 'resolved', sinceMs: 10_000 })]);
    // without the text the alert fires again: what the kept state prevents
    let fresh = evaluate([rules[0]], emptyAlertState, sample({ 'load.1': 6 }), 20_000);
    fresh = evaluate([rules[0]], fresh.state, sample({ 'load.1': 6 }), 30_000);
    expect(fresh.transitions.map((t) => t.state)).toEqual(['firing']);
    // text that is not the agent's own is no state
    for (const bad of [undefined, '', 'nope', '[]', '{"x":{"rule":"load"}}', 'null']) expect(restoreAlertState(rules, bad).instances).toEqual({});
  });

  it('hysteresis: a clear threshold and clearFor keep a flapping value from resolving', () => {
    const rules = [rule({ name: 'disk', field: 'disk./.usedPercent', op: '>', threshold: 90, clear: 80, clearForMs: 20_000 })];
    let r = evaluate(rules, emptyAlertState, sample({ 'disk./.usedPercent': 91 }), 0);
    expect(r.transitions.map((t) => t.state)).toEqual(['firing']);
    // below the threshold but above the clear threshold: still firing
    r = evaluate(rules, r.state, sample({ 'disk./.usedPercent': 85 }), 10_000);
    expect(r.transitions).toEqual([]);
    expect(activeAlerts(rules, r.state)).toHaveLength(1);
    // below the clear threshold, but not for clearFor yet
    r = evaluate(rules, r.state, sample({ 'disk./.usedPercent': 70 }), 20_000);
    r = evaluate(rules, r.state, sample({ 'disk./.usedPercent': 82 }), 30_000);
    // back above 80: the clear wait restarts
    r = evaluate(rules, r.state, sample({ 'disk./.usedPercent': 70 }), 40_000);
    r = evaluate(rules, r.state, sample({ 'disk./.usedPercent': 70 }), 55_000);
    expect(r.transitions).toEqual([]);
    r = evaluate(rules, r.state, sample({ 'disk./.usedPercent': 70 }), 60_000);
    expect(r.transitions).toEqual([expect.objectContaining({ state: 'resolved', sinceMs: 0, atMs: 60_000 })]);
  });

  it('wildcards: one alert per matching field; a field that disappears resolves', () => {
    const rules = [rule({ name: 'full', field: 'disk.*.usedPercent', op: '>', threshold: 90 }), rule({ name: 'zombies', field: 'zombies.count', op: '>', threshold: 0, severity: 'critical' })];
    let r = evaluate(rules, emptyAlertState, sample({ 'disk./.usedPercent': 95, 'disk./srv.usedPercent': 10, 'disk./tmp/x.usedPercent': 99, 'disk./.availBytes': 1, 'zombies.count': 1 }), 0);
    expect(r.transitions.map((t) => [t.id, t.state, t.severity])).toEqual([
      ['full[disk./.usedPercent]', 'firing', 'warning'],
      ['full[disk./tmp/x.usedPercent]', 'firing', 'warning'],
      ['zombies', 'firing', 'critical'],
    ]);
    r = evaluate(rules, r.state, sample({ 'disk./.usedPercent': 95, 'zombies.count': 1 }), 1000);
    expect(r.transitions).toEqual([expect.objectContaining({ id: 'full[disk./tmp/x.usedPercent]', state: 'resolved' })]);
    expect(r.transitions[0].value).toBeUndefined();
    expect(activeAlerts(rules, r.state).map((a) => a.id).sort()).toEqual(['full[disk./.usedPercent]', 'zombies']);
  });

  it('== and != on codes (app up, service status)', () => {
    const rules = [rule({ name: 'down', field: 'app.web.up', op: '==', threshold: 0 }), rule({ name: 'svc', field: 'service.nginx', op: '!=', threshold: 0 })];
    let r = evaluate(rules, emptyAlertState, sample({ 'app.web.up': 1, 'service.nginx': 0 }), 0);
    expect(r.transitions).toEqual([]);
    r = evaluate(rules, r.state, sample({ 'app.web.up': 0, 'service.nginx': 3 }), 1);
    expect(r.transitions.map((t) => t.id)).toEqual(['down', 'svc']);
    r = evaluate(rules, r.state, sample({ 'app.web.up': 1, 'service.nginx': 0 }), 2);
    expect(r.transitions.map((t) => `${t.id}:${t.state}`)).toEqual(['down:resolved', 'svc:resolved']);
  });

  it('evaluate is pure: the input state is not changed', () => {
    const rules = [rule({ name: 'l', field: 'load.1', op: '>', threshold: 1, forMs: 10 })];
    const a = evaluate(rules, emptyAlertState, sample({ 'load.1': 2 }), 0).state;
    const copy = JSON.stringify(a);
    evaluate(rules, a, sample({ 'load.1': 2 }), 100);
    evaluate(rules, a, sample({ 'load.1': 0 }), 100);
    expect(JSON.stringify(a)).toBe(copy);
    expect(JSON.stringify(emptyAlertState)).toBe('{"instances":{}}');
  });

  it('rate window: events per minute over one-second buckets', () => {
    const w = new RateWindow();
    w.add(1_000);
    w.add(1_500, 2);
    w.add(30_000);
    expect(w.perMinute(30_000)).toBe(4);
    expect(w.perMinute(60_999)).toBe(4);
    expect(w.perMinute(61_000)).toBe(1);
    expect(w.perMinute(90_000)).toBe(0);
    // a bucket reused a minute later starts from 0
    w.add(61_500);
    expect(w.perMinute(61_500)).toBe(2);
    expect(w.perMinute(91_000)).toBe(1);
  });
});

describe('webhook backoff', () => {
  it('full jitter between min and min·2^(n-1), capped at max', () => {
    expect(backoffMs(1, 100, 10_000, () => 0)).toBe(100);
    expect(backoffMs(1, 100, 10_000, () => 1)).toBe(100);
    expect(backoffMs(3, 100, 10_000, () => 1)).toBe(400);
    expect(backoffMs(3, 100, 10_000, () => 0.5)).toBe(250);
    expect(backoffMs(30, 100, 10_000, () => 1)).toBe(10_000);
    expect(backoffMs(1000, 100, 10_000, () => 1)).toBe(10_000);
  });
});

describe('monitor config', () => {
  const base = { sources: [{ task: 't', paths: ['/x.log'], topic: 'logs' }] };
  it('defaults; alerts alone turn the health loop on without publishing health records', () => {
    const c = resolveAgentConfig({ ...base, alerts: { rules: [{ name: 'l', when: 'load.1 > 4', for: '1m', clear: 3 }] } }, '/etc', {});
    expect(c.monitor.health).toMatchObject({ enabled: false, intervalMs: 10_000, topic: 'health', kvKeyspace: 'agent', ttlSeconds: 30 });
    expect(c.monitor.alerts!.rules[0]).toEqual({ name: 'l', field: 'load.1', op: '>', threshold: 4, forMs: 60_000, clear: 3, clearForMs: 0, severity: 'warning' });
    expect(c.monitor.status).toBeUndefined();
    const d = resolveAgentConfig({ ...base, health: { intervalMs: 1000, apps: [{ name: 'a', pidFile: 'a.pid' }] }, status: { listen: '127.0.0.1:0' } }, '/etc', {});
    expect(d.monitor.health).toMatchObject({ enabled: true, ttlSeconds: 3, apps: [{ name: 'a', pidFile: '/etc/a.pid', timeoutMs: 2000 }] });
    expect(d.monitor.status).toEqual({ host: '127.0.0.1', port: 0 });
    expect(resolveAgentConfig(base, '/', {}).monitor).toEqual({});
  });

  it('refuses unknown keys, bad conditions, bad regexes and ambiguous apps', () => {
    const bad = (extra: object) => () => resolveAgentConfig({ ...base, ...extra }, '/', {});
    expect(bad({ health: { nope: 1 } })).toThrow(/nope/);
    expect(bad({ alerts: { rules: [{ name: 'x', when: 'load.1 ~ 2' }] } })).toThrow(/not a condition/);
    expect(bad({ alerts: { rules: [{ name: 'x', when: 'load.1 > 2', for: '5 minutes' }] } })).toThrow(/for/);
    expect(bad({ alerts: { logPatterns: [{ name: 'e', regex: '(' }] } })).toThrow(/regular expression/);
    expect(bad({ health: { apps: [{ name: 'a', pid: 1, match: 'x' }] } })).toThrow(/one of/);
    expect(bad({ health: { apps: [{ name: 'a' }] } })).toThrow(/needs/);
    expect(bad({ health: { services: { initd: 'some' } } })).toThrow();
    expect(bad({ status: { listen: '9464' } })).toThrow(/listen/);
  });
});
