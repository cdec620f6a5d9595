/**
 * Labeled counters and histograms for the per-exchange metrics, registered in the same prom-client
 * registry and rendered by it like its own metrics. Why not prom-client's: its `labels()` validates
 * and builds a new child on every call, and its histogram keys buckets by their bound as an object
 * property, turning a float into a string on every observation. That was ~4% of the event loop's
 * busy time per exchange. Here a child is looked up once per label set and kept, and buckets are
 * a Float64Array.
 */
import type { Registry } from 'prom-client';

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers: Registry[];
}

/** What prom-client's registry reads from a metric (`get()`, `name`, `type`, `help`, `aggregator`). */
abstract class Labeled<L extends string, C> {
  readonly name: string;
  readonly help: string;
  abstract readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  private readonly labelNames: readonly L[];
  /** Children by their label values joined with NUL (which label values cannot be confused by). */
  protected readonly children = new Map<string, { labels: Record<L, string>; child: C }>();

  constructor(opts: MetricOptions<L>) {
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames;
    for (const r of opts.registers) r.registerMetric(this as never);
  }

  /** The child of one label set, in `labelNames` order. */
  labels(...values: string[]): C {
    const key = values.length === 1 ? values[0]! : values.join('\0');
    let c = this.children.get(key);
    if (c === undefined) {
      if (values.length !== this.labelNames.length) throw new Error(`${this.name} takes ${this.labelNames.length} label values, got ${values.length}`);
      const labels = {} as Record<L, string>;
      this.labelNames.forEach((n, i) => (labels[n] = values[i]!));
      c = { labels, child: this.create() };
      this.children.set(key, c);
    }
    return c.child;
  }

  protected abstract create(): C;
  protected abstract samples(): Sample[];

  get(): { name: string; help: string; type: string; values: Sample[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.samples(), aggregator: this.aggregator };
  }

  /** Called by the registry when it is cleared; the series start again. */
  reset(): void {
    this.children.clear();
  }
}

export class LabeledCounter<L extends string> extends Labeled<L, { inc(n?: number): void; value: number }> {
  readonly type = 'counter' as const;

  protected create(): { inc(n?: number): void; value: number } {
    return {
      value: 0,
      inc(n = 1) {
        if (!(n >= 0) || !Number.isFinite(n)) throw new TypeError(`a counter only goes up by a finite amount, not ${n}`);
        this.value += n;
      },
    };
  }

  protected samples(): Sample[] {
    return [...this.children.values()].map(({ labels, child }) => ({ value: child.value, labels }));
  }
}

interface HistogramChild {
  observe(v: number): void;
  /** Observations per bucket, not cumulative; the last slot is above every bound. */
  counts: Float64Array;
  sum: number;
  count: number;
}

export class LabeledHistogram<L extends string> extends Labeled<L, HistogramChild> {
  readonly type = 'histogram' as const;
  private readonly bounds: readonly number[];

  constructor(opts: MetricOptions<L> & { buckets: readonly number[] }) {
    super(opts);
    this.bounds = [...opts.buckets].sort((a, b) => a - b);
  }

  protected create(): HistogramChild {
    const bounds = this.bounds;
    return {
      counts: new Float64Array(bounds.length + 1),
      sum: 0,
      count: 0,
      observe(v: number) {
        if (!Number.isFinite(v)) throw new TypeError(`not a number to observe: ${v}`);
        let i = 0;
        while (i < bounds.length && v > bounds[i]!) i++;
        this.counts[i]!++;
        this.sum += v;
        this.count++;
      },
    };
  }

  protected samples(): Sample[] {
    const out: Sample[] = [];
    for (const { labels, child } of this.children.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += child.counts[i]!;
        out.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le }, value: acc });
      });
      out.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: '+Inf' }, value: child.count });
      out.push({ metricName: `${this.name}_sum`, labels, value: child.sum });
      out.push({ metricName: `${this.name}_count`, labels, value: child.count });
    }
    return out;
  }
}
