/**
 * Bad input on the A2A front door, each with a clear error in the binding's shape: malformed
 * JSON-RPC, unknown agents and methods, bad REST paths, oversized bodies, a remote agent that is
 * down or serves a broken card, and push-notification URLs aimed at private addresses (SSRF).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { startA2AUpstream, startWebhook, type A2AUpstream } from './support/a2a.js';

async function freePort(): Promise<number> {
  const s: Server = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function config(upUrl: string, downUrl: string, extra = ''): string {
  return `
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all-a2a
    allow: ["a2a: *"]
a2a:
  agents:
    travel: { url: "${upUrl}", maxBodySize: 64kb }
    open: { url: "${upUrl}", allowPrivatePushUrls: true }
    down: { url: "${downUrl}", timeout: 2s }
${extra}`;
}

describe('a2a: bad input', () => {
  let up: A2AUpstream;
  let t: TestGateway;
  let broken: Server;
  let brokenUrl: string;
  const post = (path: string, body: string | Buffer, headers: Record<string, string> = {}) =>
    call(`${t.agentUrl}${path}`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', ...headers }, body });
  before(async () => {
    up = await startA2AUpstream();
    const cards: Record<string, string> = {
      '/notjson/.well-known/agent-card.json': '{"name": "broken", ',
      '/array/.well-known/agent-card.json': '[1,2]',
      '/grpc-only/.well-known/agent-card.json': JSON.stringify({ name: 'g', supportedInterfaces: [{ url: 'grpc.example.com:443', protocolBinding: 'GRPC', protocolVersion: '1.0' }] }),
      // A card pointing its interfaces at another host (cloud metadata here).
      '/elsewhere/.well-known/agent-card.json': JSON.stringify({ name: 'e', supportedInterfaces: [{ url: 'http://169.254.169.254/latest', protocolBinding: 'JSONRPC', protocolVersion: '1.0' }] }),
    };
    broken = createServer((req, res) => {
      if (req.url === '/hang/.well-known/agent-card.json') {
        const base = `http://${req.headers.host}`;
        return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'h', supportedInterfaces: [{ url: `${base}/hang/rpc`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }] }));
      }
      if (req.url === '/hang/rpc') return; // never answers
      const card = cards[req.url ?? ''];
      if (card === undefined) res.writeHead(404).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(card);
    });
    await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
    brokenUrl = `http://127.0.0.1:${(broken.address() as AddressInfo).port}`;
    const extra = `    notjson: { url: "${brokenUrl}/notjson" }
    array: { url: "${brokenUrl}/array" }
    grpconly: { url: "${brokenUrl}/grpc-only" }
    elsewhere: { url: "${brokenUrl}/elsewhere" }
    missing: { url: "${brokenUrl}/missing" }
    hang: { url: "${brokenUrl}/hang", timeout: 300ms }`;
    t = await startGateway(config(up.url, `http://127.0.0.1:${await freePort()}`, extra));
  });
  after(async () => {
    await t.stop();
    await up.close();
    broken.closeAllConnections();
    await new Promise<void>((r) => broken.close(() => r()));
  });

  it('invalid JSON → JSON-RPC parse error (-32700), id null', async () => {
    const r = await post('/a2a/travel', '{"jsonrpc": "2.0", "method": ');
    assert.equal(r.status, 200);
    assert.equal(r.json.jsonrpc, '2.0');
    assert.equal(r.json.id, null);
    assert.equal(r.json.error.code, -32700);
    assert.equal(r.json.error.data.airlock_code, 'bad_request');
    assert.match(r.json.error.message, /not valid JSON/);
  });

  it('not a JSON-RPC request → -32600 with the reason; the id is echoed when it can be', async () => {
    const cases: [unknown, RegExp][] = [
      [[{ jsonrpc: '2.0', id: 1, method: 'SendMessage' }], /batches/],
      ['just a string', /JSON object/],
      [{ id: 5, method: 'SendMessage' }, /"jsonrpc": "2.0"/],
      [{ jsonrpc: '2.0', id: 6 }, /name a "method"/],
      [{ jsonrpc: '2.0', method: 'SendMessage', params: {} }, /notifications/],
      [{ jsonrpc: '2.0', id: { x: 1 }, method: 'SendMessage' }, /"id" must be/],
    ];
    for (const [body, re] of cases) {
      const r = await post('/a2a/travel', JSON.stringify(body));
      assert.equal(r.json.error.code, -32600, JSON.stringify(body));
      assert.match(r.json.error.message, re);
      assert.equal(r.json.error.data.airlock_code, 'bad_request');
    }
    assert.equal((await post('/a2a/travel', JSON.stringify({ id: 5, method: 'SendMessage' }))).json.id, 5);
  });

  it('params that are not an object → -32602', async () => {
    const r = await post('/a2a/travel', JSON.stringify({ jsonrpc: '2.0', id: 'p', method: 'SendMessage', params: [1, 2] }));
    assert.equal(r.json.error.code, -32602);
    assert.equal(r.json.id, 'p');
  });

  it('duplicate JSON keys (top level, params, nested, escaped spellings) → -32600 on JSON-RPC, 400 on REST; nothing is forwarded', async () => {
    const before = up.seen.length;
    // JSON.parse keeps the last of two equal keys and some upstream parsers keep the first: airlock
    // would judge one call (GetTask) and the remote agent run another (CancelTask).
    const bodies = [
      '{"jsonrpc": "2.0", "id": 1, "method": "CancelTask", "method": "GetTask", "params": {"id": "t1"}}',
      '{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "mine", "id": "theirs"}}',
      '{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"messageId": "m", "role": "ROLE_USER", "taskId": "a", "parts": [{"text": "hi"}], "taskId": "b"}}}',
      '{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "\u006dethod": "CancelTask", "params": {"id": "t1"}}',
    ];
    for (const b of bodies) {
      const r = await post('/a2a/travel', b);
      assert.equal(r.status, 200, b);
      assert.equal(r.json.error?.code, -32600, b);
      assert.equal(r.json.error.data.airlock_code, 'bad_request');
      assert.match(r.json.error.message, /duplicate key/);
      assert.equal(r.json.id, 1);
    }
    const rest = await post('/a2a/travel/message:send', '{"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}, "configuration": {"taskPushNotificationConfig": {"url": "https://93.184.216.34/hook", "url": "http://169.254.169.254/"}}}');
    assert.equal(rest.status, 400);
    assert.equal(rest.json.error.code, 'bad_request');
    assert.match(rest.json.error.message, /duplicate key "url"/);
    const deep = await post('/a2a/travel', `{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"metadata": {"x": ${'['.repeat(1000)}${']'.repeat(1000)}}}}`);
    assert.equal(deep.json.error?.code, -32600);
    assert.match(deep.json.error.message, /nesting deeper than 1000 levels/);
    assert.equal(up.seen.length, before, 'none of them reached the remote agent');
    // Equal keys in different objects are fine.
    const ok = await post('/a2a/travel', '{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "quick a"}, {"text": "b"}]}}}', { 'a2a-version': '1.0' });
    assert.ok(ok.json.result, ok.text);
  });

  it('an unknown method → -32601, and nothing is forwarded', async () => {
    const before = up.seen.length;
    for (const m of ['Nope', 'tasks/explode', 'message/sendd']) {
      const r = await post('/a2a/travel', JSON.stringify({ jsonrpc: '2.0', id: 9, method: m, params: {} }));
      assert.equal(r.json.error.code, -32601);
      assert.equal(r.json.id, 9);
      assert.match(r.json.error.message, /not an A2A method/);
      assert.match(r.json.error.message, /SendMessage/);
    }
    assert.equal(up.seen.length, before);
  });

  it('an unknown A2A agent → not_found: a JSON-RPC error on the JSON-RPC URL, a 404 JSON error elsewhere', async () => {
    const r = await post('/a2a/nosuch', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: {} }));
    assert.equal(r.status, 404, 'a URL naming no agent is a 404, like any unknown route');
    assert.equal(r.json.error.code, -31404);
    assert.equal(r.json.error.data.airlock_code, 'not_found');
    assert.equal(r.json.error.data.http_status, 404);
    assert.match(r.json.error.message, /no A2A agent named "nosuch"/);
    const g = await call(`${t.agentUrl}/a2a/nosuch/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(g.status, 404);
    assert.equal(g.json.error.code, 'not_found');
    const root = await call(`${t.agentUrl}/a2a/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(root.status, 404);
    assert.match(root.json.error.message, /trailing slash/);
    const audit = await call(`${t.adminUrl}/api/audit?protocol=a2a&decision=denied&limit=50`);
    assert.ok((audit.json.records as { code: string; target?: { agent?: string } }[]).some((x) => x.code === 'not_found' && x.target?.agent === 'nosuch'));
  });

  it('REST: unknown paths are 404, wrong verbs and dot segments 400 — in the SPEC\'s JSON shape', async () => {
    const nf = await call(`${t.agentUrl}/a2a/travel/message:explode`, { method: 'POST', key: KEYS.alice, body: '{}' });
    assert.equal(nf.status, 404);
    assert.equal(nf.json.error.code, 'not_found');
    assert.match(nf.json.error.message, /message:send/);
    const verb = await call(`${t.agentUrl}/a2a/travel/message:send`, { key: KEYS.alice });
    assert.equal(verb.status, 400);
    assert.match(verb.json.error.message, /uses POST/);
    const dots = await call(`${t.agentUrl}/a2a/travel/tasks/..%2Fsecret`, { key: KEYS.alice });
    assert.equal(dots.status, 400);
    const badJson = await call(`${t.agentUrl}/a2a/travel/message:send`, { method: 'POST', key: KEYS.alice, body: '{nope' });
    assert.equal(badJson.status, 400);
    assert.match(badJson.json.error.message, /not valid JSON/);
    const getRpc = await call(`${t.agentUrl}/a2a/travel`, { key: KEYS.alice });
    assert.equal(getRpc.status, 404);
  });

  it('a body over maxBodySize → payload_too_large, not forwarded', async () => {
    const before = up.seen.length;
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { parts: [{ text: 'x'.repeat(70_000) }] } } });
    const r = await post('/a2a/travel', big);
    assert.equal(r.json.error.data.airlock_code, 'payload_too_large');
    assert.equal(up.seen.length, before);
  });

  it('a remote agent that is down: the card fetch and calls answer upstream_error, clearly', async () => {
    const card = await call(`${t.agentUrl}/a2a/down/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(card.status, 502);
    assert.equal(card.json.error.code, 'upstream_error');
    assert.match(card.json.error.message, /down: the remote agent's card could not be fetched/);
    assert.match(card.json.error.message, /ECONNREFUSED/);
    const r = await post('/a2a/down', JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'SendMessage', params: {} }));
    assert.equal(r.json.id, 2);
    assert.equal(r.json.error.data.airlock_code, 'upstream_error');
    assert.equal(r.json.error.code, -31502);
    const missing = await call(`${t.agentUrl}/a2a/missing/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(missing.status, 502);
    assert.match(missing.json.error.message, /answered HTTP 404/);
  });

  it('a remote agent that does not answer in time → upstream_timeout', async () => {
    const t0 = Date.now();
    const r = await post('/a2a/hang', JSON.stringify({ jsonrpc: '2.0', id: 'slow', method: 'SendMessage', params: {} }));
    assert.equal(r.json.id, 'slow');
    assert.equal(r.json.error.data.airlock_code, 'upstream_timeout');
    assert.equal(r.json.error.code, -31504);
    assert.ok(Date.now() - t0 < 5000);
  });

  it('a card that is not valid JSON, not an object, or names nothing airlock can reach → upstream_error saying why', async () => {
    const nj = await call(`${t.agentUrl}/a2a/notjson/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(nj.status, 502);
    assert.match(nj.json.error.message, /card is not valid JSON/);
    const arr = await call(`${t.agentUrl}/a2a/array/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.match(arr.json.error.message, /not a JSON object/);
    const g = await call(`${t.agentUrl}/a2a/grpconly/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.match(g.json.error.message, /names no interface airlock can forward to/);
    // A card pointing its interfaces at another host (cloud metadata here) is not followed.
    const e = await post('/a2a/elsewhere', JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'SendMessage', params: {} }));
    assert.equal(e.json.error.data.airlock_code, 'upstream_error');
    assert.match(e.json.error.message, /untrusted origin/);
  });

  it('push-notification URLs on private, loopback or link-local addresses are refused (SSRF defence)', async () => {
    const calls = () => up.seen.filter((s) => s.url.startsWith('/a2a/')).length;
    const before = calls();
    const bad = [
      'http://127.0.0.1:9/hook',
      'http://localhost/hook',
      'http://169.254.169.254/latest/meta-data',
      'http://10.1.2.3/hook',
      'http://192.168.0.10/hook',
      'http://[::1]/hook',
      'http://[::ffff:127.0.0.1]/hook',
      'http://[fe80::1]/hook',
      'http://2130706433/hook',
      'http://0x7f.1/hook',
      'file:///etc/passwd',
    ];
    for (const u of bad) {
      const r = await post('/a2a/travel', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'm', role: 'ROLE_USER', parts: [{ text: 'hi' }] }, configuration: { taskPushNotificationConfig: { url: u } } } }));
      assert.equal(r.json.error?.data?.airlock_code, 'denied', u);
      assert.match(r.json.error.message, /push-notification URL/);
    }
    const v03 = await post('/a2a/travel', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tasks/pushNotificationConfig/set', params: { taskId: 't', pushNotificationConfig: { url: 'http://127.0.0.1/x' } } }));
    assert.equal(v03.json.error.data.airlock_code, 'denied');
    const v10 = await post('/a2a/travel', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'CreateTaskPushNotificationConfig', params: { taskId: 't', url: 'http://[::1]:8080/x' } }));
    assert.equal(v10.json.error.data.airlock_code, 'denied');
    const rest = await call(`${t.agentUrl}/a2a/travel/tasks/t/pushNotificationConfigs`, { method: 'POST', key: KEYS.alice, body: JSON.stringify({ taskId: 't', url: 'http://169.254.169.254/' }) });
    assert.equal(rest.status, 403);
    assert.equal(rest.json.error.code, 'denied');
    assert.equal(calls(), before, 'none of them reached the remote agent');
    // A public address passes the check and is forwarded (the remote agent decides the rest), on a
    // task of the caller's own (another agent's, or one airlock never saw, is refused first).
    const own = await post('/a2a/travel', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'own', role: 'ROLE_USER', parts: [{ text: 'ask where' }] } } }), { 'a2a-version': '1.0' });
    const taskId = own.json.result?.task?.id;
    assert.ok(taskId, own.text);
    const pub = await post('/a2a/travel', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'CreateTaskPushNotificationConfig', params: { taskId, url: 'https://93.184.216.34/hook' } }));
    assert.equal(pub.json.error?.data?.airlock_code, undefined);
    assert.equal(calls(), before + 2);
  });

  it('allowPrivatePushUrls lets a loopback webhook receive the remote agent\'s push notifications', async () => {
    const hook = await startWebhook();
    try {
      const r = await post(
        '/a2a/open',
        JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'mp', role: 'ROLE_USER', parts: [{ text: 'ask for a push' }] }, configuration: { taskPushNotificationConfig: { url: hook.url, token: 'tok' } } } }),
        { 'a2a-version': '1.0' },
      );
      assert.ok(r.json.result?.task, JSON.stringify(r.json));
      for (let i = 0; i < 100 && hook.received.length === 0; i++) await new Promise((res) => setTimeout(res, 20));
      assert.ok(hook.received.length >= 1, 'the webhook got a push');
      assert.match(hook.received[0]!.body, new RegExp(r.json.result.task.id));
    } finally {
      await hook.close();
    }
  });
});

describe('a2a: a remote agent answering JSON nested absurdly deep', () => {
  // Found by fuzzing: the ListTasks answer (cut down to the caller's tasks) and the extended card
  // (rewritten) are read whole and re-serialized, and a document nested 50,000 deep overflowed
  // the stack after the exchange was allowed: a 500, no final record, the slot held.
  let t: TestGateway;
  let up: Server;
  let answer = '';
  const deep = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
  before(async () => {
    up = createServer((req, res) => {
      req.resume();
      const url = `http://127.0.0.1:${(up.address() as AddressInfo).port}`;
      if (req.url?.startsWith('/.well-known/')) {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ name: 'deep', description: 'x', version: '1', supportedInterfaces: [{ url: `${url}/rpc`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }, { url: `${url}/rest`, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0' }], capabilities: { extendedAgentCard: true }, defaultInputModes: [], defaultOutputModes: [], skills: [] }));
        return;
      }
      res.setHeader('content-type', 'application/json');
      res.end(answer);
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"], limits: { concurrency: 1 } }
rules:
  - name: all-a2a
    allow: ["a2a: *"]
a2a:
  agents:
    deep: { url: "http://127.0.0.1:${(up.address() as AddressInfo).port}" }
    deepcard: { url: "http://127.0.0.1:${(up.address() as AddressInfo).port}/dc" }
`);
  });
  after(async () => {
    await t?.stop();
    up.closeAllConnections();
    await new Promise<void>((r) => up.close(() => r()));
  });

  it('ListTasks and the extended card: 502 upstream_error with a final record; the concurrency slot is released', async () => {
    const card = (u: string) => ({ name: 'deep', description: 'x', version: '1', supportedInterfaces: [{ url: `${u}/rpc`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }], x: 0 });
    const deepCard = JSON.stringify(card(`http://127.0.0.1:${(up.address() as AddressInfo).port}`)).replace('"x":0', `"x":${deep(50_000)}`);
    for (const [path, body, text] of [
      ['/a2a/deep', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ListTasks', params: {} }), `{"jsonrpc":"2.0","id":1,"result":{"tasks":[],"x":${deep(50_000)}}}`],
      ['/a2a/deep/tasks', undefined, `{"tasks":[],"x":${deep(50_000)}}`],
      ['/a2a/deep', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'GetExtendedAgentCard', params: {} }), `{"jsonrpc":"2.0","id":1,"result":${deepCard}}`],
      ['/a2a/deep/extendedAgentCard', undefined, deepCard],
    ] as const) {
      answer = text;
      const r = await call(`${t.agentUrl}${path}`, { method: body ? 'POST' : 'GET', key: KEYS.alice, headers: { 'content-type': 'application/json', 'a2a-version': '1.0' }, ...(body ? { body } : {}) });
      const id = String(r.headers['x-airlock-request-id']);
      if (body) {
        assert.equal(r.json.error?.data?.airlock_code, 'upstream_error', r.text);
        assert.equal(r.json.id, 1);
      } else {
        assert.equal(r.status, 502, r.text);
        assert.equal(r.json.error.code, 'upstream_error');
      }
      assert.match(r.text, /more than 256 levels deep/);
      const audit = await call(`${t.adminUrl}/api/audit?protocol=a2a&limit=1000`);
      const final = audit.json.records.find((x: { id: string; phase: string }) => x.id === id && x.phase === 'final');
      assert.ok(final, `a final record for ${id}`);
      assert.equal(final.code, 'upstream_error');
      assert.equal(t.gw.pipeline.inFlight.size, 0);
    }
    // The public card, nested as deep (it once failed with a 500 from rewriting it).
    answer = deepCard;
    const pub = await call(`${t.agentUrl}/a2a/deepcard/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(pub.status, 502, pub.text);
    assert.match(pub.json.error.message, /card nests objects and arrays more than 256 levels deep/);
    assert.doesNotMatch(t.logs(), /front door failed/);
    // With concurrency 1, a held slot would lock the agent out until a restart.
    answer = JSON.stringify({ jsonrpc: '2.0', id: 2, result: { tasks: [] } });
    const next = await call(`${t.agentUrl}/a2a/deep`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', 'a2a-version': '1.0' }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ListTasks', params: {} }) });
    assert.equal(next.status, 200, next.text);
    assert.deepEqual(next.json.result.tasks, []);
  });
});
