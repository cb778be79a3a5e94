// The Kafka bridge: consumes Chicago topics (as a consumer group, over the public HTTP API) and
// produces them to Kafka with kafkajs.
//
// One delivery round: fetch from every assigned Chicago partition (bounded bytes), turn records
// into Kafka records (topic routing, partition, headers), send oversize ones to the dead-letter
// topic, then in exactly-once mode one Kafka transaction carries the records AND each partition's
// new checkpoint (next offset + task sequences) to a compacted topic. Only after the commit does
// the bridge advance its in-memory position and commit the Chicago group offset (which lets
// `untilGroup` retention trim). Any Kafka failure → abort, back off, then recover exactly as at a
// restart: a fresh transactional producer (which fences and aborts any older transaction with the
// same id), a probe record, and a read_committed scan of the checkpoints: Kafka alone says what
// was delivered, so a crash or an unknown commit outcome can neither lose nor repeat a record.
//
// At-least-once mode uses an idempotent, non-transactional producer: records, then checkpoints,
// then the Chicago commit. After a crash, records sent after the last checkpoint are sent again
// (same chicago-topic/partition/offset and seq headers, so consumers can drop them).
import assert from 'node:assert/strict';
import kafkajs from 'kafkajs';
import type { Logger } from 'pino';
import { ChicagoHttp, ChicagoHttpError, type ChicagoRecord } from './chicago.js';
import { type Checkpoint, checkpointKey, checkpointValue, newProbe, partKey, probeKey, readCheckpoints } from './checkpoint.js';
import { type BridgeConfig, BridgeConfigError, globMatches } from './config.js';
import { BridgeMetrics } from './metrics.js';
import { type OutMessage, TaskSeqs, chunk, estimateBytes, mappingFor, recordBytesMax, toKafka } from './route.js';
import { resolveToken, TokenFileError } from '../client/token.js';
import { CaFileError, readCa } from '../client/tls.js';

export type BridgeState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

interface Part {
  readonly topic: string;
  readonly partition: number;
  /** next Chicago offset to deliver; never goes back except when recovery re-reads Kafka */
  next: number;
  /** last offset committed to the Chicago group; -1 before the first commit */
  committed: number;
  seqs: TaskSeqs;
  /** a long-poll for this partition is in flight */
  polling: boolean;
  lagRecords: number;
  lagSeconds: number;
  alert: boolean;
}

export interface PartitionLag {
  topic: string;
  partition: number;
  next: number;
  endOffset: number;
  lagRecords: number;
  lagSeconds: number;
  alert: boolean;
}

/** a failure that retrying cannot fix (another bridge took over, bad configuration) */
export class BridgeFatalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BridgeFatalError';
  }
}

const CHECKPOINT_READ_TIMEOUT_MS = 60_000;
/** smallest fetch per partition, so one record of any allowed size can still come through */
const FETCH_BYTES_MIN = 64 * 1024;
const FETCH_BYTES_MAX = 16 * 1024 * 1024;

export class Bridge {
  readonly metrics: BridgeMetrics;
  private state: BridgeState = 'new';
  private readonly chicago: ChicagoHttp;
  private readonly kafka: kafkajs.Kafka;
  private admin: kafkajs.Admin | undefined;
  private producer: kafkajs.Producer | undefined;
  private readonly parts = new Map<string, Part>();
  /** checkpoints read at the last recovery, for partitions discovered later */
  private checkpoints = new Map<string, Checkpoint>();
  private readonly kafkaPartitions = new Map<string, number>();
  private lastRefreshMs = 0;
  private loopDone: Promise<void> | undefined;
  private readonly stopCtl = new AbortController();
  private lagTimer: NodeJS.Timeout | undefined;
  private lagRunning = false;
  private endOffsets = new Map<string, number>();

  constructor(
    readonly config: BridgeConfig,
    private readonly log: Logger,
    metrics?: BridgeMetrics,
  ) {
    this.metrics = metrics ?? new BridgeMetrics(config.group);
    this.chicago = new ChicagoHttp(config.chicago.url, config.chicago.requestTimeoutMs, ...chicagoCredentials(config));
    this.kafka = new kafkajs.Kafka({
      clientId: config.kafka.clientId,
      brokers: config.kafka.brokers,
      // kafkajs retries inside one call without telling the caller: its warnings and errors go to
      // the debug log (`logLevel: debug`), which is where a round's hidden retries show up.
      logLevel: kafkajs.logLevel.WARN,
      logCreator: () => ({ namespace, log: entry }) => {
        const { message, timestamp: _t, logger: _l, ...extra } = entry;
        this.log.debug({ kafkajs: namespace, ...extra }, `kafkajs: ${String(message)}`);
      },
      connectionTimeout: 3_000,
      requestTimeout: 30_000,
      retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 },
    });
  }

  get status(): BridgeState { return this.state; }
  get transactionalId(): string { return `chicago-bridge.${this.config.group}`; }

  /** Starts the delivery loop; resolves once it runs. `done()` settles when it ends. */
  async start(): Promise<void> {
    assert.equal(this.state, 'new', 'a bridge starts once');
    this.state = 'starting';
    this.log.info({ config: this.config }, 'bridge starting with resolved config');
    this.loopDone = this.loop().then(
      () => { this.state = 'stopped'; },
      (e: unknown) => { this.state = 'failed'; throw e; },
    );
    this.loopDone.catch(() => undefined); // observed through done()
    this.lagTimer = setInterval(() => void this.updateLag(), this.config.lag.intervalMs);
    this.lagTimer.unref();
  }

  done(): Promise<void> {
    assert.ok(this.loopDone, 'bridge not started');
    return this.loopDone;
  }

  /** Stops after the current round (a transaction in progress completes or aborts). */
  async stop(): Promise<void> {
    if (this.state === 'new') { this.state = 'stopped'; return; }
    if (this.state === 'stopped' || this.state === 'failed') return;
    this.state = 'stopping';
    this.stopCtl.abort();
    if (this.lagTimer) clearInterval(this.lagTimer);
    await this.loopDone?.catch(() => undefined);
    await this.producer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
    this.log.info('bridge stopped');
  }

  lag(): PartitionLag[] {
    return [...this.parts.values()].map((p) => ({
      topic: p.topic, partition: p.partition, next: p.next,
      endOffset: this.endOffsets.get(partKey(p.topic, p.partition)) ?? p.next,
      lagRecords: p.lagRecords, lagSeconds: p.lagSeconds, alert: p.alert,
    }));
  }

  private get stopping(): boolean { return this.stopCtl.signal.aborted; }

  // ------------------------------------------------------------------ the loop

  private async loop(): Promise<void> {
    let backoffMs = this.config.retry.initialMs;
    let needRecover = true;
    while (!this.stopping) {
      let stage = 'recover';
      try {
        if (needRecover) {
          await this.recover();
          needRecover = false;
          if (this.state === 'starting') this.state = 'running';
        }
        stage = 'chicago';
        await this.refreshIfDue();
        const round = await this.fetchRound();
        if (round.length === 0) continue;
        stage = 'deliver';
        await this.deliver(round);
        backoffMs = this.config.retry.initialMs;
      } catch (e) {
        if (e instanceof BridgeFatalError) {
          this.log.fatal({ err: errInfo(e) }, 'bridge cannot continue');
          throw e;
        }
        if (this.stopping) break;
        // Fenced: a newer producer with our transactional id exists (another bridge of this group,
        // or the coordinator timed our transaction out). Recovery re-reads Kafka either way, so
        // nothing is lost or repeated; two bridges of one group only slow each other down.
        if (isFenced(e)) this.log.error({ transactionalId: this.transactionalId }, 'producer fenced; is another bridge of this group running?');
        this.metrics.retries.inc({ stage });
        if (stage !== 'chicago') {
          needRecover = true;
          this.metrics.kafkaUp.set(0);
        }
        this.log.warn({ stage, err: errInfo(e), retryInMs: backoffMs }, 'bridge round failed; retrying');
        await sleep(backoffMs * (0.5 + Math.random() / 2), this.stopCtl.signal);
        backoffMs = Math.min(backoffMs * 2, this.config.retry.maxMs);
      }
    }
  }

  /** Re-establishes the truth from Kafka, exactly as after a restart. */
  private async recover(): Promise<void> {
    const c = this.config;
    await this.producer?.disconnect().catch(() => undefined);
    this.producer = undefined;
    if (!this.admin) {
      const admin = this.kafka.admin();
      await admin.connect();
      this.admin = admin;
    }
    await this.ensureCheckpointTopic();
    const eos = c.mode === 'exactly-once';
    const producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: kafkajs.Partitioners.DefaultPartitioner,
      retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2_000 },
      ...(eos ? { transactionalId: this.transactionalId, transactionTimeout: c.kafka.transactionTimeoutMs } : {}),
    });
    // For a transactional producer, connecting runs InitProducerId: it bumps the epoch (fencing an
    // older bridge with the same id) and aborts or completes that bridge's open transaction.
    await producer.connect();
    this.producer = producer;
    const probe = newProbe();
    const probeMsg = { topic: c.kafka.checkpointTopic, messages: [{ key: probeKey(c.group), value: probe, partition: 0 }], acks: -1 };
    if (eos) {
      const tx = await producer.transaction();
      try {
        await tx.send(probeMsg);
        await tx.commit();
      } catch (e) {
        await tx.abort().catch(() => undefined);
        throw e;
      }
    } else {
      await producer.send(probeMsg);
    }
    this.checkpoints = await readCheckpoints(this.kafka, c.kafka.checkpointTopic, c.group, probe, CHECKPOINT_READ_TIMEOUT_MS);
    this.metrics.kafkaUp.set(1);
    // Every known partition goes back to what Kafka says was delivered.
    for (const p of this.parts.values()) await this.position(p);
    this.log.info({ checkpoints: this.checkpoints.size, partitions: this.parts.size, mode: c.mode }, 'bridge positions recovered from Kafka');
  }

  private async ensureCheckpointTopic(): Promise<void> {
    const c = this.config;
    const admin = this.admin!;
    const topic = c.kafka.checkpointTopic;
    const meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
    const have = meta?.topics.find((t) => t.name === topic);
    if (!have) {
      if (!c.kafka.createTopics.enabled) throw new BridgeFatalError(`checkpoint topic ${topic} does not exist and kafka.createTopics.enabled is false`);
      await admin.createTopics({
        waitForLeaders: true,
        topics: [{
          topic,
          numPartitions: 1,
          replicationFactor: c.kafka.createTopics.replicationFactor,
          configEntries: [
            { name: 'cleanup.policy', value: 'compact' },
            { name: 'segment.ms', value: '600000' },
            { name: 'min.cleanable.dirty.ratio', value: '0.1' },
          ],
        }],
      });
      this.log.info({ topic }, 'created compacted checkpoint topic');
    } else if (have.partitions.length !== 1) {
      throw new BridgeFatalError(`checkpoint topic ${topic} has ${have.partitions.length} partitions; it needs exactly 1`);
    }
  }

  /** Sets a partition's position: its Kafka checkpoint, else the Chicago group offset, else `start`. */
  private async position(p: Part): Promise<void> {
    const ck = this.checkpoints.get(partKey(p.topic, p.partition));
    if (ck) {
      p.next = ck.next;
      p.seqs = new TaskSeqs(this.config.limits.tasksPerPartitionMax, Object.entries(ck.seqs));
      return;
    }
    p.seqs = new TaskSeqs(this.config.limits.tasksPerPartitionMax);
    const offsets = await this.chicago.groupOffsets(this.config.group, p.topic);
    const committed = offsets.find((o) => o.topic === p.topic && o.partition === p.partition);
    if (committed) {
      p.next = committed.offset;
      p.committed = committed.offset;
      this.log.warn({ topic: p.topic, partition: p.partition, offset: p.next }, 'no Kafka checkpoint; starting at the Chicago group offset');
      return;
    }
    const info = await this.chicago.describeTopic(p.topic);
    const pi = info.partitions.find((x) => x.partition === p.partition);
    p.next = this.config.start === 'latest' ? (pi?.endOffset ?? 0) : (pi?.startOffset ?? 0);
  }

  /** Lists Chicago topics matching the mappings; new partitions join, gone topics leave. */
  private async refreshIfDue(): Promise<void> {
    const now = Date.now();
    if (now - this.lastRefreshMs < this.config.refreshMs && this.parts.size > 0) return;
    this.lastRefreshMs = now;
    const c = this.config;
    await this.chicago.createTopic(c.deadLetter.topic, c.deadLetter.partitions);
    const names = (await this.chicago.listTopics()).filter(
      (t) => t !== c.deadLetter.topic && c.mappings.some((m) => globMatches(m.chicago, t)),
    );
    const seen = new Set<string>();
    for (const topic of names) {
      let info;
      try {
        info = await this.chicago.describeTopic(topic);
      } catch (e) {
        if (e instanceof ChicagoHttpError && e.status === 404) continue;
        throw e;
      }
      for (const pi of info.partitions) {
        const id = partKey(topic, pi.partition);
        seen.add(id);
        this.endOffsets.set(id, pi.endOffset);
        if (this.parts.has(id)) continue;
        const p: Part = {
          topic, partition: pi.partition, next: 0, committed: -1, seqs: new TaskSeqs(c.limits.tasksPerPartitionMax),
          polling: false, lagRecords: 0, lagSeconds: 0, alert: false,
        };
        await this.position(p);
        this.parts.set(id, p);
        this.log.info({ topic, partition: pi.partition, from: p.next }, 'bridging Chicago partition');
      }
    }
    for (const [id, p] of this.parts) {
      if (seen.has(id)) continue;
      this.parts.delete(id);
      this.log.warn({ topic: p.topic, partition: p.partition }, 'Chicago partition gone; no longer bridged');
    }
  }

  /** Records from every partition (bounded bytes); waits up to fetchWaitMs when there are none. */
  private async fetchRound(): Promise<Array<{ part: Part; records: ChicagoRecord[]; next: number }>> {
    const parts = [...this.parts.values()];
    if (parts.length === 0) {
      await sleep(Math.min(this.config.refreshMs, 1_000), this.stopCtl.signal);
      return [];
    }
    const lim = this.config.limits;
    const perPart = Math.min(FETCH_BYTES_MAX, Math.max(FETCH_BYTES_MIN, Math.floor(lim.roundBytesMax / parts.length)));
    const got = await Promise.all(parts.map(async (part) => {
      try {
        const r = await this.chicago.fetch(part.topic, part.partition, part.next, lim.fetchMaxRecords, perPart, 0);
        return { part, records: r.records, next: r.nextOffset };
      } catch (e) {
        await this.onFetchError(part, e);
        return { part, records: [] as ChicagoRecord[], next: part.next };
      }
    }));
    const withRecords = got.filter((g) => g.records.length > 0);
    if (withRecords.length > 0 || lim.fetchWaitMs === 0) return withRecords;
    // Nothing anywhere: long-poll every partition and come back as soon as one has records.
    await new Promise<void>((wake) => {
      const signal = this.stopCtl.signal;
      const resolve = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', resolve);
        wake();
      };
      const timer = setTimeout(resolve, lim.fetchWaitMs + 50);
      signal.addEventListener('abort', resolve, { once: true });
      let pending = 0;
      for (const part of parts) {
        if (part.polling) continue;
        part.polling = true;
        pending++;
        const at = part.next;
        this.chicago.fetch(part.topic, part.partition, at, 1, FETCH_BYTES_MIN, lim.fetchWaitMs).then(
          (r) => { if (r.records.length > 0) resolve(); },
          () => undefined,
        ).finally(() => {
          part.polling = false;
          if (--pending === 0) resolve();
        });
      }
      if (pending === 0) resolve();
    });
    return [];
  }

  private async onFetchError(part: Part, e: unknown): Promise<void> {
    if (e instanceof ChicagoHttpError && e.status === 416) {
      // The position is outside what Chicago holds: retention removed records before delivery
      // (jump to the start, counting the loss), or the position is past the end.
      const info = await this.chicago.describeTopic(part.topic);
      const pi = info.partitions.find((x) => x.partition === part.partition);
      if (!pi) return;
      if (part.next < pi.startOffset) {
        this.metrics.skipped.inc({ topic: part.topic }, pi.startOffset - part.next);
        this.log.error({ topic: part.topic, partition: part.partition, from: part.next, to: pi.startOffset },
          'records were removed by Chicago retention before delivery; skipping them');
        part.next = pi.startOffset;
      } else if (part.next > pi.endOffset) {
        this.log.error({ topic: part.topic, partition: part.partition, next: part.next, end: pi.endOffset },
          'position is past the end of the Chicago partition; waiting for it to catch up');
      }
      return;
    }
    if (e instanceof ChicagoHttpError && e.status === 404) {
      this.lastRefreshMs = 0; // topic deleted: the next refresh drops it
      return;
    }
    throw e;
  }

  // ------------------------------------------------------------------ delivery

  private async kafkaPartitionCount(topic: string): Promise<number> {
    const known = this.kafkaPartitions.get(topic);
    if (known !== undefined) return known;
    const admin = this.admin!;
    const c = this.config.kafka;
    let meta = await admin.fetchTopicMetadata({ topics: [topic] }).catch(() => undefined);
    if (!meta?.topics[0]?.partitions.length) {
      if (!c.createTopics.enabled) throw new BridgeFatalError(`Kafka topic ${topic} does not exist and kafka.createTopics.enabled is false`);
      await admin.createTopics({
        waitForLeaders: true,
        topics: [{ topic, numPartitions: c.createTopics.partitions, replicationFactor: c.createTopics.replicationFactor }],
      });
      this.log.info({ topic }, 'created Kafka topic');
      meta = await admin.fetchTopicMetadata({ topics: [topic] });
    }
    const n = meta.topics[0]!.partitions.length;
    assert.ok(n > 0, `Kafka topic ${topic} has no partitions`);
    this.kafkaPartitions.set(topic, n);
    return n;
  }

  private async deliver(round: Array<{ part: Part; records: ChicagoRecord[]; next: number }>): Promise<void> {
    const t0 = process.hrtime.bigint();
    const c = this.config;
    const eos = c.mode === 'exactly-once';
    const cap = recordBytesMax(c.limits.maxRequestBytes);
    const out: OutMessage[] = [];
    const deadLetters: Array<{ key?: string; value: string; headers: Record<string, string> }> = [];
    const deadByTopic = new Map<string, number>();
    const advanced: Array<{ part: Part; next: number; seqs: TaskSeqs }> = [];
    const now = Date.now();

    // Partition counts of every routed topic, before building (the routing needs them).
    for (const { part, records } of round) {
      const m = mappingFor(c.mappings, part.topic);
      if (!m) continue;
      const topics = new Set(records.map((r) => toKafkaTopicOnly(m, part.topic, r)));
      for (const t of topics) await this.kafkaPartitionCount(t);
    }

    for (const { part, records, next } of round) {
      const m = mappingFor(c.mappings, part.topic);
      assert.ok(m, `partition of ${part.topic} is bridged without a mapping`);
      const seqs = part.seqs.clone();
      let expect = part.next;
      for (const r of records) {
        assert.ok(r.offset >= expect, `Chicago offsets go forward: got ${r.offset} after ${expect} in ${part.topic}/${part.partition}`);
        expect = r.offset + 1;
        const msg = toKafka(m, part.topic, r, seqs, (t) => this.kafkaPartitions.get(t) ?? 1);
        if (msg.bytes > cap) {
          deadLetters.push(deadLetter(part.topic, r, `record is ${msg.bytes} bytes in Kafka; limits.maxRequestBytes allows ${cap}`));
          deadByTopic.set(part.topic, (deadByTopic.get(part.topic) ?? 0) + 1);
          continue;
        }
        out.push(msg);
      }
      const newNext = Math.max(expect, next);
      assert.ok(newNext >= part.next, 'a position never goes back');
      advanced.push({ part, next: newNext, seqs });
    }
    // The checkpoints ride in the same requests (and transaction) as the records.
    for (const a of advanced) {
      const key = Buffer.from(checkpointKey(c.group, a.part.topic, a.part.partition));
      const value = Buffer.from(checkpointValue(a.next, a.seqs.toJSON(), now));
      out.push({ topic: c.kafka.checkpointTopic, partition: 0, key, value, headers: {}, timestamp: String(now), bytes: estimateBytes(key, value, {}), offset: a.next });
    }

    // Dead letters first: they exist in Chicago before the position moves past them.
    if (deadLetters.length > 0) await this.chicago.produce(c.deadLetter.topic, deadLetters);

    const requests = chunk(out, c.limits.maxRequestBytes);
    const producer = this.producer!;
    if (eos) {
      const tx = await producer.transaction();
      try {
        for (const req of requests) await sendByPartition(tx, req);
        await tx.commit();
      } catch (e) {
        await tx.abort().catch(() => undefined);
        this.metrics.rounds.inc({ outcome: 'aborted' });
        throw e;
      }
    } else {
      for (const req of requests) await sendByPartition(producer, req);
    }
    this.metrics.rounds.inc({ outcome: 'committed' });
    this.metrics.kafkaUp.set(1);
    for (const req of requests) this.metrics.requestBytes.observe(req.reduce((n, m) => n + m.bytes, 0));

    // Kafka has them: move on, then let Chicago know (its retention may now trim them).
    for (const a of advanced) {
      a.part.next = a.next;
      a.part.seqs = a.seqs;
      this.metrics.position.set({ topic: a.part.topic, partition: String(a.part.partition) }, a.next);
    }
    for (const m of out) {
      if (m.topic === c.kafka.checkpointTopic) continue;
      this.metrics.delivered.inc({ topic: m.topic });
      this.metrics.deliveredBytes.inc({ topic: m.topic }, m.value.length + (m.key?.length ?? 0));
    }
    for (const [topic, n] of deadByTopic) this.metrics.deadLettered.inc({ topic, reason: 'oversize' }, n);
    if (deadLetters.length > 0) this.log.warn({ count: deadLetters.length, topic: c.deadLetter.topic }, 'oversize records sent to the dead-letter topic');
    this.metrics.roundSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    await this.commitChicago(advanced.map((a) => a.part));
  }

  /** Commits delivered positions to the Chicago group; a failure is retried on the next round. */
  private async commitChicago(parts: Part[]): Promise<void> {
    await Promise.all(parts.map(async (p) => {
      if (p.committed === p.next) return;
      const next = p.next;
      try {
        await this.chicago.commit(this.config.group, p.topic, p.partition, next);
        p.committed = Math.max(p.committed, next);
      } catch (e) {
        this.log.warn({ topic: p.topic, partition: p.partition, err: errInfo(e) }, 'Chicago group commit failed; retried later');
      }
    }));
  }

  // ------------------------------------------------------------------ lag

  private async updateLag(): Promise<void> {
    if (this.lagRunning || this.parts.size === 0) return;
    this.lagRunning = true;
    try {
      const c = this.config;
      const byTopic = new Map<string, Part[]>();
      for (const p of this.parts.values()) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p]);
      // Positions that are delivered but not yet committed to Chicago are committed here too.
      await this.commitChicago([...this.parts.values()]);
      for (const [topic, parts] of byTopic) {
        const info = await this.chicago.describeTopic(topic);
        for (const p of parts) {
          const pi = info.partitions.find((x) => x.partition === p.partition);
          if (!pi) continue;
          this.endOffsets.set(partKey(topic, p.partition), pi.endOffset);
          p.lagRecords = Math.max(0, pi.endOffset - Math.max(p.next, pi.startOffset));
          p.lagSeconds = 0;
          if (p.lagRecords > 0) {
            const r = await this.chicago.fetch(topic, p.partition, Math.max(p.next, pi.startOffset), 1, FETCH_BYTES_MIN, 0).catch(() => undefined);
            const oldest = r?.records[0];
            if (oldest) p.lagSeconds = Math.max(0, (Date.now() - oldest.timestamp) / 1000);
          }
          const labels = { topic, partition: String(p.partition) };
          this.metrics.lagRecords.set(labels, p.lagRecords);
          this.metrics.lagSeconds.set(labels, p.lagSeconds);
          const alert = p.lagRecords >= c.lag.alertRecords || p.lagSeconds >= c.lag.alertSeconds;
          if (alert && !p.alert) this.log.warn({ topic, partition: p.partition, lagRecords: p.lagRecords, lagSeconds: p.lagSeconds }, 'bridge lag over threshold');
          if (!alert && p.alert) this.log.info({ topic, partition: p.partition }, 'bridge lag back under threshold');
          p.alert = alert;
          this.metrics.lagAlert.set(labels, alert ? 1 : 0);
        }
      }
    } catch (e) {
      this.log.debug({ err: errInfo(e) }, 'lag update failed');
    } finally {
      this.lagRunning = false;
    }
  }
}

function toKafkaTopicOnly(m: NonNullable<ReturnType<typeof mappingFor>>, topic: string, r: ChicagoRecord): string {
  return m.kafka.includes('${') ? toKafka(m, topic, r, new TaskSeqs(1), () => 1).topic : m.kafka;
}

function toTopicMessages(msgs: OutMessage[]): kafkajs.TopicMessages[] {
  const byTopic = new Map<string, kafkajs.Message[]>();
  for (const m of msgs) {
    let list = byTopic.get(m.topic);
    if (!list) byTopic.set(m.topic, (list = []));
    list.push({
      key: m.key, value: m.value, headers: m.headers, timestamp: m.timestamp,
      ...(m.partition !== undefined ? { partition: m.partition } : {}),
    });
  }
  return [...byTopic].map(([topic, messages]) => ({ topic, messages }));
}

/**
 * Sends one request as one kafkajs `sendBatch` per Kafka partition, side by side, and returns once
 * every one has settled (then the first failure is thrown, so an abort never races a send).
 *
 * kafkajs 2.2.4's produce retry is only safe for a call that reaches a single broker. When the part
 * of a call for one broker fails (a stopped broker, NOT_LEADER, CONCURRENT_TRANSACTIONS from
 * AddPartitionsToTxn) while the part for another broker is still in flight, the retry sends that
 * other part again as soon as its first copy is acknowledged, with the next sequence numbers: Kafka
 * cannot tell it from new records, both copies are in the transaction and the commit makes both
 * visible (test/long/bridge-rf3.test.ts: batches of 110 records twice, same producer id and epoch,
 * sequences 1187–1296 then 1297–1406). The retry can also skip a partition whose leader moved to a
 * broker that already answered (which checkWritten catches). One partition is one leader: a retry
 * then re-sends only what failed, with the same sequence numbers, which Kafka deduplicates.
 */
export async function sendByPartition(sender: Pick<kafkajs.Producer, 'sendBatch'>, req: readonly OutMessage[]): Promise<void> {
  const byPartition = new Map<string, OutMessage[]>();
  for (const m of req) {
    assert.ok(m.partition !== undefined, `a bridged record for ${m.topic} has no explicit Kafka partition`);
    const id = `${m.topic}/${m.partition}`;
    let list = byPartition.get(id);
    if (!list) byPartition.set(id, (list = []));
    list.push(m);
  }
  const settled = await Promise.allSettled([...byPartition.values()].map(async (msgs) =>
    checkWritten(msgs, await sender.sendBatch({ topicMessages: toTopicMessages(msgs), acks: -1 }))));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * kafkajs leaves out, without an error, the messages of any partition missing from its metadata
 * cache (e.g. a topic just created on a 3-broker cluster, before every broker knows all its
 * partitions): the transaction would then commit without them and the checkpoint would move past
 * them. Every (topic, partition) of the request must be in the produce response without an error;
 * otherwise the round fails, is aborted, and recovery retries it with fresh metadata.
 */
export function checkWritten(req: readonly OutMessage[], written: kafkajs.RecordMetadata[]): void {
  const ok = new Set(written.filter((w) => w.errorCode === 0).map((w) => `${w.topicName}/${w.partition}`));
  const missing = new Set<string>();
  for (const m of req) {
    const id = `${m.topic}/${m.partition ?? '?'}`;
    if (!ok.has(id)) missing.add(id);
  }
  if (missing.size > 0) throw new Error(`Kafka did not acknowledge partitions ${[...missing].slice(0, 10).join(', ')} of the request (stale producer metadata?)`);
}

function deadLetter(topic: string, r: ChicagoRecord, reason: string): { key?: string; value: string; headers: Record<string, string> } {
  const utf8 = isUtf8(r.value);
  return {
    ...(r.key ? { key: r.key.toString('utf8') } : {}),
    value: utf8 ? r.value.toString('utf8') : r.value.toString('base64'),
    headers: {
      ...r.headers,
      'dead-letter-reason': reason,
      'chicago-topic': topic,
      'chicago-partition': String(r.partition),
      'chicago-offset': String(r.offset),
      timestamp: String(r.timestamp),
      ...(utf8 ? {} : { 'value-encoding': 'base64' }),
    },
  };
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });
function isUtf8(b: Buffer): boolean {
  try { utf8Strict.decode(b); return true; } catch { return false; }
}

function isFenced(e: unknown): boolean {
  const t = (e as { type?: string } | undefined)?.type;
  return t === 'PRODUCER_FENCED' || t === 'INVALID_PRODUCER_EPOCH' || t === 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED';
}

function errInfo(e: unknown): { message: string; type?: string; code?: string } {
  const err = e as { message?: string; type?: string; code?: string };
  return { message: err?.message ?? String(e), ...(err?.type ? { type: err.type } : {}), ...(err?.code ? { code: err.code } : {}) };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); resolve(); };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** chicago.token / tokenFile and chicago.caFile; a file that cannot be read is a configuration error (exit 78). */
function chicagoCredentials(config: BridgeConfig): [string | undefined, string | undefined] {
  try {
    return [resolveToken({ token: config.chicago.token, tokenFile: config.chicago.tokenFile }), readCa(config.chicago.caFile)];
  } catch (err) {
    if (err instanceof TokenFileError) throw new BridgeConfigError(`bridge config: chicago.tokenFile: ${err.message}`);
    if (err instanceof CaFileError) throw new BridgeConfigError(`bridge config: chicago.caFile: ${err.message}`);
    throw err;
  }
}
