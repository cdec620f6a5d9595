/**
 * `GET /api/usage` and `airlock usage` (SPEC 9, 11) count every protocol's calls: agents that make
 * HTTP, LLM, MCP and A2A calls through a real gateway, refusals among them (a denied HTTP call, an
 * unauthenticated caller, a call made while a kill switch is on) and a call a kill switch cut in
 * flight (it ran: counted, not refused). By agent and team, requests and refused count all of
 * them, with a breakdown per protocol; by model, LLM calls only; tokens and cost are the LLM
 * calls'. Every number is also checked against the final audit records themselves.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli, waitFor } from './support/cli.js';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { agentClient, startHttpUpstream, type Upstream as McpUpstream } from './support/mcp.js';
import { startA2AUpstream, type A2AUpstream } from './support/a2a.js';
import { startUpstream, type Upstream } from './support/upstream.js';

const WEB_TOKEN = 'web-upstream-token-usage-0123456789';

function config(up: Upstream, web: McpUpstream, travel: A2AUpstream): string {
  return `
agents:
  alice: { team: ops, keys: ["${KEYS.alice}"] }
  bob: { team: ops, keys: ["${KEYS.bob}"] }
  carol: { keys: ["${KEYS.carol}"] }
rules:
  - name: work
    allow: ["http: GET svc/**", "llm: demo-*", "mcp: web/add", "a2a: travel"]
  - name: no-admin
    deny: ["http: * svc/admin/**"]
http:
  services:
    svc: { url: "${up.url}" }
llm:
  providers:
    demo: { type: mock }
  models:
    demo-mini: { provider: demo, price: { input: 1000, output: 2000 } }
mcp:
  servers:
    web: { url: "${web.url}", token: "${WEB_TOKEN}" }
a2a:
  agents:
    travel: { url: "${travel.url}" }
`;
}

type Group = { requests: number; refused: number; protocols: Record<string, number>; inputTokens: number; outputTokens: number; costUsd: number } & Record<string, unknown>;
type Rec = { id: string; phase: string; agent: string | null; team?: string; protocol: string; decision: string; usage?: { inputTokens: number; outputTokens: number }; costUsd?: number };

describe('usage: every protocol\'s calls, per agent and team', () => {
  let up: Upstream;
  let web: McpUpstream;
  let travel: A2AUpstream;
  let t: TestGateway;
  let release: () => void = () => {};
  let records: Rec[] = [];

  const get = (key: string, path: string) => call(`${t.agentUrl}/http/svc/${path}`, { key });
  const chat = (key: string) =>
    call(`${t.agentUrl}/llm/v1/chat/completions`, { key, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'demo-mini', messages: [{ role: 'user', content: 'how many calls?' }] }) });
  const usage = async (query: string) => {
    const r = await call(`${t.adminUrl}/api/usage?${query}`);
    assert.equal(r.status, 200, r.text);
    return r.json as { by: string; groups: Group[]; total: Group };
  };
  const group = (u: { groups: Group[] }, by: string, key: string | null) => u.groups.find((g) => g[by] === key);

  before(async () => {
    up = await startUpstream((req, res) => {
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ url: req.url }));
      };
      // /slow answers only when the test says so: a call in flight for as long as the test needs.
      if (req.url?.startsWith('/slow')) release = answer;
      else answer();
    });
    web = await startHttpUpstream(WEB_TOKEN);
    travel = await startA2AUpstream();
    t = await startGateway(config(up, web, travel));

    // alice: 3 HTTP calls, 1 denied one, 2 LLM calls, 1 MCP tool call, 1 A2A message.
    for (const p of ['items/1', 'items/2', 'items/3']) assert.equal((await get(KEYS.alice, p)).status, 200);
    assert.equal((await get(KEYS.alice, 'admin/users')).status, 403);
    for (let i = 0; i < 2; i++) assert.equal((await chat(KEYS.alice)).status, 200);
    const mcp = await agentClient(`${t.agentUrl}/mcp/web`, KEYS.alice, 'modern');
    try {
      const r = await mcp.callTool({ name: 'add', arguments: { a: 2, b: 3 } });
      assert.equal((r.content as { text: string }[])[0]!.text, '5');
    } finally {
      await mcp.close();
    }
    const a2a = await call(`${t.agentUrl}/a2a/travel`, {
      method: 'POST',
      key: KEYS.alice,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'm-usage', role: 'ROLE_USER', parts: [{ text: 'quick hello' }] } } }),
    });
    assert.equal(a2a.status, 200, a2a.text);
    assert.equal(a2a.json.error, undefined, a2a.text);

    // bob (same team): 1 LLM call, 1 HTTP call.
    assert.equal((await chat(KEYS.bob)).status, 200);
    assert.equal((await get(KEYS.bob, 'items/9')).status, 200);

    // carol (no team): a call cut in flight by a kill switch, one refused while it is on, one after.
    const inFlight = get(KEYS.carol, 'slow/1');
    await waitFor('the slow call to reach the upstream', () => up.received.some((r) => r.url === '/slow/1'));
    const kill = await call(`${t.adminUrl}/api/kill`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'carol' }) });
    assert.equal(kill.json.aborted, 1, 'the slow call was in flight, and cut');
    assert.equal((await inFlight).json.error.code, 'killed');
    assert.equal((await get(KEYS.carol, 'items/4')).json.error.code, 'killed');
    assert.equal((await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'carol' }) })).status, 200);
    assert.equal((await get(KEYS.carol, 'items/5')).status, 200);

    // Someone without a valid key: refused before any agent is known.
    assert.equal((await get('alk_nobodyNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNNN', 'items/6')).status, 401);

    await t.gw.audit.settled();
    records = ((await call(`${t.adminUrl}/api/audit?limit=1000`)).json.records as Rec[]).filter((r) => r.phase === 'final');
  });
  after(async () => {
    release();
    await t?.stop();
    await up?.close();
    await web?.close();
    await travel?.close();
  });

  it('by agent: requests and refused of every protocol, a breakdown per protocol, LLM tokens and cost', async () => {
    const u = await usage('by=agent&since=1h');
    const alice = group(u, 'agent', 'alice')!;
    assert.deepEqual([alice.requests, alice.refused, alice.protocols], [8, 1, { http: 4, llm: 2, mcp: 1, a2a: 1 }], JSON.stringify(alice));
    const aliceLlm = records.filter((r) => r.agent === 'alice' && r.protocol === 'llm');
    assert.equal(alice.inputTokens, aliceLlm.reduce((n, r) => n + r.usage!.inputTokens, 0));
    assert.ok(alice.inputTokens > 0);
    assert.ok(Math.abs(alice.costUsd - aliceLlm.reduce((n, r) => n + r.costUsd!, 0)) < 1e-9);
    assert.ok(alice.costUsd > 0);

    const bob = group(u, 'agent', 'bob')!;
    assert.deepEqual([bob.requests, bob.refused, bob.protocols], [2, 0, { http: 1, llm: 1 }]);
    const carol = group(u, 'agent', 'carol')!;
    assert.deepEqual([carol.requests, carol.refused, carol.protocols, carol.costUsd], [3, 1, { http: 3 }, 0], 'the call cut in flight ran; the one made while killed did not');
    const nobody = group(u, 'agent', null)!;
    assert.deepEqual([nobody.requests, nobody.refused, nobody.protocols], [1, 1, { http: 1 }]);

    // The same numbers as the audit trail's final records.
    assert.equal(u.total.requests, records.length);
    assert.equal(u.total.requests, 14);
    assert.equal(u.total.refused, 3);
    assert.deepEqual(u.total.protocols, { http: 9, llm: 3, mcp: 1, a2a: 1 });
    for (const g of u.groups) assert.equal(Object.values(g.protocols).reduce((n, x) => n + x, 0), g.requests, 'the breakdown sums to the requests');
  });

  it('by team: the team\'s agents together; agents without a team (and unknown callers) under null', async () => {
    const u = await usage('by=team');
    const ops = group(u, 'team', 'ops')!;
    assert.deepEqual([ops.requests, ops.refused, ops.protocols], [10, 1, { http: 5, llm: 3, mcp: 1, a2a: 1 }]);
    const none = group(u, 'team', null)!;
    assert.deepEqual([none.requests, none.refused, none.protocols], [4, 2, { http: 4 }]);
    const byAgent = await usage('by=agent');
    assert.deepEqual(u.total, byAgent.total, 'the same calls, grouped another way');
  });

  it('by model: LLM calls only, as before', async () => {
    const u = await usage('by=model');
    assert.equal(u.groups.length, 1);
    const mini = group(u, 'model', 'demo-mini')!;
    assert.deepEqual([mini.requests, mini.refused, mini.protocols], [3, 0, { llm: 3 }]);
    const llm = records.filter((r) => r.protocol === 'llm');
    assert.equal(mini.inputTokens, llm.reduce((n, r) => n + r.usage!.inputTokens, 0));
    assert.equal(mini.outputTokens, llm.reduce((n, r) => n + r.usage!.outputTokens, 0));
    assert.deepEqual(u.total.protocols, { llm: 3 });
  });

  it('airlock usage: a column per protocol, and --json prints the report', async () => {
    const tbl = await runCli(['usage', '--admin', t.adminUrl]);
    assert.equal(tbl.code, 0, tbl.stderr);
    assert.match(tbl.stdout, /^Usage by agent: requests of every protocol/);
    assert.match(tbl.stdout, /^agent\s+requests\s+refused\s+http\s+llm\s+mcp\s+a2a\s+input\s+cached\s+output\s+cost\s+estimated$/m);
    assert.match(tbl.stdout, /^alice\s+8\s+1\s+4\s+2\s+1\s+1\s+\d+\s+\d+\s+\d+\s+\$0\.\d+\s*$/m);
    assert.match(tbl.stdout, /^carol\s+3\s+1\s+3\s+0\s+0\s+0\s+0\s+0\s+0\s+\$0\.0000\s*$/m);
    assert.match(tbl.stdout, /^-\s+1\s+1\s+1\s+0\s+0\s+0\s/m, 'the caller without a valid key');
    assert.match(tbl.stdout, /^total\s+14\s+3\s+9\s+3\s+1\s+1\s/m);

    const byModel = await runCli(['usage', '--admin', t.adminUrl, '--by', 'model']);
    assert.equal(byModel.code, 0, byModel.stderr);
    assert.match(byModel.stdout, /^LLM usage by model\n/);
    assert.match(byModel.stdout, /^model\s+requests\s+refused\s+input\s+cached\s+output\s+cost/m);
    assert.match(byModel.stdout, /^demo-mini\s+3\s+0\s+\d+/m);

    const json = await runCli(['usage', '--admin', t.adminUrl, '--by', 'team', '--json']);
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), await usage('by=team'));
  });
});
