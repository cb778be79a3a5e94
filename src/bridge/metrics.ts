// The bridge's Prometheus metrics, on a registry of its own (a node running the bridge in-process
// merges it into its /metrics; the standalone bridge serves it).
import client from 'prom-client';

export class BridgeMetrics {
  readonly registry: client.Registry;
  readonly lagRecords: client.Gauge<'topic' | 'partition'>;
  readonly lagSeconds: client.Gauge<'topic' | 'partition'>;
  readonly lagAlert: client.Gauge<'topic' | 'partition'>;
  readonly position: client.Gauge<'topic' | 'partition'>;
  readonly delivered: client.Counter<'topic'>;
  readonly deliveredBytes: client.Counter<'topic'>;
  readonly deadLettered: client.Counter<'topic' | 'reason'>;
  readonly skipped: client.Counter<'topic'>;
  readonly rounds: client.Counter<'outcome'>;
  readonly retries: client.Counter<'stage'>;
  readonly kafkaUp: client.Gauge;
  readonly roundSeconds: client.Histogram;
  readonly requestBytes: client.Histogram;

  constructor(group: string, registry = new client.Registry()) {
    this.registry = registry;
    const registers = [registry];
    const labels = { group };
    registry.setDefaultLabels(labels);
    this.lagRecords = new client.Gauge({ name: 'chicago_bridge_lag_records', help: 'Chicago records not yet delivered to Kafka', labelNames: ['topic', 'partition'], registers });
    this.lagSeconds = new client.Gauge({ name: 'chicago_bridge_lag_seconds', help: 'age of the oldest Chicago record not yet delivered to Kafka', labelNames: ['topic', 'partition'], registers });
    this.lagAlert = new client.Gauge({ name: 'chicago_bridge_lag_alert', help: '1 while the lag is over a configured threshold', labelNames: ['topic', 'partition'], registers });
    this.position = new client.Gauge({ name: 'chicago_bridge_next_offset', help: 'next Chicago offset to deliver', labelNames: ['topic', 'partition'], registers });
    this.delivered = new client.Counter({ name: 'chicago_bridge_delivered_records_total', help: 'records committed to Kafka', labelNames: ['topic'], registers });
    this.deliveredBytes = new client.Counter({ name: 'chicago_bridge_delivered_bytes_total', help: 'record bytes committed to Kafka', labelNames: ['topic'], registers });
    this.deadLettered = new client.Counter({ name: 'chicago_bridge_dead_letter_records_total', help: 'records sent to the dead-letter topic', labelNames: ['topic', 'reason'], registers });
    this.skipped = new client.Counter({ name: 'chicago_bridge_skipped_records_total', help: 'records removed by Chicago retention before they were delivered', labelNames: ['topic'], registers });
    this.rounds = new client.Counter({ name: 'chicago_bridge_rounds_total', help: 'delivery rounds (one Kafka transaction each in exactly-once mode)', labelNames: ['outcome'], registers });
    this.retries = new client.Counter({ name: 'chicago_bridge_retries_total', help: 'failures retried after a backoff', labelNames: ['stage'], registers });
    this.kafkaUp = new client.Gauge({ name: 'chicago_bridge_kafka_up', help: '1 when the last Kafka operation succeeded', registers });
    this.roundSeconds = new client.Histogram({
      name: 'chicago_bridge_round_seconds', help: 'time to deliver one round (send + commit)', registers,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
    this.requestBytes = new client.Histogram({
      name: 'chicago_bridge_request_bytes', help: 'estimated bytes of each Kafka produce request', registers,
      buckets: [1024, 16384, 65536, 262144, 1048576, 4194304, 16777216],
    });
  }
}
