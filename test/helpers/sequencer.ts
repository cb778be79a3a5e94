// Runs the slowest files first, so the forks finish together instead of one of them starting
// a minute-long file near the end while the other idles. A clean clone has no vitest cache of
// durations (which would order by them), so the order comes from this list: the slowest files of
// a full run under load, longest first. A file missing from it runs after them, in name order.
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import path from 'node:path';

const SLOWEST_FIRST = [
  'sim', 'nemesis', 'agent', 'failover', 'bench', 'bridge-eos', 'pack', 'security', 'durability', 'agent-files',
  'cli-bridge', 'guard-memory', 'agent-scripts', 'agent-cluster', 'disk-full', 'bridge-kafka-restart', 'cli',
  'guard-net', 'agent-pipeline', 'agent-journald-e2e', 'fuzz-edge', 'agent-files-bad', 'node', 'console', 'contract',
  'cluster-idle', 'topic-alter-partitions', 'guard', 'package', 'agent-health', 'cluster-etcd', 'groups-cluster',
  'bridge', 'cluster-client', 'tls', 'producer-pipeline-cluster', 'guard-group', 'anti-entropy', 'http-body', 'memory',
  'groups', 'guard-crs', 'idle', 'group-delete', 'single-copy', 'checker', 'browser-json', 'browser', 'placement',
  'gateway-gc', 'producer-pipeline', 'batch-family', 'agent-bytes', 'guard-crs-libinjection', 'frames', 'client',
  'ws-json', 'examples-python', 'server-semi-space', 'agent-hop', 'tail-coalesce', 'produce-inline', 'produce-ranges',
];
const rank = new Map(SLOWEST_FIRST.map((name, i) => [`${name}.test.ts`, i]));

export default class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const key = (f: TestSpecification) => rank.get(path.basename(f.moduleId)) ?? SLOWEST_FIRST.length;
    return [...files].sort((a, b) => key(a) - key(b) || a.moduleId.localeCompare(b.moduleId));
  }
}
