/**
 * Token limits and budgets on LLM calls (SPEC section 4): reservations before the call, settlement
 * with real usage after, 50 real concurrent calls against a nearly spent budget, team budgets,
 * budgets that survive a restart, and the usage API and CLI that report it all.
 */
import Anthropic from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { call, KEYS, startGateway, type TestGateway } from './support/gateway.js';
import { anthropicAgent, eventually, openaiAgent } from './support/llm.js';
import { startFakeAnthropic, startFakeOpenAI, type FakeLlm } from './support/llm-upstream.js';

const BIN = fileURLToPath(new URL('../../bin/airlock', import.meta.url));
const KEY = (name: string) => `alk_${name}${'Z'.repeat(40 - name.length)}`;
/** Every call to "metered" costs 18 tokens × $1000/M = $0.018 (11 input incl. 3 cached + 7 output). */
const CALL_USD = 0.018;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...process.env, AIRLOCK_ADMIN_TOKEN: '' } }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

describe('LLM gateway: token limits, budgets and usage', () => {
  let up: FakeLlm;
  let anth: FakeLlm;
  let t: TestGateway;
  let dir: string;
  const config = () => `
agents:
  spender: { keys: ["${KEY('spender')}"], limits: { budget: 0.1/day } }
  t1: { team: blue, keys: ["${KEY('tone')}"] }
  t2: { team: blue, keys: ["${KEY('ttwo')}"] }
  tok: { keys: ["${KEY('tok')}"], limits: { tokens: 40/min } }
  free: { keys: ["${KEY('free')}"] }
  claudia: { keys: ["${KEY('claudia')}"], limits: { budget: 0.01/month } }
  quitter: { keys: ["${KEY('quitter')}"], limits: { budget: 0.05/day } }
  streamer: { keys: ["${KEY('streamer')}"], limits: { tokens: 100/hour } }
teams:
  blue: { limits: { budget: 0.03/day } }
rules:
  - name: metered
    allow: ["llm: *"]
limits:
  - target: "llm: capped-*"
    tokens: 20/hour
llm:
  providers:
    openai: { type: openai, url: "${up.url}/v1", key: sk-1 }
    anthropic: { type: anthropic, url: "${anth.url}", key: sk-2 }
  models:
    metered: { provider: openai, model: gpt-x, price: { input: 1000, output: 1000 } }
    capped-model: { provider: openai, model: gpt-x, price: { input: 1, output: 1 } }
    claude: { provider: anthropic, model: claude-x, price: { input: 1000, output: 1000 } }
    quit-model: { provider: openai, model: gpt-x, price: { input: 1000, output: 1000 } }
`;
  before(async () => {
    up = await startFakeOpenAI();
    anth = await startFakeAnthropic();
    dir = mkdtempSync(join(tmpdir(), 'airlock-llm-limits-'));
    t = await startGateway(config(), { dir });
  });
  after(async () => {
    await t.stop();
    await up.close();
    await anth.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const ask = (agent: OpenAI, model = 'metered') => agent.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 });

  it('50 concurrent calls against a nearly spent budget overshoot it by at most one reservation; the rest get 402 budget_exceeded', async () => {
    const spender = openaiAgent(t.agentUrl, KEY('spender'));
    for (let i = 0; i < 5; i++) await ask(spender); // $0.09 of $0.10 spent
    up.always({ delayMs: 200 });
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => ask(spender)));
    up.always(undefined);
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as unknown);
    assert.equal(ok, 1, 'exactly one call fits while the others see its reservation');
    for (const e of refused) {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, 402);
      assert.equal(e.code, 'budget_exceeded');
    }
    assert.match((refused[0] as Error).message, /agent "spender" has spent \$0\.09\d* .*budget of 0\.1\/day; it renews at/);
    const u = await call(`${t.adminUrl}/api/usage?by=agent`);
    const g = u.json.groups.find((x: { agent: string }) => x.agent === 'spender');
    assert.equal(g.requests, 55);
    assert.equal(g.refused, 49);
    assert.ok(g.costUsd <= 0.1 + CALL_USD + 1e-9, `spent ${g.costUsd}`);
    assert.ok(g.costUsd > 0.1, 'the one admitted call was booked');
  });

  it('a team budget is shared by its agents', async () => {
    const a = openaiAgent(t.agentUrl, KEY('tone'));
    const b = openaiAgent(t.agentUrl, KEY('ttwo'));
    await ask(a);
    await ask(b);
    await assert.rejects(ask(a), (e: unknown) => e instanceof OpenAI.APIError && e.status === 402 && /team "blue"/.test(e.message));
  });

  it('tokens per window: over the limit → 429 rate_limited with Retry-After (reservation includes the output cap)', async () => {
    const tok = openaiAgent(t.agentUrl, KEY('tok'));
    await ask(tok);
    await ask(tok);
    await assert.rejects(ask(tok), (e: unknown) => {
      assert.ok(e instanceof OpenAI.RateLimitError);
      assert.equal(e.code, 'rate_limited');
      assert.match(e.message, /token limit of 40\/min/);
      assert.ok(Number(e.headers?.get('retry-after')) >= 1);
      return true;
    });
  });

  it('a target token limit applies per agent to the models it matches', async () => {
    const free = openaiAgent(t.agentUrl, KEY('free'));
    await ask(free, 'capped-model');
    await ask(free, 'metered'); // other models are not covered by the target limit
    await assert.rejects(ask(free, 'capped-model'), (e: unknown) => e instanceof OpenAI.RateLimitError && /"llm: capped-\*"/.test(e.message));
  });

  it('Anthropic SDK: a spent budget is its PaymentRequiredError with type billing_error', async () => {
    const c = anthropicAgent(t.agentUrl, KEY('claudia'));
    await c.messages.create({ model: 'claude', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }); // $0.034 > $0.01
    await assert.rejects(c.messages.create({ model: 'claude', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] }), (e: unknown) => {
      assert.ok(e instanceof Anthropic.PaymentRequiredError, String(e));
      assert.equal(e.type, 'billing_error');
      assert.equal((e.error as { airlock: { code: string } }).airlock.code, 'budget_exceeded');
      return true;
    });
  });

  /** Calls `n` times, hanging up on each call once the provider has it; returns the refusals. */
  async function hangUps(agent: OpenAI, n: number, body: OpenAI.ChatCompletionCreateParamsNonStreaming | OpenAI.ChatCompletionCreateParamsStreaming): Promise<unknown[]> {
    const refused: unknown[] = [];
    for (let i = 0; i < n; i++) {
      const seen = up.seen.length;
      const ac = new AbortController();
      let settled = false;
      const done = (async () => {
        try {
          const r = await agent.chat.completions.create(body as OpenAI.ChatCompletionCreateParamsStreaming, { signal: ac.signal });
          for await (const _ of r);
          return new Error('the call should have been cut');
        } catch (e) {
          return e;
        } finally {
          settled = true;
        }
      })();
      while (!settled && up.seen.length === seen) await new Promise((r) => setTimeout(r, 5));
      ac.abort();
      const e = await done;
      if (e instanceof OpenAI.APIUserAbortError) await eventually('the provider call to be cancelled', () => up.seen.at(-1)!.aborted);
      else refused.push(e);
    }
    return refused;
  }

  const records = async (agent: string) => (await call(`${t.adminUrl}/api/audit?protocol=llm&agent=${agent}&limit=500`)).json.records.filter((r: { phase: string }) => r.phase === 'final');

  it('an agent that hangs up after the call went upstream is still charged: prompt plus output cap, estimated, against its budget', async () => {
    const quitter = openaiAgent(t.agentUrl, KEY('quitter'));
    up.always({ delayMs: 2000 });
    const seen = up.seen.length;
    let refused: unknown[];
    try {
      refused = await hangUps(quitter, 10, { model: 'quit-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 });
    } finally {
      up.always(undefined);
    }
    const cut = (await records('quitter')).filter((r: { message?: string }) => /agent disconnected/.test(r.message ?? ''));
    assert.ok(cut.length > 0);
    for (const r of cut) {
      assert.equal(r.usage.estimated, true);
      assert.ok(r.usage.inputTokens > 0 && r.usage.inputTokens < 20, `input ${r.usage.inputTokens}`);
      assert.equal(r.usage.outputTokens, 10, 'the output cap: a provider finishes a non-streamed reply it was sent');
      assert.equal(r.costUsd, ((r.usage.inputTokens + 10) * 1000) / 1e6);
    }
    // $0.05 at about $0.011 a call: the budget is spent after five hang-ups.
    assert.ok(refused.length >= 4, `${refused.length} refused`);
    for (const e of refused) assert.ok(e instanceof OpenAI.APIError && e.status === 402 && e.code === 'budget_exceeded', String(e));
    assert.equal(up.seen.length - seen, 10 - refused.length, 'refused calls never reached the provider');
  });

  it('a stream the agent hangs up on before its first event is charged its prompt against token limits', async () => {
    const streamer = openaiAgent(t.agentUrl, KEY('streamer'));
    const words = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' '); // over 100 tokens, counted either way
    up.always({ firstTokenDelayMs: 2000 });
    let refused: unknown[];
    try {
      refused = await hangUps(streamer, 3, { model: 'quit-model', messages: [{ role: 'user', content: words }], max_tokens: 1, stream: true });
    } finally {
      up.always(undefined);
    }
    const cut = (await records('streamer')).filter((r: { message?: string }) => /agent disconnected/.test(r.message ?? ''));
    assert.ok(cut.length >= 1);
    for (const r of cut) {
      assert.equal(r.usage.estimated, true);
      assert.ok(r.usage.inputTokens > 100, `input ${r.usage.inputTokens}`);
      assert.equal(r.usage.outputTokens, 0, 'nothing was generated yet, and a cut stream stops generating');
      assert.ok(r.costUsd > 0);
    }
    // 100 tokens an hour, over 100 a call: nothing more fits once the first is booked.
    assert.equal(refused.length, 2, `${refused.length} refused`);
    for (const e of refused) assert.ok(e instanceof OpenAI.RateLimitError && e.code === 'rate_limited', String(e));
  });

  it('usage API by agent, team and model, with since; bad parameters are 400', async () => {
    const byTeam = await call(`${t.adminUrl}/api/usage?by=team&since=1h`);
    assert.equal(byTeam.status, 200);
    const blue = byTeam.json.groups.find((g: { team: string }) => g.team === 'blue');
    assert.equal(blue.requests, 3);
    assert.equal(blue.costUsd, 2 * CALL_USD);
    const byModel = await call(`${t.adminUrl}/api/usage?by=model`);
    const metered = byModel.json.groups.find((g: { model: string }) => g.model === 'metered');
    assert.equal(metered.inputTokens, 11 * (metered.requests - metered.refused), 'every answered call reported 11 input tokens');
    assert.equal(metered.cachedInputTokens, 3 * (metered.requests - metered.refused));
    assert.ok(byModel.json.total.costUsd > 0);
    assert.equal((await call(`${t.adminUrl}/api/usage?by=planet`)).status, 400);
    assert.equal((await call(`${t.adminUrl}/api/usage?since=yesterday-ish`)).status, 400);
  });

  it('airlock usage prints the same numbers (table and --json)', async () => {
    const j = await cli(['usage', '--admin', t.adminUrl, '--by', 'agent', '--json']);
    assert.equal(j.code, 0, j.stderr);
    const report = JSON.parse(j.stdout);
    assert.ok(report.groups.some((g: { agent: string }) => g.agent === 'spender'));
    const tbl = await cli(['usage', '--admin', t.adminUrl, '--by', 'team', '--since', '1d']);
    assert.equal(tbl.code, 0, tbl.stderr);
    assert.match(tbl.stdout, /^team\s+requests\s+refused\s+llm\s+input\s+cached\s+output\s+cost/m, 'a column per protocol with calls: here only llm');
    assert.match(tbl.stdout, /^blue\s+3\s+1\s+3\s+/m);
    assert.equal((await cli(['usage', '--admin', t.adminUrl, '--by', 'planet'])).code, 2);
  });

  it('a budget survives a restart: spend is read back from the audit', async () => {
    await t.stop();
    t = await startGateway(config(), { dir });
    await assert.rejects(ask(openaiAgent(t.agentUrl, KEY('spender'))), (e: unknown) => e instanceof OpenAI.APIError && e.status === 402);
    // With the gateway stopped, the CLI reads the same store directly.
    const cfg = join(dir, 'airlock.yaml');
    await t.stop();
    const offline = await cli(['usage', '-c', cfg, '--json']);
    assert.equal(offline.code, 0, offline.stderr);
    assert.ok(JSON.parse(offline.stdout).groups.some((g: { agent: string }) => g.agent === 'spender'));
    t = await startGateway(config(), { dir });
  });
});
