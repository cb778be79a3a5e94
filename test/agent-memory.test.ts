// What keeps the agent small: bin/chicago.js caps V8's young generation for `chicago agent` (V8 takes
// the cap only at start), the heap is compacted once after a burst of reading, and a quiet file holds its
// bytes in memory of their own. The RSS itself is measured by bench/agent.ts (1,000 files).
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMPACT_AFTER_BYTES, COMPACT_INTERVAL_MS_MIN, type CompactState, decideCompact } from '../src/agent/compact.js';
import { limits } from '../src/runtime/limits.js';
import { mallocTrim } from '../src/runtime/malloc-trim.js';
import { cliPath, killOnExit, OutputRing, repoRoot } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

describe('compaction after a burst (pure)', () => {
  const fresh: CompactState = { readAtLastCheck: 0, readAtLastCompact: -COMPACT_AFTER_BYTES, lastCompactMs: -Infinity };

  it('compacts once the agent went idle after starting or reading a burst, then not again until the next burst', () => {
    let d = decideCompact(fresh, { read: 0, nowMs: 1000 });
    expect(d.compact).toBe(true); // starting is a burst of its own
    d = decideCompact(d.state, { read: 0, nowMs: 1000 + COMPACT_INTERVAL_MS_MIN * 2 });
    expect(d.compact).toBe(false); // idle, but nothing read since
    d = decideCompact(d.state, { read: COMPACT_AFTER_BYTES * 3, nowMs: 1000 + COMPACT_INTERVAL_MS_MIN * 3 });
    expect(d.compact).toBe(false); // still reading
    d = decideCompact(d.state, { read: COMPACT_AFTER_BYTES * 3, nowMs: 1000 + COMPACT_INTERVAL_MS_MIN * 3 + 2000 });
    expect(d.compact).toBe(true);
    expect(d.state).toEqual({ readAtLastCheck: COMPACT_AFTER_BYTES * 3, readAtLastCompact: COMPACT_AFTER_BYTES * 3, lastCompactMs: 1000 + COMPACT_INTERVAL_MS_MIN * 3 + 2000 });
  });

  it('waits COMPACT_INTERVAL_MS_MIN between two compactions and ignores a trickle below COMPACT_AFTER_BYTES', () => {
    const st: CompactState = { readAtLastCheck: 10_000_000, readAtLastCompact: 0, lastCompactMs: 5000 };
    expect(decideCompact(st, { read: 10_000_000, nowMs: 5000 + COMPACT_INTERVAL_MS_MIN - 1 }).compact).toBe(false);
    expect(decideCompact(st, { read: 10_000_000, nowMs: 5000 + COMPACT_INTERVAL_MS_MIN }).compact).toBe(true);
    const trickle: CompactState = { readAtLastCheck: 100, readAtLastCompact: 100, lastCompactMs: 0 };
    expect(decideCompact(trickle, { read: 100 + COMPACT_AFTER_BYTES - 1, nowMs: 10 * COMPACT_INTERVAL_MS_MIN }).compact).toBe(false);
  });
});

describe('malloc_trim after the compaction', () => {
  it('reaches glibc through koffi on this machine (the agent calls it after its full collections)', () => {
    // glibc and koffi are both here: a false would mean the idle agent keeps the heap pages a burst freed
    expect(mallocTrim()).toBe(true);
    expect(mallocTrim()).toBe(true);
  });
});

describe('bin/chicago.js starts the agent with a capped young generation', () => {
  const procs: ChildProcess[] = [];
  let dir = '';
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** starts an agent (no node needed: it logs its config before it ships) and returns its node argv and output */
  async function agentArgs(cmd: string[], env: NodeJS.ProcessEnv): Promise<{ argv: string[]; out: string }> {
    dir ||= await mkdtemp(path.join(os.tmpdir(), 'chicago-agent-mem-'));
    const config = path.join(dir, 'agent.yaml');
    await writeFile(config, ['node: { url: "http://127.0.0.1:9" }', 'host: mem', 'spool: { dir: ./spool }', 'sources:', '  - { task: app, paths: [./logs/*.log], topic: mem }'].join('\n'));
    const p = spawn(cmd[0], [...cmd.slice(1), 'agent', '--config', config], { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(p);
    killOnExit(p);
    const out = new OutputRing();
    p.stdout!.setEncoding('utf8').on('data', (c: string) => out.feed(c));
    await out.waitFor(/"msg":"agent config"/, slow(15_000));
    // exec kept the pid: this is node's own argv
    const argv = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    p.kill('SIGKILL');
    return { argv, out: out.text() };
  }

  it('passes --max-semi-space-size=limits.agentSemiSpaceMb unless NODE_OPTIONS has one; an agent started without it says so', async () => {
    const bin = path.join(repoRoot, 'bin', 'chicago.js');
    const env = { NODE_OPTIONS: '', CHICAGO_AGENT_SEMI_SPACE_MB: undefined };
    const viaBin = await agentArgs([bin], env);
    expect(viaBin.argv).toContain(`--max-semi-space-size=${limits.agentSemiSpaceMb}`);
    expect(viaBin.out).not.toContain('young generation is not capped');

    const given = await agentArgs([bin], { NODE_OPTIONS: '--max-semi-space-size=4' });
    expect(given.argv.some((a) => a.startsWith('--max-semi-space-size'))).toBe(false);
    expect(given.out).not.toContain('young generation is not capped');

    const direct = await agentArgs([process.execPath, cliPath], env);
    expect(direct.out).toContain('young generation is not capped');
  }, slow(60_000));
});
