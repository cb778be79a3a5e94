// A leader sending a full copy to a follower, part by part: each part waits for the previous one's
// ack (or SNAPSHOT_PART_ACK_MS) and for the node's part interval, so a copy goes at the pace the
// follower absorbs and yields to the foreground. The worker and the simulator both run it.

/** A part not acked in this time is taken as lost or slow: the next goes anyway (a gap makes the follower start over). */
export const SNAPSHOT_PART_ACK_MS = 2_000;

export interface OutgoingCopy {
  copy: number;
  part: number;
  /** when the last part went (the next waits for the node's part interval) */
  lastPartAtMs: number;
  /** the copy's entries, fixed when the copy started (a snapshot iterator) */
  entries: Iterator<[Buffer, Buffer]>;
  /** the part sent last, until the follower acks it: the next waits (or SNAPSHOT_PART_ACK_MS passes) */
  unacked?: { part: number; sentAtMs: number };
}

export interface CopyPartOut { part: number; entries: Array<[Buffer, Buffer]>; bytes: number; last: boolean }

/** The next part to send now, or undefined while it must wait. */
export function nextCopyPart(snap: OutgoingCopy, nowMs: number, partIntervalMs: number, partBytesMax: number): CopyPartOut | undefined {
  if (snap.unacked && nowMs - snap.unacked.sentAtMs < SNAPSHOT_PART_ACK_MS) return undefined;
  if (nowMs - snap.lastPartAtMs < partIntervalMs) return undefined;
  snap.unacked = { part: snap.part, sentAtMs: nowMs };
  snap.lastPartAtMs = nowMs;
  const entries: Array<[Buffer, Buffer]> = [];
  let bytes = 0;
  let last = false;
  for (;;) {
    const next = snap.entries.next();
    if (next.done) { last = true; break; }
    entries.push(next.value);
    bytes += next.value[0].length + next.value[1].length;
    if (bytes >= partBytesMax) break;
  }
  return { part: snap.part++, entries, bytes, last };
}

/** The follower wrote a part: the next may go. */
export function copyPartAcked(snap: OutgoingCopy | undefined, copy: number, part: number): void {
  if (snap?.copy === copy && snap.unacked?.part === part) snap.unacked = undefined;
}
