// The gateway thread's handle on one partition worker: a bounded, deadline-checked request
// channel (msgpack over a MessagePort, coalesced per event-loop turn) and a comlink control proxy.
import { MessageChannel, Worker } from 'node:worker_threads';
import type * as ComlinkTypes from 'comlink';
import { threadCodec } from '../runtime/codec.js';
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { requireCjs } from '../runtime/require.js';
import { MUTATIONS, type RequestBody, type Request, type WorkerControl, type WorkerOutput } from './messages.js';
import type { MemoryBudget } from '../runtime/memory-budget.js';
import { BoardReader, createBoard } from './positions-board.js';
import { HopTimes } from '../runtime/hop-times.js';
import { workerYoungGenerationMb } from '../runtime/young-gc.js';
import { AlignedInterval } from '../runtime/aligned-timer.js';

/** this thread's write-path timings (CHICAGO_HOP_TIMES), one file for all its worker handles */
export const gatewayHops = new HopTimes();

const Comlink = requireCjs('comlink') as typeof ComlinkTypes;
const nodeEndpoint = requireCjs('comlink/dist/umd/node-adapter.js') as typeof import('comlink/dist/umd/node-adapter.js').default;

/**
 * Slots of a worker's shared copy-pace array: the gap between copy parts its node's pacer sets
 * (runtime/copy-pacer.ts), the copy parts the worker sent since the node last looked, and the
 * copies it is sending now.
 */
export const PACE = { partIntervalMs: 0, partsSent: 1, copiesOpen: 2 } as const;

/** A write's result and the copies known to hold it when it was answered. */
export interface WriteResult<T> { res: T; replicas: number }

interface Pending {
  resolve(v: unknown, replicas: number): void;
  reject(e: Error): void;
  deadlineMs: number;
  startedMs: number;
  bytes: number;
  mutation: boolean;
  /** a produce whose batch was given away: where a batch handed back with NOT_LEADER goes */
  body?: Extract<RequestBody, { op: 'produce' }>;
}

/** Batches whose callers gave their buffer away (giveBatch): transferred to the worker rather than copied. */
const given = new WeakSet<Uint8Array>();

/**
 * The caller of a produce no longer reads `bytes` (it will not look at them again unless the
 * write comes back NOT_LEADER, which hands them back): their ArrayBuffer, when it holds exactly
 * them, goes to the worker as it is. A request body is copied once as it arrives (uWS reuses
 * its memory); this spares the second copy, and the memory of one more body per write in flight.
 */
export function giveBatch(bytes: Uint8Array): void {
  if (bytes.byteOffset === 0 && bytes.buffer instanceof ArrayBuffer && bytes.byteLength === bytes.buffer.byteLength) given.add(bytes);
}

export class WorkerHandle {
  readonly control: ComlinkTypes.Remote<WorkerControl>;
  private readonly worker: Worker;
  private readonly dataPort: import('node:worker_threads').MessagePort;
  private readonly codec = threadCodec();
  private readonly pending = new Map<number, Pending>();
  private outbox: Request[] = [];
  private flushScheduled = false;
  private nextId = 1;
  private inFlightBytes = 0;
  /** the node-wide cap on buffered bytes, shared with the gateway (set by the node) */
  budget: MemoryBudget | undefined;
  /** messages posted to the worker, and (shared, written by the worker) how many it has drained */
  private posted = 0;
  private readonly drained = new Int32Array(new SharedArrayBuffer(4));
  /** shared with the worker: PACE slots */
  readonly pace = new Int32Array(new SharedArrayBuffer(4 * 3));
  /** shared with the worker: its replicas' positions, as it last published them (positions-board.ts) */
  private readonly board = createBoard();
  readonly positions = new BoardReader(this.board);
  private readonly deadlineTimer: AlignedInterval;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private exitError: Error | undefined;

  constructor(
    readonly index: number,
    scriptUrl: URL,
    dbHandle: bigint,
    onFatal: (err: Error) => void,
    /** streams whose confirmed end moved (tails and long polls wake) */
    private readonly onVisible: (streams: NonNullable<WorkerOutput['visible']>) => void,
    /** a write answered successfully, and how long it took (ms) */
    private readonly onWriteDone: (latencyMs: number) => void = () => {},
  ) {
    Atomics.store(this.pace, PACE.partIntervalMs, limits.copyPartIntervalMsMin);
    const data = new MessageChannel();
    const control = new MessageChannel();
    const youngMb = workerYoungGenerationMb();
    this.worker = new Worker(scriptUrl, {
      workerData: { handle: dbHandle, dataPort: data.port2, controlPort: control.port2, drained: this.drained, pace: this.pace, board: this.board },
      transferList: [data.port2, control.port2],
      name: `partition-worker-${index}`,
      ...(youngMb ? { resourceLimits: { maxYoungGenerationSizeMb: youngMb } } : {}),
    });
    this.dataPort = data.port1;
    this.dataPort.on('message', (buf: Uint8Array) => this.onReplies(buf));
    this.control = Comlink.wrap<WorkerControl>(nodeEndpoint(control.port1));
    this.worker.on('error', (err) => {
      this.exitError = err;
      onFatal(err);
    });
    this.worker.on('exit', (code) => {
      if (this.state !== 'closed') {
        const err = this.exitError ?? new Error(`partition worker ${index} exited with code ${code}`);
        this.failAll(err);
        if (this.state === 'open') onFatal(err);
      }
      this.state = 'closed';
    });
    // on the second, with the node's other periodic work, rather than a wake-up of its own
    this.deadlineTimer = new AlignedInterval(1000, () => this.expire());
  }

  get inFlight(): number { return this.pending.size; }

  /**
   * Queue a request; resolves with the worker's result. Full → OVERLOADED at once.
   * A write whose answer never comes is reported as OUTCOME_UNKNOWN, never as success.
   */
  call<T>(body: RequestBody, bytes = 0): Promise<T> {
    return this.enqueue(body, bytes, (res) => res as T);
  }

  /** A mutation: resolves with its result and how many replicas held it when answered. */
  write<T>(body: RequestBody, bytes = 0): Promise<WriteResult<T>> {
    return this.enqueue(body, bytes, (res, replicas) => ({ res: res as T, replicas }));
  }

  /** Messages that need no answer (views): no id, no deadline; always sent. */
  tell(body: RequestBody): void {
    if (this.state !== 'open') return;
    this.outbox.push({ id: 0, ...body } as Request);
    this.scheduleFlush();
  }

  private enqueue<T>(body: RequestBody, bytes: number, shape: (res: unknown, replicas: number) => T): Promise<T> {
    if (this.state !== 'open') return Promise.reject(new ChicagoError('SHUTTING_DOWN'));
    if (this.pending.size >= limits.workerInFlightMax) {
      return Promise.reject(new ChicagoError('OVERLOADED', `worker ${this.index} queue`, `${this.pending.size} requests`));
    }
    if (this.inFlightBytes + bytes > limits.workerInFlightBytesMax) {
      return Promise.reject(new ChicagoError('OVERLOADED', `worker ${this.index} queue`, `${this.inFlightBytes} bytes`));
    }
    if (this.budget && !this.budget.take(bytes)) {
      return Promise.reject(new ChicagoError('OVERLOADED', 'node memory', `${this.budget.used} of memory.maxBytes ${this.budget.maxBytes} buffered`));
    }
    const id = this.nextId++;
    // id first: the key order of the shared structures (codec.ts THREAD_STRUCTURES)
    const req = { id, ...body } as Request;
    return new Promise<T>((resolve, reject) => {
      const mutation = MUTATIONS.has(req.op);
      const givenBody = body.op === 'produce' && body.batch && given.has(body.batch) ? body : undefined;
      this.pending.set(id, { resolve: (v, n) => resolve(shape(v, n)), reject, deadlineMs: Date.now() + limits.workerCallTimeoutMs, startedMs: performance.now(), bytes, mutation, ...(givenBody ? { body: givenBody } : {}) });
      this.inFlightBytes += bytes;
      this.outbox.push(req);
      if (HopTimes.enabled && mutation) gatewayHops.note('gEnq', this.index, id, req.p);
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.outbox;
    this.outbox = [];
    if (batch.length === 0) return;
    // A large record batch goes beside the message in an ArrayBuffer of its own, transferred: a
    // structured clone of a Buffer, or packing it into the message, costs several times one copy.
    // A given batch's own buffer goes (giveBatch); any other is copied, since its caller keeps its
    // bytes (a write that meets a moved leader is sent again). A small one is packed into the
    // message: one copy there costs less than an ArrayBuffer of its own and its transfer.
    let beside: ArrayBuffer[] | undefined;
    for (let i = 0; i < batch.length; i++) {
      const r = batch[i];
      if (r.op !== 'produce' || !r.batch || r.batch.byteLength <= limits.workerInlineBatchBytesMax) continue;
      const give = given.delete(r.batch);
      let buffer: ArrayBuffer;
      if (give) buffer = r.batch.buffer as ArrayBuffer;
      else {
        const own = Buffer.allocUnsafeSlow(r.batch.byteLength); // unpooled: its ArrayBuffer is its alone
        own.set(r.batch);
        buffer = own.buffer as ArrayBuffer;
      }
      const { batch: _bytes, ...rest } = r;
      batch[i] = { ...rest, batchAt: (beside ??= []).length, ...(give ? { batchGiven: true } : {}) };
      beside.push(buffer);
    }
    if (beside) this.codec.postBeside(this.dataPort, batch, beside);
    else this.codec.post(this.dataPort, batch);
    this.posted++;
    if (HopTimes.enabled) for (const r of batch) if (r.id && MUTATIONS.has(r.op)) gatewayHops.note('gPost', this.index, r.id);
  }

  private onReplies(buf: Uint8Array): void {
    const out = this.codec.decode<WorkerOutput>(buf);
    for (const r of out.replies ?? []) {
      const p = this.pending.get(r.id);
      if (!p) continue; // already expired and answered
      this.pending.delete(r.id);
      this.inFlightBytes -= p.bytes;
      this.budget?.give(p.bytes);
      if (HopTimes.enabled && p.mutation) gatewayHops.note('gReply', this.index, r.id);
      if (r.ok) {
        if (p.mutation) this.onWriteDone(performance.now() - p.startedMs);
        p.resolve(r.res, r.replicas ?? 0);
      }
      else {
        // the write did not run: its batch back where the router sends it again from
        if (r.batch && p.body) p.body.batch = Buffer.from(r.batch);
        const err = new ChicagoError(r.err.code);
        if (r.err.args.length === 1 && typeof r.err.args[0] === 'string' && r.err.code !== 'OUT_OF_ORDER_SEQUENCE') err.message = r.err.args[0];
        else err.message = new ChicagoError(r.err.code, ...r.err.args).message;
        p.reject(err);
      }
    }
    if (out.visible) this.onVisible(out.visible);
  }

  private expire(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.deadlineMs > now) break; // ids are issued in time order
      this.pending.delete(id);
      this.inFlightBytes -= p.bytes;
      this.budget?.give(p.bytes);
      p.reject(p.mutation
        ? new ChicagoError('OUTCOME_UNKNOWN', `worker ${this.index} did not answer within ${limits.workerCallTimeoutMs} ms`)
        : new ChicagoError('TIMEOUT', `worker ${this.index} read`, limits.workerCallTimeoutMs));
    }
  }

  /** Writes may have run: unknown. Reads did not answer: retryable when the node is stopping, else a fault. */
  private failAll(cause: Error, stopping = false): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      this.budget?.give(p.bytes);
      p.reject(p.mutation ? new ChicagoError('OUTCOME_UNKNOWN', cause.message) : stopping ? new ChicagoError('SHUTTING_DOWN') : new ChicagoError('INTERNAL', cause.message));
    }
    this.inFlightBytes = 0;
  }

  /** Drain then stop the thread. The database stays open: only the main thread closes it. */
  async stop(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'closing';
    this.flush();
    try {
      await withDeadline(this.control.drain(), 10_000, `worker ${this.index} drain`);
      // answers to what was queued before the drain arrive before the drain's own answer
    } finally {
      this.deadlineTimer.stop();
      this.state = 'closed';
      this.failAll(new Error('worker stopped'), true);
      this.control[Comlink.releaseProxy]();
      await this.worker.terminate();
    }
  }
}

export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new ChicagoError('TIMEOUT', what, ms)), ms); }),
  ]).finally(() => clearTimeout(timer));
}
