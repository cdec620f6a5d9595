/**
 * What tokens cost: a built-in table of common OpenAI and Anthropic models (USD per million tokens,
 * list prices), overridden per model by `llm.models.<name>.price`. Dated model names find their
 * family by longest prefix (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`).
 */
import type { LlmModel, Price } from '../../config/llm.js';
import type { Usage } from './usage.js';

const p = (input: number, output: number, cachedInput = input): Price => ({ input, output, cachedInput });

/** List prices, USD per million tokens. Override in config when yours differ. */
export const PRICE_TABLE: ReadonlyMap<string, Price> = new Map([
  // OpenAI
  ['gpt-5', p(1.25, 10, 0.125)],
  ['gpt-5-mini', p(0.25, 2, 0.025)],
  ['gpt-5-nano', p(0.05, 0.4, 0.005)],
  ['gpt-4.1', p(2, 8, 0.5)],
  ['gpt-4.1-mini', p(0.4, 1.6, 0.1)],
  ['gpt-4.1-nano', p(0.1, 0.4, 0.025)],
  ['gpt-4o', p(2.5, 10, 1.25)],
  ['gpt-4o-mini', p(0.15, 0.6, 0.075)],
  ['gpt-4-turbo', p(10, 30)],
  ['gpt-4', p(30, 60)],
  ['gpt-3.5-turbo', p(0.5, 1.5)],
  ['o1', p(15, 60, 7.5)],
  ['o1-mini', p(1.1, 4.4, 0.55)],
  ['o3', p(2, 8, 0.5)],
  ['o3-mini', p(1.1, 4.4, 0.55)],
  ['o4-mini', p(1.1, 4.4, 0.275)],
  ['text-embedding-3-small', p(0.02, 0)],
  ['text-embedding-3-large', p(0.13, 0)],
  ['text-embedding-ada-002', p(0.1, 0)],
  // Anthropic (cached input = cache reads)
  ['claude-opus-4-5', p(5, 25, 0.5)],
  ['claude-opus-4-1', p(15, 75, 1.5)],
  ['claude-opus-4', p(15, 75, 1.5)],
  ['claude-sonnet-4-5', p(3, 15, 0.3)],
  ['claude-sonnet-4', p(3, 15, 0.3)],
  ['claude-haiku-4-5', p(1, 5, 0.1)],
  ['claude-3-7-sonnet', p(3, 15, 0.3)],
  ['claude-3-5-sonnet', p(3, 15, 0.3)],
  ['claude-3-5-haiku', p(0.8, 4, 0.08)],
  ['claude-3-opus', p(15, 75, 1.5)],
  ['claude-3-haiku', p(0.25, 1.25, 0.03)],
]);

const FREE: Price = Object.freeze(p(0, 0));
const cache = new Map<string, Price | undefined>();

/** The built-in price of a provider model name, by exact name or longest `name-…` prefix. */
export function tablePrice(upstreamModel: string): Price | undefined {
  if (cache.has(upstreamModel)) return cache.get(upstreamModel);
  let best: string | undefined;
  for (const k of PRICE_TABLE.keys()) {
    if ((upstreamModel === k || upstreamModel.startsWith(`${k}-`)) && (best === undefined || k.length > best.length)) best = k;
  }
  const found = best === undefined ? undefined : PRICE_TABLE.get(best);
  if (cache.size < 1000) cache.set(upstreamModel, found);
  return found;
}

/** The price that applies to a model entry: config first, then the table; mock models are free. */
export function priceOf(m: LlmModel): Price | undefined {
  if (m.price) return m.price;
  if (m.provider.type === 'mock') return FREE;
  return tablePrice(m.upstreamModel);
}

/** USD for a usage at a price; undefined when the price is unknown. */
export function costOf(u: Usage, price: Price | undefined): number | undefined {
  if (!price) return undefined;
  const cached = Math.min(u.cachedInputTokens, u.inputTokens);
  const usd = ((u.inputTokens - cached) * price.input + cached * price.cachedInput + u.outputTokens * price.output) / 1e6;
  return Math.round(usd * 1e9) / 1e9;
}
