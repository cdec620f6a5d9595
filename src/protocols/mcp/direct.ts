/**
 * The tools/call hot path to Streamable HTTP upstreams: one POST with undici over the shared
 * keep-alive Agent, its reply read as JSON or as an SSE stream, without the SDK client. The SDK
 * client (connection set-up, version negotiation, sessions, listings, every other method) costs
 * a Request/Response pair, web streams and zod validation of every message on each call; this
 * leg costs a JSON.parse. It speaks on the connection the SDK negotiated: the same protocol
 * version, session id and injected headers.
 *
 * What it does not do it leaves to the SDK: an answer other than 200 with JSON or SSE comes back
 * as `NOT_HANDLED` (a 3xx or 4xx means the server did not run the call, so the caller may make it
 * again through the SDK client, which follows redirects and knows about sessions and header
 * mismatches). Tools that declare `x-mcp-header` parameters never come here (see Upstream).
 */
import { discard } from '../../upstream/relay.js';
import type { Readable } from 'node:stream';
import { decoded, readAll, sharedAgent } from './fetch.js';
import { PROTOCOL_VERSION_META } from './wire.js';

/** What the SDK negotiated with one Streamable HTTP upstream. */
export interface HttpLeg {
  url: URL;
  /** Injected credentials and other configured headers. */
  headers: Record<string, string>;
  protocolVersion: string;
  /** 2026-07-28: per-request `_meta` envelope and Mcp-Method/Mcp-Name headers. */
  modern: boolean;
  sessionId: string | undefined;
}

export interface DirectCallOptions {
  signal: AbortSignal;
  timeoutMs: number;
  /** Progress from the upstream (its params, token left out); each one restarts the timeout. */
  onProgress?: ((p: Record<string, unknown>) => void) | undefined;
}

export const NOT_HANDLED = Symbol('not handled');

const CLIENT_INFO = { name: 'airlock', version: '0.1.0' };
/** How long the rest of an answered SSE stream may take to end before its connection is dropped. */
const DRAIN_MS = 5_000;
let nextId = 0;

/** A JSON-RPC error answer from the upstream, worded as the SDK words it. */
export class UpstreamRpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data: unknown,
  ) {
    super(`MCP error ${code}: ${message}`);
  }
}

/** Calls a tool on the upstream; the result object as the upstream sent it, or NOT_HANDLED. */
export async function directToolCall(leg: HttpLeg, name: string, args: Record<string, unknown> | undefined, opts: DirectCallOptions): Promise<Record<string, unknown> | typeof NOT_HANDLED> {
  // String ids never meet the SDK client's numeric ones on a shared session.
  const id = `airlock-${++nextId}`;
  const meta: Record<string, unknown> = {};
  if (opts.onProgress) meta['progressToken'] = id;
  if (leg.modern) Object.assign(meta, { [PROTOCOL_VERSION_META]: leg.protocolVersion, 'io.modelcontextprotocol/clientInfo': CLIENT_INFO, 'io.modelcontextprotocol/clientCapabilities': {} });
  const params: Record<string, unknown> = { name, ...(args ? { arguments: args } : {}), ...(Object.keys(meta).length > 0 ? { _meta: meta } : {}) };
  const headers = requestHeaders(leg);
  if (leg.modern) {
    headers['mcp-method'] = 'tools/call';
    headers['mcp-name'] = headerValue(name);
  }

  const ac = new AbortController();
  const onAbort = () => ac.abort(opts.signal.reason);
  if (opts.signal.aborted) throw opts.signal.reason;
  opts.signal.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      ac.abort(new Error(`Request timed out after ${opts.timeoutMs} ms`));
    }, opts.timeoutMs);
  };
  arm();
  let answered = false;
  try {
    const r = await sharedAgent().request({ origin: leg.url.origin, path: `${leg.url.pathname}${leg.url.search}`, method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params }), signal: ac.signal });
    const type = String(r.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
    if (r.statusCode !== 200) {
      r.body.resume();
      // A 3xx or 4xx: the call was not made, and the SDK client knows what to do with it.
      if (r.statusCode >= 300 && r.statusCode < 500) return NOT_HANDLED;
      throw new Error(`HTTP ${r.statusCode} from the MCP server`);
    }
    const encoding = r.headers['content-encoding'];
    const body = decoded(r.body, typeof encoding === 'string' ? encoding : undefined);
    let message: Record<string, unknown> | undefined;
    if (type === 'application/json') message = JSON.parse((await readAll(body)).toString('utf8')) as Record<string, unknown>;
    else if (type !== 'text/event-stream') {
      discard(body);
      throw new Error(`the MCP server answered with content-type "${type}", neither JSON nor an SSE stream`);
    } else {
      message = await untilAnswer(body, id, (m) => {
        if (m['method'] === 'notifications/progress' && opts.onProgress) {
          const { progressToken: _t, _meta: _m, ...p } = (m['params'] ?? {}) as Record<string, unknown>;
          arm();
          opts.onProgress(p);
        } else if (typeof m['method'] === 'string' && 'id' in m) answerServerRequest(leg, m['id'], m['method']);
      });
      if (!message) throw new Error('the MCP server ended its answer stream without answering');
    }
    answered = true;
    return resultOf(message);
  } catch (e) {
    if (timedOut) throw new Error(`MCP request timed out after ${opts.timeoutMs} ms`);
    if (opts.signal.aborted) throw opts.signal.reason;
    throw e;
  } finally {
    clearTimeout(timer);
    opts.signal.removeEventListener('abort', onAbort);
    // Tell the server to stop working on a call nobody waits for any more.
    if (!answered && ac.signal.aborted) notifyCancelled(leg, id, timedOut ? 'timeout' : 'cancelled');
  }
}

function requestHeaders(leg: HttpLeg): Record<string, string> {
  const h: Record<string, string> = { ...leg.headers, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': leg.protocolVersion };
  if (leg.sessionId !== undefined) h['mcp-session-id'] = leg.sessionId;
  return h;
}

/** The result of a JSON-RPC answer; its error, thrown. */
function resultOf(m: Record<string, unknown>): Record<string, unknown> {
  const err = m['error'] as { code?: unknown; message?: unknown; data?: unknown } | undefined;
  if (err !== undefined && err !== null) throw new UpstreamRpcError(typeof err.code === 'number' ? err.code : -32603, String(err.message ?? 'error'), err.data);
  const result = m['result'];
  if (result === null || typeof result !== 'object' || Array.isArray(result)) throw new Error('the MCP server answered without a result object');
  const r = result as Record<string, unknown>;
  if (r['resultType'] === undefined) return r;
  // 2026-07-28: "input_required" asks the client for more; airlock's upstream client offers no such capability.
  if (r['resultType'] !== 'complete') throw new Error(`the MCP server answered with resultType "${String(r['resultType'])}", which airlock does not take`);
  // The wire envelope of the upstream leg, not part of the result (the SDK client drops it too; airlock adds its own for 2026-07-28 agents).
  const { resultType: _rt, ttlMs: _ttl, cacheScope: _cs, ...rest } = r;
  return rest;
}

/**
 * Reads SSE events until the answer to `id` arrives; other messages go to `other`. The rest of the
 * stream is drained, not cut, so the connection stays in the pool (a server that does not end the
 * stream within DRAIN_MS loses it).
 */
function untilAnswer(body: Readable, id: string, other: (m: Record<string, unknown>) => void): Promise<Record<string, unknown> | undefined> {
  return new Promise((resolve, reject) => {
    let buf = '';
    // Where to look for the next event's end: only new text is searched, so a long event arriving
    // in many chunks costs linear time (searching the whole buffer per chunk was quadratic).
    let from = 0;
    let done = false;
    body.setEncoding('utf8');
    body.on('data', (chunk: string) => {
      if (done) return;
      buf += chunk;
      try {
        for (let end = eventEnd(buf, from); end !== undefined && !done; end = eventEnd(buf, 0)) {
          const event = buf.slice(0, end.at);
          buf = buf.slice(end.at + end.length);
          const m = messageOf(event);
          if (!m) continue;
          if (m['id'] === id && ('result' in m || 'error' in m)) {
            done = true;
            const t = setTimeout(() => discard(body), DRAIN_MS).unref();
            body.once('close', () => clearTimeout(t));
            resolve(m);
          } else other(m);
        }
      } catch (e) {
        done = true;
        discard(body);
        reject(e);
      }
      // A separator may straddle two chunks: look again from just before this chunk's text.
      from = Math.max(0, buf.length - 3);
    });
    body.once('end', () => resolve(undefined));
    body.once('error', (e) => {
      if (!done) reject(e);
    });
  });
}

/**
 * The JSON-RPC message of one SSE event, or undefined for what is not one: events of another type
 * (`event: heartbeat`), priming events without data, and data that is not a JSON object. The SDK
 * client skips those too rather than failing the call.
 */
function messageOf(event: string): Record<string, unknown> | undefined {
  const lines = event.split(/\r\n|\r|\n/);
  const type = lines.find((l) => l.startsWith('event:'))?.slice(6).trim();
  if (type !== undefined && type !== '' && type !== 'message') return undefined;
  const data = dataOf(lines);
  if (data === '') return undefined;
  try {
    const m = JSON.parse(data) as unknown;
    return m !== null && typeof m === 'object' && !Array.isArray(m) ? (m as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The data of one SSE event (its `data:` lines joined). */
function dataOf(lines: string[]): string {
  return lines
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
    .join('\n');
}

/** Where the first complete SSE event ends (a blank line), and the separator's length. */
function eventEnd(buf: string, from: number): { at: number; length: number } | undefined {
  const re = /\r\n\r\n|\n\n|\r\r/g;
  re.lastIndex = from;
  const m = re.exec(buf);
  return m ? { at: m.index, length: m[0].length } : undefined;
}

/** Fire and forget: a POST the upstream may or may not take; nothing waits for it. */
function post(leg: HttpLeg, message: unknown): void {
  sharedAgent()
    .request({ origin: leg.url.origin, path: `${leg.url.pathname}${leg.url.search}`, method: 'POST', headers: requestHeaders(leg), body: JSON.stringify(message) })
    .then((r) => r.body.resume())
    .catch(() => {});
}

function notifyCancelled(leg: HttpLeg, requestId: string, reason: string): void {
  const meta = leg.modern ? { _meta: { [PROTOCOL_VERSION_META]: leg.protocolVersion } } : {};
  post(leg, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason, ...meta } });
}

/** A request from the server during a call: ping is answered, as the SDK client would; airlock's upstream client offers no sampling, elicitation or roots. */
function answerServerRequest(leg: HttpLeg, id: unknown, method: string): void {
  post(leg, method === 'ping' ? { jsonrpc: '2.0', id, result: {} } : { jsonrpc: '2.0', id, error: { code: -32601, message: 'Method not found' } });
}

/** SEP-2243: a header value the server can read back exactly (base64 when it could not be). */
function headerValue(s: string): string {
  // eslint-disable-next-line no-control-regex -- printable ASCII and tab are what may go as they are
  const plain = s.length > 0 && s === s.trim() && /^[\t\x20-\x7e]*$/.test(s) && !(s.startsWith('=?base64?') && s.endsWith('?='));
  return plain ? s : `=?base64?${Buffer.from(s, 'utf8').toString('base64')}?=`;
}
