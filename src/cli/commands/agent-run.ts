// chicago agent run HOST SCRIPT [ARGS...]: writes a command to the host's agent, streams the run's
// output as it comes (stdout to stdout, stderr to stderr) and exits with the script's exit code.
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import { type Parsed, parseDuration, str } from '../args.js';
import { CliError, EXIT, ServerError, UsageError } from '../errors.js';
import { type Http, enc, httpFrom } from '../http.js';
import { COMMAND_TOPIC_PREFIX } from '../../runtime/tokens.js';
import { type RunStatus, SCRIPT_NAME_RE, cliExitCode } from '../../agent/script-decide.js';

const DEFAULT_WAIT_MS = 10_000;
const POLL_WAIT_MS = 5_000;
/** after a run started: its timeout, plus this for the agent to kill it and report */
const RUN_REPORT_GRACE_MS = 30_000;

interface WireRecord { partition: number; offset: number; value: string | null; valueEncoding?: string; headers?: Record<string, string> }
interface FetchResponse { records: WireRecord[]; nextOffset: number; endOffset: number }
interface TopicView { partitions: Array<{ partition: number; endOffset: number }> }

export interface RemoteRunOptions {
  host: string;
  script: string;
  args: string[];
  /** how long to wait for the agent's first answer; also the command's default expiry */
  waitMs: number;
  /** the agent runs the command only if it reads it within this long */
  expireMs: number;
  resultsTopic: string;
  onOutput(stream: 'stdout' | 'stderr', data: Buffer): Promise<void> | void;
  /** the command was written (the trigger) */
  onSent?(): void;
}

export interface RemoteRunResult {
  id: string;
  status: RunStatus;
  exitCode: number | null;
  signal: string | null;
  durationMs: number | null;
  truncated: boolean;
  reason?: string;
  /** what `chicago agent run` exits with */
  exit: number;
}

const signalNumber = (s: string) => (os.constants.signals as Record<string, number>)[s];

/** Writes one command and follows its records on the results topic until its final record. */
export async function runRemote(http: Http, o: RemoteRunOptions): Promise<RemoteRunResult> {
  const id = randomUUID();
  const results = enc(o.resultsTopic);
  // where the results topic ends now: the run's records come after
  const start = await http.json<TopicView>('GET', `/v1/topics/${results}`).catch((err: unknown) => {
    if (err instanceof ServerError && err.code === 'TOPIC_NOT_FOUND') return undefined;
    throw err;
  });
  const requestedAtMs = Date.now();
  const command = { id, script: o.script, args: o.args, requestedAt: new Date(requestedAtMs).toISOString(), expiresAt: new Date(requestedAtMs + o.expireMs).toISOString() };
  try {
    await http.must('POST', `/v1/topics/${enc(COMMAND_TOPIC_PREFIX + o.host)}/records`, { body: [{ value: JSON.stringify(command), headers: { id, script: o.script } }] });
  } catch (err) {
    if (err instanceof ServerError && err.code === 'TOPIC_NOT_FOUND') {
      throw new CliError(EXIT.unavailable, `no agent on host ${o.host} reads commands (topic ${COMMAND_TOPIC_PREFIX}${o.host} does not exist; is its agent running with a scripts section?)`);
    }
    throw err;
  }
  o.onSent?.();

  const stop = new AbortController();
  const follow = new (http.constructor as typeof Http)(http.base.href, http.timeoutMs, stop.signal, http.token, http.ca);
  let deadlineMs = requestedAtMs + o.waitMs;
  let started = false;
  let result: RemoteRunResult | undefined;

  const partitions = async (): Promise<Map<number, number>> => {
    if (start) return new Map(start.partitions.map((p) => [p.partition, p.endOffset]));
    // the agent makes the results topic with its first record: everything in it is new
    for (;;) {
      const t = await follow.json<TopicView>('GET', `/v1/topics/${results}`).catch((err: unknown) => {
        if (err instanceof ServerError && err.code === 'TOPIC_NOT_FOUND') return undefined;
        throw err;
      });
      if (t) return new Map(t.partitions.map((p) => [p.partition, 0]));
      if (Date.now() >= deadlineMs) return new Map();
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const readPartition = async (partition: number, from: number) => {
    let offset = from;
    while (!result && Date.now() < deadlineMs) {
      const waitMs = Math.max(1, Math.min(POLL_WAIT_MS, deadlineMs - Date.now()));
      const res = await follow.must<FetchResponse>('GET', `/v1/topics/${results}/records`, {
        query: { partition, offset, maxRecords: 1000, maxBytes: 4 * 1024 * 1024, waitMs }, waitMs,
      });
      for (const r of res.records) {
        const h = r.headers ?? {};
        if (h.run !== id || result) continue;
        const bytes = r.value === null ? Buffer.alloc(0) : Buffer.from(r.value, r.valueEncoding === 'base64' ? 'base64' : 'utf8');
        if (h.stream === 'start') {
          started = true;
          const info = JSON.parse(bytes.toString('utf8')) as { timeoutMs?: number };
          deadlineMs = Date.now() + (info.timeoutMs ?? 0) + RUN_REPORT_GRACE_MS;
        } else if (h.stream === 'stdout' || h.stream === 'stderr') {
          await o.onOutput(h.stream, bytes);
        } else if (h.stream === 'exit') {
          const e = JSON.parse(bytes.toString('utf8')) as { status: RunStatus; exitCode: number | null; signal: string | null; durationMs: number | null; truncated?: boolean; reason?: string };
          result = {
            id, status: e.status, exitCode: e.exitCode, signal: e.signal, durationMs: e.durationMs, truncated: e.truncated === true,
            ...(e.reason ? { reason: e.reason } : {}),
            exit: cliExitCode(e.status, e.exitCode, e.signal, signalNumber),
          };
          stop.abort();
        }
      }
      offset = res.nextOffset;
    }
  };

  try {
    const from = await partitions();
    await Promise.all([...from].map(([p, off]) => readPartition(p, off).catch((err: unknown) => {
      if (result && (err as Error).name === 'AbortError') return;
      throw err;
    })));
  } finally {
    stop.abort();
  }
  if (result) return result;
  if (!started) throw new CliError(EXIT.unavailable, `no answer from the agent on ${o.host} within ${o.waitMs} ms (is it running, with scripts configured?); the command expires at ${command.expiresAt}`);
  throw new CliError(EXIT.unavailable, `run ${id} of ${o.script} on ${o.host} started but its end was not reported in time (the agent may have stopped; it reports the run as interrupted when it restarts)`);
}

export async function agentRun(p: Parsed): Promise<void> {
  const [host, script, ...args] = p.positionals;
  if (!/^[A-Za-z0-9._-]{1,113}$/.test(host)) throw new UsageError(`agent run: not a host name: '${host}'`, p.command);
  if (!SCRIPT_NAME_RE.test(script)) throw new UsageError(`agent run: not a script name: '${script}'`, p.command);
  const dur = (name: string, dflt: number) => {
    const t = str(p, name);
    if (t === undefined) return dflt;
    const ms = parseDuration(t);
    if (ms === undefined || ms <= 0) throw new UsageError(`--${name}: not a duration: '${t}'`, p.command);
    return ms;
  };
  const waitMs = dur('wait', DEFAULT_WAIT_MS);
  const expireMs = dur('expire', waitMs);
  const write = (s: NodeJS.WriteStream, b: Buffer) => new Promise<void>((resolve, reject) => s.write(b, (err) => (err ? reject(err) : resolve())));
  const r = await runRemote(httpFrom(p), {
    host, script, args, waitMs, expireMs,
    resultsTopic: str(p, 'results-topic') ?? 'agent.scripts',
    onOutput: (stream, data) => write(stream === 'stdout' ? process.stdout : process.stderr, data),
  });
  if (r.status !== 'ok' && r.status !== 'failed') {
    process.stderr.write(`chicago: ${script} on ${host}: ${r.status}${r.reason ? `: ${r.reason}` : ''}\n`);
  } else if (r.truncated) {
    process.stderr.write(`chicago: ${script} on ${host}: output cut at the agent's cap\n`);
  }
  process.exitCode = r.exit;
}
