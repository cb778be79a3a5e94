// msgpack codecs. Three kinds, never mixed:
// - thread messages: records with a fixed shared structure table (fast, compact); packers never
//   add shared structures, so every thread's table stays identical and new shapes travel inline;
// - replication frames between nodes: a small binary header and a plain msgpack body;
// - disk values: plain msgpack maps/arrays, so what is on disk never depends on a structure table.
import { Packr, Unpackr } from 'msgpackr';
import { limits } from './limits.js';

/** msgpackr's own starting size for its pack buffer */
const SMALL_PACK_BUFFER_BYTES = 8192;

/**
 * msgpackr packs into one buffer per thread, shared by every Packr, that grows (by up to 4×) to
 * the largest message packed and is kept: one 16 MB batch would pin 32–64 MB for the thread's
 * life. After a pack that left it larger than packBufferKeptBytesMax, the thread's packers move to
 * a new small buffer; `view` (the bytes just packed) stays valid and is now the caller's alone.
 */
export function dropLargePackBuffer(packr: Packr, view: Uint8Array): boolean {
  if (view.buffer.byteLength <= limits.packBufferKeptBytesMax) return false;
  packr.useBuffer(Buffer.allocUnsafeSlow(SMALL_PACK_BUFFER_BYTES));
  return true;
}

/** Packs into bytes no later pack() overwrites: a large message keeps its buffer (no copy), a small one is copied out. */
function packDetached(packr: Packr, value: unknown): Buffer {
  const view = packr.pack(value);
  return dropLargePackBuffer(packr, view) ? view : Buffer.from(view);
}

// Shapes of the hottest thread messages, keys in the order the objects are built (msgpackr matches
// a structure by key order: an object whose keys come in another order travels with its field
// names inline, and the receiver parses that definition again for every message). Append only.
const THREAD_STRUCTURES: string[][] = [
  ['id', 'p', 'op', 'ks', 'key', 'value', 'ttlMs', 'acks'],
  ['id', 'ok', 'res'],
  ['id', 'ok', 'err'],
  ['id', 'p', 'op', 'topicId', 'tp', 'records', 'producerId', 'sequence', 'acks'],
  // a worker's output and a write's reply (worker.ts post, execute)
  ['replies', 'visible'],
  ['id', 'ok', 'res', 'replicas'],
  ['version'],
  ['version', 'existed'],
  ['id', 'p', 'op', 'ks', 'key', 'acks'],
];

function threadPackr(): Packr {
  return new Packr({
    structures: THREAD_STRUCTURES.map((s) => [...s]),
    maxSharedStructures: THREAD_STRUCTURES.length,
  });
}

/** Above this size a posted message is transferred rather than copied again by the clone. */
const TRANSFER_ABOVE_BYTES = 16 * 1024;

/**
 * Packs into bytes with an ArrayBuffer of their own, for posting: the structured clone copies a
 * view's whole ArrayBuffer, and a small Buffer (Buffer.from) sits in Buffer's 8 KB shared pool, so
 * posting one copied (and allocated on the other side) 8 KB per message.
 */
function packToPost(packr: Packr, value: unknown): Uint8Array {
  const view = packr.pack(value);
  return dropLargePackBuffer(packr, view) ? view : new Uint8Array(view);
}

/** The part of a MessagePort the data plane uses. */
interface PostTarget { postMessage(value: unknown, transferList?: ArrayBuffer[]): void }

/** One per direction and thread: a packer's table never grows, an unpacker's may. */
export function threadCodec() {
  const packer = threadPackr();
  const unpacker = threadPackr();
  return {
    encode: (msg: unknown): Uint8Array => packer.pack(msg),
    decode: <T>(buf: Uint8Array): T => unpacker.unpack(buf) as T,
    /**
     * Encode and post. pack() returns a view into msgpackr's shared buffer; posting the view would
     * make the structured clone copy that whole buffer every time. So post bytes of their own
     * (packToPost), and transfer them when they are large.
     */
    post: (port: PostTarget, msg: unknown): void => {
      const bytes = packToPost(packer, msg);
      if (bytes.length > TRANSFER_ABOVE_BYTES) port.postMessage(bytes, [bytes.buffer as ArrayBuffer]);
      else port.postMessage(bytes);
    },
    /**
     * Encode and post with buffers of the sender's own beside it, those transferred (the message
     * too when large): the receiver gets [message, ...buffers].
     */
    postBeside: (port: PostTarget, msg: unknown, buffers: ArrayBuffer[]): void => {
      const bytes = packToPost(packer, msg);
      port.postMessage([bytes, ...buffers], bytes.length > TRANSFER_ABOVE_BYTES ? [bytes.buffer as ArrayBuffer, ...buffers] : buffers);
    },
  };
}

/**
 * A replication frame: a tag byte msgpack never uses, the partition (u32, big-endian), then the
 * message as plain msgpack (no structure table: nodes of different versions still understand each
 * other). The sending worker encodes it and the receiving worker decodes it; the worker link in
 * between routes it by its header and never unpacks the body.
 */
const REPLICATION_TAG = 0xc1;
const REPLICATION_HEADER_BYTES = 5;
const replicationPackr = new Packr({ useRecords: false });

export const replicationFrame = {
  encode(p: number, msg: unknown): Uint8Array {
    const body = replicationPackr.pack(msg);
    dropLargePackBuffer(replicationPackr, body);
    const frame = new Uint8Array(REPLICATION_HEADER_BYTES + body.length);
    frame[0] = REPLICATION_TAG;
    new DataView(frame.buffer).setUint32(1, p);
    frame.set(body, REPLICATION_HEADER_BYTES);
    return frame;
  },
  /** the partition a replication frame is for; undefined for any other frame */
  partitionOf(data: Uint8Array): number | undefined {
    if (data.length <= REPLICATION_HEADER_BYTES || data[0] !== REPLICATION_TAG) return undefined;
    return new DataView(data.buffer, data.byteOffset, REPLICATION_HEADER_BYTES).getUint32(1);
  },
  decode: <T>(frame: Uint8Array): T => replicationPackr.unpack(frame.subarray(REPLICATION_HEADER_BYTES)) as T,
};

const disk = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });
const diskUnpack = new Unpackr({ useRecords: false, mapsAsObjects: true });

export const diskCodec = {
  // pack() returns a view into a shared buffer that the next pack() overwrites: detach it.
  encode: (value: unknown): Buffer => packDetached(disk, value),
  decode: <T>(buf: Uint8Array): T => diskUnpack.unpack(buf) as T,
};
