// The gateway's request meter exposes what prom-client's Counter and Histogram would for the same
// requests, line for line.
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { RequestMeter } from '../src/runtime/metrics.js';

describe('RequestMeter', () => {
  it('exposes the same text as prom-client for the same requests, bounds included', async () => {
    const ours = new Registry();
    const meter = new RequestMeter(ours);
    const theirs = new Registry();
    const counter = new Counter({ name: 'chicago_requests_total', help: 'Requests by edge, route and outcome', labelNames: ['edge', 'route', 'code'], registers: [theirs] });
    const histogram = new Histogram({
      name: 'chicago_request_duration_seconds', help: 'Request latency by edge and route', labelNames: ['edge', 'route'], registers: [theirs],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5],
    });
    // bounds exactly, just past them, zero and past the last bound
    const seconds = [0, 0.0001, 0.00010001, 0.00025, 0.003, 0.05, 1, 5, 5.0001, 60];
    const requests: [string, string, string][] = [['ws', 'put', '200'], ['ws', 'put', 'NOT_LEADER'], ['http', 'GET /v1/kv/:ks/**', 'NOT_FOUND'], ['ws', 'produce', '200']];
    let n = 0;
    for (const s of seconds) {
      for (const [edge, route, code] of requests) {
        const v = s * (1 + (n++ % 3));
        meter.record(edge, route, code, v);
        counter.inc({ edge, route, code });
        histogram.observe({ edge, route }, v);
      }
    }
    const sortLines = (t: string) => t.split('\n').sort();
    expect(sortLines(await ours.metrics())).toEqual(sortLines(await theirs.metrics()));
    expect(await ours.metrics()).toContain('chicago_requests_total{edge="ws",route="put",code="NOT_LEADER"} 10');
  });
});
