/**
 * The plain-HTTP front door: `ANY /http/<service>/<path>` → the service's base URL + path + query,
 * with the agent's credentials and `x-airlock-*` removed, the service's headers injected, bodies
 * streamed both ways, timeouts, and retries of idempotent calls.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline as pipe } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExchangeBodies, injectedSecrets } from '../../audit/bodies.js';
import { scrubSecretText } from '../../audit/secrets.js';
import type { HttpService } from '../../config/compile.js';
import { ERROR_CODES, type ErrorCode } from '../../errors.js';
import type { ExchangeAbort } from '../../pipeline/abort.js';
import type { Exchange } from '../../pipeline/types.js';
import type { Caller, DoorContext } from '../../server/context.js';
import { continueIfExpected, sendError } from '../../server/respond.js';
import { FORBIDDEN_ADDRESS, upstreamFailure } from '../../upstream/dispatcher.js';
import { discard, relay } from '../../upstream/relay.js';
import { agentResponseHeaders, originRequestHeaders, upstreamRequestHeaders } from '../../upstream/headers.js';
import { backoffMs, isIdempotent, isRetryableError, isRetryableStatus, RETRY_AFTER_CAP_MS, retryAfterMs } from '../../upstream/retry.js';
import { BoundedBody, BUFFERED_BODY_LIMIT, bodyExcerpt, readBody } from './body.js';
import { parseHttpRoute } from './route.js';

/**
 * Where an HTTP exchange goes and how the rules and the audit name it: a configured service
 * (`/http/<service>/<path>`) or, in forward-proxy mode, a host (`http://host/path` through the proxy).
 */
export interface HttpDestination {
  /** The service, or for a host a stand-in with its origin, no base path and no injected headers. */
  svc: HttpService;
  /** `service`: the action and target name the service; `host`: they name the host (`host[:port]`). */
  kind: 'service' | 'host';
  /** As received (still percent-encoded), beginning with `/`; appended to the base path. */
  rawPath: string;
  /** Decoded, for the action and the rules. */
  path: string;
  /** With the leading `?`, or ''. */
  query: string;
}

/** The upstream-duration metric's target for calls through the forward proxy (no service name has parentheses). */
export const FORWARD_PROXY_TARGET = '(forward-proxy)';

/** Serves one `/http/...` request from an authenticated caller. */
export async function serveHttp(gw: DoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller): Promise<void> {
  const parsed = parseHttpRoute(req.url ?? '/');
  if (!parsed.ok) return refuseHttp(gw, res, caller, 'bad_request', `${parsed.problem}; the request was not forwarded`);
  const route = parsed.route;
  const svc = caller.config.http.services.get(route.service);
  if (!svc) return refuseHttp(gw, res, caller, 'not_found', `no HTTP service named "${route.service}" is configured (see http.services)`);
  return serveDestination(gw, req, res, caller, { svc, kind: 'service', rawPath: route.rawPath, path: route.path, query: route.query });
}

/** Refuses a call before it became an exchange (it is still audited). */
export function refuseHttp(gw: DoorContext, res: ServerResponse, caller: Caller, code: ErrorCode, message: string, extra: { action?: string; target?: Record<string, unknown>; close?: boolean } = {}): void {
  gw.pipeline.reject({ id: caller.requestId, protocol: 'http', agent: caller.agent, user: caller.user, session: caller.session, action: extra.action, target: extra.target, code, message, status: ERROR_CODES[code].status, startedHr: caller.startedHr });
  if (extra.close) res.setHeader('connection', 'close');
  sendError(res, caller.requestId, code, message);
}

/** Judges and forwards one HTTP call to `dest`: the part /http and forward-proxy mode share. */
export async function serveDestination(gw: DoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller, dest: HttpDestination): Promise<void> {
  const { requestId } = caller;
  const { svc, path: routePath } = dest;
  const method = (req.method ?? 'GET').toUpperCase();
  const action = `http: ${method} ${svc.name}/${routePath}`;
  // Keys in sorted order: the audit record's canonical form needs no sort.
  const target = dest.kind === 'service' ? { method, path: `/${routePath}`, service: svc.name } : { host: svc.name, method, path: `/${routePath}` };
  const refuse = (code: ErrorCode, message: string, close = false) => refuseHttp(gw, res, caller, code, message, { action, target, close });

  const cl = req.headers['content-length'];
  const length = cl === undefined ? undefined : Number(cl);
  if (length !== undefined && length > svc.maxBodySize) {
    return refuse('payload_too_large', `the request body (${length} bytes) is over ${dest.kind === 'service' ? "this service's" : "forward-proxy mode's"} maxBodySize of ${svc.maxBodySize} bytes`, true);
  }
  const hasBody = length !== undefined ? length > 0 : req.headers['transfer-encoding'] !== undefined;
  let body: Buffer | undefined;
  if (hasBody && length !== undefined && length <= BUFFERED_BODY_LIMIT) {
    try {
      continueIfExpected(req, res);
      body = await readBody(req, Math.min(svc.maxBodySize, BUFFERED_BODY_LIMIT));
    } catch {
      return; // the client went away mid-body; nothing was forwarded and there is nobody to answer
    }
  }
  const streamBody = hasBody && body === undefined;
  const argsKey = `${dest.query}#${body ? createHash('sha1').update(body).digest('base64') : streamBody ? 'stream' : ''}`;
  // Built only if the call is held for a person: the excerpt parses and scrubs the body.
  const summary = () => {
    const shown = body ? `\n${bodyExcerpt(body, req.headers['content-type'])}` : streamBody ? '\n(the body is streamed to the service, so it is not shown here)' : '';
    return `${method} ${svc.url.origin}${svc.basePath}${dest.rawPath}${scrubSecretText(dest.query)}${shown}`;
  };

  let bodies: ExchangeBodies | undefined;
  if (caller.config.audit.bodies) {
    bodies = new ExchangeBodies(injectedSecrets(svc.headers));
    bodies.request.describe(req.headers['content-type'], req.headers['content-encoding']);
    if (body) bodies.request.set(body);
  }
  const x = gw.pipeline.begin({ id: requestId, protocol: 'http', agent: caller.agent, keyId: caller.keyId, user: caller.user, session: caller.session, action, target, argsKey, summary, config: caller.config, bodies });
  // An agent that hangs up cancels its call, whether it is held for approval or already upstream.
  res.on('close', () => {
    if (!res.writableFinished && !x.abort.aborted) x.abort.abort('client_closed');
  });
  const verdict = await gw.pipeline.decide(x);
  if (verdict.kind === 'deny') {
    if (streamBody) res.setHeader('connection', 'close');
    sendError(res, requestId, verdict.code, verdict.message, { rule: verdict.rule, retryAfterS: verdict.retryAfterS });
    return;
  }
  await forward(gw, x, svc, req, res, `${svc.basePath}${dest.rawPath}${dest.query}`, method, body, streamBody, dest.kind === 'host');
}

async function forward(gw: DoorContext, x: Exchange, svc: HttpService, req: IncomingMessage, res: ServerResponse, path: string, method: string, body: Buffer | undefined, streamBody: boolean, toHost: boolean): Promise<void> {
  const signal = x.abort; // undici takes the emitter itself: no AbortSignal per call
  // Through the forward proxy the agent talks to a host of its choosing: its own credentials for
  // that host (Authorization) are its business and go along; its airlock key never does.
  const headers = toHost ? originRequestHeaders(req.headers) : upstreamRequestHeaders(req.headers, svc.headers);
  if (streamBody) continueIfExpected(req, res);
  const bounded = streamBody ? new BoundedBody(svc.maxBodySize, x.bodies?.request) : undefined;
  if (bounded) pipe(req, bounded, () => {});
  const canRetry = svc.retries > 0 && isIdempotent(method) && !streamBody;
  let attempts = 0;
  let finished = false;
  const end = (status: number | undefined, code: ErrorCode | undefined, message: string | undefined, bytesOut: number) => {
    if (finished) return;
    finished = true;
    gw.pipeline.finish(x, { status, code, message, bytesIn: body?.length ?? bounded?.bytes ?? 0, bytesOut, details: attempts > 1 ? { attempts } : undefined });
  };

  for (;;) {
    attempts++;
    const t0 = performance.now();
    let up;
    try {
      up = await (toHost ? gw.proxyDispatcher : gw.dispatcher).request({
        origin: svc.url.origin,
        path,
        method: method as 'GET',
        headers,
        body: body ?? bounded ?? null,
        signal,
        headersTimeout: svc.timeoutMs,
        bodyTimeout: svc.timeoutMs,
      });
    } catch (e) {
      if (signal.aborted) return aborted(gw, x, res, end, 0);
      if ((e as { code?: string }).code === FORBIDDEN_ADDRESS) {
        // Forward-proxy mode reached an address it never connects to (see proxy.ts): a refusal, not an upstream failure.
        const message = (e as Error).message;
        sendError(res, x.id, 'denied', message);
        finished = true;
        return gw.pipeline.finish(x, { status: 403, code: 'denied', message, refused: true, bytesIn: 0, bytesOut: 0 });
      }
      if (bounded?.tooLarge) {
        res.setHeader('connection', 'close');
        sendError(res, x.id, 'payload_too_large', `the request body is over this service's maxBodySize of ${svc.maxBodySize} bytes`);
        return end(413, 'payload_too_large', 'request body over maxBodySize', 0);
      }
      if (canRetry && attempts <= svc.retries && isRetryableError(e)) {
        if (await wait(backoffMs(attempts - 1), signal)) continue;
        return aborted(gw, x, res, end, 0);
      }
      const f = upstreamFailure(e);
      gw.log.warn({ exchange: x.id, service: svc.name, err: (e as { code?: string }).code ?? String(e) }, 'upstream call failed');
      sendError(res, x.id, f.code, `${svc.name}: ${f.message}`);
      return end(ERROR_CODES[f.code].status, f.code, f.message, 0);
    }
    // Hosts reached through the forward proxy are the agents' to choose: as metric labels they would
    // grow without bound (a series per host), so they share one.
    gw.metrics.upstreamDuration.labels('http', toHost ? FORWARD_PROXY_TARGET : svc.name).observe((performance.now() - t0) / 1000);

    if (canRetry && attempts <= svc.retries && isRetryableStatus(up.statusCode)) {
      const ra = retryAfterMs(up.headers['retry-after']);
      if (ra === undefined || ra <= RETRY_AFTER_CAP_MS) {
        await up.body.dump().catch(() => {});
        if (await wait(ra ?? backoffMs(attempts - 1), signal)) continue;
        return aborted(gw, x, res, end, 0);
      }
    }

    if (res.destroyed) {
      discard(up.body);
      return end(up.statusCode, undefined, 'the agent disconnected', 0);
    }
    res.writeHead(up.statusCode, agentResponseHeaders(up.headers, x.id));
    let bytesOut = 0;
    const status = up.statusCode;
    // With audit.bodies on, the answer is also copied (up to a cap) as it passes.
    const capture = x.bodies?.response.describe(up.headers['content-type'], up.headers['content-encoding']);
    up.body.on(
      'data',
      capture
        ? (c: Buffer) => {
            bytesOut += c.length;
            capture.write(c);
          }
        : (c: Buffer) => (bytesOut += c.length),
    );
    relay(up.body, res, (err) => {
      if (!err) return end(status, undefined, undefined, bytesOut);
      if (signal.aborted) return aborted(gw, x, res, end, bytesOut, status);
      // The agent's streamed body passed maxBodySize after the upstream had answered: the cut is
      // the agent's doing, and the audit must not blame the upstream for it.
      if (bounded?.tooLarge) return end(status, 'payload_too_large', `request body over maxBodySize (${svc.maxBodySize} bytes); the response was cut`, bytesOut);
      const f = upstreamFailure(err);
      end(status, f.code, `the response was cut: ${f.message}`, bytesOut);
    });
    return;
  }
}

/** Waits `ms` unless the exchange is aborted; true when the wait completed. */
async function wait(ms: number, abort: ExchangeAbort): Promise<boolean> {
  try {
    await sleep(ms, undefined, { signal: abort.signal });
    return true;
  } catch {
    return false;
  }
}

/** An exchange ended by a kill switch, shutdown, or the agent hanging up. */
function aborted(gw: DoorContext, x: Exchange, res: ServerResponse, end: (s: number | undefined, c: ErrorCode | undefined, m: string | undefined, b: number) => void, bytesOut: number, status?: number): void {
  const reason: unknown = x.abort.reason;
  if (reason === 'killed') {
    if (!res.headersSent) sendError(res, x.id, 'killed', 'a kill switch stopped this call while it was in flight');
    else res.destroy();
    return end(status ?? 403, 'killed', 'stopped by a kill switch while in flight', bytesOut);
  }
  if (reason === 'shutdown') {
    if (!res.headersSent) sendError(res, x.id, 'upstream_error', 'the gateway is shutting down; retry');
    else res.destroy();
    return end(status ?? 502, 'upstream_error', 'cut short by gateway shutdown', bytesOut);
  }
  gw.log.debug({ exchange: x.id }, 'agent disconnected; upstream call cancelled');
  return end(status, undefined, 'the agent disconnected before the response ended', bytesOut);
}

