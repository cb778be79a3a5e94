// Keeps a producer's pipelined batches in the order they reached this node while their bodies are parsed.
/**
 * Idempotent produces being parsed, per producer+topic+partition and sequence. Bodies of 64 KiB or
 * more are parsed on a pool of threads, so a producer's pipelined batches could reach the partition
 * in another order than they arrived in, and be refused as out of order (SEQUENCE_GAP). A batch that
 * names its predecessor waits for that one's parse if it arrived first; one entry per request in
 * parse (the parse queue bounds them).
 */
export class PipelinedProduces {
  private readonly parsing = new Map<string, Promise<void>>();

  arrive(producer: string, sequence: string | null): { after: (previous: string) => Promise<void>; done: () => void } {
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
