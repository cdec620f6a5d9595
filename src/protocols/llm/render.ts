/**
 * The gateway's own errors in the shape each SDK parses (SPEC section 10): the SPEC JSON on the
 * OpenAI surface (so `APIError.status` and `.code` come out right), Anthropic's
 * `{"type":"error","error":{"type","message"}}` plus an `airlock` member on the Anthropic surface.
 * Also the SSE error events that end a stream that broke after it started.
 */
import type { ServerResponse } from 'node:http';
import type { Surface } from '../../config/llm.js';
import { ERROR_CODES, errorBody, type ErrorCode } from '../../errors.js';

export interface LlmErrorOptions {
  rule?: string | undefined;
  retryAfterS?: number | undefined;
  /** Close the connection after answering (the agent's body was not read). */
  close?: boolean;
}

/** The JSON body of an error on `surface`. */
export function llmErrorBody(surface: Surface, code: ErrorCode, message: string, requestId: string, rule?: string): string {
  if (surface === 'openai') return errorBody(code, message, requestId, rule);
  const airlock: Record<string, string> = { code, request_id: requestId };
  if (rule !== undefined) airlock['rule'] = rule;
  return JSON.stringify({ type: 'error', error: { type: ERROR_CODES[code].anthropicType, message }, airlock });
}

/** Sends an error response; when the response has already started, cuts it instead. */
export function sendLlmError(res: ServerResponse, surface: Surface, requestId: string, code: ErrorCode, message: string, opts: LlmErrorOptions = {}): void {
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  const body = llmErrorBody(surface, code, message, requestId, opts.rule);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-airlock-request-id': requestId,
    'cache-control': 'no-store',
  };
  if (surface === 'anthropic') headers['request-id'] = requestId;
  else headers['x-request-id'] = requestId;
  if (opts.retryAfterS !== undefined) headers['retry-after'] = String(opts.retryAfterS);
  // Waiting or retrying cannot fix these; tell the SDKs not to retry them.
  if (code === 'budget_exceeded' || code === 'loop_detected' || code === 'denied' || code === 'killed') headers['x-should-retry'] = 'false';
  if (opts.close) headers['connection'] = 'close';
  res.writeHead(ERROR_CODES[code].status, headers);
  res.end(body);
}

/**
 * The SSE event that ends a broken stream. OpenAI SDKs throw `APIError` for a data object with an
 * `error` member; Anthropic SDKs throw for an `event: error`.
 */
export function sseErrorEvent(surface: Surface, code: ErrorCode, message: string, requestId: string): string {
  if (surface === 'anthropic') {
    return `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: ERROR_CODES[code].anthropicType, message }, airlock: { code, request_id: requestId } })}\n\n`;
  }
  return `event: error\ndata: ${JSON.stringify({ type: 'error', code, message, error: { type: 'airlock_error', code, message, request_id: requestId } })}\n\n`;
}
