// Exit codes are part of the CLI's interface: scripts branch on them, so each means one thing.
export const EXIT = {
  ok: 0,
  /** the thing asked for is absent (kv get of a missing key) */
  absent: 1,
  /** the node answered with an error */
  server: 2,
  /** the node could not be reached or did not answer in time */
  unreachable: 3,
  /** the port or data dir a node needs is held by another process (sysexits EX_UNAVAILABLE) */
  inUse: 69,
  /** no host agent answered a command (agent run; sysexits EX_UNAVAILABLE) */
  unavailable: 69,
  /** the node cannot start now and may later: its disk is full (sysexits EX_TEMPFAIL) */
  tempFail: 75,
  /** the command line is wrong (sysexits EX_USAGE) */
  usage: 64,
  /** a bug in the CLI itself (sysexits EX_SOFTWARE) */
  internal: 70,
  /** the node's configuration is wrong (sysexits EX_CONFIG) */
  config: 78,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Ends the command with `message` on stderr and the given exit code. */
export class CliError extends Error {
  constructor(readonly exitCode: ExitCode, message: string) {
    super(message);
    this.name = 'CliError';
  }
}

/** A wrong command line: main prints the message and the command's usage. */
export class UsageError extends CliError {
  constructor(message: string, readonly command?: string) {
    super(EXIT.usage, message);
    this.name = 'UsageError';
  }
}

/** The node's `{"error":{"code","message","retryable"}}`, printed as `error CODE: message`. */
export class ServerError extends CliError {
  constructor(readonly status: number, readonly code: string, detail: string, readonly retryable: boolean) {
    super(EXIT.server, `error ${code}: ${detail}`);
    this.name = 'ServerError';
  }
}
