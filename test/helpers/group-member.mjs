// A consumer group member in its own process (test/groups.test.ts kills it with SIGKILL).
// argv: url group topic name sessionTimeoutMs. Prints one JSON line per event on stdout:
// {ev:'assign'|'revoke', parts, t} and {ev:'rec', p, o, v, start, end}. SIGTERM → close (leave).
import { ChicagoClient } from '../../dist/src/client/index.js';

const [url, group, topic, name, sessionTimeoutMs] = process.argv.slice(2);
const out = (o) => process.stdout.write(`${JSON.stringify({ m: name, ...o })}\n`);
const client = await ChicagoClient.connect({ url, backoffMinMs: 10, backoffMaxMs: 100 });
const consumer = client.subscribe(group, [topic], {
  sessionTimeoutMs: Number(sessionTimeoutMs),
  commitIntervalMs: 100,
  onAssign: (ps) => out({ ev: 'assign', parts: ps.map((p) => p.partition), t: Date.now() }),
  onRevoke: (ps) => out({ ev: 'revoke', parts: ps.map((p) => p.partition), t: Date.now(), stats: consumer.stats }),
});
process.on('SIGTERM', () => {
  void consumer.close().then(() => { out({ ev: 'closed', t: Date.now() }); client.close(); process.exit(0); });
});
out({ ev: 'ready', t: Date.now() });
for await (const r of consumer) {
  const start = Date.now();
  // "processing": a short busy wait, so that overlapping owners would show
  while (Date.now() - start < 2) { /* spin */ }
  out({ ev: 'rec', p: r.partition, o: r.offset, v: r.value.toString(), start, end: Date.now(), g: consumer.generation });
}
