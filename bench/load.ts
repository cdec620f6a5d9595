/**
 * Load generation with autocannon, with latencies kept at full resolution: autocannon's own
 * histogram stores whole milliseconds, which cannot show a 0.3 ms difference, so every response
 * time it reports is also collected here (as float ms) and percentiles are computed from those.
 */
import autocannon from 'autocannon';

export interface LoadSpec {
  url: string;
  connections: number;
  /** Seconds; or `amount` requests. */
  duration?: number;
  amount?: number;
  headers?: Record<string, string>;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  rps: number;
  p50: number;
  p99: number;
  /** Anything but a 2xx, plus socket errors and timeouts. */
  failures: number;
}

/** Runs one load phase; a run in which any request failed is reported, not hidden. */
export async function load(spec: LoadSpec): Promise<LoadResult> {
  const opts = { url: spec.url, connections: spec.connections, headers: spec.headers ?? {}, timeout: 10, ...(spec.amount ? { amount: spec.amount } : { duration: spec.duration ?? 10 }) };
  const t0 = performance.now();
  const inst = autocannon(opts);
  let times = new Float64Array(1 << 16);
  let n = 0;
  let last = t0;
  inst.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
    last = performance.now();
    if (status < 200 || status > 299) return;
    if (n === times.length) {
      const bigger = new Float64Array(times.length * 2);
      bigger.set(times);
      times = bigger;
    }
    times[n++] = ms;
  });
  const r = await inst;
  // Our own clock, up to the last response: autocannon only notices the end of a run on its next
  // one-second tick, which in `amount` mode adds up to a second of idle time to its `duration`.
  const seconds = (last - t0) / 1000;
  const sorted = times.subarray(0, n).sort();
  const pct = (p: number) => (n === 0 ? NaN : sorted[Math.min(n - 1, Math.floor((p / 100) * n))]!);
  return { requests: n, seconds, rps: n / seconds, p50: pct(50), p99: pct(99), failures: r.non2xx + r.errors + r.timeouts };
}
