// The web console against a real 3-node cluster (real etcd, no tokens) in headless Chromium: the
// cluster view shows every node and each partition's leader and in-sync set, follows a node joining
// (rebalance progress, then a fourth node), the live tail on one node shows records of
// partitions led by the others, and a killed node leaves the view. Screenshots go to test-results/console/.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium, shot } from '../helpers/console-page.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { http } from '../helpers/http.js';
import { slow } from '../helpers/slow.js';

describe.skipIf(!haveChromium)('console on a 3-node cluster (headless Chromium)', () => {
  let cluster: Cluster;
  let browser: Browser;

  beforeAll(async () => {
    cluster = await startCluster({ nodes: 3, partitions: 8, replicas: 2 });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, slow(180_000));
  afterAll(async () => {
    await browser?.close();
    await cluster?.teardown();
  });

  it('shows nodes, leaders and in-sync sets, a joining node, and tails partitions led elsewhere', async () => {
    const url = cluster.nodes[0].url;
    const wait = { timeout: slow(20_000) };
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`); });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));

    // an open node: no token asked
    await page.goto(`${url}/ui#/cluster`);
    await page.locator('#conn', { hasText: /^connected$/ }).waitFor(wait);
    await page.locator('#cluster-intro', { hasText: '3 nodes, 8 partitions' }).waitFor(wait);
    // a partition being moved lists its old and new replicas together: read the settled placement
    await page.locator('#rebalance', { hasText: 'No partition moving' }).waitFor(wait);
    const rows = async () => page.locator('#cluster-partitions tbody tr').evaluateAll((trs) => trs.map((tr) => Array.from(tr.children, (td) => (td as HTMLElement).innerText)));
    const before = await rows();
    expect(before).toHaveLength(8);
    for (const [, , leader, replicas, isr] of before) {
      expect(['n1', 'n2', 'n3']).toContain(leader);
      expect(replicas.split(', ')).toHaveLength(2);
      expect(isr.split(', ')).toContain(leader);
    }
    await shot(page, 'cluster-3.png');

    // a fourth node joins: the view follows until it holds replicas and the moves are done
    const { id } = await cluster.addNode();
    await page.locator('#cluster-intro', { hasText: '4 nodes' }).waitFor(wait);
    await expect.poll(async () => (await rows()).some(([, , , replicas]) => replicas.split(', ').includes(id)), { timeout: slow(60_000) }).toBe(true);
    // `completed` in /v1/status counts the moves of the last minute (as `chicago status` says), not a total
    await page.locator('#rebalance', { hasText: /No partition moving \([1-9]\d* moves completed in the last minute\)/ }).waitFor({ timeout: slow(60_000) });
    await shot(page, 'cluster-4.png');

    // the tail on n1 reads every partition, wherever it is led
    expect((await http(url, 'POST', '/v1/topics', { name: 'console-spread', partitions: 6 })).status).toBe(201);
    const leaders = new Set((await http(url, 'GET', '/v1/topics/console-spread')).body.partitions.map((p: { leader: string }) => p.leader));
    expect(leaders.size).toBeGreaterThan(1);
    await page.click('nav a[href="#/tail"]');
    await page.locator('#tail-topic option[value="console-spread"]').waitFor({ state: 'attached', ...wait });
    await page.selectOption('#tail-topic', 'console-spread');
    await page.locator('body[data-tail="live"]').waitFor({ state: 'attached', ...wait });
    for (let p = 0; p < 6; p++) {
      expect((await http(url, 'POST', `/v1/topics/console-spread/records?partition=${p}`, [{ value: `spread ${p}`, headers: { task: 'spread' } }])).status).toBe(200);
    }
    await expect.poll(() => page.locator('#tail-rows tr').count(), wait).toBe(6);
    await shot(page, 'cluster-tail.png');

    // a killed node leaves the view
    await page.click('nav a[href="#/cluster"]');
    await cluster.kill9('n3');
    await page.locator('#cluster-intro', { hasText: '3 nodes' }).waitFor({ timeout: slow(30_000) });
    await page.close();
    expect(errors).toEqual([]);
  }, slow(240_000));
});
