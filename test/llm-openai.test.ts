/**
 * The OpenAI surface end to end: the official `openai` SDK as the agent, a fake OpenAI-shaped
 * provider on loopback. Credentials, byte-exact forwarding, streaming with usage, tools,
 * response_format, the Responses API, embeddings, models.list, audit records, metrics.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { finalRecord, openaiAgent } from './support/llm.js';
import { startFakeAnthropic, startFakeOpenAI, type FakeLlm } from './support/llm-upstream.js';

const UPSTREAM_KEY = 'sk-upstream-secret-0123456789';

describe('LLM gateway: OpenAI surface with the official openai SDK', () => {
  let up: FakeLlm;
  let anth: FakeLlm;
  let t: TestGateway;
  let alice: OpenAI;
  before(async () => {
    up = await startFakeOpenAI();
    anth = await startFakeAnthropic();
    t = await startGateway(`
agents:
  alice: { team: red, keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: alice-models
    agents: [alice]
    allow: ["llm: gpt-4o*", "llm: text-embedding-*", "llm: local-*", "llm: claude-*"]
  - name: bob-mini
    agents: [bob]
    allow: ["llm: gpt-4o-mini"]
  - name: never-secret
    deny: ["llm: gpt-4o-secret"]
    reason: not for agents
llm:
  providers:
    openai: { type: openai, url: "${up.url}/v1", key: "${UPSTREAM_KEY}", headers: { OpenAI-Organization: org-airlock } }
    claude: { type: anthropic, url: "${anth.url}", key: "sk-ant-secret" }
  models:
    gpt-4o-mini: { provider: openai }
    gpt-4o: { provider: openai }
    gpt-4o-secret: { provider: openai }
    text-embedding-3-small: { provider: openai }
    local-llama: { provider: openai, model: "llama3.1:8b", price: { input: 1, output: 2 } }
    claude-haiku: { provider: claude, model: claude-3-5-haiku-latest }
`);
    alice = openaiAgent(t.agentUrl, KEYS.alice, { project: 'proj-7' });
  });
  after(async () => {
    await t.stop();
    await up.close();
    await anth.close();
  });

  it('chat completion: provider key injected, agent key never forwarded, body forwarded byte for byte, usage and cost audited', async () => {
    const params = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hello airlock' }], max_tokens: 50 };
    const { data, response } = await alice.chat.completions.create(params).withResponse();
    assert.equal(data.choices[0]!.message.content, 'echo: hello airlock');
    assert.equal(data.usage?.prompt_tokens, 11);
    const seen = up.seen.at(-1)!;
    assert.equal(seen.url, '/v1/chat/completions');
    assert.equal(seen.headers.authorization, `Bearer ${UPSTREAM_KEY}`);
    assert.equal(seen.headers['openai-organization'], 'org-airlock');
    assert.equal(seen.headers['openai-project'], 'proj-7', 'agent provider headers pass through');
    assert.equal(seen.headers['accept-encoding'], 'identity');
    assert.ok(!JSON.stringify(seen.headers).includes(KEYS.alice), 'the agent key never reaches the provider');
    assert.equal(seen.raw.toString(), JSON.stringify(params), 'an unchanged body is forwarded as the agent sent it');
    assert.equal(response.headers.get('set-cookie'), null, 'provider cookies are not passed to agents');
    const id = response.headers.get('x-airlock-request-id')!;
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.action, 'llm: gpt-4o-mini');
    assert.equal(rec.decision, 'allowed');
    assert.equal(rec.rule, 'alice-models');
    assert.deepEqual(rec.target, { model: 'gpt-4o-mini', surface: 'openai', provider: 'openai', operation: 'chat' });
    assert.deepEqual(rec.usage, { inputTokens: 11, outputTokens: 7, cachedInputTokens: 3, estimated: false });
    // gpt-4o-mini: $0.15 in, $0.075 cached in, $0.60 out per million.
    assert.equal(rec.costUsd, (8 * 0.15 + 3 * 0.075 + 7 * 0.6) / 1e6);
    assert.equal(rec.details.model, 'gpt-4o-mini');
    assert.equal(rec.details.upstreamModel, 'gpt-4o-mini-2024-07-18');
    assert.equal(rec.status, 200);
  });

  it('streaming chat: airlock asks for usage, strips the extra chunk the agent did not ask for, and audits the real usage', async () => {
    const { data: stream, response } = await alice.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'stream this please' }], stream: true }).withResponse();
    let text = '';
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      assert.ok(c.choices.length > 0, 'no usage-only chunk reaches an agent that did not ask for one');
      text += c.choices[0]!.delta.content ?? '';
    }
    assert.equal(text, 'echo: stream this please');
    assert.ok(chunks >= 5);
    assert.equal(up.seen.at(-1)!.body.stream_options.include_usage, true);
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.deepEqual(rec.usage, { inputTokens: 11, outputTokens: 7, cachedInputTokens: 3, estimated: false });
    assert.equal(rec.details.stream, true);
    assert.ok(rec.details.ttftMs > 0);
    assert.equal(rec.code, undefined);
  });

  it('streaming chat with stream_options.include_usage: the agent gets its usage chunk, and the body is not re-serialised', async () => {
    const params = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'with usage' }], stream: true as const, stream_options: { include_usage: true } };
    const stream = await alice.chat.completions.create(params);
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of stream) if (c.usage) usage = c.usage;
    assert.equal(usage?.completion_tokens, 7);
    assert.equal(up.seen.at(-1)!.raw.toString(), JSON.stringify(params));
  });

  it('tools: function calls come back plain and streamed', async () => {
    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
    const c = await alice.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'weather?' }], tools });
    const tc = c.choices[0]!.message.tool_calls![0]!;
    assert.equal(tc.type === 'function' && tc.function.name, 'get_weather');
    const s = alice.chat.completions.stream({ model: 'gpt-4o', messages: [{ role: 'user', content: 'weather?' }], tools });
    const final = await s.finalChatCompletion();
    const st = final.choices[0]!.message.tool_calls![0]!;
    assert.equal(st.type === 'function' && st.function.arguments, '{"city":"Paris"}');
    assert.equal(final.choices[0]!.finish_reason, 'tool_calls');
  });

  it('response_format json_schema is passed through and the JSON answer parses', async () => {
    const c = await alice.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'json please' }],
      response_format: { type: 'json_schema', json_schema: { name: 'answer', strict: true, schema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'], additionalProperties: false } } },
    });
    assert.deepEqual(JSON.parse(c.choices[0]!.message.content!), { answer: 'echo: json please' });
    assert.equal(up.seen.at(-1)!.body.response_format.json_schema.name, 'answer');
  });

  it('Responses API, plain and streaming', async () => {
    const { data: r, response } = await alice.responses.create({ model: 'gpt-4o-mini', input: 'hi responses' }).withResponse();
    assert.equal(r.output_text, 'echo: hi responses');
    assert.equal(up.seen.at(-1)!.url, '/v1/responses');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.deepEqual(rec.usage, { inputTokens: 11, outputTokens: 7, cachedInputTokens: 3, estimated: false });
    const s = alice.responses.stream({ model: 'gpt-4o-mini', input: 'stream responses' });
    const types: string[] = [];
    s.on('event', (e) => types.push(e.type));
    const final = await s.finalResponse();
    assert.equal(final.output_text, 'echo: stream responses');
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
  });

  it('embeddings (the SDK asks for base64 and decodes it); usage and cost audited', async () => {
    const { data: e, response } = await alice.embeddings.create({ model: 'text-embedding-3-small', input: ['one', 'two'] }).withResponse();
    assert.equal(e.data.length, 2);
    assert.deepEqual(e.data[1]!.embedding, [0.5, -0.25, 0.125, 1]);
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.deepEqual(rec.usage, { inputTokens: 8, outputTokens: 0, cachedInputTokens: 0, estimated: false });
    assert.equal(rec.costUsd, (8 * 0.02) / 1e6);
  });

  it('models.list shows only the models this agent may use on this surface; retrieve agrees', async () => {
    const ids = (await alice.models.list()).data.map((m) => m.id).sort();
    assert.deepEqual(ids, ['gpt-4o', 'gpt-4o-mini', 'local-llama', 'text-embedding-3-small']);
    const bob = openaiAgent(t.agentUrl, KEYS.bob);
    assert.deepEqual((await bob.models.list()).data.map((m) => m.id), ['gpt-4o-mini']);
    assert.equal((await bob.models.retrieve('gpt-4o-mini')).id, 'gpt-4o-mini');
    await assert.rejects(bob.models.retrieve('gpt-4o'), (e: unknown) => e instanceof OpenAI.NotFoundError && e.code === 'not_found');
  });

  it('a model entry can rename the provider model; its configured price applies', async () => {
    const { response } = await alice.chat.completions.create({ model: 'local-llama', messages: [{ role: 'user', content: 'rename' }] }).withResponse();
    assert.equal(up.seen.at(-1)!.body.model, 'llama3.1:8b');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.costUsd, (8 * 1 + 3 * 1 + 7 * 2) / 1e6);
  });

  it('a denied model is a PermissionDeniedError with code denied and the rule; nothing reaches the provider', async () => {
    const n = up.seen.length;
    await assert.rejects(alice.chat.completions.create({ model: 'gpt-4o-secret', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.PermissionDeniedError);
      assert.equal(e.status, 403);
      assert.equal(e.code, 'denied');
      assert.match(e.message, /never-secret/);
      return true;
    });
    assert.equal(up.seen.length, n);
  });

  it('an Anthropic-shaped model on the OpenAI surface is a clear 400', async () => {
    await assert.rejects(alice.chat.completions.create({ model: 'claude-haiku', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.code, 'bad_request');
      assert.match(e.message, /Anthropic shape/);
      return true;
    });
    assert.equal(anth.seen.length, 0);
  });

  it('metrics count tokens and cost per agent and model', async () => {
    const m = (await call(`${t.adminUrl}/metrics`)).text;
    assert.match(m, /airlock_llm_tokens_total\{agent="alice",model="gpt-4o-mini",kind="input"\} \d+/);
    assert.match(m, /airlock_llm_tokens_total\{agent="alice",model="gpt-4o-mini",kind="cached_input"\} \d+/);
    assert.match(m, /airlock_llm_cost_usd_total\{agent="alice",model="gpt-4o-mini"\} [\d.e-]+/);
    assert.match(m, /airlock_exchanges_total\{protocol="llm",agent="alice",decision="allowed"\} \d+/);
  });

  it('never logs the agent key or the provider key', () => {
    assert.ok(!t.logs().includes(KEYS.alice));
    assert.ok(!t.logs().includes(UPSTREAM_KEY));
  });
});
