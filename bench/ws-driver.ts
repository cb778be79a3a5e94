// The default transport: the repository's TypeScript client over /v1/ws (src/client), one
// ChicagoClient per --connections, operations spread round robin.
import { ChicagoClient, type Producer, type TailStream } from '../src/client/index.js';
import type { ChicagoDriver, DriverOptions, TailHandle } from './targets.js';

export class WsDriver implements ChicagoDriver {
  readonly via = 'ws' as const;
  private rr = 0;
  private batchSeq = 0;
  private readonly producers: Array<Producer<'acked'> | undefined>;

  private constructor(
    private readonly o: DriverOptions,
    private readonly clients: ChicagoClient[],
  ) {
    this.producers = clients.map(() => undefined);
  }

  static async open(o: DriverOptions): Promise<WsDriver> {
    const clients: ChicagoClient[] = [];
    for (let i = 0; i < o.connections; i++) {
      clients.push(await ChicagoClient.connect({ url: o.url, clientName: `chicago-bench-${i}`, requestTimeoutMs: 60_000 }));
    }
    return new WsDriver(o, clients);
  }

  private next(): number {
    const i = this.rr;
    this.rr = (this.rr + 1) % this.clients.length;
    return i;
  }

  async kvPut(ks: string, key: string, value: Buffer): Promise<{ replicas: number }> {
    return this.clients[this.next()]!.kv.put(ks, key, value, { acks: this.o.acks });
  }

  kvGet(ks: string, key: string): Promise<unknown> {
    return this.clients[this.next()]!.kv.get(ks, key);
  }

  private producer(i: number, recordBytes: number, records: number): Producer<'acked'> {
    let p = this.producers[i];
    if (!p) {
      if (this.o.acks === 'none') throw new Error('produce with --acks none has no ack to time; use one or all');
      // A batch is sealed by size exactly when the bench's batch is complete (lingerMs only as a
      // backstop), so one bench batch = one produce request.
      p = this.clients[i]!.producer({
        acks: this.o.acks,
        mode: 'acked',
        lingerMs: this.o.lingerMs > 0 ? this.o.lingerMs : 1000,
        batchBytesMax: recordBytes * records,
        bufferBytesMax: Math.max(256 * 1024 * 1024, recordBytes * records * 4),
        deliveryTimeoutMs: 60_000,
      });
      this.producers[i] = p;
    }
    return p;
  }

  produce(topic: string, values: Buffer[], partitions = 1): Promise<{ replicas: number }> {
    const i = this.next();
    const bytes = values.reduce((a, v) => a + v.length, 0);
    const p = this.producer(i, Math.ceil(bytes / values.length), values.length);
    // Each (topic, partition) stream of the client keeps one batch in flight: batches go to
    // partitions round robin so that every partition has one in flight.
    const partition = this.batchSeq++ % partitions;
    const acks: Array<Promise<unknown>> = new Array<Promise<unknown>>(values.length);
    for (let j = 0; j < values.length; j++) acks[j] = p.send(topic, { value: values[j]!, partition });
    return Promise.all(acks).then(() => ({ replicas: 1 }));
  }

  async tail(
    topic: string,
    partition: number,
    onRecord: (value: Buffer) => void,
    onError: (e: unknown) => void,
  ): Promise<TailHandle> {
    const stream: TailStream = this.clients[0]!.tail(topic, partition, {
      from: 'latest',
      creditBytes: this.o.creditBytes,
    });
    let stopped = false;
    const loop = (async () => {
      try {
        for await (const rec of stream) {
          onRecord(rec.value);
          if (stopped) break;
        }
      } catch (e) {
        if (!stopped) onError(e);
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        await stream.close().catch(() => undefined);
        await Promise.race([loop, new Promise((r) => setTimeout(r, 1000))]);
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.producers.map((p) => p?.close(5_000).catch(() => undefined)));
    for (const c of this.clients) c.close();
  }
}
