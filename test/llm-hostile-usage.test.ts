/**
 * Usage reports a provider gets wrong, on purpose or not: numbers too large to count with, and
 * usage-like keys elsewhere in a reply. The gateway keeps serving, every exchange gets its final
 * audit record, and what is booked is the provider's real report or an honest estimate.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type OpenAI from 'openai';
import { KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { finalRecord, openaiAgent } from './support/llm.js';
import { startFakeOpenAI, type FakeLlm } from './support/llm-upstream.js';

describe('LLM gateway: hostile usage reports', () => {
  let up: FakeLlm;
  let t: TestGateway;
  let oa: OpenAI;
  before(async () => {
    up = await startFakeOpenAI();
    // One call at a time: an exchange left in flight would refuse the next call (concurrency_limited).
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"], limits: { concurrency: 1, budget: 100/day } }
rules:
  - name: all-models
    allow: ["llm: *"]
llm:
  providers:
    p: { type: openai, url: "${up.url}/v1", key: k }
  models:
    priced: { provider: p, model: gpt-x, price: { input: 2, output: 8 } }
`);
    oa = openaiAgent(t.agentUrl, KEYS.alice);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  const msg = (content: string) => [{ role: 'user' as const, content }];
  const huge = { prompt_tokens: 1e308, completion_tokens: 5, total_tokens: 1e308 };

  it('usage numbers too large to count (1e308) are not believed: estimated instead; the exchange ends and the next call works', async () => {
    up.next({ usage: huge });
    const { data, response } = await oa.chat.completions.create({ model: 'priced', messages: msg('absurd usage please') }).withResponse();
    assert.equal(data.choices[0]!.message.content, 'echo: absurd usage please');
    const next = await oa.chat.completions.create({ model: 'priced', messages: msg('still here?') });
    assert.equal(next.choices[0]!.message.content, 'echo: still here?');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.status, 200);
    assert.equal(rec.usage.estimated, true);
    assert.ok(rec.usage.inputTokens > 0 && rec.usage.inputTokens < 50, `input ${rec.usage.inputTokens}`);
    assert.equal(rec.usage.outputTokens, 5, 'the sane part of the report is kept');
    assert.ok(Number.isFinite(rec.costUsd) && rec.costUsd < 0.01, `cost ${rec.costUsd}`);
  });

  it('the same in a stream: the gateway does not crash, the exchange gets its final record, the next call works', async () => {
    up.next({ usage: huge });
    const { data: s, response } = await oa.chat.completions.create({ model: 'priced', messages: msg('stream absurd usage'), stream: true }).withResponse();
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta.content ?? '';
    assert.equal(text, 'echo: stream absurd usage');
    const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
    assert.equal(rec.code, undefined);
    assert.equal(rec.usage.estimated, true);
    assert.ok(rec.usage.inputTokens < 50, `input ${rec.usage.inputTokens}`);
    assert.ok(Number.isFinite(rec.costUsd), `cost ${rec.costUsd}`);
    const next = await oa.chat.completions.create({ model: 'priced', messages: msg('and now?') });
    assert.equal(next.choices[0]!.message.content, 'echo: and now?');
  });

  it('negative, fractional and beyond-safe-integer counts are not believed either', async () => {
    for (const usage of [
      { prompt_tokens: -4, completion_tokens: 5, total_tokens: 1 },
      { prompt_tokens: 2.5, completion_tokens: 5, total_tokens: 7.5 },
      { prompt_tokens: 2 ** 60, completion_tokens: 5, total_tokens: 2 ** 60 },
    ]) {
      up.next({ usage });
      const { response } = await oa.chat.completions.create({ model: 'priced', messages: msg('odd usage') }).withResponse();
      const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
      assert.equal(rec.usage.estimated, true, JSON.stringify(usage));
      assert.ok(rec.usage.inputTokens > 0 && rec.usage.inputTokens < 50, `${JSON.stringify(usage)} → input ${rec.usage.inputTokens}`);
    }
  });

  it("a usage key in the Responses API's echoed metadata does not hide the reply's own usage", async () => {
    const usage = { input_tokens: 200_000, input_tokens_details: { cached_tokens: 0 }, output_tokens: 30_000, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 230_000 };
    for (const metadata of [{ usage: 'x' }, { usage: '{"input_tokens": 1, "output_tokens": 1}', model: 'cheap' }]) {
      up.next({ usage });
      const { data, response } = await oa.responses.create({ model: 'priced', input: 'a long job', metadata }).withResponse();
      assert.deepEqual(data.metadata, metadata, 'the provider echoed the metadata after the usage');
      const rec = await finalRecord(t.adminUrl, response.headers.get('x-airlock-request-id')!);
      assert.deepEqual(rec.usage, { inputTokens: 200_000, outputTokens: 30_000, cachedInputTokens: 0, estimated: false });
      assert.equal(rec.costUsd, 0.64, '200k input at $2/M + 30k output at $8/M');
      assert.equal(rec.details.upstreamModel, 'gpt-x');
    }
  });
});
