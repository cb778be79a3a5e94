// nginx enforcement: decisions POSTed to a loopback location of each nginx, whose Lua handler puts
// them in the `blocklist` shared dict with their TTL (examples/guard/nginx-guard.conf). Body: one
// change per line, `ban TARGET SECONDS` or `unban TARGET`. Changes that arrive while a POST is in
// flight go together in the next one.
import { httpRequest } from '../client/http-json.js';
import type { Decision } from './decisions.js';

export class NginxEnforcer {
  private queue: string[] = [];
  private waiters: Array<() => void> = [];
  private busy = false;
  failures = 0;

  constructor(private readonly urls: string[], private readonly timeoutMs: number, private readonly log: (level: 'warn', msg: string, extra?: object) => void) {}

  ban(d: Decision): Promise<void> {
    const secs = Math.ceil((d.untilMs - Date.now()) / 1000);
    return secs < 1 ? Promise.resolve() : this.enqueue(`ban ${d.target} ${secs}`);
  }

  unban(d: Decision): Promise<void> {
    return this.enqueue(`unban ${d.target}`);
  }

  private enqueue(line: string): Promise<void> {
    return new Promise((resolve) => {
      this.queue.push(line);
      this.waiters.push(resolve);
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.busy || this.queue.length === 0) return;
    this.busy = true;
    const lines = this.queue;
    const waiters = this.waiters;
    this.queue = [];
    this.waiters = [];
    const body = lines.join('\n') + '\n';
    await Promise.all(this.urls.map(async (url) => {
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          // node:http, not fetch: fetch would load undici into the guard (client/http-json.ts)
          const res = await httpRequest(url, { method: 'POST', body, headers: { 'content-type': 'text/plain' }, timeoutMs: this.timeoutMs });
          if (res.ok) return;
          throw new Error(`HTTP ${res.status}`);
        } catch (err) {
          if (attempt === 2) {
            this.failures++;
            this.log('warn', 'nginx blocklist update failed', { url, err: (err as Error).message });
          }
        }
      }
    }));
    for (const w of waiters) w();
    this.busy = false;
    void this.pump();
  }
}
