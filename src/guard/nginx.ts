// nginx enforcement: decisions POSTed to a loopback location of each nginx, whose Lua handler puts
// them in the `blocklist` shared dict with their TTL (examples/guard/nginx-guard.conf). Body: one
// change per line, `ban TARGET SECONDS` or `unban TARGET`. Changes that arrive while a POST is in
// flight go together in the next one, the latest per target (it supersedes the ones before it).
import { httpRequest } from '../client/http-json.js';
import { limits } from '../runtime/limits.js';
import type { Decision } from './decisions.js';

export class NginxEnforcer {
  /** the latest change per target. Full policy: past limits.guardNginxQueuedTargetsMax targets a new one is refused and counted */
  private queue = new Map<string, string>();
  /** settles once the POST carrying the queued changes is answered (true) or given up on (false); shared by all of them */
  private batch: { done: Promise<boolean>; settle: (ok: boolean) => void } | undefined;
  private busy = false;
  failures = 0;
  refused = 0;

  constructor(private readonly urls: string[], private readonly timeoutMs: number, private readonly log: (level: 'warn', msg: string, extra?: object) => void) {}

  /** Resolves true once every nginx answered the POST carrying the change; false when it was refused or a POST failed three times. */
  ban(d: Decision): Promise<boolean> {
    const secs = Math.ceil((d.untilMs - Date.now()) / 1000);
    return secs < 1 ? Promise.resolve(false) : this.enqueue(d.target, `ban ${d.target} ${secs}`);
  }

  unban(d: Decision): Promise<boolean> {
    return this.enqueue(d.target, `unban ${d.target}`);
  }

  private enqueue(target: string, line: string): Promise<boolean> {
    if (this.queue.size >= limits.guardNginxQueuedTargetsMax && !this.queue.has(target)) {
      // nginx is slower than the decisions for this long: nft and the decisions topic still hold it
      if (this.refused++ === 0) this.log('warn', 'nginx blocklist queue full: changes refused', { targets: this.queue.size });
      return Promise.resolve(false);
    }
    this.queue.delete(target); // re-inserted last: the order of the changes is kept
    this.queue.set(target, line);
    if (!this.batch) { let settle!: (ok: boolean) => void; const done = new Promise<boolean>((r) => { settle = r; }); this.batch = { done, settle }; }
    const done = this.batch.done;
    void this.pump();
    return done;
  }

  private async pump(): Promise<void> {
    if (this.busy || this.queue.size === 0) return;
    this.busy = true;
    const lines = [...this.queue.values()];
    const batch = this.batch;
    this.queue = new Map();
    this.batch = undefined;
    const body = lines.join('\n') + '\n';
    const answered = await Promise.all(this.urls.map(async (url) => {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          // node:http, not fetch: fetch would load undici into the guard (client/http-json.ts)
          const res = await httpRequest(url, { method: 'POST', body, headers: { 'content-type': 'text/plain' }, timeoutMs: this.timeoutMs });
          if (res.ok) return true;
          throw new Error(`HTTP ${res.status}`);
        } catch (err) {
          if (attempt === 2) {
            this.failures++;
            this.log('warn', 'nginx blocklist update failed', { url, err: (err as Error).message });
          }
        }
      }
      return false;
    }));
    batch?.settle(answered.every(Boolean));
    this.busy = false;
    void this.pump();
  }
}
