// The default transport: the repository's TypeScript client over /v1/ws (src/client), one
// ChicagoClient per --connections, operations spread round robin.
import { ChicagoClient, type OutRecord, type Producer, type TailStream } from '../src/client/index.js';
import type { ChicagoDriver, DriverOptions, TailHandle } from './targets.js';
import { benchCredentials } from './http.js';

/** byte limit of a streaming producer's batch (records that queue up behind one in flight) */
const STREAM_BATCH_BYTES = 1024 * 1024;

export class WsDriver implements ChicagoDriver {
  readonly via = 'ws' as const;
  private rr = 0;
  private batchSeq = 0;
  /** per connection and batch size: a producer seals a batch when it reaches batchBytesMax */
  private readonly producers = new Map<string, Producer<'acked'>>();
  private readonly records = new WeakMap<Buffer[], OutRecord[][]>();

  private constructor(
    private readonly o: DriverOptions,
    private readonly clients: ChicagoClient[],
  ) {}

  static async open(o: DriverOptions): Promise<WsDriver> {
    const clients: ChicagoClient[] = [];
    for (let i = 0; i < o.connections; i++) {
      const { token, ca } = benchCredentials();
      clients.push(await ChicagoClient.connect({ url: o.url, clientName: `chicago-bench-${i}`, requestTimeoutMs: 60_000, ...(token ? { token } : {}), ...(ca ? { ca } : {}) }));
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

  private producer(i: number, batchBytes: number, slot: number): Producer<'acked'> {
    const k = `${i}/${batchBytes}/${slot}`;
    let p = this.producers.get(k);
    if (!p) {
      if (this.o.acks === 'none') throw new Error('produce with --acks none has no ack to time; use one or all');
      // A batch is sealed by size exactly when the bench's batch is complete (lingerMs only as a
      // backstop), so one bench batch = one produce request. Single records (produce-tail, or
      // --batch 1) are streamed as an application would: lingerMs as given (default 0), and the
      // records that arrive while a batch is in flight go together in the next one.
      const streaming = batchBytes === 0;
      p = this.clients[i]!.producer({
        acks: this.o.acks,
        mode: 'acked',
        lingerMs: streaming ? this.o.lingerMs : this.o.lingerMs > 0 ? this.o.lingerMs : 1000,
        batchBytesMax: streaming ? STREAM_BATCH_BYTES : batchBytes,
        bufferBytesMax: Math.max(256 * 1024 * 1024, batchBytes * 4),
        deliveryTimeoutMs: 60_000,
        ...(this.o.maxInFlight !== undefined ? { maxInFlight: this.o.maxInFlight } : {}),
      });
      this.producers.set(k, p);
    }
    return p;
  }

  produce(topic: string, values: Buffer[], partitions: number): Promise<{ replicas: number }> {
    const i = this.next();
    let bytes = 0;
    for (const v of values) bytes += v.length;
    // Each (topic, partition) stream of a client Producer keeps one batch in flight: batches go
    // to partitions round robin, and to --producers Producer instances round robin, so that
    // partitions × producers batches can be in flight at once.
    const seq = this.batchSeq++;
    const partition = seq % partitions;
    const p = this.producer(i, values.length === 1 ? 0 : bytes, Math.floor(seq / partitions) % this.o.producers);
    if (values.length === 1) return p.send(topic, { value: values[0]!, partition }).then(() => ({ replicas: 1 }));
    // a batch at a time, as an application producing batches would: one promise for the batch
    return p.sendMany(topic, this.recordsOf(values, partition)).then(() => ({ replicas: 1 }));
  }

  /** The records of a bench batch for one partition, built once (the Producer keeps only their values). */
  private recordsOf(values: Buffer[], partition: number): OutRecord[] {
    let byPartition = this.records.get(values);
    if (!byPartition) this.records.set(values, (byPartition = []));
    return (byPartition[partition] ??= values.map((value) => ({ value, partition })));
  }

  async tail(
    topic: string,
    partition: number,
    onRecord: (value: Buffer, partition: number) => void,
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
          onRecord(rec.value, rec.partition);
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
    await Promise.all([...this.producers.values()].map((p) => p.close(5_000).catch(() => undefined)));
    for (const c of this.clients) c.close();
  }
}
