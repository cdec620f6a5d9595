/**
 * Alerts: things a security team should look at (loops, pinning, poisoning, anomalies). Stored,
 * published on the event bus, sent to the `alerts.notify` webhooks, and rate-limited per
 * kind+subject so a runaway agent raises one alert a minute, not thousands. Published at once; stored through `DeferredWrites`, so an
 * alert raised while another process holds the store's write lock neither stalls the call that
 * raised it nor is lost.
 */
import { randomUUID } from 'node:crypto';
import type { DeferredWrites } from '../store/deferred.js';
import type { Alert, Store } from '../store/types.js';
import type { EventBus } from './bus.js';
import { inert } from './webhooks.js';

const REPEAT_MS = 60_000;

export class Alerts {
  private readonly lastRaised = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly bus: EventBus,
    private readonly writes: DeferredWrites,
    /** The webhooks of `alerts.notify`: told of each alert raised here (not of those adopted from the cluster, which their gateway notifies). */
    private readonly notify: (a: Alert) => void,
    /** The cluster (store.redis): told of each alert raised here. */
    private readonly share?: (a: Alert) => void,
  ) {}

  /** Raises an alert unless the same kind+subject was raised within the last minute. */
  raise(kind: string, subject: string, severity: Alert['severity'], message: string, data?: Record<string, unknown>, agent?: string): void {
    const key = `${kind}\n${subject}`;
    // The minute is measured on a monotonic clock: a wall clock stepped back (NTP) would otherwise
    // keep the alert quiet for as long as the step.
    const now = performance.now();
    const last = this.lastRaised.get(key);
    if (last !== undefined && now - last < REPEAT_MS) return;
    this.lastRaised.set(key, now);
    if (this.lastRaised.size > 10_000) for (const [k, t] of this.lastRaised) if (now - t >= REPEAT_MS) this.lastRaised.delete(k);
    const a: Alert = { id: randomUUID(), ts: new Date().toISOString(), kind, severity, message, agent, data };
    this.bus.emit('alert', a);
    this.writes.write(() => this.store.insertAlert(a));
    this.share?.(a);
    this.notify(a);
  }

  /** An alert raised on another gateway of the cluster: published and stored here too, so any gateway lists them all. */
  adopt(a: Alert): void {
    this.bus.emit('alert', a);
    this.writes.write(() => this.store.insertAlert(a));
  }

  list(limit = 100, since?: string): Alert[] {
    return this.store.listAlerts(Math.min(Math.max(limit, 1), 1000), since);
  }
}

/**
 * The message a person reads in chat. Alert messages quote what agents and MCP servers wrote (an
 * action's path, a tool's name): made inert, on one line, so they cannot pass for airlock's own lines.
 */
export function alertText(a: Alert, adminUrl: string): string {
  const message = inert(a.message.replace(/[\r\n\u2028\u2029]+/g, ' '));
  return [`airlock alert (${a.severity}, ${a.kind}): ${message}`, `(alerts: the console at ${adminUrl}/console/, or GET ${adminUrl}/api/alerts)`].join('\n');
}
