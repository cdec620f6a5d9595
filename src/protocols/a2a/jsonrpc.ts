/**
 * The JSON-RPC 2.0 envelope of the A2A JSON-RPC binding: reading a request, and writing the
 * gateway's own errors as JSON-RPC errors with `error.data.airlock_code`.
 *
 * Errors about the call go out with HTTP 200, as A2A servers send theirs: many A2A clients raise a
 * bare HTTP error on any other status and never read the body, which would hide `airlock_code` from
 * the agent. The SPEC's HTTP status is in `error.data.http_status`; limits also set `Retry-After`.
 * A URL that names no configured agent is the exception: 404, like any unknown route.
 */
import type { ServerResponse } from 'node:http';
import { ERROR_CODES, type ErrorCode } from '../../errors.js';
import { ambiguousJson } from './duplicate-keys.js';

export type RpcId = string | number | null;

export interface RpcRequest {
  id: RpcId;
  method: string;
  params: Record<string, unknown>;
}

/** JSON-RPC 2.0's own codes. */
export const RPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
} as const;

/**
 * The JSON-RPC code of a gateway error: JSON-RPC's own for malformed calls and internal failures;
 * otherwise -31000 minus the SPEC's HTTP status (-31403 denied, -31429 limited, -31404 unknown agent,
 * -31502 upstream …), outside the ranges JSON-RPC and A2A reserve.
 */
export function rpcCodeFor(code: ErrorCode): number {
  if (code === 'bad_request') return RPC.INVALID_PARAMS;
  if (code === 'internal_error') return RPC.INTERNAL_ERROR;
  return -31000 - ERROR_CODES[code].status;
}

export type RpcParse = { ok: true; req: RpcRequest } | { ok: false; id: RpcId; rpcCode: number; message: string };

function validId(v: unknown): v is RpcId {
  return v === null || typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v));
}

/**
 * Reads a JSON-RPC request body; batches and notifications are not part of A2A, and neither are
 * bodies with a duplicate key (see duplicate-keys.ts: the body is forwarded as sent).
 */
export function parseRpc(body: Buffer): RpcParse {
  const text = body.toString('utf8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, id: null, rpcCode: RPC.PARSE_ERROR, message: 'the request body is not valid JSON' };
  }
  if (Array.isArray(v)) return { ok: false, id: null, rpcCode: RPC.INVALID_REQUEST, message: 'JSON-RPC batches are not part of A2A; send one request per call' };
  if (v === null || typeof v !== 'object') return { ok: false, id: null, rpcCode: RPC.INVALID_REQUEST, message: 'a JSON-RPC request is a JSON object' };
  const o = v as Record<string, unknown>;
  const id = validId(o['id']) ? o['id'] : null;
  const ambiguous = ambiguousJson(text);
  if (ambiguous !== undefined) return { ok: false, id, rpcCode: RPC.INVALID_REQUEST, message: `the request cannot be judged as sent (${ambiguous}): the remote agent may read it differently from airlock; send each key once` };
  if (o['jsonrpc'] !== '2.0') return { ok: false, id, rpcCode: RPC.INVALID_REQUEST, message: 'the request must have "jsonrpc": "2.0"' };
  if (typeof o['method'] !== 'string' || o['method'] === '') return { ok: false, id, rpcCode: RPC.INVALID_REQUEST, message: 'the request must name a "method"' };
  if (!('id' in o)) return { ok: false, id: null, rpcCode: RPC.INVALID_REQUEST, message: 'the request needs an "id": A2A methods all answer, so notifications are not accepted' };
  if (!validId(o['id'])) return { ok: false, id: null, rpcCode: RPC.INVALID_REQUEST, message: '"id" must be a string, a number or null' };
  const params = o['params'];
  if (params !== undefined && (params === null || typeof params !== 'object' || Array.isArray(params))) {
    return { ok: false, id, rpcCode: RPC.INVALID_PARAMS, message: '"params" must be a JSON object' };
  }
  return { ok: true, req: { id, method: o['method'], params: (params as Record<string, unknown> | undefined) ?? {} } };
}

export interface RpcErrorOptions {
  rpcCode?: number | undefined;
  /** The HTTP status, when the error is about the URL rather than the call (an unknown agent). */
  httpStatus?: number | undefined;
  rule?: string | undefined;
  retryAfterS?: number | undefined;
}

/** The JSON-RPC error object for a gateway error. */
export function rpcError(code: ErrorCode, message: string, requestId: string, opts: RpcErrorOptions = {}): Record<string, unknown> {
  const data: Record<string, unknown> = { airlock_code: code, http_status: ERROR_CODES[code].status, request_id: requestId };
  if (opts.rule !== undefined) data['rule'] = opts.rule;
  if (opts.retryAfterS !== undefined) data['retry_after'] = opts.retryAfterS;
  return { code: opts.rpcCode ?? rpcCodeFor(code), message: `airlock: ${code}: ${message}`, data };
}

/** Sends a gateway error as a JSON-RPC error response; destroys the connection if headers are out. */
export function sendRpcError(res: ServerResponse, requestId: string, id: RpcId, code: ErrorCode, message: string, opts: RpcErrorOptions = {}): void {
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  const body = JSON.stringify({ jsonrpc: '2.0', id, error: rpcError(code, message, requestId, opts) });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-airlock-request-id': requestId,
    'cache-control': 'no-store',
  };
  if (opts.retryAfterS !== undefined) headers['retry-after'] = String(opts.retryAfterS);
  res.writeHead(opts.httpStatus ?? 200, headers);
  res.end(body);
}
