/**
 * Compiles the `llm:` section into the runtime model the LLM front door serves from: providers with
 * their injected headers, models with resolved providers, prices and fallback chains. A model whose
 * fallback cannot serve the same API shape is a config error here, not a surprise at request time.
 */
import type { LoadedConfig } from './load.js';
import type { LlmSectionConfig } from './llm-schema.js';
import { checkHeaderSafe, compileHeaders } from './headers.js';
import { parseDuration, parseSize } from './units.js';

export type ProviderType = 'openai' | 'openai-compatible' | 'anthropic' | 'mock';
/** The API shape an agent speaks: the OpenAI SDK's or the Anthropic SDK's. */
export type Surface = 'openai' | 'anthropic';

export interface MockSettings {
  reply: string | undefined;
  latencyMs: number;
  chunkDelayMs: number;
  status: number | undefined;
  message: string | undefined;
}

export interface LlmProvider {
  name: string;
  type: ProviderType;
  /** `https://api.openai.com` (no path). */
  origin: string;
  /** The base URL's path without a trailing slash (`/v1` for OpenAI). */
  basePath: string;
  /** Injected on every call (credentials, org/project, extra headers), names lower-cased. */
  headers: [string, string][];
  /** Sent when the agent sends none of that name (`anthropic-version`). */
  defaultHeaders: [string, string][];
  timeoutMs: number | undefined;
  includeUsage: boolean;
  mock: MockSettings | undefined;
}

export interface Price {
  /** USD per million tokens. */
  input: number;
  output: number;
  cachedInput: number;
}

export interface LlmModel {
  /** What agents ask for (the `model` field), and what rules match (`llm: <name>`). */
  name: string;
  provider: LlmProvider;
  /** The name sent to the provider. */
  upstreamModel: string;
  /** Config override of the built-in price table. */
  price: Price | undefined;
  /** This model, then its fallbacks in order. */
  chain: LlmModel[];
  timeoutMs: number;
  firstTokenTimeoutMs: number | undefined;
  maxOutputTokens: number;
}

export interface LlmRuntime {
  providers: Map<string, LlmProvider>;
  models: Map<string, LlmModel>;
  maxBodySize: number;
}

const DEFAULT_URL: Partial<Record<ProviderType, string>> = { openai: 'https://api.openai.com/v1', anthropic: 'https://api.anthropic.com' };

/** Which surfaces a provider type can serve (translation between shapes comes later). */
export function surfacesOf(type: ProviderType): readonly Surface[] {
  if (type === 'mock') return ['openai', 'anthropic'];
  return type === 'anthropic' ? ['anthropic'] : ['openai'];
}

/** Builds the LLM runtime; throws ConfigError naming the line and key. */
export function compileLlm(c: LlmSectionConfig | undefined, loaded: LoadedConfig): LlmRuntime {
  const fail = loaded.fail;
  const providers = new Map<string, LlmProvider>();
  for (const [name, p] of Object.entries(c?.providers ?? {})) {
    const path = ['llm', 'providers', name];
    if (p.type !== 'mock') {
      for (const k of ['reply', 'latency', 'chunkDelay', 'status', 'message'] as const) {
        if (p[k] !== undefined) fail([...path, k], `"${k}" is a setting of mock providers; this provider is of type ${p.type}`);
      }
    }
    if (p.type === 'openai-compatible' && !p.url) fail([...path, 'url'], 'an openai-compatible provider needs the url of its OpenAI-shaped API, such as http://127.0.0.1:11434/v1');
    if (p.version !== undefined && p.type !== 'anthropic') fail([...path, 'version'], 'version (anthropic-version) applies to anthropic providers');
    const text = p.url ?? DEFAULT_URL[p.type] ?? 'http://mock.invalid';
    const url = new URL(text);
    if (url.search || url.hash) fail([...path, 'url'], 'the provider URL must not have a query or fragment');
    let basePath = url.pathname.replace(/\/+$/, '');
    // The Anthropic SDK's base URL has no /v1; accept one written out of OpenAI habit.
    if (p.type === 'anthropic') basePath = basePath.replace(/\/v1$/, '');
    const headers = compileHeaders(p.headers, path, fail);
    if (p.key !== undefined) {
      checkHeaderSafe(p.key, [...path, 'key'], fail, 'the key');
      if (p.type === 'anthropic') headers.push(['x-api-key', p.key]);
      else if (p.type !== 'mock') headers.push(['authorization', `Bearer ${p.key}`]);
    }
    const defaultHeaders: [string, string][] = p.type === 'anthropic' ? [['anthropic-version', p.version ?? '2023-06-01']] : [];
    providers.set(name, {
      name,
      type: p.type,
      origin: url.origin,
      basePath,
      headers,
      defaultHeaders,
      timeoutMs: p.timeout === undefined ? undefined : parseDuration(p.timeout)!,
      includeUsage: p.includeUsage ?? true,
      mock:
        p.type === 'mock'
          ? { reply: p.reply, latencyMs: parseDuration(p.latency ?? 0)!, chunkDelayMs: parseDuration(p.chunkDelay ?? 0)!, status: p.status, message: p.message }
          : undefined,
    });
  }

  const defaultTimeout = parseDuration(c?.timeout ?? '10m')!;
  const defaultFirstToken = c?.firstTokenTimeout === undefined ? undefined : parseDuration(c.firstTokenTimeout)!;
  const defaultMaxOut = c?.maxOutputTokens ?? 4096;
  const models = new Map<string, LlmModel>();
  const entries = Object.entries(c?.models ?? {});
  for (const [name, m] of entries) {
    if (!/^\S{1,200}$/.test(name)) fail(['llm', 'models', name], 'model names are 1 to 200 characters without spaces');
    const provider = providers.get(m.provider) ?? fail(['llm', 'models', name, 'provider'], `no provider named "${m.provider}" in llm.providers`);
    models.set(name, {
      name,
      provider,
      upstreamModel: m.model ?? name,
      price: m.price ? { input: m.price.input, output: m.price.output, cachedInput: m.price.cachedInput ?? m.price.input } : undefined,
      chain: [],
      timeoutMs: m.timeout !== undefined ? parseDuration(m.timeout)! : (provider.timeoutMs ?? defaultTimeout),
      firstTokenTimeoutMs: m.firstTokenTimeout !== undefined ? parseDuration(m.firstTokenTimeout)! : defaultFirstToken,
      maxOutputTokens: m.maxOutputTokens ?? defaultMaxOut,
    });
  }
  // Fallbacks are resolved once every entry exists; a fallback's own fallbacks are not followed.
  for (const [name, m] of entries) {
    const self = models.get(name)!;
    self.chain.push(self);
    (m.fallback ?? []).forEach((fb, i) => {
      const path = ['llm', 'models', name, 'fallback', i];
      const other = models.get(fb) ?? fail(path, `no model named "${fb}" in llm.models`);
      if (other === self) fail(path, 'a model cannot be its own fallback');
      if (self.chain.includes(other)) fail(path, `"${fb}" is listed twice`);
      const need = surfacesOf(self.provider.type);
      const have = surfacesOf(other.provider.type);
      const missing = need.filter((s) => !have.includes(s));
      if (missing.length > 0) {
        fail(path, `"${fb}" (provider ${other.provider.name}, type ${other.provider.type}) cannot stand in for "${name}" on the ${missing.join(' and ')} surface: a surface routes only to providers of its own shape`);
      }
      self.chain.push(other);
    });
  }
  return { providers, models, maxBodySize: parseSize(c?.maxBodySize ?? '10mb')! };
}
