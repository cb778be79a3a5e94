// Large buffers the agent reuses instead of allocating one per read or per batch. A fresh buffer of
// a MiB is a fresh mapping (MALLOC_MMAP_THRESHOLD_, bin/chicago.js) whose every page faults on its
// first write and is unmapped again when V8 collects it; V8 counts it as external memory, whose growth
// brings full collections. A kept one costs none of that.

/**
 * Buffers handed out by take and given back once nothing reads them any more; at most `keptMax` are
 * kept (full → dropped), none after `idleMs` without a take (an idle agent holds none). Requests under
 * `minBytes` are not pooled: they come from Node's own allocator and give ignores them.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  /** the ArrayBuffers handed out by take, so that give takes back only those */
  private readonly issued = new WeakSet<ArrayBufferLike>();
  private lastTakeMs = 0;
  private timer: NodeJS.Timeout | undefined;
  /** buffers taken that were kept ones (tests) */
  reused = 0;
  /** tests: every buffer given back is filled with this byte, so a read of it after give shows */
  poisonByte?: number;

  constructor(private readonly opts: { keptMax: number; idleMs: number; minBytes?: number }) {
    if (!(Number.isInteger(opts.keptMax) && opts.keptMax >= 0)) throw new Error(`buffer pool keptMax ${opts.keptMax} is not a count`);
    if (!(opts.idleMs > 0)) throw new Error(`buffer pool idleMs ${opts.idleMs} is not positive`);
  }

  /** A buffer of exactly `bytes`, a view of a kept one when one is large enough. */
  readonly take = (bytes: number): Buffer => {
    if (bytes < (this.opts.minBytes ?? 0)) return Buffer.allocUnsafe(bytes);
    this.lastTakeMs = Date.now();
    // a kept one too small is dropped
    let b = this.free.pop();
    if (b && b.length >= bytes) this.reused++;
    else {
      // a quarter more than asked: the next request of about the same size fits too
      b = Buffer.allocUnsafeSlow(bytes + (bytes >>> 2));
      this.issued.add(b.buffer);
    }
    return b.subarray(0, bytes);
  };

  /** Takes back a buffer (any view of it) that take handed out; nothing may read it afterwards. */
  readonly give = (view: Buffer): void => {
    if (!this.issued.has(view.buffer)) return;
    const whole = Buffer.from(view.buffer, 0, view.buffer.byteLength);
    if (this.poisonByte !== undefined) whole.fill(this.poisonByte);
    if (this.free.length >= this.opts.keptMax) return;
    if (this.free.some((f) => f.buffer === whole.buffer)) throw new Error('buffer pool: a buffer given back twice');
    this.free.push(whole);
    this.timer ??= setTimeout(this.dropIdle, this.opts.idleMs).unref();
  };

  private readonly dropIdle = (): void => {
    this.timer = undefined;
    const idleMs = Date.now() - this.lastTakeMs;
    if (idleMs >= this.opts.idleMs) this.free.length = 0;
    else this.timer = setTimeout(this.dropIdle, this.opts.idleMs - idleMs).unref();
  };
}

/**
 * A pooled buffer read by several holders (a followed file's held bytes, the spool entry of the lines
 * read into it): back to its pool once each holder has released it. A holder that never releases
 * (dropped on an error path) leaves the buffer to V8, never to the pool: only a release can make it
 * reusable.
 */
export class Lease {
  private holders = 1;

  constructor(private readonly pool: BufferPool, readonly buf: Buffer) {}

  /** One more holder (it calls release once). */
  hold(): Lease {
    if (this.holders <= 0) throw new Error('lease: hold after the last release');
    this.holders++;
    return this;
  }

  release(): void {
    if (this.holders <= 0) throw new Error('lease: released more often than held');
    if (--this.holders === 0) this.pool.give(this.buf);
  }

  /** Whether `b` is a view of this lease's buffer. */
  holds(b: Buffer): boolean {
    return b.buffer === this.buf.buffer;
  }
}
