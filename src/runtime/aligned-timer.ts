// A periodic timer that runs at multiples of its period on the wall clock (Date.now()) rather than
// at a phase of its own. A thread sleeps between events and each wake-up costs tens of µs of CPU
// before any work (bench/README.md): periodic work that falls in the same moments shares them. A
// worker woken by its own tick finds the probes its peers' ticks sent at the same moment already
// in its socket, and a node's check meets its peers' heartbeats, instead of a wake-up each.
import assert from 'node:assert/strict';

export class AlignedInterval {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** when the next run is due (ms since the epoch) */
  dueAt = 0;
  /** the same moment on the monotonic clock: lateness is measured there, whatever the wall clock does */
  private dueMonoMs = 0;

  constructor(private periodMs: number, private readonly fn: () => void) {
    assert.ok(Number.isInteger(periodMs) && periodMs > 0, 'an aligned period is a whole number of ms');
    this.arm(Date.now());
  }

  get period(): number { return this.periodMs; }

  /**
   * Run every `periodMs` from now on; a period that divides the other keeps the runs on moments
   * shared with other timers. A shorter one takes effect at once: a run armed past the next
   * multiple of it moves there. Within a run, the next one is armed with the new period.
   */
  setPeriod(periodMs: number): void {
    assert.ok(Number.isInteger(periodMs) && periodMs > 0, 'an aligned period is a whole number of ms');
    if (periodMs === this.periodMs) return;
    this.periodMs = periodMs;
    if (this.stopped || this.timer === undefined) return;
    const now = Date.now();
    const boundary = (Math.floor(now / periodMs) + 1) * periodMs;
    if (boundary >= this.dueAt) return;
    clearTimeout(this.timer);
    this.armAt(boundary, now);
  }

  /**
   * When the run after the one due now comes: the next multiple of the period after `nowMs` (a run
   * late past several is not made up), but never the boundary just run again — timers follow the
   * event loop's clock, which can trail Date.now() by a ms, so a run can fire just short of it. A
   * wall clock stepped back by more than a period re-bases on the new clock rather than wait it out.
   */
  nextDueAt(nowMs: number): number {
    const boundary = (Math.floor(nowMs / this.periodMs) + 1) * this.periodMs;
    return boundary <= this.dueAt && this.dueAt - nowMs <= this.periodMs ? this.dueAt + this.periodMs : boundary;
  }

  private arm(nowMs: number): void {
    if (this.stopped) return;
    this.armAt(this.nextDueAt(nowMs), nowMs);
  }

  private armAt(next: number, nowMs: number): void {
    assert.ok(next > nowMs, 'an aligned timer runs after now');
    this.dueAt = next;
    this.dueMonoMs = performance.now() + (next - nowMs);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.fn();
      } finally {
        this.arm(Date.now());
      }
    }, Math.max(1, next - nowMs));
    this.timer.unref(); // periodic duties never keep a process alive
  }

  /** How late the run in progress started (ms, monotonic; negative when it fired a little early). */
  lateMs(): number {
    return performance.now() - this.dueMonoMs;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
