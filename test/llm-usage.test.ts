/** Reading usage from provider replies and streams: the shapes of each API, and text that only looks like usage. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SseTap } from '../src/protocols/llm/sse.js';
import { usageFromBody } from '../src/protocols/llm/usage.js';
import { costOf, tablePrice } from '../src/protocols/llm/pricing.js';

const b = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

describe('LLM usage and pricing', () => {
  it('reads usage and model from each API shape', () => {
    assert.deepEqual(usageFromBody(b({ id: 'x', model: 'gpt-4o-mini-2024-07-18', choices: [], usage: { prompt_tokens: 10, completion_tokens: 4, total_tokens: 14, prompt_tokens_details: { cached_tokens: 2 } } })), { input: 10, output: 4, cached: 2, model: 'gpt-4o-mini-2024-07-18' });
    assert.deepEqual(usageFromBody(b({ object: 'list', data: [{ embedding: [1, 2] }], model: 'text-embedding-3-small', usage: { prompt_tokens: 5, total_tokens: 5 } })), { input: 5, output: 0, model: 'text-embedding-3-small' });
    assert.deepEqual(usageFromBody(b({ id: 'resp', model: 'gpt-4.1', output: [], usage: { input_tokens: 30, input_tokens_details: { cached_tokens: 10 }, output_tokens: 3 } })), { input: 30, cached: 10, output: 3, model: 'gpt-4.1' });
    assert.deepEqual(usageFromBody(b({ id: 'msg', model: 'claude-3-5-haiku-20241022', content: [], usage: { input_tokens: 20, cache_read_input_tokens: 5, cache_creation_input_tokens: 1, output_tokens: 9 } })), { input: 26, cached: 5, output: 9, model: 'claude-3-5-haiku-20241022' });
  });

  it('is not fooled by usage-like text in the content, braces in strings, or whitespace', () => {
    const tricky = '{ "model" : "m1", "choices":[{"message":{"content":"the \\"usage\\": {\\"prompt_tokens\\": 999} and a brace }"}}, {"x":"usage"}],\n  "usage" :\n { "prompt_tokens": 7, "completion_tokens": 1, "note": "}{" } }';
    assert.deepEqual(usageFromBody(b(tricky)), { input: 7, output: 1, model: 'm1' });
    assert.deepEqual(usageFromBody(b('{"usage": null}')), {});
    assert.deepEqual(usageFromBody(b('not json at all "usage": {')), {});
    assert.deepEqual(usageFromBody(b('')), {});
    // Only the reply's own members count: not an echoed metadata's, not a nested model's.
    assert.deepEqual(usageFromBody(b({ output: [{ model: 'inner' }], model: 'm2', usage: { input_tokens: 4, output_tokens: 2 }, metadata: { usage: 'x', model: 'y' } })), { input: 4, output: 2, model: 'm2' });
    assert.deepEqual(usageFromBody(b({ metadata: { usage: { input_tokens: 1, output_tokens: 1 } }, usage: { input_tokens: 9, output_tokens: 3 } })), { input: 9, output: 3 });
    assert.deepEqual(usageFromBody(b({ type: 'response.completed', response: { model: 'm3', usage: { input_tokens: 5, output_tokens: 1 }, metadata: { usage: 'z' } } })), { input: 5, output: 1, model: 'm3' });
    assert.deepEqual(usageFromBody(b('{"text": "a \\\\", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}')), { input: 3, output: 1 });
  });

  it('the SSE tap splits events across chunk boundaries and CRLF framing, and drops only the usage-only chunk', () => {
    const tap = new SseTap('chat', true);
    const ev = (o: unknown) => `data: ${JSON.stringify(o)}\r\n\r\n`;
    const all = ev({ choices: [{ delta: { content: 'héllo' } }], usage: null }) + ev({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2 } }) + 'data: [DONE]\r\n\r\n';
    const bytes = Buffer.from(all);
    let out = '';
    for (let i = 0; i < bytes.length; i += 7) {
      const f = tap.push(bytes.subarray(i, i + 7));
      if (f) out += f.toString('latin1');
    }
    out = Buffer.from(out, 'latin1').toString();
    assert.ok(out.includes('héllo'));
    assert.ok(!out.includes('prompt_tokens'));
    assert.ok(out.endsWith('data: [DONE]\r\n\r\n'));
    assert.deepEqual(tap.usage, { input: 3, output: 2 });
    assert.equal(tap.text, 'héllo');
    assert.equal(tap.complete, true);
  });

  it('prices dated model names by family, cached input at its own price', () => {
    assert.deepEqual(tablePrice('gpt-4o-mini-2024-07-18'), tablePrice('gpt-4o-mini'));
    assert.notDeepEqual(tablePrice('gpt-4o-mini'), tablePrice('gpt-4o'));
    assert.deepEqual(tablePrice('claude-sonnet-4-5-20250929'), tablePrice('claude-sonnet-4-5'));
    assert.equal(tablePrice('my-own-model'), undefined);
    assert.equal(costOf({ inputTokens: 1_000_000, cachedInputTokens: 500_000, outputTokens: 1_000_000, estimated: false }, { input: 2, cachedInput: 1, output: 8 }), 1 + 0.5 + 8);
  });
});
