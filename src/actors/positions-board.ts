// Where a partition worker leaves its replicas' positions for its node's coordinator: a
// SharedArrayBuffer the worker writes (on its tick, only when something changed) and the node
// reads when it samples. No message crosses threads, so an idle cluster's every-check sample costs
// a version load, and a busy one's a copy and a decode only when positions moved.
//
// Layout: Int32 slots [version, length] then the msgpack bytes. The version is a seqlock: odd while
// the worker writes, so a reader that sees it odd, or changed across its copy, reads again.
import { Packr } from 'msgpackr';
import { limits } from '../runtime/limits.js';

/** What the coordinator uses of one hosted replica (cluster.ts ReplicaPosition, with its id). */
export interface BoardPosition {
  id: number;
  seq: number;
  role: string;
  incomplete: boolean;
  /** (leaders) each follower's acknowledged seq */
  matched: Record<string, number>;
  isr: string[];
  view: number;
  confirmedSeq: number;
}

type Row = [id: number, seq: number, role: string, incomplete: 0 | 1, view: number, confirmedSeq: number, isr: string[], matched: Array<string | number>];

const VERSION = 0;
const LENGTH = 1;
const HEADER_BYTES = 8;
/** the length slot's value when the positions did not fit: the reader asks the worker instead */
const OVERFLOW = -1;
/** reads that find the worker mid-write before the last good read is used */
const READ_TRIES = 4;

const packr = new Packr({ useRecords: false });

export function createBoard(): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER_BYTES + limits.positionsBoardBytesMax);
}

/** The worker's side: publish() writes only when the encoded positions differ from the board's. */
export class BoardWriter {
  private readonly header: Int32Array;
  private readonly bytes: Uint8Array;

  constructor(board: SharedArrayBuffer) {
    this.header = new Int32Array(board, 0, 2);
    this.bytes = new Uint8Array(board, HEADER_BYTES);
  }

  /** true if the board changed */
  publish(positions: Iterable<BoardPosition>): boolean {
    const rows: Row[] = [];
    for (const p of positions) {
      const matched: Array<string | number> = [];
      for (const k in p.matched) matched.push(k, p.matched[k]!);
      rows.push([p.id, p.seq, p.role, p.incomplete ? 1 : 0, p.view, p.confirmedSeq, p.isr, matched]);
    }
    const enc = packr.pack(rows);
    const h = this.header;
    const len = Atomics.load(h, LENGTH);
    const fits = enc.length <= this.bytes.length;
    if (Atomics.load(h, VERSION) !== 0) { // 0: never written (it wraps past 2^31 to negatives)
      if (!fits && len === OVERFLOW) return false;
      if (fits && len === enc.length && Buffer.compare(enc, this.bytes.subarray(0, len)) === 0) return false;
    }
    Atomics.add(h, VERSION, 1); // odd: being written
    if (fits) this.bytes.set(enc);
    Atomics.store(h, LENGTH, fits ? enc.length : OVERFLOW);
    Atomics.add(h, VERSION, 1);
    return true;
  }
}

/** The node's side. */
export class BoardReader {
  private readonly header: Int32Array;
  private readonly bytes: Uint8Array;
  private seen = 0;
  private last: BoardPosition[] | undefined;

  constructor(board: SharedArrayBuffer) {
    this.header = new Int32Array(board, 0, 2);
    this.bytes = new Uint8Array(board, HEADER_BYTES);
  }

  /** The worker's last published positions; undefined before its first, or when they did not fit. */
  read(): BoardPosition[] | undefined {
    for (let i = 0; i < READ_TRIES; i++) {
      const v = Atomics.load(this.header, VERSION);
      if (v === this.seen) return this.last;
      if ((v & 1) === 1) continue;
      const len = Atomics.load(this.header, LENGTH);
      const copy = len > 0 ? this.bytes.slice(0, len) : undefined;
      if (Atomics.load(this.header, VERSION) !== v) continue;
      this.seen = v;
      this.last = copy ? (packr.unpack(copy) as Row[]).map(fromRow) : undefined;
      return this.last;
    }
    return this.last;
  }
}

function fromRow([id, seq, role, incomplete, view, confirmedSeq, isr, flat]: Row): BoardPosition {
  const matched: Record<string, number> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) matched[flat[i] as string] = flat[i + 1] as number;
  return { id, seq, role, incomplete: incomplete === 1, matched, isr, view, confirmedSeq };
}
