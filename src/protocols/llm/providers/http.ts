/**
 * The `openai`, `openai-compatible` and `anthropic` providers: one undici request to the provider's
 * base URL + the route's path, with the provider's key injected and only the agent headers a
 * provider needs passed on (never the agent's key, cookies or `x-airlock-*`).
 */
import type { Duplex } from 'node:stream';
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

/**
 * Passes undici's (legacy) handler callbacks through, and tells `sent` when the request has been
 * written to the socket whole. undici calls `onRequestSent` on handlers that have it; the handler
 * `request()` makes has none, so this one needs no other behaviour than passing everything on.
 */
class SentHandler implements Dispatcher.DispatchHandler {
  constructor(
    private readonly inner: Dispatcher.DispatchHandler,
    private readonly sent: () => void,
  ) {}
  onConnect(abort: (err?: Error) => void): void {
    this.inner.onConnect?.(abort);
  }
  onError(err: Error): void {
    this.inner.onError?.(err);
  }
  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.inner.onUpgrade?.(statusCode, headers, socket);
  }
  onResponseStarted(): void {
    this.inner.onResponseStarted?.();
  }
  onHeaders(statusCode: number, headers: Buffer[], resume: () => void, statusText: string): boolean {
    return this.inner.onHeaders?.(statusCode, headers, resume, statusText) ?? true;
  }
  onData(chunk: Buffer): boolean {
    return this.inner.onData?.(chunk) ?? true;
  }
  onComplete(trailers: string[] | null): void {
    this.inner.onComplete?.(trailers);
  }
  onBodySent(chunkSize: number, totalBytesSent: number): void {
    this.inner.onBodySent?.(chunkSize, totalBytesSent);
  }
  onRequestSent(): void {
    this.sent();
  }
}

/** The request options of a call that wants to hear when its request was sent (read by `reportingSent`). */
type SentOptions = Dispatcher.DispatchOptions & { airlockOnSent?: () => void };

/**
 * `dispatcher` with an interceptor that wraps the handler of each request carrying `airlockOnSent`
 * in a SentHandler; made once per dispatcher, not per call (a composed dispatcher per call was a
 * few objects and closures on every LLM call's path).
 */
const reporting = new WeakMap<Dispatcher, Dispatcher>();
function reportingSent(dispatcher: Dispatcher): Dispatcher {
  let d = reporting.get(dispatcher);
  if (d === undefined) {
    d = dispatcher.compose((dispatch) => (opts, handler) => {
      const sent = (opts as SentOptions).airlockOnSent;
      return dispatch(opts, sent ? new SentHandler(handler, sent) : handler);
    });
    reporting.set(dispatcher, d);
  }
  return d;
}

/** Calls an HTTP provider; rejects with undici's error when it cannot be reached. */
export async function callHttpProvider(dispatcher: Dispatcher, call: ProviderCall): Promise<UpstreamReply> {
  const p = call.model.provider;
  const path = `${p.basePath}${p.type === 'anthropic' ? '/v1' : ''}${call.route.path}${call.route.query}`;
  // undici hands request() options to the dispatch chain as they are, extra keys included.
  const r = await reportingSent(dispatcher).request({
    origin: p.origin,
    path,
    method: 'POST',
    headers: providerHeaders(call),
    body: call.body,
    signal: call.signal,
    headersTimeout: call.timeoutMs,
    bodyTimeout: call.timeoutMs,
    airlockOnSent: call.onSent,
  } as Dispatcher.RequestOptions);
  return { statusCode: r.statusCode, headers: r.headers, body: r.body };
}
