/**
 * Spend per budget (agent or team) per calendar window (UTC day or month), plus what calls in
 * flight have reserved. The first use of a budget in a window seeds its spend from the audit store,
 * so a restart does not hand out a fresh budget.
 */

export type Period = 'day' | 'month';

/** Start (ms) and end of the calendar window containing `now`, UTC. */
export function windowOf(period: Period, now: number): { start: number; end: number } {
  const d = new Date(now);
  if (period === 'day') {
    const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
    return { start, end: start + 86_400_000 };
  }
  return { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

interface Account {
  windowStart: number;
  windowEnd: number;
  spent: number;
  reserved: number;
}

/** Looks up what a scope spent since a time (from the audit store). */
export type SpentSince = (scope: 'agent' | 'team', name: string, sinceIso: string) => number;

export class BudgetLedger {
  private readonly accounts = new Map<string, Account>();

  constructor(private readonly spentSince: SpentSince = () => 0) {}

  private account(scope: 'agent' | 'team', name: string, period: Period, now: number): Account {
    const key = `${scope}:${name}:${period}`;
    let a = this.accounts.get(key);
    if (a && now >= a.windowStart && now < a.windowEnd) return a;
    const { start, end } = windowOf(period, now);
    if (!a || a.windowStart !== start) {
      // A new window: calls still in flight from the last one keep their reservations here.
      const reserved = a?.reserved ?? 0;
      let spent = 0;
      try {
        spent = this.spentSince(scope, name, new Date(start).toISOString());
      } catch {
        spent = 0;
      }
      a = { windowStart: start, windowEnd: end, spent, reserved };
      this.accounts.set(key, a);
    }
    return a;
  }

  /** Spent plus reserved, now. */
  committed(scope: 'agent' | 'team', name: string, period: Period, now: number): { spent: number; reserved: number } {
    const a = this.account(scope, name, period, now);
    return { spent: a.spent, reserved: a.reserved };
  }

  reserve(scope: 'agent' | 'team', name: string, period: Period, now: number, usd: number): void {
    this.account(scope, name, period, now).reserved += usd;
  }

  /** Releases a reservation and books the real cost. */
  settle(scope: 'agent' | 'team', name: string, period: Period, now: number, reservedUsd: number, costUsd: number): void {
    const a = this.account(scope, name, period, now);
    a.reserved = Math.max(0, a.reserved - reservedUsd);
    a.spent += costUsd;
  }
}
