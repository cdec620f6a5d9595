/**
 * The tools/call hot path to Streamable HTTP upstreams: one POST with undici over the shared
 * keep-alive Agent, its reply read as JSON or as an SSE stream, without the SDK client. The SDK
 * client (connection set-up, version negotiation, sessions, listings, every other method) costs
 * a Request/Response pair, web streams and zod validation of every message on each call; this
 * leg costs a JSON.parse. It speaks on the connection the SDK negotiated: the same protocol
 * version, session id and injected headers.
 *
 * A 2025-11-25 server may close the answer stream before answering (after an event with an id, so
 * the client can poll): the call is then resumed with a GET carrying `Last-Event-ID`, after the
 * server's `retry` interval, as the SDK client does.
 *
 * What it does not do it leaves to the SDK: an answer other than 200 with JSON or SSE comes back
 * as `NOT_HANDLED` (a 3xx or 4xx means the server did not run the call, so the caller may make it
 * again through the SDK client, which follows redirects and knows about sessions and header
 * mismatches). Tools that declare `x-mcp-header` parameters never come here (see Upstream).
 */
import { ExchangeAbort } from '../../pipeline/abort.js';
import { discard } from '../../upstream/relay.js';
import type { Readable } from 'node:stream';
import { readBounded } from '../../upstream/read.js';
import { decoded, sharedAgent } from './fetch.js';
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
  /** The exchange's abort handle: an emitter, no AbortSignal made per call (see pipeline/abort.ts). */
  abort: ExchangeAbort;
  timeoutMs: number;
  /** Progress from the upstream (its params, token left out); each one restarts the timeout. */
  onProgress?: ((p: Record<string, unknown>) => void) | undefined;
}

export const NOT_HANDLED = Symbol('not handled');

const CLIENT_INFO = { name: 'airlock', version: '0.1.0' };
/** How long the rest of an answered SSE stream may take to end before its connection is dropped. */
const DRAIN_MS = 5_000;
/** The largest answer (a JSON body, or one SSE event) read from an upstream: it is held whole in memory. */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
/** Resumptions in a row that bring no new event before the call fails (the SDK client's default). */
const MAX_IDLE_RESUMES = 2;
/** The wait before resuming when the server named none: the SDK client's backoff. */
const RESUME_DELAY_MS = 1_000;
const MAX_RESUME_DELAY_MS = 30_000;
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

  // This leg's own handle (undici takes the emitter as a request's signal): the exchange's abort and the timeout both end it.
  const ac = new ExchangeAbort();
  const onAbort = () => ac.abort(opts.abort.reason);
  if (opts.abort.aborted) throw opts.abort.reason;
  opts.abort.once('abort', onAbort);
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
    const r = await sharedAgent().request({ origin: leg.url.origin, path: `${leg.url.pathname}${leg.url.search}`, method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params }), signal: ac });
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
    if (type === 'application/json') message = JSON.parse((await readBounded(body, MAX_ANSWER_BYTES)).toString('utf8')) as Record<string, unknown>;
    else if (type !== 'text/event-stream') {
      discard(body);
      throw new Error(`the MCP server answered with content-type "${type}", neither JSON nor an SSE stream`);
    } else {
      const other = (m: Record<string, unknown>) => {
        if (m['method'] === 'notifications/progress' && opts.onProgress) {
          const { progressToken: _t, _meta: _m, ...p } = (m['params'] ?? {}) as Record<string, unknown>;
          arm();
          opts.onProgress(p);
        } else if (typeof m['method'] === 'string' && 'id' in m) answerServerRequest(leg, m['id'], m['method']);
      };
      let read = await untilAnswer(body, id, other, undefined);
      // Closed before the answer, after an event with an id: the server expects the client to come back for it.
      for (let idle = 0; !read.message && read.lastEventId !== undefined; ) {
        if (idle >= MAX_IDLE_RESUMES) throw new Error(`the MCP server closed its answer stream ${idle + 1} times in a row without sending anything new`);
        const delay = read.retryMs ?? Math.min(RESUME_DELAY_MS * 1.5 ** idle, MAX_RESUME_DELAY_MS);
        await sleep(delay, ac);
        const before = read.lastEventId;
        const resumed = await resume(leg, before, ac);
        read = await untilAnswer(resumed, id, other, read);
        idle = read.lastEventId === before ? idle + 1 : 0;
      }
      message = read.message;
      if (!message) throw read.error ?? new Error('the MCP server ended its answer stream without answering');
    }
    answered = true;
    return resultOf(message);
  } catch (e) {
    if (timedOut) throw new Error(`MCP request timed out after ${opts.timeoutMs} ms`);
    if (opts.abort.aborted) throw opts.abort.reason;
    throw e;
  } finally {
    clearTimeout(timer);
    opts.abort.removeListener('abort', onAbort);
    // Tell the server to stop working on a call nobody waits for any more.
    if (!answered && ac.aborted) notifyCancelled(leg, id, timedOut ? 'timeout' : 'cancelled');
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

/** What one SSE stream brought: the answer, or where to resume it from. */
interface StreamRead {
  message: Record<string, unknown> | undefined;
  /** The id of the last event with one, for `Last-Event-ID`. */
  lastEventId: string | undefined;
  /** The server's `retry` interval, the wait before resuming. */
  retryMs: number | undefined;
  /** Why the stream ended early, when it broke rather than ended. */
  error?: Error;
}

/**
 * Reads SSE events until the answer to `id` arrives; other messages go to `other`. The rest of the
 * stream is drained, not cut, so the connection stays in the pool (a server that does not end the
 * stream within DRAIN_MS loses it). A stream that ends or breaks before the answer resolves with
 * the last event id and retry interval seen so far (`prior` carries them from an earlier stream).
 */
function untilAnswer(body: Readable, id: string, other: (m: Record<string, unknown>) => void, prior: StreamRead | undefined): Promise<StreamRead> {
  return new Promise((resolve, reject) => {
    const read: StreamRead = { message: undefined, lastEventId: prior?.lastEventId, retryMs: prior?.retryMs };
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
        if (buf.length > MAX_ANSWER_BYTES) throw new Error(`an event of the answer stream is over ${MAX_ANSWER_BYTES} bytes; airlock does not relay it`);
        for (let end = eventEnd(buf, from); end !== undefined && !done; end = eventEnd(buf, 0)) {
          const event = parseEvent(buf.slice(0, end.at));
          buf = buf.slice(end.at + end.length);
          if (event.id !== undefined) read.lastEventId = event.id;
          if (event.retry !== undefined) read.retryMs = event.retry;
          const m = messageOf(event);
          if (!m) continue;
          if (m['id'] === id && ('result' in m || 'error' in m)) {
            done = true;
            read.message = m;
            const t = setTimeout(() => discard(body), DRAIN_MS).unref();
            body.once('close', () => clearTimeout(t));
            resolve(read);
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
    body.once('end', () => resolve(read));
    body.once('error', (e) => {
      if (done) return;
      done = true;
      // A broken stream is resumable like an ended one; without an event id it is the call's error.
      if (read.lastEventId === undefined) reject(e);
      else resolve({ ...read, error: e });
    });
  });
}

interface SseEvent {
  type: string | undefined;
  data: string;
  id: string | undefined;
  retry: number | undefined;
}

/** The fields of one SSE event (its `data:` lines joined). */
function parseEvent(text: string): SseEvent {
  const e: SseEvent = { type: undefined, data: '', id: undefined, retry: undefined };
  const data: string[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    const colon = line.indexOf(':');
    if (colon === 0) continue; // a comment
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(line.startsWith(' ', colon + 1) ? colon + 2 : colon + 1);
    if (field === 'data') data.push(value);
    else if (field === 'event') e.type = value.trim();
    else if (field === 'id' && !value.includes('\0')) e.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) e.retry = Number(value);
  }
  e.data = data.join('\n');
  return e;
}

/**
 * The JSON-RPC message of one SSE event, or undefined for what is not one: events of another type
 * (`event: heartbeat`), priming events without data, and data that is not a JSON object. The SDK
 * client skips those too rather than failing the call.
 */
function messageOf(event: SseEvent): Record<string, unknown> | undefined {
  if (event.type !== undefined && event.type !== '' && event.type !== 'message') return undefined;
  if (event.data === '') return undefined;
  try {
    const m = JSON.parse(event.data) as unknown;
    return m !== null && typeof m === 'object' && !Array.isArray(m) ? (m as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Picks an answer stream up again where it broke off (2025-11-25 resumability). */
async function resume(leg: HttpLeg, lastEventId: string, signal: ExchangeAbort): Promise<Readable> {
  const headers: Record<string, string> = { ...requestHeaders(leg), accept: 'text/event-stream', 'last-event-id': lastEventId };
  delete headers['content-type'];
  const r = await sharedAgent().request({ origin: leg.url.origin, path: `${leg.url.pathname}${leg.url.search}`, method: 'GET', headers, signal });
  const type = String(r.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (r.statusCode !== 200 || type !== 'text/event-stream') {
    discard(r.body);
    throw new Error(`the MCP server refused to resume the answer stream (HTTP ${r.statusCode}${type ? `, ${type}` : ''})`);
  }
  const encoding = r.headers['content-encoding'];
  return decoded(r.body, typeof encoding === 'string' ? encoding : undefined);
}

function sleep(ms: number, abort: ExchangeAbort): Promise<void> {
  return new Promise((resolve, reject) => {
    if (abort.aborted) return reject(abort.reason);
    const onAbort = () => (clearTimeout(t), reject(abort.reason));
    const t = setTimeout(() => (abort.removeListener('abort', onAbort), resolve()), ms);
    abort.once('abort', onAbort);
  });
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

const BASE64_CANONICAL = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * An `Mcp-Name` (or `Mcp-Param-*`) header value as the client meant it: a value that could not go in
 * a header as it is (non-ASCII, or with edge whitespace) arrives as `=?base64?<UTF-8 as base64>?=`.
 * Undefined when it carries that sentinel but no canonical base64 of valid UTF-8 (the spec says to
 * refuse such a value).
 */
export function fromHeaderValue(v: string): string | undefined {
  if (!(v.startsWith('=?base64?') && v.endsWith('?=') && v.length >= 11)) return v;
  const b64 = v.slice(9, -2);
  if (!BASE64_CANONICAL.test(b64)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(b64, 'base64'));
  } catch {
    return undefined;
  }
}

/** SEP-2243: a header value the server can read back exactly (base64 when it could not be); the inverse of `fromHeaderValue`. */
function headerValue(s: string): string {
  // eslint-disable-next-line no-control-regex -- printable ASCII and tab are what may go as they are
  const plain = s.length > 0 && s === s.trim() && /^[\t\x20-\x7e]*$/.test(s) && !(s.startsWith('=?base64?') && s.endsWith('?='));
  return plain ? s : `=?base64?${Buffer.from(s, 'utf8').toString('base64')}?=`;
}
