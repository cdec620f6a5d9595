/**
 * Forwards one allowed A2A call to the remote agent and its answer back to the agent: the body the
 * agent sent, unchanged; the agent's credentials, cookies and `x-airlock-*` removed, the remote
 * agent's credentials injected; the answer streamed through as it arrives (SSE included), less the
 * remote agent's cookies, while a tap reads the task facts for the audit record. Extended cards are
 * the one answer rewritten, like the public card.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { A2ARemoteAgent } from '../../config/a2a.js';
import { ERROR_CODES, errorBody, type ErrorCode } from '../../errors.js';
import type { Exchange } from '../../pipeline/types.js';
import type { DoorContext } from '../../server/context.js';
import { sendError } from '../../server/respond.js';
import { upstreamFailure } from '../../upstream/dispatcher.js';
import { agentResponseHeaders, upstreamRequestHeaders } from '../../upstream/headers.js';
import { discard } from '../../upstream/relay.js';
import { parseCard, rewriteCard } from './card.js';
import { rpcError, sendRpcError, type RpcId } from './jsonrpc.js';
import { ResponseTap } from './tap.js';

/** Extended cards larger than this are refused, like public ones. */
const MAX_CARD_BYTES = 1024 * 1024;

/**
 * Cookies do not cross airlock in either direction. An auth front before the remote agent
 * (Cloudflare Access, say) answers the injected credential with a session cookie, which in the
 * agent's hands would reach the remote agent without airlock; and the agent's own cookies are not
 * airlock's to pass on. A Cookie header configured for the remote agent is injected after this.
 */
const AGENT_COOKIES: ReadonlySet<string> = new Set(['cookie']);
const UPSTREAM_COOKIES: ReadonlySet<string> = new Set(['set-cookie', 'set-cookie2']);
/** A rewritten card also has a new length and is no longer the entity the upstream's ETag named. */
const CARD_DROP: ReadonlySet<string> = new Set([...UPSTREAM_COOKIES, 'content-length', 'etag']);

export interface Forwarding {
  agent: A2ARemoteAgent;
  url: URL;
  method: 'GET' | 'POST' | 'DELETE';
  body: Buffer | undefined;
  /** JSON-RPC: errors are JSON-RPC errors with this id; REST: the SPEC's JSON error. */
  rpc: { id: RpcId } | undefined;
  /** Sent when the agent sent no A2A-Version (a 1.0 method name or path says which it speaks). */
  version: '1.0' | undefined;
  /** GetExtendedAgentCard: the answer is a card, rewritten before it reaches the agent. */
  card: { base: string } | undefined;
  /** Facts for the final audit record (binding, version, method name as sent …). */
  details: Record<string, unknown>;
}

/** Sends a gateway error in the binding's shape. */
export function refuseIn(res: ServerResponse, x: { id: string }, f: Pick<Forwarding, 'rpc'>, code: ErrorCode, message: string, opts: { rule?: string | undefined; retryAfterS?: number | undefined } = {}): void {
  if (f.rpc) sendRpcError(res, x.id, f.rpc.id, code, message, opts);
  else sendError(res, x.id, code, message, opts);
}

/** Calls the remote agent and relays its answer; reports the outcome to the pipeline. */
export async function forward(gw: DoorContext, x: Exchange, req: IncomingMessage, res: ServerResponse, f: Forwarding): Promise<void> {
  const signal = x.abort; // undici takes the emitter itself: no AbortSignal per call
  const headers = upstreamRequestHeaders(req.headers, f.agent.headers, AGENT_COOKIES);
  // The tap reads what passes; a compressed answer could not be read (nor a card rewritten).
  delete headers['accept-encoding'];
  if (f.version !== undefined && headers['a2a-version'] === undefined) headers['a2a-version'] = f.version;
  const bytesIn = f.body?.length ?? 0;
  let finished = false;
  const end: End = (status, code, message, bytesOut, tap, extra) => {
    if (finished) return;
    finished = true;
    const details: Record<string, unknown> = { ...f.details, ...extra };
    if (tap) {
      if (tap.facts.taskId !== undefined && x.target['taskId'] === undefined) x.target['taskId'] = tap.facts.taskId;
      if (tap.facts.contextId !== undefined && x.target['contextId'] === undefined) x.target['contextId'] = tap.facts.contextId;
      if (tap.facts.state !== undefined) details['state'] = tap.facts.state;
      if (tap.kind === 'sse') details['events'] = tap.facts.events;
      if (tap.facts.error !== undefined) details['upstreamError'] = tap.facts.error;
    }
    gw.pipeline.finish(x, { status, code, message, bytesIn, bytesOut, details });
  };

  const t0 = performance.now();
  let up;
  try {
    up = await gw.dispatcher.request({
      origin: f.url.origin,
      path: `${f.url.pathname}${f.url.search}`,
      method: f.method,
      headers,
      body: f.body ?? null,
      signal,
      headersTimeout: f.agent.timeoutMs,
      bodyTimeout: f.agent.timeoutMs,
    });
  } catch (e) {
    if (signal.aborted) return aborted(gw, x, res, f, end, 0, undefined, undefined);
    const fail = upstreamFailure(e);
    gw.log.warn({ exchange: x.id, a2aAgent: f.agent.name, err: (e as { code?: string }).code ?? String(e) }, 'A2A upstream call failed');
    refuseIn(res, x, f, fail.code, `${f.agent.name}: ${fail.message}`);
    return end(ERROR_CODES[fail.code].status, fail.code, fail.message, 0);
  }
  gw.metrics.upstreamDuration.labels('a2a', f.agent.name).observe((performance.now() - t0) / 1000);

  if (res.destroyed) {
    discard(up.body);
    return end(up.statusCode, undefined, 'the agent disconnected', 0);
  }
  if (f.card && up.statusCode >= 200 && up.statusCode < 300) return relayCard(gw, x, res, f, up, end);

  const contentType = String(up.headers['content-type'] ?? '');
  const encoded = up.headers['content-encoding'] !== undefined && up.headers['content-encoding'] !== 'identity';
  const tap = encoded ? undefined : new ResponseTap(/^text\/event-stream/i.test(contentType) ? 'sse' : 'json');
  res.writeHead(up.statusCode, agentResponseHeaders(up.headers, x.id, UPSTREAM_COOKIES));
  // Stream events must reach the agent as they arrive, not when a buffer fills.
  if (tap?.kind === 'sse') res.flushHeaders();
  let bytesOut = 0;
  const status = up.statusCode;
  const body = up.body;
  // Relayed by hand rather than with stream.pipeline, which would destroy the agent's response on
  // an upstream error before a last SSE event could say why the stream ended.
  body.on('data', (c: Buffer) => {
    bytesOut += c.length;
    tap?.write(c);
    if (!res.write(c)) body.pause();
  });
  res.on('drain', () => body.resume());
  res.on('close', () => {
    if (!res.writableFinished) body.destroy();
  });
  body.on('end', () => {
    res.end();
    tap?.end();
    end(status, undefined, undefined, bytesOut, tap);
  });
  body.on('error', (err: Error) => {
    if (signal.aborted) return aborted(gw, x, res, f, end, bytesOut, status, tap);
    res.destroy();
    const fail = upstreamFailure(err);
    end(status, fail.code, `the answer was cut: ${fail.message}`, bytesOut, tap);
  });
}

type End = (status: number | undefined, code: ErrorCode | undefined, message: string | undefined, bytesOut: number, tap?: ResponseTap, extra?: Record<string, unknown>) => void;

/** An extended card: read whole, rewritten like the public card, then sent. */
async function relayCard(gw: DoorContext, x: Exchange, res: ServerResponse, f: Forwarding, up: { statusCode: number; headers: Record<string, string | string[] | undefined>; body: AsyncIterable<Buffer> & { destroy(): void } }, end: End): Promise<void> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of up.body) {
      n += c.length;
      if (n > MAX_CARD_BYTES) {
        up.body.destroy(); // inside for-await: the iterator listens for the error
        refuseIn(res, x, f, 'upstream_error', `${f.agent.name}: the extended card is larger than ${MAX_CARD_BYTES} bytes`);
        return end(502, 'upstream_error', 'extended card too large', 0);
      }
      chunks.push(c);
    }
  } catch (e) {
    if (x.abort.aborted) return aborted(gw, x, res, f, end, 0, undefined, undefined);
    const fail = upstreamFailure(e);
    refuseIn(res, x, f, fail.code, `${f.agent.name}: ${fail.message}`);
    return end(ERROR_CODES[fail.code].status, fail.code, fail.message, 0);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let out: string;
  let upstreamError: unknown;
  if (f.rpc) {
    let env: Record<string, unknown> | undefined;
    try {
      env = JSON.parse(text) as Record<string, unknown>;
    } catch {
      env = undefined;
    }
    if (env && env['error'] !== undefined) {
      out = text; // the remote agent's own JSON-RPC error: nothing to rewrite
      upstreamError = env['error'];
    } else {
      const parsed = env ? parseCard(JSON.stringify(env['result'] ?? null), f.agent.cardUrl, f.agent.origins) : ({ ok: false, problem: 'the answer is not valid JSON' } as const);
      if (!parsed.ok) {
        refuseIn(res, x, f, 'upstream_error', `${f.agent.name}: the extended card could not be used: ${parsed.problem}`);
        return end(502, 'upstream_error', parsed.problem, 0);
      }
      out = JSON.stringify({ jsonrpc: '2.0', id: env!['id'] ?? f.rpc.id, result: rewriteCard(parsed.card, f.card!.base, f.agent.name, f.agent.cardUrl, f.agent.origins) });
    }
  } else {
    const parsed = parseCard(text, f.agent.cardUrl, f.agent.origins);
    if (!parsed.ok) {
      refuseIn(res, x, f, 'upstream_error', `${f.agent.name}: the extended card could not be used: ${parsed.problem}`);
      return end(502, 'upstream_error', parsed.problem, 0);
    }
    out = JSON.stringify(rewriteCard(parsed.card, f.card!.base, f.agent.name, f.agent.cardUrl, f.agent.origins));
  }
  if (res.destroyed) return end(up.statusCode, undefined, 'the agent disconnected', 0);
  const headers = agentResponseHeaders(up.headers, x.id, CARD_DROP);
  headers['content-length'] = String(Buffer.byteLength(out));
  res.writeHead(up.statusCode, headers);
  res.end(out);
  end(up.statusCode, undefined, undefined, Buffer.byteLength(out), undefined, { rewritten: 'card', ...(upstreamError !== undefined ? { upstreamError } : {}) });
}

/**
 * An exchange ended by a kill switch, shutdown, or the agent hanging up. A stream that already
 * started gets a last event saying why, when it can be added between whole events.
 */
function aborted(gw: DoorContext, x: Exchange, res: ServerResponse, f: Forwarding, end: End, bytesOut: number, status: number | undefined, tap: ResponseTap | undefined): void {
  const reason: unknown = x.abort.reason;
  const code: ErrorCode | undefined = reason === 'killed' ? 'killed' : reason === 'shutdown' ? 'upstream_error' : undefined;
  if (code === undefined) {
    gw.log.debug({ exchange: x.id }, 'agent disconnected; A2A call cancelled');
    return end(status, undefined, 'the agent disconnected before the answer ended', bytesOut, tap);
  }
  const message = code === 'killed' ? 'a kill switch stopped this call while it was in flight' : 'the gateway is shutting down; retry';
  if (!res.headersSent) refuseIn(res, x, f, code, message);
  else if (tap?.kind === 'sse' && tap.atBoundary && !res.writableEnded && !res.destroyed) {
    const event = f.rpc ? JSON.stringify({ jsonrpc: '2.0', id: f.rpc.id, error: rpcError(code, message, x.id) }) : errorBody(code, message, x.id);
    res.end(f.rpc ? `data: ${event}\n\n` : `event: error\ndata: ${event}\n\n`);
  } else res.destroy();
  end(status ?? ERROR_CODES[code].status, code, code === 'killed' ? 'stopped by a kill switch while in flight' : 'cut short by gateway shutdown', bytesOut, tap);
}
