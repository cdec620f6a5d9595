/**
 * Test support for the MCP gateway: upstream MCP servers built with the official SDKs over
 * Streamable HTTP (v2 SDK, both protocol generations) and legacy HTTP+SSE (v1 SDK), and an agent
 * client built with the official v2 client SDK, in either generation.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { createMcpHandler, McpServer, Server as McpLowLevelServer } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import { McpServer as McpServerV1 } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import * as z from 'zod/v4';

export interface Upstream {
  url: string;
  /** Authorization headers the upstream saw. */
  auth: string[];
  close(): Promise<void>;
}

function listen(srv: Server): Promise<string> {
  return new Promise((r) => srv.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(srv.address() as AddressInfo).port}`)));
}

/** A Streamable HTTP MCP server (v2 SDK) with `add` and `lookup`; it demands `token`. */
export async function startHttpUpstream(token: string): Promise<Upstream> {
  const auth: string[] = [];
  const factory = () => {
    const s = new McpServer({ name: 'web', version: '1.0.0' });
    s.registerTool('add', { description: 'Adds two numbers', inputSchema: z.object({ a: z.number(), b: z.number() }) }, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }));
    s.registerTool('lookup', { description: 'Looks a word up', inputSchema: z.object({ word: z.string() }) }, async ({ word }) => ({ content: [{ type: 'text', text: `${word}: a word` }] }));
    return s;
  };
  const handler = toNodeHandler(createMcpHandler(factory));
  const srv = createServer((req, res) => {
    auth.push(String(req.headers.authorization));
    if (req.headers.authorization !== `Bearer ${token}`) return void res.writeHead(401).end();
    void handler(req as Parameters<typeof handler>[0], res);
  });
  const url = `${await listen(srv)}/mcp`;
  return { url, auth, close: () => new Promise((r) => (srv.closeAllConnections(), srv.close(() => r()))) };
}

/** A legacy HTTP+SSE MCP server (v1 SDK): GET /sse, POST /messages. */
export async function startSseUpstream(): Promise<Upstream> {
  const auth: string[] = [];
  const transports = new Map<string, SSEServerTransport>();
  const srv = createServer(async (req, res) => {
    auth.push(String(req.headers.authorization));
    const u = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && u.pathname === '/sse') {
      const s = new McpServerV1({ name: 'old', version: '1.0.0' });
      s.registerTool('shout', { description: 'Upper-cases text', inputSchema: { text: z.string() } }, async ({ text }) => ({ content: [{ type: 'text', text: text.toUpperCase() }] }));
      const t = new SSEServerTransport('/messages', res);
      transports.set(t.sessionId, t);
      res.on('close', () => transports.delete(t.sessionId));
      await s.connect(t);
      return;
    }
    if (req.method === 'POST' && u.pathname === '/messages') {
      const t = transports.get(u.searchParams.get('sessionId') ?? '');
      if (!t) return void res.writeHead(404).end();
      await t.handlePostMessage(req, res);
      return;
    }
    res.writeHead(404).end();
  });
  const base = await listen(srv);
  return { url: `${base}/sse`, auth, close: () => new Promise((r) => (srv.closeAllConnections(), srv.close(() => r()))) };
}

export type Generation = 'legacy' | 'modern';

/** An agent: the official v2 client SDK connected to airlock with an agent key. `onToolsChanged` hears every tools/list_changed (no debounce). */
export async function agentClient(url: string, key: string, gen: Generation, opts: { onToolsChanged?: () => void } = {}): Promise<Client> {
  const c = new Client(
    { name: 'test-agent', version: '1.0.0' },
    {
      versionNegotiation: { mode: gen === 'modern' ? { pin: '2026-07-28' } : 'legacy' },
      ...(opts.onToolsChanged ? { listChanged: { tools: { autoRefresh: false, debounceMs: 0, onChanged: () => opts.onToolsChanged!() } } } : {}),
    },
  );
  await c.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  return c;
}

export interface ChangingUpstream extends Upstream {
  /** Adds a tool (`<name>` answers `<name>: <text>`) and announces it with notifications/tools/list_changed. */
  addTool(name: string): void;
  /** Gives a tool a new description and announces it the same way. */
  describe(name: string, description: string): void;
}

/** Serves an SDK MCP handler built from `factory` on a loopback port: its URL, its handler (for notifications) and a close. */
async function serveMcpHandler(factory: Parameters<typeof createMcpHandler>[0]): Promise<{ url: string; mcp: ReturnType<typeof createMcpHandler>; close: () => Promise<void> }> {
  const mcp = createMcpHandler(factory);
  const handler = toNodeHandler(mcp);
  const srv = createServer((req, res) => void handler(req as Parameters<typeof handler>[0], res));
  const url = `${await listen(srv)}/mcp`;
  return {
    url,
    mcp,
    close: async () => {
      await mcp.close();
      await new Promise<void>((r) => (srv.closeAllConnections(), srv.close(() => r())));
    },
  };
}

/**
 * A Streamable HTTP MCP server (v2 SDK, `createMcpHandler`) whose tools can be added or changed
 * while it runs: each change is published on the handler's bus, which the SDK delivers as
 * notifications/tools/list_changed on open 2026-07-28 `subscriptions/listen` streams. It starts
 * with one tool, `first`.
 */
export async function startChangingUpstream(): Promise<ChangingUpstream> {
  const tools = new Map<string, string>([['first', 'The first tool']]);
  const factory = () => {
    const s = new McpServer({ name: 'changing', version: '1.0.0' }, { capabilities: { tools: { listChanged: true } } });
    for (const [n, description] of tools) s.registerTool(n, { description, inputSchema: z.object({ text: z.string() }) }, async ({ text }) => ({ content: [{ type: 'text', text: `${n}: ${text}` }] }));
    return s;
  };
  const { url, mcp, close } = await serveMcpHandler(factory);
  return {
    url,
    auth: [],
    addTool(name) {
      tools.set(name, `The ${name} tool`);
      mcp.notify.toolsChanged();
    },
    describe(name, description) {
      tools.set(name, description);
      mcp.notify.toolsChanged();
    },
    close,
  };
}

export interface ResourceUpstream extends Upstream {
  /** Every URI it was asked to read, as received. */
  reads: string[];
}

/**
 * A Streamable HTTP MCP server (v2 SDK, low-level `Server`) with resources as a file server has
 * them: it lists `file:///handbook/intro.md` and `file:///handbook/private/salaries.md` and the
 * templates `file:///handbook/{+path}` and `memory://notes/{id}`, and reads any URI it is asked
 * for (answering `read <uri>`), as a naive server that resolves whatever it gets would.
 */
export async function startResourceUpstream(): Promise<ResourceUpstream> {
  const reads: string[] = [];
  const factory = () => {
    const s = new McpLowLevelServer({ name: 'handbook', version: '1.0.0' }, { capabilities: { resources: {} } });
    s.setRequestHandler('resources/list', () => ({ resources: [{ uri: 'file:///handbook/intro.md', name: 'intro' }, { uri: 'file:///handbook/private/salaries.md', name: 'salaries' }] }));
    s.setRequestHandler('resources/templates/list', () => ({ resourceTemplates: [{ uriTemplate: 'file:///handbook/{+path}', name: 'handbook page' }, { uriTemplate: 'memory://notes/{id}', name: 'note' }] }));
    s.setRequestHandler('resources/read', (r) => {
      reads.push(r.params.uri);
      return { contents: [{ uri: r.params.uri, mimeType: 'text/plain', text: `read ${r.params.uri}` }] };
    });
    return s;
  };
  const { url, close } = await serveMcpHandler(factory);
  return { url, auth: [], reads, close };
}

/** Polls `f` every 25 ms until it returns something truthy; throws after `ms`. */
/** The JSON-RPC error an SDK client call was refused with (throws if it was not refused). */
export async function refusal(p: Promise<unknown>): Promise<{ code: number; message: string; data: Record<string, any> }> {
  try {
    await p;
  } catch (e) {
    return e as { code: number; message: string; data: Record<string, any> };
  }
  throw new Error('expected a refusal');
}

export async function waitFor<T>(f: () => T | undefined | false | Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}
