/**
 * The gateway's link to the Redis of a scale-out cluster (`store.redis`): one connection for
 * commands, one for subscriptions, a membership heartbeat, and the cluster's event channel.
 *
 * Each running gateway process is a **member**: `<node id>.<random>`, alive while its key
 * `<prefix>member:<id>` exists (refreshed every HEARTBEAT_MS, expiring after MEMBER_TTL_MS, deleted
 * on a clean stop). Shared in-flight counts (concurrency, reservations) are kept per member, so
 * what a gateway that died held stops counting once its membership expires.
 *
 * Commands never queue while Redis is unreachable: they fail at once, and the callers fall back to
 * what the gateway can do alone (its own counters; its own kill switches and keys), so an outage of
 * Redis degrades the cluster to independent gateways rather than stopping traffic. Whatever was
 * changed locally meanwhile is pushed when the link is back (`onReady`).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from '../../telemetry/logger.js';

const HEARTBEAT_MS = 3_000;
export const MEMBER_TTL_MS = 10_000;
/** A command that takes longer than this fails (and the caller falls back to local counting). */
const COMMAND_TIMEOUT_MS = 1_000;

export interface ClusterMessage {
  /** The member that sent it. */
  from: string;
  /** For a request or its reply: the one member it is for. */
  to?: string;
  /** A request's id, which its reply carries. */
  rid?: string;
  type: string;
  data: unknown;
}

/** A request no member answered in time (the member that holds the thing is gone). */
export class NoReply extends Error {}

/** JSON from Redis (another gateway, or anyone who can write there): undefined when it does not parse; callers check its shape. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The URL with any password replaced, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis://(unparsable url)';
  }
}

export class RedisLink {
  readonly member: string;
  readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly handlers = new Map<string, (data: unknown, from: string) => void>();
  private readonly services = new Map<string, (data: unknown) => Promise<unknown> | unknown>();
  private readonly requests = new Map<string, { resolve: (v: unknown) => void; timer: NodeJS.Timeout }>();
  private readonly readyHooks: (() => Promise<void> | void)[] = [];
  private readonly heartbeat: NodeJS.Timeout;
  private wasDown = false;
  /** A heartbeat has been written since the process started. */
  private beaten = false;
  private closed = false;
  private firstReady: Promise<void>;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;

  constructor(
    url: string,
    readonly prefix: string,
    nodeId: string,
    readonly log: Logger,
  ) {
    this.member = `${nodeId}.${randomBytes(4).toString('hex')}`;
    const options = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: 2_000,
      retryStrategy: (times: number) => Math.min(100 * times, 2_000),
      lazyConnect: false,
    };
    // Auto-pipelining: the admissions of calls arriving in one event-loop turn go in one write.
    this.cmd = new Redis(url, { ...options, enableAutoPipelining: true, connectionName: `airlock:${this.member}` });
    this.sub = new Redis(url, { ...options, commandTimeout: undefined, connectionName: `airlock-events:${this.member}` });
    const where = redactUrl(url);
    let resolveFirst!: () => void;
    this.firstReady = new Promise((r) => (resolveFirst = r));
    this.cmd.on('error', () => {}); // reported through 'close' below, once per outage, not per retry
    this.sub.on('error', () => {});
    this.cmd.on('close', () => {
      if (this.closed || this.wasDown) return;
      this.wasDown = true;
      this.log.error({ redis: where }, 'lost the link to Redis: counters, kill switches and keys are this gateway\'s own until it is back');
    });
    this.cmd.on('ready', () => {
      void this.beat().then(async () => {
        await this.runReadyHooks();
        if (this.wasDown) this.log.info({ redis: where }, 'the link to Redis is back: counters, kill switches and keys are shared again');
        this.wasDown = false;
        resolveFirst();
      });
    });
    this.sub.on('ready', () => {
      this.sub
        .subscribe(this.channel)
        .then(() => {
          // Messages published while this connection was not subscribed (Redis dropped it, or it
          // came up after the first sync) are lost: catch up with the state they announced.
          if (this.available) void this.runReadyHooks();
        })
        .catch(() => {});
    });
    this.sub.on('message', (channel: string, text: string) => {
      if (channel !== this.channel) return;
      const m = parseJson(text) as ClusterMessage | undefined;
      // Anything on the channel that is not a message of this shape is ignored (a throw here would end the process).
      if (typeof m !== 'object' || m === null || typeof m.type !== 'string' || typeof m.from !== 'string') return;
      if (m.from === this.member || (m.to !== undefined && m.to !== this.member)) return;
      if (m.type === 'reply') {
        const p = this.requests.get(m.rid ?? '');
        if (p) {
          this.requests.delete(m.rid!);
          clearTimeout(p.timer);
          p.resolve(m.data);
        }
        return;
      }
      if (m.rid !== undefined) {
        const serve = this.services.get(m.type);
        if (serve) void this.answer(m, serve);
        return;
      }
      const h = this.handlers.get(m.type);
      if (!h) return;
      try {
        h(m.data, m.from);
      } catch (e) {
        this.log.error({ err: e, type: m.type }, 'a cluster event could not be applied');
      }
    });
    this.heartbeat = setInterval(() => void this.beat(), HEARTBEAT_MS).unref();
  }

  get channel(): string {
    return `${this.prefix}events`;
  }

  /** The key that says a member is alive. */
  memberKey(member: string): string {
    return `${this.prefix}member:${member}`;
  }

  /** Whether commands can be sent now. */
  get available(): boolean {
    return this.cmd.status === 'ready' && !this.closed;
  }

  /** Resolves when the link is first up and synced, or after `timeoutMs`; says which. */
  async connected(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)));
    const ok = await Promise.race([this.firstReady.then(() => true), late]);
    clearTimeout(timer);
    return ok;
  }

  /** Runs `hook` each time the link or its subscription comes up (the first time included): state changed meanwhile is pushed, then pulled. */
  onReady(hook: () => Promise<void> | void): void {
    this.readyHooks.push(hook);
  }

  /** Handles the cluster events of one type sent by other members. */
  on(type: string, handler: (data: unknown, from: string) => void): void {
    this.handlers.set(type, handler);
  }

  /** Answers a request of this type sent to this member (see `request`). */
  serve(type: string, handler: (data: unknown) => Promise<unknown> | unknown): void {
    this.services.set(type, handler);
  }

  /** Asks one member and waits for its answer; NoReply after `timeoutMs`. */
  request(to: string, type: string, data: unknown, timeoutMs: number): Promise<unknown> {
    if (!this.available) return Promise.reject(new NoReply('Redis is not reachable'));
    const rid = randomBytes(8).toString('hex');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(rid);
        reject(new NoReply(`no answer from gateway ${to} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.requests.set(rid, { resolve, timer });
      this.cmd.publish(this.channel, JSON.stringify({ from: this.member, to, rid, type, data } satisfies ClusterMessage)).catch(() => {});
    });
  }

  private async answer(m: ClusterMessage, serve: (data: unknown) => Promise<unknown> | unknown): Promise<void> {
    let result: unknown;
    try {
      result = await serve(m.data);
    } catch (e) {
      this.log.error({ err: e, type: m.type }, 'a request from another gateway failed');
      result = { error: 'failed' };
    }
    if (!this.available) return;
    this.cmd.publish(this.channel, JSON.stringify({ from: this.member, to: m.from, rid: m.rid!, type: 'reply', data: result } satisfies ClusterMessage)).catch(() => {});
  }

  /** Tells the other members; best effort (a member that misses it catches up when its link is back). */
  publish(type: string, data: unknown): void {
    if (!this.available) return;
    this.cmd.publish(this.channel, JSON.stringify({ from: this.member, type, data } satisfies ClusterMessage)).catch(() => {});
  }

  /**
   * One sync at a time (the link and its subscription may come back together): one asked for
   * while another runs is run once more after it, so the last sync starts after the last reason
   * for one.
   */
  private runReadyHooks(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        for (const hook of this.readyHooks) {
          try {
            await hook();
          } catch (e) {
            this.log.error({ err: e }, 'syncing with Redis failed; retried when the link is next back');
          }
        }
      } while (this.syncAgain && this.available);
    })().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async beat(): Promise<void> {
    if (!this.available) return;
    try {
      // PEXPIRE, then SET when the key is gone: works on every Redis (SET … GET needs 6.2).
      const key = this.memberKey(this.member);
      const existed = (await this.cmd.pexpire(key, MEMBER_TTL_MS)) === 1;
      if (!existed) await this.cmd.set(key, '1', 'PX', MEMBER_TTL_MS);
      // Our membership had expired (this process stalled past MEMBER_TTL_MS, or Redis lost its
      // data) and the others may have dropped what we hold: state it again.
      if (!existed && this.beaten) await this.runReadyHooks();
      this.beaten = true;
    } catch {
      // the 'close' handler reports the outage
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.heartbeat);
    // What this member held in shared counts stops counting at once, not after MEMBER_TTL_MS.
    if (this.available) await this.cmd.del(this.memberKey(this.member)).catch(() => {});
    this.closed = true;
    this.cmd.disconnect();
    this.sub.disconnect();
  }
}
