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
import { undiciFetch } from './fetch.js';

export interface Catalogue {
  tools: McpTool[];
  resources: Record<string, unknown>[];
  templates: Record<string, unknown>[];
  prompts: Record<string, unknown>[];
}
export interface McpTool {
  name: string;
  description?: string;
  inputSchema?: unknown;
  [k: string]: unknown;
}

const MAX_BACKOFF_MS = 30_000;
const PING_EVERY_MS = 15_000;
const CONNECT_TIMEOUT_MS = 20_000;

export class Upstream {
  catalogue: Catalogue = { tools: [], resources: [], templates: [], prompts: [] };
  private client: Client | undefined;
  private connecting: Promise<Client> | undefined;
  private waiters: { resolve: (c: Client) => void; reject: (e: Error) => void }[] = [];
  private stopped = false;
  private restarts = 0;
  private connectedAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private pinger: NodeJS.Timeout | undefined;
  lastError: string | undefined;

  constructor(
    readonly cfg: McpServerConfig,
    private readonly log: Logger,
    /** Called after every catalogue load (first connect, reconnect, list_changed). */
    private readonly onCatalogue: (u: Upstream) => void,
  ) {}

  get name(): string {
    return this.cfg.name;
  }

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
          tools: { onChanged: () => void this.refresh(client) },
          prompts: { onChanged: () => void this.refresh(client) },
          resources: { onChanged: () => void this.refresh(client) },
        },
      },
    );
    let transport;
    if (spec.kind === 'stdio') {
      const t = new StdioClientTransport({ command: spec.command, args: spec.args, env: { ...getDefaultEnvironment(), ...spec.env }, cwd: spec.cwd, stderr: 'pipe' });
      const err = t.stderr;
      if (err) createInterface({ input: err as unknown as NodeJS.ReadableStream }).on('line', (line) => this.log.debug({ mcp: this.name, line }, 'MCP server output'));
      transport = t;
    } else if (spec.kind === 'sse') {
      transport = new SSEClientTransport(spec.url, { requestInit: { headers: spec.headers }, eventSourceInit: { fetch: (u, init) => fetch(u, { ...init, headers: { ...(init?.headers as Record<string, string>), ...spec.headers } }) } });
    } else {
      transport = new StreamableHTTPClientTransport(spec.url, { requestInit: { headers: spec.headers }, fetch: undiciFetch() });
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
    this.client = client;
    this.connectedAt = Date.now();
    this.lastError = undefined;
    this.log.info({ mcp: this.name, transport: spec.kind }, 'MCP server connected');
    await this.refresh(client);
    clearInterval(this.pinger);
    this.pinger = setInterval(() => {
      client.ping({ timeout: 10_000 }).catch((e: unknown) => {
        this.log.warn({ mcp: this.name, err: e instanceof Error ? e.message : String(e) }, 'MCP server did not answer a ping; restarting the connection');
        void client.close().catch(() => {});
      });
    }, PING_EVERY_MS).unref();
    return client;
  }

  private lost(client: Client, why: string): void {
    if (this.client !== client) return;
    this.client = undefined;
    clearInterval(this.pinger);
    if (this.stopped) return;
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

  /** Re-reads the catalogue from the server. */
  async refresh(client: Client | undefined = this.client): Promise<void> {
    if (!client) return;
    const caps = client.getServerCapabilities() ?? {};
    const safe = async <T>(has: unknown, f: () => Promise<T[]>): Promise<T[]> => {
      if (!has) return [];
      try {
        return await f();
      } catch (e) {
        this.log.warn({ mcp: this.name, err: e instanceof Error ? e.message : String(e) }, 'MCP catalogue listing failed');
        return [];
      }
    };
    const [tools, resources, templates, prompts] = await Promise.all([
      safe(caps.tools, async () => (await client.listTools()).tools as McpTool[]),
      safe(caps.resources, async () => (await client.listResources()).resources as Record<string, unknown>[]),
      safe(caps.resources, async () => (await client.listResourceTemplates()).resourceTemplates as Record<string, unknown>[]),
      safe(caps.prompts, async () => (await client.listPrompts()).prompts as Record<string, unknown>[]),
    ]);
    if (client !== this.client) return;
    this.catalogue = { tools, resources, templates, prompts };
    this.onCatalogue(this);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    for (const w of this.waiters.splice(0)) w.reject(new Error('the MCP server connection is closed'));
    const c = this.client;
    this.client = undefined;
    if (c) await c.close().catch(() => {});
    else if (this.connecting) await this.connecting.then((c2) => c2.close()).catch(() => {});
  }
}
