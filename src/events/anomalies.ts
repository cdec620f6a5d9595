/**
 * Anomaly alerts: signs in the stream of finished exchanges that a security or platform team should
 * look at before a budget or a system is hurt, raised as `anomaly` alerts (SPEC section 9).
 *
 * Two kinds of signal:
 * - bursts, counted in a sliding window against a fixed threshold: calls refused by the rules (an
 *   agent probing what it may do, or following injected instructions), calls refused by
 *   limits (a client retrying without backing off), and calls with no valid agent key (someone
 *   guessing keys, or an agent left running with a revoked one);
 * - spikes, judged against each agent's own history: its calls, and its LLM spend, in the last
 *   window against its average window over the last hour or so, once it has been watched long
 *   enough to have an average (`learn`).
 *
 * Every finished exchange passes through `observe`, so it does a few map lookups and additions and
 * nothing else; an alert's text is built only when one is raised, and the alert store keeps one per
 * signal and agent a minute. History lives in memory: after a restart an agent's average is learned
 * anew. In a cluster each gateway judges the traffic it serves (its share of a spike is a spike too).
 */
import { formatDuration, type Rate } from '../config/units.js';
import { SlidingWindows } from '../policies/limits/window.js';
import type { Alert } from '../store/types.js';

export interface Spike {
  /** How many times its average window an agent's last window must be. */
  factor: number;
  /** The least that counts as a spike, whatever the average; its window is the unit of the series. */
  min: Rate;
  /** How long an agent is watched before its spikes are judged. */
  learnMs: number;
}

export interface AnomalyConfig {
  denials: Rate | undefined;
  limited: Rate | undefined;
  authFailures: Rate | undefined;
  callSpike: Spike | undefined;
  spendSpike: Spike | undefined;
}

/** What `observe` reads of a final audit record. */
export interface FinishedExchange {
  agent: string | null;
  /** The record's decision: a call refused has `denied` or `limited`; one allowed and later cut keeps `allowed`. */
  decision: string;
  code?: string | undefined;
  costUsd?: number | undefined;
}

export type RaiseAlert = (kind: string, subject: string, severity: Alert['severity'], message: string, data: Record<string, unknown>, agent?: string) => void;

/** Codes of calls the agent's limits and guards refused. */
const LIMIT_CODES = new Set(['rate_limited', 'concurrency_limited', 'loop_detected', 'budget_exceeded']);

/** How many windows of history an average covers. */
const HISTORY = 60;

/**
 * One agent's amounts (calls, or USD) per fixed window, for the last HISTORY windows: a ring indexed
 * by window number, so adding is O(1) and the average is recomputed once per window.
 */
class Series {
  private readonly slots = new Float64Array(HISTORY + 1);
  private newest: number;
  private first: number;
  private averageOf = -1;
  private average = 0;

  constructor(
    readonly windowMs: number,
    now: number,
  ) {
    this.newest = Math.floor(now / windowMs);
    this.first = this.newest;
  }

  /** Adds `amount` now; returns the amount of the last window (a sliding estimate). */
  add(amount: number, now: number): number {
    const w = Math.floor(now / this.windowMs);
    if (w < this.newest) {
      // A clock that went back: the slots no longer say which window they hold, so the history starts over.
      this.slots.fill(0);
      this.newest = w;
      this.first = w;
      this.averageOf = -1;
    } else if (w > this.newest) {
      // Windows with nothing in them are zeros of the average, not gaps.
      for (let i = Math.max(this.newest + 1, w - HISTORY); i <= w; i++) this.slots[i % (HISTORY + 1)] = 0;
      this.newest = w;
    }
    this.slots[w % (HISTORY + 1)]! += amount;
    const into = (now % this.windowMs) / this.windowMs;
    return this.slots[w % (HISTORY + 1)]! + this.slots[(w + HISTORY) % (HISTORY + 1)]! * (1 - into);
  }

  /** The number of whole windows watched before the current one (the first, partial one left out). */
  watched(now: number): number {
    const w = Math.floor(now / this.windowMs);
    return Math.min(HISTORY, w - this.first - 1);
  }

  /** The average window of the whole windows watched before the current one. */
  averageWindow(now: number): number {
    const w = Math.floor(now / this.windowMs);
    if (this.averageOf === w) return this.average;
    const n = this.watched(now);
    let sum = 0;
    for (let i = w - n; i < w; i++) sum += this.slots[i % (HISTORY + 1)]!;
    this.averageOf = w;
    this.average = n > 0 ? sum / n : 0;
    return this.average;
  }
}

export class AnomalyDetector {
  private readonly bursts = new SlidingWindows();
  private readonly calls = new Map<string, Series>();
  private readonly spend = new Map<string, Series>();

  constructor(
    private config: AnomalyConfig,
    private readonly raise: RaiseAlert,
    /** A monotonic clock by default: a wall clock stepped back or forth (NTP) must not move the windows. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A reloaded config: thresholds apply from the next exchange; a series whose window changed starts over. */
  configure(config: AnomalyConfig): void {
    if (config.callSpike?.min.windowMs !== this.config.callSpike?.min.windowMs) this.calls.clear();
    if (config.spendSpike?.min.windowMs !== this.config.spendSpike?.min.windowMs) this.spend.clear();
    this.config = config;
  }

  /** Every finished exchange, refused ones included. */
  observe(x: FinishedExchange): void {
    const c = this.config;
    const now = this.now();
    const code = x.code;
    if (code !== undefined) {
      if (x.agent === null) {
        // A caller with no valid key. (An agent's call whose key was revoked while it was held for
        // approval says unauthenticated too, but with its agent: the operator's doing, not a guess.)
        if (code === 'unauthenticated' && c.authFailures) this.burst('auth_failures', undefined, c.authFailures, now);
      } else if (code === 'denied') {
        // Calls the rules refused. Not a person's denial of a held call (approval_denied: whoever
        // denied it has seen it), nor an allowed tunnel cut by a key revocation or a reload (its
        // decision stays allowed: the operator's doing, not the agent's).
        if (c.denials && x.decision === 'denied') this.burst('denials', x.agent, c.denials, now);
      } else if (c.limited && x.decision === 'limited' && LIMIT_CODES.has(code)) {
        this.burst('limited', x.agent, c.limited, now);
      }
    }
    if (x.agent === null) return;
    if (c.callSpike) this.spike('call_spike', x.agent, this.calls, c.callSpike, 1, now);
    if (c.spendSpike && x.costUsd !== undefined && x.costUsd > 0 && x.costUsd < Infinity) this.spike('spend_spike', x.agent, this.spend, c.spendSpike, x.costUsd, now);
  }

  private burst(signal: 'denials' | 'limited' | 'auth_failures', agent: string | undefined, rate: Rate, now: number): void {
    const key = agent === undefined ? signal : `${signal}\n${agent}`;
    this.bursts.add(key, rate.windowMs, now);
    // Rounded: the two-bucket estimate dips a little below the true count just after a window turns.
    const count = Math.round(this.bursts.count(key, rate.windowMs, now));
    if (count < rate.limit) return;
    const window = formatDuration(rate.windowMs);
    const data = { signal, count, window, threshold: rate.text };
    if (signal === 'auth_failures') {
      this.raise('anomaly', signal, 'warning', `${count} calls with a missing, unknown, revoked or expired agent key in the last ${window} (alert at ${rate.text}): someone may be guessing keys, or an agent runs with a key that no longer works. Audit records with code unauthenticated show them`, data);
    } else if (signal === 'denials') {
      this.raise('anomaly', `${signal} ${agent}`, 'warning', `agent "${agent}" had ${count} calls refused by the rules in the last ${window} (alert at ${rate.text}): it may be probing what it may do, or following instructions injected into its input`, data, agent);
    } else {
      this.raise('anomaly', `${signal} ${agent}`, 'info', `agent "${agent}" had ${count} calls refused by its limits in the last ${window} (alert at ${rate.text}): it keeps calling without backing off`, data, agent);
    }
  }

  private spike(signal: 'call_spike' | 'spend_spike', agent: string, all: Map<string, Series>, s: Spike, amount: number, now: number): void {
    let series = all.get(agent);
    if (series === undefined) {
      series = new Series(s.min.windowMs, now);
      all.set(agent, series);
    }
    const recent = series.add(amount, now);
    if (recent < s.min.limit) return;
    const average = series.averageWindow(now);
    if (recent < s.factor * average) return;
    const watched = series.watched(now);
    if (watched * s.min.windowMs < s.learnMs) return;
    const window = formatDuration(s.min.windowMs);
    const over = formatDuration(watched * s.min.windowMs);
    const against = average > 0 ? `${(recent / average).toFixed(1)}× its average of ${fmt(signal, average)} per ${window} over the ${over} before` : `after none in the ${over} before`;
    const data = { signal, recent: round(recent), average: round(average), factor: s.factor, window, over, threshold: s.min.text };
    const what = signal === 'call_spike' ? `made ${fmt(signal, recent)} calls` : `spent ${fmt(signal, recent)} on LLM calls`;
    this.raise('anomaly', `${signal} ${agent}`, 'warning', `agent "${agent}" ${what} in the last ${window}, ${against}`, data, agent);
  }
}

function fmt(signal: 'call_spike' | 'spend_spike', n: number): string {
  return signal === 'call_spike' ? String(Math.round(n * 10) / 10) : `$${n.toFixed(n < 1 ? 4 : 2)}`;
}

function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}
