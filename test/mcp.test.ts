/**
 * The MCP gateway end to end (SPEC section 5.3): agents using the official MCP client SDK, in both
 * protocol generations, reach real upstream MCP servers only through airlock — a stdio server built
 * with the SDK, `@modelcontextprotocol/server-everything` and `server-memory` over stdio, a
 * Streamable HTTP server and a legacy HTTP+SSE server — with listings filtered per agent, calls
 * judged, denials as isError results, credentials injected, catalogue changes announced, pinning
 * enforced, crashed stdio servers restarted, and every call an audit record.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { agentClient, startHttpUpstream, startSseUpstream, type Generation, type Upstream, waitFor } from './support/mcp.js';

const here = dirname(fileURLToPath(import.meta.url));
const kitServer = join(here, 'support', 'mcp-kit-server.js');
const require = createRequire(import.meta.url);
const pkgDir = (name: string) => dirname(require.resolve(`${name}/package.json`));
const everything = join(pkgDir('@modelcontextprotocol/server-everything'), 'dist', 'index.js');
const memory = join(pkgDir('@modelcontextprotocol/server-memory'), 'dist', 'index.js');
const WEB_TOKEN = 'web-upstream-token-0123456789';

function config(web: Upstream, old: Upstream, pinning = 'strict'): string {
  return `
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: alice-tools
    agents: [alice]
    allow: ["mcp: kit/*", "mcp: web/add", "mcp: old/*", "mcp: everything/echo", "mcp: memory/read_graph", "mcp-resource: **", "mcp-prompt: **"]
  - name: no-crash-for-bob
    agents: [bob]
    allow: ["mcp: kit/echo", "mcp: kit/whoami"]
  - name: crash-needs-nobody
    deny: ["mcp: kit/mutate"]
    agents: [bob]
mcp:
  pinning: ${pinning}
  maxBodySize: 64kb
  servers:
    kit: { command: "${process.execPath}", args: ["${kitServer}"], env: { KIT_SECRET: "kit-secret-value" } }
    web: { url: "${web.url}", token: "${WEB_TOKEN}" }
    old: { url: "${old.url}", transport: sse }
    everything: { command: "${process.execPath}", args: ["${everything}"] }
    memory: { command: "${process.execPath}", args: ["${memory}"], env: { MEMORY_FILE_PATH: "memory.jsonl" } }
`;
}

async function auditOf(t: TestGateway, id: string): Promise<Record<string, any>> {
  return waitFor(async () => {
    const r = await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=500`);
    return (r.json.records as Record<string, any>[]).find((x) => x['id'] === id && x['phase'] === 'final');
  });
}

const text = (r: any): string => (r.content as { text: string }[]).map((c) => c.text).join('');

describe('mcp: the gateway end to end', () => {
  let web: Upstream;
  let old: Upstream;
  let t: TestGateway;
  before(async () => {
    process.env['AIRLOCK_TEST_LEAK'] = 'gateway-env-must-not-reach-stdio-servers';
    web = await startHttpUpstream(WEB_TOKEN);
    old = await startSseUpstream();
    t = await startGateway(config(web, old));
    // Every upstream connected and catalogued.
    await waitFor(() => ['kit', 'web', 'old', 'everything', 'memory'].every((s) => (t.gw.mcpHub.get(s)?.catalogue.tools.length ?? 0) > 0), 30_000);
  });
  after(async () => {
    await t?.stop();
    await web?.close();
    await old?.close();
  });

  for (const gen of ['legacy', 'modern'] as Generation[]) {
    it(`${gen}: /mcp aggregates every server as <server>__<tool>, filtered by the agent's rules`, async () => {
      const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, gen);
      const names = (await c.listTools()).tools.map((x) => x.name).sort();
      assert.ok(names.includes('kit__echo') && names.includes('web__add') && names.includes('old__shout') && names.includes('everything__echo') && names.includes('memory__read_graph'), names.join());
      assert.ok(!names.includes('web__lookup'), 'not allowed → not listed');
      assert.ok(!names.some((n) => n.startsWith('everything__') && n !== 'everything__echo'));
      assert.equal(text(await c.callTool({ name: 'kit__echo', arguments: { text: 'hi' } })), 'echo: hi');
      assert.equal(text(await c.callTool({ name: 'web__add', arguments: { a: 2, b: 3 } })), '5');
      assert.equal(text(await c.callTool({ name: 'old__shout', arguments: { text: 'hey' } })), 'HEY');
      assert.match(text(await c.callTool({ name: 'everything__echo', arguments: { message: 'ping' } })), /ping/);
      const graph = await c.callTool({ name: 'memory__read_graph', arguments: {} });
      assert.notEqual(graph.isError, true);
      // Denied: an isError result the model can read, with the code and request id in _meta.
      const denied = await c.callTool({ name: 'web__lookup', arguments: { word: 'x' } });
      assert.equal(denied.isError, true);
      assert.match(text(denied), /^airlock: denied/);
      const e = (denied._meta as any)['airlock/error'];
      assert.equal(e.code, 'denied');
      const rec = await auditOf(t, e.requestId);
      assert.equal(rec['action'], 'mcp: web/lookup');
      assert.equal(rec['decision'], 'denied');
      await c.close();
    });

    it(`${gen}: /mcp/<server> serves one server with its own names; resources and prompts pass and are judged`, async () => {
      const c = await agentClient(`${t.agentUrl}/mcp/everything`, KEYS.alice, gen);
      assert.deepEqual((await c.listTools()).tools.map((x) => x.name), ['echo']);
      assert.match(text(await c.callTool({ name: 'echo', arguments: { message: 'own name' } })), /own name/);
      const resources = (await c.listResources()).resources;
      assert.ok(resources.length > 0);
      const read = await c.readResource({ uri: resources[0]!.uri });
      assert.ok(read.contents.length > 0);
      const prompts = (await c.listPrompts()).prompts;
      assert.ok(prompts.length > 0);
      const simple = prompts.find((p) => !(p.arguments ?? []).some((a) => a.required)) ?? prompts[0]!;
      const got = await c.getPrompt({ name: simple.name, arguments: {} });
      assert.ok(got.messages.length > 0);
      await c.close();
      // Bob may not read resources: the read is refused with a JSON-RPC error naming the code.
      const b = await agentClient(`${t.agentUrl}/mcp/everything`, KEYS.bob, gen);
      assert.deepEqual((await b.listTools()).tools, []);
      await assert.rejects(b.readResource({ uri: resources[0]!.uri }), /airlock: denied/);
      await b.close();
    });
  }

  it('every call is an audit record: server, tool, a bounded secret-free argument excerpt, result size, isError, duration', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, 'legacy');
    const r = await c.callTool({ name: 'kit__echo', arguments: { text: 'audit me', api_key: 'sk-not-for-the-log-0123456789abcdef' } });
    assert.equal(text(r), 'echo: audit me');
    const since = new Date(Date.now() - 60_000).toISOString();
    const recs = await waitFor(async () => {
      const q = await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=500&since=${encodeURIComponent(since)}`);
      return (q.json.records as Record<string, any>[]).filter((x) => x['phase'] === 'final' && x['action'] === 'mcp: kit/echo' && String(x['target']?.['args']).includes('audit me'));
    });
    const rec = recs[0]!;
    assert.equal(rec['target']['server'], 'kit');
    assert.equal(rec['target']['tool'], 'echo');
    assert.match(rec['target']['args'], /"api_key":"\[redacted\]"/);
    assert.ok(!JSON.stringify(rec).includes('sk-not-for-the-log'));
    assert.equal(typeof rec['durationMs'], 'number');
    assert.equal(rec['details']['isError'], false);
    assert.ok(rec['details']['resultBytes'] > 0);
    await c.close();
  });

  it('credentials are injected by airlock: headers for HTTP, env for stdio (and the gateway\'s own env is not passed on)', async () => {
    assert.ok(web.auth.length > 0 && web.auth.every((a) => a === `Bearer ${WEB_TOKEN}`), 'every upstream request carried the configured token');
    const c = await agentClient(`${t.agentUrl}/mcp/kit`, KEYS.bob, 'legacy');
    const who = JSON.parse(text(await c.callTool({ name: 'whoami', arguments: {} })));
    assert.equal(who.secretSet, true);
    assert.equal(who.leaked, null);
    await c.close();
    assert.ok(!t.logs().includes(KEYS.alice) && !t.logs().includes(WEB_TOKEN) && !t.logs().includes('kit-secret-value'));
  });

  it('progress notifications pass through', async () => {
    for (const gen of ['legacy', 'modern'] as Generation[]) {
      const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, gen);
      const seen: number[] = [];
      const r = await c.callTool({ name: 'kit__slow', arguments: { steps: 3 } }, { onprogress: (p) => seen.push(p.progress) });
      assert.equal(text(r), 'done after 3');
      assert.deepEqual(seen, [1, 2, 3], gen);
      await c.close();
    }
  });

  it('a crashed stdio server is restarted and calls resume', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp/kit`, KEYS.alice, 'legacy');
    const before = JSON.parse(text(await c.callTool({ name: 'whoami', arguments: {} }))).pid;
    await c.callTool({ name: 'crash', arguments: {} });
    const afterPid = await waitFor(async () => {
      const r = await c.callTool({ name: 'whoami', arguments: {} });
      if (r.isError) return undefined;
      const pid = JSON.parse(text(r)).pid as number;
      return pid !== before ? pid : undefined;
    });
    assert.notEqual(afterPid, before);
    await c.close();
  });

  it('a changed tool: list_changed reaches connected clients; under strict pinning it is hidden, not callable (tool_changed), alerted, and back once accepted', async () => {
    let changed = 0;
    const watcher = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, 'legacy', { onToolsChanged: () => changed++ });
    // Open the session's GET stream by listing once; the SDK opens it after initialize.
    await watcher.listTools();
    await new Promise((r) => setTimeout(r, 200));
    const c = await agentClient(`${t.agentUrl}/mcp/kit`, KEYS.alice, 'modern');
    assert.equal(text(await c.callTool({ name: 'mutate', arguments: {} })), 'mutated');
    await waitFor(() => changed > 0);
    await waitFor(async () => !(await c.listTools()).tools.some((x) => x.name === 'echo'));
    const r = await c.callTool({ name: 'echo', arguments: { text: 'x' } });
    assert.equal(r.isError, true);
    assert.match(text(r), /^airlock: tool_changed/);
    const alerts = await call(`${t.adminUrl}/api/alerts`);
    assert.ok((alerts.json.alerts as { kind: string; message: string }[]).some((a) => a.kind === 'tool_changed' && a.message.includes('kit/echo')), JSON.stringify(alerts.json));
    // The new description also carries a poisoning sign: an alert names the tool and the sign.
    const poison = await waitFor(async () => ((await call(`${t.adminUrl}/api/alerts`)).json.alerts as { kind: string; message: string }[]).find((a) => a.kind === 'tool_poisoning' && a.message.includes('kit/echo')));
    assert.match(poison.message, /hidden_instruction/);
    assert.equal(t.gw.pins.accept('kit', 'echo'), true);
    assert.equal(text(await c.callTool({ name: 'echo', arguments: { text: 'back' } })), 'echo: back');
    assert.ok((await c.listTools()).tools.some((x) => x.name === 'echo'));
    await c.close();
    await watcher.close();
  });
});
