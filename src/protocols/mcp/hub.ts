/**
 * The gateway's MCP upstreams: one shared connection per configured server, kept in step with the
 * config, with each catalogue load checked against the pins (rug-pull defence) and scanned for
 * poisoning signs; connected agents hear of catalogue changes through `onChange`.
 */
import type { McpRuntime } from '../../config/mcp.js';
import type { Alerts } from '../../events/alerts.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Pins } from './pinning.js';
import { scanTool } from './scan.js';
import { Upstream, type ListKind, type McpTool } from './upstream.js';

const ALL_LISTS: ReadonlySet<ListKind> = new Set(['tools', 'prompts', 'resources']);

export class McpHub {
  private readonly upstreams = new Map<string, Upstream>();
  private readonly listeners = new Set<(server: string | undefined, lists: ReadonlySet<ListKind>) => void>();
  private pinning: McpRuntime['pinning'] = 'strict';

  constructor(
    private readonly log: Logger,
    private readonly alerts: Alerts,
    private readonly pins: Pins,
  ) {}

  /** Starts the servers the config names, reconnects changed ones, stops removed ones. */
  sync(c: McpRuntime): void {
    this.pinning = c.pinning;
    for (const [name, u] of this.upstreams) {
      const want = c.servers.get(name);
      if (!want || want.key !== u.cfg.key || want.timeoutMs !== u.cfg.timeoutMs) {
        void u.stop();
        this.upstreams.delete(name);
      }
    }
    for (const [name, cfg] of c.servers) {
      if (this.upstreams.has(name)) continue;
      const u = new Upstream(cfg, this.log, (up, changed) => this.loaded(up, changed));
      this.upstreams.set(name, u);
      u.start();
    }
  }

  get(name: string): Upstream | undefined {
    return this.upstreams.get(name);
  }

  names(): string[] {
    return [...this.upstreams.keys()];
  }

  /** Hidden and not callable: a changed definition waiting for `airlock tools accept` under `pinning: strict`. */
  quarantined(server: string, tool: string): boolean {
    return this.pinning === 'strict' && this.pins.isQuarantined(server, tool);
  }

  /** The server's tools an agent may be shown (quarantined ones left out). */
  tools(server: string): McpTool[] {
    const u = this.upstreams.get(server);
    if (!u) return [];
    return u.catalogue.tools.filter((t) => !this.quarantined(server, t.name));
  }

  /**
   * `fn` hears which of a server's lists changed (as an agent sees them): upstream changes and
   * accepted pins. `server` undefined means every server's (new rules or pinning).
   */
  onChange(fn: (server: string | undefined, lists: ReadonlySet<ListKind>) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Tells the listeners that every server's lists may look different to agents (new rules or pinning). */
  announceAll(): void {
    // Once for all servers: a stream covering all of them hears each list once, not once per server.
    if (this.upstreams.size > 0) this.announce(undefined, ALL_LISTS);
  }

  /** Tells the listeners that a server's lists changed without the upstream saying so (a pin accepted). */
  announce(server: string | undefined, lists: ReadonlySet<ListKind>): void {
    for (const fn of this.listeners) {
      try {
        fn(server, lists);
      } catch (e) {
        this.log.error({ err: e }, 'MCP catalogue listener failed');
      }
    }
  }

  private loaded(u: Upstream, changed: ReadonlySet<ListKind>): void {
    const server = u.name;
    if (this.pinning !== 'off') {
      for (const t of u.catalogue.tools) {
        if (this.pins.observe(server, t) !== 'changed') continue;
        const strict = this.pinning === 'strict';
        this.alerts.raise(
          'tool_changed',
          `${server}/${t.name}`,
          strict ? 'critical' : 'warning',
          `MCP tool ${server}/${t.name} changed its definition since it was pinned${strict ? '; it is hidden and not callable until "airlock tools accept ' + server + '/' + t.name + '"' : ' (pinning: warn, so it stays callable)'}`,
          { server, tool: t.name },
        );
      }
    }
    this.scan(u);
    this.log.info({ mcp: server, tools: u.catalogue.tools.length, resources: u.catalogue.resources.length, prompts: u.catalogue.prompts.length }, 'MCP catalogue loaded');
    // A reconnect that finds the same catalogue is not news to connected agents.
    if (changed.size > 0) this.announce(server, changed);
  }

  /** Poisoning scan of every tool definition at catalogue load: each finding is an alert naming the tool and the sign. */
  private scan(u: Upstream): void {
    const others = this.names().filter((n) => n !== u.name);
    for (const t of u.catalogue.tools) {
      for (const f of scanTool(u.name, t, others)) {
        this.alerts.raise('tool_poisoning', `${u.name}/${t.name} ${f.sign}`, f.severity, `MCP tool ${u.name}/${t.name} shows a poisoning sign (${f.sign}): ${f.detail}`, { server: u.name, tool: t.name, sign: f.sign, detail: f.detail });
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.upstreams.values()].map((u) => u.stop()));
    this.upstreams.clear();
  }
}
