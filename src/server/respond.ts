/** Writes the gateway's own error responses in the SPEC's JSON shape (section 10). */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ERROR_CODES, errorBody, type ErrorCode } from '../errors.js';

export interface ErrorOptions {
  rule?: string | undefined;
  retryAfterS?: number | undefined;
  /** Instead of the code's own status: forward-proxy mode answers `unauthenticated` with 407. */
  status?: number | undefined;
}

/** Sends `{"error": {type, code, message, request_id, rule?}}`; a no-op when headers are already out. */
export function sendError(res: ServerResponse, requestId: string, code: ErrorCode, message: string, opts: ErrorOptions = {}): void {
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  const body = errorBody(code, message, requestId, opts.rule);
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-airlock-request-id': requestId,
    'cache-control': 'no-store',
  };
  if (opts.retryAfterS !== undefined) headers['retry-after'] = String(opts.retryAfterS);
  res.writeHead(opts.status ?? ERROR_CODES[code].status, headers);
  res.end(body);
}

/** Sends a JSON body with a status. */
export function sendJson(res: ServerResponse, status: number, value: unknown, extra: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(body);
}

/**
 * `Expect: 100-continue`: the agent port answers it itself (see the server's checkContinue), only
 * once the gateway wants the body — so an oversized or refused upload is never sent at all.
 */
export function continueIfExpected(req: IncomingMessage, res: ServerResponse): void {
  const expect = req.headers.expect;
  if (expect !== undefined && expect.toLowerCase() === '100-continue' && !res.headersSent) res.writeContinue();
}
