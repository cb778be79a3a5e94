// One cap on what a node buffers (config memory.maxBytes): request bodies being received, requests
// queued to the workers, and bytes waiting in WebSocket send buffers. Full policy: new work is
// refused with retryable OVERLOADED (producers back off and retry) and tail pushes pause until the
// sockets drain; nothing already taken is dropped.
export class MemoryBudget {
  private usedBytes = 0;
  /** refusals since start, for /metrics */
  refused = 0;

  constructor(readonly maxBytes: number) {
    if (!(maxBytes > 0)) throw new Error(`memory budget must be positive, got ${maxBytes}`);
  }

  get used(): number { return this.usedBytes; }
  /** at or above the cap: pushes wait */
  get full(): boolean { return this.usedBytes >= this.maxBytes; }

  /** Takes `bytes` if they fit under the cap; false (and counted) if not. */
  take(bytes: number): boolean {
    if (this.usedBytes + bytes > this.maxBytes) {
      this.refused++;
      return false;
    }
    this.usedBytes += bytes;
    return true;
  }

  /** Takes `bytes` even past the cap (bytes already in a buffer: what is there is there). */
  charge(bytes: number): void { this.usedBytes += bytes; }

  /** bytes given back that were never taken (an accounting bug; counted rather than thrown from a socket callback) */
  underflows = 0;

  give(bytes: number): void {
    this.usedBytes -= bytes;
    if (this.usedBytes < 0) {
      this.underflows++;
      this.usedBytes = 0;
    }
  }
}
