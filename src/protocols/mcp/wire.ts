/**
 * The MCP wire as airlock serves it to agents: JSON-RPC messages over Streamable HTTP, answered as
 * one JSON body or as an SSE stream (when progress notifications must go out first), in the
 * session-based generation (2025-11-25 and earlier) and the stateless one (2026-07-28).
 */
import type { ServerResponse } from 'node:http';
import type { ErrorCode } from '../../errors.js';

export type RpcId = string | number;

export const MODERN_VERSION = '2026-07-28';
export const LEGACY_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'];
export const PROTOCOL_VERSION_META = 'io.modelcontextprotocol/protocolVersion';
export const SUBSCRIPTION_ID_META = 'io.modelcontextprotocol/subscriptionId';
export const SERVER_INFO = { name: 'airlock', version: '0.1.0' };

export const RPC = { PARSE_ERROR: -32700, INVALID_REQUEST: -32600, METHOD_NOT_FOUND: -32601, INVALID_PARAMS: -32602, INTERNAL_ERROR: -32603, AIRLOCK: -32003 } as const;

/** One response on its way: a JSON body, or an SSE stream once `stream()` was called. */
export class Reply {
  bytesOut = 0;
  /** 2026-07-28 cacheable results (listings, resources/read, prompts/get) carry cache hints; airlock's are per agent. */
  cacheable = false;
  private streaming = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly requestId: string,
    private readonly extraHeaders: Record<string, string> = {},
    /** 2026-07-28 results carry `resultType: "complete"`. */
    private readonly modern = false,
  ) {}

  /** Switches to an SSE response (so notifications can precede the result). */
  stream(): void {
    if (this.streaming || this.res.headersSent) return;
    this.streaming = true;
    this.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no', 'x-airlock-request-id': this.requestId, ...this.extraHeaders });
  }

  get isStreaming(): boolean {
    return this.streaming;
  }

  /** A notification before the result; dropped when the reply is a plain JSON body. */
  notify(method: string, params: unknown): void {
    if (!this.streaming || this.res.destroyed) return;
    this.write(JSON.stringify({ jsonrpc: '2.0', method, params }));
  }

  /** `text`, when given, is `JSON.stringify(result)` already made by the caller (not made twice). */
  result(id: RpcId, result: Record<string, unknown>, text?: string): void {
    if (text !== undefined && text.startsWith('{') && text.endsWith('}') && !('resultType' in result) && !('ttlMs' in result) && !('cacheScope' in result)) {
      // The same text JSON.stringify would give for the spread below: the added keys go last.
      const added = this.modern ? `"resultType":"complete"${this.cacheable ? ',"ttlMs":0,"cacheScope":"private"' : ''}` : '';
      const body = added === '' ? text : text === '{}' ? `{${added}}` : `${text.slice(0, -1)},${added}}`;
      this.final(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${body}}`, 200);
      return;
    }
    this.final(JSON.stringify({ jsonrpc: '2.0', id, result: this.modern ? { ...result, resultType: 'complete', ...(this.cacheable ? { ttlMs: 0, cacheScope: 'private' } : {}) } : result }), 200);
  }

  error(id: RpcId | null, code: number, message: string, data?: unknown, httpStatus = 200): void {
    const error: Record<string, unknown> = { code, message };
    if (data !== undefined) error['data'] = data;
    this.final(JSON.stringify({ jsonrpc: '2.0', id, error }), httpStatus);
  }

  private write(text: string): void {
    const s = `event: message\ndata: ${text}\n\n`;
    this.bytesOut += Buffer.byteLength(s);
    this.res.write(s);
  }

  private final(text: string, status: number): void {
    if (this.res.destroyed || this.res.writableEnded) return;
    if (this.streaming) {
      this.write(text);
      this.res.end();
      return;
    }
    this.bytesOut = Buffer.byteLength(text);
    this.res.writeHead(status, { 'content-type': 'application/json', 'content-length': this.bytesOut, 'cache-control': 'no-store', 'x-airlock-request-id': this.requestId, ...this.extraHeaders });
    this.res.end(text);
  }
}

/** A tool result that tells the model what airlock decided (SPEC 5.3). */
export function deniedResult(code: ErrorCode, message: string, requestId: string): Record<string, unknown> {
  return { content: [{ type: 'text', text: `airlock: ${code}: ${message}` }], isError: true, _meta: { 'airlock/error': { code, requestId } } };
}

/** For methods whose results cannot carry isError (resources/read, prompts/get): a JSON-RPC error. */
export function deniedError(code: ErrorCode, message: string, requestId: string): { code: number; message: string; data: Record<string, unknown> } {
  return { code: code === 'bad_request' ? RPC.INVALID_PARAMS : code === 'not_found' ? RPC.INVALID_PARAMS : RPC.AIRLOCK, message: `airlock: ${code}: ${message}`, data: { 'airlock/error': { code, requestId }, airlock_code: code, request_id: requestId } };
}

/** An SSE event on a long-lived stream (GET stream or subscriptions/listen). */
export function sseEvent(res: ServerResponse, message: unknown): void {
  if (!res.destroyed && !res.writableEnded) res.write(`event: message\ndata: ${JSON.stringify(message)}\n\n`);
}
