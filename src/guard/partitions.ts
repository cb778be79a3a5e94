// Which partitions of an input topic this guard reads alone: an input with a `partitions` list.
// Inputs with `partitions: all` are shared through the consumer group instead (Guard.join).
import { ConfigError } from '../runtime/config.js';

export interface PartitionSource {
  /** the partitions to read now */
  assigned(topic: string, partitionCount: number): number[];
  /** called with the new assignment when it changes; returns an unsubscribe function */
  onChange(listener: (topic: string, partitions: number[]) => void): () => void;
}

export class StaticPartitionSource implements PartitionSource {
  constructor(private readonly wanted: 'all' | readonly number[]) {}

  assigned(topic: string, partitionCount: number): number[] {
    if (this.wanted === 'all') return Array.from({ length: partitionCount }, (_, i) => i);
    const bad = this.wanted.filter((p) => p >= partitionCount);
    // the config names them: exit 78, as for any other config error
    if (bad.length > 0) throw new ConfigError(`guard config: inputs: topic ${topic} has ${partitionCount} partitions; partitions ${bad.join(', ')} do not exist`);
    return [...this.wanted];
  }

  onChange(): () => void {
    return () => undefined;
  }
}
