/**
 * The lean labeled metrics render exactly as Prometheus expects through prom-client's registry:
 * cumulative buckets with an observation on a bound counted in that bound's bucket, +Inf, _sum and
 * _count per label set, and counters that refuse to go down.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { LabeledCounter, LabeledHistogram } from '../src/telemetry/labeled.js';

describe('labeled metrics (pure)', () => {
  it('histogram: cumulative buckets, a value on a bound counts in it, +Inf, sum and count per label set', async () => {
    const registry = new Registry();
    const h = new LabeledHistogram({ name: 't_seconds', help: 'test', labelNames: ['p'] as const, buckets: [0.1, 1], registers: [registry] });
    for (const v of [0.05, 0.1, 0.5, 7]) h.labels('a').observe(v);
    h.labels('b').observe(1);
    const lines = (await registry.metrics()).split('\n');
    assert.deepEqual(lines, [
      '# HELP t_seconds test',
      '# TYPE t_seconds histogram',
      't_seconds_bucket{p="a",le="0.1"} 2',
      't_seconds_bucket{p="a",le="1"} 3',
      't_seconds_bucket{p="a",le="+Inf"} 4',
      't_seconds_sum{p="a"} 7.65',
      't_seconds_count{p="a"} 4',
      't_seconds_bucket{p="b",le="0.1"} 0',
      't_seconds_bucket{p="b",le="1"} 1',
      't_seconds_bucket{p="b",le="+Inf"} 1',
      't_seconds_sum{p="b"} 1',
      't_seconds_count{p="b"} 1',
      '',
    ]);
    assert.throws(() => h.labels('a').observe(Number.NaN), TypeError);
  });

  it('counter: one series per label set, in label order; negative steps and wrong label counts are refused', async () => {
    const registry = new Registry();
    const c = new LabeledCounter({ name: 't_total', help: 'test', labelNames: ['protocol', 'agent'] as const, registers: [registry] });
    c.labels('http', 'alice').inc();
    c.labels('http', 'alice').inc(2);
    c.labels('mcp', 'bob').inc(0.5);
    const text = await registry.metrics();
    assert.match(text, /^t_total\{protocol="http",agent="alice"\} 3$/m);
    assert.match(text, /^t_total\{protocol="mcp",agent="bob"\} 0.5$/m);
    assert.throws(() => c.labels('http', 'alice').inc(-1), TypeError);
    assert.throws(() => c.labels('http'), /takes 2 label values/);
  });
});
