// The one catalogue of error codes. Wire numbers never change meaning; add, never reuse.
export interface ErrorSpec {
  readonly wire: number;
  readonly status: number;
  readonly retryable: boolean;
  readonly message: string;
}

export const ERRORS = {
  // 1xx: the request itself is wrong; retrying it unchanged fails again.
  BAD_REQUEST: { wire: 100, status: 400, retryable: false, message: 'malformed request: %s' },
  INVALID_NAME: { wire: 101, status: 400, retryable: false, message: 'invalid %s name: %s' },
  INVALID_KEY: { wire: 102, status: 400, retryable: false, message: 'invalid key: %s' },
  VALUE_TOO_LARGE: { wire: 103, status: 413, retryable: false, message: 'value is %s bytes, limit is %s' },
  BATCH_TOO_LARGE: { wire: 104, status: 413, retryable: false, message: 'update is %s bytes, limit is %s' },
  FRAME_TOO_LARGE: { wire: 105, status: 413, retryable: false, message: 'frame is %s bytes, limit is %s' },
  INVALID_OFFSET: { wire: 106, status: 400, retryable: false, message: 'invalid offset: %s' },
  INVALID_ARGUMENT: { wire: 107, status: 400, retryable: false, message: 'invalid %s: %s' },
  UNKNOWN_OP: { wire: 108, status: 400, retryable: false, message: 'unknown operation: %s' },
  INVALID_UTF8: { wire: 109, status: 400, retryable: false, message: '%s is not valid UTF-8' },
  OUT_OF_ORDER_SEQUENCE: { wire: 110, status: 409, retryable: false, message: 'producer %s sent sequence %s, expected %s' },
  TOO_MANY_RECORDS: { wire: 111, status: 413, retryable: false, message: 'update has %s records, limit is %s' },
  UNSUPPORTED_MEDIA_TYPE: { wire: 112, status: 415, retryable: false, message: 'content type %s is not accepted here; send %s' },
  INVALID_BATCH: { wire: 113, status: 400, retryable: false, message: 'invalid record batch: %s' },
  // 2xx: the thing named does not exist or already exists.
  NOT_FOUND: { wire: 200, status: 404, retryable: false, message: '%s not found' },
  TOPIC_NOT_FOUND: { wire: 201, status: 404, retryable: false, message: 'topic %s not found' },
  TOPIC_EXISTS: { wire: 202, status: 409, retryable: false, message: 'topic %s already exists' },
  PARTITION_NOT_FOUND: { wire: 203, status: 404, retryable: false, message: 'topic %s has no partition %s' },
  OFFSET_OUT_OF_RANGE: { wire: 204, status: 416, retryable: false, message: 'offset %s is outside [%s, %s]' },
  ROUTE_NOT_FOUND: { wire: 205, status: 404, retryable: false, message: 'no route %s %s' },
  METHOD_NOT_ALLOWED: { wire: 206, status: 405, retryable: false, message: 'method %s not allowed on %s' },
  /** the group coordinator does not know this member (its session expired, or the coordinator moved): join again */
  UNKNOWN_MEMBER: { wire: 207, status: 409, retryable: false, message: 'group %s has no member %s; join again' },
  /** a group member's generation is not the current one, or it does not own the partition: heartbeat, then commit again */
  FENCED: { wire: 208, status: 409, retryable: false, message: 'group %s: %s' },
  /** a group with live members cannot be deleted: stop its consumers (or wait for their sessions to end) first */
  GROUP_NOT_EMPTY: { wire: 209, status: 409, retryable: false, message: 'group %s has %s live member(s); stop them first' },
  // 4xx: who is asking. No token, an unknown, expired or revoked one, or a token without the scope.
  UNAUTHENTICATED: { wire: 400, status: 401, retryable: false, message: 'authentication required: %s' },
  FORBIDDEN: { wire: 401, status: 403, retryable: false, message: 'forbidden: %s' },
  // 3xx: the node cannot take it now; retry later.
  OVERLOADED: { wire: 300, status: 429, retryable: true, message: '%s is full (%s), retry later' },
  SLOW_CONSUMER: { wire: 301, status: 429, retryable: true, message: 'subscriber fell %s bytes behind, limit is %s' },
  SHUTTING_DOWN: { wire: 302, status: 503, retryable: true, message: 'node is shutting down' },
  NOT_READY: { wire: 303, status: 503, retryable: true, message: 'node is not serving yet: %s' },
  TIMEOUT: { wire: 304, status: 504, retryable: true, message: '%s timed out after %s ms' },
  NOT_ENOUGH_REPLICAS: { wire: 305, status: 503, retryable: true, message: 'partition %s has %s of %s replicas' },
  // The write may or may not have been applied; the caller must read to find out.
  OUTCOME_UNKNOWN: { wire: 306, status: 504, retryable: true, message: 'outcome unknown: %s' },
  /** this node does not lead the partition; the message names the leader when known */
  NOT_LEADER: { wire: 308, status: 503, retryable: true, message: 'partition %s is led by %s' },
  /** the cluster coordinator (etcd) cannot be reached */
  COORDINATION_UNAVAILABLE: { wire: 309, status: 503, retryable: true, message: 'coordination unavailable: %s' },
  /** free space under the data dir is below storage.minFreeBytes: writes wait until there is room again */
  STORAGE_FULL: { wire: 310, status: 507, retryable: true, message: 'disk full: %s' },
  /** the batch named a previous sequence the partition does not hold yet: an earlier batch of a pipelined producer failed or is still on its way */
  SEQUENCE_GAP: { wire: 311, status: 409, retryable: true, message: 'producer %s sent sequence %s after %s; the partition holds up to %s' },
  TOO_MANY_SUBSCRIPTIONS: { wire: 307, status: 429, retryable: true, message: 'connection has %s subscriptions, limit is %s' },
  // 5xx: a fault inside the node.
  INTERNAL: { wire: 500, status: 500, retryable: true, message: 'internal error: %s' },
  STORAGE: { wire: 501, status: 500, retryable: true, message: 'storage error: %s' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

const byWire = new Map<number, ErrorCode>(
  (Object.keys(ERRORS) as ErrorCode[]).map((code) => [ERRORS[code].wire, code]),
);

function format(template: string, args: readonly unknown[]): string {
  let i = 0;
  return template.replace(/%s/g, () => String(args[i++] ?? ''));
}

export class ChicagoError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, ...args: unknown[]) {
    super(format(ERRORS[code].message, args));
    this.name = 'ChicagoError';
    this.code = code;
  }
  get status(): number { return ERRORS[this.code].status; }
  get retryable(): boolean { return ERRORS[this.code].retryable; }
  get wire(): number { return ERRORS[this.code].wire; }
  toJSON(): WireError {
    return { code: this.code, message: this.message, retryable: this.retryable };
  }
  /** Rebuild from the wire form, keeping the sender's message. */
  static fromWire(e: WireError): ChicagoError {
    const code: ErrorCode = e.code in ERRORS ? (e.code as ErrorCode) : 'INTERNAL';
    const err = new ChicagoError(code);
    err.message = e.message;
    return err;
  }
}

export interface WireError { code: string; message: string; retryable: boolean }

export function codeOfWire(wire: number): ErrorCode | undefined { return byWire.get(wire); }

/** Any thrown value as a ChicagoError; unknown faults become INTERNAL. */
export function asChicagoError(err: unknown): ChicagoError {
  if (err instanceof ChicagoError) return err;
  return new ChicagoError('INTERNAL', err instanceof Error ? err.message : String(err));
}

export function fail(code: ErrorCode, ...args: unknown[]): never {
  throw new ChicagoError(code, ...args);
}
