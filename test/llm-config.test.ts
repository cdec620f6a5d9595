/**
 * The `llm:` config section: what compiles, and what is refused at load with the line and key —
 * including a fallback that cannot serve the model's API shape.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { compileConfig } from '../src/config/compile.js';
import { ConfigError, parseConfig } from '../src/config/load.js';

const compile = (yaml: string) => compileConfig(parseConfig(yaml, 'airlock.yaml', { OPENAI_KEY: 'sk-from-env' }));

function refused(yaml: string, key: string | RegExp, problem: RegExp): void {
  assert.throws(() => compile(yaml), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    if (typeof key === 'string') assert.equal(e.key, key);
    else assert.match(e.key, key);
    assert.match(e.problem, problem);
    assert.ok(e.line !== undefined && e.line > 1, 'names the line');
    return true;
  });
}

describe('LLM config', () => {
  it('compiles providers, models, prices, fallbacks and defaults', () => {
    const c = compile(`
llm:
  providers:
    openai: { type: openai, key: "\${env:OPENAI_KEY}", headers: { OpenAI-Organization: org-1 } }
    claude: { type: anthropic, url: "https://api.anthropic.com/v1", key: sk-ant, version: "2023-06-01" }
    local: { type: openai-compatible, url: "http://127.0.0.1:11434/v1" }
    demo: { type: mock, reply: hi, latency: 50ms }
  models:
    gpt-4o-mini: { provider: openai, price: { input: 0.15, output: 0.6 }, fallback: [llama3, demo-mini], timeout: 30s, firstTokenTimeout: 5s }
    llama3: { provider: local, model: "llama3.1:8b" }
    claude-haiku: { provider: claude, model: claude-3-5-haiku-latest, fallback: [demo-mini] }
    demo-mini: { provider: demo }
`);
    const m = c.llm.models.get('gpt-4o-mini')!;
    assert.deepEqual(m.chain.map((x) => x.name), ['gpt-4o-mini', 'llama3', 'demo-mini']);
    assert.deepEqual(m.price, { input: 0.15, output: 0.6, cachedInput: 0.15 });
    assert.equal(m.timeoutMs, 30_000);
    assert.equal(m.firstTokenTimeoutMs, 5000);
    assert.equal(m.maxOutputTokens, 4096);
    const openai = c.llm.providers.get('openai')!;
    assert.equal(openai.origin, 'https://api.openai.com');
    assert.equal(openai.basePath, '/v1');
    assert.deepEqual(openai.headers, [['openai-organization', 'org-1'], ['authorization', 'Bearer sk-from-env']]);
    const claude = c.llm.providers.get('claude')!;
    assert.equal(claude.basePath, '', 'a /v1 on an Anthropic URL is dropped: the SDK paths carry it');
    assert.deepEqual(claude.defaultHeaders, [['anthropic-version', '2023-06-01']]);
    assert.equal(c.llm.models.get('llama3')!.upstreamModel, 'llama3.1:8b');
    assert.equal(c.llm.maxBodySize, 10 * 1024 * 1024);
    assert.equal(c.llm.providers.get('demo')!.mock!.latencyMs, 50);
  });

  it('a fallback of another API shape is a config error at load', () => {
    refused(
      `
llm:
  providers:
    openai: { type: openai, key: k }
    claude: { type: anthropic, key: k }
  models:
    gpt-4o-mini: { provider: openai, fallback: [claude-haiku] }
    claude-haiku: { provider: claude }
`,
      'llm.models.gpt-4o-mini.fallback[0]',
      /cannot stand in for "gpt-4o-mini" on the openai surface: a surface routes only to providers of its own shape/,
    );
    refused(
      `
llm:
  providers:
    demo: { type: mock }
    openai: { type: openai, key: k }
  models:
    demo-mini: { provider: demo, fallback: [gpt] }
    gpt: { provider: openai }
`,
      'llm.models.demo-mini.fallback[0]',
      /anthropic surface/,
    );
  });

  it('refuses unknown providers, fallbacks and types, and misplaced settings, naming the key', () => {
    refused('llm:\n  models:\n    m: { provider: nope }\n', 'llm.models.m.provider', /no provider named "nope"/);
    refused('llm:\n  providers:\n    p: { type: mock }\n  models:\n    m: { provider: p, fallback: [zzz] }\n', 'llm.models.m.fallback[0]', /no model named "zzz"/);
    refused('llm:\n  providers:\n    p: { type: mock }\n  models:\n    m: { provider: p, fallback: [m] }\n', 'llm.models.m.fallback[0]', /its own fallback/);
    refused('llm:\n  providers:\n    p: { type: gemini }\n', 'llm.providers.p.type', /.+/);
    refused('llm:\n  providers:\n    p: { type: openai, reply: hello }\n', 'llm.providers.p.reply', /setting of mock providers/);
    refused('llm:\n  providers:\n    p: { type: openai-compatible }\n', 'llm.providers.p.url', /needs the url/);
    refused('llm:\n  providers:\n    p: { type: openai, headers: { "bad header": x } }\n', /llm\.providers\.p\.headers/, /header name/);
    refused('llm:\n  providers:\n    p: { type: openai, colour: blue }\n', 'llm.providers.p.colour', /unknown key/);
    refused('llm:\n  providers:\n    p: { type: mock }\n  models:\n    "two words": { provider: p }\n', /llm\.models/, /without spaces/);
  });

  it('the quickstart gives demo-agent a mock model it may use', () => {
    const file = fileURLToPath(new URL('../../examples/quickstart.yaml', import.meta.url));
    const c = compileConfig(parseConfig(readFileSync(file, 'utf8'), file));
    const m = c.llm.models.get('demo-mini')!;
    assert.equal(m.provider.type, 'mock');
    assert.equal(c.rules.decide('demo-agent', 'llm: demo-mini').decision, 'allow');
  });
});
