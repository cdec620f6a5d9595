/** Helpers for the LLM tests: SDK clients pointed at the gateway, and audit lookups. */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { call } from './gateway.js';

/** The official OpenAI SDK as an agent: baseURL …/llm/v1, the agent key as API key, no retries. */
export function openaiAgent(agentUrl: string, key: string, opts: { project?: string; maxRetries?: number } = {}): OpenAI {
  return new OpenAI({ baseURL: `${agentUrl}/llm/v1`, apiKey: key, maxRetries: opts.maxRetries ?? 0, ...(opts.project ? { project: opts.project } : {}) });
}

/** The official Anthropic SDK as an agent: baseURL …/llm, the agent key as API key, no retries. */
export function anthropicAgent(agentUrl: string, key: string, opts: { maxRetries?: number } = {}): Anthropic {
  return new Anthropic({ baseURL: `${agentUrl}/llm`, apiKey: key, maxRetries: opts.maxRetries ?? 0 });
}

/** Waits for a condition (polling). */
export async function eventually<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The final audit record of an exchange. */
export function finalRecord(adminUrl: string, id: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  return eventually(`the final audit record of ${id}`, async () => {
    const r = await call(`${adminUrl}/api/audit?protocol=llm&limit=500`);
    return (r.json.records as { id: string; phase: string }[]).find((x) => x.id === id && x.phase === 'final');
  });
}
