// The consumer group coordinator of one node: the node that leads a group's home partition
// (groupPartition) coordinates the group, in memory. Other nodes forward group requests to it like
// any partition request. Decisions are groups.ts's; this file holds the clock, the tick timer and
// the fenced commit writes.
//
// After it becomes leader of a home partition the node grants no partition for
// groupSessionTimeoutMsMax: every member of the previous coordinator has stopped reading by then
// (a member stops when it has not renewed its session for its sessionTimeoutMs), so a failover
// never hands one partition to two live members. Generations start at epoch × 2^21, so they grow
// across failovers too.
import { randomUUID } from 'node:crypto';
import type pino from 'pino';
import { ChicagoError } from '../runtime/errors.js';
import { limits } from '../runtime/limits.js';
import { memberId, type MemberId } from '../runtime/ids.js';
import type { GroupRequest } from '../actors/messages.js';
import type { GroupDescription } from '../protocol/api.js';
import { commitRefusal, emptyGroup, parsePartitionKey, partitionKey, step, type GroupEvent, type GroupReply, type GroupState, type MemberView, type PartitionKey } from './groups.js';

/** generations of one leadership epoch fit below the next epoch's first */
const GENERATIONS_PER_EPOCH = 2 ** 21;


export interface GroupCoordinatorDeps {
  log: pino.Logger;
  now(): number;
  /** does this node lead partition p now, and in which epoch */
  leadership(p: number): { leads: boolean; epoch: number };
  partitionsOf(topic: string): number;
  commit(group: string, topic: string, partition: number, offset: number): Promise<void>;
  /** removes every committed offset of the group; resolves with how many there were */
  deleteOffsets(group: string): Promise<number>;
}

interface Group { p: number; epoch: number; state: GroupState; busy: Map<PartitionKey, number> }

export class GroupCoordinator {
  private readonly groups = new Map<string, Group>();
  /** when this node last became leader of a home partition, per partition and epoch */
  private readonly leaderSince = new Map<number, { epoch: number; sinceMs: number }>();
  /** runs only while some group is coordinated here, so an idle node does not wake for it */
  private timer: NodeJS.Timeout | undefined;
  /** groups whose offsets are being deleted: a join waits for that, so no member starts from offsets about to go */
  private readonly deleting = new Map<string, Promise<number>>();

  private stopped = false;

  constructor(private readonly deps: GroupCoordinatorDeps, private readonly startedAtMs: number) {}

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private ensureTicking(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => this.tick(), limits.groupTickMs);
    this.timer.unref();
  }

  async handle(p: number, req: GroupRequest): Promise<Record<string, unknown>> {
    if (req.op === 'groupJoin') {
      // no await when nothing is being deleted: the join then creates its group in this same turn
      for (let d = this.deleting.get(req.group); d; d = this.deleting.get(req.group)) await d.catch(() => undefined);
    }
    const g = this.group(p, req.group, req.op === 'groupJoin');
    switch (req.op) {
      case 'groupJoin': {
        const sessionTimeoutMs = req.sessionTimeoutMs;
        if (!g) throw new ChicagoError('INTERNAL', 'no group after create');
        if (!(req.member !== undefined && g.state.members.has(memberId(req.member))) && g.state.members.size >= limits.groupMembersMax) {
          throw new ChicagoError('OVERLOADED', `group ${req.group}`, `${g.state.members.size} members`);
        }
        const partitions = this.partitionsOf(req.topics);
        return this.apply(req.group, g, { kind: 'join', member: memberId(req.member ?? randomUUID()), topics: req.topics, partitions, sessionTimeoutMs, nowMs: this.deps.now() });
      }
      case 'groupHeartbeat':
        if (!g) throw new ChicagoError('UNKNOWN_MEMBER', req.group, req.member);
        return this.apply(req.group, g, { kind: 'heartbeat', member: memberId(req.member), generation: req.generation, nowMs: this.deps.now(), ...this.partitionsNow(g.state.topics) });
      case 'groupLeave':
        if (!g) throw new ChicagoError('UNKNOWN_MEMBER', req.group, req.member);
        return this.apply(req.group, g, { kind: 'leave', member: memberId(req.member), nowMs: this.deps.now() });
      case 'groupDescribe':
        return { ...describe(req.group, g?.state, this.deps.now()) };
      case 'groupCommit': {
        if (!g) throw new ChicagoError('UNKNOWN_MEMBER', req.group, req.member);
        const key = partitionKey(req.topic, req.partition);
        const refused = commitRefusal(g.state, memberId(req.member), req.generation, key);
        if (refused) throw refused.code === 'FENCED' ? new ChicagoError('FENCED', req.group, refused.detail) : new ChicagoError('UNKNOWN_MEMBER', req.group, refused.detail);
        // While the write is in flight its partition is not granted to anyone else.
        g.busy.set(key, (g.busy.get(key) ?? 0) + 1);
        try {
          await this.deps.commit(req.group, req.topic, req.partition, req.offset);
        } finally {
          const n = (g.busy.get(key) ?? 1) - 1;
          if (n === 0) g.busy.delete(key);
          else g.busy.set(key, n);
        }
        return {};
      }
      case 'groupDelete':
        return { removed: await this.delete(req.group, g) };
    }
  }

  private partitionsOf(topics: string[]): PartitionKey[] {
    return topics.flatMap((t) => Array.from({ length: this.deps.partitionsOf(t) }, (_, i) => partitionKey(t, i)));
  }

  /** The group's partitions as the catalog has them now (a count may have grown); none while a topic is gone. */
  private partitionsNow(topics: string[]): { partitions?: PartitionKey[] } {
    try {
      return topics.length === 0 ? {} : { partitions: this.partitionsOf(topics) };
    } catch {
      return {};
    }
  }

  /** Kafka's rule: a group with live members is not deleted (they would commit again at once). */
  private async delete(name: string, g: Group | undefined): Promise<number> {
    if (g && g.state.members.size > 0) throw new ChicagoError('GROUP_NOT_EMPTY', name, g.state.members.size);
    this.groups.delete(name);
    const run = this.deps.deleteOffsets(name);
    this.deleting.set(name, run);
    try {
      const removed = await run;
      if (removed === 0) throw new ChicagoError('NOT_FOUND', `group ${name}`);
      return removed;
    } finally {
      if (this.deleting.get(name) === run) this.deleting.delete(name);
    }
  }

  private apply(name: string, g: Group, ev: GroupEvent): Record<string, unknown> {
    const r = step(g.state, ev);
    g.state = r.state;
    this.log(name, r.effects);
    return replyOf(name, r.reply);
  }

  private log(group: string, effects: ReturnType<typeof step>['effects']): void {
    for (const e of effects) {
      if (e.kind === 'removed') this.deps.log.info({ group, member: e.member, reason: e.reason }, 'group member removed');
    }
  }

  /** The group led here, created on join; a group whose home partition moved away (or came back in a new epoch) starts over. */
  private group(p: number, name: string, create: boolean): Group | undefined {
    const { leads, epoch } = this.deps.leadership(p);
    if (!leads) {
      this.groups.delete(name);
      throw new ChicagoError('NOT_LEADER', p, 'another node (group coordinator moved)');
    }
    let g = this.groups.get(name);
    if (g && g.epoch !== epoch) {
      this.groups.delete(name);
      g = undefined;
    }
    if (!g && create) {
      if (this.groups.size >= limits.groupsCoordinatedMax) throw new ChicagoError('OVERLOADED', 'group coordinator', `${this.groups.size} groups`);
      const since = this.since(p, epoch);
      g = { p, epoch, state: emptyGroup(epoch * GENERATIONS_PER_EPOCH, since + limits.groupSessionTimeoutMsMax), busy: new Map() };
      this.groups.set(name, g);
      this.ensureTicking();
    }
    return g;
  }

  private since(p: number, epoch: number): number {
    const known = this.leaderSince.get(p);
    if (known && known.epoch === epoch) return known.sinceMs;
    // First sight of this leadership: the node's start, when the partition has led here since then (epoch 1, single node).
    const sinceMs = epoch <= 1 ? this.startedAtMs : this.deps.now();
    this.leaderSince.set(p, { epoch, sinceMs });
    return sinceMs;
  }

  /** The node saw a partition's view change: remember when it started leading. */
  observeLeadership(p: number, leads: boolean, epoch: number): void {
    if (!leads) return void this.leaderSince.delete(p);
    const known = this.leaderSince.get(p);
    if (!known || known.epoch !== epoch) this.leaderSince.set(p, { epoch, sinceMs: this.deps.now() });
  }

  private tick(): void {
    const now = this.deps.now();
    for (const [name, g] of this.groups) {
      const { leads, epoch } = this.deps.leadership(g.p);
      if (!leads || epoch !== g.epoch) {
        this.groups.delete(name);
        continue;
      }
      const r = step(g.state, { kind: 'tick', nowMs: now, busy: new Set(g.busy.keys()) });
      g.state = r.state;
      this.log(name, r.effects);
      if (g.state.members.size === 0 && g.busy.size === 0) this.groups.delete(name);
    }
    if (this.groups.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }
}

function replyOf(group: string, r: GroupReply | undefined): Record<string, unknown> {
  if (!r) throw new ChicagoError('INTERNAL', 'group step without a reply');
  if (!r.ok) throw r.code === 'UNKNOWN_MEMBER' ? new ChicagoError('UNKNOWN_MEMBER', group, r.detail) : new ChicagoError('INVALID_ARGUMENT', 'topics', r.detail);
  return wireView(r.view);
}

export function wireView(v: MemberView): Record<string, unknown> {
  return { member: v.member, generation: v.generation, renewed: v.renewed, assigned: v.assigned.map(parsePartitionKey) };
}

function describe(group: string, s: GroupState | undefined, now: number): GroupDescription {
  if (!s) return { group, generation: 0, topics: [], members: [], unassigned: [] };
  const members = [...s.members.values()].sort((a, b) => (a.id < b.id ? -1 : 1)).map((m) => {
    const target = new Set(s.target.get(m.id) ?? []);
    const owned = [...s.owner].filter(([, o]) => o === m.id).map(([p]) => p).sort();
    return {
      member: m.id as string, sessionTimeoutMs: m.sessionTimeoutMs, lastSeenMsAgo: now - m.lastSeenMs,
      assigned: owned.filter((p) => target.has(p)).map(parsePartitionKey),
      revoking: owned.filter((p) => !target.has(p)).map(parsePartitionKey),
    };
  });
  return { group, generation: s.generation, topics: s.topics, members, unassigned: s.partitions.filter((p) => !s.owner.has(p)).map(parsePartitionKey) };
}

export type { MemberId };
