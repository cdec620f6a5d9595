/** What the forwarding loop asks of a provider, and what it gets back: the same for HTTP providers and the mock. */
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { LlmModel } from '../../../config/llm.js';
import type { LlmRoute } from '../routes.js';

export interface ProviderCall {
  route: LlmRoute;
  model: LlmModel;
  /** The bytes to send: the agent's own, unless airlock had to change the request. */
  body: Buffer;
  /** The request as sent, parsed (the mock answers from it). */
  parsed: Record<string, unknown>;
  agentHeaders: IncomingHttpHeaders;
  signal: AbortSignal;
  timeoutMs: number;
  /** Told once the whole request has reached the provider: from then on the provider may bill it. */
  onSent?: () => void;
}

export interface UpstreamReply {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

export type CallProvider = (dispatcher: Dispatcher, call: ProviderCall) => Promise<UpstreamReply>;
