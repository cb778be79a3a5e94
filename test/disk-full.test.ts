// A node on a small tmpfs (mounted by the test; root required) filled until writes stop: writes
// fail fast with retryable STORAGE_FULL (507), reads, tails, health and deletes keep working, writes
// resume on their own once there is room, a kill -9 and restart on the full disk comes up serving
// reads and says why, and every acknowledged record is intact throughout.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChicagoClient } from '../src/client/index.js';
import { http } from './helpers/http.js';
import { startNode, type NodeHandle } from './helpers/launcher.js';
import { waitUntil } from './helpers/bridge.js';

const MiB = 1024 * 1024;
/** the disk: the node's reserve (96 MiB) and free-space floor (100 MiB) plus about 80 MiB of records to fill */
const TMPFS_MIB = 280;
const mountPoint = mkdtempSync(path.join(os.tmpdir(), 'chicago-tmpfs-'));
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_MIB}m`, 'tmpfs', mountPoint], { stdio: 'pipe' });
  mounted = true;
} catch (err) {
  console.warn(`disk-full tests skipped: cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]}); they need root`);
}

afterAll(() => {
  if (mounted) execFileSync('umount', ['-l', mountPoint]);
  rmSync(mountPoint, { recursive: true, force: true });
});

describe.skipIf(!mounted)(`disk full (a node on a ${TMPFS_MIB} MiB tmpfs)`, () => {
  const dataDir = path.join(mountPoint, 'node');
  const env = { CHICAGO_STORAGE_MIN_FREE_BYTES: String(100 * MiB), CHICAGO_STORAGE_RESERVE_BYTES: String(96 * MiB) };
  let node: NodeHandle;
  /** every acknowledged record: offset → value */
  const acked = new Map<number, string>();

  beforeAll(async () => {
    node = await startNode({ dataDir, keepData: true, env });
    expect((await http(node.url, 'POST', '/v1/topics', { name: 'fill', partitions: 1 })).status).toBe(201);
    expect((await http(node.url, 'POST', '/v1/topics', { name: 'spare', partitions: 1 })).status).toBe(201);
    await http(node.url, 'PUT', '/v1/kv/app/keep', 'kept');
    await http(node.url, 'PUT', '/v1/kv/app/drop', 'dropped');
  });
  afterAll(async () => {
    await node?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('refuses writes with a fast, retryable STORAGE_FULL before the disk runs out; reads, tails, health and deletes keep working', async () => {
    // until writes stay refused: free space moves in steps (RocksDB preallocates its log, flushes
    // make files), and a write refused on an estimate may be let through after the next look
    let refused: { status: number; body: any } | undefined;
    let refusedInARow = 0;
    for (let i = 0; i < 600 && refusedInARow < 5; i++) {
      const values = Array.from({ length: 8 }, () => randomBytes(96 * 1024).toString('base64'));
      const r = await http(node.url, 'POST', '/v1/topics/fill/records', values.map((value) => ({ value })));
      if (r.status === 200) {
        r.body.records.forEach((rec: { offset: number }, j: number) => acked.set(rec.offset, values[j]));
        refusedInARow = 0;
      } else {
        refused = r;
        refusedInARow++;
        await new Promise((res) => setTimeout(res, 300));
      }
    }
    expect(refused?.status).toBe(507);
    expect(refused?.body.error).toMatchObject({ code: 'STORAGE_FULL', retryable: true });
    expect(acked.size).toBeGreaterThan(50);
    // fast: refused at the edge, not after a timeout
    const t0 = Date.now();
    const again = await http(node.url, 'PUT', '/v1/kv/app/new', 'x');
    expect([again.status, again.body.error.code]).toEqual([507, 'STORAGE_FULL']);
    expect(Date.now() - t0).toBeLessThan(1_000);

    const health = await http(node.url, 'GET', '/v1/health');
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('degraded');
    expect(health.body.reasons[0]).toMatch(/^disk full: /);
    const read = await http(node.url, 'GET', '/v1/topics/fill/records?partition=0&offset=0&maxRecords=5');
    expect(read.status).toBe(200);
    expect(read.body.records[0].value).toBe(acked.get(0));
    expect((await http(node.url, 'GET', '/v1/kv/app/keep')).text).toBe('kept');
    const c = await ChicagoClient.connect({ url: node.url });
    const tail = c.tail('fill', 0, { from: { kind: 'offset', offset: 0 } });
    const it = tail[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value.value.toString()).toBe(acked.get(0));
    await it.return?.();
    c.close();
    expect((await http(node.url, 'DELETE', '/v1/kv/app/drop')).status).toBe(200);
    expect((await http(node.url, 'DELETE', '/v1/topics/spare')).status).toBe(204);
    expect((await http(node.url, 'GET', '/metrics')).text).toMatch(/chicago_disk_full 1/);
  });

  it('comes back up after kill -9 on a disk its own data filled, every acknowledged record intact', async () => {
    await node.kill('SIGKILL');
    node = await startNode({ dataDir, keepData: true, env });
    // Releasing the reserve made room to open. Whether writes are refused after depends on what
    // recovery frees (old logs go once every column family is flushed): health says which.
    const health = await http(node.url, 'GET', '/v1/health');
    expect(health.status).toBe(200);
    if (health.body.status === 'degraded') expect(health.body.reasons[0]).toMatch(/^disk full: /);
    else expect(health.body.status).toBe('ok');
    await expectAcked(node, acked);
    expect((await http(node.url, 'GET', '/v1/kv/app/keep')).text).toBe('kept');
    expect((await http(node.url, 'GET', '/v1/kv/app/drop')).status).toBe(404);
  });
});

/** every acknowledged record is there, byte for byte */
async function expectAcked(node: NodeHandle, acked: Map<number, string>): Promise<void> {
  let next = 0;
  const seen = new Map<number, string>();
  const end = Math.max(...acked.keys()) + 1;
  while (next < end) {
    const r = await http(node.url, 'GET', `/v1/topics/fill/records?partition=0&offset=${next}&maxRecords=100`);
    expect(r.status).toBe(200);
    for (const rec of r.body.records) seen.set(rec.offset, rec.value);
    next = r.body.nextOffset;
  }
  for (const [offset, value] of acked) expect(seen.get(offset) === value, `offset ${offset}`).toBe(true);
}

describe.skipIf(!mounted)('disk full (another process fills the disk)', () => {
  it('a restart on the full disk comes up serving reads and says why; writes resume on their own once the space is back', async () => {
    const dataDir = path.join(mountPoint, 'second');
    const env = { CHICAGO_STORAGE_MIN_FREE_BYTES: String(64 * MiB), CHICAGO_STORAGE_RESERVE_BYTES: String(96 * MiB) };
    let node = await startNode({ dataDir, keepData: true, env });
    try {
      await http(node.url, 'POST', '/v1/topics', { name: 'fill', partitions: 1 });
      const acked = new Map<number, string>();
      for (let i = 0; i < 20; i++) {
        const value = randomBytes(4096).toString('base64');
        const r = await http(node.url, 'POST', '/v1/topics/fill/records', [{ value }]);
        expect(r.status).toBe(200);
        acked.set(r.body.records[0].offset, value);
      }
      await node.kill('SIGKILL');
      // something else takes all but 8 MiB (the first test's node and its data are gone by now)
      const filler = path.join(mountPoint, 'filler');
      const avail = Number(execFileSync('df', ['-B1', '--output=avail', mountPoint]).toString().split('\n')[1].trim());
      writeFileSync(filler, Buffer.alloc(Math.max(0, avail - 8 * MiB)));
      node = await startNode({ dataDir, keepData: true, env });
      expect(node.stdout.text()).toMatch(/starting on a full disk: serving reads and deletes only/);
      const health = await http(node.url, 'GET', '/v1/health');
      expect([health.status, health.body.status]).toEqual([200, 'degraded']);
      expect(health.body.reasons[0]).toMatch(/^disk full: /);
      expect((await http(node.url, 'PUT', '/v1/kv/app/new', 'x')).status).toBe(507);
      await expectAcked(node, acked);
      unlinkSync(filler);
      await waitUntil('writes to resume', async () => (await http(node.url, 'PUT', '/v1/kv/app/after', 'ok')).status === 200, 10_000, 100);
      expect((await http(node.url, 'GET', '/v1/health')).body.status).toBe('ok');
      await node.stdout.waitFor(/disk has room again: writes resume/, 5_000);
    } finally {
      await node.stop();
    }
  });
});
