/**
 * Bad input on the LLM front door: each gets a clear error in the shape the caller's SDK parses,
 * nothing reaches the provider, the refusal is audited, and the gateway keeps serving.
 */
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { request } from 'undici';
import { call, KEYS, startGateway, type Reply, type TestGateway } from './support/gateway.js';
import { anthropicAgent, finalRecord, openaiAgent } from './support/llm.js';
import { startFakeOpenAI, type FakeLlm } from './support/llm-upstream.js';

describe('LLM gateway: bad input', () => {
  let up: FakeLlm;
  let t: TestGateway;
  let oa: OpenAI;
  let seenBefore = 0;
  before(async () => {
    up = await startFakeOpenAI();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["llm: *"]
llm:
  providers:
    openai: { type: openai, url: "${up.url}/v1", key: sk-1 }
    demo: { type: mock }
  models:
    gpt-4o-mini: { provider: openai }
    demo-mini: { provider: demo }
`);
    oa = openaiAgent(t.agentUrl, KEYS.alice);
    seenBefore = up.seen.length;
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  const post = (path: string, body: string | Buffer, headers: Record<string, string> = {}) =>
    call(`${t.agentUrl}${path}`, { method: 'POST', key: KEYS.alice, headers: { 'content-type': 'application/json', ...headers }, body });

  /** The SPEC error shape, with the request id in header and body. */
  function assertOpenAIShape(r: Reply, status: number, code: string): void {
    assert.equal(r.status, status, r.text);
    assert.equal(r.json.error.type, 'airlock_error');
    assert.equal(r.json.error.code, code);
    assert.equal(r.json.error.request_id, r.headers['x-airlock-request-id']);
    assert.ok(r.json.error.message.length > 10);
  }

  it('missing model → 400 bad_request that says so (SDK BadRequestError)', async () => {
    await assert.rejects(oa.chat.completions.create({ messages: [{ role: 'user', content: 'x' }] } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.code, 'bad_request');
      assert.match(e.message, /no "model"/);
      return true;
    });
  });

  it('unknown model → 404 not_found (SDK NotFoundError), audited with the action', async () => {
    const r = await post('/llm/v1/chat/completions', JSON.stringify({ model: 'gpt-9', messages: [] }));
    assertOpenAIShape(r, 404, 'not_found');
    assert.match(r.json.error.message, /no model "gpt-9"/);
    const rec = await finalRecord(t.adminUrl, r.json.error.request_id);
    assert.equal(rec.action, 'llm: gpt-9');
    assert.equal(rec.decision, 'denied');
    await assert.rejects(oa.chat.completions.create({ model: 'gpt-9', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof OpenAI.NotFoundError);
  });

  it('invalid JSON → 400 bad_request, in the Anthropic shape on the Anthropic surface', async () => {
    const r = await post('/llm/v1/chat/completions', '{"model": "gpt-4o-mini", "messages": [');
    assertOpenAIShape(r, 400, 'bad_request');
    assert.match(r.json.error.message, /not valid JSON/);
    const a = await post('/llm/v1/messages', '{nope', { 'anthropic-version': '2023-06-01' });
    assert.equal(a.status, 400);
    assert.equal(a.json.type, 'error');
    assert.equal(a.json.error.type, 'invalid_request_error');
    assert.equal(a.json.airlock.code, 'bad_request');
  });

  it('a body that is not a JSON object, or has wrong types → 400', async () => {
    for (const body of ['[]', '"hello"', 'null', '{"model": 42}', '{"model": "gpt-4o-mini", "messages": "hi"}', '{"model": "gpt-4o-mini", "max_tokens": -5}', '{"model": "gpt-4o-mini", "stream_options": "yes"}']) {
      const r = await post('/llm/v1/chat/completions', body);
      assertOpenAIShape(r, 400, 'bad_request');
    }
  });

  it('stream: "yes" → 400 bad_request naming stream', async () => {
    const r = await post('/llm/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: 'yes' }));
    assertOpenAIShape(r, 400, 'bad_request');
    assert.match(r.json.error.message, /"stream" must be true or false/);
    await assert.rejects(oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }], stream: 'yes' as unknown as false }), (e: unknown) => e instanceof OpenAI.BadRequestError && /stream/.test(e.message));
  });

  it('a 20 MB prompt over maxBodySize → 413 payload_too_large through the SDK, audited', async () => {
    const huge = 'a'.repeat(20 * 1024 * 1024);
    let id = '';
    await assert.rejects(oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: huge }] }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, 413);
      assert.equal(e.code, 'payload_too_large');
      assert.match(e.message, /llm\.maxBodySize/);
      id = (e.error as { request_id: string }).request_id;
      return true;
    });
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.code, 'payload_too_large');
    const an = anthropicAgent(t.agentUrl, KEYS.alice);
    await assert.rejects(an.messages.create({ model: 'demo-mini', max_tokens: 5, messages: [{ role: 'user', content: huge }] }), (e: unknown) => e instanceof Anthropic.APIError && e.status === 413 && (e.type as string) === 'request_too_large');
  });

  it('a chunked body growing past maxBodySize → 413', async () => {
    async function* body() {
      yield Buffer.from('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"');
      const mb = Buffer.alloc(1024 * 1024, 97);
      for (let i = 0; i < 12; i++) yield mb;
      yield Buffer.from('"}]}');
    }
    const res = await request(`${t.agentUrl}/llm/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.alice}`, 'content-type': 'application/json' }, body: Readable.from(body()) });
    const json = (await res.body.json()) as { error: { code: string } };
    assert.equal(res.statusCode, 413);
    assert.equal(json.error.code, 'payload_too_large');
  });

  it('JSON nested absurdly deep (200k levels) → 400 bad_request, audited; sane nesting passes', async () => {
    const deep = (n: number) => `${'['.repeat(n)}"x"${']'.repeat(n)}`;
    for (const body of [`{"model": "gpt-4o-mini", "messages": [${deep(200_000)}]}`, `{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "metadata": {"a": ${deep(200_000)}}}`]) {
      const r = await post('/llm/v1/chat/completions', body);
      assertOpenAIShape(r, 400, 'bad_request');
      assert.match(r.json.error.message, /nested/);
      const rec = await finalRecord(t.adminUrl, r.json.error.request_id);
      assert.equal(rec.code, 'bad_request');
      assert.equal(rec.decision, 'denied');
    }
    const ok = await post('/llm/v1/chat/completions', `{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "deep but sane"}], "metadata": {"a": ${deep(60)}}}`);
    assert.equal(ok.status, 200, ok.text);
    seenBefore++;
  });

  it('unknown routes and wrong methods → 404 not_found that names the routes', async () => {
    for (const [method, path] of [['POST', '/llm/v1/completions'], ['GET', '/llm/v1/chat/completions'], ['POST', '/llm/chat/completions'], ['DELETE', '/llm/v1/models']]) {
      const r = await call(`${t.agentUrl}${path}`, { method: method!, key: KEYS.alice });
      assertOpenAIShape(r, 404, 'not_found');
    }
  });

  it('no key → 401 unauthenticated in each SDK shape', async () => {
    const r = await call(`${t.agentUrl}/llm/v1/chat/completions`, { method: 'POST', key: 'alk_wrongWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW', body: '{}' });
    assertOpenAIShape(r, 401, 'unauthenticated');
    await assert.rejects(openaiAgent(t.agentUrl, 'alk_wrongWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW').models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError && e.code === 'unauthenticated');
  });

  it('a prompt of one endless word (no spaces) is counted without stalling the gateway', async () => {
    // The tokenizer merges each unbroken run in time that grows at least with the square of its
    // length: 10,000 repeated letters once held the event loop for 11 s (CJK text without spaces
    // as badly), and every other agent's call and /healthz waited with it.
    // The work is synchronous: however long the call takes, the event loop (this process's too) stood still.
    for (const content of ['a'.repeat(10_000), '我们的世界很大'.repeat(600), '!'.repeat(10_000)]) {
      const t0 = performance.now();
      const r = await post('/llm/v1/chat/completions', JSON.stringify({ model: 'demo-mini', messages: [{ role: 'user', content }] }));
      const ms = performance.now() - t0;
      assert.equal(r.status, 200, r.text);
      assert.ok(ms < 3000, `the call took ${Math.round(ms)} ms`);
      const tokens = r.json.usage.prompt_tokens;
      assert.ok(tokens > content.length / 16 && tokens < content.length * 3, `prompt_tokens ${tokens} for ${content.length} characters`);
    }
  });

  it('nothing reached the provider, and the gateway keeps serving', async () => {
    assert.equal(up.seen.length, seenBefore);
    const c = await oa.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'still here?' }] });
    assert.equal(c.choices[0]!.message.content, 'echo: still here?');
  });
});
