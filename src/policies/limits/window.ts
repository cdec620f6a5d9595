/**
 * Sliding-window counters (the two-bucket estimate): the count in the last window is the current
 * fixed bucket plus the previous one weighted by how much of it still overlaps. O(1) memory per
 * key, exact at bucket edges, never more than one bucket's worth off in between.
 */

interface Bucket {
  start: number;
  curr: number;
  prev: number;
  windowMs: number;
}

export interface WindowCheck {
  ok: boolean;
  /** When not ok: ms until `amount` more would fit. */
  retryAfterMs: number;
}

export class SlidingWindows {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  private roll(key: string, windowMs: number, now: number): Bucket {
    let b = this.buckets.get(key);
    const start = now - (now % windowMs);
    if (!b || b.windowMs !== windowMs) {
      b = { start, curr: 0, prev: 0, windowMs };
      this.buckets.set(key, b);
    } else if (start !== b.start) {
      b.prev = start - b.start === windowMs ? b.curr : 0;
      b.curr = 0;
      b.start = start;
    }
    return b;
  }

  private estimate(b: Bucket, now: number): number {
    return b.prev * (1 - (now - b.start) / b.windowMs) + b.curr;
  }

  /** Would `amount` more fit under `limit` per `windowMs`? Does not count it. */
  check(key: string, limit: number, windowMs: number, now: number, amount = 1): WindowCheck {
    const b = this.roll(key, windowMs, now);
    if (this.estimate(b, now) + amount <= limit) return { ok: true, retryAfterMs: 0 };
    return { ok: false, retryAfterMs: this.retryAfter(b, limit, amount, now) };
  }

  /** Counts `amount` (after a successful check, or usage reported afterwards). */
  add(key: string, windowMs: number, now: number, amount = 1): void {
    this.roll(key, windowMs, now).curr += amount;
    if (now - this.lastSweep > 60_000) this.sweep(now);
  }

  /** The current estimate, for reporting. */
  count(key: string, windowMs: number, now: number): number {
    return this.estimate(this.roll(key, windowMs, now), now);
  }

  private retryAfter(b: Bucket, limit: number, amount: number, now: number): number {
    const w = b.windowMs;
    const room = limit - amount - b.curr;
    if (room >= 0 && b.prev > 0) {
      // prev * (1 - t/w) + curr + amount <= limit  →  t >= w * (1 - room/prev)
      const t = w * (1 - room / b.prev);
      return Math.max(1, Math.ceil(b.start + t - now));
    }
    // The current bucket alone is full: wait for it to become the previous one and decay enough.
    const nextStart = b.start + w;
    const roomNext = limit - amount;
    if (roomNext < 0 || b.curr === 0) return Math.max(1, nextStart + w - now);
    const t = w * Math.max(0, 1 - roomNext / b.curr);
    return Math.max(1, Math.ceil(nextStart + t - now));
  }

  /** Drops buckets idle for two windows: memory stays proportional to active keys. */
  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [k, b] of this.buckets) if (now - b.start >= 2 * b.windowMs) this.buckets.delete(k);
  }
}
