// examples/python/chicago_http.py (a stdlib-only client written from docs/http.md) run with python3
// against a real node: topic, records with headers and a base64 binary value read back, a long-poll
// tail that sees records this test produces while it waits, and a KV key that expires by its TTL.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http } from './helpers/http.js';
import { OutputRing, killOnExit, repoRoot, startNode, type NodeHandle } from './helpers/launcher.js';
import { slow } from './helpers/slow.js';

const SCRIPT = path.join(repoRoot, 'examples/python/chicago_http.py');
const havePython = spawnSync('python3', ['--version']).status === 0;
if (!havePython) console.warn('python example skipped: python3 is missing (Debian: apt-get install python3)');

describe.skipIf(!havePython)('the Python HTTP example', () => {
  let node: NodeHandle;

  beforeAll(async () => {
    node = await startNode();
  }, 60_000);

  afterAll(async () => {
    await node?.stop();
  });

  it('produces, reads back, tails with waitMs and uses a KV TTL', async () => {
    const topic = 'py-ex';
    const py = spawn('python3', [SCRIPT, '--url', node.url, '--topic', topic, '--keyspace', 'pyex',
      '--tail-count', '3', '--tail-seconds', String(slow(10_000) / 1000)], { stdio: ['ignore', 'pipe', 'pipe'] });
    killOnExit(py);
    const out = new OutputRing();
    const err = new OutputRing();
    py.stdout.setEncoding('utf8').on('data', (s: string) => out.feed(s));
    py.stderr.setEncoding('utf8').on('data', (s: string) => err.feed(s));
    const exited = new Promise<number | null>((resolve) => py.once('close', (code) => { out.end(); err.end(); resolve(code); }));

    // The script says where it starts tailing; records produced after that line must reach it.
    await out.waitFor(/^tailing py-ex from /, 10_000).catch((e: Error) => {
      throw new Error(`${e.message}\n--- stdout\n${out.tail()}\n--- stderr\n${err.tail()}`);
    });
    for (const [i, key] of ['t-a', 't-b', 't-c'].entries()) {
      const res = await http(node.url, 'POST', `/v1/topics/${topic}/records`, [{ key, value: `live ${i}`, headers: { task: 'tail' } }]);
      expect(res.status).toBe(200);
    }
    const code = await exited;
    const text = out.text();
    expect(code, `stdout:\n${text}\nstderr:\n${err.text()}`).toBe(0);

    expect(text).toMatch(/^topic py-ex partitions=2$/m);
    expect(text).toMatch(/^produced 4 records replicas=1 at /m);
    const reads = out.lines().filter((l) => l.startsWith('read '));
    expect(reads).toHaveLength(4);
    expect(text).toContain("key=host-1 value='GET /' headers={'task': 'web', 'host': 'host-1'}");
    expect(text).toContain("key=None value='no key, one header' headers={'task': 'cron'}");
    expect(text).toContain("key=blob value=0x00ff1080 headers={'content': 'binary'}");
    expect(text).toMatch(/^binary ok$/m);

    const tails = out.lines().filter((l) => l.startsWith('tail p='));
    expect(tails.map((l) => /value='(live \d)'/.exec(l)?.[1]).sort()).toEqual(['live 0', 'live 1', 'live 2']);
    for (const l of tails) expect(l).toContain("headers={'task': 'tail'}");
    expect(text).toMatch(/^tail done: 3 records$/m);

    expect(text).toMatch(/^kv put version=\d+ replicas=1 ttl=1s$/m);
    expect(text).toMatch(/^kv get alice version=\d+$/m);
    expect(text).toMatch(/^kv expired$/m);
    // The key is gone for other clients too.
    expect((await http(node.url, 'GET', '/v1/kv/pyex/session%2F1')).status).toBe(404);
  }, 60_000);
});
