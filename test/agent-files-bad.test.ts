// Bad input to the file source, none of which stops the agent: lines that are not UTF-8 (kept as
// bytes, byte-exact through Chicago), a NUL-heavy binary file, a 100 MB line (cut at maxLineBytes
// into marked pieces while the agent's RSS stays bounded), permission denied on a file and on a
// directory (the agent runs as `nobody`; logged once, retried, read once allowed), a FIFO and a
// directory matched by the glob, files vanishing between readdir and open, and unknown config keys.
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, chmod, mkdir, open, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { runCli } from './helpers/launcher.js';
import { agentFixture, agentSetup, check, numbered, readRecords, readUntil, rssOf } from './helpers/agent-files.js';

const run = promisify(execFile);
const { url, agent } = agentFixture();

describe('agent files: bad input', () => {
  it('lines that are not UTF-8, a BOM and a NUL-heavy binary file arrive byte-exact (base64 on the wire)', async () => {
    const T = 'afb-bytes';
    const s = await agentSetup(url(), 'bytes', ['  - task: b', '    paths: [./logs/*.log]', '    topic: ' + T]);
    const lines = [
      Buffer.from('plain ascii'),
      Buffer.from('héllo wörld ✓'),
      Buffer.from([0x6c, 0x61, 0x74, 0x69, 0x6e, 0x31, 0x20, 0xe9, 0xe8]), // latin1 é è
      Buffer.from([0xc3, 0x28, 0xa0, 0xa1, 0xff, 0xfe]), // broken sequences
      Buffer.from([0xef, 0xbb, 0xbf, 0x62, 0x6f, 0x6d]), // a BOM
      Buffer.from([0x61, 0x00, 0x62, 0x00, 0x0d]), // NULs and a lone \r kept inside
      Buffer.from([0xed, 0xa0, 0x80]), // an encoded surrogate: not UTF-8
    ];
    const want = lines.map((l, i) => (i === 5 ? l.subarray(0, 4) : l)); // a trailing \r goes with the \n
    await writeFile(path.join(s.logs, 'text.log'), Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
    const bin = randomBytes(64 * 1024);
    for (let i = 0; i < bin.length; i++) if (i % 3 !== 0) bin[i] = 0; // two thirds NUL
    await writeFile(path.join(s.logs, 'bin.log'), bin);
    // the binary file: its bytes between newlines, in order; the last piece (no newline) waits for more
    const pieces: Buffer[] = [];
    let pos = 0;
    for (;;) {
      const nl = bin.indexOf(10, pos);
      if (nl < 0) break;
      pieces.push(bin.subarray(pos, nl > pos && bin[nl - 1] === 13 ? nl - 1 : nl));
      pos = nl + 1;
    }
    const a = await agent(s.config);
    // wait for exactly what can arrive (the unterminated tail never does), not for a deadline
    const recs = await readUntil(url(), T, (r) => r.filter((x) => x.headers.source.endsWith('text.log')).length >= lines.length && r.filter((x) => x.headers.source.endsWith('bin.log')).length >= pieces.length, 10_000);
    const text = recs.filter((r) => r.headers.source.endsWith('text.log')).sort((x, y) => Number(x.headers.seq) - Number(y.headers.seq));
    expect(text.map((r) => r.bytes.toString('hex'))).toEqual(want.map((l) => l.toString('hex')));
    const binRecs = recs.filter((r) => r.headers.source.endsWith('bin.log')).sort((x, y) => Number(x.headers.seq) - Number(y.headers.seq));
    expect(binRecs.map((r) => r.bytes.toString('hex'))).toEqual(pieces.map((p) => p.toString('hex')));
    expect(a.proc.exitCode).toBeNull();
    a.proc.kill('SIGKILL');
  });

  it('a 100 MB line is cut at maxLineBytes into pieces marked cut=k+ … n/n; the agent RSS stays bounded', async () => {
    const T = 'afb-long';
    const MAX = 1024 * 1024;
    const s = await agentSetup(url(), 'long', ['  - task: l', '    paths: [./logs/long.log]', '    topic: ' + T], [`maxLineBytes: ${MAX}`, 'batch: { lingerMs: 5, maxBytes: 8388608 }', 'spool: { dir: ./spool, quotaBytes: 16777216, segmentBytes: 1048576 }']);
    const file = path.join(s.logs, 'long.log');
    const SIZE = Number(process.env.AGENT_LONG_LINE_MB ?? 100) * 1024 * 1024;
    // written in 1 MiB blocks: a line of printable bytes, then a short line after it
    const fh = await open(file, 'w');
    const hash = createHash('sha256');
    const block = Buffer.alloc(MAX);
    for (let i = 0; i < block.length; i++) block[i] = 97 + (i % 26);
    await fh.write('before 1 INFO x\n');
    for (let done = 0; done < SIZE; done += block.length) {
      block.write(String(done / MAX).padStart(4, '0'), 0);
      await fh.write(block);
      hash.update(block);
    }
    await fh.write('\nafter 2 INFO x\n');
    await fh.close();
    const a = await agent(s.config);
    const pid = a.proc.pid!;
    let peak = 0;
    const deadline = Date.now() + 60_000;
    let recs: Awaited<ReturnType<typeof readRecords>> = [];
    // RSS sampled while it reads and ships; the records are read back once all have arrived
    for (;;) {
      peak = Math.max(peak, (await rssOf(pid)).hwmBytes);
      const meta = await fetch(`${url()}/v1/topics/${T}`).then((r) => (r.ok ? (r.json() as Promise<{ partitions?: Array<{ endOffset: number }> }>) : undefined)).catch(() => undefined);
      const n = (meta?.partitions ?? []).reduce((x, p) => x + p.endOffset, 0);
      if (n >= SIZE / MAX + 2 || Date.now() > deadline) break;
      if (a.stdout.text().includes('"msg":"agent failed"')) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    peak = Math.max(peak, (await rssOf(pid)).hwmBytes);
    recs = (await readRecords(url(), T)).sort((x, y) => Number(x.headers.seq) - Number(y.headers.seq));
    const pieces = recs.filter((r) => r.headers.cut !== undefined);
    const n = SIZE / MAX;
    expect(recs[0].value).toBe('before 1 INFO x');
    expect(recs[recs.length - 1].value).toBe('after 2 INFO x');
    expect(pieces.map((r) => r.headers.cut)).toEqual([...Array(n).keys()].map((i) => (i + 1 < n ? `${i + 1}+` : `${n}/${n}`)));
    expect(pieces.every((r) => r.bytes.length === MAX)).toBe(true);
    const got = createHash('sha256');
    for (const p of pieces) got.update(p.bytes);
    expect(got.digest('hex')).toBe(hash.digest('hex'));
    console.log(`agent 100 MB line: ${pieces.length} pieces of ${MAX} bytes; agent peak RSS ${(peak / 1024 / 1024).toFixed(0)} MiB`);
    expect(peak).toBeLessThan(400 * 1024 * 1024);
    a.proc.kill('SIGKILL');
    await rm(file);
  });

  it('as nobody: permission denied on a file and a directory (logged once, noticed, read once allowed); a FIFO, a directory and vanishing files in the glob; paths that match nothing said once', async () => {
    const T = 'afb-perm';
    const s = await agentSetup(url(), 'perm', [
      '  - task: p', '    paths: [./logs/*.log, ./logs/locked/*.log, ./logs/*.nomatch, ./logs/absent/*.log]', '    topic: ' + T,
    ]);
    await chmod(s.logs, 0o755);
    await writeFile(path.join(s.logs, 'ok.log'), numbered(0, 10, 'ok'));
    await writeFile(path.join(s.logs, 'secret.log'), numbered(0, 10, 'secret'), { mode: 0o600 });
    await chmod(path.join(s.logs, 'secret.log'), 0o600);
    await mkdir(path.join(s.logs, 'locked'), { mode: 0o700 });
    await writeFile(path.join(s.logs, 'locked', 'in.log'), numbered(0, 10, 'locked'), { mode: 0o644 });
    await mkdir(path.join(s.logs, 'dir.log'));
    await run('mkfifo', [path.join(s.logs, 'fifo.log')]);
    const a = await agent(s.config, { user: 'nobody' });
    // files that come and go while the agent polls
    for (let i = 0; i < 40; i++) {
      const p = path.join(s.logs, `flicker-${i}.log`);
      await writeFile(p, `flicker ${i} INFO x\n`);
      await rm(p);
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 60));
    }
    await readUntil(url(), T, (r) => check(r, 'p').lines.length >= 10, 10_000);
    await new Promise((r) => setTimeout(r, 500)); // ten polls: the warning must not repeat
    const out = a.stdout.text();
    expect(out.match(/"msg":"cannot open file"/g)?.length).toBe(1);
    expect(out.match(/"msg":"cannot list directory"/g)?.length).toBe(1);
    // a path that matches nothing (no such file, no such directory) is said once each
    expect(out.match(/"msg":"no file matches this path yet: watching for one"/g)?.length).toBe(2);
    expect(out).toMatch(/"path":"[^"]*\*\.nomatch","msg":"no file matches/);
    expect(out).toMatch(/"notice":\{"kind":"unreadable","task":"p","source":"[^"]*secret\.log","detail":"cannot open file: EACCES"/);
    await chmod(path.join(s.logs, 'secret.log'), 0o644);
    await chmod(path.join(s.logs, 'locked'), 0o755);
    await appendFile(path.join(s.logs, 'ok.log'), numbered(10, 20, 'ok'));
    const recs = await readUntil(url(), T, (r) => check(r, 'p').lines.length >= 40, 10_000);
    const values = recs.map((r) => r.value.split(' ').slice(0, 2).join(' '));
    for (const [p, n] of [['ok', 20], ['secret', 10], ['locked', 10]] as const) {
      expect(values.filter((v) => v.startsWith(p + ' ')).length, p).toBe(n);
    }
    expect(new Set(values).size).toBe(values.length);
    expect(check(recs, 'p').seqOk).toBe(true);
    expect(a.proc.exitCode).toBeNull();
    expect(a.stdout.text()).toMatch(/"msg":"readable again"/);
    a.proc.kill('SIGKILL');
  });

  it('unknown keys in sources[].rotate exit 78 with the key named', async () => {
    const s = await agentSetup(url(), 'cfg', ['  - task: c', '    paths: [./logs/*.log]', '    topic: afb-cfg', '    rotate: { maxBytes: 4096, size: 10M }']);
    const r = await runCli(['agent', '--config', s.config]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/rotate.*\(size\)/);
  });
});
