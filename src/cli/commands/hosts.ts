// chicago hosts, chicago alerts (from the KV entries agents keep: hosts/<host>, alerts/<host>/<id>)
// and chicago agent status (from an agent's own status port).
import { limits } from '../../runtime/limits.js';
import { type Parsed, flag, str } from '../args.js';
import { CliError, EXIT, UsageError } from '../errors.js';
import { Http, enc, httpFrom, wantsJson } from '../http.js';
import { line, table } from '../output.js';
import { DEFAULT_AGENT_URL } from '../catalog.js';

const DEFAULT_KEYSPACE = 'agent';
/** entries listed at most (pages of the node's scan limit) */
const LISTED_MAX = 100_000;

interface ScanPage { items: Array<{ key: string; value: string }>; next?: string }

async function scanAll(http: Http, keyspace: string, prefix: string): Promise<Array<{ key: string; value: unknown }>> {
  const out: Array<{ key: string; value: unknown }> = [];
  let after: string | undefined;
  do {
    const page = await http.must<ScanPage>('GET', `/v1/kv/${enc(keyspace)}`, { query: { prefix, after, limit: limits.scanLimitMax } });
    for (const it of page.items) {
      try {
        out.push({ key: it.key, value: JSON.parse(it.value) });
      } catch {
        // not written by an agent: skip it
      }
    }
    after = page.items.length > 0 ? page.next : undefined;
  } while (after !== undefined && out.length < LISTED_MAX);
  return out;
}

const ago = (ms: number, now: number) => `${Math.max(0, Math.round((now - ms) / 1000))}s ago`;

interface HostSummary { host: string; time: string; timeMs: number; intervalMs: number; lagSeconds: number; spoolBytes: number; alertsFiring: number; load1?: number; cpuUsedPercent?: number; memoryAvailablePercent?: number; zombies?: number }

export async function hosts(p: Parsed): Promise<void> {
  const now = Date.now();
  const items = await scanAll(httpFrom(p), str(p, 'keyspace') ?? DEFAULT_KEYSPACE, 'hosts/');
  const list = items.map((i) => i.value as HostSummary).filter((h) => typeof h?.host === 'string');
  const rows = list.map((h) => ({ ...h, alive: now - h.timeMs <= 2 * h.intervalMs }));
  if (wantsJson(p)) return line(JSON.stringify({ hosts: rows }));
  await line(table(
    ['HOST', 'ALIVE', 'LAST HEALTH', 'LAG_SECONDS', 'SPOOL_BYTES', 'ALERTS', 'LOAD1', 'CPU%', 'MEM_AVAIL%', 'ZOMBIES'],
    rows.map((h) => [h.host, h.alive ? 'yes' : 'no', `${h.time} (${ago(h.timeMs, now)})`, h.lagSeconds, h.spoolBytes, h.alertsFiring, h.load1 ?? '-', h.cpuUsedPercent ?? '-', h.memoryAvailablePercent ?? '-', h.zombies ?? '-']),
  ));
}

interface Active { host: string; id: string; rule: string; field: string; value?: number; op: string; threshold: number; severity: string; firedAtMs: number }

export async function alerts(p: Parsed): Promise<void> {
  const now = Date.now();
  const host = str(p, 'host');
  const items = await scanAll(httpFrom(p), str(p, 'keyspace') ?? DEFAULT_KEYSPACE, host ? `alerts/${host}/` : 'alerts/');
  const list = items.map((i) => i.value as Active).filter((a) => typeof a?.rule === 'string');
  if (wantsJson(p)) return line(JSON.stringify({ alerts: list }));
  await line(table(
    ['HOST', 'ALERT', 'SEVERITY', 'CONDITION', 'VALUE', 'SINCE'],
    list.map((a) => [a.host, a.id, a.severity, `${a.field} ${a.op} ${a.threshold}`, a.value ?? '-', `${new Date(a.firedAtMs).toISOString()} (${ago(a.firedAtMs, now)})`]),
  ));
}

interface AgentStatusJson {
  host: string; pid: number; uptimeSeconds: number; node: string;
  spool: { dir: string; bytes: number; quotaBytes: number; full: boolean };
  tasks: Array<{ task: string; topic: string; linesRead: number; bytesRead: number; rotations: number; recordsShipped: number; bytesShipped: number; pending: number; lagSeconds: number; errors: number }>;
  health?: { intervalMs: number; runs: number; lastRun?: string; lastDurationMs: number; runErrors: number; kvErrors: number };
  alerts?: { firing: Array<{ id: string; severity: string; field: string; op: string; threshold: number; value?: number; firedAt: string }>; webhook?: { sent: number; failedAttempts: number; dropped: number; queued: number } };
  notices: Record<string, number>;
}

export async function agentStatus(p: Parsed): Promise<void> {
  const url = str(p, 'agent') ?? DEFAULT_AGENT_URL;
  if (!/^https?:\/\//.test(url)) throw new UsageError(`--agent: not an http:// URL: '${url}'`, p.command);
  const http = new Http(url, httpFrom(p).timeoutMs);
  const s = await http.json<AgentStatusJson>('GET', '/status').catch((err: unknown) => {
    // the client's hint names the node's --url; here nothing answered at the agent's status port
    if (err instanceof CliError && err.exitCode === EXIT.unreachable) {
      throw new CliError(EXIT.unreachable, `${err.message.replace(/ \(is a node running there\?.*\)$/, '')} (is an agent running with status.listen there? set --agent)`);
    }
    throw err;
  });
  if (!s) throw new CliError(EXIT.server, `error EMPTY_RESPONSE: ${url}/status answered without a body`);
  if (flag(p, 'json')) return line(JSON.stringify(s));
  await line(`agent host=${s.host} pid=${s.pid} uptime=${s.uptimeSeconds}s node=${s.node}`);
  await line(`spool ${s.spool.bytes}/${s.spool.quotaBytes} bytes${s.spool.full ? ' FULL' : ''} dir=${s.spool.dir}`);
  if (s.health) await line(`health every ${s.health.intervalMs} ms: runs=${s.health.runs} last=${s.health.lastRun ?? '-'} took=${s.health.lastDurationMs}ms errors=${s.health.runErrors} kvErrors=${s.health.kvErrors}`);
  await line('');
  await line(table(['TASK', 'TOPIC', 'LINES_READ', 'BYTES_READ', 'ROTATIONS', 'SHIPPED', 'BYTES_SHIPPED', 'PENDING', 'LAG_SECONDS', 'ERRORS'],
    s.tasks.map((t) => [t.task, t.topic, t.linesRead, t.bytesRead, t.rotations, t.recordsShipped, t.bytesShipped, t.pending, t.lagSeconds, t.errors])));
  if (s.alerts) {
    await line('');
    const w = s.alerts.webhook;
    await line(`alerts firing: ${s.alerts.firing.length}${w ? ` (webhook sent=${w.sent} failedAttempts=${w.failedAttempts} dropped=${w.dropped} queued=${w.queued})` : ''}`);
    if (s.alerts.firing.length > 0) {
      await line(table(['ALERT', 'SEVERITY', 'CONDITION', 'VALUE', 'SINCE'], s.alerts.firing.map((a) => [a.id, a.severity, `${a.field} ${a.op} ${a.threshold}`, a.value ?? '-', a.firedAt])));
    }
  }
  const notices = Object.entries(s.notices);
  if (notices.length > 0) await line(`notices: ${notices.map(([k, n]) => `${k}=${n}`).join(' ')}`);
}
