/**
 * Forwards one allowed A2A call to the remote agent and its answer back to the agent: the body the
 * agent sent, unchanged; the agent's credentials, cookies and `x-airlock-*` removed, the remote
 * agent's credentials injected; the answer streamed through as it arrives (SSE included), less the
 * remote agent's cookies, while a tap reads the task facts for the audit record and for task
 * ownership (owners.ts). Extended cards are rewritten like the public card, and task lists cut down
 * to the caller's own tasks.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { A2ARemoteAgent } from '../../config/a2a.js';
import { ERROR_CODES, errorBody, type ErrorCode } from '../../errors.js';
import type { Exchange } from '../../pipeline/types.js';
import type { DoorContext } from '../../server/context.js';
import { sendError } from '../../server/respond.js';
import { upstreamFailure } from '../../upstream/dispatcher.js';
import { agentResponseHeaders, upstreamRequestHeaders } from '../../upstream/headers.js';
import { discard } from '../../upstream/relay.js';
import { MAX_NESTING, nestedDeeperThan } from '../json.js';
import { parseCard, rewriteCard } from './card.js';
import { rpcError, sendRpcError, type RpcId } from './jsonrpc.js';
import type { ResponseFacts } from './methods.js';
import { ResponseTap } from './tap.js';
import { filterTaskList } from './task-list.js';

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
/** A rewritten answer (card, task list) also has a new length and is no longer the entity the upstream's ETag named. */
const REWRITTEN_DROP: ReadonlySet<string> = new Set([...UPSTREAM_COOKIES, 'content-length', 'etag']);

/**
 * Answers that tell airlock who owns a task (SendMessage) are read up to this size, rather than the
 * tap's usual 256 KB: a task whose answer was not read is unknown, and unknown tasks are refused.
 * ListTasks answers are read whole up to it too, to be cut down to the caller's tasks.
 */
const OWNERSHIP_READ_BYTES = 8 * 1024 * 1024;

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
  /** SendMessage: told the task and context ids of a successful answer as soon as they are read (task ownership). */
  claim: ((f: ResponseFacts) => void) | undefined;
  /** ListTasks: the answer is cut down to the tasks this accepts (the caller's own). */
  keepTask: ((taskId: string) => boolean) | undefined;
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
      if (tap.facts.taskId !== undefined && x.target['taskId'] === undefined) x.target['taskId'] = tap.facts.taskId.slice(0, 200);
      if (tap.facts.contextId !== undefined && x.target['contextId'] === undefined) x.target['contextId'] = tap.facts.contextId.slice(0, 200);
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
  const ok = up.statusCode >= 200 && up.statusCode < 300;
  if (f.card && ok) return relayCard(gw, x, res, f, up, end);
  if (f.keepTask && ok) return relayTaskList(gw, x, res, f, up, end, f.keepTask);

  const contentType = String(up.headers['content-type'] ?? '');
  const encoded = up.headers['content-encoding'] !== undefined && up.headers['content-encoding'] !== 'identity';
  const claim = ok ? f.claim : undefined;
  const tap = encoded ? undefined : new ResponseTap(/^text\/event-stream/i.test(contentType) ? 'sse' : 'json', claim ? { limit: OWNERSHIP_READ_BYTES, onFacts: claim } : {});
  res.writeHead(up.statusCode, agentResponseHeaders(up.headers, x.id, UPSTREAM_COOKIES));
  // Stream events must reach the agent as they arrive, not when a buffer fills.
  if (tap?.kind === 'sse') res.flushHeaders();
  let bytesOut = 0;
  const status = up.statusCode;
  const body = up.body;
  // Relayed by hand rather than with stream.pipeline, which would destroy the agent's response on
  // an upstream error before a last SSE event could say why the stream ended.
  // With audit.bodies on, the answer is also copied (up to a cap) as it passes.
  const capture = x.bodies?.response.describe(up.headers['content-type'], up.headers['content-encoding']);
  body.on('data', (c: Buffer) => {
    bytesOut += c.length;
    tap?.write(c);
    if (capture) capture.write(c);
    if (!res.write(c)) body.pause();
  });
  res.on('drain', () => body.resume());
  res.on('close', () => {
    if (!res.writableFinished) body.destroy();
  });
  body.on('end', () => {
    res.end();
    // Reads the answer's task and context ids (and records their owner) in this same callback:
    // no request of the agent's can be judged before it, however fast the agent follows up.
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

interface UpstreamAnswer {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/** Reads a whole answer up to `limit` bytes; undefined when it was refused (too large, cut, aborted) and the exchange ended. */
async function readWhole(gw: DoorContext, x: Exchange, res: ServerResponse, f: Forwarding, up: UpstreamAnswer, end: End, limit: number, what: string): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  try {
    for await (const c of up.body as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > limit) {
        up.body.destroy(); // inside for-await: the iterator listens for the error
        refuseIn(res, x, f, 'upstream_error', `${f.agent.name}: the ${what} is larger than ${limit} bytes`);
        end(502, 'upstream_error', `${what} too large`, 0);
        return undefined;
      }
      chunks.push(c);
    }
  } catch (e) {
    if (x.abort.aborted) {
      aborted(gw, x, res, f, end, 0, undefined, undefined);
      return undefined;
    }
    const fail = upstreamFailure(e);
    refuseIn(res, x, f, fail.code, `${f.agent.name}: ${fail.message}`);
    end(ERROR_CODES[fail.code].status, fail.code, fail.message, 0);
    return undefined;
  }
  const whole = Buffer.concat(chunks);
  // It is parsed and written again whole, by functions that recurse once per level.
  if (nestedDeeperThan(whole, MAX_NESTING)) {
    refuseIn(res, x, f, 'upstream_error', `${f.agent.name}: the ${what} nests objects and arrays more than ${MAX_NESTING} levels deep, so airlock cannot read it`);
    end(502, 'upstream_error', `${what} nested too deep`, 0);
    return undefined;
  }
  return whole.toString('utf8');
}

/** A rewritten answer, sent whole with the upstream's status and headers (less what no longer fits). */
function sendRewritten(x: Exchange, res: ServerResponse, up: UpstreamAnswer, out: string): void {
  const headers = agentResponseHeaders(up.headers, x.id, REWRITTEN_DROP);
  x.bodies?.response.describe(up.headers['content-type']).set(out);
  headers['content-length'] = String(Buffer.byteLength(out));
  res.writeHead(up.statusCode, headers);
  res.end(out);
}

/**
 * A ListTasks answer: read whole and cut down to the caller's tasks (task-list.ts). One that cannot
 * be read is refused rather than passed on whole: it would list other agents' tasks.
 */
async function relayTaskList(gw: DoorContext, x: Exchange, res: ServerResponse, f: Forwarding, up: UpstreamAnswer, end: End, keep: (taskId: string) => boolean): Promise<void> {
  const encoded = up.headers['content-encoding'] !== undefined && up.headers['content-encoding'] !== 'identity';
  if (encoded) {
    discard(up.body);
    refuseIn(res, x, f, 'upstream_error', `${f.agent.name}: the task list came compressed, so it cannot be cut down to this agent's tasks`);
    return end(502, 'upstream_error', 'compressed task list', 0);
  }
  const text = await readWhole(gw, x, res, f, up, end, OWNERSHIP_READ_BYTES, 'task list (ask for fewer tasks: pageSize, historyLength, includeArtifacts)');
  if (text === undefined) return;
  const filtered = filterTaskList(text, keep);
  if (!filtered.ok) {
    refuseIn(res, x, f, 'upstream_error', `${f.agent.name}: ${filtered.problem}`);
    return end(502, 'upstream_error', filtered.problem, 0);
  }
  if (res.destroyed) return end(up.statusCode, undefined, 'the agent disconnected', 0);
  sendRewritten(x, res, up, filtered.text);
  end(up.statusCode, undefined, undefined, Buffer.byteLength(filtered.text), undefined, { rewritten: 'task-list', tasks: filtered.kept, tasksHidden: filtered.removed });
}

/** An extended card: read whole, rewritten like the public card, then sent. */
async function relayCard(gw: DoorContext, x: Exchange, res: ServerResponse, f: Forwarding, up: UpstreamAnswer, end: End): Promise<void> {
  const text = await readWhole(gw, x, res, f, up, end, MAX_CARD_BYTES, 'extended card');
  if (text === undefined) return;
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
  sendRewritten(x, res, up, out);
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
