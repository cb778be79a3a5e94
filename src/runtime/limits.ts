// Every limit of a node, in one place. Names end in their unit. Relations are checked below.
const KiB = 1024;
const MiB = 1024 * KiB;

export const limits = {
  /** keyspace, topic and group names: [A-Za-z0-9._-], this long at most */
  nameLengthMax: 128,
  keyBytesMax: 4 * KiB,
  /** one KV value */
  valueBytesMax: 4 * MiB,
  /** one stream record (key + value + headers) */
  recordBytesMax: 4 * MiB,
  headerCountMax: 64,
  /** JSON bodies (and JSON record values) nested deeper than this are refused before parsing */
  jsonDepthMax: 64,
  headerBytesMax: 16 * KiB,
  /** one update (a produce batch, a KV write): "each update < 20 MB" */
  batchBytesMax: 20 * 1000 * 1000 - 1,
  batchRecordsMax: 100_000,
  /** one WebSocket frame or HTTP body; a batch plus its envelope must fit */
  frameBytesMax: 20 * 1000 * 1000 + 64 * KiB,
  httpBodyBytesMax: 20 * 1000 * 1000 + 64 * KiB,
  /** an HTTP answer this large or larger is sent as its socket drains and counts against memory.maxBytes until sent (gateway/http.ts) */
  httpAnswerCountedBytesMin: 16 * KiB,
  /** what answers an operator needs in an overload (metrics, status) may hold past memory.maxBytes, all together */
  httpAlwaysAnswerBytesMax: 8 * MiB,
  topicPartitionsMax: 1024,
  topicsMax: 10_000,
  /** requests in flight from the gateway to one worker; full → OVERLOADED */
  workerInFlightMax: 20_000,
  /** bytes in flight from the gateway to one worker; full → OVERLOADED */
  workerInFlightBytesMax: 256 * MiB,
  /** lines the guard's `nft -i` child reads before it is replaced (its in-memory history makes each line cost more than the last) */
  nftChildLinesMax: 2000,
  /** targets whose nginx blocklist change waits for the POST in flight; full → a new target's change is refused and counted */
  guardNginxQueuedTargetsMax: 100_000,
  /** how often the guard asks each nginx whether it still holds its blocklist (guard/nginx.ts) */
  guardNginxCheckIntervalMs: 5_000,
  /** the shortest IPv4 prefix `chicago guard ban` takes without --force (a /7 is 33 million addresses: more likely a typo than a decision) */
  guardManualPrefixV4BitsMin: 8,
  /** the same for IPv6 */
  guardManualPrefixV6BitsMin: 16,
  /** a POST body of a full blocklist send, within the example conf's client_max_body_size (1 MiB) */
  guardNginxBodyBytesMax: 512 * 1024,
  /** synthetic lines a starting guard runs through its own path on throwaway state (guard/warm.ts) */
  guardWarmLinesMax: 5_000,
  /** distinct requests of those the starting guard has CRS judge (each rule's expressions compiled) */
  guardWarmCrsRequestsMax: 200,
  /** the starting guard's warm-up stops after this long, done or not */
  guardWarmMsMax: 1000,
  /** the guard's V8 heap may grow this much over what survived its last full collection before the next */
  guardHeapGrowingPercent: 20,
  /** a thread that copied this many bytes of short-lived request buffers asks V8 for a scavenge (runtime/young-gc.ts) */
  youngGcAfterCopiedBytes: 4 * MiB,
  /**
   * V8 semi-space of every thread of `chicago server` (CHICAGO_SERVER_SEMI_SPACE_MB; 0: V8's default, 16):
   * a scavenge's pause grows with the young generation V8 lets it reach, and each one stalls a
   * thread a replicated write passes through (runtime/young-gc.ts serverSemiSpaceMb)
   */
  serverSemiSpaceMb: 2,
  /**
   * V8's largest semi-space for `chicago agent` (bin/chicago.js; CHICAGO_AGENT_SEMI_SPACE_MB): V8 starts
   * it at 1 MiB and grows it only under a high line rate, where fewer scavenges promote fewer read
   * pieces; V8 shrinks it again once a collection finds little allocation (docs/agent.md "Memory")
   */
  agentSemiSpaceMb: 4,
  /** a record batch up to this size travels inside the gateway's message to a worker; a larger one in a transferred buffer of its own */
  workerInlineBatchBytesMax: 4 * KiB,
  /** messages a worker may have queued but not yet drained before replication traffic from other nodes is dropped */
  workerBacklogMessagesMax: 10_000,
  /** rows one thread records for the CHICAGO_HOP_TIMES diagnostic (runtime/hop-times.ts); the rest are not recorded */
  hopTimesRowsMax: 200_000,
  /** consumer groups whose lag /metrics reports (one label set per group, topic and partition) */
  lagReportedGroupsMax: 1_000,
  /** fire-and-forget (acks=none) updates queued per worker; full → dropped and counted */
  fireAndForgetQueuedMax: 10_000,
  /** requests a single connection may have outstanding; full → OVERLOADED */
  connectionInFlightMax: 4_096,
  /** bytes a WebSocket may have queued towards the client before it is cut off */
  wsBackpressureBytesMax: 64 * MiB,
  /**
   * how long what a closed WebSocket left unsent still counts against memory.maxBytes: uWS keeps a
   * socket it ends open with its send buffer until the client reads it or ~16 s pass (measured)
   */
  wsClosedBufferHoldMs: 20_000,
  /** credit a WebSocket connection's subscriptions may have passed to the node's tails at once (the rest waits for the socket to drain) */
  wsConnectionCreditBytes: 4 * MiB,
  /** credit each subscription may always have passed to the node, however the window is used (so idle ones cannot starve the rest) */
  wsSubscriptionCreditFloorBytes: 16 * 1024,
  /** above this many bytes queued to a WebSocket, subscriber credit is held back until it drains */
  wsPushPauseBytes: 4 * MiB,
  /** request bytes a single connection may have outstanding; full → OVERLOADED */
  connectionInFlightBytesMax: 256 * MiB,
  /** undecodable WebSocket frames in a row before the connection is closed */
  wsBadFramesInARowMax: 8,
  /** subscriptions per WebSocket connection */
  subscriptionsPerConnectionMax: 1_024,
  /** records handed to a subscriber per push */
  pushRecordsMax: 1_000,
  /** default and maximum credit a subscriber may grant, in bytes */
  subscriberCreditBytesMax: 64 * MiB,
  /** fetch / tail reads */
  fetchRecordsMax: 10_000,
  fetchBytesMax: 16 * MiB,
  fetchWaitMsMax: 60_000,
  /** the largest answer the CLI reads into memory: a JSON fetch of fetchBytesMax carries its values
   *  in base64 (4/3 of them) plus each record's fields */
  cliAnswerBytesMax: 64 * MiB,
  /** how long a caught-up tail on a node that does not lead its partition long-polls the leader;
   *  also the longest a tail waits to notice that leadership came to its node */
  remoteTailWaitMs: 1_000,
  /** a pipelined produce waits at most this long for the request it names as its predecessor (gateway/pipelined.ts) */
  producePredecessorWaitMs: 10_000,
  /**
   * appends answered before readers may see them (acks one/none in a cluster), kept per watched
   * stream to push to its tails once confirmed; full → the oldest is dropped and tails read it
   */
  heldAppendsPerStreamMax: 256,
  /** long-poll waiters per topic partition; full → OVERLOADED */
  waitersPerPartitionMax: 10_000,
  scanLimitMax: 10_000,
  /** a leaving node with no other node joining or up for this long stops without handing off (over a lease's TTL and a re-register) */
  handOffAloneMs: 5_000,
  /** key and value bytes after which a scan page ends (with the entry that crosses it; at least one
   *  entry); the rest continues from `next`. Such a page, JSON-escaped (up to 6× for control
   *  characters), stays under cliAnswerBytesMax. */
  scanBytesMax: 6 * MiB,
  /** idempotent producers remembered per partition; the least recently used is forgotten */
  producersPerPartitionMax: 10_000,
  /** batches per producer a partition remembers to recognise a retry; a pipelining producer keeps
   *  at most this many in flight, so every retry of one is recognised */
  producerRecentBatchesMax: 8,
  /**
   * the agent's spool commits (write + fdatasync) running at once: a line read during one commit's
   * fdatasync starts its own instead of waiting for it (two overlap in the kernel, measured about half
   * the wait); full → appends queue and go together in the next commit
   */
  agentSpoolCommitsInFlightMax: 2,
  /**
   * how long the readers' appends (records with their offsets or cursors) may wait after the last
   * spool commit began, to share one fdatasync with the reads that follow: a file written in small
   * pieces (10k lines/s in ~1 ms writes) made ~500 commits a second, most of the agent's CPU. A shipper
   * due to send, any other entry, or agentSpoolCommitEarlyBytes queued commit at once.
   */
  agentSpoolCommitGapMs: 5,
  /** queued record bytes that commit at once, however recent the last commit (a reader in a backlog) */
  agentSpoolCommitEarlyBytes: 256 * 1024,
  /**
   * a deferred commit starts this long before a shipper's planned cut, so its records make that batch
   * (at 2 ms some missed it after a slow fdatasync: p99 at 10k lines/s rose by up to 10 ms)
   */
  agentSpoolCommitLeadMs: 4,
  /**
   * the agent's record-batch buffers kept for its next batches (shipper.ts BatchBuffers): a fresh
   * 1 MB buffer is a fresh mapping whose every page faults on its first write; full → dropped
   */
  agentBatchBuffersKeptMax: 4,
  /** kept batch buffers (and read buffers) are dropped after this long without a batch (an idle agent holds none) */
  agentBatchBuffersIdleMs: 2_000,
  /**
   * the agent's file read buffers of 128 KiB or more kept for its next reads (files.ts, buffers.ts): one
   * comes back once the records read into it are acknowledged; full → dropped
   */
  agentReadBuffersKeptMax: 4,
  /**
   * the longest gap between the agent's backup stat polls of watched, idle directories: watch events
   * bring new lines at once; the poll only catches what a watch misses (a network mount). Each pass
   * over 1,000 idle files costs a few ms of CPU: at 5 s about half of an idle agent's CPU.
   */
  agentIdlePollMsMax: 10_000,
  /** cross-thread call deadline: a worker that does not answer in time is a fault */
  workerCallTimeoutMs: 30_000,
  ttlSecondsMax: 10 * 365 * 24 * 3600,
  /** offsets and sequences must stay exact as JS numbers */
  offsetMax: Number.MAX_SAFE_INTEGER,
  /** request bodies at least this large are parsed on the parse pool, off the gateway thread */
  parseInlineBytesMax: 64 * KiB,
  parseThreadsMax: 2,
  /** large bodies waiting for a parse thread; full → OVERLOADED */
  parseQueueMax: 64,
  /** replication log entries a replica keeps for followers that fell behind; older → snapshot */
  replicationLogEntriesMax: 100_000,
  /** log entries rewritten per synced write when an older data dir's log sheds its batch copies */
  compactLogSliceEntriesMax: 1024,
  /**
   * a follower further behind than this gets a full copy rather than the log: replaying an entry
   * costs about what the write did, copying the state only its bytes (a replica moving in)
   */
  logCatchUpEntriesMax: 10_000,
  /**
   * a leader's writes its in-sync replicas have not confirmed yet, about (the values readers must
   * not see yet, and the confirmed ones they see instead, are held in memory); full → OVERLOADED.
   * A silent replica leaves the in-sync set within a second, so only a stalled set fills it.
   */
  unconfirmedBytesMax: 64 * MiB,
  /**
   * entries a follower catching up (a stand-in, say) keeps past the gap in its log, per partition,
   * so that it counts as a holder of new writes at once (replica.ts Hints); full → it keeps no
   * more until the gap closes, and the writes after wait for it
   */
  hintBytesMax: 64 * MiB,
  /**
   * log entries or bytes sent to a follower in one catch-up message (the next part goes when it
   * answers; to one outside the in-sync set, at most one per 50 ms, the pace of a full copy): one
   * read and send of them holds the leader's thread, so they stay small
   */
  catchUpEntriesMax: 256,
  catchUpBytesMax: 256 * KiB,
  /**
   * one snapshot message; a copy sends one per copy part interval (≈5 MB/s per copy at the
   * shortest), and a small one never holds a thread long enough to show in the foreground p99
   */
  snapshotChunkBytesMax: 256 * KiB,
  /**
   * the gap between two parts of a copy a node sends: the shortest (one worker tick), and the
   * longest its pacer (runtime/copy-pacer.ts) widens it to while its foreground writes are slow,
   * so that a copy still progresses (256 KiB/s)
   */
  copyPartIntervalMsMin: 50,
  copyPartIntervalMsMax: 1_000,
  /** a write that cannot gather its copies in this time is answered OUTCOME_UNKNOWN */
  replicationTimeoutMs: 5_000,
  /**
   * a partition worker's shared board of its replicas' positions, which its node's coordinator
   * samples (actors/positions-board.ts); positions that do not fit are asked for by message instead
   */
  positionsBoardBytesMax: 64 * KiB,
  /** bytes queued towards one peer node (while its link is down or slow); full → dropped and counted */
  peerQueueBytesMax: 64 * MiB,
  /**
   * a leaving node (SIGTERM) waits this long for its replicas to move before it stops anyway:
   * copies yield to the foreground (copy part interval), so a busy node moves as little as
   * 256 KiB/s (150 MB in 10 min); a 1M-key leave, 316 MB, took 58 s at full pace on 2 cores. A
   * supervisor's stop timeout should exceed it; a second SIGINT stops at once
   */
  leaveHandOffMs: 600_000,
  /** a group member missing heartbeats this long is removed; members choose within these bounds */
  groupSessionTimeoutMsMin: 200,
  groupSessionTimeoutMsDefault: 1_000,
  groupSessionTimeoutMsMax: 3_000,
  /** how often a group coordinator looks for expired members and grants released partitions */
  groupTickMs: 25,
  /** members in one group; more → OVERLOADED */
  groupMembersMax: 1_000,
  /** groups with members coordinated by one node; more → OVERLOADED */
  groupsCoordinatedMax: 10_000,
  /** how long a request waits for a partition without a reachable leader to fail over */
  failoverWaitMs: 2_000,
  /** a request forwarded to a partition's leader on another node */
  forwardTimeoutMs: 10_000,
  /** a stopping node waits this long for the WebSocket requests in flight (a forwarded one included) to be answered */
  shutdownDrainMs: 11_000,
  /** verified tokens remembered (by fingerprint) so that scrypt runs once per token; least recently used goes */
  verifiedTokensMax: 10_000,
  /** scrypt verifications running at once; more → UNAUTHENTICATED at once (a flood of wrong secrets stays cheap) */
  tokenVerificationsMax: 4,
  /** refused requests logged per second (all edges); past it they are only counted, and the next line says how many */
  authRefusalLogLinesPerSecondMax: 10,
  /**
   * how often the node looks at the free space under its data dir (storage/disk-guard.ts); a
   * multiple of a cluster node's 100 ms check, so the look shares that wake-up instead of its own
   */
  diskCheckIntervalMs: 200,
  /** the background sweeper deletes at most this many expired keys per partition per pass */
  ttlSweepKeysMax: 10_000,
  /**
   * RocksDB memtable budget of one column family (a partition), outside memory.maxBytes: 1/16 of
   * it, within these bounds (storage/rocks.ts memtableBudgetBytes). A family holds up to 1.5× its
   * budget in memtables (six write buffers of a quarter) while flushes lag, ¾ when they keep up
   */
  memtableBudgetBytesMin: 16 * MiB,
  memtableBudgetBytesMax: 64 * MiB,
  /** RocksDB block cache of one column family, a share of its memtable budget (each family has its own) */
  blockCacheShareOfMemtable: 1 / 8,
  /** a msgpack buffer grown past this by one large message is dropped rather than kept for the thread's life */
  packBufferKeptBytesMax: 1 * MiB,
  /** a worker's RocksDB write batch that held more than this is replaced rather than cleared (clearing keeps its capacity) */
  writeBatchKeptBytesMax: 4 * MiB,
  /** V8 heap of each parse-pool thread: a 20 MB body needs ≈ 3× its size while parsed; garbage past this is collected */
  parseThreadHeapMb: 96,
  /** group names one GET /v1/groups lists (each partition is asked for at most this many) */
  groupNamesMax: 1_000,
  /** the web console's built files, held in memory by the gateway: a build past these is refused at start */
  consoleFilesMax: 32,
  consoleBytesMax: 4 * MiB,
} as const;

export type Limits = typeof limits;

/** Relations between limits; a broken one is a programming error, caught at start. */
export function checkLimits(l: Limits = limits): void {
  const rules: Array<[boolean, string]> = [
    [l.batchBytesMax < 20 * 1000 * 1000, 'batchBytesMax must stay under 20 MB'],
    [l.frameBytesMax > l.batchBytesMax, 'frameBytesMax must hold a full batch'],
    [l.httpBodyBytesMax > l.batchBytesMax, 'httpBodyBytesMax must hold a full batch'],
    [l.valueBytesMax <= l.batchBytesMax, 'a value must fit in a batch'],
    [l.recordBytesMax <= l.batchBytesMax, 'a record must fit in a batch'],
    [l.fetchBytesMax <= l.wsBackpressureBytesMax, 'a fetch must fit the socket buffer'],
    [l.scanBytesMax + l.keyBytesMax + l.valueBytesMax < l.frameBytesMax && 6 * (l.scanBytesMax + l.keyBytesMax + l.valueBytesMax) <= l.cliAnswerBytesMax, 'a scan page must fit a frame and the CLI'],
    [l.subscriberCreditBytesMax <= l.wsBackpressureBytesMax, 'credit must fit the socket buffer'],
    [l.workerInFlightBytesMax >= l.batchBytesMax, 'a worker must accept one full batch'],
    [l.connectionInFlightMax <= l.workerInFlightMax, 'one connection cannot fill a worker alone'],
    [l.wsPushPauseBytes < l.wsBackpressureBytesMax, 'pushes must pause before the socket limit'],
    [l.wsPushPauseBytes + l.wsConnectionCreditBytes + l.subscriptionsPerConnectionMax * l.wsSubscriptionCreditFloorBytes < l.wsBackpressureBytesMax, 'credit in the node must fit the socket buffer above the pause mark'],
    [l.connectionInFlightBytesMax >= l.frameBytesMax, 'a connection must accept one full frame'],
    [l.unconfirmedBytesMax >= 2 * l.batchBytesMax, 'a leader must hold a full batch and the value it replaces unconfirmed'],
    [l.shutdownDrainMs > l.forwardTimeoutMs, 'a stopping node must outwait a forwarded request'],
    [l.memtableBudgetBytesMin <= l.memtableBudgetBytesMax, 'memtable budget bounds in order'],
    [l.parseThreadHeapMb * MiB >= 4 * l.httpBodyBytesMax, 'a parse thread must hold a full body, its text and its values'],
  ];
  for (const [ok, why] of rules) if (!ok) throw new Error(`limits: ${why}`);
}
