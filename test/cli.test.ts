// The `chicago` CLI against a real node: output formats and exit codes are public interface.
// Every case spawns the real program per command. The cases use their own keyspaces, topics and
// groups, so they run concurrently (describe.concurrent) against one shared node, and commands that
// only read run side by side: the file's time is then its longest case, not the sum of its spawns.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { waitUntil } from './helpers/bridge.js';
import { type CliOptions, type NodeHandle, cliPath, runCli, spawnCli, startNode } from './helpers/launcher.js';

let node: NodeHandle;
const cli = (args: string[], opts?: CliOptions) => runCli([...args, '--url', node.url], opts);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const jsonLines = (text: string) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

beforeAll(async () => {
  node = await startNode();
});

afterAll(async () => {
  await node?.stop();
});

describe.concurrent('kv', () => {
  it('puts, gets, scans and deletes', async () => {
    const [put, putJson] = await Promise.all([cli(['kv', 'put', 'cli-kv', 'alpha', 'one']), cli(['kv', 'put', 'cli-kv', 'beta', 'two', '--json'])]);
    expect(put).toMatchObject({ code: 0, stderr: '' });
    expect(put.stdout).toMatch(/^version=\d+ replicas=\d+\n$/);

    expect(putJson.code).toBe(0);
    expect(JSON.parse(putJson.stdout)).toEqual({ version: expect.any(Number), replicas: expect.any(Number) });

    const [get, getRaw, scan, scanPrefix, scanLimit] = await Promise.all([
      cli(['kv', 'get', 'cli-kv', 'alpha']), cli(['kv', 'get', 'cli-kv', 'alpha', '--raw']), cli(['kv', 'scan', 'cli-kv']),
      cli(['kv', 'scan', 'cli-kv', '--prefix', 'b']), cli(['kv', 'scan', 'cli-kv', '--limit', '1']),
    ]);
    // The value comes back byte for byte, no newline added when stdout is not a terminal.
    expect(get).toMatchObject({ code: 0, stdout: 'one\n' });
    expect(getRaw).toMatchObject({ code: 0, stdout: 'one' });
    expect(scan.code).toBe(0);
    expect(scan.stdout).toBe('alpha\tone\nbeta\ttwo\n');
    expect(scanPrefix.stdout).toBe('beta\ttwo\n');
    expect(scanLimit.stdout).toBe('alpha\tone\n');

    expect(await cli(['kv', 'del', 'cli-kv', 'alpha'])).toMatchObject({ code: 0, stdout: expect.stringMatching(/existed=true/) });
    const gone = await cli(['kv', 'get', 'cli-kv', 'alpha']);
    expect(gone).toMatchObject({ code: 1, stdout: '' });
    expect(gone.stderr).toMatch(/not found/);
  });

  it('keeps keys with URL-special characters intact', async () => {
    const key = 'a/b c?d=e&f%g#h';
    expect((await cli(['kv', 'put', 'cli-kv-special', key, 'v'])).code).toBe(0);
    expect((await cli(['kv', 'get', 'cli-kv-special', key])).stdout).toBe('v\n');
    expect((await cli(['kv', 'scan', 'cli-kv-special'])).stdout).toBe(`${key}\tv\n`);
  });

  it('escapes what would break a KEY<TAB>VALUE line in scan: control characters, backslash, bytes that are not UTF-8', async () => {
    expect((await cli(['kv', 'put', 'cli-kv-esc', 'k\tab', 'two\nlines \\ here'])).code).toBe(0);
    expect((await cli(['kv', 'put', 'cli-kv-esc', 'raw'], { input: Buffer.from([0x61, 0xff, 0x00, 0x5c]) })).code).toBe(0);
    expect((await cli(['kv', 'put', 'cli-kv-esc', 'raw2'], { input: Buffer.from([0x09, 0x0a, 0x0d, 0xc3]) })).code).toBe(0);
    expect((await cli(['kv', 'put', 'cli-kv-esc', 'sep', 'x\u2028y\u0085z'])).code).toBe(0);
    expect((await cli(['kv', 'scan', 'cli-kv-esc'])).stdout).toBe('k\\tab\ttwo\\nlines \\\\ here\nraw\ta\\xff\\x00\\\\\nraw2\t\\t\\n\\r\\xc3\nsep\tx\\u{2028}y\\u{0085}z\n');
    const json = JSON.parse((await cli(['kv', 'scan', 'cli-kv-esc', '--json'])).stdout);
    expect(json.items.find((i: { key: string }) => i.key === 'raw')).toMatchObject({ value: Buffer.from([0x61, 0xff, 0x00, 0x5c]).toString('base64'), valueEncoding: 'base64' });
  });

  it('scan --json gives a `next` key that is not UTF-8 with its nextEncoding, as the node does', async () => {
    // such a key is written over the WebSocket (a JSON frame with keyEncoding)
    const ws = new WebSocket(node.url.replace('http', 'ws') + '/v1/ws', ['chicago.json']);
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const answered = new Promise((resolve) => ws.once('message', resolve));
    ws.send(JSON.stringify({ op: 'kv.put', id: 1, ks: 'cli-kv-rawnext', key: 'Af8=', keyEncoding: 'base64', value: 'v' }));
    await answered;
    ws.close();
    expect((await cli(['kv', 'put', 'cli-kv-rawnext', 'z', 'v'])).code).toBe(0);
    const page = JSON.parse((await cli(['kv', 'scan', 'cli-kv-rawnext', '--limit', '1', '--json'])).stdout);
    expect(page).toMatchObject({ items: [{ key: 'Af8=', keyEncoding: 'base64' }], next: 'Af8=', nextEncoding: 'base64' });
    // that `next` fed back resumes after the key; a prefix that is not UTF-8 goes the same way
    const [rest, raw, needsAfter] = await Promise.all([
      cli(['kv', 'scan', 'cli-kv-rawnext', '--after', page.next, '--after-encoding', page.nextEncoding, '--json']),
      cli(['kv', 'scan', 'cli-kv-rawnext', '--prefix', 'Af8=', '--prefix-encoding', 'base64', '--json']),
      cli(['kv', 'scan', 'cli-kv-rawnext', '--after-encoding', 'base64']),
    ]);
    expect([rest.code, JSON.parse(rest.stdout)]).toEqual([0, { items: [expect.objectContaining({ key: 'z' })] }]);
    expect([raw.code, JSON.parse(raw.stdout).items.map((i: { key: string }) => i.key)]).toEqual([0, ['Af8=']]);
    expect([needsAfter.code, needsAfter.stderr]).toEqual([64, expect.stringContaining('--after-encoding needs --after')]);
  });

  it('reads the value from stdin when it is not given', async () => {
    const value = 'line 1\nline 2\n';
    expect((await cli(['kv', 'put', 'cli-kv-stdin', 'stdin'], { input: value })).code).toBe(0);
    expect((await cli(['kv', 'get', 'cli-kv-stdin', 'stdin', '--raw'])).stdout).toBe(value);
  });

  it('forgets a key after its ttl', async () => {
    expect((await cli(['kv', 'put', 'cli-kv-ttl', 'short', 'lived', '--ttl', '1'])).code).toBe(0);
    // The node hides a key once its clock passes the expiry (put time + ttl), at read time: past
    // the ttl it is gone however slow the machine, so this pause is the property, not a guess.
    await sleep(2500);
    expect((await cli(['kv', 'get', 'cli-kv-ttl', 'short'])).code).toBe(1);
  });
});

describe.concurrent('topic', () => {
  it('creates, lists, describes and deletes', async () => {
    const created = await cli(['topic', 'create', 'cli-admin', '--partitions', '3', '--replicas', '1', '--retention-ms', '3600000']);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toMatch(/created topic cli-admin partitions=3 replicas=1/);

    const [list, listJson, describeText, describeJson] = await Promise.all([
      cli(['topic', 'list']), cli(['topic', 'list', '--json']), cli(['topic', 'describe', 'cli-admin']), cli(['topic', 'describe', 'cli-admin', '--json']),
    ]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^cli-admin\s+3\s+1\s+ms=3600000/m);
    const names = (JSON.parse(listJson.stdout) as { topics: Array<{ name: string }> }).topics.map((t) => t.name);
    expect(names).toContain('cli-admin');

    expect(describeText.code).toBe(0);
    expect(describeText.stdout).toMatch(/PARTITION\s+START\s+END\s+BYTES\s+LEADER\s+REPLICAS/);
    const described = JSON.parse(describeJson.stdout) as {
      partitions: Array<{ partition: number; startOffset: number; endOffset: number; leader: string; replicas: string[] }>;
    };
    expect(described.partitions.map((x) => [x.partition, x.startOffset, x.endOffset])).toEqual([[0, 0, 0], [1, 0, 0], [2, 0, 0]]);
    for (const x of described.partitions) expect(x.replicas).toContain(x.leader);

    // alter: a value sets a rule, none removes it, a flag left out keeps it
    const altered = await cli(['topic', 'alter', 'cli-admin', '--retention-bytes', '1048576']);
    expect(altered.code, altered.stderr).toBe(0);
    expect(altered.stdout).toMatch(/altered topic cli-admin retention=.*bytes=1048576/);
    expect(altered.stdout).toMatch(/ms=3600000/);
    const removed = JSON.parse((await cli(['topic', 'alter', 'cli-admin', '--retention-ms', 'none', '--json'])).stdout) as { retention: Record<string, unknown> };
    expect(removed.retention).toEqual({ bytes: 1048576 });
    expect((await cli(['topic', 'alter', 'cli-admin'])).code).toBe(64);

    expect((await cli(['topic', 'delete', 'cli-admin'])).code).toBe(0);
    const after = await cli(['topic', 'describe', 'cli-admin']);
    expect(after.code).toBe(2);
    expect(after.stderr).toMatch(/^error TOPIC_NOT_FOUND: /);
  });

  it('produce: a line longer than any record can be is VALUE_TOO_LARGE before it is all read (exit 2, nothing sent)', async () => {
    // no node needed: stdin stops being held past the record limit
    const long = Buffer.alloc(5 * 1024 * 1024, 'a');
    const r = await runCli(['produce', 'cli-too-long', '--url', 'http://127.0.0.1:9'], { input: long });
    expect([r.code, r.stderr]).toEqual([2, expect.stringContaining('error VALUE_TOO_LARGE')]);
  });

  it('refuses a topic that exists', async () => {
    expect((await cli(['topic', 'create', 'cli-dup', '--partitions', '1', '--replicas', '1'])).code).toBe(0);
    const again = await cli(['topic', 'create', 'cli-dup', '--partitions', '1', '--replicas', '1']);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/^error TOPIC_EXISTS: /);
  });
});

describe.concurrent('produce and tail', () => {
  it('sends lines that are not UTF-8 as their bytes, flagged base64, and tail gives them back byte for byte', async () => {
    await cli(['topic', 'create', 'cli-binary', '--partitions', '1', '--replicas', '1']);
    const lines = [Buffer.from([0x61, 0xff, 0xfe, 0x62]), Buffer.from('plain'), Buffer.from([0xc3, 0x28])];
    // CRLF line ends, as a file from Windows has them: the CR is not part of the value
    const produced = await cli(['produce', 'cli-binary'], { input: Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\r\n')])) });
    expect(produced.code).toBe(0);
    const records = jsonLines((await cli(['tail', 'cli-binary'])).stdout);
    expect(records.map((r) => (r.valueEncoding === 'base64' ? Buffer.from(r.value as string, 'base64') : Buffer.from(r.value as string)))).toEqual(lines);
    expect(records.map((r) => r.valueEncoding)).toEqual(['base64', undefined, 'base64']);
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const child = spawn(process.execPath, [cliPath, 'tail', 'cli-binary', '--format', 'value', '--url', node.url], { stdio: ['ignore', 'pipe', 'inherit'] });
      const out: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.once('error', reject).once('close', () => resolve(Buffer.concat(out)));
    });
    expect(raw).toEqual(Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
  });

  it('tails exactly the lines produced, in order', async () => {
    await cli(['topic', 'create', 'cli-lines', '--partitions', '1', '--replicas', '1']);
    const lines = ['first', '{"json":"inside"}', '', 'with\ttab', 'ünïcödé'];
    const produced = await cli(['produce', 'cli-lines'], { input: lines.join('\n') + '\n' });
    expect(produced.code).toBe(0);
    expect(produced.stderr).toMatch(/produced 5 records in 1 batch to cli-lines/);

    const tail = await cli(['tail', 'cli-lines', '--from-beginning']);
    expect(tail.code).toBe(0);
    const records = jsonLines(tail.stdout);
    expect(records.map((r) => r.value)).toEqual(lines);
    expect(records.map((r) => r.offset)).toEqual([0, 1, 2, 3, 4]);
    for (const r of records) {
      expect(Object.keys(r)).toEqual(['partition', 'offset', 'timestamp', 'key', 'value', 'headers']);
      expect(r).toMatchObject({ partition: 0, key: null, headers: {} });
      expect(Math.abs((r.timestamp as number) - Date.now())).toBeLessThan(60_000);
    }
  });

  it('sends keys and headers, and spreads over partitions', async () => {
    await cli(['topic', 'create', 'cli-keyed', '--partitions', '3', '--replicas', '1']);
    const input = Array.from({ length: 30 }, (_, i) => `k${i % 5}:v${i}`).join('\n');
    const produced = await cli(['produce', 'cli-keyed', '--key-separator', ':', '--header', 'env=test', '--header', 'a=b=c'], { input });
    expect(produced.code).toBe(0);

    const [all, partition1, max4] = await Promise.all([cli(['tail', 'cli-keyed']), cli(['tail', 'cli-keyed', '--partition', '1']), cli(['tail', 'cli-keyed', '--max', '4'])]);
    const records = jsonLines(all.stdout);
    expect(records).toHaveLength(30);
    expect(new Set(records.map((r) => r.value))).toEqual(new Set(Array.from({ length: 30 }, (_, i) => `v${i}`)));
    // One key always lands on one partition, and each partition reads back in offset order.
    const partitionOfKey = new Map<unknown, unknown>();
    for (const r of records) {
      expect(r.headers).toEqual({ env: 'test', a: 'b=c' });
      expect(r.key).toBe(`k${Number((r.value as string).slice(1)) % 5}`);
      if (!partitionOfKey.has(r.key)) partitionOfKey.set(r.key, r.partition);
      expect(r.partition).toBe(partitionOfKey.get(r.key));
    }
    for (const p of new Set(records.map((r) => r.partition))) {
      const offsets = records.filter((r) => r.partition === p).map((r) => r.offset as number);
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    }

    const one = jsonLines(partition1.stdout);
    expect(one.length).toBeGreaterThan(0);
    expect(one.every((r) => r.partition === 1)).toBe(true);
    expect(max4.stdout.trim().split('\n')).toHaveLength(4);
  });

  it('pins records to a partition and starts at an offset', async () => {
    await cli(['topic', 'create', 'cli-pinned', '--partitions', '3', '--replicas', '1']);
    const produced = await cli(['produce', 'cli-pinned', '--partition', '2'], { input: 'a\nb\nc\nd\n' });
    expect(produced.stderr).toMatch(/\(p2:0-3\)/);
    const [fromTwo, past, fromEnd, lastTwo, fromFirst, grep, grepMax, where] = await Promise.all([
      cli(['tail', 'cli-pinned', '--partition', '2', '--offset', '2']), cli(['tail', 'cli-pinned', '--partition', '2', '--offset', '9']),
      cli(['tail', 'cli-pinned', '--from-end']), cli(['tail', 'cli-pinned', '--offset', '-2']), cli(['tail', 'cli-pinned', '--offset=-9']),
      cli(['tail', 'cli-pinned', '--grep', '^[bd]$', '--format', '%p:%o %s']), cli(['tail', 'cli-pinned', '--grep', '[cd]', '--max', '1', '--format', 'value']),
      cli(['tail', 'cli-pinned', '--where', 'task=none']),
    ]);
    expect(jsonLines(fromTwo.stdout).map((r) => [r.partition, r.offset, r.value])).toEqual([[2, 2, 'c'], [2, 3, 'd']]);
    expect(past.code).toBe(2);
    expect(past.stderr).toMatch(/^error OFFSET_OUT_OF_RANGE: /);
    expect(fromEnd).toMatchObject({ code: 0, stdout: '' });
    // a negative offset counts back from each partition's end (kcat's -o -N); more than there is starts at the first
    expect(jsonLines(lastTwo.stdout).map((r) => [r.partition, r.offset, r.value])).toEqual([[2, 2, 'c'], [2, 3, 'd']]);
    expect(jsonLines(fromFirst.stdout).map((r) => r.value)).toEqual(['a', 'b', 'c', 'd']);
    // filters and formats: --max counts printed records
    expect(grep.stdout).toBe('2:1 b\n2:3 d\n');
    expect(grepMax.stdout).toBe('c\n');
    expect(where).toMatchObject({ code: 0, stdout: '' });
    // --header is kcat's habit for --where: both repeatable, every one must match
    await cli(['produce', 'cli-pinned', '--partition', '0', '--header', 'task=web', '--header', 'host=h1'], { input: 'x\n' });
    const [both, other, bad, help] = await Promise.all([
      cli(['tail', 'cli-pinned', '--header', 'task=web', '--where', 'host=h1', '--format', '%p:%o %s']), cli(['tail', 'cli-pinned', '--header', 'task=web', '--header', 'host=h2']),
      cli(['tail', 'cli-pinned', '--header', 'task']), cli(['tail', '--help']),
    ]);
    expect(both.stdout).toBe('0:0 x\n');
    expect(other).toMatchObject({ code: 0, stdout: '' });
    expect(bad.code).toBe(64);
    expect(bad.stderr).toMatch(/--where\/--header wants HEADER=VALUE/);
    expect(help.stdout).toMatch(/--header is the same/);
  });

  it('sends many lines in several bounded batches', async () => {
    await cli(['topic', 'create', 'cli-many', '--partitions', '2', '--replicas', '1']);
    const input = Array.from({ length: 5000 }, (_, i) => `record-${i}`).join('\n');
    const produced = await cli(['produce', 'cli-many', '--batch-records', '1000', '--linger-ms', '60000', '--acks', 'one'], { input });
    expect(produced.code).toBe(0);
    expect(produced.stderr).toMatch(/produced 5000 records in 5 batches to cli-many/);
    const records = jsonLines((await cli(['tail', 'cli-many', '--from-beginning'])).stdout);
    expect(records).toHaveLength(5000);
  });

  it('commits with --group and resumes after what it printed', async () => {
    await cli(['topic', 'create', 'cli-group', '--partitions', '2', '--replicas', '1']);
    await cli(['produce', 'cli-group'], { input: 'a\nb\nc\n' });

    const first = jsonLines((await cli(['tail', 'cli-group', '--group', 'g1'])).stdout);
    expect(first.map((r) => r.value).sort()).toEqual(['a', 'b', 'c']);
    const again = await cli(['tail', 'cli-group', '--group', 'g1']);
    expect(again).toMatchObject({ code: 0, stdout: '' });

    const offsets = JSON.parse((await cli(['group', 'offsets', 'g1', '--topic', 'cli-group', '--json'])).stdout) as {
      group: string;
      offsets: Array<{ topic: string; partition: number; offset: number; endOffset: number; lagRecords: number }>;
    };
    // --json prints the node's answer whole, as GET /v1/groups/{group}/offsets gives it
    expect(offsets.group).toBe('g1');
    expect(offsets.offsets.reduce((n, o) => n + o.offset, 0)).toBe(3);
    expect(offsets.offsets.every((o) => o.lagRecords === 0 && o.offset === o.endOffset)).toBe(true);

    await cli(['produce', 'cli-group'], { input: 'd\n' });
    expect(jsonLines((await cli(['tail', 'cli-group', '--group', 'g1'])).stdout).map((r) => r.value)).toEqual(['d']);
    // An explicit start wins over the committed offset; another group starts on its own.
    const [g1Again, g2] = await Promise.all([cli(['tail', 'cli-group', '--group', 'g1', '--from-beginning']), cli(['tail', 'cli-group', '--group', 'g2'])]);
    expect(jsonLines(g1Again.stdout)).toHaveLength(4);
    expect(jsonLines(g2.stdout)).toHaveLength(4);

    // group reset: a dry run commits nothing; --to-earliest reads everything again; --shift-by moves back
    const committedSum = async () => (JSON.parse((await cli(['group', 'offsets', 'g2', '--topic', 'cli-group', '--json'])).stdout) as { offsets: Array<{ offset: number }> }).offsets.reduce((n, o) => n + o.offset, 0);
    const dry = await cli(['group', 'reset', 'g2', 'cli-group', '--to-earliest', '--dry-run', '--json']);
    expect(dry.code, dry.stderr).toBe(0);
    expect((JSON.parse(dry.stdout) as { partitions: Array<{ to: number }> }).partitions.map((x) => x.to)).toEqual([0, 0]);
    expect(await committedSum()).toBe(4);
    expect((await cli(['group', 'reset', 'g2', 'cli-group', '--to-earliest'])).code).toBe(0);
    expect(await committedSum()).toBe(0);
    expect(jsonLines((await cli(['tail', 'cli-group', '--group', 'g2'])).stdout)).toHaveLength(4);
    expect((await cli(['group', 'reset', 'g2', 'cli-group', '--shift-by', '-1'])).code).toBe(0);
    expect(await committedSum()).toBe(2);
    expect(jsonLines((await cli(['tail', 'cli-group', '--group', 'g2'])).stdout)).toHaveLength(2);
    expect((await cli(['group', 'reset', 'g2', 'cli-group', '--to-offset', '99'])).code).toBe(0); // clamped to the ends
    expect(await committedSum()).toBe(4);
    expect((await cli(['group', 'reset', 'g2', 'cli-group'])).code).toBe(64);
  });

  it('starts at a time with --since', async () => {
    await cli(['topic', 'create', 'cli-since', '--partitions', '1', '--replicas', '1']);
    await cli(['produce', 'cli-since'], { input: 'old-1\nold-2\n' });
    await sleep(100);
    const cut = Date.now();
    await sleep(100);
    await cli(['produce', 'cli-since'], { input: 'new-1\nnew-2\n' });

    const values = async (since: string) => jsonLines((await cli(['tail', 'cli-since', '--since', since])).stdout).map((r) => r.value);
    const [atCut, atIso, hour, future] = await Promise.all([values(String(cut)), values(new Date(cut).toISOString()), values('1h'), values(String(Date.now() + 60_000))]);
    expect(atCut).toEqual(['new-1', 'new-2']);
    expect(atIso).toEqual(['new-1', 'new-2']);
    expect(hour).toEqual(['old-1', 'old-2', 'new-1', 'new-2']);
    expect(future).toEqual([]);
  });

  it('follows new records until interrupted', async () => {
    await cli(['topic', 'create', 'cli-follow', '--partitions', '2', '--replicas', '1']);
    // gf has committed nothing, so the follower starts at the earliest offset: it gets x and y
    // whether they come before or after its first poll.
    const follow = spawnCli(['tail', 'cli-follow', '--follow', '--group', 'gf', '--url', node.url]);
    await cli(['produce', 'cli-follow'], { input: 'x\ny\n' });
    await follow.stdout.waitFor(/"value":"y"/, 10_000);
    await follow.stdout.waitFor(/"value":"x"/, 10_000);
    // Once it has printed x and y it is past its first read, so w can only reach it by following.
    await cli(['produce', 'cli-follow'], { input: 'w\n' });
    await follow.stdout.waitFor(/"value":"w"/, 10_000);
    follow.proc.kill('SIGINT');
    const followed = await follow.done;
    expect(followed.code).toBe(0);
    expect(jsonLines(followed.stdout).map((r) => r.value).sort()).toEqual(['w', 'x', 'y']);
    // What the follower printed is committed.
    expect((await cli(['tail', 'cli-follow', '--group', 'gf'])).stdout).toBe('');

    // --max ends a follow on its own, even with other partitions still waiting.
    // --from-end starts at the end the node has when the follower's first poll arrives, which the
    // test cannot see: produce z until one reaches it (every z comes after x, y and w).
    const one = spawnCli(['tail', 'cli-follow', '--follow', '--from-end', '--max', '1', '--url', node.url]);
    let ended = false;
    void one.done.then(() => (ended = true), () => (ended = true));
    await waitUntil('the --from-end follower to print a record and end', async () => {
      if (!ended) await cli(['produce', 'cli-follow'], { input: 'z\n' });
      return ended;
    }, 20_000, 250);
    const done = await one.done;
    expect(done.code).toBe(0);
    expect(jsonLines(done.stdout).map((r) => r.value)).toEqual(['z']);
  });
});

describe.concurrent('tail --follow across node restarts', () => {
  it('rides out a kill -9 and a SIGTERM restart of the node: every record once, in order', async () => {
    let own = await startNode();
    try {
      const at = (n: NodeHandle) => ['--url', n.url];
      expect((await runCli(['topic', 'create', 'cli-restart', '--partitions', '1', '--replicas', '1', ...at(own)])).code).toBe(0);
      const follow = spawnCli(['tail', 'cli-restart', '--follow', ...at(own)]);
      expect((await runCli(['produce', 'cli-restart', ...at(own)], { input: 'a\nb\n' })).code).toBe(0);
      await follow.stdout.waitFor(/"value":"b"/, 10_000);
      for (const [value, how] of [['c', 'SIGKILL'], ['d', 'SIGTERM']] as const) {
        const port = own.port;
        if (how === 'SIGKILL') await own.kill('SIGKILL');
        own = await own.restart();
        // the follower knows one URL: the restarted node must be on it
        expect(own.port).toBe(port);
        expect((await runCli(['produce', 'cli-restart', ...at(own)], { input: `${value}\n` })).code).toBe(0);
        await follow.stdout.waitFor(new RegExp(`"value":"${value}"`), 20_000);
      }
      follow.proc.kill('SIGINT');
      const done = await follow.done;
      expect(done.code, done.stderr).toBe(0);
      expect(jsonLines(done.stdout).map((r) => [r.offset, r.value])).toEqual([[0, 'a'], [1, 'b'], [2, 'c'], [3, 'd']]);
      expect(done.stderr).toMatch(/retrying/);
      expect(done.stderr).toMatch(/reconnected/);
    } finally {
      await own.stop();
    }
  }, 90_000);
});

describe.concurrent('errors and exit codes', () => {
  it('prints the node error as "error CODE: message" and exits 2', async () => {
    const [badTopic, badKeyspace, noTopic, noTopicProduce] = await Promise.all([
      cli(['topic', 'create', 'bad name!', '--partitions', '1']), cli(['kv', 'put', 'bad/keyspace', 'k', 'v']),
      cli(['tail', 'cli-no-such-topic']), cli(['produce', 'cli-no-such-topic'], { input: 'a\n' }),
    ]);
    expect(badTopic.code).toBe(2);
    expect(badTopic.stderr).toMatch(/^error INVALID_NAME: .+/);
    expect(badKeyspace.code).toBe(2);
    expect(badKeyspace.stderr).toMatch(/^error [A-Z_]+: .+/);
    expect(noTopic.code).toBe(2);
    expect(noTopic.stderr).toMatch(/^error TOPIC_NOT_FOUND: /);
    expect(noTopicProduce.code).toBe(2);
    expect(noTopicProduce.stderr).toMatch(/^error TOPIC_NOT_FOUND: /m);
  });

  it('shows usage and exits 64 on a wrong command line', async () => {
    // each command line is its own process, so they run side by side
    const wrong = [[], ['frobnicate'], ['kv'], ['kv', 'frob'], ['kv', 'get', 'ks'], ['kv', 'get', 'ks', 'k', '--bogus'],
      ['tail', 't', '--offset', '1', '--since', '5m'], ['tail', 't', '--since', 'yesterday-ish'], ['kv', 'put', 'ks', 'k', 'v', '--acks', 'maybe']];
    const benchHelp = [['bench', '--help'], ['help', 'bench']];
    // a wrong bench line is a usage error, never a stack trace
    const benchWrong = [['bench', 'nosuch'], ['bench', 'kv-put', '--rate', 'fast'], ['bench', 'kv-put', '--frob']];
    const [wrongRuns, [help, tailHelp, kvHelp, groupHelp], benchHelpRuns, benchWrongRuns] = await Promise.all([
      Promise.all(wrong.map((args) => runCli(args))),
      Promise.all([['help'], ['tail', '--help'], ['kv', '--help'], ['group', '-h']].map((args) => runCli(args))),
      Promise.all(benchHelp.map((args) => runCli(args))),
      Promise.all(benchWrong.map((args) => runCli(args))),
    ]);
    wrong.forEach((args, i) => {
      const r = wrongRuns[i];
      expect(r.code, args.join(' ')).toBe(64);
      expect(r.stderr, args.join(' ')).toMatch(/usage: chicago/);
      expect(r.stdout).toBe('');
    });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/chicago kv put KEYSPACE KEY/);
    expect(tailHelp.stdout).toMatch(/usage: chicago tail TOPIC/);
    // a command family's --help lists its subcommands; bench lists its scenarios and flags
    expect(kvHelp.code).toBe(0);
    expect(kvHelp.stdout).toMatch(/chicago kv put KEYSPACE KEY[\s\S]*chicago kv get KEYSPACE KEY/);
    expect(groupHelp.stdout).toMatch(/chicago group /);
    benchHelp.forEach((args, i) => {
      expect(benchHelpRuns[i].code, args.join(' ')).toBe(0);
      expect(benchHelpRuns[i].stdout, args.join(' ')).toMatch(/kv-put \| kv-get \| produce[\s\S]*cluster-kv-put/);
    });
    benchWrong.forEach((args, i) => {
      expect(benchWrongRuns[i].code, args.join(' ')).toBe(64);
      expect(benchWrongRuns[i].stderr, args.join(' ')).toMatch(/^chicago bench: .+\nsee 'chicago bench --help'\n$/);
    });
  });

  it('help --help and help help show the general usage, as help lists itself among the commands', async () => {
    const lines = [['help', '--help'], ['help', 'help'], ['help', '-h']];
    const runs = await Promise.all(lines.map((args) => runCli(args)));
    runs.forEach((r, i) => {
      expect(r.code, lines[i].join(' ')).toBe(0);
      expect(r.stdout, lines[i].join(' ')).toMatch(/chicago kv put KEYSPACE KEY/);
    });
  });

  it('says the node is unreachable and exits 3', async () => {
    const port = await closedPort();
    const [r, env] = await Promise.all([
      runCli(['kv', 'get', 'ks', 'k', '--url', `http://127.0.0.1:${port}`]),
      // CHICAGO_URL is the default when --url is not given.
      runCli(['status'], { env: { CHICAGO_URL: `http://127.0.0.1:${port}` } }),
    ]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/connection refused/);
    expect(env.code).toBe(3);
    expect(env.stderr).toContain(`127.0.0.1:${port}`);
  });

  it('ends quietly with exit 0 when the reader of its output goes away (| head)', async () => {
    // `true` exits without reading, so every write the CLI makes meets a closed pipe (EPIPE)
    const runs = await Promise.all([['status'], ['topic', 'list'], ['group', 'members', 'cli-pipe']].map((args) => new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const sh = spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${cliPath}" "$@" --url "${node.url}" | true`, 'sh', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      sh.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
      sh.on('close', (code) => resolve({ code, stderr }));
    })));
    for (const r of runs) expect(r).toEqual({ code: 0, stderr: '' });
  });

  it('says no agent answers at the status port, pointing at --agent rather than --url', async () => {
    const port = await closedPort();
    const r = await runCli(['agent', 'status', '--agent', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/connection refused \(is an agent running with status\.listen there\? set --agent\)/);
    expect(r.stderr).not.toMatch(/--url|CHICAGO_URL/);
  });
});

describe.concurrent('status', () => {
  it('shows the node and its partitions', async () => {
    const [text, jsonRun] = await Promise.all([cli(['status']), cli(['status', '--json'])]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/state=up/);
    expect(text.stdout).toMatch(/PARTITION\s+LEADER\s+REPLICAS/);
    const json = JSON.parse(jsonRun.stdout) as { state: string; partitions: unknown[] };
    expect(json.state).toBe('up');
    expect(json.partitions.length).toBeGreaterThan(0);
  });
});

/** A port nothing listens on: bound once by us, then released. */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}
