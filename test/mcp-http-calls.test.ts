/**
 * tools/call to Streamable HTTP upstreams, which airlock makes as one POST of its own (not through
 * the SDK client) on the connection the SDK negotiated: against the stateless 2026-07-28 SDK entry
 * and session-keeping 2025 servers answering in SSE and in JSON, the agent gets exactly what an
 * SDK client talking to the server directly gets — results, tool errors, JSON-RPC errors, progress
 * — cancellation and timeouts reach the server, tools with `x-mcp-header` parameters get their
 * headers, and a redirecting server still works.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { agentClient, type Generation, waitFor } from './support/mcp.js';
import { startToolServer, type ToolServer, type ToolServerKind } from './support/mcp-http.js';

const KINDS: ToolServerKind[] = ['stateless', 'session-sse', 'session-json'];
const name = (k: ToolServerKind) => k.replace('-', '');

const text = (r: any): string => (r.content as { text: string }[]).map((c) => c.text).join('');

describe('mcp: tools/call to Streamable HTTP upstreams', () => {
  const servers = new Map<ToolServerKind, ToolServer>();
  let resumable: ToolServer;
  let t: TestGateway;
  before(async () => {
    for (const k of KINDS) servers.set(k, await startToolServer(k));
    resumable = await startToolServer('session-sse', { resumable: true });
    const stateless = servers.get('stateless')!.url;
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["mcp: **"]
mcp:
  servers:
${KINDS.map((k) => `    ${name(k)}: { url: "${servers.get(k)!.url}" }`).join('\n')}
    slowpoke: { url: "${stateless}", timeout: 500ms }
    moved: { url: "${stateless.replace(/\/mcp$/, '/moved')}" }
    polling: { url: "${resumable.url}" }
`);
    await waitFor(() => [...KINDS.map(name), 'slowpoke', 'moved', 'polling'].every((s) => (t.gw.mcpHub.get(s)?.catalogue.tools.length ?? 0) > 0));
  });
  after(async () => {
    await t?.stop();
    for (const s of servers.values()) await s.close();
    await resumable?.close();
  });

  for (const kind of KINDS) {
    it(`${kind}: results and tool errors are what an SDK client gets from the server directly, for agents of both generations`, async () => {
      const direct = new Client({ name: 'direct', version: '1' }, { versionNegotiation: { mode: 'auto' } });
      await direct.connect(new StreamableHTTPClientTransport(new URL(servers.get(kind)!.url)));
      const want = [await direct.callTool({ name: 'echo', arguments: { text: 'hello' } }), await direct.callTool({ name: 'oops', arguments: {} })];
      await direct.close();
      assert.deepEqual(want[0]!.structuredContent, { length: 5 });
      for (const gen of ['legacy', 'modern'] as Generation[]) {
        const c = await agentClient(`${t.agentUrl}/mcp/${name(kind)}`, KEYS.alice, gen);
        const got = [await c.callTool({ name: 'echo', arguments: { text: 'hello' } }), await c.callTool({ name: 'oops', arguments: {} })];
        assert.deepEqual(got, want, `${kind} via a ${gen} agent`);
        await c.close();
      }
    });

    it(`${kind}: goes straight over HTTP — one POST per call, with airlock's own request id`, async () => {
      const s = servers.get(kind)!;
      const before = s.callHeaders.length;
      const c = await agentClient(`${t.agentUrl}/mcp/${name(kind)}`, KEYS.alice, 'modern');
      assert.equal(text(await c.callTool({ name: 'echo', arguments: { text: 'x' } })), 'echo: x');
      await c.close();
      const seen = s.callHeaders.slice(before);
      assert.equal(seen.length, 1);
      assert.match(String(seen[0]!.id), /^airlock-\d+$/);
      if (kind === 'stateless') {
        assert.equal(seen[0]!.headers['mcp-method'], 'tools/call');
        assert.equal(seen[0]!.headers['mcp-name'], 'echo');
      } else assert.equal(typeof seen[0]!.headers['mcp-session-id'], 'string');
    });

    it(`${kind}: a JSON-RPC error from the server is an isError result naming upstream_error and the server's words`, async () => {
      const c = await agentClient(`${t.agentUrl}/mcp/${name(kind)}`, KEYS.alice, 'legacy');
      const r = await c.callTool({ name: 'fail', arguments: {} });
      assert.equal(r.isError, true);
      assert.match(text(r), /^airlock: upstream_error: MCP server ".*" failed: MCP error -32099: the fail tool always fails/);
      await c.close();
    });

    it(`${kind}: an agent that cancels a call cancels it at the server`, async () => {
      const s = servers.get(kind)!;
      const before = s.cancelled.length;
      for (const gen of ['legacy', 'modern'] as Generation[]) {
        const c = await agentClient(`${t.agentUrl}/mcp/${name(kind)}`, KEYS.alice, gen);
        const ac = new AbortController();
        const calls = s.callHeaders.filter((h) => h.tool === 'wait').length;
        const pending = c.callTool({ name: 'wait', arguments: {} }, { signal: ac.signal });
        await waitFor(() => s.callHeaders.filter((h) => h.tool === 'wait').length > calls);
        await new Promise((r) => setTimeout(r, 100));
        ac.abort('changed my mind');
        await assert.rejects(pending);
        await waitFor(() => s.cancelled.length === before + (gen === 'modern' ? 2 : 1), 5000);
        await c.close();
      }
    });
  }

  for (const kind of ['stateless', 'session-sse'] as ToolServerKind[]) {
    it(`${kind}: progress notifications pass through with the agent's token`, async () => {
      for (const gen of ['legacy', 'modern'] as Generation[]) {
        const c = await agentClient(`${t.agentUrl}/mcp/${name(kind)}`, KEYS.alice, gen);
        const seen: { progress: number; total?: number; message?: string }[] = [];
        const r = await c.callTool({ name: 'slow', arguments: { steps: 3 } }, { onprogress: (p) => seen.push({ progress: p.progress, ...(p.total !== undefined ? { total: p.total } : {}), ...(p.message !== undefined ? { message: p.message } : {}) }) });
        assert.equal(text(r), 'done after 3');
        assert.deepEqual(seen, [1, 2, 3].map((i) => ({ progress: i, total: 3, message: `step ${i}` })), `${kind} via ${gen}`);
        await c.close();
      }
    });
  }

  it('session-sse: a ping from the server in the middle of a call is answered', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp/sessionsse`, KEYS.alice, 'legacy');
    assert.equal(text(await c.callTool({ name: 'pinger', arguments: {} })), 'the client answered the ping');
    await c.close();
  });

  it('a gzip-encoded answer is read', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp/sessionjson`, KEYS.alice, 'modern');
    assert.equal(text(await c.callTool({ name: 'zipped', arguments: {} })), 'unzipped fine');
    await c.close();
  });

  it('an answer that claims gzip and is not fails the call as upstream_error, and the gateway carries on', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp/sessionjson`, KEYS.alice, 'modern');
    const r = await c.callTool({ name: 'badzip', arguments: {} });
    assert.equal(r.isError, true);
    assert.match(text(r), /^airlock: upstream_error: /);
    assert.equal(text(await c.callTool({ name: 'zipped', arguments: {} })), 'unzipped fine');
    await c.close();
  });

  it('an answer over 64 MB is refused as upstream_error, not held in memory whole, and the session goes on', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp/sessionjson`, KEYS.alice, 'legacy');
    const r = await c.callTool({ name: 'huge', arguments: {} });
    assert.equal(r.isError, true);
    assert.match(text(r), /^airlock: upstream_error: .*over 67108864 bytes/);
    assert.equal(text(await c.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'echo: still here');
    await c.close();
  });

  it('an SSE answer passes events of other types, comments and non-JSON data by', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp/sessionjson`, KEYS.alice, 'legacy');
    assert.equal(text(await c.callTool({ name: 'chatty', arguments: {} })), 'heard through the noise');
    await c.close();
  });

  it('a call past the server timeout is upstream_timeout, and the server hears it is cancelled', async () => {
    const s = servers.get('stateless')!;
    const before = s.cancelled.length;
    const c = await agentClient(`${t.agentUrl}/mcp/slowpoke`, KEYS.alice, 'legacy');
    const started = Date.now();
    const r = await c.callTool({ name: 'wait', arguments: {} });
    assert.equal(r.isError, true);
    assert.match(text(r), /^airlock: upstream_timeout: .*timed out after 500 ms/);
    assert.ok(Date.now() - started < 5000);
    await waitFor(() => s.cancelled.length > before, 5000);
    const rec = await waitFor(async () => ((await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=100`)).json.records as Record<string, any>[]).find((x) => x['id'] === (r._meta as any)['airlock/error'].requestId && x['phase'] === 'final'));
    assert.equal(rec['code'], 'upstream_timeout');
    await c.close();
  });

  it('a tool with x-mcp-header parameters gets them mirrored into Mcp-Param headers', async () => {
    const s = servers.get('stateless')!;
    const c = await agentClient(`${t.agentUrl}/mcp/stateless`, KEYS.alice, 'legacy');
    assert.equal(text(await c.callTool({ name: 'regional', arguments: { region: 'eu-west' } })), 'region eu-west');
    const seen = s.callHeaders.filter((h) => h.tool === 'regional');
    assert.equal(seen.at(-1)!.headers['mcp-param-region'], 'eu-west');
    await c.close();
  });

  it('an answer stream the server closes before answering is resumed with Last-Event-ID, and the answer arrives', async () => {
    for (const gen of ['legacy', 'modern'] as Generation[]) {
      const before = resumable.resumedFrom.length;
      const c = await agentClient(`${t.agentUrl}/mcp/polling`, KEYS.alice, gen);
      const r = await c.callTool({ name: 'polled', arguments: {} });
      assert.equal(r.isError, undefined, text(r));
      assert.equal(text(r), 'answered after the stream was closed');
      assert.ok(resumable.resumedFrom.length > before, `${gen}: the stream was picked up again with a GET`);
      await c.close();
    }
  });

  it('an answer stream whose connection breaks after an event with an id is resumed with Last-Event-ID', async () => {
    const s = servers.get('session-sse')!;
    const c = await agentClient(`${t.agentUrl}/mcp/sessionsse`, KEYS.alice, 'legacy');
    const r = await c.callTool({ name: 'dropped', arguments: {} });
    assert.equal(text(r), 'answered after the connection broke');
    assert.ok(s.resumedFrom.some((id) => id.startsWith('dropped-')), 'the stream was picked up again with a GET');
    await c.close();
  });

  it('a server that redirects still answers calls', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp/moved`, KEYS.alice, 'modern');
    assert.equal(text(await c.callTool({ name: 'echo', arguments: { text: 'moved' } })), 'echo: moved');
    await c.close();
  });
});
