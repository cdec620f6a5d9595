/**
 * Bad input at the MCP front door: invalid JSON-RPC, unknown methods, a tools/call for a tool on
 * another server, Mcp-Method / Mcp-Name headers that disagree with the body, an oversized
 * argument payload, unknown sessions and servers — each a clear error, and the session unharmed.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { waitFor } from './support/mcp.js';

const kitServer = join(dirname(fileURLToPath(import.meta.url)), 'support', 'mcp-kit-server.js');

describe('mcp: bad input', () => {
  let t: TestGateway;
  let sid = '';
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    call(`${t.agentUrl}${path}`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const inSession = (body: unknown, headers: Record<string, string> = {}) => post('/mcp', body, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25', ...headers });
  const modern = (body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    post('/mcp/kit', { jsonrpc: '2.0', ...body, params: { ...((body['params'] as object) ?? {}), _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': String(body['method']), ...headers });
  const stillWorks = async () => {
    const r = await inSession({ jsonrpc: '2.0', id: 99, method: 'tools/call', params: { name: 'kit__echo', arguments: { text: 'ok' } } });
    assert.equal(r.status, 200);
    assert.equal(r.json.result.content[0].text, 'echo: ok');
  };

  before(async () => {
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: r
    agents: [alice]
    allow: ["mcp: kit/*"]
mcp:
  maxBodySize: 8kb
  servers:
    kit: { command: "${process.execPath}", args: ["${kitServer}"] }
    other: { command: "${process.execPath}", args: ["${kitServer}"] }
`);
    const deadline = Date.now() + 20_000;
    while (!(t.gw.mcpHub.get('kit')?.connected && t.gw.mcpHub.get('other')?.connected) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const init = await post('/mcp', { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    assert.equal(init.status, 200);
    sid = String(init.headers['mcp-session-id']);
    assert.equal(init.json.result.protocolVersion, '2025-11-25');
    await inSession({ jsonrpc: '2.0', method: 'notifications/initialized' });
    await stillWorks();
  });
  after(async () => t?.stop());

  it('invalid JSON: 400 with a parse error (-32700)', async () => {
    const r = await inSession('{"jsonrpc": "2.0", "id": 1, "method": ');
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, -32700);
    assert.match(r.json.error.message, /^airlock: bad_request/);
    assert.ok(r.json.error.data.request_id);
    await stillWorks();
  });

  it('not JSON-RPC: a batch, a missing jsonrpc, a bad id', async () => {
    for (const body of ['[]', { id: 1, method: 'tools/list' }, { jsonrpc: '2.0', id: { x: 1 }, method: 'tools/list' }, { jsonrpc: '2.0', id: 1, method: 'tools/list', params: [1] }]) {
      const r = await inSession(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.ok([-32600, -32602].includes(r.json.error.code));
    }
    await stillWorks();
  });

  it('an unknown method: -32601 naming it', async () => {
    const r = await inSession({ jsonrpc: '2.0', id: 5, method: 'tools/explode' });
    assert.equal(r.json.error.code, -32601);
    assert.equal(r.json.id, 5);
    assert.match(r.json.error.message, /tools\/explode/);
    await stillWorks();
  });

  it('a tools/call for a tool on another server, or on no server: an isError result (not_found), not forwarded', async () => {
    const own = await post('/mcp/kit', { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    const kitSid = String(own.headers['mcp-session-id']);
    const r = await post('/mcp/kit', { jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'other__echo', arguments: { text: 'x' } } }, { 'mcp-session-id': kitSid });
    assert.equal(r.json.result.isError, true);
    assert.match(r.json.result.content[0].text, /^airlock: not_found/);
    const other = await inSession({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'other__echo', arguments: { text: 'x' } } });
    assert.match(other.json.result.content[0].text, /^airlock: denied/, 'the rules do not let alice use server "other"');
    const none = await inSession({ jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'nowhere__echo', arguments: {} } });
    assert.match(none.json.result.content[0].text, /^airlock: not_found/);
    // A session of /mcp/kit is not a session of /mcp.
    const cross = await post('/mcp', { jsonrpc: '2.0', id: 9, method: 'tools/list' }, { 'mcp-session-id': kitSid });
    assert.equal(cross.status, 404);
    await stillWorks();
  });

  it('2026-07-28: Mcp-Method or Mcp-Name headers that disagree with the body are refused (400)', async () => {
    const ok = await modern({ id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'm' } } }, { 'mcp-name': 'echo' });
    assert.equal(ok.status, 200);
    assert.equal(ok.json.result.content[0].text, 'echo: m');
    assert.equal(ok.json.result.resultType, 'complete');
    const name = await modern({ id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'm' } } }, { 'mcp-name': 'crash' });
    assert.equal(name.status, 400);
    assert.match(name.json.error.message, /Mcp-Name/);
    // A name the client had to base64 (SEP-2243) is compared decoded: the right one passes, a
    // different one, or a sentinel around no valid base64, is refused.
    const b64 = (s: string) => `=?base64?${Buffer.from(s, 'utf8').toString('base64')}?=`;
    const encoded = await modern({ id: 5, method: 'tools/call', params: { name: 'echo', arguments: { text: 'b' } } }, { 'mcp-name': b64('echo') });
    assert.equal(encoded.status, 200, JSON.stringify(encoded.json));
    assert.equal(encoded.json.result.content[0].text, 'echo: b');
    for (const bad of [b64('crash'), '=?base64?ZWNobw?=', '=?base64?/w==?=']) {
      const r = await modern({ id: 6, method: 'tools/call', params: { name: 'echo', arguments: { text: 'b' } } }, { 'mcp-name': bad });
      assert.equal(r.status, 400, bad);
      assert.match(r.json.error.message, /Mcp-Name/);
    }
    const method = await modern({ id: 3, method: 'tools/call', params: { name: 'echo', arguments: {} } }, { 'mcp-method': 'tools/list' });
    assert.equal(method.status, 400);
    assert.match(method.json.error.message, /Mcp-Method/);
    const discover = await modern({ id: 4, method: 'server/discover' });
    assert.ok(discover.json.result.supportedVersions.includes('2026-07-28'));
    await stillWorks();
  });

  it('2026-07-28: an initialize (a handshake that generation does not have) is refused with 400 bad_request, audited', async () => {
    // By header, by _meta, or both: each once failed with a TypeError and a 500 internal_error.
    for (const [headers, meta] of [[{ 'mcp-protocol-version': '2026-07-28' }, {}], [{}, { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } }], [{ 'mcp-protocol-version': '2026-07-28' }, { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } }]] as const) {
      const r = await post('/mcp/kit', { jsonrpc: '2.0', id: 7, method: 'initialize', params: { protocolVersion: '2026-07-28', capabilities: {}, clientInfo: { name: 'raw', version: '1' }, ...meta } }, headers);
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.equal(r.json.id, 7);
      assert.equal(r.json.error.code, -32600);
      assert.equal(r.json.error.data.airlock_code, 'bad_request');
      assert.match(r.json.error.message, /server\/discover/);
      assert.equal(r.headers['mcp-session-id'], undefined);
      const id = r.json.error.data.request_id;
      const audit = await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=1000`);
      const rec = audit.json.records.find((x: { id: string }) => x.id === id);
      assert.equal(rec?.code, 'bad_request');
      assert.equal(rec?.status, 400);
    }
    assert.doesNotMatch(t.logs(), /front door failed/);
    await stillWorks();
  });

  it('an oversized argument payload: 413 payload_too_large, the session unharmed', async () => {
    const r = await inSession({ jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'kit__echo', arguments: { text: 'x'.repeat(20_000) } } });
    assert.equal(r.status, 413);
    assert.equal(r.json.error.data.airlock_code, 'payload_too_large');
    await stillWorks();
  });

  it('no session, an unknown session, an unknown server, arguments of the wrong type', async () => {
    const none = await post('/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/list' });
    assert.equal(none.status, 400);
    assert.match(none.json.error.message, /initialize/);
    const unknown = await post('/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { 'mcp-session-id': 'nope' });
    assert.equal(unknown.status, 404);
    const server = await post('/mcp/nosuch', { jsonrpc: '2.0', id: 1, method: 'tools/list' });
    assert.equal(server.status, 404);
    assert.equal(server.json.error.data.airlock_code, 'not_found');
    const args = await inSession({ jsonrpc: '2.0', id: 11, method: 'tools/call', params: { name: 'kit__echo', arguments: 'text' } });
    assert.equal(args.json.error.code, -32602);
    const unauth = await call(`${t.agentUrl}/mcp`, { method: 'POST', body: '{}' });
    assert.equal(unauth.status, 401);
    await stillWorks();
  });
});

describe('mcp: deeply nested arguments', () => {
  let t: TestGateway;
  const post = (body: string, sid?: string) =>
    call(`${t.agentUrl}/mcp`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25', ...(sid ? { 'mcp-session-id': sid } : {}) }, body });
  const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
  let sid = '';
  before(async () => {
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: r
    allow: ["mcp: kit/*"]
mcp:
  servers:
    kit: { command: "${process.execPath}", args: ["${kitServer}"] }
`);
    const deadline = Date.now() + 20_000;
    while (!t.gw.mcpHub.get('kit')?.connected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const init = await post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }));
    sid = String(init.headers['mcp-session-id']);
  });
  after(async () => t?.stop());

  it('arguments nested 50,000 deep: a JSON-RPC invalid-params error (bad_request), audited; the session unharmed', async () => {
    const r = await post(`{"jsonrpc":"2.0","id":"deep","method":"tools/call","params":{"name":"kit__echo","arguments":{"text":"x","deep":${nested(50_000)}}}}`, sid);
    assert.equal(r.status, 400, r.text.slice(0, 300));
    assert.equal(r.json.id, 'deep');
    assert.equal(r.json.error.code, -32602);
    assert.match(r.json.error.message, /^airlock: bad_request: .*nested more than 100 levels/);
    const requestId = r.json.error.data.request_id;
    const rec = await waitFor(async () => ((await call(`${t.adminUrl}/api/audit?protocol=mcp&limit=50`)).json.records as Record<string, any>[]).find((x) => x['id'] === requestId));
    assert.equal(rec['code'], 'bad_request');
    assert.equal(rec['agent'], 'alice');
    // Ordinary nesting still goes through.
    const ok = await post(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'kit__echo', arguments: { text: 'fine', deep: JSON.parse(nested(60)) } } }), sid);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.result.content[0].text, 'echo: fine');
  });
});
