/**
 * Request-rate and concurrency limits per agent, per team (shared by its agents) and per target
 * pattern (counted per agent). Every applicable limit is checked before any is counted, so a
 * request refused by one limit does not use up another.
 */
import type { AgentRuntime, LimitSet } from '../../config/compile.js';
import { formatDuration, type Rate } from '../../config/units.js';
import { ALLOW, type Exchange, type Policy, type Verdict } from '../../pipeline/types.js';
import type { SharedCheck, SharedCounters } from '../../store/redis/counters.js';
import { SlidingWindows } from './window.js';

interface RateCheck {
  key: string;
  rate: Rate;
  what: string;
}

interface ConcurrencyCheck {
  key: string;
  max: number;
  what: string;
}

/** Counters shared by the policy and, later, by token accounting. */
export class LimitCounters {
  readonly windows = new SlidingWindows();
  readonly inFlight = new Map<string, number>();
}

function rateChecks(x: Exchange): { rates: RateCheck[]; conc: ConcurrencyCheck[] } {
  const a: AgentRuntime = x.agent;
  const rates: RateCheck[] = [];
  const conc: ConcurrencyCheck[] = [];
  const add = (l: LimitSet | undefined, key: string, what: string) => {
    if (!l) return;
    if (l.requests) rates.push({ key: `r:${key}`, rate: l.requests, what });
    if (l.concurrency) conc.push({ key: `c:${key}`, max: l.concurrency, what });
  };
  add(a.limits, `a:${a.name}`, `agent "${a.name}"`);
  if (a.team !== undefined) add(x.config.teams.get(a.team)?.limits, `team:${a.team}`, `team "${a.team}"`);
  for (const t of x.config.targetLimits) {
    if (!t.appliesTo(a) || !t.match(x.action)) continue;
    const key = `${t.id}:${a.name}`;
    if (t.requests) rates.push({ key: `r:${key}`, rate: t.requests, what: `"${t.target}" for agent "${a.name}"` });
    if (t.concurrency) conc.push({ key: `c:${key}`, max: t.concurrency, what: `"${t.target}" for agent "${a.name}"` });
  }
  return { rates, conc };
}

const concurrencyLimited = (c: ConcurrencyCheck): Verdict => ({
  kind: 'deny',
  code: 'concurrency_limited',
  message: `${c.what} already has ${c.max} exchanges in flight (the concurrency limit); retry when one finishes`,
  retryAfterS: 1,
});

function rateLimited(r: RateCheck, retryAfterMs: number): Verdict {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return { kind: 'deny', code: 'rate_limited', message: `${r.what} is over its request limit of ${r.rate.text}; retry in ${formatDuration(s * 1000)}`, retryAfterS: s };
}

/** The concurrency slots an admitted exchange holds, and where (this gateway's counters or the cluster's). */
const HELD = new WeakMap<Exchange, { keys: string[]; shared: boolean }>();

/**
 * `shared`: the cluster's counters (store.redis). While they can answer, every gateway of the
 * cluster counts against the same limits; when they cannot, this gateway counts alone.
 */
export function limitsPolicy(counters: LimitCounters, now: () => number = Date.now, shared?: SharedCounters): Policy {
  const local = (x: Exchange, rates: RateCheck[], conc: ConcurrencyCheck[]): Verdict => {
    const t = now();
    for (const c of conc) if ((counters.inFlight.get(c.key) ?? 0) >= c.max) return concurrencyLimited(c);
    for (const r of rates) {
      const res = counters.windows.check(r.key, r.rate.limit, r.rate.windowMs, t);
      if (!res.ok) return rateLimited(r, res.retryAfterMs);
    }
    for (const r of rates) counters.windows.add(r.key, r.rate.windowMs, t);
    if (conc.length > 0) {
      const keys = conc.map((c) => c.key);
      for (const k of keys) counters.inFlight.set(k, (counters.inFlight.get(k) ?? 0) + 1);
      HELD.set(x, { keys, shared: false });
    }
    return ALLOW;
  };
  const cluster = async (s: SharedCounters, x: Exchange, rates: RateCheck[], conc: ConcurrencyCheck[]): Promise<Verdict> => {
    const checks: SharedCheck[] = [
      ...conc.map((c): SharedCheck => ({ t: 's', k: s.key(c.key), max: c.max })),
      ...rates.map((r): SharedCheck => ({ t: 'w', k: s.key(r.key), w: r.rate.windowMs, lim: r.rate.limit, amt: 1, add: 1 })),
    ];
    const r = await s.admit(checks);
    if (!r.ok) return r.index < conc.length ? concurrencyLimited(conc[r.index]!) : rateLimited(rates[r.index - conc.length]!, r.retryAfterMs);
    if (conc.length > 0) HELD.set(x, { keys: conc.map((c) => s.key(c.key)), shared: true });
    return ALLOW;
  };
  return {
    name: 'limits',
    stage: 'limits',
    before(x: Exchange): Verdict | Promise<Verdict> {
      const { rates, conc } = rateChecks(x);
      if (rates.length === 0 && conc.length === 0) return ALLOW;
      if (shared?.available) return cluster(shared, x, rates, conc).catch(() => local(x, rates, conc));
      return local(x, rates, conc);
    },
    after(x: Exchange): void {
      const held = HELD.get(x);
      if (!held) return;
      HELD.delete(x);
      if (held.shared) {
        shared?.settle(held.keys.map((k) => ({ t: 'rel', k, n: 1 })));
        return;
      }
      for (const k of held.keys) {
        const n = (counters.inFlight.get(k) ?? 1) - 1;
        if (n <= 0) counters.inFlight.delete(k);
        else counters.inFlight.set(k, n);
      }
    },
  };
}
