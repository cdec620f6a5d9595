/**
 * The built-in `mock` provider through both SDKs: deterministic echo or canned replies, real
 * chunked streams, real usage numbers, tools and JSON formats, failures and latency on demand,
 * fallbacks; and the pipeline's generic features on LLM calls (approvals with a readable summary,
 * the loop guard).
 */
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { anthropicAgent, eventually, finalRecord, openaiAgent } from './support/llm.js';

describe('LLM gateway: the mock provider', () => {
  let t: TestGateway;
  let oa: OpenAI;
  let an: Anthropic;
  before(async () => {
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  bob: { keys: ["${KEYS.bob}"] }
rules:
  - name: demo
    allow: ["llm: demo-*"]
  - name: canned-needs-a-human
    agents: [bob]
    approve: ["llm: demo-canned"]
guards:
  loop: { repeats: 3, window: 60s }
approvals: { timeout: 5s }
llm:
  providers:
    demo: { type: mock }
    canned: { type: mock, reply: "Canned answer from the mock." }
    broken: { type: mock, status: 503, message: "the mock is down for the demo" }
    slow: { type: mock, latency: 300ms, chunkDelay: 25ms }
  models:
    demo-mini: { provider: demo }
    demo-canned: { provider: canned }
    demo-broken: { provider: broken }
    demo-flaky: { provider: broken, fallback: [demo-mini] }
    demo-slow: { provider: slow }
`);
    oa = openaiAgent(t.agentUrl, KEYS.alice);
    an = anthropicAgent(t.agentUrl, KEYS.alice);
  });
  after(() => t.stop());

  it('echoes deterministically and reports real usage numbers, audited as reported', async () => {
    const ask = () => oa.chat.completions.create({ model: 'demo-mini', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'The quick brown fox jumps over the lazy dog' }] }).withResponse();
    const { data: a, response } = await ask();
    const { data: b } = await ask();
    assert.equal(a.choices[0]!.message.content, 'The quick brown fox jumps over the lazy dog');
    assert.equal(a.id, b.id);
    assert.equal(a.usage!.completion_tokens, 9, 'nine words, nine cl100k tokens');
    assert.ok(a.usage!.prompt_tokens > 9);
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.deepEqual(rec.usage, { inputTokens: a.usage!.prompt_tokens, outputTokens: 9, cachedInputTokens: 0, estimated: false });
    assert.equal(rec.costUsd, 0, 'mock models are free unless priced');
  });

  it('canned text from config; streams in real chunks with the configured delay and latency', async () => {
    const c = await oa.chat.completions.create({ model: 'demo-canned', messages: [{ role: 'user', content: 'anything' }] });
    assert.equal(c.choices[0]!.message.content, 'Canned answer from the mock.');
    const t0 = Date.now();
    const s = await oa.chat.completions.create({ model: 'demo-slow', messages: [{ role: 'user', content: 'one two three four five six' }], stream: true });
    const at: number[] = [];
    let text = '';
    for await (const ch of s) {
      at.push(Date.now());
      text += ch.choices[0]?.delta.content ?? '';
    }
    assert.equal(text, 'one two three four five six');
    assert.ok(at[0]! - t0 >= 290, `latency ${at[0]! - t0}ms`);
    assert.ok(at.length >= 8, `${at.length} chunks`);
    assert.ok(at.at(-1)! - at[0]! >= 6 * 25 - 10, 'chunks arrive one at a time, not coalesced');
  });

  it('tools: calls the offered tool with arguments from its schema, then answers the tool result', async () => {
    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: { query: { type: 'string' }, limit: { type: 'integer' } }, required: ['query'] } } }];
    const first = await oa.chat.completions.create({ model: 'demo-mini', messages: [{ role: 'user', content: 'find cats' }], tools });
    const tc = first.choices[0]!.message.tool_calls![0]!;
    assert.ok(tc.type === 'function');
    assert.equal(tc.function.name, 'lookup');
    assert.deepEqual(JSON.parse(tc.function.arguments), { query: 'find cats', limit: 1 });
    const second = await oa.chat.completions.create({ model: 'demo-mini', tools, messages: [{ role: 'user', content: 'find cats' }, first.choices[0]!.message, { role: 'tool', tool_call_id: tc.id, content: '3 cats' }] });
    assert.equal(second.choices[0]!.message.content, 'tool result: 3 cats');
    const streamed = await oa.chat.completions.stream({ model: 'demo-mini', messages: [{ role: 'user', content: 'find dogs' }], tools }).finalChatCompletion();
    const st = streamed.choices[0]!.message.tool_calls![0]!;
    assert.deepEqual(st.type === 'function' && JSON.parse(st.function.arguments), { query: 'find dogs', limit: 1 });
  });

  it('response_format json_schema → JSON that fits the schema; the Responses API and embeddings work too', async () => {
    const c = await oa.chat.completions.create({
      model: 'demo-mini',
      messages: [{ role: 'user', content: 'hello' }],
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { greeting: { type: 'string' }, mood: { enum: ['happy', 'sad'] } }, required: ['greeting', 'mood'] } } },
    });
    assert.deepEqual(JSON.parse(c.choices[0]!.message.content!), { greeting: 'hello', mood: 'happy' });
    const r = await oa.responses.create({ model: 'demo-mini', input: 'respond please' });
    assert.equal(r.output_text, 'respond please');
    const rs = await oa.responses.stream({ model: 'demo-mini', input: 'stream respond' }).finalResponse();
    assert.equal(rs.output_text, 'stream respond');
    const e1 = await oa.embeddings.create({ model: 'demo-mini', input: 'same text', dimensions: 12 });
    const e2 = await oa.embeddings.create({ model: 'demo-mini', input: ['same text'], dimensions: 12 });
    assert.equal(e1.data[0]!.embedding.length, 12);
    assert.deepEqual(e1.data[0]!.embedding, e2.data[0]!.embedding);
  });

  it('Anthropic shape: messages, streaming, tool use and count_tokens agree on the numbers', async () => {
    const m = await an.messages.create({ model: 'demo-mini', max_tokens: 50, messages: [{ role: 'user', content: 'hello claude' }] });
    assert.equal(m.content[0]!.type === 'text' && m.content[0]!.text, 'hello claude');
    const count = await an.messages.countTokens({ model: 'demo-mini', messages: [{ role: 'user', content: 'hello claude' }] });
    assert.equal(count.input_tokens, m.usage.input_tokens);
    const s = await an.messages.stream({ model: 'demo-mini', max_tokens: 50, messages: [{ role: 'user', content: 'stream claude' }] }).finalMessage();
    assert.equal(s.content[0]!.type === 'text' && s.content[0]!.text, 'stream claude');
    const plain = await an.messages.create({ model: 'demo-mini', max_tokens: 50, messages: [{ role: 'user', content: 'stream claude' }] });
    assert.deepEqual(s.usage, plain.usage, 'a stream reports the same usage as the plain call');
    const tool = await an.messages.create({ model: 'demo-mini', max_tokens: 50, tools: [{ name: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }], messages: [{ role: 'user', content: 'Paris' }] });
    const b = tool.content[0]!;
    assert.deepEqual(b.type === 'tool_use' && b.input, { city: 'Paris' });
    await assert.rejects(an.messages.create({ model: 'demo-mini', messages: [{ role: 'user', content: 'x' }] } as unknown as Anthropic.MessageCreateParamsNonStreaming), (e: unknown) => e instanceof Anthropic.BadRequestError && /max_tokens/.test(e.message));
  });

  it('fails on demand with its status in each shape; a fallback covers for it', async () => {
    await assert.rejects(oa.chat.completions.create({ model: 'demo-broken', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof OpenAI.InternalServerError && e.status === 503 && /down for the demo/.test(e.message));
    await assert.rejects(an.messages.create({ model: 'demo-broken', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof Anthropic.APIError && e.status === 503 && e.type === 'overloaded_error');
    const { data, response } = await oa.chat.completions.create({ model: 'demo-flaky', messages: [{ role: 'user', content: 'covered' }] }).withResponse();
    assert.equal(data.choices[0]!.message.content, 'covered');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.details.model, 'demo-mini');
  });

  it('approvals: a held LLM call shows model and prompt excerpt (credential-shaped values redacted), and runs once approved', async () => {
    const bob = openaiAgent(t.agentUrl, KEYS.bob);
    const held = bob.chat.completions.create({ model: 'demo-canned', messages: [{ role: 'user', content: 'please transfer the budget to marketing; the key is sk-live0123456789abcdefghij' }] });
    const a = await eventually('a pending approval', async () => {
      const r = await call(`${t.adminUrl}/api/approvals?status=pending`);
      return (r.json.approvals as { action: string; id: string; summary: string }[]).find((x) => x.action === 'llm: demo-canned');
    });
    assert.match(a.summary, /chat completion with model demo-canned, 1 message/);
    assert.match(a.summary, /user: please transfer the budget to marketing; the key is \[redacted\]/);
    assert.ok(!a.summary.includes('sk-live0123456789abcdefghij'), a.summary);
    const d = await call(`${t.adminUrl}/api/approvals/${a.id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ decision: 'approve' }) });
    assert.equal(d.status, 200);
    assert.equal((await held).choices[0]!.message.content, 'Canned answer from the mock.');
  });

  it('the loop guard stops the same prompt repeated, with loop_detected', async () => {
    const ask = () => oa.chat.completions.create({ model: 'demo-mini', messages: [{ role: 'user', content: 'are we there yet?' }] });
    for (let i = 0; i < 3; i++) await ask();
    await assert.rejects(ask(), (e: unknown) => e instanceof OpenAI.RateLimitError && e.code === 'loop_detected' && e.headers?.get('x-should-retry') === 'false');
  });
});
