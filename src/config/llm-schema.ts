/**
 * The `llm:` section of the config file (SPEC section 5.2): providers (where calls go and with which
 * credentials) and models (what agents may ask for, at what price, with which fallbacks).
 */
import { z } from 'zod';

const duration = z.union([z.string().regex(/^\s*\d+(\.\d+)?\s*(ms|s|m|min|h|hour|d|day)\s*$/i, 'expected a duration such as 500ms, 30s, 5m'), z.number().nonnegative()]);
const size = z.union([z.string().regex(/^\s*\d+(\.\d+)?\s*(b|kb|mb|gb)?\s*$/i, 'expected a size such as 512kb, 10mb'), z.number().int().nonnegative()]);
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'names use letters, digits, _ . - (at most 64, starting with a letter or digit)');
const usd = z.number().nonnegative();

const price = z
  .strictObject({
    input: usd.describe('USD per million input tokens'),
    output: usd.describe('USD per million output tokens'),
    cachedInput: usd.optional().describe('USD per million cached input tokens; default: the input price'),
  })
  .describe('USD per million tokens; overrides the built-in price table');

const provider = z.strictObject({
  type: z.enum(['openai', 'openai-compatible', 'anthropic', 'mock']),
  url: z.url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' }).optional().describe('base URL; openai: https://api.openai.com/v1, anthropic: https://api.anthropic.com (required for openai-compatible)'),
  key: z.string().optional().describe('the provider API key, usually ${env:NAME}; injected by airlock, never seen by agents'),
  headers: z.record(z.string(), z.string()).optional().describe('extra headers on every call (OpenAI-Organization, OpenAI-Project, anthropic-beta …)'),
  version: z.string().optional().describe('anthropic: the anthropic-version sent when the agent sends none (default 2023-06-01)'),
  timeout: duration.optional(),
  includeUsage: z.boolean().optional().describe('openai, openai-compatible: ask for stream_options.include_usage on chat streams (default true)'),
  // mock only
  reply: z.string().optional().describe('mock: canned reply text; default: echo the last user message'),
  latency: duration.optional().describe('mock: delay before answering'),
  chunkDelay: duration.optional().describe('mock: delay between streamed chunks'),
  status: z.number().int().min(400).max(599).optional().describe('mock: fail every call with this HTTP status'),
  message: z.string().optional().describe('mock: the error message that goes with status'),
});

const model = z.strictObject({
  provider: name,
  model: z.string().min(1).optional().describe("the provider's model name; default: this entry's name"),
  price: price.optional(),
  fallback: z.array(z.string().min(1)).optional().describe('models tried in order on 429, 5xx, timeouts and connection errors, before the first byte reaches the agent'),
  timeout: duration.optional().describe('time to the response headers, and between body chunks'),
  firstTokenTimeout: duration.optional().describe('streams: time to the first chunk; past it the next fallback is tried'),
  maxOutputTokens: z.number().int().positive().optional().describe('output cap assumed for token and budget reservations when the request sets none'),
});

export const llmSection = z.strictObject({
  providers: z.record(name, provider).optional(),
  models: z.record(z.string(), model).optional().describe('what agents may ask for, by the name they send as "model" (1 to 200 characters, no spaces)'),
  maxBodySize: size.optional().describe('largest request body, default 10mb'),
  timeout: duration.optional().describe('default per-model timeout, default 10m'),
  firstTokenTimeout: duration.optional().describe('default first-token timeout for streams; none by default'),
  maxOutputTokens: z.number().int().positive().optional().describe('default output cap for reservations, default 4096'),
});

export type LlmSectionConfig = z.infer<typeof llmSection>;
