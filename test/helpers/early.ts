// A slow service a file needs only in its later tests (a cluster, etcd), started when the file starts
// so that it comes up while the tests before its own run.
import { afterAll, beforeAll } from 'vitest';

/**
 * Starts `start()` when the file starts and `stop`s it after the file; returns what the tests that
 * need it await. A start that fails fails only those tests.
 */
export function startEarly<T>(start: () => Promise<T>, stop: (started: T) => Promise<unknown>): () => Promise<T> {
  let started: Promise<T> | undefined;
  const once = () => (started ??= start());
  beforeAll(() => { void once().catch(() => undefined); });
  afterAll(async () => {
    const s = await started?.then((x) => ({ x }), () => undefined);
    if (s) await stop(s.x);
  });
  return once;
}
