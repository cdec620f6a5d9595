/**
 * Counters shared by every gateway of a cluster, in Redis: request and token windows, concurrency
 * slots, session call counts, budget spend and reservations. One Lua script checks every limit that
 * applies to a call and, only if all pass, counts it against all of them: atomic across gateways,
 * one round trip per call.
 *
 * The same two-bucket sliding-window estimate as the local counters (`limits/window.ts`), on Redis'
 * clock, so every gateway sees one window. In-flight amounts (concurrency slots, token and budget
 * reservations) are kept per member (see `link.ts`): a gateway that dies stops holding them when
 * its membership expires, and a gateway whose link dropped re-states its own amounts when it is
 * back (`mine`).
 *
 * Keys are built by the caller from names in config, under the cluster's prefix. Not for Redis
 * Cluster: the script touches keys it is not given in KEYS (bucket keys derive from the time).
 */
import { ReplyError, type Result } from 'ioredis';
import type { RedisLink } from './link.js';

/** A sliding window: `amount` more (plus what `reservedKey` holds) must fit under `limit`; on admission `add` is counted and `reserve` reserved. */
export interface WindowCheck {
  t: 'w';
  k: string;
  w: number;
  lim: number;
  amt: number;
  add: number;
  res?: string | undefined;
  rv?: number | undefined;
}
/** Concurrency: fewer than `max` held across the cluster; on admission one more is held by this member. */
export interface SlotCheck {
  t: 's';
  k: string;
  max: number;
}
/** A count that may reach `max` (session calls); idle counts expire after `idle` ms. */
export interface CountCheck {
  t: 'n';
  k: string;
  max: number;
  idle: number;
}
/** A budget: spent (`k`, seeded with `seed` when Redis does not have it) plus reserved (`res`) under `lim`; on admission `rv` is reserved. */
export interface BudgetCheck {
  t: 'b';
  k: string;
  res: string;
  lim: number;
  rv: number;
  seed: number;
  ttl: number;
}
export type SharedCheck = WindowCheck | SlotCheck | CountCheck | BudgetCheck;

export type Admission = { ok: true } | { ok: false; index: number; retryAfterMs: number; spent: number; reserved: number };

/** After a call: release what it held, count what it used. */
export type SettleOp =
  | { t: 'rel'; k: string; n: number } // this member's hold on `k` goes down by n
  | { t: 'add'; k: string; w: number; n: number } // n more in the window `k` (now)
  | { t: 'inc'; k: string; n: number; ttl: number } // a seeded total goes up by n (a lost one is left to be seeded again)
  | { t: 'set'; k: string; n: number } // this member's hold on `k` is n (re-stated)
  | { t: 'hold'; k: string; n: number }; // this member's hold on `k` goes up by n (an admission a re-statement overwrote)

/** The per-member hold an admitted check takes: its hash and amount. */
function holdOf(c: SharedCheck): [string, number] | undefined {
  if (c.t === 's') return [c.k, 1];
  if (c.t === 'b') return [c.res, c.rv];
  if (c.t === 'w' && c.res && c.rv) return [c.res, c.rv];
  return undefined;
}

const ADMIT = `
local checks = cjson.decode(ARGV[1])
local memberPrefix = ARGV[2]
local me = ARGV[3]
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)

local function held(h)
  local all = redis.call('HGETALL', h)
  local sum = 0
  for i = 1, #all, 2 do
    local m = all[i]
    if m == me or redis.call('EXISTS', memberPrefix .. m) == 1 then
      sum = sum + tonumber(all[i + 1])
    else
      redis.call('HDEL', h, m)
    end
  end
  return sum
end

local function retry_after(start, curr, prev, w, limit, amount)
  local room = limit - amount - curr
  if room >= 0 and prev > 0 then
    return math.max(1, math.ceil(start + w * (1 - room / prev) - now))
  end
  local nextStart = start + w
  local roomNext = limit - amount
  if roomNext < 0 or curr == 0 then return math.max(1, nextStart + w - now) end
  return math.max(1, math.ceil(nextStart + w * math.max(0, 1 - roomNext / curr) - now))
end

for i, c in ipairs(checks) do
  if c.t == 'w' then
    local start = now - (now % c.w)
    local curr = tonumber(redis.call('GET', c.k .. ':' .. start) or '0')
    local prev = tonumber(redis.call('GET', c.k .. ':' .. (start - c.w)) or '0')
    local amount = c.amt
    if c.res then amount = amount + held(c.res) end
    if prev * (1 - (now - start) / c.w) + curr + amount > c.lim then
      return { i, retry_after(start, curr, prev, c.w, c.lim, amount), '0', '0' }
    end
    c.start = start
  elseif c.t == 's' then
    if held(c.k) + 1 > c.max then return { i, 1000, '0', '0' } end
  elseif c.t == 'n' then
    if tonumber(redis.call('GET', c.k) or '0') >= c.max then return { i, 0, '0', '0' } end
  elseif c.t == 'b' then
    redis.call('SET', c.k, tostring(c.seed), 'NX', 'PX', c.ttl)
    local spent = tonumber(redis.call('GET', c.k) or '0')
    local reserved = held(c.res)
    if spent + reserved >= c.lim then return { i, 0, tostring(spent), tostring(reserved) } end
  end
end

for _, c in ipairs(checks) do
  if c.t == 'w' then
    if c.add > 0 then
      local key = c.k .. ':' .. c.start
      redis.call('INCRBYFLOAT', key, c.add)
      redis.call('PEXPIRE', key, 2 * c.w + 1000)
    end
    if c.res and c.rv and c.rv > 0 then
      redis.call('HINCRBYFLOAT', c.res, me, c.rv)
      redis.call('PEXPIRE', c.res, 2 * c.w + 86400000)
    end
  elseif c.t == 's' then
    redis.call('HINCRBY', c.k, me, 1)
    redis.call('PEXPIRE', c.k, 86400000)
  elseif c.t == 'n' then
    redis.call('INCR', c.k)
    redis.call('PEXPIRE', c.k, c.idle)
  elseif c.t == 'b' then
    redis.call('HINCRBYFLOAT', c.res, me, c.rv)
    redis.call('PEXPIRE', c.res, c.ttl)
  end
end
return { 0 }
`;

const SETTLE = `
local ops = cjson.decode(ARGV[1])
local me = ARGV[2]
local tm = redis.call('TIME')
local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)
for _, o in ipairs(ops) do
  if o.t == 'rel' then
    local left = tonumber(redis.call('HINCRBYFLOAT', o.k, me, -o.n))
    if left <= 1e-9 then redis.call('HDEL', o.k, me) end
  elseif o.t == 'add' then
    local key = o.k .. ':' .. (now - (now % o.w))
    redis.call('INCRBYFLOAT', key, o.n)
    redis.call('PEXPIRE', key, 2 * o.w + 1000)
  elseif o.t == 'hold' then
    redis.call('HINCRBYFLOAT', o.k, me, o.n)
    redis.call('PEXPIRE', o.k, 86400000)
  elseif o.t == 'set' then
    if o.n > 1e-9 then
      redis.call('HSET', o.k, me, o.n)
      redis.call('PEXPIRE', o.k, 86400000)
    else
      redis.call('HDEL', o.k, me)
    end
  elseif o.t == 'inc' then
    -- Only onto a total Redis has: one it lost (a restart without persistence) is seeded again,
    -- from the audit store, by the next admission; started from this call alone it would hand
    -- the budget out again.
    if redis.call('EXISTS', o.k) == 1 then
      redis.call('INCRBYFLOAT', o.k, o.n)
      redis.call('PEXPIRE', o.k, o.ttl)
    end
  end
end
return 0
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    airlockAdmit(checks: string, memberPrefix: string, me: string): Result<[number, number, string, string] | [0], Context>;
    airlockSettle(ops: string, me: string): Result<number, Context>;
  }
}

export class SharedCounters {
  /** What this member holds in each per-member hash: re-stated after the link was down. */
  private readonly mine = new Map<string, number>();
  /** Settlements waiting for the end of this event-loop turn. */
  private pending: SettleOp[] = [];
  /** When a refused limit check was last logged (at most one a minute). */
  private lastErrorLog = 0;
  private flushQueued = false;
  /**
   * Holds that Redis may count differently from `mine`, to be re-stated from it: after an outage,
   * and after an admission that failed (timed out, or its link dropped), which Redis may have run
   * all the same.
   */
  private readonly unsure = new Set<string>();
  /**
   * Re-statements sent so far, and which one last re-stated each key: an admission sent before a
   * re-statement but answered after it had its hold overwritten (Redis runs commands in the order
   * sent), so it adds its hold again. Kept while admissions are in flight.
   */
  private restatements = 0;
  private readonly restatedAt = new Map<string, number>();
  private admitting = 0;
  /**
   * Spend booked while Redis could not be told (by key, summed): added to the cluster's totals when
   * the link is back, so a budget counts what every gateway spent, cut off or not. (Token usage is
   * not kept: it belongs in the sliding window of when it happened, long gone after an outage.)
   */
  private readonly unsent = new Map<string, { t: 'inc'; k: string; n: number; ttl: number }>();

  constructor(private readonly link: RedisLink) {
    link.cmd.defineCommand('airlockAdmit', { numberOfKeys: 0, lua: ADMIT });
    link.cmd.defineCommand('airlockSettle', { numberOfKeys: 0, lua: SETTLE });
    link.onReady(() => this.restate());
  }

  /** Whether the shared counters can be asked now; when not, the gateway counts alone. */
  get available(): boolean {
    return this.link.available;
  }

  /** The key of a counter named `name` (from config names) under the cluster's prefix. */
  key(name: string): string {
    return `${this.link.prefix}c:${name}`;
  }

  /** Checks every limit and, if all pass, counts the call against all. Rejects when Redis cannot answer. */
  async admit(checks: SharedCheck[]): Promise<Admission> {
    this.admitting++;
    const sentAfter = this.restatements;
    try {
      const r = await this.link.cmd.airlockAdmit(JSON.stringify(checks), `${this.link.prefix}member:`, this.link.member);
      if (r[0] === 0) {
        for (const c of checks) {
          const h = holdOf(c);
          if (!h) continue;
          this.hold(h[0], h[1]);
          if ((this.restatedAt.get(h[0]) ?? 0) > sentAfter) {
            this.pending.push({ t: 'hold', k: h[0], n: h[1] });
            this.queueFlush();
          }
        }
        return { ok: true };
      }
      const [index, retryAfterMs, spent, reserved] = r as [number, number, string, string];
      return { ok: false, index: index - 1, retryAfterMs, spent: Number(spent), reserved: Number(reserved) };
    } catch (e) {
      // The caller counts this call alone; should Redis have run the admission all the same, its
      // holds there would never be released.
      for (const c of checks) {
        const h = holdOf(c);
        if (h) this.unsure.add(h[0]);
      }
      this.queueFlush();
      // Redis answered with an error (a script error, an ACL refusal, Redis out of memory): the
      // cluster is not counting, and nothing else would say so. The link's own drops are logged there.
      if (e instanceof ReplyError && Date.now() - this.lastErrorLog > 60_000) {
        this.lastErrorLog = Date.now();
        this.link.log.error({ err: e }, 'Redis refused a limit check: this gateway counts alone until it accepts them again');
      }
      throw e;
    } finally {
      if (--this.admitting === 0) this.restatedAt.clear();
    }
  }

  /**
   * Releases and counts after a call; best effort (a release that cannot be sent is re-stated from
   * `mine` later, spend is sent when the link is back). The settlements of one event-loop turn go
   * to Redis as one script call.
   */
  settle(ops: SettleOp[]): void {
    if (ops.length === 0) return;
    for (const o of ops) if (o.t === 'rel') this.hold(o.k, -o.n);
    if (!this.link.available) return this.keepUnsent(ops);
    for (const o of ops) this.pending.push(o);
    this.queueFlush();
  }

  private keepUnsent(ops: SettleOp[]): void {
    for (const o of ops) {
      if (o.t !== 'inc') continue;
      const u = this.unsent.get(o.k);
      if (u) {
        u.n += o.n;
        u.ttl = Math.max(u.ttl, o.ttl);
      } else this.unsent.set(o.k, { ...o });
    }
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    setImmediate(() => this.sendSettlements());
  }

  private sendSettlements(): void {
    this.flushQueued = false;
    const ops = this.pending;
    this.pending = [];
    if (!this.link.available) return this.keepUnsent(ops);
    // After the releases queued before it, and after every admission sent before it.
    if (this.unsure.size > 0) {
      this.restatements++;
      for (const k of this.unsure) {
        const n = this.mine.get(k) ?? 0;
        ops.push({ t: 'set', k, n });
        if (this.admitting > 0) this.restatedAt.set(k, this.restatements);
        if (n <= 1e-9) this.mine.delete(k);
      }
      this.unsure.clear();
    }
    if (ops.length === 0) return;
    this.link.cmd.airlockSettle(JSON.stringify(ops), this.link.member).catch(() => {});
  }

  private hold(k: string, n: number): void {
    const v = Math.max(0, (this.mine.get(k) ?? 0) + n);
    // A hold back at zero is kept while the link is down: `restate` must clear it in Redis.
    if (v <= 1e-9 && this.link.available) this.mine.delete(k);
    else this.mine.set(k, v);
  }

  /** After an outage (or Redis losing its data): the spend booked meanwhile is sent, and this member's holds in Redis become what it holds now. */
  private restate(): void {
    for (const o of this.unsent.values()) this.pending.push(o);
    this.unsent.clear();
    if (this.pending.length > 0) this.queueFlush();
    for (const k of this.mine.keys()) this.unsure.add(k);
    if (this.unsure.size > 0) this.queueFlush();
  }
}
