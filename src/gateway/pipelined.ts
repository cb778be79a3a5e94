// Keeps a producer's pipelined batches in the order their requests reached this node.
import { limits } from '../runtime/limits.js';
/** A batch's place: `after` waits for its predecessor's, `done` gives it up (once it is submitted, or however it ended). */
export interface Turn { after: (previous: string) => Promise<void>; done: () => void }

/**
 * Idempotent produces in progress, per producer+topic+partition and sequence, from the moment their
 * headers arrive. Over several connections a later batch's body may be read first, and bodies of
 * 64 KiB or more are parsed on a pool of threads: either way a producer's pipelined batches could
 * reach the partition in another order than their requests arrived in, and be refused as out of order
 * (SEQUENCE_GAP). A batch that names its predecessor waits for that one to be submitted if that one's
 * request came first; one entry per request in progress (each connection has at most one).
 */
export class PipelinedProduces {
  private readonly inProgress = new Map<string, Promise<void>>();

  /**
   * The first request of a producer+sequence holds the place; a second one (a retry on another
   * connection, or anyone who knows the producer id: the place is taken before authentication) waits
   * on nothing of its own. A wait ends after limits.producePredecessorWaitMs whatever happens: the
   * partition then refuses a batch whose predecessor is missing (SEQUENCE_GAP, retryable).
   */
  arrive(producer: string, sequence: string | null): Turn {
    const key = `${producer}\0${sequence}`;
    let resolve!: () => void;
    const mine = new Promise<void>((r) => { resolve = r; });
    const first = !this.inProgress.has(key);
    if (first) this.inProgress.set(key, mine);
    let finished = false;
    return {
      after: async (previous) => {
        const theirs = this.inProgress.get(`${producer}\0${previous}`);
        if (!theirs) return;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([theirs, new Promise<void>((r) => { timer = setTimeout(r, limits.producePredecessorWaitMs); })]);
        clearTimeout(timer);
      },
      done: () => {
        if (finished) return;
        finished = true;
        if (first && this.inProgress.get(key) === mine) this.inProgress.delete(key);
        resolve();
      },
    };
  }
}
