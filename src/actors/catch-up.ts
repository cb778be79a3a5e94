// A leader filling a follower's gap from its replication log: the entries after the follower's
// position, bounded in count and bytes, or — when the log no longer has them, or the gap is longer
// than a log catch-up may be — a full copy, which the replica decides on (`logMissing`).
import type { NodeId } from '../runtime/ids.js';
import { limits } from '../runtime/limits.js';
import * as K from '../storage/keys.js';
import { entryBytes, epochOf, readLogEntry, watermark, type AppendMessage, type Entry, type Replica } from './replica.js';
import type { Storage } from './storage.js';

export type CatchUp = { kind: 'append'; msg: AppendMessage } | { kind: 'logMissing' };

export function catchUp(r: Replica, self: NodeId, fromSeq: number, at: number, log: Storage): CatchUp {
  const s = r.state;
  if (s.seq - fromSeq > limits.logCatchUpEntriesMax) return { kind: 'logMissing' };
  const entries: Entry[] = [];
  let bytes = 0;
  for (const [k, v] of log.iterate({ gte: K.logKey(fromSeq + 1), lt: K.logRange.lt })) {
    // a log with a gap (written while the replica was held alone) is resent only up to the gap
    if (K.seqOfLogKey(k) !== fromSeq + 1 + entries.length) break;
    const e = readLogEntry(v, log);
    if (!e) break; // its batch is gone (retention): what follows it comes after a full copy
    entries.push(e);
    bytes += entryBytes(e); // with the batch it read back: the stored entry only names it
    if (entries.length >= limits.catchUpEntriesMax || bytes >= limits.catchUpBytesMax) break;
  }
  // older than the log: the replica decides on a copy
  if (fromSeq < s.seq && entries.length === 0) return { kind: 'logMissing' };
  return { kind: 'append', msg: { t: 'append', p: s.id, epoch: s.epoch, leader: self, prevSeq: fromSeq, prevEpoch: epochOf(s, fromSeq), entries, at, ...watermark(r) } };
}
