/**
 * completion/complete through airlock (MCP): passed to the upstream that owns the referenced prompt
 * or resource template — `<server>__<prompt>` names on /mcp turned back into the upstream's own —
 * judged by the rule for that prompt or template (`mcp-prompt:` / `mcp-resource:`) and the kill
 * switches; a refusal is a JSON-RPC error naming the airlock code, and an audit record. The
 * `completions` capability is advertised only where an upstream has it. Upstreams:
 * server-everything over stdio, and the v2 SDK's low-level Server over Streamable HTTP.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { agentClient, startHttpUpstream, type Generation, type Upstream, waitFor, refusal } from './support/mcp.js';
import { startPagingUpstream, type PagingUpstream } from './support/mcp-paging.js';

const require = createRequire(import.meta.url);
const everything = join(dirname(require.resolve('@modelcontextprotocol/server-everything/package.json')), 'dist', 'index.js');
const WEB_TOKEN = 'web-completion-token-0123456789';
const TEXT_TEMPLATE = 'demo://resource/dynamic/text/{resourceId}';

describe('mcp: completion/complete', () => {
  let paged: PagingUpstream;
  let web: Upstream;
  let t: TestGateway;
  before(async () => {
    paged = await startPagingUpstream({ pageSize: 50 });
    web = await startHttpUpstream(WEB_TOKEN);
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: alice-prompts
    agents: [alice]
    allow: ["mcp-prompt: everything/completable-prompt", "mcp-resource: everything/demo://resource/dynamic/text/*", "mcp-prompt: paged/*", "mcp-resource: paged/paged://tpl0/*", "mcp: web/*"]
  - name: not-prompt-4
    deny: ["mcp-prompt: paged/prompt_4"]
    reason: prompt 4 is off limits
  - name: bob-tools
    agents: [bob]
    allow: ["mcp: web/*"]
mcp:
  servers:
    everything: { command: "${process.execPath}", args: ["${everything}"] }
    paged: { url: "${paged.url}" }
    web: { url: "${web.url}", token: "${WEB_TOKEN}" }
`);
    await waitFor(() => ['everything', 'paged', 'web'].every((s) => t.gw.mcpHub.get(s)?.connected && (t.gw.mcpHub.get(s)?.catalogue.tools.length ?? 0) + (t.gw.mcpHub.get(s)?.catalogue.prompts.length ?? 0) > 0));
  });
  after(async () => {
    await t?.stop();
    await paged?.close();
    await web?.close();
  });

  for (const gen of ['legacy', 'modern'] as Generation[]) {
    it(`${gen}: resources/templates/list shows each agent only the templates its rules cover`, async () => {
      const a = await agentClient(`${t.agentUrl}/mcp/paged`, KEYS.alice, gen);
      assert.deepEqual((await a.listResourceTemplates()).resourceTemplates.map((x) => x.uriTemplate), ['paged://tpl0/{id}']);
      const b = await agentClient(`${t.agentUrl}/mcp`, KEYS.bob, gen);
      assert.deepEqual((await b.listResourceTemplates()).resourceTemplates, []);
      await Promise.all([a.close(), b.close()]);
    });

    it(`${gen}: completions is advertised where an upstream has it, and not on a server without it`, async () => {
      const all = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, gen);
      assert.deepEqual(all.getServerCapabilities()?.completions, {});
      await all.close();
      const one = await agentClient(`${t.agentUrl}/mcp/web`, KEYS.alice, gen);
      assert.equal(one.getServerCapabilities()?.completions, undefined);
      await one.close();
    });

    it(`${gen}: a prompt's and a resource template's arguments are completed by the server that owns them`, async () => {
      const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, gen);
      const dept = await c.complete({ ref: { type: 'ref/prompt', name: 'everything__completable-prompt' }, argument: { name: 'department', value: 'E' } });
      assert.deepEqual(dept.completion.values, ['Engineering']);
      const who = await c.complete({ ref: { type: 'ref/prompt', name: 'everything__completable-prompt' }, argument: { name: 'name', value: 'D' }, context: { arguments: { department: 'Sales' } } });
      assert.deepEqual(who.completion.values, ['David']);
      const id = await c.complete({ ref: { type: 'ref/resource', uri: TEXT_TEMPLATE }, argument: { name: 'resourceId', value: '3' } });
      assert.deepEqual(id.completion.values, ['3']);
      await c.close();
    });
  }

  it('the upstream gets its own prompt name, the argument and the context; /mcp/<server> works with own names', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, 'modern');
    const before = paged.completions.length;
    const r = await c.complete({ ref: { type: 'ref/prompt', name: 'paged__prompt_1' }, argument: { name: 'topic', value: 'ca' }, context: { arguments: { other: 'x' } } });
    assert.deepEqual(r.completion.values, ['ca1 for prompt_1', 'ca2 for prompt_1']);
    assert.deepEqual(paged.completions[before], { ref: { type: 'ref/prompt', name: 'prompt_1' }, argument: { name: 'topic', value: 'ca' }, context: { arguments: { other: 'x' } } });
    await c.close();
    const one = await agentClient(`${t.agentUrl}/mcp/paged`, KEYS.alice, 'legacy');
    const tpl = await one.complete({ ref: { type: 'ref/resource', uri: 'paged://tpl0/{id}' }, argument: { name: 'id', value: '7' } });
    assert.deepEqual(tpl.completion.values, ['71 for paged://tpl0/{id}', '72 for paged://tpl0/{id}']);
    await one.close();
  });

  it('refused by the rules: a JSON-RPC error with the airlock code, audited; the upstream is not asked', async () => {
    const before = paged.completions.length;
    const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, 'legacy');
    const denied = await refusal(c.complete({ ref: { type: 'ref/prompt', name: 'paged__prompt_4' }, argument: { name: 'topic', value: 'x' } }));
    assert.equal(denied.code, -32003);
    assert.match(denied.message, /^airlock: denied: .*prompt 4 is off limits/);
    assert.equal(denied.data['airlock_code'], 'denied');
    const rec = await waitFor(async () => ((await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=200`)).json.records as Record<string, any>[]).find((x) => x['id'] === denied.data['request_id']));
    assert.equal(rec['action'], 'mcp-prompt: paged/prompt_4');
    assert.equal(rec['decision'], 'denied');
    assert.equal(rec['rule'], 'not-prompt-4');
    // A template no rule allows.
    const tpl = await refusal(c.complete({ ref: { type: 'ref/resource', uri: 'paged://tpl1/{id}' }, argument: { name: 'id', value: '1' } }));
    assert.equal(tpl.data['airlock_code'], 'denied');
    await c.close();
    // Bob may use no prompt at all.
    const b = await agentClient(`${t.agentUrl}/mcp`, KEYS.bob, 'modern');
    const bob = await refusal(b.complete({ ref: { type: 'ref/prompt', name: 'everything__completable-prompt' }, argument: { name: 'department', value: '' } }));
    assert.equal(bob.data['airlock_code'], 'denied');
    await b.close();
    assert.equal(paged.completions.length, before, 'no refused completion reached the upstream');
  });

  it('refused by a kill switch: killed', async () => {
    const k = await call(`${t.adminUrl}/api/kill`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'mcp-prompt: everything/*' }) });
    assert.equal(k.status, 200, k.text);
    try {
      const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, 'modern');
      const e = await refusal(c.complete({ ref: { type: 'ref/prompt', name: 'everything__completable-prompt' }, argument: { name: 'department', value: 'E' } }));
      assert.equal(e.data['airlock_code'], 'killed');
      assert.match(e.message, /^airlock: killed/);
      const rec = await waitFor(async () => ((await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=200`)).json.records as Record<string, any>[]).find((x) => x['id'] === e.data['request_id']));
      assert.equal(rec['decision'], 'killed');
      assert.equal(rec['action'], 'mcp-prompt: everything/completable-prompt');
      await c.close();
    } finally {
      await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'mcp-prompt: everything/*' }) });
    }
  });

  it('unknown prompts and templates are not_found; malformed requests are bad_request (-32602)', async () => {
    const c = await agentClient(`${t.agentUrl}/mcp`, KEYS.alice, 'legacy');
    for (const ref of [{ type: 'ref/prompt', name: 'paged__nope' }, { type: 'ref/prompt', name: 'nope__prompt_1' }, { type: 'ref/prompt', name: 'prompt_1' }, { type: 'ref/resource', uri: 'nowhere://x/{y}' }] as const) {
      const e = await refusal(c.complete({ ref, argument: { name: 'a', value: 'b' } }));
      assert.equal(e.code, -32602, JSON.stringify(ref));
      assert.equal(e.data['airlock_code'], 'not_found', JSON.stringify(ref));
    }
    await c.close();
    // Straight over HTTP, so the SDK's own checks do not stop the bad shapes first.
    const init = await call(`${t.agentUrl}/mcp`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }) });
    const sid = String(init.headers['mcp-session-id']);
    for (const params of [{}, { ref: { type: 'ref/prompt', name: 'paged__prompt_1' } }, { ref: { type: 'ref/prompt', name: 'paged__prompt_1' }, argument: { name: 'a', value: 1 } }, { ref: { type: 'ref/other' }, argument: { name: 'a', value: 'b' } }, { ref: { type: 'ref/prompt', name: 'paged__prompt_1' }, argument: { name: 'a', value: 'b' }, context: { arguments: { x: 2 } } }]) {
      const r = await call(`${t.agentUrl}/mcp`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': sid }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'completion/complete', params }) });
      assert.equal(r.json.error.code, -32602, JSON.stringify(params));
      assert.equal(r.json.error.data.airlock_code, 'bad_request', JSON.stringify(params));
    }
  });
});
