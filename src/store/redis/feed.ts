/**
 * The cluster's exchange feed: `/api/events` on any gateway of a cluster also shows the exchange
 * records of the others (each with the `node` that wrote it).
 *
 * Publishing costs every gateway work per call, so it is done only while someone watches: a
 * gateway subscribes to `<prefix>feed` while its own `/api/events` has subscribers, and the others
 * look (every WATCH_POLL_MS) whether anyone but themselves is subscribed. A new watcher therefore
 * sees other gateways' records from within about a second. One message carries the final records
 * of one audit commit.
 */
import { Redis } from 'ioredis';
import type { AuditRecord } from '../../audit/record.js';
import type { EventBus } from '../../events/bus.js';
import { parseJson, type RedisLink } from './link.js';

const WATCH_POLL_MS = 1_000;

export class ClusterFeed {
  private readonly sub: Redis;
  private subscribed = false;
  /** Some other gateway's `/api/events` has subscribers. */
  private watched = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly link: RedisLink,
    private readonly nodeId: string,
    private readonly bus: EventBus,
  ) {
    this.sub = link.cmd.duplicate({ connectionName: `airlock-feed:${link.member}` });
    this.sub.on('error', () => {});
    this.sub.on('message', (_channel: string, text: string) => {
      const m = parseJson(text) as { from: string; node: string; records: AuditRecord[] } | undefined;
      // Anything else on the channel is ignored (a throw here would end the process).
      if (typeof m !== 'object' || m === null || m.from === this.link.member || !Array.isArray(m.records)) return;
      for (const r of m.records) if (typeof r === 'object' && r !== null) this.bus.emit('exchange', { ...r, node: m.node });
    });
    // A reconnected subscriber has lost its subscription.
    this.sub.on('ready', () => {
      if (this.subscribed) this.sub.subscribe(this.channel).catch(() => {});
    });
    this.timer = setInterval(() => void this.poll(), WATCH_POLL_MS).unref();
  }

  private get channel(): string {
    return `${this.link.prefix}feed`;
  }

  /** The final records of one audit commit, for other gateways' watchers. */
  committed(records: readonly AuditRecord[]): void {
    if (!this.watched || !this.link.available) return;
    const finals = records.filter((r) => r.phase === 'final');
    if (finals.length === 0) return;
    this.link.cmd.publish(this.channel, JSON.stringify({ from: this.link.member, node: this.nodeId, records: finals })).catch(() => {});
  }

  private async poll(): Promise<void> {
    try {
      const want = this.bus.size > 0;
      if (want !== this.subscribed) {
        this.subscribed = want;
        await (want ? this.sub.subscribe(this.channel) : this.sub.unsubscribe(this.channel));
      }
      if (!this.link.available) return;
      const r = (await this.link.cmd.pubsub('NUMSUB', this.channel)) as [string, number];
      this.watched = Number(r[1]) - (this.subscribed ? 1 : 0) > 0;
    } catch {
      // Redis unreachable: nothing to publish to; the next poll looks again
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.sub.disconnect();
  }
}
