// Alert transitions POSTed as JSON to a webhook, in order, one request in flight. Failures (no
// answer within timeoutMs, a network error, a status other than 2xx) are retried with exponential
// backoff and full jitter, up to maxAttempts; then the message is dropped and counted. The queue is
// bounded: when full, the oldest message is dropped (and counted) so the newest state gets through.
import { deadline } from '../runtime/deadline.js';
import type { Logger } from '../runtime/log.js';

export interface WebhookConfig {
  url: string;
  timeoutMs: number;
  maxQueue: number;
  maxAttempts: number;
  retry: { minMs: number; maxMs: number };
  headers: Record<string, string>;
}

export interface WebhookStats { sent: number; failedAttempts: number; dropped: number; queued: number }

/** Delay before attempt `attempt` (1 = the first retry): full jitter over min·2^(attempt-1), capped. */
export function backoffMs(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(minMs + random() * Math.max(0, cap - minMs));
}

export class Webhook {
  private readonly queue: unknown[] = [];
  private running = false;
  private stopped = false;
  private readonly abort = new AbortController();
  private wake?: () => void;
  readonly stats: WebhookStats = { sent: 0, failedAttempts: 0, dropped: 0, queued: 0 };

  constructor(private readonly cfg: WebhookConfig, private readonly log: Logger, private readonly random: () => number = Math.random) {}

  push(message: unknown): void {
    if (this.stopped) return;
    if (this.queue.length >= this.cfg.maxQueue) {
      this.queue.shift();
      this.stats.dropped++;
      this.log.warn({ url: this.cfg.url, maxQueue: this.cfg.maxQueue }, 'webhook queue full: oldest message dropped');
    }
    this.queue.push(message);
    this.stats.queued = this.queue.length;
    if (!this.running) void this.drain();
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (!this.stopped && this.queue.length > 0) {
        const msg = this.queue[0];
        const ok = await this.deliver(msg);
        // the queue may have dropped msg meanwhile (full): only take it off if it is still first
        if (this.queue[0] === msg) this.queue.shift();
        this.stats.queued = this.queue.length;
        if (ok) this.stats.sent++;
        else if (!this.stopped) {
          this.stats.dropped++;
          this.log.error({ url: this.cfg.url, attempts: this.cfg.maxAttempts }, 'webhook: giving up on a message');
        }
      }
    } finally {
      this.running = false;
    }
  }

  private async deliver(msg: unknown): Promise<boolean> {
    const body = JSON.stringify(msg);
    for (let attempt = 1; attempt <= this.cfg.maxAttempts && !this.stopped; attempt++) {
      const d = deadline(this.cfg.timeoutMs, this.abort.signal);
      try {
        const res = await fetch(this.cfg.url, { method: 'POST', headers: { 'content-type': 'application/json', ...this.cfg.headers }, body, signal: d.signal });
        await res.arrayBuffer();
        if (res.ok) return true;
        throw new Error(`HTTP ${res.status}`);
      } catch (err) {
        if (this.stopped) return false;
        this.stats.failedAttempts++;
        const delay = backoffMs(attempt, this.cfg.retry.minMs, this.cfg.retry.maxMs, this.random);
        this.log.warn({ url: this.cfg.url, attempt, err: (err as Error).message, retryInMs: delay }, 'webhook failed');
        if (attempt < this.cfg.maxAttempts) await this.sleep(delay);
      } finally {
        d.done();
      }
    }
    return false;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this.wake = undefined; resolve(); }, ms);
      this.wake = () => { clearTimeout(t); resolve(); };
    });
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
  }
}
