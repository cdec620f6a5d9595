/**
 * The `openai`, `openai-compatible` and `anthropic` providers: one undici request to the provider's
 * base URL + the route's path, with the provider's key injected and only the agent headers a
 * provider needs passed on (never the agent's key, cookies or `x-airlock-*`).
 */
import type { Dispatcher } from 'undici';
import type { ProviderCall, UpstreamReply } from './types.js';

/** Agent headers passed to providers; `x-stainless-*` (SDK telemetry) too. */
const PASS = ['content-type', 'accept', 'user-agent', 'openai-organization', 'openai-project', 'openai-beta', 'anthropic-version', 'anthropic-beta', 'idempotency-key'] as const;

/** The headers sent to the provider for one call. */
export function providerHeaders(call: ProviderCall): Record<string, string> {
  const h = call.agentHeaders;
  const out: Record<string, string> = {};
  for (const k of PASS) {
    const v = h[k];
    if (typeof v === 'string') out[k] = v;
  }
  for (const k in h) {
    if (k.startsWith('x-stainless-')) {
      const v = h[k];
      if (typeof v === 'string') out[k] = v;
    }
  }
  out['content-type'] ??= 'application/json';
  // Usage is read from the bytes as they pass: they must not arrive compressed.
  out['accept-encoding'] = 'identity';
  const p = call.model.provider;
  for (const [k, v] of p.defaultHeaders) out[k] ??= v;
  for (const [k, v] of p.headers) out[k] = v;
  return out;
}

/** Calls an HTTP provider; rejects with undici's error when it cannot be reached. */
export async function callHttpProvider(dispatcher: Dispatcher, call: ProviderCall): Promise<UpstreamReply> {
  const p = call.model.provider;
  const path = `${p.basePath}${p.type === 'anthropic' ? '/v1' : ''}${call.route.path}${call.route.query}`;
  const r = await dispatcher.request({
    origin: p.origin,
    path,
    method: 'POST',
    headers: providerHeaders(call),
    body: call.body,
    signal: call.signal,
    headersTimeout: call.timeoutMs,
    bodyTimeout: call.timeoutMs,
  });
  return { statusCode: r.statusCode, headers: r.headers, body: r.body };
}
