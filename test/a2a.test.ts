/**
 * The A2A gateway end to end (SPEC section 5.4): an agent using the official `@a2a-js/sdk` client
 * reaches a remote agent built with the official SDK server only through airlock — the card, every
 * method over the JSON-RPC and HTTP+JSON bindings, A2A 1.0 and 0.3 method names, streams as they
 * arrive — and every call is an audit record.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { request } from 'undici';
import { Client, DefaultAgentCardResolver } from '@a2a-js/sdk/client';
import { LegacyJsonRpcTransport, LegacyRestTransport } from '@a2a-js/sdk/compat/v0_3/client';
import { TaskState, type StreamResponse, type Task } from '@a2a-js/sdk';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { keyFetch, sdkClient, startA2AUpstream, userMessage, type A2AUpstream } from './support/a2a.js';

const PARTNER_TOKEN = 'partner-token-0123456789';

function config(upUrl: string): string {
  return `
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: travel-desk
    agents: [alice]
    allow: ["a2a: travel"]
a2a:
  agents:
    travel: { url: "${upUrl}", token: "${PARTNER_TOKEN}" }
`;
}

async function audit(t: TestGateway, id: string): Promise<Record<string, any>> {
  for (let i = 0; i < 100; i++) {
    const r = await call(`${t.adminUrl}/api/audit?protocol=a2a&limit=500`);
    const rec = (r.json.records as { id: string; phase: string }[]).find((x) => x.id === id && x.phase === 'final');
    if (rec) return rec as Record<string, any>;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no final audit record for ${id}`);
}

/** Request ids of the A2A exchanges recorded since `since` (newest first). */
async function recordsSince(t: TestGateway, since: string): Promise<Record<string, any>[]> {
  await new Promise((r) => setTimeout(r, 50));
  const r = await call(`${t.adminUrl}/api/audit?protocol=a2a&limit=500&since=${encodeURIComponent(since)}`);
  return (r.json.records as Record<string, any>[]).filter((x) => x['phase'] === 'final');
}

function rpc(t: TestGateway, body: unknown, headers: Record<string, string> = {}) {
  return call(`${t.agentUrl}/a2a/travel`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

const isTask = (r: unknown): r is Task => typeof r === 'object' && r !== null && 'status' in r && 'artifacts' in r;

describe('a2a: the card through airlock', () => {
  let up: A2AUpstream;
  let t: TestGateway;
  before(async () => {
    up = await startA2AUpstream({ signatures: true, token: PARTNER_TOKEN });
    t = await startGateway(config(up.url));
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('resolves with the SDK: every interface on airlock, airlock\'s bearer scheme, signatures dropped and noted', async () => {
    const card = await new DefaultAgentCardResolver({ fetchImpl: keyFetch(KEYS.alice) }).resolve(`${t.agentUrl}/a2a/travel/`);
    assert.equal(card.name, 'Travel agent');
    assert.ok(card.supportedInterfaces.length >= 4);
    for (const i of card.supportedInterfaces) assert.equal(i.url, `${t.agentUrl}/a2a/travel`);
    assert.ok(!card.supportedInterfaces.some((i) => i.protocolBinding === 'GRPC'), 'gRPC is not proxied, so it is left out');
    assert.deepEqual(Object.keys(card.securitySchemes), ['airlock']);
    assert.equal(card.securitySchemes['airlock']!.scheme?.$case, 'httpAuthSecurityScheme');
    assert.deepEqual(Object.keys(card.securityRequirements[0]!.schemes), ['airlock']);
    assert.deepEqual(card.skills[0]!.securityRequirements, [], 'per-skill upstream schemes are gone');
    assert.deepEqual(card.signatures, [], 'the upstream signature no longer covers the card');
    const note = card.capabilities!.extensions.find((e) => e.uri === 'urn:airlock:a2a-gateway:v1');
    assert.ok(note, 'the card says airlock rewrote it');
    assert.equal(note.params!['signatures'], 'dropped');
    assert.equal(note.params!['droppedSignatures'], 1);
  });

  it('the raw card names no upstream URL and no upstream secret', async () => {
    const r = await call(`${t.agentUrl}/a2a/travel/.well-known/agent-card.json`, { key: KEYS.alice, headers: { 'a2a-version': '1.0' } });
    assert.equal(r.status, 200);
    assert.ok(!r.text.includes(up.url), 'no upstream URL');
    assert.ok(!r.text.includes('127.0.0.1:1'), 'no gRPC endpoint');
    assert.ok(!r.text.includes(PARTNER_TOKEN));
    assert.ok(!r.text.includes('upstreamKey'));
    assert.equal(r.json.securitySchemes.airlock.httpAuthSecurityScheme.scheme, 'Bearer');
    assert.equal(r.headers['vary'], 'A2A-Version');
  });

  it('a 0.3 client (no A2A-Version) gets the 0.3-shaped card, rewritten the same way', async () => {
    const r = await call(`${t.agentUrl}/a2a/travel/.well-known/agent-card.json`, { key: KEYS.alice });
    assert.equal(r.status, 200);
    assert.equal(r.json.url, `${t.agentUrl}/a2a/travel`);
    assert.equal(r.json.protocolVersion, '0.3');
    for (const i of r.json.additionalInterfaces) assert.equal(i.url, `${t.agentUrl}/a2a/travel`);
    assert.deepEqual(r.json.securitySchemes, { airlock: { type: 'http', scheme: 'bearer', description: r.json.securitySchemes.airlock.description } });
    assert.deepEqual(r.json.security, [{ airlock: [] }]);
    assert.ok(!r.text.includes(up.url));
  });

  it('the card needs the agent key; the upstream card fetch carries the injected token, never the agent key', async () => {
    const r = await call(`${t.agentUrl}/a2a/travel/.well-known/agent-card.json`);
    assert.equal(r.status, 401);
    assert.equal(r.json.error.code, 'unauthenticated');
    const fetches = up.seen.filter((s) => s.url === '/.well-known/agent-card.json');
    assert.ok(fetches.length >= 1);
    for (const s of fetches) {
      assert.equal(s.headers['authorization'], `Bearer ${PARTNER_TOKEN}`);
      assert.ok(!JSON.stringify(s.headers).includes('alk_'));
    }
  });

  it('cards are cached: many resolutions, one upstream fetch per A2A-Version', async () => {
    const before = up.seen.filter((s) => s.url === '/.well-known/agent-card.json').length;
    for (let i = 0; i < 5; i++) assert.equal((await call(`${t.agentUrl}/a2a/travel/.well-known/agent-card.json`, { key: KEYS.alice, headers: { 'a2a-version': '1.0' } })).status, 200);
    assert.equal(up.seen.filter((s) => s.url === '/.well-known/agent-card.json').length, before);
  });

  it('the extended card (GetExtendedAgentCard) is rewritten too', async () => {
    const client = await sdkClient(t.agentUrl, 'travel', KEYS.alice);
    const card = await client.getAgentCard();
    assert.equal(card.description, 'Books trips (extended card for partners)');
    for (const i of card.supportedInterfaces) assert.equal(i.url, `${t.agentUrl}/a2a/travel`);
    assert.deepEqual(Object.keys(card.securitySchemes), ['airlock']);
    const r = await call(`${t.agentUrl}/a2a/travel/extendedAgentCard`, { key: KEYS.alice, headers: { 'a2a-version': '1.0' } });
    assert.equal(r.status, 200);
    assert.ok(!r.text.includes(up.url));
  });
});

describe('a2a: A2A 1.0 over JSON-RPC with the SDK client', () => {
  let up: A2AUpstream;
  let t: TestGateway;
  let client: Client;
  before(async () => {
    up = await startA2AUpstream();
    t = await startGateway(config(up.url));
    client = await sdkClient(t.agentUrl, 'travel', KEYS.alice, 'JSONRPC');
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('sends a message and gets the completed task; upstream sees the injected token, never the agent key', async () => {
    const since = new Date().toISOString();
    const n = up.seen.length;
    const r = await client.sendMessage({ tenant: '', message: userMessage('find a flight to Lisbon'), configuration: undefined, metadata: undefined });
    assert.ok(isTask(r));
    assert.equal(r.status!.state, TaskState.TASK_STATE_COMPLETED);
    assert.match(JSON.stringify(r.artifacts), /answer to: find a flight to Lisbon/);
    const calls = up.seen.slice(n).filter((s) => s.url === '/a2a/jsonrpc');
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.headers['authorization'], `Bearer ${PARTNER_TOKEN}`);
    assert.equal(calls[0]!.headers['a2a-version'], '1.0');
    assert.ok(!JSON.stringify(up.seen).includes('alk_'));
    const rec = (await recordsSince(t, since)).find((x) => x['action'] === 'a2a: travel SendMessage');
    assert.ok(rec, 'an audit record');
    assert.equal(rec['decision'], 'allowed');
    assert.equal(rec['rule'], 'travel-desk');
    assert.equal(rec['target'].agent, 'travel');
    assert.equal(rec['target'].method, 'SendMessage');
    assert.equal(rec['target'].taskId, r.id);
    assert.equal(rec['target'].contextId, r.contextId);
    assert.equal(rec['target'].excerpt, 'find a flight to Lisbon');
    assert.equal(rec['details'].state, 'TASK_STATE_COMPLETED');
    assert.equal(rec['details'].binding, 'jsonrpc');
    assert.equal(rec['details'].version, '1.0');
    assert.equal(rec['status'], 200);
  });

  it('secret-looking values in the message text are [redacted] in the audit excerpt, as MCP argument excerpts are', async () => {
    const since = new Date().toISOString();
    const ghToken = `ghp_${'a1B2'.repeat(9)}`;
    const openaiKey = `sk-proj${'Z9y8'.repeat(6)}`;
    await client.sendMessage({ tenant: '', message: userMessage(`quick use ${ghToken} and ${openaiKey} to book`), configuration: undefined, metadata: undefined });
    const rec = (await recordsSince(t, since)).find((x) => x['action'] === 'a2a: travel SendMessage');
    assert.ok(rec, 'an audit record');
    const excerpt = String(rec['target'].excerpt);
    assert.ok(!excerpt.includes(ghToken) && !excerpt.includes(openaiKey), excerpt);
    assert.equal(excerpt, 'quick use [redacted] and [redacted] to book');
  });

  it('a plain message answer passes through', async () => {
    const r = await client.sendMessage({ tenant: '', message: userMessage('quick hello'), configuration: undefined, metadata: undefined });
    assert.ok(!isTask(r));
    assert.match(JSON.stringify(r), /quick answer to: quick hello/);
  });

  it('streams several updates, each as it arrives', async () => {
    const since = new Date().toISOString();
    const got: { at: number; e: StreamResponse }[] = [];
    for await (const e of client.sendMessageStream({ tenant: '', message: userMessage('stream me a plan'), configuration: undefined, metadata: undefined })) got.push({ at: Date.now(), e });
    const kinds = got.map((g) => g.e.payload?.$case);
    assert.deepEqual(kinds, ['task', 'statusUpdate', 'artifactUpdate', 'statusUpdate', 'statusUpdate']);
    // The remote agent pauses ~30ms between updates: a buffered relay would deliver them together.
    assert.ok(got.at(-1)!.at - got[0]!.at >= 50, `events arrived over ${got.at(-1)!.at - got[0]!.at}ms`);
    const last = got.at(-1)!.e.payload;
    assert.equal(last?.$case === 'statusUpdate' && last.value.status?.state, TaskState.TASK_STATE_COMPLETED);
    const rec = (await recordsSince(t, since)).find((x) => x['action'] === 'a2a: travel SendStreamingMessage');
    assert.ok(rec);
    assert.equal(rec['details'].events, 5);
    assert.equal(rec['details'].state, 'TASK_STATE_COMPLETED');
    assert.equal(typeof rec['target'].taskId, 'string');
  });

  it('a task that asks for input, answered on the same task; get and list tasks', async () => {
    const first = await client.sendMessage({ tenant: '', message: userMessage('ask me where'), configuration: undefined, metadata: undefined });
    assert.ok(isTask(first));
    assert.equal(first.status!.state, TaskState.TASK_STATE_INPUT_REQUIRED);
    assert.match(JSON.stringify(first.status!.message), /Where to\?/);
    const since = new Date().toISOString();
    const second = await client.sendMessage({ tenant: '', message: userMessage('Porto', { taskId: first.id, contextId: first.contextId }), configuration: undefined, metadata: undefined });
    assert.ok(isTask(second));
    assert.equal(second.id, first.id);
    assert.equal(second.status!.state, TaskState.TASK_STATE_COMPLETED);
    const rec = (await recordsSince(t, since)).find((x) => x['action'] === 'a2a: travel SendMessage');
    assert.equal(rec!['target'].taskId, first.id, 'the task id the agent named is recorded');
    const got = await client.getTask({ tenant: '', id: first.id, historyLength: undefined });
    assert.equal(got.id, first.id);
    assert.equal(got.status!.state, TaskState.TASK_STATE_COMPLETED);
    const list = await client.listTasks({ tenant: '', contextId: first.contextId, status: 0, pageSize: undefined, pageToken: '', historyLength: undefined, statusTimestampAfter: undefined, includeArtifacts: undefined });
    assert.ok(list.tasks.some((x) => x.id === first.id));
  });

  it('cancels a running task, and subscribes to one', async () => {
    const started = await client.sendMessage({ tenant: '', message: userMessage('slow trip'), configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, historyLength: undefined, returnImmediately: true }, metadata: undefined });
    assert.ok(isTask(started));
    const events: StreamResponse[] = [];
    const sub = (async () => {
      for await (const e of client.resubscribeTask({ tenant: '', id: started.id })) events.push(e);
    })();
    await new Promise((r) => setTimeout(r, 200));
    const canceled = await client.cancelTask({ tenant: '', id: started.id, metadata: undefined });
    assert.equal(canceled.id, started.id);
    await sub;
    assert.ok(events.length >= 2, `subscribed and received ${events.length} events`);
    const final = await client.getTask({ tenant: '', id: started.id, historyLength: undefined });
    assert.equal(final.status!.state, TaskState.TASK_STATE_CANCELED);
  });

  it('an upstream A2A error (cancelling a finished task) passes through as the remote agent sent it', async () => {
    const done = await client.sendMessage({ tenant: '', message: userMessage('a finished trip'), configuration: undefined, metadata: undefined });
    assert.ok(isTask(done));
    assert.equal(done.status!.state, TaskState.TASK_STATE_COMPLETED);
    await assert.rejects(client.cancelTask({ tenant: '', id: done.id, metadata: undefined }), (e: Error) => e.name === 'TaskNotCancelableError');
  });
});

describe('a2a: the HTTP+JSON (REST) binding with the SDK client', () => {
  let up: A2AUpstream;
  let t: TestGateway;
  let client: Client;
  before(async () => {
    up = await startA2AUpstream();
    t = await startGateway(config(up.url));
    client = await sdkClient(t.agentUrl, 'travel', KEYS.alice, 'HTTP+JSON');
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('send, stream, get, list and cancel over REST', async () => {
    const since = new Date().toISOString();
    const r = await client.sendMessage({ tenant: '', message: userMessage('rest trip'), configuration: undefined, metadata: undefined });
    assert.ok(isTask(r));
    assert.equal(r.status!.state, TaskState.TASK_STATE_COMPLETED);
    assert.ok(up.seen.some((s) => s.url === '/a2a/rest/message:send' && s.headers['authorization'] === `Bearer ${PARTNER_TOKEN}`));
    const kinds: (string | undefined)[] = [];
    for await (const e of client.sendMessageStream({ tenant: '', message: userMessage('rest stream'), configuration: undefined, metadata: undefined })) kinds.push(e.payload?.$case);
    assert.equal(kinds.length, 5);
    const got = await client.getTask({ tenant: '', id: r.id, historyLength: undefined });
    assert.equal(got.id, r.id);
    const list = await client.listTasks({ tenant: '', contextId: r.contextId, status: 0, pageSize: undefined, pageToken: '', historyLength: undefined, statusTimestampAfter: undefined, includeArtifacts: undefined });
    assert.ok(list.tasks.some((x) => x.id === r.id));
    const slow = await client.sendMessage({ tenant: '', message: userMessage('slow rest'), configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, historyLength: undefined, returnImmediately: true }, metadata: undefined });
    assert.ok(isTask(slow));
    const events: StreamResponse[] = [];
    const sub = (async () => {
      for await (const e of client.resubscribeTask({ tenant: '', id: slow.id })) events.push(e);
    })();
    await new Promise((r) => setTimeout(r, 200));
    await client.cancelTask({ tenant: '', id: slow.id, metadata: undefined });
    await sub;
    assert.ok(events.length >= 2, `subscribed over REST and received ${events.length} events`);
    const recs = await recordsSince(t, since);
    const actions = recs.map((x) => x['action']);
    for (const a of ['SendMessage', 'SendStreamingMessage', 'GetTask', 'ListTasks', 'CancelTask', 'SubscribeToTask']) assert.ok(actions.includes(`a2a: travel ${a}`), `recorded ${a}`);
    const get = recs.find((x) => x['action'] === 'a2a: travel GetTask');
    assert.equal(get!['target'].taskId, r.id);
    assert.equal(get!['details'].binding, 'http+json');
  });
});

describe('a2a: A2A 0.3 method names', () => {
  let up: A2AUpstream;
  let t: TestGateway;
  before(async () => {
    up = await startA2AUpstream();
    t = await startGateway(config(up.url));
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('the SDK\'s v0.3 JSON-RPC transport works through airlock (message/send, message/stream, tasks/get, tasks/cancel)', async () => {
    const since = new Date().toISOString();
    const card = await new DefaultAgentCardResolver({ fetchImpl: keyFetch(KEYS.alice), legacyCompat: { enabled: true } }).resolve(`${t.agentUrl}/a2a/travel/`);
    const client = new Client(new LegacyJsonRpcTransport({ endpoint: `${t.agentUrl}/a2a/travel`, fetchImpl: keyFetch(KEYS.alice) }), card);
    assert.equal(client.protocolVersion, '0.3');
    const r = await client.sendMessage({ tenant: '', message: userMessage('legacy trip'), configuration: undefined, metadata: undefined });
    assert.ok(isTask(r));
    assert.equal(r.status!.state, TaskState.TASK_STATE_COMPLETED);
    const kinds: (string | undefined)[] = [];
    for await (const e of client.sendMessageStream({ tenant: '', message: userMessage('legacy stream'), configuration: undefined, metadata: undefined })) kinds.push(e.payload?.$case);
    assert.ok(kinds.length >= 4, `streamed ${kinds.length} events`);
    const got = await client.getTask({ tenant: '', id: r.id, historyLength: undefined });
    assert.equal(got.id, r.id);
    const slow = await client.sendMessage({ tenant: '', message: userMessage('slow legacy'), configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, historyLength: undefined, returnImmediately: true }, metadata: undefined });
    assert.ok(isTask(slow));
    let events = 0;
    const sub = (async () => {
      for await (const _ of client.resubscribeTask({ tenant: '', id: slow.id })) events++;
    })();
    await new Promise((res) => setTimeout(res, 200));
    await client.cancelTask({ tenant: '', id: slow.id, metadata: undefined });
    await sub;
    assert.ok(events >= 2, `tasks/resubscribe relayed ${events} events`);
    const recs = await recordsSince(t, since);
    assert.ok(recs.some((x) => x['action'] === 'a2a: travel SubscribeToTask' && x['details'].rpcMethod === 'tasks/resubscribe' && x['target'].taskId === slow.id));
    const send = recs.find((x) => x['action'] === 'a2a: travel SendMessage' && x['target'].taskId === r.id);
    assert.ok(send, 'message/send is judged and recorded as SendMessage');
    assert.equal(send['details'].version, '0.3');
    assert.equal(send['details'].rpcMethod, 'message/send');
    assert.equal(send['details'].state, 'completed');
    assert.ok(recs.some((x) => x['action'] === 'a2a: travel SendStreamingMessage' && x['details'].rpcMethod === 'message/stream'));
    assert.ok(recs.some((x) => x['action'] === 'a2a: travel GetTask' && x['details'].rpcMethod === 'tasks/get'));
    assert.ok(recs.some((x) => x['action'] === 'a2a: travel CancelTask' && x['details'].rpcMethod === 'tasks/cancel'));
  });

  it('the SDK\'s v0.3 HTTP+JSON transport works through airlock (/v1/message:send, :stream, /v1/tasks/{id}, :subscribe, :cancel)', async () => {
    const since = new Date().toISOString();
    const card = await new DefaultAgentCardResolver({ fetchImpl: keyFetch(KEYS.alice), legacyCompat: { enabled: true } }).resolve(`${t.agentUrl}/a2a/travel/`);
    const client = new Client(new LegacyRestTransport({ endpoint: `${t.agentUrl}/a2a/travel`, fetchImpl: keyFetch(KEYS.alice) }), card);
    const r = await client.sendMessage({ tenant: '', message: userMessage('legacy rest trip'), configuration: undefined, metadata: undefined });
    assert.ok(isTask(r));
    assert.equal(r.status!.state, TaskState.TASK_STATE_COMPLETED);
    assert.ok(up.seen.some((s) => s.url === '/a2a/rest/v1/message:send'));
    let n = 0;
    for await (const _ of client.sendMessageStream({ tenant: '', message: userMessage('legacy rest stream'), configuration: undefined, metadata: undefined })) n++;
    assert.ok(n >= 4, `streamed ${n} events`);
    assert.equal((await client.getTask({ tenant: '', id: r.id, historyLength: undefined })).id, r.id);
    const slow = await client.sendMessage({ tenant: '', message: userMessage('slow legacy rest'), configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, historyLength: undefined, returnImmediately: true }, metadata: undefined });
    assert.ok(isTask(slow));
    let events = 0;
    const sub = (async () => {
      for await (const _ of client.resubscribeTask({ tenant: '', id: slow.id })) events++;
    })();
    await new Promise((res) => setTimeout(res, 200));
    await client.cancelTask({ tenant: '', id: slow.id, metadata: undefined });
    await sub;
    assert.ok(events >= 2, `subscribed and received ${events} events`);
    const recs = await recordsSince(t, since);
    for (const a of ['SendMessage', 'SendStreamingMessage', 'GetTask', 'SubscribeToTask', 'CancelTask']) {
      assert.ok(recs.some((x) => x['action'] === `a2a: travel ${a}` && x['details'].version === '0.3' && x['details'].binding === 'http+json'), `recorded ${a} (0.3, REST)`);
    }
  });

  it('raw 0.3 JSON-RPC over undici: message/send, tasks/get, message/stream', async () => {
    const r = await rpc(t, { jsonrpc: '2.0', id: 'a', method: 'message/send', params: { message: { kind: 'message', messageId: 'm1', role: 'user', parts: [{ kind: 'text', text: 'raw legacy' }] } } });
    assert.equal(r.status, 200);
    assert.equal(r.json.id, 'a');
    assert.equal(r.json.result.kind, 'task');
    assert.equal(r.json.result.status.state, 'completed');
    assert.equal(up.seen.at(-1)!.headers['a2a-version'], undefined, 'a 0.3 call goes upstream without a 1.0 version header');
    const g = await rpc(t, { jsonrpc: '2.0', id: 2, method: 'tasks/get', params: { id: r.json.result.id } });
    assert.equal(g.json.result.id, r.json.result.id);
    const s = await request(`${t.agentUrl}/a2a/travel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEYS.alice}`, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'message/stream', params: { message: { kind: 'message', messageId: 'm2', role: 'user', parts: [{ kind: 'text', text: 'raw legacy stream' }] } } }),
    });
    assert.match(String(s.headers['content-type']), /text\/event-stream/);
    const text = await s.body.text();
    const events = text.split('\n\n').filter((e) => e.startsWith('data:'));
    assert.ok(events.length >= 4);
    assert.match(events.at(-1)!, /"final":true/);
  });

  it('raw 1.0 JSON-RPC without an A2A-Version header: airlock says 1.0 upstream for a 1.0 method name', async () => {
    const r = await rpc(t, { jsonrpc: '2.0', id: 7, method: 'SendMessage', params: { message: { messageId: 'm3', role: 'ROLE_USER', parts: [{ text: 'quick raw' }] } } });
    assert.equal(r.status, 200);
    assert.equal(r.json.id, 7);
    assert.match(JSON.stringify(r.json.result.message), /quick answer to: quick raw/);
    assert.equal(up.seen.at(-1)!.headers['a2a-version'], '1.0');
  });
});

describe('a2a: cookies stay on their side of airlock', () => {
  // An auth front before the remote agent mints a session cookie from the token airlock injects.
  const SESSION = 'CF_Authorization=minted-from-the-injected-token; Path=/; HttpOnly';
  let up: A2AUpstream;
  let t: TestGateway;
  before(async () => {
    up = await startA2AUpstream({ token: PARTNER_TOKEN, setCookie: SESSION });
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: travel-desk
    agents: [alice]
    allow: ["a2a: travel", "a2a: booked"]
a2a:
  agents:
    travel: { url: "${up.url}", token: "${PARTNER_TOKEN}" }
    booked: { url: "${up.url}", headers: { Cookie: "operator=configured" } }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('the remote agent\'s Set-Cookie never reaches the agent, and the agent\'s Cookie never reaches the remote agent (JSON, SSE, REST, extended card)', async () => {
    const n = up.seen.length;
    const agentCookie = { cookie: 'CF_Authorization=stolen-elsewhere', 'a2a-version': '1.0' };
    const send = { message: { messageId: 'c1', role: 'ROLE_USER', parts: [{ text: 'cookie trip' }] } };
    const answers = [
      await rpc(t, { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: send }, agentCookie),
      await rpc(t, { jsonrpc: '2.0', id: 2, method: 'SendStreamingMessage', params: { message: { ...send.message, messageId: 'c2' } } }, { ...agentCookie, accept: 'text/event-stream' }),
      await rpc(t, { jsonrpc: '2.0', id: 3, method: 'GetExtendedAgentCard', params: {} }, agentCookie),
      await call(`${t.agentUrl}/a2a/travel/message:send`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', ...agentCookie }, body: JSON.stringify({ message: { ...send.message, messageId: 'c3' } }) }),
      await call(`${t.agentUrl}/a2a/travel/extendedAgentCard`, { key: KEYS.alice, headers: agentCookie }),
    ];
    for (const [i, a] of answers.entries()) {
      assert.equal(a.status, 200, `answer ${i}: ${a.text.slice(0, 200)}`);
      assert.equal(a.headers['set-cookie'], undefined, `answer ${i} carries no Set-Cookie`);
    }
    assert.match(answers[1]!.text, /cookie trip/, 'the stream was relayed');
    const calls = up.seen.slice(n).filter((s) => s.url.startsWith('/a2a/'));
    assert.equal(calls.length, 5);
    for (const c of calls) {
      assert.equal(c.headers['cookie'], undefined, `${c.url} got no cookie from the agent`);
      assert.equal(c.headers['authorization'], `Bearer ${PARTNER_TOKEN}`);
    }
  });

  it('a Cookie header the operator configured for a remote agent is still sent (it is airlock\'s, not the agent\'s)', async () => {
    const n = up.seen.length;
    const r = await call(`${t.agentUrl}/a2a/booked`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', cookie: 'agent=own' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'c4', role: 'ROLE_USER', parts: [{ text: 'quick hi' }] } } }) });
    assert.ok(r.json.result, r.text);
    assert.equal(r.headers['set-cookie'], undefined);
    const c = up.seen.slice(n).find((s) => s.url === '/a2a/jsonrpc');
    assert.equal(c?.headers['cookie'], 'operator=configured');
  });
});
