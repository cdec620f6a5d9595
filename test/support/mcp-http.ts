/**
 * Streamable HTTP MCP servers (v2 SDK) for the tools/call tests, in three shapes: the stateless
 * 2026-07-28 entry (`createMcpHandler`, which also serves 2025 clients statelessly), and a
 * session-keeping 2025 server answering in SSE or in plain JSON. Every one has the same tools and
 * records the cancellations and the tools/call request headers it saw. `/moved` answers with a
 * 307 to `/mcp`. A `resumable` session server keeps its events and tells clients to come back
 * after 50 ms, and its `polled` tool closes the answer stream before answering (2025-11-25 polling).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { NodeStreamableHTTPServerTransport, toNodeHandler } from '@modelcontextprotocol/node';
import { createMcpHandler, type EventStore, type JSONRPCMessage, McpServer } from '@modelcontextprotocol/server';
import * as z from 'zod/v4';

export type ToolServerKind = 'stateless' | 'session-sse' | 'session-json';

export interface ToolServer {
  url: string;
  /** Tools whose call was cancelled by the caller. */
  cancelled: string[];
  /** Every POST whose body was a tools/call: the tool, the JSON-RPC id and the headers. */
  callHeaders: { tool: string; id: unknown; headers: IncomingMessage['headers'] }[];
  /** The `Last-Event-ID` of every GET that resumed a stream. */
  resumedFrom: string[];
  close(): Promise<void>;
}

/** Every message of every stream, so a closed stream can be picked up again. */
function memoryEventStore(): EventStore {
  const events: { id: string; streamId: string; message: JSONRPCMessage }[] = [];
  return {
    async storeEvent(streamId, message) {
      const id = String(events.length + 1);
      events.push({ id, streamId, message });
      return id;
    },
    async getStreamIdForEventId(eventId) {
      return events.find((e) => e.id === eventId)?.streamId;
    },
    async replayEventsAfter(lastEventId, { send }) {
      const at = events.findIndex((e) => e.id === lastEventId);
      const streamId = events[at]!.streamId;
      for (const e of events.slice(at + 1)) if (e.streamId === streamId) await send(e.id, e.message);
      return streamId;
    },
  };
}

function tools(s: McpServer, cancelled: string[]): McpServer {
  s.registerTool('echo', { description: 'Echoes with structured content', inputSchema: z.object({ text: z.string() }), outputSchema: z.object({ length: z.number() }) }, async ({ text }) => ({ content: [{ type: 'text', text: `echo: ${text}` }], structuredContent: { length: text.length } }));
  s.registerTool('oops', { description: 'Reports a tool-level error', inputSchema: z.object({}) }, async () => ({ content: [{ type: 'text', text: 'it broke' }], isError: true }));
  // Answered at the HTTP layer with a JSON-RPC error (an McpServer turns a throwing tool into an isError result).
  s.registerTool('fail', { description: 'Fails with a JSON-RPC error', inputSchema: z.object({}) }, async () => ({ content: [] }));
  s.registerTool('slow', { description: 'Reports progress', inputSchema: z.object({ steps: z.number().int() }) }, async ({ steps }, ctx) => {
    const token = ctx.mcpReq._meta?.progressToken;
    for (let i = 1; i <= steps; i++) {
      if (token !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: steps, message: `step ${i}` } });
      await new Promise((r) => setTimeout(r, 20));
    }
    return { content: [{ type: 'text', text: `done after ${steps}` }] };
  });
  s.registerTool('wait', { description: 'Waits until cancelled (or 20 s)', inputSchema: z.object({ ms: z.number().int().optional() }) }, async ({ ms }, ctx) => {
    const signal = ctx.mcpReq.signal;
    await new Promise<void>((r) => {
      const t = setTimeout(r, ms ?? 20_000);
      signal.addEventListener('abort', () => (clearTimeout(t), cancelled.push('wait'), r()), { once: true });
    });
    return { content: [{ type: 'text', text: 'waited' }] };
  });
  s.registerTool('pinger', { description: 'Pings the client in the middle of the call', inputSchema: z.object({}) }, async (_args, ctx) => {
    await ctx.mcpReq.send({ method: 'ping' });
    return { content: [{ type: 'text', text: 'the client answered the ping' }] };
  });
  // Answered at the HTTP layer, gzip-compressed.
  s.registerTool('zipped', { description: 'Answers with a gzip-encoded body', inputSchema: z.object({}) }, async () => ({ content: [] }));
  // Answered at the HTTP layer with a body that claims gzip and is not.
  s.registerTool('badzip', { description: 'Answers with a broken gzip body', inputSchema: z.object({}) }, async () => ({ content: [] }));
  // Answered at the HTTP layer as an SSE stream with a heartbeat event and a non-JSON event before the answer.
  s.registerTool('chatty', { description: 'Answers on an SSE stream with heartbeats', inputSchema: z.object({}) }, async () => ({ content: [] }));
  // Answered at the HTTP layer with a JSON body just over airlock's limit for an answer.
  s.registerTool('huge', { description: 'Answers with a body over 64 MB', inputSchema: z.object({}) }, async () => ({ content: [] }));
  // Answered at the HTTP layer: the answer stream's connection breaks after an event with an id; a GET with that Last-Event-ID gets the answer.
  s.registerTool('dropped', { description: 'Breaks its answer stream, answers on resumption', inputSchema: z.object({}) }, async () => ({ content: [] }));
  s.registerTool('polled', { description: 'Closes its answer stream, then answers', inputSchema: z.object({}) }, async (_args, ctx) => {
    ctx.http?.closeSSE?.();
    await new Promise((r) => setTimeout(r, 150));
    return { content: [{ type: 'text', text: 'answered after the stream was closed' }] };
  });
  s.registerTool('regional', { description: 'Needs its region mirrored in a header', inputSchema: z.object({ region: z.string().meta({ 'x-mcp-header': 'Region' }) }) }, async ({ region }) => ({ content: [{ type: 'text', text: `region ${region}` }] }));
  return s;
}

/** Reads a request body whole (the session transport is then handed the parsed body). */
function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(text === '' ? undefined : JSON.parse(text));
      } catch (e) {
        reject(e);
      }
    });
    req.on('error', reject);
  });
}

export async function startToolServer(kind: ToolServerKind, opts: { resumable?: boolean } = {}): Promise<ToolServer> {
  const cancelled: string[] = [];
  const callHeaders: ToolServer['callHeaders'] = [];
  const resumedFrom: string[] = [];
  /** JSON-RPC ids of 'dropped' calls, by the event id their broken stream ended on. */
  const dropped = new Map<string, unknown>();
  const factory = () => tools(new McpServer({ name: `tools-${kind}`, version: '1.0.0' }), cancelled);
  const stateless = kind === 'stateless' ? createMcpHandler(factory) : undefined;
  const statelessNode = stateless ? toNodeHandler(stateless) : undefined;
  const sessions = new Map<string, NodeStreamableHTTPServerTransport>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/moved') return void res.writeHead(307, { location: '/mcp' }).end();
    if (path !== '/mcp') return void res.writeHead(404).end();
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    const m = body as { id?: unknown; method?: string; params?: { name?: string } } | undefined;
    const lastEventId = req.headers['last-event-id'];
    if (req.method === 'GET' && typeof lastEventId === 'string') resumedFrom.push(lastEventId);
    if (req.method === 'GET' && typeof lastEventId === 'string' && dropped.has(lastEventId)) {
      const answer = JSON.stringify({ jsonrpc: '2.0', id: dropped.get(lastEventId), result: { content: [{ type: 'text', text: 'answered after the connection broke' }] } });
      return void res.writeHead(200, { 'content-type': 'text/event-stream' }).end(`id: ${lastEventId}-answer\ndata: ${answer}\n\n`);
    }
    if (m?.method === 'tools/call' && m.params?.name === 'dropped') {
      const eventId = `dropped-${dropped.size + 1}`;
      dropped.set(eventId, m.id);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`id: ${eventId}\nretry: 20\ndata:\n\n`);
      setTimeout(() => res.socket?.destroy(), 20);
      return;
    }
    if (m?.method === 'tools/call') callHeaders.push({ tool: String(m.params?.name), id: m.id, headers: req.headers });
    if (m?.method === 'tools/call' && m.params?.name === 'zipped') {
      const zipped = gzipSync(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'unzipped fine' }] } }));
      return void res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': zipped.length }).end(zipped);
    }
    if (m?.method === 'tools/call' && m.params?.name === 'badzip') {
      const junk = Buffer.from('this is not gzip at all, not even close');
      return void res.writeHead(200, { 'content-type': 'text/html', 'content-encoding': 'gzip', 'content-length': junk.length }).end(junk);
    }
    if (m?.method === 'tools/call' && m.params?.name === 'chatty') {
      const answer = JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: 'heard through the noise' }] } });
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('event: heartbeat\ndata: ping\n\n');
      res.write(': a comment\n\nid: 1\ndata:\n\n');
      res.write('data: not json either\n\n');
      // The answer split across writes, separator included.
      res.write(`data: ${answer.slice(0, 20)}`);
      res.write(`${answer.slice(20)}\n`);
      return void res.end('\n');
    }
    if (m?.method === 'tools/call' && m.params?.name === 'huge') {
      const text = 'x'.repeat(64 * 1024 * 1024);
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text }] } }));
    }
    if (m?.method === 'tools/call' && m.params?.name === 'fail') {
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, error: { code: -32099, message: 'the fail tool always fails', data: { why: 'by design' } } }));
    }
    if (statelessNode) return void (await statelessNode(req as Parameters<typeof statelessNode>[0], res, body));
    const sid = req.headers['mcp-session-id'] as string | undefined;
    let t = sid ? sessions.get(sid) : undefined;
    if (!t) {
      if (sid) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}');
      const transport = new NodeStreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), enableJsonResponse: kind === 'session-json', ...(opts.resumable ? { eventStore: memoryEventStore(), retryInterval: 50 } : {}), onsessioninitialized: (id) => void sessions.set(id, transport), onsessionclosed: (id) => void sessions.delete(id) });
      await factory().connect(transport);
      t = transport;
    }
    await t.handleRequest(req, res, body);
  };
  const srv = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(e));
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/mcp`,
    cancelled,
    callHeaders,
    resumedFrom,
    async close() {
      await stateless?.close();
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}
