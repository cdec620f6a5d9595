/**
 * The Anthropic surface end to end: the official `@anthropic-ai/sdk` as the agent, a fake
 * Anthropic-shaped provider on loopback. Messages plain, streamed and with tool use,
 * count_tokens, header pass-through and injection, usage with cache reads, errors that come out
 * as the SDK's own exception classes.
 */
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { anthropicAgent, finalRecord } from './support/llm.js';
import { startFakeAnthropic, type FakeLlm } from './support/llm-upstream.js';

const UPSTREAM_KEY = 'sk-ant-upstream-secret-0123';

describe('LLM gateway: Anthropic surface with the official @anthropic-ai/sdk', () => {
  let up: FakeLlm;
  let t: TestGateway;
  let alice: Anthropic;
  before(async () => {
    up = await startFakeAnthropic();
    t = await startGateway(`
agents:
  alice: { team: red, keys: ["${KEYS.alice}"] }
rules:
  - name: claude
    agents: [alice]
    allow: ["llm: claude-*", "llm: gpt-*"]
  - name: no-opus
    deny: ["llm: claude-opus"]
llm:
  providers:
    anthropic: { type: anthropic, url: "${up.url}", key: "${UPSTREAM_KEY}", headers: { anthropic-beta: "prompt-caching-2024-07-31" } }
    openai: { type: openai, url: "http://127.0.0.1:9/v1", key: sk-x }
  models:
    claude-haiku: { provider: anthropic, model: claude-3-5-haiku-latest }
    claude-opus: { provider: anthropic, model: claude-opus-4-1 }
    gpt-4o-mini: { provider: openai }
`);
    alice = anthropicAgent(t.agentUrl, KEYS.alice);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('messages: x-api-key injected, anthropic-version passed, agent key never forwarded, usage with cache reads priced', async () => {
    const { data: msg, response } = await alice.messages.create({ model: 'claude-haiku', max_tokens: 64, messages: [{ role: 'user', content: 'hello claude' }] }).withResponse();
    assert.equal(msg.content[0]!.type === 'text' && msg.content[0]!.text, 'echo: hello claude');
    const seen = up.seen.at(-1)!;
    assert.equal(seen.url, '/v1/messages');
    assert.equal(seen.headers['x-api-key'], UPSTREAM_KEY);
    assert.match(String(seen.headers['anthropic-version']), /^\d{4}-\d{2}-\d{2}$/, "the SDK's anthropic-version passes through");
    assert.equal(seen.headers['anthropic-beta'], 'prompt-caching-2024-07-31');
    assert.equal(seen.headers.authorization, undefined);
    assert.ok(!JSON.stringify(seen.headers).includes(KEYS.alice));
    assert.equal(seen.body.model, 'claude-3-5-haiku-latest', 'the entry names the provider model');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.deepEqual(rec.target, { model: 'claude-haiku', surface: 'anthropic', provider: 'anthropic', operation: 'messages' });
    // input 20 + 5 cache reads; claude-3-5-haiku: $0.80 in, $0.08 cache read, $4 out per million.
    assert.deepEqual(rec.usage, { inputTokens: 25, outputTokens: 9, cachedInputTokens: 5, estimated: false });
    assert.equal(rec.costUsd, (20 * 0.8 + 5 * 0.08 + 9 * 4) / 1e6);
    assert.equal(rec.details.upstreamModel, 'claude-3-5-haiku-latest-20241022');
  });

  it('streaming: events pass through as they come; usage from message_start + message_delta', async () => {
    const s = alice.messages.stream({ model: 'claude-haiku', max_tokens: 64, messages: [{ role: 'user', content: 'stream to me' }] });
    const deltas: string[] = [];
    s.on('text', (d) => deltas.push(d));
    const final = await s.finalMessage();
    assert.equal(deltas.join(''), 'echo: stream to me');
    assert.ok(deltas.length >= 3);
    assert.equal(final.usage.output_tokens, 9);
    const id = (await s.withResponse()).response.headers.get('x-airlock-request-id')!;
    const rec = await finalRecord(t.adminUrl, id);
    assert.deepEqual(rec.usage, { inputTokens: 25, outputTokens: 9, cachedInputTokens: 5, estimated: false });
    assert.equal(rec.details.stream, true);
  });

  it('tool use, plain and streamed', async () => {
    const tools: Anthropic.Tool[] = [{ name: 'get_weather', description: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }];
    const m = await alice.messages.create({ model: 'claude-haiku', max_tokens: 64, tools, messages: [{ role: 'user', content: 'weather in Paris?' }] });
    const b = m.content[0]!;
    assert.equal(b.type, 'tool_use');
    assert.deepEqual(b.type === 'tool_use' && b.input, { city: 'Paris' });
    const s = alice.messages.stream({ model: 'claude-haiku', max_tokens: 64, tools, messages: [{ role: 'user', content: 'weather in Paris?' }] });
    const f = await s.finalMessage();
    const sb = f.content[0]!;
    assert.deepEqual(sb.type === 'tool_use' && sb.input, { city: 'Paris' });
    assert.equal(f.stop_reason, 'tool_use');
  });

  it('count_tokens is forwarded to the provider and audited without cost', async () => {
    const { data: r, response } = await alice.messages.countTokens({ model: 'claude-haiku', messages: [{ role: 'user', content: 'count me' }] }).withResponse();
    assert.equal(r.input_tokens, 42);
    assert.equal(up.seen.at(-1)!.url, '/v1/messages/count_tokens');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.target.operation, 'count_tokens');
    assert.equal(rec.usage, undefined);
    assert.equal(rec.costUsd, undefined);
  });

  it('models.list in the Anthropic shape shows only Anthropic-reachable, allowed models', async () => {
    const page = await alice.models.list();
    assert.deepEqual(page.data.map((m) => m.id), ['claude-haiku']);
    assert.equal(page.data[0]!.type, 'model');
  });

  it('errors come out as the SDK exception classes with Anthropic error types and the airlock code', async () => {
    await assert.rejects(alice.messages.create({ model: 'claude-opus', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => {
      assert.ok(e instanceof Anthropic.PermissionDeniedError, String(e));
      assert.equal(e.status, 403);
      assert.equal(e.type, 'permission_error');
      assert.equal((e.error as { airlock: { code: string } }).airlock.code, 'denied');
      return true;
    });
    await assert.rejects(alice.messages.create({ model: 'claude-nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof Anthropic.NotFoundError && e.type === 'not_found_error');
    await assert.rejects(alice.messages.create({ model: 'gpt-4o-mini', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof Anthropic.BadRequestError && e.type === 'invalid_request_error' && /OpenAI shape/.test(e.message));
    const stranger = anthropicAgent(t.agentUrl, 'alk_unknownUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU');
    await assert.rejects(stranger.messages.create({ model: 'claude-haiku', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof Anthropic.AuthenticationError && e.type === 'authentication_error');
  });

  it('a provider error passes through in its own shape', async () => {
    up.next({ status: 400, body: JSON.stringify({ type: 'error', error: { type: 'invalid_request_error', message: 'messages: roles must alternate' } }) });
    await assert.rejects(alice.messages.create({ model: 'claude-haiku', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof Anthropic.BadRequestError && /roles must alternate/.test(e.message));
  });

  it('an agent that sends no anthropic-version gets the configured default', async () => {
    const r = await call(`${t.agentUrl}/llm/v1/messages`, { method: 'POST', headers: { 'x-api-key': KEYS.alice, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'claude-haiku', max_tokens: 5, messages: [{ role: 'user', content: 'raw' }] }) });
    assert.equal(r.status, 200);
    assert.equal(up.seen.at(-1)!.headers['anthropic-version'], '2023-06-01');
  });

  it('the agent key never appears in logs; the unknown route is a not_found in the Anthropic shape', async () => {
    const r = await call(`${t.agentUrl}/llm/v1/complete`, { method: 'POST', headers: { 'x-api-key': KEYS.alice, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }, body: '{}' });
    assert.equal(r.status, 404);
    assert.equal(r.json.type, 'error');
    assert.equal(r.json.error.type, 'not_found_error');
    assert.equal(r.json.airlock.code, 'not_found');
    assert.equal(r.json.airlock.request_id, r.headers['x-airlock-request-id']);
    assert.ok(!t.logs().includes(KEYS.alice));
    assert.ok(!t.logs().includes(UPSTREAM_KEY));
  });
});
