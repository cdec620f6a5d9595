/**
 * The agent listener: request id on every response, authentication before routing (so unknown
 * callers learn nothing about what is configured), then a front door by path prefix.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { presentedKey, validAttribution, type Presented } from '../identity/authenticate.js';
import { proxyCredentials, refuseRaw, serveConnect, serveProxied, type OwnPorts } from '../protocols/http/proxy.js';
import type { Duplex } from 'node:stream';
import type { KeyRecord, KeyRing } from '../identity/keys.js';
import type { AgentRuntime, RuntimeConfig } from '../config/compile.js';
import { serveA2a, type A2ADoorContext } from '../protocols/a2a/door.js';
import { serveHttp } from '../protocols/http/door.js';
import { serveLlm } from '../protocols/llm/door.js';
import { serveMcp, type McpDoorContext } from '../protocols/mcp/door.js';
import { sendLlmError } from '../protocols/llm/render.js';
import { surfaceOf } from '../protocols/llm/routes.js';
import type { Caller } from './context.js';
import { continueIfExpected, sendError, sendJson } from './respond.js';
import type { ErrorCode } from '../errors.js';
import { ERROR_CODES } from '../errors.js';

export interface AgentPortDeps extends McpDoorContext, A2ADoorContext {
  readonly keys: KeyRing;
  config(): RuntimeConfig;
  ready(): boolean;
  /** Stopping: refusing new work while in-flight exchanges finish. */
  isDraining(): boolean;
}

/** The request handler of the agent port. */
export function agentHandler(gw: AgentPortDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const startedHr = performance.now();
    const url = req.url ?? '/';
    const requestId = randomUUID();
    // Every response carries the request id. The /http door names it in each of its responses
    // itself: a header set here in advance would send its writeHead() down Node's slow path, which
    // re-validates every upstream header one setHeader() at a time.
    if (!url.startsWith('/http/')) res.setHeader('x-airlock-request-id', requestId);
    const bare = url.split('?', 1)[0];
    if (bare === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (bare === '/readyz') return gw.ready() ? sendJson(res, 200, { status: 'ready' }) : sendJson(res, 503, { status: gw.isDraining() ? 'draining' : 'starting' });

    const config = gw.config();
    const refuse = (code: ErrorCode, message: string, agentName?: string) => {
      gw.pipeline.reject({ id: requestId, protocol: protocolOf(url), agent: agentName ? config.agents.get(agentName) : undefined, code, message, status: ERROR_CODES[code].status, startedHr });
      // Unread bodies would otherwise be drained; a refused caller gets no such courtesy.
      if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.setHeader('connection', 'close');
      // LLM callers are SDKs: they get errors in the shape their SDK parses.
      if (url.startsWith('/llm/')) sendLlmError(res, surfaceOf(url, req.headers), requestId, code, message);
      else sendError(res, requestId, code, message);
    };

    // A proxy client (HTTP_PROXY) sends an absolute URL, and its airlock key only as
    // Proxy-Authorization: its Authorization header is meant for the host it calls.
    const proxied = !url.startsWith('/');
    if (proxied) return serveAsProxy(gw, req, res, requestId, startedHr, config);
    const who = identify(gw, presentedKey(req.headers), 'no agent key: send it as "Authorization: Bearer alk_..." (or x-api-key)', config);
    if ('code' in who) return refuse(who.code, who.message);
    const attributed = attribution(req.headers, who.agent.name);
    if ('code' in attributed) return refuse(attributed.code, attributed.message, attributed.agentName);
    const caller: Caller = { requestId, agent: who.agent, keyId: who.key.id, ...attributed, config, startedHr };
    // The /http door sends `100 Continue` itself once it has checked the body's size; other doors take the body now.
    if (!url.startsWith('/http/')) continueIfExpected(req, res);
    if (url.startsWith('/http/')) {
      serveHttp(gw, req, res, caller).catch((e: unknown) => {
        doorFailed(gw, requestId, 'http front door', e);
        sendError(res, requestId, 'internal_error', FAILED);
      });
      return;
    }
    if (url.startsWith('/llm/')) {
      serveLlm(gw, req, res, caller).catch((e: unknown) => {
        doorFailed(gw, requestId, 'llm front door', e);
        sendLlmError(res, surfaceOf(url, req.headers), requestId, 'internal_error', FAILED);
      });
      return;
    }
    if (url.startsWith('/a2a/')) {
      serveA2a(gw, req, res, caller).catch((e: unknown) => {
        doorFailed(gw, requestId, 'a2a front door', e);
        sendError(res, requestId, 'internal_error', FAILED);
      });
      return;
    }
    if (bare === '/mcp' || url.startsWith('/mcp/')) {
      serveMcp(gw, req, res, caller).catch((e: unknown) => {
        doorFailed(gw, requestId, 'mcp front door', e);
        sendError(res, requestId, 'internal_error', FAILED);
      });
      return;
    }
    return refuse('not_found', `no route for ${url.split('?')[0]}: agent traffic goes to /http/<service>/..., /llm/v1/..., /mcp (or /mcp/<server>) or /a2a/<agent>/`, who.agent.name);
  };
}

/** Why a caller is refused before any exchange exists, and the agent it proved to be, if any. */
interface Refusal {
  code: ErrorCode;
  message: string;
  agentName?: string;
  /** A proxy client's request with no credentials at all: the 407 challenge it expects before it sends them. */
  challenge?: true;
}

/** The key a caller presented, and its agent; or why it is refused (`missing`: when it presented none). */
function identify(gw: AgentPortDeps, presented: Presented | undefined, missing: string, config: RuntimeConfig): { key: KeyRecord; agent: AgentRuntime } | Refusal {
  if (!presented) return { code: 'unauthenticated', message: missing };
  const key = gw.keys.find(presented.key, Date.now());
  if (!key) return { code: 'unauthenticated', message: 'the agent key is unknown, revoked or expired' };
  if (presented.claimedAgent !== undefined && presented.claimedAgent !== key.agent) return { code: 'unauthenticated', message: 'the agent name does not match the key' };
  const agent = config.agents.get(key.agent);
  if (!agent) return { code: 'unauthenticated', message: `the key belongs to agent "${key.agent}", which is no longer in the config` };
  return { key, agent };
}

/** `x-airlock-session` and `x-airlock-user`, checked; or why the caller is refused. */
function attribution(h: IncomingMessage['headers'], agentName: string): { user: string | undefined; session: string | undefined } | Refusal {
  const session = h['x-airlock-session'];
  const user = h['x-airlock-user'];
  for (const [name, v] of [['x-airlock-session', session], ['x-airlock-user', user]] as const) {
    if (v !== undefined && (typeof v !== 'string' || !validAttribution(v))) return { code: 'bad_request', message: `${name} must be 1 to 200 visible ASCII characters`, agentName };
  }
  return { user: user as string | undefined, session: session as string | undefined };
}

/**
 * A door that throws (a bug) after the pipeline allowed its exchange would leave it in flight: no
 * final audit record, and its concurrency slot held until a restart. The exchange's id is the
 * request id in every door, so it is ended here.
 */
function doorFailed(gw: AgentPortDeps, requestId: string, what: string, e: unknown): void {
  gw.log.error({ err: e, exchange: requestId }, `${what} failed`);
  gw.pipeline.abandon(requestId, `${what} failed: ${e instanceof Error ? e.name : 'error'}`);
}

/** The caller of a forward-proxy request (absolute URL or CONNECT), or why it has none. */
export function proxyCaller(gw: AgentPortDeps, h: IncomingMessage['headers'], requestId: string, startedHr: number, config: RuntimeConfig): Caller | Refusal {
  const creds = proxyCredentials(h);
  const who = identify(gw, creds && { key: creds.key, claimedAgent: creds.agent }, 'forward-proxy mode needs "Proxy-Authorization: Basic base64(<agent>:<key>)" (a proxy URL such as http://<agent>:<key>@127.0.0.1:8844)', config);
  if ('code' in who) return h['proxy-authorization'] === undefined ? { ...who, challenge: true } : who;
  if (!config.http.forwardProxy) return { code: 'not_found', message: 'forward-proxy mode is off on this gateway (http.forwardProxy); call services through /http/<service>/...', agentName: who.agent.name };
  const attributed = attribution(h, who.agent.name);
  if ('code' in attributed) return attributed;
  return { requestId, agent: who.agent, keyId: who.key.id, ...attributed, config, startedHr };
}

/** A refusal's status in forward-proxy mode: `unauthenticated` is 407, which proxy clients read as the proxy's own. */
function proxyStatus(code: ErrorCode): number {
  return code === 'unauthenticated' ? 407 : ERROR_CODES[code].status;
}

function serveAsProxy(gw: AgentPortDeps, req: IncomingMessage, res: ServerResponse, requestId: string, startedHr: number, config: RuntimeConfig): void {
  const c = proxyCaller(gw, req.headers, requestId, startedHr, config);
  if ('code' in c) {
    const status = proxyStatus(c.code);
    gw.pipeline.reject({ id: requestId, protocol: 'http', agent: c.agentName ? config.agents.get(c.agentName) : undefined, code: c.code, message: c.message, status, startedHr, challenge: c.challenge });
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.setHeader('connection', 'close');
    if (c.code === 'unauthenticated') res.setHeader('proxy-authenticate', 'Basic realm="airlock"');
    return sendError(res, requestId, c.code, c.message, { status });
  }
  serveProxied(gw, req, res, c).catch((e: unknown) => {
    doorFailed(gw, requestId, 'forward proxy', e);
    sendError(res, requestId, 'internal_error', FAILED);
  });
}

/** A CONNECT request on the agent port (forward-proxy mode's tunnels): authenticated, then judged and tunnelled. */
export function connectHandler(gw: AgentPortDeps & { own: OwnPorts }, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const startedHr = performance.now();
  const requestId = randomUUID();
  socket.on('error', () => {}); // a client that resets mid-tunnel is an ordinary end, handled on 'close'
  const config = gw.config();
  const c = proxyCaller(gw, req.headers, requestId, startedHr, config);
  if ('code' in c) {
    gw.pipeline.reject({ id: requestId, protocol: 'http', agent: c.agentName ? config.agents.get(c.agentName) : undefined, code: c.code, message: c.message, status: proxyStatus(c.code), startedHr, challenge: c.challenge });
    return refuseRaw(socket, requestId, c.code, c.message);
  }
  if (gw.isDraining()) {
    gw.pipeline.reject({ id: requestId, protocol: 'http', agent: c.agent, code: 'upstream_error', message: 'the gateway is shutting down', status: 502, startedHr });
    return refuseRaw(socket, requestId, 'upstream_error', 'the gateway is shutting down; retry');
  }
  serveConnect(gw, req, socket, head, c).catch((e: unknown) => {
    doorFailed(gw, requestId, 'forward proxy tunnel', e);
    refuseRaw(socket, requestId, 'internal_error', FAILED);
  });
}

const FAILED = 'the gateway failed while serving this call';

function protocolOf(url: string): 'http' | 'llm' | 'mcp' | 'a2a' {
  if (url.startsWith('/llm')) return 'llm';
  if (url.startsWith('/mcp')) return 'mcp';
  if (url.startsWith('/a2a')) return 'a2a';
  return 'http';
}
