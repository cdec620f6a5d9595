/**
 * One connection to one upstream MCP server, shared by every agent: the official SDK client over
 * stdio (airlock starts the server, restarts it with backoff when it dies or stops answering pings,
 * stops it on shutdown), Streamable HTTP or legacy HTTP+SSE, in whichever protocol generation the
 * server speaks. Keeps the server's catalogue (tools, resources, templates, prompts) and refreshes
 * it on `list_changed`.
 */
import { Client, SSEClientTransport, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { createInterface } from 'node:readline';
import type { McpServerConfig } from '../../config/mcp.js';
import type { Logger } from '../../telemetry/logger.js';
import { directToolCall, NOT_HANDLED, type DirectCallOptions, type HttpLeg } from './direct.js';
import { undiciFetch } from './fetch.js';

export interface Catalogue {
  tools: McpTool[];
  resources: Record<string, unknown>[];
  templates: Record<string, unknown>[];
  prompts: Record<string, unknown>[];
}
/** The lists an MCP server announces changes of (templates count as resources). */
export type ListKind = 'tools' | 'prompts' | 'resources';

export interface McpTool {
  name: string;
  description?: string;
  inputSchema?: unknown;
  [k: string]: unknown;
}

const MAX_BACKOFF_MS = 30_000;
const PING_EVERY_MS = 15_000;
const CONNECT_TIMEOUT_MS = 20_000;
const LIST_TIMEOUT_MS = 30_000;
/** Pages gathered per listing at most: 100 pages of a typical 50–100 items each. */
export const MAX_LIST_PAGES = 100;

export class Upstream {
  catalogue: Catalogue = { tools: [], resources: [], templates: [], prompts: [] };
  /**
   * The usable connection: set only once its first catalogue is loaded (and checked against the
   * pins by the hub), so no call is judged against the previous connection's catalogue and sent to
   * a server that may have come back different.
   */
  private client: Client | undefined;
  /** The newest connection, usable or still loading its first catalogue; an older one's late news is ignored. */
  private latest: Client | undefined;
  /** The Streamable HTTP transport of `client`, whose session and version the direct tools/call uses. */
  private http: StreamableHTTPClientTransport | undefined;
  /** Tools whose inputSchema declares x-mcp-header parameters: only the SDK client mirrors those into headers. */
  private headerTools = new Set<string>();
  private connecting: Promise<Client> | undefined;
  private waiters: { resolve: (c: Client) => void; reject: (e: Error) => void }[] = [];
  private stopped = false;
  private restarts = 0;
  private connectedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private pinger: NodeJS.Timeout | undefined;
  lastError: string | undefined;
  /** What the server said it can do, as of its last connect (kept while it reconnects). */
  capabilities: Record<string, unknown> | undefined;

  constructor(
    readonly cfg: McpServerConfig,
    private readonly log: Logger,
    /** Called after every catalogue load (first connect, reconnect, list_changed) with the lists that changed. */
    private readonly onCatalogue: (u: Upstream, changed: ReadonlySet<ListKind>) => void,
  ) {}

  get name(): string {
    return this.cfg.name;
  }

  /** Connected with its catalogue loaded: calls may be judged against `catalogue`. */
  get connected(): boolean {
    return this.client !== undefined;
  }

  start(): void {
    if (this.stopped || this.connecting) return;
    this.connecting = this.connect();
    this.connecting.then(
      (c) => {
        this.connecting = undefined;
        for (const w of this.waiters.splice(0)) w.resolve(c);
      },
      (e: unknown) => {
        this.connecting = undefined;
        this.lastError = e instanceof Error ? e.message : String(e);
        this.log.warn({ mcp: this.name, err: this.lastError }, 'MCP server could not be reached; retrying');
        this.scheduleRestart();
      },
    );
  }

  /** The connected client, waiting up to `waitMs` for a (re)connect in progress. */
  async ready(waitMs: number): Promise<Client> {
    if (this.client) return this.client;
    if (this.stopped) throw new Error('the MCP server connection is closed');
    return new Promise<Client>((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== resolve);
        reject(new Error(`MCP server "${this.name}" is not connected${this.lastError ? ` (${this.lastError})` : ''}`));
      }, waitMs);
      this.waiters.push({ resolve: (c) => (clearTimeout(t), resolve(c)), reject: (e) => (clearTimeout(t), reject(e)) });
    });
  }

  private async connect(): Promise<Client> {
    const spec = this.cfg.spec;
    const client = new Client(
      { name: 'airlock', version: '0.1.0' },
      {
        capabilities: {},
        versionNegotiation: { mode: 'auto', probe: { timeoutMs: 5000 } },
        listChanged: {
          tools: { onChanged: () => this.refreshOnNotice(client) },
          prompts: { onChanged: () => this.refreshOnNotice(client) },
          resources: { onChanged: () => this.refreshOnNotice(client) },
        },
      },
    );
    let transport;
    let http: StreamableHTTPClientTransport | undefined;
    if (spec.kind === 'stdio') {
      const t = new StdioClientTransport({ command: spec.command, args: spec.args, env: { ...getDefaultEnvironment(), ...spec.env }, cwd: spec.cwd, stderr: 'pipe' });
      const err = t.stderr;
      if (err) createInterface({ input: err as unknown as NodeJS.ReadableStream }).on('line', (line) => this.log.debug({ mcp: this.name, line }, 'MCP server output'));
      transport = t;
    } else if (spec.kind === 'sse') {
      transport = new SSEClientTransport(spec.url, { requestInit: { headers: spec.headers }, eventSourceInit: { fetch: (u, init) => fetch(u, { ...init, headers: { ...(init?.headers as Record<string, string>), ...spec.headers } }) } });
    } else {
      transport = http = new StreamableHTTPClientTransport(spec.url, { requestInit: { headers: spec.headers }, fetch: undiciFetch() });
    }
    let closed = false;
    client.onclose = () => {
      if (closed) return;
      closed = true;
      this.lost(client, 'connection closed');
    };
    client.onerror = (e) => this.log.debug({ mcp: this.name, err: e.message }, 'MCP client error');
    await client.connect(transport, { timeout: CONNECT_TIMEOUT_MS });
    if (this.stopped) {
      await client.close().catch(() => {});
      throw new Error('stopped');
    }
    this.latest = client;
    this.capabilities = client.getServerCapabilities() as Record<string, unknown> | undefined;
    this.connectedAt = Date.now();
    this.lastError = undefined;
    this.log.info({ mcp: this.name, transport: spec.kind }, 'MCP server connected');
    await this.refresh(client);
    if (this.stopped || this.latest !== client) {
      await client.close().catch(() => {});
      throw new Error(this.stopped ? 'stopped' : 'the connection closed while its catalogue was loading');
    }
    this.client = client;
    this.http = http;
    clearInterval(this.pinger);
    this.pinger = setInterval(() => {
      client.ping({ timeout: 10_000 }).catch((e: unknown) => {
        this.log.warn({ mcp: this.name, err: e instanceof Error ? e.message : String(e) }, 'MCP server did not answer a ping; restarting the connection');
        void client.close().catch(() => {});
      });
    }, PING_EVERY_MS).unref();
    return client;
  }

  /**
   * Calls a tool: straight over HTTP to a Streamable HTTP server (see direct.ts), through the SDK
   * client otherwise, and for what the direct leg leaves to the SDK.
   */
  async callTool(name: string, args: Record<string, unknown> | undefined, opts: DirectCallOptions): Promise<Record<string, unknown>> {
    const client = await this.ready(Math.min(10_000, opts.timeoutMs));
    const leg = this.legFor(client, name);
    if (leg) {
      const r = await directToolCall(leg, name, args, opts);
      if (r !== NOT_HANDLED) return r;
    }
    const onprogress = opts.onProgress;
    return (await client.callTool(
      { name, ...(args ? { arguments: args } : {}) },
      { signal: opts.abort.signal, timeout: opts.timeoutMs, ...(onprogress ? { onprogress: (p: Record<string, unknown>) => onprogress(p), resetTimeoutOnProgress: true } : {}) },
    )) as Record<string, unknown>;
  }

  /** The negotiated HTTP connection for a direct call of `tool`, when there is one it can take. */
  private legFor(client: Client, tool: string): HttpLeg | undefined {
    const http = this.http;
    const spec = this.cfg.spec;
    if (!http || client !== this.client || spec.kind !== 'streamable-http' || this.headerTools.has(tool)) return undefined;
    const protocolVersion = client.getNegotiatedProtocolVersion() ?? http.protocolVersion;
    if (protocolVersion === undefined) return undefined;
    return { url: spec.url, headers: spec.headers, protocolVersion, modern: client.getProtocolEra() === 'modern', sessionId: http.sessionId };
  }

  private lost(client: Client, why: string): void {
    if (this.latest !== client) return;
    const wasUsable = this.client === client;
    this.latest = undefined;
    this.client = undefined;
    this.http = undefined;
    clearInterval(this.pinger);
    // Lost while loading its first catalogue: connect() fails, and start() schedules the restart.
    if (this.stopped || !wasUsable) return;
    this.lastError = why;
    this.log.warn({ mcp: this.name, why }, 'MCP server connection lost; reconnecting');
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.stopped) return;
    // A connection that lived a while before dying starts its backoff over.
    if (this.connectedAt && Date.now() - this.connectedAt > 60_000) this.restarts = 0;
    const delay = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.restarts++);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), delay);
    this.timer.unref();
  }

  /** A refresh nobody awaits (a list_changed notice): a failure is logged, never an unhandled rejection that ends the process. */
  private refreshOnNotice(client: Client): void {
    this.refresh(client).catch((e: unknown) => this.log.error({ mcp: this.name, err: e instanceof Error ? e.message : String(e) }, 'MCP catalogue refresh failed'));
  }

  /** Re-reads the catalogue from the server, every page of each list; tells the hub which lists changed. */
  async refresh(client: Client | undefined = this.latest): Promise<void> {
    if (!client) return;
    const caps = client.getServerCapabilities() ?? {};
    const previous = this.catalogue;
    const [tools, resources, templates, prompts] = await Promise.all([
      caps.tools ? this.listAll<McpTool>(client, 'tools/list', 'tools', previous.tools) : [],
      caps.resources ? this.listAll(client, 'resources/list', 'resources', previous.resources) : [],
      caps.resources ? this.listAll(client, 'resources/templates/list', 'resourceTemplates', previous.templates) : [],
      caps.prompts ? this.listAll(client, 'prompts/list', 'prompts', previous.prompts) : [],
    ]);
    if (client !== this.latest) return;
    this.catalogue = { tools, resources, templates, prompts };
    this.headerTools = new Set(tools.filter((t) => JSON.stringify(t.inputSchema ?? {}).includes('"x-mcp-header"')).map((t) => t.name));
    const same = (a: unknown[], b: unknown[]) => a.length === b.length && JSON.stringify(a) === JSON.stringify(b);
    const changed = new Set<ListKind>();
    if (!same(previous.tools, tools)) changed.add('tools');
    if (!same(previous.resources, resources) || !same(previous.templates, templates)) changed.add('resources');
    if (!same(previous.prompts, prompts)) changed.add('prompts');
    this.onCatalogue(this, changed);
  }

  /**
   * Every page of one listing, following `nextCursor` up to MAX_LIST_PAGES pages (a server whose
   * cursors never end must not hold the catalogue hostage: what was gathered is kept, with a
   * warning). A listing that fails keeps the previous list rather than emptying it.
   */
  private async listAll<T>(client: Client, method: 'tools/list' | 'resources/list' | 'resources/templates/list' | 'prompts/list', key: string, previous: T[]): Promise<T[]> {
    const items: T[] = [];
    const seen = new Set<string>();
    let cursor: string | undefined;
    try {
      for (let page = 0; ; page++) {
        if (page === MAX_LIST_PAGES) {
          this.log.warn({ mcp: this.name, method, pages: page, items: items.length }, `MCP listing has more than ${MAX_LIST_PAGES} pages; the rest is left out`);
          break;
        }
        // Per page, not the SDK's auto-walk: that one throws away everything when it hits its cap.
        const r = (await client.request({ method, params: cursor === undefined ? {} : { cursor } }, { timeout: LIST_TIMEOUT_MS })) as Record<string, unknown>;
        const got = r[key];
        if (Array.isArray(got)) items.push(...(got as T[]));
        const next = r['nextCursor'];
        if (typeof next !== 'string' || seen.has(next)) break;
        seen.add(next);
        cursor = next;
      }
      return items;
    } catch (e) {
      this.log.warn({ mcp: this.name, method, err: e instanceof Error ? e.message : String(e) }, 'MCP catalogue listing failed; keeping the previous list');
      return previous;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    for (const w of this.waiters.splice(0)) w.reject(new Error('the MCP server connection is closed'));
    // A connection still loading its first catalogue is closed too, rather than waited for.
    const c = this.client ?? this.latest;
    this.client = undefined;
    this.latest = undefined;
    if (c) await c.close().catch(() => {});
    else if (this.connecting) await this.connecting.then((c2) => c2.close()).catch(() => {});
  }
}
