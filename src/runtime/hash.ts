// MurmurHash3 (x86, 32-bit). Stable across versions and threads: partition placement depends on it,
// and the cluster reuses it, so it must never change.
export function murmur3(data: Uint8Array, seed = 0, n = data.length): number {
  let h = seed >>> 0;
  const blocks = n & ~3;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  for (let i = 0; i < blocks; i += 4) {
    let k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = n & 3;
  if (tail > 0) {
    let k = 0;
    if (tail === 3) k ^= data[blocks + 2] << 16;
    if (tail >= 2) k ^= data[blocks + 1] << 8;
    k ^= data[blocks];
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const utf8 = new TextEncoder();
/** Keys up to this size are hashed in a reused buffer (no allocation per request on the hot path). */
const SCRATCH_BYTES = 4096;
const scratch = new Uint8Array(SCRATCH_BYTES);

/** The node partition that owns a KV key: murmur3 of keyspace (UTF-8), a 0 byte, then the key. */
export function kvPartition(keyspace: string, key: Uint8Array, partitions: number): number {
  // encodeInto writes at most 3 bytes per UTF-16 unit
  const buf = keyspace.length * 3 + 1 + key.length <= SCRATCH_BYTES ? scratch : new Uint8Array(keyspace.length * 3 + 1 + key.length);
  const { written } = utf8.encodeInto(keyspace, buf);
  buf[written] = 0;
  buf.set(key, written + 1);
  return murmur3(buf, 0, written + 1 + key.length) % partitions;
}

/** murmur3 of a string's UTF-8 bytes, encoded into the reused buffer when they fit. */
export function murmur3Text(text: string): number {
  if (text.length * 3 > SCRATCH_BYTES) return murmur3(utf8.encode(text));
  const { written } = utf8.encodeInto(text, scratch);
  return murmur3(scratch, 0, written);
}

/** The topic partition of a keyed record. */
export function recordPartition(key: Uint8Array, topicPartitions: number): number {
  return murmur3(key) % topicPartitions;
}

/** The node partition that hosts a topic partition: a topic's partitions spread over consecutive ones. */
export function streamPartition(topic: string, tp: number, partitions: number): number {
  return (murmur3Text(topic) + tp) % partitions;
}

/** The node partition whose leader coordinates a consumer group (its "home"). */
export function groupPartition(group: string, partitions: number): number {
  return murmur3Text(`group\u0000${group}`) % partitions;
}
