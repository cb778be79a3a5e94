// TLS with certificates generated at test time: HTTPS/WSS on a node's port for the CLI and the
// client (trusting the CA with --ca / `ca`), and a 3-node cluster whose peer and worker links run
// over TLS — mutual on worker links, where a peer without a certificate the cluster CA signed is
// refused, as is a plaintext peer.
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ChicagoClient } from '../src/client/index.js';
import { makeCerts, type Certs } from './helpers/certs.js';
import { http } from './helpers/http.js';
import { runCli, startNode, type NodeHandle } from './helpers/launcher.js';
import { startCluster } from './helpers/cluster.js';
import { startEtcd } from './helpers/etcd.js';
import { startEarly } from './helpers/early.js';
import { caDispatcher } from '../src/client/tls.js';
import { batchOf, duplicateOf, nodeRequest, RawBatch } from '../src/agent/shipper.js';

const SUBNET = `127.${40 + Math.floor(Math.random() * 200)}.${1 + Math.floor(Math.random() * 250)}`;

describe('TLS on a node\'s port', () => {
  let certs: Certs;
  let node: NodeHandle;
  beforeAll(async () => {
    certs = await makeCerts(['127.0.0.1']);
    const cfg = path.join(certs.dir, 'node.json');
    await writeFile(cfg, JSON.stringify({ tls: { certFile: certs.certFile, keyFile: certs.keyFile } }));
    node = await startNode({ args: ['--config', cfg], ca: certs.ca });
  });
  afterAll(async () => {
    await node?.stop();
    await certs?.cleanup();
  });

  it('serves HTTPS and WSS; the CLI and the client trust the CA they are given, and nothing else', async () => {
    expect(node.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const put = await runCli(['kv', 'put', 'app', 'k', 'over-tls', '--url', node.url, '--ca', certs.caFile]);
    expect([put.code, put.stderr]).toEqual([0, '']);
    const get = await runCli(['kv', 'get', 'app', 'k', '--url', node.url], { env: { CHICAGO_CA: certs.caFile } });
    expect(get.stdout.trim()).toBe('over-tls');
    // without the CA the certificate is not trusted: the node cannot be reached (exit 3)
    const untrusted = await runCli(['kv', 'get', 'app', 'k', '--url', node.url]);
    expect(untrusted.code).toBe(3);
    expect(untrusted.stderr).toContain('give its CA with --ca FILE or CHICAGO_CA');
    // plain HTTP to a TLS port gets no HTTP answer
    await expect(fetch(node.url.replace('https', 'http') + '/v1/health', { signal: AbortSignal.timeout(3000) })).rejects.toThrow();
    // `chicago guard` creates its decisions topic over HTTPS with the same CA
    const ban = await runCli(['guard', 'ban', '198.18.9.9', '--url', node.url, '--ca', certs.caFile]);
    expect([ban.code, ban.stderr]).toEqual([0, '']);
    const c = await ChicagoClient.connect({ url: node.url, ca: certs.ca });
    expect((await c.kv.get('app', 'k'))?.value.toString()).toBe('over-tls');
    c.close();
    await expect(ChicagoClient.connect({ url: node.url, connectTimeoutMs: 2000 })).rejects.toMatchObject({ code: 'TIMEOUT' });
  });

  it('the agent\'s requests (node:http over TLS, kept-alive connections) trust the CA they are given, and nothing else', async () => {
    const cfg = { url: node.url, timeoutMs: 3000, ca: certs.ca } as Parameters<typeof nodeRequest>[0];
    const signal = AbortSignal.timeout(10_000);
    await nodeRequest(cfg, 'POST', '/v1/topics', { name: 'agent-tls', partitions: 1 }, signal);
    const recs = [{ task: 't', seq: 0, topic: 'agent-tls', value: 'over tls', headers: { host: 'h' } }];
    const route = '/v1/topics/agent-tls/records?partition=0&producerId=agent-tls&sequence=0&acks=all';
    expect(duplicateOf((await nodeRequest(cfg, 'POST', route, new RawBatch(batchOf(recs)), signal, true)) as string)).toBe(false);
    // the same connection again (kept alive): the resend is recognised
    expect(duplicateOf((await nodeRequest(cfg, 'POST', route, new RawBatch(batchOf(recs)), signal, true)) as string)).toBe(true);
    await expect(nodeRequest({ ...cfg, ca: undefined }, 'GET', '/v1/topics/agent-tls', undefined, signal)).rejects.toThrow(/certificate/);
  });
});

/** etcd with its own TLS flags (https, client certificates the cluster CA signed) and 3 nodes on TLS. */
async function tlsCluster() {
  const ips = [1, 2, 3, 4].map((i) => `${SUBNET}.${i + 1}`);
  const certs = await makeCerts(['127.0.0.1', ...ips]);
  const cfg = path.join(certs.dir, 'cluster.json');
  await writeFile(cfg, JSON.stringify({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile } }));
  let etcd: Awaited<ReturnType<typeof startEtcd>> | undefined;
  try {
    etcd = await startEtcd({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile } });
    return { certs, etcd, cluster: await startCluster({ nodes: 3, partitions: 4, replicas: 3, subnet: SUBNET, args: ['--config', cfg], ca: certs.ca, etcd }) };
  } catch (err) {
    await etcd?.stop();
    await rm(certs.dir, { recursive: true, force: true });
    throw err;
  }
}
// started with the file
const tlsClusterOnce = startEarly(tlsCluster, async (s) => {
  await s.cluster.teardown();
  await s.etcd.stop();
  await rm(s.certs.dir, { recursive: true, force: true });
});

describe('TLS between nodes and to etcd (real etcd, 3 nodes)', () => {
  it('replicates over TLS peer links and mutual-TLS worker links, talks to etcd over mutual TLS; refuses plaintext and uncertified peers', async () => {
    const { certs, etcd, cluster } = await tlsClusterOnce();
    expect(etcd.endpoints[0].startsWith('https://')).toBe(true);
    const url = cluster.nodes[0].handle.url;
    expect(url.startsWith('https://')).toBe(true);
    const put = await http(url, 'PUT', '/v1/kv/app/k?acks=all', 'v', {}, certs.ca);
    expect([put.status, put.body.replicas]).toEqual([200, 3]);
    let direct = 0;
    for (const n of cluster.nodes) {
      const m = await http(n.handle.url, 'GET', '/metrics', undefined, {}, certs.ca);
      direct += Number(/chicago_replication_frames_sent\{link="direct"\} (\d+)/.exec(m.text)?.[1] ?? 0);
    }
    expect(direct).toBeGreaterThan(0);

    // a plaintext peer gets no WebSocket on /v1/peer
    const plain = new WebSocket(url.replace('https', 'ws') + '/v1/peer');
    plain.on('error', () => undefined);
    expect(await new Promise<string>((resolve) => { plain.once('open', () => resolve('open')); plain.once('error', () => resolve('refused')); plain.once('close', () => resolve('refused')); })).toBe('refused');
    plain.terminate();
    // a worker link without a certificate the cluster CA signed fails the TLS handshake: the
    // node's other listening ports on its address are its workers'
    const node0 = cluster.nodes[0];
    const { stdout } = await promisify(execFile)('ss', ['-Hltn']);
    const ports = stdout.split('\n').map((l) => l.trim().split(/\s+/)[3] ?? '').filter((a) => a.startsWith(`${node0.host}:`))
      .map((a) => Number(a.split(':')[1])).filter((p) => p !== node0.handle.port);
    expect(ports.length).toBeGreaterThan(0);
    for (const port of ports) {
      for (const opts of [{ ca: certs.ca }, { ca: certs.ca, cert: await readFile(certs.rogueCertFile), key: await readFile(certs.rogueKeyFile) }]) {
        const ws = new WebSocket(`wss://${node0.host}:${port}`, opts);
        ws.on('error', () => undefined);
        expect(await new Promise<string>((resolve) => { ws.once('open', () => resolve('open')); ws.once('error', () => resolve('refused')); ws.once('close', () => resolve('refused')); })).toBe('refused');
        ws.terminate();
      }
      // with the node's own certificate the handshake completes, and the link key is still required
      const keyless = new WebSocket(`wss://${node0.host}:${port}`, { ca: certs.ca, cert: await readFile(certs.certFile), key: await readFile(certs.keyFile) });
      keyless.on('error', () => undefined);
      expect(await new Promise<number>((resolve) => { keyless.once('open', () => resolve(101)); keyless.once('unexpected-response', (_q, res) => resolve(res.statusCode ?? 0)); })).toBe(401);
      keyless.terminate();
    }
    // etcd refuses a client without a certificate, and plain HTTP
    const plainEtcd = await fetch(etcd.endpoints[0].replace('https', 'http') + '/health', { signal: AbortSignal.timeout(3000) }).then((r) => r.status, () => 'refused');
    expect(plainEtcd === 'refused' || plainEtcd === 400).toBe(true);
    const noCert = await fetch(etcd.endpoints[0] + '/v3/kv/range', { method: 'POST', body: '{"key":"Lw=="}', signal: AbortSignal.timeout(3000), ...({ dispatcher: caDispatcher(certs.ca) } as RequestInit) }).then((r) => r.status, () => 'refused');
    expect(noCert).toBe('refused');
    // a node without the etcd CA does not start
    const bad = path.join(certs.dir, 'no-ca.json');
    await writeFile(bad, JSON.stringify({ tls: { certFile: certs.certFile, keyFile: certs.keyFile } }));
    const r = await runCli(['server', '--config', bad, '--data-dir', path.join(certs.dir, 'x'), '--port', '0', '--etcd', etcd.endpoints[0]]);
    expect([r.code, r.stderr]).toEqual([78, expect.stringContaining('https:// etcd endpoints need')]);
  });
});
