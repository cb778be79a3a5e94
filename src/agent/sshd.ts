// sshd's log messages as fields: what happened (accepted, failed, invalid_user, closed, …), for
// which user, from which address and port, by which method. Pure functions over one message (from
// journald) or one syslog line (auth.log); formats are OpenSSH 9.x's (auth.c, auth2.c, packet.c).
import { isIP } from 'node:net';

export type SshEventKind =
  | 'accepted'
  | 'failed'
  | 'partial'
  | 'invalid_user'
  | 'closed'
  | 'reset'
  | 'disconnected'
  | 'received_disconnect'
  | 'max_attempts'
  | 'too_many_failures'
  | 'negotiation_failed'
  | 'timeout'
  | 'banner_error'
  | 'not_allowed'
  | 'root_refused';

export interface SshEvent {
  event: SshEventKind;
  user?: string;
  /** an IPv4 or IPv6 literal (anything else sshd may print, such as UNKNOWN, is left out) */
  ip?: string;
  port?: number;
  method?: string;
  /** the user does not exist on this host */
  invalid?: boolean;
  /** the key's type and fingerprint for publickey logins */
  key?: string;
}

/** sshd's syslog identifiers: sshd, and sshd-session / sshd-auth from OpenSSH 9.8 on */
export const SSHD_IDENTIFIERS = new Set(['sshd', 'sshd-session', 'sshd-auth']);

/** Longest message parsed: sshd cuts user names at 100 and addresses at 200 characters. */
const MESSAGE_CHARS_MAX = 2048;

// "user X " as sshd's connection id prints it: "authenticating user X", "invalid user X", "user X"
const WHO = '(?:(authenticating|invalid) user (.*) |user (.*) )?';

interface Rule { re: RegExp; build: (m: RegExpExecArray) => SshEvent }

const num = (s: string | undefined): number | undefined => (s === undefined ? undefined : Number(s));

function who(kind: string | undefined, a: string | undefined, b: string | undefined): Pick<SshEvent, 'user' | 'invalid'> {
  const user = a ?? b;
  return { ...(user !== undefined ? { user } : {}), ...(kind === 'invalid' ? { invalid: true } : {}) };
}

// Greedy user patterns anchored at the end: a user name cannot push the address and port aside.
const RULES: Rule[] = [
  {
    re: /^(Accepted|Failed|Partial) (\S+) for (invalid user )?(.*) from (\S+) port (\d+) ssh2(?:: (.*))?$/,
    build: (m) => ({
      event: m[1] === 'Accepted' ? 'accepted' : m[1] === 'Failed' ? 'failed' : 'partial',
      method: m[2], user: m[4], ip: m[5], port: num(m[6]),
      ...(m[3] ? { invalid: true } : {}),
      ...(m[7] && m[2] === 'publickey' ? { key: m[7] } : {}),
    }),
  },
  { re: /^Invalid user (.*) from (\S+) port (\d+)$/, build: (m) => ({ event: 'invalid_user', user: m[1], ip: m[2], port: num(m[3]), invalid: true }) },
  { re: new RegExp(`^Connection closed by ${WHO}(\\S+) port (\\d+)$`), build: (m) => ({ event: 'closed', ...who(m[1], m[2], m[3]), ip: m[4], port: num(m[5]) }) },
  { re: new RegExp(`^Connection reset by ${WHO}(\\S+) port (\\d+)$`), build: (m) => ({ event: 'reset', ...who(m[1], m[2], m[3]), ip: m[4], port: num(m[5]) }) },
  { re: new RegExp(`^Disconnected from ${WHO}(\\S+) port (\\d+)$`), build: (m) => ({ event: 'disconnected', ...who(m[1], m[2], m[3]), ip: m[4], port: num(m[5]) }) },
  { re: /^Received disconnect from (\S+) port (\d+):\d+:/, build: (m) => ({ event: 'received_disconnect', ip: m[1], port: num(m[2]) }) },
  {
    re: /^maximum authentication attempts exceeded for (invalid user )?(.*) from (\S+) port (\d+) ssh2$/,
    build: (m) => ({ event: 'max_attempts', user: m[2], ip: m[3], port: num(m[4]), ...(m[1] ? { invalid: true } : {}) }),
  },
  {
    re: new RegExp(`^Disconnecting ${WHO}(\\S+) port (\\d+): Too many authentication failures$`),
    build: (m) => ({ event: 'too_many_failures', ...who(m[1], m[2], m[3]), ip: m[4], port: num(m[5]) }),
  },
  { re: new RegExp(`^Unable to negotiate with ${WHO}(\\S+) port (\\d+):`), build: (m) => ({ event: 'negotiation_failed', ...who(m[1], m[2], m[3]), ip: m[4], port: num(m[5]) }) },
  { re: /^Timeout before authentication for (?:connection from )?(\S+) port (\d+)$/, build: (m) => ({ event: 'timeout', ip: m[1], port: num(m[2]) }) },
  { re: /^banner exchange: Connection from (\S+) port (\d+):/, build: (m) => ({ event: 'banner_error', ip: m[1], port: num(m[2]) }) },
  { re: /^Did not receive identification string from (\S+) port (\d+)$/, build: (m) => ({ event: 'banner_error', ip: m[1], port: num(m[2]) }) },
  { re: /^User (.*) from (\S+) not allowed because /, build: (m) => ({ event: 'not_allowed', user: m[1], ip: m[2] }) },
  { re: /^ROOT LOGIN REFUSED FROM (\S+) port (\d+)$/, build: (m) => ({ event: 'root_refused', user: 'root', ip: m[1], port: num(m[2]) }) },
];

/** The event an sshd message reports, or undefined for messages that are not about a client. */
export function parseSshd(message: string): SshEvent | undefined {
  if (message.length > MESSAGE_CHARS_MAX) return undefined;
  let text = message;
  if (text.startsWith('error: ')) text = text.slice(7);
  if (text.endsWith(' [preauth]')) text = text.slice(0, -10);
  for (const rule of RULES) {
    const m = rule.re.exec(text);
    if (!m) continue;
    const ev = rule.build(m);
    if (ev.ip !== undefined && isIP(ev.ip) === 0) delete ev.ip;
    if (ev.port !== undefined && !(ev.port >= 0 && ev.port <= 65535)) delete ev.port;
    return ev;
  }
  return undefined;
}

// "<time> <host> sshd[123]: <message>" (RFC 3164 or RFC 3339 time, as rsyslog writes auth.log)
const SYSLOG_LINE = /^.{0,80}? (?:sshd|sshd-session|sshd-auth)(?:\[\d+\])?: (.*)$/s;

/** The sshd message of an auth.log line, or undefined when another program wrote it. */
export function sshdMessageOfLine(line: string): string | undefined {
  if (line.length > MESSAGE_CHARS_MAX + 128) return undefined;
  return SYSLOG_LINE.exec(line)?.[1];
}

/** Record headers for an event: ssh.event, ssh.user, ssh.ip, ssh.port, ssh.method, ssh.invalid_user, ssh.key. */
export function sshHeaders(ev: SshEvent): Record<string, string> {
  const h: Record<string, string> = { 'ssh.event': ev.event };
  if (ev.user !== undefined) h['ssh.user'] = ev.user;
  if (ev.ip !== undefined) h['ssh.ip'] = ev.ip;
  if (ev.port !== undefined) h['ssh.port'] = String(ev.port);
  if (ev.method !== undefined) h['ssh.method'] = ev.method;
  if (ev.invalid) h['ssh.invalid_user'] = 'true';
  if (ev.key !== undefined) h['ssh.key'] = ev.key;
  return h;
}

/** Headers for an auth.log line (none when it is not an sshd event). */
export function sshHeadersOfLine(line: string): Record<string, string> | undefined {
  const msg = sshdMessageOfLine(line);
  const ev = msg === undefined ? undefined : parseSshd(msg);
  return ev ? sshHeaders(ev) : undefined;
}
