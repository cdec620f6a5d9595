/**
 * Runaway guards. Loop: the same agent making the same action with the same arguments more than
 * `repeats` times within `window` is a loop, refused with `loop_detected`. Session: an
 * `x-airlock-session` may make at most `maxCalls` calls in all.
 */
import { createHash } from 'node:crypto';
import { formatDuration } from '../../config/units.js';
import { ALLOW, type Exchange, type Policy, type Verdict } from '../../pipeline/types.js';
import type { SharedCheck, SharedCounters } from '../../store/redis/counters.js';
import { SlidingWindows } from '../limits/window.js';

/** Sessions idle this long are forgotten. */
const SESSION_IDLE_MS = 24 * 3_600_000;
/**
 * At most this many sessions are remembered (~40 MB at the longest ids): session ids are the
 * agent's to choose, so an agent minting one per call must not grow memory for a day. Past it
 * the least recently used session is forgotten; the cap is a runaway guard, not a boundary against
 * an agent that changes ids on purpose (that agent gets a fresh count with any new id anyway).
 */
const MAX_SESSIONS = 100_000;

function loopDetected(x: Exchange, loop: { repeats: number; windowMs: number }, retryAfterMs: number): Verdict {
  const s = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return {
    kind: 'deny',
    code: 'loop_detected',
    message: `agent "${x.agent.name}" made the same call (${x.action}) with the same arguments ${loop.repeats} times within ${formatDuration(loop.windowMs)}; this looks like a loop. Change the approach, or retry in ${formatDuration(s * 1000)}`,
    retryAfterS: s,
  };
}

const sessionSpent = (session: string, maxCalls: number): Verdict => ({
  kind: 'deny',
  code: 'rate_limited',
  message: `session "${session}" has made its ${maxCalls} calls (guards.session.maxCalls); start a new session`,
});

/**
 * `onLoop` hears of each refused loop (to raise an alert). `shared`: the cluster's counters
 * (store.redis): while they answer, a loop or a session is counted across every gateway (an agent
 * behind a load balancer meets several); when they cannot, this gateway counts alone.
 */
export function guardsPolicy(onLoop: (x: Exchange) => void = () => {}, now: () => number = Date.now, maxSessions = MAX_SESSIONS, shared?: SharedCounters): Policy {
  const repeats = new SlidingWindows();
  const cluster = async (s: SharedCounters, x: Exchange, loop: { repeats: number; windowMs: number } | undefined, loopKey: string | undefined, sessionMaxCalls: number | undefined): Promise<Verdict> => {
    const checks: SharedCheck[] = [];
    if (loop && loopKey !== undefined) checks.push({ t: 'w', k: s.key(`loop:${createHash('sha256').update(loopKey).digest('base64url')}`), w: loop.windowMs, lim: loop.repeats, amt: 1, add: 1 });
    const session = sessionMaxCalls !== undefined && x.session !== undefined;
    if (session) checks.push({ t: 'n', k: s.key(`session:${createHash('sha256').update(`${x.agent.name}\n${x.session}`).digest('base64url')}`), max: sessionMaxCalls, idle: SESSION_IDLE_MS });
    if (checks.length === 0) return ALLOW;
    const r = await s.admit(checks);
    if (r.ok) return ALLOW;
    if (checks[r.index]!.t === 'w') {
      onLoop(x);
      return loopDetected(x, loop!, r.retryAfterMs);
    }
    return sessionSpent(x.session!, sessionMaxCalls!);
  };
  const sessions = new Map<string, { calls: number; last: number }>();
  let lastSweep = 0;
  const local = (x: Exchange): Verdict => {
    const { loop, sessionMaxCalls } = x.config.guards;
    const t = now();
    // Both guards are checked before either counts, so a call one of them refuses (and that is
    // never made) does not count against the other: a session-capped retry is not a loop repeat.
    const loopKey = loop && !x.tunnel ? `${x.agent.name}\n${x.action}\n${x.argsKey}` : undefined;
    if (loop && loopKey !== undefined) {
      const res = repeats.check(loopKey, loop.repeats, loop.windowMs, t);
      if (!res.ok) {
        onLoop(x);
        return loopDetected(x, loop, res.retryAfterMs);
      }
    }
    if (sessionMaxCalls !== undefined && x.session !== undefined) {
      const key = `${x.agent.name}\n${x.session}`;
      let s = sessions.get(key);
      if (s) sessions.delete(key); // re-inserted below: the Map's order is then least recently used first
      else s = { calls: 0, last: t };
      s.last = t;
      sessions.set(key, s);
      // Past the cap, the least recently used 1% go at once: finding a Map's first entry walks
      // over every entry deleted before it, so one at a time would cost a long walk per call.
      if (sessions.size > maxSessions) evictOldest(sessions, sessions.size - maxSessions + Math.ceil(maxSessions / 100));
      if (s.calls >= sessionMaxCalls) {
        return sessionSpent(x.session, sessionMaxCalls);
      }
      s.calls++;
      if (t - lastSweep > 60_000) {
        lastSweep = t;
        for (const [k, v] of sessions) {
          if (t - v.last <= SESSION_IDLE_MS) break; // least recently used first: the rest are newer
          sessions.delete(k);
        }
      }
    }
    if (loop && loopKey !== undefined) repeats.add(loopKey, loop.windowMs, t);
    return ALLOW;
  };
  return {
    name: 'guards',
    stage: 'guards',
    before(x: Exchange): Verdict | Promise<Verdict> {
      const { loop, sessionMaxCalls } = x.config.guards;
      if (!loop && sessionMaxCalls === undefined) return ALLOW;
      if (shared?.available) {
        const loopKey = loop && !x.tunnel ? `${x.agent.name}\n${x.action}\n${x.argsKey}` : undefined;
        return cluster(shared, x, loop, loopKey, sessionMaxCalls).catch(() => local(x));
      }
      return local(x);
    },
  };
}

/** Deletes the first `n` entries of a Map (its oldest, in insertion order), in one walk. */
function evictOldest(m: Map<string, unknown>, n: number): void {
  for (const k of m.keys()) {
    if (n-- <= 0) return;
    m.delete(k);
  }
}
