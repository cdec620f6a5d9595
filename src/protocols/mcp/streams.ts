/**
 * Notification streams to connected agents: the GET stream of a session (session-based
 * generation) and `subscriptions/listen` streams (2026-07-28). When a server's catalogue changes,
 * every stream that covers that server and asked for that list hears
 * `notifications/<list>/list_changed`, so the agent lists again without reconnecting.
 */
import type { ServerResponse } from 'node:http';
import type { ListKind } from './upstream.js';
import { sseEvent, SUBSCRIPTION_ID_META, type RpcId } from './wire.js';

export interface NotificationStream {
  res: ServerResponse;
  /** The server of `/mcp/<server>`; undefined for `/mcp`, which covers them all. */
  scope: string | undefined;
  /** The listen request's id (2026-07-28): every notification on the stream carries it. */
  subscriptionId: RpcId | undefined;
  /** The lists this stream asked to hear about. */
  lists: ReadonlySet<ListKind>;
}

const METHODS: Record<ListKind, string> = {
  tools: 'notifications/tools/list_changed',
  prompts: 'notifications/prompts/list_changed',
  resources: 'notifications/resources/list_changed',
};

/** Every open notification stream of one gateway. */
export class NotificationStreams {
  private readonly open = new Set<NotificationStream>();

  get size(): number {
    return this.open.size;
  }

  /**
   * Keeps `s` until its response closes. An SSE comment every `keepAliveMs` (0: none) keeps an idle
   * stream open: Node's fetch, which the SDK clients use, drops a body silent for 5 minutes, and a
   * 2026-07-28 client does not re-listen on its own.
   */
  add(s: NotificationStream, keepAliveMs: number): void {
    if (s.res.destroyed) return; // closed while it was being set up: its 'close' has already fired
    this.open.add(s);
    const timer = keepAliveMs > 0 ? setInterval(() => !s.res.destroyed && !s.res.writableEnded && s.res.write(': keepalive\n\n'), keepAliveMs) : undefined;
    timer?.unref();
    s.res.on('close', () => {
      clearInterval(timer);
      this.open.delete(s);
    });
  }

  /**
   * Tells every stream that covers `server` (undefined: any server) and asked for one of `lists`
   * that those lists changed.
   */
  changed(server: string | undefined, lists: ReadonlySet<ListKind>): void {
    for (const s of this.open) {
      if (s.scope !== undefined && server !== undefined && s.scope !== server) continue;
      for (const kind of lists) {
        if (!s.lists.has(kind)) continue;
        sseEvent(s.res, { jsonrpc: '2.0', method: METHODS[kind], params: s.subscriptionId !== undefined ? { _meta: { [SUBSCRIPTION_ID_META]: s.subscriptionId } } : {} });
      }
    }
  }
}
