// nginx enforcement: decisions POSTed to a loopback location of each nginx, whose Lua handler puts
// them in the `blocklist` shared dict with their TTL (examples/guard/nginx-guard.conf). Body: one
// change per line, `ban TARGET SECONDS` or `unban TARGET`. Changes that arrive while a POST is in
// flight go together in the next one, the latest per target (it supersedes the ones before it).
//
// The dict lives in nginx's memory: a restart empties it, and a change a POST failed to deliver is
// missing. So every `checkIntervalMs` each nginx is asked (`check MARKER`) whether it still holds
// the marker this guard set after its last full send; when it does not (`lost`) it gets every ban
// in force, then the marker (`mark MARKER`); after a POST to it failed, `flush` goes first.
import { randomBytes } from 'node:crypto';
import { httpRequest } from '../client/http-json.js';
import { limits } from '../runtime/limits.js';
import type { Decision } from './decisions.js';

type Log = (level: 'info' | 'warn', msg: string, extra?: object) => void;

export interface NginxOptions {
  /** the bans in force, for a full send; without it nginx is never checked */
  active?: () => Iterable<Decision>;
  checkIntervalMs?: number;
}

export class NginxEnforcer {
  /** the latest change per target. Full policy: past limits.guardNginxQueuedTargetsMax targets a new one is refused and counted */
  private queue = new Map<string, string>();
  /** settles once the POST carrying the queued changes is answered (true) or given up on (false); shared by all of them */
  private batch: { done: Promise<boolean>; settle: (ok: boolean) => void } | undefined;
  private busy = false;
  private checkDue = false;
  private checkWaited = false;
  /** nginx URLs a POST failed to since their last full send: the next check sends them everything */
  private readonly missed = new Set<string>();
  /** nginx URLs whose handler answers no `check` (an older conf): warned once, never checked again */
  private readonly noCheck = new Set<string>();
  private readonly marker = `chicago-guard-${randomBytes(8).toString('hex')}`;
  private readonly timer: NodeJS.Timeout | undefined;
  failures = 0;
  refused = 0;
  /** full sends after nginx lost its blocklist or missed a change */
  resent = 0;

  constructor(private readonly urls: string[], private readonly timeoutMs: number, private readonly log: Log, private readonly opts: NginxOptions = {}) {
    if (opts.active) {
      this.timer = setInterval(() => { this.checkDue = true; void this.pump(); }, opts.checkIntervalMs ?? limits.guardNginxCheckIntervalMs);
      this.timer.unref();
      // the first contact sends a fresh nginx every ban in force
      this.checkDue = true;
      queueMicrotask(() => void this.pump());
    }
  }

  stop(): void { clearInterval(this.timer); }

  /** Resolves true once every nginx answered the POST carrying the change; false when it was refused or a POST failed three times. */
  ban(d: Decision): Promise<boolean> {
    const secs = Math.ceil((d.untilMs - Date.now()) / 1000);
    // a ban that ends within the second asks nothing of nginx
    return secs < 1 ? Promise.resolve(true) : this.enqueue(d.target, `ban ${d.target} ${secs}`);
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

  /** One POST at a time, so nginx applies the changes in the order they were decided. */
  private async pump(): Promise<void> {
    if (this.busy || (this.queue.size === 0 && !this.checkDue)) return;
    this.busy = true;
    try {
      // a due check waits for one batch of changes at most: a flood's bans go first, and do not
      // hold off the check that sends a restarted nginx the bans it lost
      if (this.queue.size > 0 && !(this.checkDue && this.checkWaited)) {
        if (this.checkDue) this.checkWaited = true;
        const lines = [...this.queue.values()];
        const batch = this.batch;
        this.queue = new Map();
        this.batch = undefined;
        const body = lines.join('\n') + '\n';
        const answered = await Promise.all(this.urls.map(async (url) => (await this.post(url, body)) !== undefined));
        batch?.settle(answered.every(Boolean));
      } else if (this.checkDue) {
        this.checkDue = false;
        this.checkWaited = false;
        await Promise.all(this.urls.map((url) => this.check(url)));
      }
    } finally {
      this.busy = false;
    }
    void this.pump();
  }

  private async check(url: string): Promise<void> {
    if (!this.opts.active || (this.noCheck.has(url) && !this.missed.has(url))) return;
    const missed = this.missed.has(url);
    if (!missed) {
      // one try: a check that fails counts as a miss, and the next one sends everything
      const answer = await this.post(url, `check ${this.marker}\n`, 1);
      if (answer === undefined || answer.includes(`have ${this.marker}`)) return;
      if (!answer.includes(`lost ${this.marker}`)) {
        this.noCheck.add(url);
        this.log('warn', 'nginx answers no check: its blocklist is not sent again after an nginx restart (update its conf from examples/guard/nginx-guard.conf)', { url });
        return;
      }
    }
    // After a failed POST the dict may hold a ban since lifted: it starts empty. A lost marker
    // (a restart, or entries evicted) needs no flush, and must not have one: guards sharing an nginx
    // each keep a marker, and one guard's flush would make the others' lost in turn.
    const nowMs = Date.now();
    const lines = missed ? ['flush'] : [];
    for (const d of this.opts.active()) {
      const secs = Math.ceil((d.untilMs - nowMs) / 1000);
      if (secs >= 1) lines.push(`ban ${d.target} ${secs}`);
    }
    lines.push(`mark ${this.marker}`);
    // bodies within the conf's client_max_body_size; the marker goes last, once all of it landed.
    // The first body is tried once: an nginx still down fails it at every check, quietly.
    let body = '';
    let tries = 1;
    for (const line of lines) {
      if (body.length + line.length + 1 > limits.guardNginxBodyBytesMax) {
        if ((await this.post(url, body, tries)) === undefined) return;
        body = '';
        tries = 3;
      }
      body += line + '\n';
    }
    if ((await this.post(url, body, tries)) === undefined) return;
    this.missed.delete(url);
    this.resent++;
    this.log('info', 'nginx blocklist sent in full', { url, bans: lines.length - (missed ? 2 : 1) });
  }

  /**
   * The answer's text, or undefined after `tries` failed tries (the next check sends that nginx
   * everything; a change's POST is counted and logged, a check's failing again is not).
   */
  private async post(url: string, body: string, tries = 3): Promise<string | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        // node:http, not fetch: fetch would load undici into the guard (client/http-json.ts)
        const res = await httpRequest(url, { method: 'POST', body, headers: { 'content-type': 'text/plain' }, timeoutMs: this.timeoutMs });
        if (res.ok) return res.text;
        throw new Error(`HTTP ${res.status}`);
      } catch (err) {
        if (attempt === tries - 1) {
          if (tries > 1) this.failures++;
          if (tries > 1 || !this.missed.has(url)) this.log('warn', 'nginx blocklist update failed', { url, err: (err as Error).message });
          this.missed.add(url);
          return undefined;
        }
        // a restarting nginx takes a moment to listen again
        await new Promise((r) => setTimeout(r, 50 << attempt));
      }
    }
  }
}
