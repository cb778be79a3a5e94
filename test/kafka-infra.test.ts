// The Kafka the bridge tests rely on: started by scripts/kafka.sh, checked with kafkajs and kcat.
import { beforeAll, describe, expect, it } from 'vitest';
import { consumeAll, createTopic, ensureKafka, kafkaClient, kcatConsume, uniqueName } from './helpers/kafka.js';

describe('real Kafka broker from scripts/kafka.sh', () => {
  let brokers: string[];
  beforeAll(async () => {
    brokers = await ensureKafka();
  });

  it('round-trips records through kafkajs and kcat', async () => {
    const topic = uniqueName('infra');
    await createTopic(brokers, topic, 2);
    const producer = kafkaClient(brokers).producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const sent = Array.from({ length: 50 }, (_, i) => ({ key: `k${i % 5}`, value: `v${i}`, headers: { task: `t${i % 3}` } }));
    await producer.send({ topic, acks: -1, messages: sent });
    await producer.disconnect();

    const viaKafkajs = await consumeAll(brokers, topic, { count: 50 });
    expect(viaKafkajs.map((r) => r.value).sort()).toEqual(sent.map((s) => s.value).sort());

    const viaKcat = await kcatConsume(brokers, topic);
    expect(viaKcat).toHaveLength(50);
    // Same key → same partition, in send order.
    for (const key of ['k0', 'k1', 'k2', 'k3', 'k4']) {
      const got = viaKcat.filter((r) => r.key === key);
      expect(new Set(got.map((r) => r.partition)).size).toBe(1);
      expect(got.sort((a, b) => a.offset - b.offset).map((r) => r.value)).toEqual(sent.filter((s) => s.key === key).map((s) => s.value));
    }
    expect(viaKcat.find((r) => r.value === 'v4')!.headers).toEqual({ task: 't1' });
  });

  it('commits transactions that read_committed readers see, and hides aborted ones', async () => {
    const topic = uniqueName('infra-tx');
    await createTopic(brokers, topic, 1);
    const producer = kafkaClient(brokers).producer({ transactionalId: uniqueName('tx'), idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const aborted = await producer.transaction();
    await aborted.send({ topic, messages: [{ value: 'aborted' }] });
    await aborted.abort();
    const committed = await producer.transaction();
    await committed.send({ topic, messages: [{ value: 'committed' }] });
    await committed.commit();
    await producer.disconnect();

    const got = await kcatConsume(brokers, topic);
    expect(got.map((r) => r.value)).toEqual(['committed']);
  });
});
