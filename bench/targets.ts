// How the bench talks to Chicago: through the TypeScript WebSocket client (the default, `--via ws`)
// or plain HTTP/1.1 keep-alive (`--via http`). Both offer the same small surface to the scenarios.
import type { Acks } from '../src/protocol/api.js';
import { HttpTarget } from './http.js';
import { WsDriver } from './ws-driver.js';

export interface TailHandle {
  stop(): Promise<void>;
}

export interface ChicagoDriver {
  readonly via: 'ws' | 'http';
  kvPut(ks: string, key: string, value: Buffer): Promise<{ replicas: number }>;
  kvGet(ks: string, key: string): Promise<unknown>;
  /**
   * One batch; resolves when every record of it is acked. The ws driver sends batch k to partition
   * k % partitions (the client keeps one batch in flight per partition); http lets the node spread.
   */
  produce(topic: string, values: Buffer[], partitions: number): Promise<{ replicas: number }>;
  /** delivers every record of `partition` appended after the subscription is live */
  tail(
    topic: string,
    partition: number,
    onRecord: (value: Buffer, partition: number) => void,
    onError: (e: unknown) => void,
  ): Promise<TailHandle>;
  close(): Promise<void>;
}

export interface DriverOptions {
  url: string;
  via: 'ws' | 'http';
  connections: number;
  acks: Acks;
  /** client-side producer linger (ws only) */
  lingerMs: number;
  /** ws: Producer instances per connection (each keeps one batch in flight per partition) */
  producers: number;
  /** ws: batches in flight per Producer stream; default the client's */
  maxInFlight?: number;
  creditBytes: number;
}

export async function openDriver(o: DriverOptions): Promise<ChicagoDriver> {
  if (o.via === 'http') return new HttpDriver(o);
  return WsDriver.open(o);
}

const HTTP_SOCKETS_PER_CONNECTION = 32;

class HttpDriver implements ChicagoDriver {
  readonly via = 'http' as const;
  private readonly http: HttpTarget;
  constructor(private readonly o: DriverOptions) {
    // HTTP/1.1 has no pipelining: one request per socket at a time, so a pool per "connection"
    this.http = new HttpTarget(o.url, o.connections * HTTP_SOCKETS_PER_CONNECTION);
  }

  async kvPut(ks: string, key: string, value: Buffer): Promise<{ replicas: number }> {
    return this.http.kvPut(ks, key, value, this.o.acks);
  }

  kvGet(ks: string, key: string): Promise<unknown> {
    return this.http.kvGet(ks, key);
  }

  async produce(topic: string, values: Buffer[], _partitions: number): Promise<{ replicas: number }> {
    // the HTTP API carries values as JSON strings: the bench's values are ASCII
    const r = await this.http.produce(
      topic,
      values.map((v) => ({ value: v.toString('latin1') })),
      this.o.acks,
    );
    return { replicas: r.replicas };
  }

  async tail(
    topic: string,
    partition: number,
    onRecord: (value: Buffer, partition: number) => void,
    onError: (e: unknown) => void,
  ): Promise<TailHandle> {
    // long-poll from the current end offset
    let offset = (await this.http.endOffsets(topic)).get(partition) ?? 0;
    const poller = new HttpTarget(this.o.url, 1);
    let stopped = false;
    const loop = (async () => {
      while (!stopped) {
        try {
          const r = await poller.fetch(topic, partition, offset, 500);
          for (const rec of r.records) onRecord(Buffer.from(rec.value, 'latin1'), partition);
          offset = r.nextOffset;
        } catch (e) {
          if (!stopped) onError(e);
          return;
        }
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        await Promise.race([loop, new Promise((r) => setTimeout(r, 1000))]);
        poller.close();
      },
    };
  }

  async close(): Promise<void> {
    this.http.close();
  }
}
