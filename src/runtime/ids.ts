// Branded ids: a PartitionId can never be passed where an Offset is expected.
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A node-level partition: one actor, one RocksDB column family, one replication log. */
export type PartitionId = Brand<number, 'PartitionId'>;
/** A partition of a topic (0..partitions-1), mapped onto a node partition. */
export type TopicPartition = Brand<number, 'TopicPartition'>;
/** Position of a record inside one topic partition; starts at 0, no gaps. */
export type Offset = Brand<number, 'Offset'>;
/** Leadership term of a partition; never decreases. */
export type Epoch = Brand<number, 'Epoch'>;
/** Sequence number of a mutation inside one partition; KV versions are these. */
export type Seq = Brand<number, 'Seq'>;
export type NodeId = Brand<string, 'NodeId'>;
/** Stable numeric id of a topic incarnation: a re-created topic gets a new one. */
export type TopicId = Brand<number, 'TopicId'>;

/** A consumer group member, named by the group coordinator at its first join. */
export type MemberId = Brand<string, 'MemberId'>;
/** A consumer group's generation: grows on every change of members or assignment. */
export type Generation = Brand<number, 'Generation'>;

export const partitionId = (n: number) => n as PartitionId;
export const topicPartition = (n: number) => n as TopicPartition;
export const offset = (n: number) => n as Offset;
export const epoch = (n: number) => n as Epoch;
export const seq = (n: number) => n as Seq;
export const nodeId = (s: string) => s as NodeId;
export const topicId = (n: number) => n as TopicId;
export const memberId = (s: string) => s as MemberId;
export const generation = (n: number) => n as Generation;
