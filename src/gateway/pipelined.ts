// Keeps a producer's pipelined batches in the order their requests reached this node.
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
  private readonly parsing = new Map<string, Promise<void>>();

  arrive(producer: string, sequence: string | null): Turn {
    const key = `${producer}\0${sequence}`;
    let resolve!: () => void;
    const mine = new Promise<void>((r) => { resolve = r; });
    this.parsing.set(key, mine);
    let finished = false;
    return {
      after: async (previous) => { await this.parsing.get(`${producer}\0${previous}`); },
      done: () => {
        if (finished) return;
        finished = true;
        if (this.parsing.get(key) === mine) this.parsing.delete(key);
        resolve();
      },
    };
  }
}
