/**
 * The pipeline on A2A calls: rules by remote agent and method (1.0 and 0.3 names alike), limits,
 * the loop guard, kill switches (also mid-stream) and approvals. Denials are JSON-RPC errors with
 * `error.data.airlock_code` on the JSON-RPC binding and the SPEC's JSON error on HTTP+JSON.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { sdkClient, startA2AUpstream, userMessage, type A2AUpstream } from './support/a2a.js';

function config(upUrl: string): string {
  return `
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
  carol: { keys: ["${KEYS.carol}"] }
rules:
  - name: alice-sends
    agents: [alice]
    allow: ["a2a: travel SendMessage", "a2a: travel SendStreamingMessage", "a2a: travel GetExtendedAgentCard"]
  - name: no-cancel
    agents: [alice]
    deny: ["a2a: travel CancelTask"]
    reason: cancellations go through the travel desk
  - name: bob-everything
    agents: [bob]
    allow: ["a2a: travel"]
  - name: bob-needs-a-human-to-book
    agents: [bob]
    approve: ["a2a: travel SendMessage"]
limits:
  - target: "a2a: travel GetTask"
    agents: [bob]
    requests: 3/min
guards:
  loop: { repeats: 3, window: 60s }
approvals: { timeout: 3s }
a2a:
  agents:
    travel: { url: "${upUrl}" }
`;
}

const rpcBody = (method: string, params: unknown, id: number | string = 1) => JSON.stringify({ jsonrpc: '2.0', id, method, params });
const send = (text: string, v: '1.0' | '0.3' = '1.0') =>
  v === '1.0' ? { message: { messageId: `m-${Math.random()}`, role: 'ROLE_USER', parts: [{ text }] } } : { message: { kind: 'message', messageId: `m-${Math.random()}`, role: 'user', parts: [{ kind: 'text', text }] } };

describe('a2a: rules, limits, guards, kill switches and approvals', () => {
  let up: A2AUpstream;
  let t: TestGateway;
  const rpc = (key: string, method: string, params: unknown, headers: Record<string, string> = {}) =>
    call(`${t.agentUrl}/a2a/travel`, { method: 'POST', key, headers: { 'content-type': 'application/json', ...headers }, body: rpcBody(method, params) });
  before(async () => {
    up = await startA2AUpstream();
    t = await startGateway(config(up.url));
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('a method rule covers both generations: SendMessage and message/send are allowed; GetTask / tasks/get are not', async () => {
    const a = await rpc(KEYS.alice, 'SendMessage', send('quick one'));
    assert.ok(a.json.result, JSON.stringify(a.json));
    const b = await rpc(KEYS.alice, 'message/send', send('quick two', '0.3'));
    assert.ok(b.json.result, JSON.stringify(b.json));
    const before = up.seen.length;
    for (const m of ['GetTask', 'tasks/get']) {
      const r = await rpc(KEYS.alice, m, { id: 'x' });
      assert.equal(r.status, 200, 'JSON-RPC errors travel in an HTTP 200 answer, as A2A servers send theirs');
      assert.equal(r.json.jsonrpc, '2.0');
      assert.equal(r.json.id, 1);
      assert.equal(r.json.error.code, -31403);
      assert.equal(r.json.error.data.airlock_code, 'denied');
      assert.equal(r.json.error.data.http_status, 403);
      assert.match(r.json.error.message, /a2a: travel GetTask/);
      assert.match(r.json.error.message, /default deny/);
      assert.equal(r.json.error.data.request_id, r.headers['x-airlock-request-id']);
    }
    assert.equal(up.seen.length, before, 'nothing denied reached the remote agent');
  });

  it('a deny rule names itself and its reason; the SDK client surfaces the JSON-RPC error with its data', async () => {
    const client = await sdkClient(t.agentUrl, 'travel', KEYS.alice);
    await assert.rejects(client.cancelTask({ tenant: '', id: 'abc', metadata: undefined }), (e: Error & { data?: Record<string, unknown>; envelopeCode?: number }) => {
      assert.equal(e.data?.['airlock_code'], 'denied');
      assert.equal(e.data?.['rule'], 'no-cancel');
      assert.equal(e.envelopeCode, -31403);
      assert.match(e.message, /cancellations go through the travel desk/);
      return true;
    });
  });

  it('on the HTTP+JSON binding a denial is the SPEC\'s JSON error with the HTTP status', async () => {
    const r = await call(`${t.agentUrl}/a2a/travel/tasks/abc:cancel`, { method: 'POST', key: KEYS.alice, headers: { 'a2a-version': '1.0' } });
    assert.equal(r.status, 403);
    assert.equal(r.json.error.type, 'airlock_error');
    assert.equal(r.json.error.code, 'denied');
    assert.equal(r.json.error.rule, 'no-cancel');
    assert.equal(r.json.error.request_id, r.headers['x-airlock-request-id']);
  });

  it('the card is shown only to agents some rule lets call the remote agent', async () => {
    const ok = await call(`${t.agentUrl}/a2a/travel/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(ok.status, 200);
    const no = await call(`${t.agentUrl}/a2a/travel/.well-known/agent-card.json`, { key: KEYS.carol });
    assert.equal(no.status, 403);
    assert.equal(no.json.error.code, 'denied');
    assert.match(no.json.error.message, /carol/);
  });

  it('limits: a target limit on GetTask answers rate_limited with retry_after once used up', async () => {
    // A task of bob's own (a task id airlock never saw would be refused before any limit).
    const started = await rpc(KEYS.bob, 'SendStreamingMessage', send('a trip for the limits'), { accept: 'text/event-stream', 'a2a-version': '1.0' });
    const id = /"task":\{[^}]*?"id":"([^"]+)"/.exec(started.text)?.[1];
    assert.ok(id, started.text.slice(0, 300));
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await rpc(KEYS.bob, 'GetTask', { id, historyLength: i });
      codes.push(r.json.error?.data?.airlock_code);
      if (i === 3) {
        assert.equal(r.json.error.code, -31429);
        assert.ok(Number(r.headers['retry-after']) >= 1);
        assert.ok(r.json.error.data.retry_after >= 1);
      }
    }
    // The first three reach the remote agent.
    assert.deepEqual(codes, [undefined, undefined, undefined, 'rate_limited']);
  });

  it('the loop guard: the same message over and over is refused (fresh message ids do not hide the repeat)', async () => {
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) codes.push((await rpc(KEYS.alice, 'SendMessage', send('quick are we there yet'))).json.error?.data?.airlock_code);
    assert.deepEqual(codes, [undefined, undefined, undefined, 'loop_detected']);
  });

  it('approvals: a held SendMessage waits for a human; the summary has the method and the message text', async () => {
    const before = up.seen.length;
    const held = rpc(KEYS.bob, 'SendMessage', send('quick book the 9:40 to Porto'));
    let a: { id: string; summary: string; action: string } | undefined;
    for (let i = 0; i < 100 && !a; i++) {
      const list = await call(`${t.adminUrl}/api/approvals?status=pending`);
      a = (list.json.approvals as { id: string; summary: string; action: string }[]).find((x) => x.action === 'a2a: travel SendMessage');
      if (!a) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(a, 'a pending approval');
    assert.equal(up.seen.length, before, 'nothing reached the remote agent while held');
    assert.match(a.summary, /SendMessage/);
    assert.match(a.summary, /book the 9:40 to Porto/);
    const d = await call(`${t.adminUrl}/api/approvals/${a.id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ decision: 'approve' }) });
    assert.equal(d.status, 200);
    const r = await held;
    assert.match(JSON.stringify(r.json.result), /quick answer to: quick book the 9:40 to Porto/);
    // Denied: an approval_denied JSON-RPC error.
    const held2 = rpc(KEYS.bob, 'SendMessage', send('quick book first class'));
    let b: { id: string } | undefined;
    for (let i = 0; i < 100 && !b; i++) {
      const list = await call(`${t.adminUrl}/api/approvals?status=pending`);
      b = (list.json.approvals as { id: string; action: string }[]).find((x) => x.action === 'a2a: travel SendMessage');
      if (!b) await new Promise((r) => setTimeout(r, 20));
    }
    await call(`${t.adminUrl}/api/approvals/${b!.id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ decision: 'deny', reason: 'over budget' }) });
    const r2 = await held2;
    assert.equal(r2.json.error.data.airlock_code, 'approval_denied');
    assert.match(r2.json.error.message, /over budget/);
  });

  it('a kill switch refuses the next call and ends a stream in flight with a last JSON-RPC error event', async () => {
    const res = await request(`${t.agentUrl}/a2a/travel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEYS.alice}`, 'content-type': 'application/json', accept: 'text/event-stream', 'a2a-version': '1.0' },
      body: rpcBody('SendStreamingMessage', send('slow and long'), 'k1'),
    });
    assert.match(String(res.headers['content-type']), /text\/event-stream/);
    const chunks: string[] = [];
    const done = (async () => {
      for await (const c of res.body) chunks.push(String(c));
    })();
    while (!chunks.join('').includes('step 2')) await new Promise((r) => setTimeout(r, 10));
    const k = await call(`${t.adminUrl}/api/kill`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'a2a: travel' }) });
    assert.equal(k.status, 200);
    await done;
    const events = chunks.join('').split('\n\n').filter((e) => e.startsWith('data:'));
    const last = JSON.parse(events.at(-1)!.slice(5));
    assert.equal(last.id, 'k1');
    assert.equal(last.error.data.airlock_code, 'killed');
    const next = await rpc(KEYS.alice, 'SendMessage', send('quick again'));
    assert.equal(next.json.error.data.airlock_code, 'killed');
    const card = await call(`${t.agentUrl}/a2a/travel/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(card.status, 403, 'the card is not served under a kill switch either');
    assert.equal(card.json.error.code, 'killed');
    await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'a2a: travel' }) });
    const after = await rpc(KEYS.alice, 'SendMessage', send('quick after the kill'));
    assert.ok(after.json.result);
  });
});
