/**
 * LLM calls when providers misbehave: fallbacks on 429 / 5xx / slow first token / connection
 * errors (only before the first byte reached the agent), timeouts, resets mid-stream, streams that
 * end early, agents that hang up, kill switches mid-stream. The agents are the official SDKs.
 */
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { anthropicAgent, eventually, finalRecord, openaiAgent } from './support/llm.js';
import { startFakeAnthropic, startFakeOpenAI, type FakeLlm } from './support/llm-upstream.js';

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const LONG = 'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen';

describe('LLM gateway: failures, fallbacks and cut streams', () => {
  let up1: FakeLlm;
  let up2: FakeLlm;
  let a1: FakeLlm;
  let a2: FakeLlm;
  let t: TestGateway;
  let oa: OpenAI;
  let an: Anthropic;
  before(async () => {
    [up1, up2, a1, a2] = await Promise.all([startFakeOpenAI(), startFakeOpenAI(), startFakeAnthropic(), startFakeAnthropic()]);
    const down = await closedPort();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
  carol: { keys: ["${KEYS.carol}"] }
rules:
  - name: all-models
    allow: ["llm: *"]
llm:
  providers:
    p1: { type: openai, url: "${up1.url}/v1", key: k1 }
    p2: { type: openai-compatible, url: "${up2.url}/v1" }
    down: { type: openai, url: "http://127.0.0.1:${down}/v1", key: k3 }
    a1: { type: anthropic, url: "${a1.url}", key: ka1 }
    a2: { type: anthropic, url: "${a2.url}", key: ka2 }
  models:
    primary: { provider: p1, model: gpt-4o-mini, fallback: [backup], firstTokenTimeout: 300ms, timeout: 3s }
    backup: { provider: p2, model: llama3, price: { input: 0, output: 0 } }
    solo: { provider: p1, model: gpt-4o-mini, timeout: 400ms }
    unreachable: { provider: down, model: gpt-4o-mini, fallback: [backup] }
    unreachable-solo: { provider: down, model: gpt-4o-mini }
    claude: { provider: a1, model: claude-3-5-haiku-latest, fallback: [claude-b], firstTokenTimeout: 300ms }
    claude-b: { provider: a2, model: claude-3-5-haiku-latest }
    relay: { provider: p1, model: gpt-4o-mini, fallback: [backup, spare] }
    spare: { provider: p1, model: gpt-4o-spare }
`);
    oa = openaiAgent(t.agentUrl, KEYS.alice);
    an = anthropicAgent(t.agentUrl, KEYS.alice);
  });
  after(async () => {
    await t.stop();
    await Promise.all([up1.close(), up2.close(), a1.close(), a2.close()]);
  });

  const msg = (content: string) => [{ role: 'user' as const, content }];

  it('429 with Retry-After → the fallback answers; the audit names the model that answered and the attempts', async () => {
    up1.next({ status: 429, retryAfter: '7' });
    const { data, response } = await oa.chat.completions.create({ model: 'primary', messages: msg('fall back') }).withResponse();
    assert.equal(data.choices[0]!.message.content, 'echo: fall back');
    assert.equal(up2.seen.at(-1)!.body.model, 'llama3');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.target.model, 'primary');
    assert.equal(rec.details.model, 'backup');
    assert.equal(rec.details.provider, 'p2');
    assert.deepEqual(rec.details.attempts, [{ model: 'primary', status: 429 }, { model: 'backup', status: 200 }]);
  });

  it('500 on a stream → the fallback streams instead', async () => {
    up1.next({ status: 500 });
    const s = await oa.chat.completions.create({ model: 'primary', messages: msg('stream fallback'), stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'echo: stream fallback');
  });

  it('without a fallback, the provider 429 reaches the agent as the SDK RateLimitError with its Retry-After', async () => {
    up1.next({ status: 429, retryAfter: '7' });
    await assert.rejects(oa.chat.completions.create({ model: 'solo', messages: msg('x') }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.RateLimitError);
      assert.equal(e.headers?.get('retry-after'), '7');
      assert.equal(e.code, 'rate_limit_exceeded');
      return true;
    });
  });

  it('a slow first token → the fallback answers, and the slow call is cancelled', async () => {
    up1.next({ firstTokenDelayMs: 1500 });
    const n2 = up2.seen.length;
    const t0 = Date.now();
    const s = await oa.chat.completions.create({ model: 'primary', messages: msg('slow start'), stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'echo: slow start');
    assert.ok(Date.now() - t0 < 1400, 'did not wait for the slow provider');
    assert.equal(up2.seen.length, n2 + 1);
    await eventually('the slow call to be cancelled', () => up1.seen.at(-1)!.aborted);
  });

  it('an attempt cut by a timeout after it was sent is charged at an estimate: its prompt, plus the output cap when not streamed', async () => {
    up1.next({ firstTokenDelayMs: 1500 });
    const { data: s, response } = await oa.chat.completions.create({ model: 'primary', messages: msg('slow start, charged'), stream: true }).withResponse();
    for await (const _ of s);
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.details.model, 'backup');
    assert.equal(rec.usage.estimated, true, 'the cut attempt is an estimate');
    assert.ok(rec.usage.inputTokens > 11, `the backup's 11 input tokens plus the cut attempt's prompt: ${rec.usage.inputTokens}`);
    assert.equal(rec.usage.outputTokens, 7, 'the backup reported 7; the cut stream generated nothing that arrived');
    assert.ok(rec.costUsd > 0, 'the cut attempt is priced at its own model (backup is free)');

    up1.next({ delayMs: 1500 });
    let id = '';
    await assert.rejects(oa.chat.completions.create({ model: 'solo', messages: msg('x'), max_tokens: 50 }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError && e.status === 504, String(e));
      id = e.requestID!;
      return true;
    });
    const timedOut = await finalRecord(t.adminUrl, id);
    assert.equal(timedOut.usage.estimated, true);
    assert.ok(timedOut.usage.inputTokens > 0);
    assert.equal(timedOut.usage.outputTokens, 50, 'a non-streamed call the provider was sent runs to its end: the output cap');
    assert.ok(timedOut.costUsd > 0);
  });

  it("a provider refusing airlock's key is a 502 upstream_error for the agent, not the provider's 401", async () => {
    up1.next({ status: 401, body: JSON.stringify({ error: { message: 'Incorrect API key provided: sk-proj-****wxyz', type: 'invalid_request_error', code: 'invalid_api_key' } }) });
    await assert.rejects(oa.chat.completions.create({ model: 'solo', messages: msg('x') }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError && !(e instanceof OpenAI.AuthenticationError), String(e));
      assert.equal(e.status, 502);
      assert.equal(e.code, 'upstream_error');
      assert.match(e.message, /refused airlock's credentials/);
      assert.doesNotMatch(e.message, /wxyz/);
      return true;
    });
  });

  it('a timeout without a fallback → 504 upstream_timeout', async () => {
    up1.next({ delayMs: 1500 });
    await assert.rejects(oa.chat.completions.create({ model: 'solo', messages: msg('x') }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.InternalServerError);
      assert.equal(e.status, 504);
      assert.equal(e.code, 'upstream_timeout');
      return true;
    });
  });

  it('a connection error → the fallback; without one → 502 upstream_error', async () => {
    const c = await oa.chat.completions.create({ model: 'unreachable', messages: msg('refused') });
    assert.equal(c.choices[0]!.message.content, 'echo: refused');
    await assert.rejects(oa.chat.completions.create({ model: 'unreachable-solo', messages: msg('x') }), (e: unknown) => e instanceof OpenAI.APIError && e.status === 502 && e.code === 'upstream_error');
  });

  it('a reset mid-stream ends the stream with an error event the SDK throws, no fallback once bytes went out, and an audit outcome saying so', async () => {
    up1.next({ resetAfterEvents: 3 });
    const n2 = up2.seen.length;
    const { data: s, response } = await oa.chat.completions.create({ model: 'primary', messages: msg(LONG), stream: true }).withResponse();
    let chunks = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of s) chunks++;
      })(),
      (e: unknown) => e instanceof OpenAI.APIError && e.code === 'upstream_error',
    );
    assert.equal(chunks, 3);
    assert.equal(up2.seen.length, n2, 'no fallback after the first byte reached the agent');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.code, 'upstream_error');
    assert.match(rec.message, /stream broke after 3 events/);
    assert.equal(rec.usage.estimated, true);
    assert.ok(rec.usage.outputTokens > 0);
  });

  it('Anthropic: 529 overloaded → fallback; a reset mid-stream → the SDK throws an APIError of type api_error', async () => {
    a1.next({ status: 529 });
    const m = await an.messages.create({ model: 'claude', max_tokens: 20, messages: msg('overloaded') });
    assert.equal(m.content[0]!.type === 'text' && m.content[0]!.text, 'echo: overloaded');
    a1.next({ resetAfterEvents: 4 });
    const s = an.messages.stream({ model: 'claude', max_tokens: 20, messages: msg(LONG) });
    await assert.rejects(s.finalMessage(), (e: unknown) => e instanceof Anthropic.APIError && (e.error as { airlock?: { code: string } }).airlock?.code === 'upstream_error');
  });

  it('a stream that ends without its final event is reported as broken, not as complete', async () => {
    a1.next({ endAfterEvents: 4 });
    const s = an.messages.stream({ model: 'claude', max_tokens: 20, messages: msg(LONG) });
    await assert.rejects(s.finalMessage(), (e: unknown) => e instanceof Anthropic.APIError);
    const id = (await s.withResponse()).response.headers.get('x-airlock-request-id')!;
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.code, 'upstream_error');
    assert.match(rec.message, /without finishing it/);
    assert.equal(rec.usage.inputTokens, 25, 'what the provider reported is kept');
    assert.equal(rec.usage.estimated, true);
  });

  it('a chat stream that finished its choice but closed without [DONE] is complete', async () => {
    up2.next({ endAfterEvents: 6 }); // role, 3 words, finish, usage — no [DONE]
    const { data: s, response } = await oa.chat.completions.create({ model: 'backup', messages: msg('done soon'), stream: true }).withResponse();
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'echo: done soon');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.code, undefined);
    assert.equal(rec.usage.estimated, false);
  });

  it('an agent that hangs up mid-stream cancels the provider call', async () => {
    up1.next({ chunkDelayMs: 100 });
    const { data: s, response } = await oa.chat.completions.create({ model: 'primary', messages: msg(LONG), stream: true }).withResponse();
    let n = 0;
    for await (const _ of s) if (++n === 2) break; // the SDK aborts the request on break
    await eventually('the provider call to be cancelled', () => up1.seen.at(-1)!.aborted);
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.match(rec.message, /agent disconnected/);
    assert.equal(rec.usage.estimated, true);
  });

  it('a kill switch cuts a stream in flight with a killed error event', async () => {
    up1.next({ chunkDelayMs: 100 });
    const carol = openaiAgent(t.agentUrl, KEYS.carol);
    const { data: s, response } = await carol.chat.completions.create({ model: 'primary', messages: msg(LONG), stream: true }).withResponse();
    let n = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of s) {
          if (++n === 2) {
            const k = await call(`${t.adminUrl}/api/kill`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'carol' }) });
            assert.equal(k.json.aborted, 1);
          }
        }
      })(),
      (e: unknown) => e instanceof OpenAI.APIError && e.code === 'killed',
    );
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.decision, 'killed');
    assert.equal(rec.code, 'killed');
    await eventually('the provider call to be cancelled', () => up1.seen.at(-1)!.aborted);
    await assert.rejects(carol.models.list(), (e: unknown) => e instanceof OpenAI.PermissionDeniedError && e.code === 'killed');
    await call(`${t.adminUrl}/api/kill`, { method: 'DELETE', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ agent: 'carol' }) });
    assert.ok((await carol.models.list()).data.length > 0);
  });

  it('a target kill switch on a fallback model stops the fallback too: it is skipped, and never called', async () => {
    const kill = (method: string) => call(`${t.adminUrl}/api/kill`, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'llm: backup' }) });
    assert.equal((await kill('POST')).status, 200);
    try {
      const n2 = up2.seen.length;
      // The only fallback is killed: the agent gets the requested model's own failure, as if it had no fallback.
      up1.next({ status: 503 });
      await assert.rejects(oa.chat.completions.create({ model: 'primary', messages: msg('no fallback left') }).withResponse(), (e: unknown) => {
        assert.ok(e instanceof OpenAI.InternalServerError, String(e));
        assert.equal(e.status, 503);
        return true;
      });
      assert.equal(up2.seen.length, n2, 'the killed fallback got no request');
      // A killed fallback in the middle of the chain is skipped; the next one serves.
      up1.next({ status: 503 });
      const { data, response } = await oa.chat.completions.create({ model: 'relay', messages: msg('skip the killed one') }).withResponse();
      assert.equal(data.choices[0]!.message.content, 'echo: skip the killed one');
      assert.equal(up1.seen.at(-1)!.body.model, 'gpt-4o-spare');
      assert.equal(up2.seen.length, n2, 'the killed fallback got no request');
      const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
      assert.equal(rec.details.model, 'spare');
      assert.deepEqual(rec.details.attempts, [{ model: 'relay', status: 503 }, { model: 'backup', error: 'killed' }, { model: 'spare', status: 200 }]);
    } finally {
      await kill('DELETE');
    }
  });

  it('a target kill switch on a fallback model cuts a call that fell back to it, mid-stream', async () => {
    up1.next({ status: 503 });
    up2.next({ chunkDelayMs: 100 });
    const { data: s, response } = await oa.chat.completions.create({ model: 'primary', messages: msg(LONG), stream: true }).withResponse();
    let n = 0;
    const kill = (method: string) => call(`${t.adminUrl}/api/kill`, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'llm: backup' }) });
    try {
      await assert.rejects(
        (async () => {
          for await (const _ of s) {
            if (++n === 2) assert.equal((await kill('POST')).json.aborted, 1, 'the call served by the killed fallback is cut');
          }
        })(),
        (e: unknown) => e instanceof OpenAI.APIError && e.code === 'killed',
      );
      const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
      assert.equal(rec.code, 'killed');
      await eventually('the fallback provider call to be cancelled', () => up2.seen.at(-1)!.aborted);
    } finally {
      await kill('DELETE');
    }
  });

  it('a target kill switch hides the models it covers from the model list', async () => {
    const kill = (method: string) => call(`${t.adminUrl}/api/kill`, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: 'llm: unreachable*' }) });
    await kill('POST');
    const ids = (await oa.models.list()).data.map((m) => m.id);
    assert.ok(ids.includes('primary') && !ids.includes('unreachable') && !ids.includes('unreachable-solo'), ids.join());
    await kill('DELETE');
  });

  it('a provider that reports no usage: airlock counts it with the tokenizer and marks it estimated', async () => {
    up2.next({ noUsage: true });
    const { response } = await oa.chat.completions.create({ model: 'backup', messages: msg('count these words for me') }).withResponse();
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.usage.estimated, true);
    assert.ok(rec.usage.inputTokens >= 5 && rec.usage.inputTokens < 40, `input ${rec.usage.inputTokens}`);
    assert.ok(rec.usage.outputTokens >= 5 && rec.usage.outputTokens < 20, `output ${rec.usage.outputTokens}`);
    up2.next({ noUsage: true });
    const { data: s, response: r2 } = await oa.chat.completions.create({ model: 'backup', messages: msg('stream without usage'), stream: true }).withResponse();
    for await (const _ of s);
    const rec2 = await finalRecord(t.adminUrl, r2.headers.get('x-airlock-request-id')!);
    assert.equal(rec2.usage.estimated, true);
    assert.ok(rec2.usage.outputTokens > 0);
    assert.equal(rec2.code, undefined);
  });
});
