/**
 * Prometheus metrics with the SPEC's names (section 9). The labeled ones updated on every exchange
 * are airlock's own lean kind (see labeled.ts); all render through prom-client's registry.
 */
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { LabeledCounter, LabeledHistogram } from './labeled.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  readonly registry = new Registry();
  readonly exchanges = new LabeledCounter({
    name: 'airlock_exchanges_total',
    help: 'Exchanges by protocol, agent and decision',
    labelNames: ['protocol', 'agent', 'decision'] as const,
    registers: [this.registry],
  });
  readonly exchangeDuration = new LabeledHistogram({
    name: 'airlock_exchange_duration_seconds',
    help: 'Time from request to the end of the response, through the gateway',
    labelNames: ['protocol'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly upstreamDuration = new LabeledHistogram({
    name: 'airlock_upstream_duration_seconds',
    help: 'Time to the upstream response headers',
    labelNames: ['protocol', 'target'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly llmTokens = new LabeledCounter({
    name: 'airlock_llm_tokens_total',
    help: 'LLM tokens by agent, model and kind (input, output, cached_input)',
    labelNames: ['agent', 'model', 'kind'] as const,
    registers: [this.registry],
  });
  readonly llmCost = new LabeledCounter({
    name: 'airlock_llm_cost_usd_total',
    help: 'LLM cost in USD by agent and model',
    labelNames: ['agent', 'model'] as const,
    registers: [this.registry],
  });
  readonly approvalsPending = new Gauge({ name: 'airlock_approvals_pending', help: 'Held exchanges waiting for a human', registers: [this.registry] });
  readonly auditLag = new Gauge({ name: 'airlock_audit_lag_seconds', help: 'Age of the oldest audit record not yet committed', registers: [this.registry] });
  readonly inFlight = new Gauge({ name: 'airlock_exchanges_in_flight', help: 'Exchanges being served now', registers: [this.registry] });

  /**
   * The lag of audit shipping to PostgreSQL (`store.postgres` only, so a gateway without it shows
   * no gauge that would always read 0): read from `lag` when scraped.
   */
  auditShipping(lag: () => { records: number; seconds: number }): void {
    new Gauge({
      name: 'airlock_audit_shipping_lag_records',
      help: 'Audit records in the local store not yet in PostgreSQL (store.postgres)',
      registers: [this.registry],
      collect() {
        this.set(lag().records);
      },
    });
    new Gauge({
      name: 'airlock_audit_shipping_lag_seconds',
      help: 'How long the oldest audit record not yet in PostgreSQL has waited (store.postgres)',
      registers: [this.registry],
      collect() {
        this.set(lag().seconds);
      },
    });
  }

  constructor() {
    // Their own names start process_ or nodejs_: airlock_process_cpu_seconds_total, airlock_nodejs_heap_size_used_bytes …
    collectDefaultMetrics({ register: this.registry, prefix: 'airlock_' });
  }
}
