// Stateless CPU work (parsing large JSON/NDJSON batches) on a small piscina pool: the one place
// where a thread pool without affinity fits. Bounded queue; full → OVERLOADED.
import { Piscina } from 'piscina';
import { ChicagoError, type ErrorCode } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { parseRecords, type ParseOutcome } from './bodies.js';
import type { ProduceRecord } from '../protocol/api.js';

export class ParsePool {
  private readonly pool = new Piscina({
    filename: new URL('./parse-worker.js', import.meta.url).href,
    minThreads: 0,
    maxThreads: limits.parseThreadsMax,
    maxQueue: limits.parseQueueMax,
    idleTimeout: 30_000,
    // A parse leaves its body's text and values as garbage; V8 sizes a thread's heap from the
    // machine's memory and would keep hundreds of MB of it between collections.
    resourceLimits: { maxOldGenerationSizeMb: limits.parseThreadHeapMb },
  });

  async parse(body: Buffer, contentType: string): Promise<ProduceRecord[]> {
    if (body.length < limits.parseInlineBytesMax) return parseRecords(body, contentType);
    if (this.pool.queueSize >= limits.parseQueueMax) throw new ChicagoError('OVERLOADED', 'parse queue', `${this.pool.queueSize} bodies`);
    // A large body owns its memory (not a pooled slice), so it moves to the worker without a copy.
    const owned = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
    const task = { body: owned ? body : Buffer.from(body), contentType };
    let out: ParseOutcome;
    try {
      out = (await this.pool.run(task, { transferList: [task.body.buffer as ArrayBuffer] })) as ParseOutcome;
    } catch (err) {
      // past parseThreadHeapMb (bodies parsed at once on one thread): the thread is replaced, the body may be sent again
      if ((err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY') throw new ChicagoError('OVERLOADED', 'parse thread memory', `${limits.parseThreadHeapMb} MB`);
      throw err;
    }
    if (!out.ok) {
      const err = new ChicagoError(out.error.code as ErrorCode);
      err.message = out.error.message;
      throw err;
    }
    return out.records;
  }

  async close(): Promise<void> { await this.pool.destroy(); }
}
