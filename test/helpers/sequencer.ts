// Runs the slowest files first, so the forks finish together instead of one of them starting
// a minute-long file near the end while the other idles. A clean clone has no vitest cache of
// durations (which would order by them), so the order comes from this list: the slowest files of
// a full run under load, longest first. A file missing from it runs after them, in name order.
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import path from 'node:path';

const SLOWEST_FIRST = [
  'cli', 'sim', 'nemesis', 'agent', 'agent-scripts', 'disk-full', 'agent-health', 'guard', 'bridge-kafka-restart',
  'security', 'pack', 'durability', 'cli-bridge', 'guard-crs', 'agent-pipeline', 'memory', 'node', 'agent-files', 'failover',
  'bench', 'bridge-eos', 'fuzz-edge', 'agent-files-bad', 'agent-cluster', 'package', 'contract', 'groups',
  'topic-alter-partitions', 'console', 'idle', 'agent-journald-e2e', 'tls', 'guard-crs-libinjection', 'bridge',
  'cluster-etcd', 'guard-group', 'frames', 'guard-unit', 'producer-pipeline', 'client', 'guard-net',
];
const rank = new Map(SLOWEST_FIRST.map((name, i) => [`${name}.test.ts`, i]));

export default class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const key = (f: TestSpecification) => rank.get(path.basename(f.moduleId)) ?? SLOWEST_FIRST.length;
    return [...files].sort((a, b) => key(a) - key(b) || a.moduleId.localeCompare(b.moduleId));
  }
}
