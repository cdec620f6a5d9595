/**
 * Token limits (sliding windows) and budgets (USD per UTC day or month), per agent, per team
 * (shared by its agents) and, for tokens, per target pattern. In the `limits` stage.
 *
 * Reservation and settlement: an exchange that carries an estimate (the LLM front door sets input
 * estimate + output cap, priced) reserves it before it runs, against every budget and token limit
 * that applies; when it ends, the reservation is released and the real usage booked. A budget
 * admits a call while spent + reserved is under it, so concurrent calls overshoot a budget by at
 * most one call's reservation. All applicable limits are checked before anything is reserved.
 */
import type { AgentRuntime, Budget, LimitSet } from '../../config/compile.js';
import { formatDuration, type Rate } from '../../config/units.js';
import { ALLOW, type Exchange, type Outcome, type Policy, type Verdict } from '../../pipeline/types.js';
import type { SettleOp, SharedCheck, SharedCounters } from '../../store/redis/counters.js';
import { SlidingWindows } from '../limits/window.js';
import { BudgetLedger, windowOf } from './ledger.js';

interface BudgetCheck {
  scope: 'agent' | 'team';
  name: string;
  budget: Budget;
}

interface TokenCheck {
  key: string;
  rate: Rate;
  what: string;
}

interface Held {
  budgets: BudgetCheck[];
  costUsd: number;
  tokens: { key: string; amount: number; windowMs: number }[];
  /** Set when the cluster's counters took the reservations: what to release and book after. */
  shared?: { budgets: { spent: string; reserved: string; ttl: number }[]; tokens: { key: string; reserved: string }[] };
}

/** Token windows and in-flight token reservations. */
export class TokenCounters {
  readonly windows = new SlidingWindows();
  readonly reserved = new Map<string, number>();
}

const usd = (v: number) => `$${v < 10 ? v.toFixed(4) : v.toFixed(2)}`;

function checksFor(x: Exchange): { budgets: BudgetCheck[]; tokens: TokenCheck[] } {
  const a: AgentRuntime = x.agent;
  const budgets: BudgetCheck[] = [];
  const tokens: TokenCheck[] = [];
  const add = (l: LimitSet | undefined, scope: 'agent' | 'team', name: string) => {
    if (!l) return;
    if (l.budget) budgets.push({ scope, name, budget: l.budget });
    if (l.tokens) tokens.push({ key: `tok:${scope}:${name}`, rate: l.tokens, what: `${scope} "${name}"` });
  };
  add(a.limits, 'agent', a.name);
  if (a.team !== undefined) add(x.config.teams.get(a.team)?.limits, 'team', a.team);
  for (const t of x.config.targetLimits) {
    if (!t.tokens || !t.appliesTo(a) || !t.match(x.action)) continue;
    tokens.push({ key: `tok:${t.id}:${a.name}`, rate: t.tokens, what: `"${t.target}" for agent "${a.name}"` });
  }
  return { budgets, tokens };
}

const HELD = new WeakMap<Exchange, Held>();

/** A budget's keys in the cluster's counters for the calendar window containing `t`, and how long they are kept. */
function clusterBudget(s: SharedCounters, b: BudgetCheck, t: number): { spent: string; reserved: string; ttl: number } {
  const { start, end } = windowOf(b.budget.period, t);
  const name = `budget:${b.scope}:${b.name}:${b.budget.period}:${start}`;
  return { spent: s.key(`${name}:spent`), reserved: s.key(`${name}:reserved`), ttl: end - t + 86_400_000 };
}

function budgetExceeded(b: BudgetCheck, spent: number, reserved: number, t: number): Verdict {
  const renew = windowOf(b.budget.period, t).end;
  return {
    kind: 'deny',
    code: 'budget_exceeded',
    message: `${b.scope} "${b.name}" has spent ${usd(spent)}${reserved > 0 ? ` (and calls in flight reserve ${usd(reserved)})` : ''} of its budget of ${b.budget.text}; it renews at ${new Date(renew).toISOString()} (in ${formatDuration(renew - t)})`,
  };
}

function tokenLimited(c: TokenCheck, estimate: number, retryAfterMs: number): Verdict {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return { kind: 'deny', code: 'rate_limited', message: `${c.what} is over its token limit of ${c.rate.text} (this call may use up to ${estimate} tokens); retry in ${formatDuration(s * 1000)}`, retryAfterS: s };
}

/**
 * The budget and token-limit policy; `now` is a seam for tests. `shared`: the cluster's counters
 * (store.redis): while they answer, spend, reservations and token windows are the cluster's;
 * when they cannot, this gateway counts alone (from what its own audit store says it spent).
 */
export function budgetPolicy(ledger: BudgetLedger, counters: TokenCounters = new TokenCounters(), now: () => number = Date.now, shared?: SharedCounters): Policy {
  const cluster = async (s: SharedCounters, x: Exchange, e: { tokens: number; costUsd: number }, budgets: BudgetCheck[], tokens: TokenCheck[]): Promise<Verdict> => {
    const t = now();
    const amounts = tokens.map((c) => Math.min(e.tokens, c.rate.limit));
    const held: NonNullable<Held['shared']> = { budgets: [], tokens: [] };
    const checks: SharedCheck[] = [];
    for (const b of budgets) {
      const keys = clusterBudget(s, b, t);
      held.budgets.push(keys);
      // Seeds the cluster's spend from this gateway's audit store, should Redis not have it (a Redis restarted empty).
      const seed = ledger.committed(b.scope, b.name, b.budget.period, t).spent;
      checks.push({ t: 'b', k: keys.spent, res: keys.reserved, lim: b.budget.usd, rv: e.costUsd, seed, ttl: keys.ttl });
    }
    tokens.forEach((c, i) => {
      held.tokens.push({ key: s.key(c.key), reserved: s.key(`${c.key}:reserved`) });
      checks.push({ t: 'w', k: s.key(c.key), w: c.rate.windowMs, lim: c.rate.limit, amt: amounts[i]!, add: 0, res: s.key(`${c.key}:reserved`), rv: amounts[i]! });
    });
    const r = await s.admit(checks);
    if (!r.ok) return r.index < budgets.length ? budgetExceeded(budgets[r.index]!, r.spent, r.reserved, t) : tokenLimited(tokens[r.index - budgets.length]!, e.tokens, r.retryAfterMs);
    HELD.set(x, { budgets, costUsd: e.costUsd, tokens: tokens.map((c, i) => ({ key: c.key, amount: amounts[i]!, windowMs: c.rate.windowMs })), shared: held });
    return ALLOW;
  };
  const local = (x: Exchange, e: { tokens: number; costUsd: number }, budgets: BudgetCheck[], tokens: TokenCheck[]): Verdict => {
    const t = now();
    for (const b of budgets) {
      const { spent, reserved } = ledger.committed(b.scope, b.name, b.budget.period, t);
      if (spent + reserved >= b.budget.usd) return budgetExceeded(b, spent, reserved, t);
    }
    const amounts = tokens.map((c) => Math.min(e.tokens, c.rate.limit));
    for (let i = 0; i < tokens.length; i++) {
      const c = tokens[i]!;
      const inFlight = counters.reserved.get(c.key) ?? 0;
      const r = counters.windows.check(c.key, c.rate.limit, c.rate.windowMs, t, inFlight + amounts[i]!);
      if (!r.ok) return tokenLimited(c, e.tokens, r.retryAfterMs);
    }
    for (const b of budgets) ledger.reserve(b.scope, b.name, b.budget.period, t, e.costUsd);
    const held: Held = { budgets, costUsd: e.costUsd, tokens: [] };
    tokens.forEach((c, i) => {
      counters.reserved.set(c.key, (counters.reserved.get(c.key) ?? 0) + amounts[i]!);
      held.tokens.push({ key: c.key, amount: amounts[i]!, windowMs: c.rate.windowMs });
    });
    HELD.set(x, held);
    return ALLOW;
  };
  return {
    name: 'budget',
    stage: 'limits',
    before(x: Exchange): Verdict | Promise<Verdict> {
      const e = x.estimate;
      if (!e || (e.tokens === 0 && e.costUsd === 0)) return ALLOW;
      const { budgets, tokens } = checksFor(x);
      if (budgets.length === 0 && tokens.length === 0) return ALLOW;
      if (shared?.available) return cluster(shared, x, e, budgets, tokens).catch(() => local(x, e, budgets, tokens));
      return local(x, e, budgets, tokens);
    },
    after(x: Exchange, outcome: Outcome): void {
      const h = HELD.get(x);
      if (!h) return;
      HELD.delete(x);
      const t = now();
      const cost = outcome.costUsd ?? 0;
      const used = outcome.usage ? outcome.usage.inputTokens + outcome.usage.outputTokens : 0;
      if (h.shared) {
        const ops: SettleOp[] = [];
        for (const b of h.shared.budgets) {
          ops.push({ t: 'rel', k: b.reserved, n: h.costUsd });
          if (cost > 0) ops.push({ t: 'inc', k: b.spent, n: cost, ttl: b.ttl });
        }
        h.tokens.forEach((r, i) => {
          ops.push({ t: 'rel', k: h.shared!.tokens[i]!.reserved, n: r.amount });
          if (used > 0) ops.push({ t: 'add', k: h.shared!.tokens[i]!.key, w: r.windowMs, n: used });
        });
        shared?.settle(ops);
        // This gateway's ledger books it too: it is what an outage of the cluster's counters falls back on.
        for (const b of h.budgets) ledger.settle(b.scope, b.name, b.budget.period, t, 0, cost);
        return;
      }
      for (const b of h.budgets) ledger.settle(b.scope, b.name, b.budget.period, t, h.costUsd, cost);
      // Counted alone while the cluster's counters could not answer: the cluster's total gets it
      // too (now, or when the link is back), so the spend is not missing from it afterwards.
      if (shared && cost > 0) {
        shared.settle(
          h.budgets.map((b): SettleOp => {
            const { spent, ttl } = clusterBudget(shared, b, t);
            return { t: 'inc', k: spent, n: cost, ttl };
          }),
        );
      }
      for (const r of h.tokens) {
        const left = (counters.reserved.get(r.key) ?? 0) - r.amount;
        if (left <= 0) counters.reserved.delete(r.key);
        else counters.reserved.set(r.key, left);
        if (used > 0) counters.windows.add(r.key, r.windowMs, t, used);
      }
    },
  };
}
