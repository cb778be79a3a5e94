// Node CPU and wake-ups per kv-put in a closed loop: CONCURRENCY puts in flight (1: each put travels
// alone, as at a low rate on a quiet machine), PUTS measured after 2,000 warm-up puts, 200 B values,
// acks=one, keys cycling over 100,000. Unlike the open-loop bench it does not depend on keeping up,
// so a busy machine changes it less. The node is started here with this process's environment.
//   node dist/bench/kv-closed.js [CONCURRENCY=1] [PUTS=5000]
import { ChicagoClient } from '../src/client/index.js';
import { perOpByThread, readThreadStats, spawnNode } from './proc.js';

const concurrency = Number(process.argv[2] ?? 1);
const puts = Number(process.argv[3] ?? 5000);
const node = await spawnNode({});
try {
  const client = await ChicagoClient.connect({ url: node.url });
  const value = Buffer.alloc(200, 7);
  const load = async (n: number): Promise<void> => {
    let i = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (i < n) await client.kv.put('bench', `key-${(i++ % 100_000).toString()}`, value, { acks: 'one' });
    }));
  };
  await load(2000);
  const before = readThreadStats(node.pid);
  const t0 = performance.now();
  await load(puts);
  const wallS = (performance.now() - t0) / 1000;
  const perPut = perOpByThread(node.pid, before, readThreadStats(node.pid), puts);
  console.log(JSON.stringify({ concurrency, puts, rate: Math.round(puts / wallS), perPut }));
  client.close();
} finally {
  await node.stop();
}
