/**
 * Paged upstream listings (MCP pagination): airlock follows `nextCursor` through every page of
 * tools/list, prompts/list, resources/list and resources/templates/list, at most MAX_LIST_PAGES
 * pages per listing (a server whose cursors never end keeps what was gathered), and answers agents
 * with the whole filtered catalogue in one page — no `nextCursor`, and a cursor it never gave out
 * is refused with -32602. The upstream is the v2 SDK's low-level Server over Streamable HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAX_LIST_PAGES } from '../src/protocols/mcp/upstream.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { agentClient, type Generation, waitFor } from './support/mcp.js';
import { PAGED, startPagingUpstream, type PagingUpstream } from './support/mcp-paging.js';

/** One 2026-07-28 request straight to the gateway (no session needed). */
function modernPost(t: TestGateway, path: string, method: string, params: Record<string, unknown> = {}) {
  return call(`${t.agentUrl}${path}`, {
    method: 'POST',
    key: KEYS.alice,
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': method },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }),
  });
}

describe('mcp: paged upstream listings', () => {
  let paged: PagingUpstream;
  let endless: PagingUpstream;
  let t: TestGateway;
  before(async () => {
    paged = await startPagingUpstream({ pageSize: 2 });
    endless = await startPagingUpstream({ pageSize: 2, endless: true });
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["mcp: **", "mcp-prompt: **", "mcp-resource: **"]
mcp:
  pinning: off
  servers:
    paged: { url: "${paged.url}" }
    endless: { url: "${endless.url}" }
`);
    await waitFor(() => t.gw.mcpHub.get('paged')?.catalogue.templates.length === PAGED.templates.length && (t.gw.mcpHub.get('endless')?.catalogue.tools.length ?? 0) > 0);
  });
  after(async () => {
    await t?.stop();
    await paged?.close();
    await endless?.close();
  });

  it('gathers every page of each listing from the upstream', () => {
    const c = t.gw.mcpHub.get('paged')!.catalogue;
    assert.deepEqual(c.tools.map((x) => x.name), PAGED.tools.map((x) => x.name));
    assert.deepEqual(c.prompts.map((x) => x['name']), PAGED.prompts.map((x) => x.name));
    assert.deepEqual(c.resources.map((x) => x['uri']), PAGED.resources.map((x) => x.uri));
    assert.deepEqual(c.templates.map((x) => x['uriTemplate']), PAGED.templates.map((x) => x.uriTemplate));
    // 7 tools in pages of 2 is 4 requests per load; 5 prompts 3; 3 templates 2.
    assert.ok((paged.requests.get('tools/list') ?? 0) >= 4, JSON.stringify([...paged.requests]));
    assert.ok((paged.requests.get('prompts/list') ?? 0) >= 3);
    assert.ok((paged.requests.get('resources/templates/list') ?? 0) >= 2);
  });

  it(`stops after ${MAX_LIST_PAGES} pages of a listing whose cursors never end, keeping what it gathered`, () => {
    const tools = t.gw.mcpHub.get('endless')!.catalogue.tools;
    assert.equal(tools.length, MAX_LIST_PAGES);
    assert.equal(tools.at(-1)!.name, `endless_${MAX_LIST_PAGES - 1}`);
    assert.match(t.logs(), new RegExp(`MCP listing has more than ${MAX_LIST_PAGES} pages`));
  });

  for (const gen of ['legacy', 'modern'] as Generation[]) {
    it(`${gen}: agents see the whole catalogue and can call a tool from the last page`, async () => {
      const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, gen);
      const tools = (await c.listTools()).tools.map((x) => x.name).filter((n) => n.startsWith('paged__'));
      assert.deepEqual(tools, PAGED.tools.map((x) => `paged__${x.name}`));
      assert.equal((await c.listPrompts()).prompts.filter((x) => x.name.startsWith('paged__')).length, PAGED.prompts.length);
      // Both upstreams offer the same resources (one server program); every page of them is there.
      assert.deepEqual(new Set((await c.listResources()).resources.map((x) => x.uri)), new Set(PAGED.resources.map((x) => x.uri)));
      assert.deepEqual(new Set((await c.listResourceTemplates()).resourceTemplates.map((x) => x.uriTemplate)), new Set(PAGED.templates.map((x) => x.uriTemplate)));
      const r = await c.callTool({ name: 'paged__tool_6', arguments: {} });
      assert.deepEqual(r.content, [{ type: 'text', text: 'called tool_6' }]);
      await c.close();
    });
  }

  it('answers every listing in one page, and refuses a cursor it never gave out with -32602', async () => {
    for (const [method, key] of [['tools/list', 'tools'], ['prompts/list', 'prompts'], ['resources/list', 'resources'], ['resources/templates/list', 'resourceTemplates']] as const) {
      const r = await modernPost(t, '/mcp/paged', method);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.result[key].length, (PAGED as Record<string, unknown[]>)[key === 'resourceTemplates' ? 'templates' : key]!.length, method);
      assert.equal('nextCursor' in r.json.result, false, method);
      const bad = await modernPost(t, '/mcp/paged', method, { cursor: '2' });
      assert.equal(bad.json.error.code, -32602, method);
      assert.match(bad.json.error.message, /invalid cursor/);
      assert.equal(bad.json.error.data.airlock_code, 'bad_request');
    }
  });
});
