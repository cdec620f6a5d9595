/**
 * `airlock mcp-stdio`: the stdio bridge as a real child process, between the official SDK's stdio
 * client (playing the desktop app) and a Streamable HTTP MCP server built with the official SDK
 * that insists on the bearer key — answering in SSE and, in a second server, in plain JSON — and
 * then a real `airlock start` in front of that server, killed and restarted under the bridge.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { NodeStreamableHTTPServerTransport } from '@modelcontextprotocol/node';
import { McpServer } from '@modelcontextprotocol/server';
import * as z from 'zod';
import { BIN, freePort, ROOT, runCli, startCli, tempDir, waitFor, writeConfig, type CliGateway } from './support/cli.js';

const KEY = 'alk_stdioSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS';

interface McpHttp {
  url: string;
  /** Authorization and Mcp-Session-Id headers of every request, in order. */
  seen: { method: string; authorization: string | undefined; session: string | undefined }[];
  /** The MCP server of the newest session. */
  latest(): McpServer;
  close(): Promise<void>;
}

function mcpServer(): McpServer {
  const s = new McpServer({ name: 'fake-upstream', version: '1.0.0' }, { capabilities: { logging: {} } });
  s.registerTool('echo', { description: 'Echoes the text back', inputSchema: z.object({ text: z.string() }) }, ({ text }) => ({ content: [{ type: 'text', text: `echo: ${text}` }] }));
  s.registerTool('slow_count', { description: 'Counts to n, reporting progress', inputSchema: z.object({ n: z.number().int() }) }, async ({ n }, ctx) => {
    for (let i = 1; i <= n; i++) {
      await ctx.mcpReq.log('info', `counted ${i}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return { content: [{ type: 'text', text: `counted to ${n}` }] };
  });
  return s;
}

/** A session-keeping Streamable HTTP MCP server on 127.0.0.1:0 that answers 401 without `Bearer KEY`; `extra` adds tools to each session's server. */
async function startMcpHttp(json: boolean, extra?: (s: McpServer) => void): Promise<McpHttp> {
  const sessions = new Map<string, NodeStreamableHTTPServerTransport>();
  const seen: McpHttp['seen'] = [];
  let latest: McpServer | undefined;
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const session = req.headers['mcp-session-id'] as string | undefined;
    seen.push({ method: req.method ?? '', authorization: req.headers.authorization, session });
    if (req.headers.authorization !== `Bearer ${KEY}`) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'unauthenticated', message: 'a valid agent key is required', request_id: 'r-1' } }));
      return;
    }
    let t = session ? sessions.get(session) : undefined;
    if (!t) {
      if (session) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}');
        return;
      }
      const transport = new NodeStreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), enableJsonResponse: json, onsessioninitialized: (id) => void sessions.set(id, transport), onsessionclosed: (id) => void sessions.delete(id) });
      latest = mcpServer();
      extra?.(latest);
      await latest.connect(transport);
      t = transport;
    }
    await t.handleRequest(req, res);
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(e));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    seen,
    latest: () => latest!,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The SDK's stdio client, spawning `node bin/airlock mcp-stdio ...` like a desktop app would. */
async function desktopApp(url: string, key = KEY, onToolsChanged?: () => void): Promise<{ client: Client; stderr: () => string; transport: StdioClientTransport }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp-stdio', '--url', url, '--key', key], cwd: ROOT, stderr: 'pipe' });
  let err = '';
  transport.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const client = new Client({ name: 'desktop-app', version: '1.0.0' }, onToolsChanged ? { listChanged: { tools: { autoRefresh: false, debounceMs: 0, onChanged: onToolsChanged } } } : {});
  await client.connect(transport);
  return { client, stderr: () => err, transport };
}

for (const json of [false, true]) {
  describe(`mcp-stdio: bridging to a Streamable HTTP server answering in ${json ? 'JSON' : 'SSE'}`, () => {
    let up: McpHttp;
    before(async () => {
      up = await startMcpHttp(json);
    });
    after(() => up.close());

    it('initialize, tools/list and tools/call work, with the key as bearer and the session kept', async () => {
      const { client, stderr } = await desktopApp(up.url);
      try {
        assert.equal(client.getServerVersion()?.name, 'fake-upstream');
        const { tools } = await client.listTools();
        assert.deepEqual(tools.map((t) => t.name).sort(), ['echo', 'slow_count']);
        const r = await client.callTool({ name: 'echo', arguments: { text: 'hello' } });
        assert.deepEqual(r.content, [{ type: 'text', text: 'echo: hello' }]);
        // Several calls in flight at once come back to the right callers.
        const many = await Promise.all([1, 2, 3].map((i) => client.callTool({ name: 'echo', arguments: { text: `n${i}` } })));
        assert.deepEqual(many.map((m) => (m.content as { text: string }[])[0]!.text), ['echo: n1', 'echo: n2', 'echo: n3']);
        if (!json) {
          // Notifications sent while a call runs reach the app over the call's SSE stream.
          const logs: string[] = [];
          client.setNotificationHandler('notifications/message', (n) => void logs.push(String(n.params.data)));
          const c = await client.callTool({ name: 'slow_count', arguments: { n: 3 } });
          assert.deepEqual(c.content, [{ type: 'text', text: 'counted to 3' }]);
          assert.deepEqual(logs, ['counted 1', 'counted 2', 'counted 3']);
        }
        if (!json) {
          // A notification outside any request travels on the standalone GET stream the bridge opened.
          await waitFor('the standalone SSE stream', () => up.seen.some((s) => s.method === 'GET'));
          let changed = 0;
          client.setNotificationHandler('notifications/tools/list_changed', () => void changed++);
          up.latest().registerTool('late', { description: 'Registered later' }, () => ({ content: [] }));
          await waitFor('tools/list_changed', () => changed > 0);
          assert.ok((await client.listTools()).tools.some((t) => t.name === 'late'));
        }
        assert.ok(up.seen.length >= 4);
        assert.ok(up.seen.every((s) => s.authorization === `Bearer ${KEY}`), 'every request carries the key');
        const posts = up.seen.filter((s) => s.method === 'POST');
        assert.equal(posts[0]!.session, undefined, 'initialize starts a session');
        const sid = posts[1]!.session;
        assert.ok(sid, 'the session id from the initialize response is sent back');
        assert.ok(posts.slice(1).every((s) => s.session === sid));
        assert.match(stderr(), /bridging stdio to http:\/\/127\.0\.0\.1:\d+\/mcp/);
      } finally {
        await client.close();
      }
    });
  });
}

describe('mcp-stdio: the process', () => {
  let up: McpHttp;
  before(async () => {
    up = await startMcpHttp(false);
  });
  after(() => up.close());

  it('speaks newline-delimited JSON on stdout only, and exits 0 when stdin closes (after answering what was asked)', async () => {
    const child = spawn(process.execPath, [BIN, 'mcp-stdio', '--url', up.url], { cwd: ROOT, env: { ...process.env, AIRLOCK_KEY: KEY }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    const send = (m: unknown) => child.stdin.write(`${JSON.stringify(m)}\n`);
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } });
    const deadline = Date.now() + 10_000;
    while (!stdout.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'bye' } } });
    child.stdin.end(); // the app quits right after asking: the answer still comes
    assert.equal(await exited, 0, stderr);
    const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: number; result: Record<string, unknown> });
    assert.deepEqual(lines.map((l) => l.id), [1, 2]);
    assert.equal((lines[0]!.result['serverInfo'] as { name: string }).name, 'fake-upstream');
    assert.deepEqual(lines[1]!.result['content'], [{ type: 'text', text: 'echo: bye' }]);
    assert.ok(!stderr.includes(KEY), 'the key is never logged');
    // The session is ended on the way out, after the last call. (The SDK transport's own GET
    // stream, opened in the background after initialization, may reach the server after it: its
    // place among the requests is a race, so it is left out.)
    const sent = up.seen.filter((r) => r.method !== 'GET');
    assert.equal(sent.at(-1)!.method, 'DELETE', 'the session is ended on the way out');
    assert.equal(sent.at(-1)!.session, sent.at(-2)!.session, 'and it is the session the calls used');
  });

  it('a refused key comes back as a JSON-RPC error naming airlock\'s error code', async () => {
    const child = spawn(process.execPath, [BIN, 'mcp-stdio', '--url', up.url, '--key', 'alk_wrong'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    child.stdin.end(`${JSON.stringify({ jsonrpc: '2.0', id: 'a', method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } })}\n`);
    assert.equal(await exited, 0);
    const reply = JSON.parse(stdout.trim()) as { id: string; error: { code: number; message: string; data: { status: number } } };
    assert.equal(reply.id, 'a');
    assert.equal(reply.error.code, -32000);
    assert.equal(reply.error.message, 'airlock: unauthenticated: a valid agent key is required');
    assert.equal(reply.error.data.status, 401);
    assert.match(stderr, /unauthenticated/);
  });

  it('an unreachable gateway answers requests with an error instead of hanging', async () => {
    const child = spawn(process.execPath, [BIN, 'mcp-stdio', '--url', 'http://127.0.0.1:1/mcp', '--key', KEY], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
    child.stdin.end(`${JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' })}\n`);
    assert.equal(await exited, 0);
    const reply = JSON.parse(stdout.trim()) as { id: number; error: { message: string } };
    assert.equal(reply.id, 7);
    assert.match(reply.error.message, /^airlock mcp-stdio: /);
  });

  it('usage errors exit 2', async () => {
    for (const argv of [['mcp-stdio'], ['mcp-stdio', '--url', 'http://127.0.0.1:1/mcp'], ['mcp-stdio', '--key', KEY], ['mcp-stdio', '--url', 'http://[bad/mcp', '--key', KEY], ['mcp-stdio', 'extra', '--url', 'http://x/mcp', '--key', KEY]]) {
      const r = await runCli(argv, { env: { AIRLOCK_KEY: undefined } });
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /usage: airlock mcp-stdio/);
      assert.equal(r.stdout, '');
    }
  });
});

describe('mcp-stdio: through a real gateway that goes away', () => {
  let up: McpHttp;
  const tmp = tempDir('airlock-mcp-stdio-');
  let config: string;
  before(async () => {
    up = await startMcpHttp(false, (s) => {
      s.registerTool('hang', { description: 'Reports progress once, then never answers' }, async (ctx) => {
        const progressToken = ctx.mcpReq._meta?.progressToken;
        if (progressToken !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: 1 } });
        await new Promise((r) => setTimeout(r, 60_000).unref());
        return { content: [] };
      });
    });
    config = writeConfig(
      tmp.dir,
      // An open notification stream holds a draining gateway for all of shutdownTimeout (10 s by default).
      `log: { level: warn }
shutdownTimeout: 1s
agents:
  desk: { keys: ["${KEY}"] }
rules:
  - name: all
    allow: ["mcp: **"]
mcp:
  servers:
    fake: { url: "${up.url}", headers: { Authorization: "Bearer ${KEY}" } }
`,
    );
  });
  after(async () => {
    await up.close();
    tmp.cleanup();
  });
  const gateway = (port: number) => startCli(['-c', config, '--listen', `127.0.0.1:${port}`, '--admin-listen', '127.0.0.1:0']);
  /** The gateway's tool names, once its catalogue of the upstream is loaded. */
  const toolsOf = (client: Client) => waitFor('the gateway\'s catalogue', async () => {
    const names = (await client.listTools()).tools.map((t) => t.name);
    return names.includes('fake__echo') ? names : undefined;
  }, 8000, 100);

  it('a call in flight when the gateway dies is answered with an error instead of waiting forever', { timeout: 15_000 }, async () => {
    const gw = await gateway(0);
    let app: Awaited<ReturnType<typeof desktopApp>> | undefined;
    try {
      app = await desktopApp(`${gw.agentUrl}/mcp`);
      assert.ok((await toolsOf(app.client)).includes('fake__hang'));
      // With a progress token airlock answers in SSE: once progress has come, the response has begun.
      let progressed = false;
      const call = app.client.callTool({ name: 'fake__hang', arguments: {} }, { timeout: 8000, onprogress: () => void (progressed = true) }).then(
        () => assert.fail('the call cannot succeed'),
        (e: unknown) => e as Error,
      );
      await waitFor('progress from the call', () => progressed);
      await gw.stop('SIGKILL');
      const e = await call;
      assert.match(e.message, /airlock: the connection to the gateway was lost before it answered; retry/);
    } finally {
      await app?.client.close();
      await gw.stop('SIGKILL');
    }
  });

  it('after a gateway restart the same client lists and calls tools again, without reconnecting', { timeout: 15_000 }, async () => {
    const port = await freePort();
    let gw: CliGateway = await gateway(port);
    let app: Awaited<ReturnType<typeof desktopApp>> | undefined;
    try {
      app = await desktopApp(`http://127.0.0.1:${port}/mcp`);
      const { client } = app;
      await toolsOf(client);
      assert.deepEqual((await client.callTool({ name: 'fake__echo', arguments: { text: 'before' } })).content, [{ type: 'text', text: 'echo: before' }]);
      await gw.stop();
      gw = await gateway(port);
      // The new gateway knows nothing of the bridge's session: the bridge starts a new one by itself.
      assert.ok((await toolsOf(client)).includes('fake__echo'));
      assert.deepEqual((await client.callTool({ name: 'fake__echo', arguments: { text: 'after' } })).content, [{ type: 'text', text: 'echo: after' }]);
      assert.match(app.stderr(), /the gateway forgot the session \(restarted\?\): started a new one/);
    } finally {
      await app?.client.close();
      await gw.stop();
    }
  });

  it('after a gateway crash and restart, notifications reach an idle app again (the bridge reopens its stream)', { timeout: 15_000 }, async () => {
    const port = await freePort();
    let gw: CliGateway = await gateway(port);
    let app: Awaited<ReturnType<typeof desktopApp>> | undefined;
    try {
      let changed = 0;
      app = await desktopApp(`http://127.0.0.1:${port}/mcp`, KEY, () => void changed++);
      await toolsOf(app.client);
      await gw.stop('SIGKILL');
      gw = await gateway(port);
      // The app sends nothing: the bridge finds the new gateway, and a new session, by itself.
      let n = 0;
      await waitFor('tools/list_changed after the restart', () => {
        // Sent before the bridge's stream is back, a notification is lost: send another until one
        // arrives (once a second: airlock waits for a pause in an upstream's list_changed notices).
        if (changed === 0) up.latest().registerTool(`late${n++}`, { description: 'Registered later' }, () => ({ content: [] }));
        return changed > 0;
      }, 10_000, 1000);
      assert.deepEqual((await app.client.callTool({ name: 'fake__echo', arguments: { text: 'after' } })).content, [{ type: 'text', text: 'echo: after' }]);
    } finally {
      await app?.client.close();
      await gw.stop();
    }
  });

  it('a JSON-RPC error from the gateway is shown once, as the gateway worded it', async () => {
    const gw = await gateway(0);
    try {
      const child = spawn(process.execPath, [BIN, 'mcp-stdio', '--url', `${gw.agentUrl}/mcp/nope`, '--key', KEY], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
      const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
      child.stdin.end(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } })}\n`);
      assert.equal(await exited, 0);
      const reply = JSON.parse(stdout.trim()) as { id: number; error: { code: number; message: string; data: { status: number; airlock: { code: string } } } };
      assert.equal(reply.id, 1);
      assert.match(reply.error.message, /^airlock: not_found: no MCP server named "nope" is configured/);
      assert.equal(reply.error.data.status, 404);
      assert.equal(reply.error.data.airlock.code, 'not_found');
    } finally {
      await gw.stop();
    }
  });
});
