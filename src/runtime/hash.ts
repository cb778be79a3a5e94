// MurmurHash3 (x86, 32-bit). Stable across versions and threads: partition placement depends on it,
// and the cluster reuses it, so it must never change.
export function murmur3(data: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const n = data.length;
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

/** The node partition that owns a KV key. */
export function kvPartition(keyspace: string, key: Uint8Array, partitions: number): number {
  const ks = utf8.encode(keyspace);
  const buf = new Uint8Array(ks.length + 1 + key.length);
  buf.set(ks, 0);
  buf.set(key, ks.length + 1);
  return murmur3(buf) % partitions;
}

/** The topic partition of a keyed record. */
export function recordPartition(key: Uint8Array, topicPartitions: number): number {
  return murmur3(key) % topicPartitions;
}

/** The node partition that hosts a topic partition: a topic's partitions spread over consecutive ones. */
export function streamPartition(topic: string, tp: number, partitions: number): number {
  return (murmur3(utf8.encode(topic)) + tp) % partitions;
}

/** The node partition whose leader coordinates a consumer group (its "home"). */
export function groupPartition(group: string, partitions: number): number {
  return murmur3(utf8.encode(`group\u0000${group}`)) % partitions;
}
