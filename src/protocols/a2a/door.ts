/**
 * The A2A front door (SPEC section 5.4), `/a2a/<agent>`:
 *   GET  /a2a/<agent>/.well-known/agent-card.json  the remote agent's card, rewritten to airlock
 *   POST /a2a/<agent>                              the JSON-RPC binding (1.0 and 0.3 method names)
 *   ANY  /a2a/<agent>/<rest path>                  the HTTP+JSON binding (1.0 paths, 0.3 under /v1)
 * Each call becomes the action `a2a: <agent> <Method>` (1.0 method names, whichever generation the
 * agent speaks), is judged by the pipeline, and is forwarded to the endpoint the card names. Tasks
 * are bound to the agent that started them (owners.ts): no agent reaches another's.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ExchangeBodies, injectedSecrets } from '../../audit/bodies.js';
import { canonical } from '../../audit/record.js';
import type { A2ARemoteAgent } from '../../config/a2a.js';
import { ERROR_CODES, type ErrorCode } from '../../errors.js';
import type { Exchange } from '../../pipeline/types.js';
import { killMessage } from '../../policies/kill/switches.js';
import type { Caller, DoorContext } from '../../server/context.js';
import { sendError } from '../../server/respond.js';
import { readBody } from '../http/body.js';
import { normalizeVersion, pickEndpoint, type Binding } from './card.js';
import { CardCache } from './cards.js';
import { ambiguousJson } from './duplicate-keys.js';
import { forward, refuseIn, type Forwarding } from './forward.js';
import { parseRpc, RPC, sendRpcError, type RpcId } from './jsonrpc.js';
import { ALL_METHODS, carriesPushUrl, isStreaming, isTaskScoped, METHOD_LIST_TEXT, messageExcerpt, methodInfo, taskRefs, type A2AMethod, type A2AVersion, type ResponseFacts, type TaskRefs } from './methods.js';
import { ownershipRefusal, type TaskOwners } from './owners.js';
import { pushUrlProblem, urlsIn } from './push.js';
import { parseRestPath } from './rest.js';

const CARD_PATHS = new Set(['/.well-known/agent-card.json', '/.well-known/agent.json']);
const HOST_RE = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

/** What the A2A door needs from the gateway besides what every door does. */
export interface A2ADoorContext extends DoorContext {
  /** Who started each task: kept by the gateway, since it outlives a door and a config reload. */
  readonly a2aTasks: TaskOwners;
}

/** One card cache per gateway (the door keeps no other state). */
const caches = new WeakMap<DoorContext, CardCache>();

function cardsOf(gw: DoorContext): CardCache {
  let c = caches.get(gw);
  if (!c) {
    c = new CardCache(gw.dispatcher, gw.log);
    caches.set(gw, c);
  }
  return c;
}

/** A call as the door understands it, before the pipeline judges it. */
interface Call {
  agent: A2ARemoteAgent;
  method: A2AMethod;
  version: A2AVersion;
  params: Record<string, unknown>;
  binding: Binding;
  body: Buffer | undefined;
  rpc: { id: RpcId; name: string } | undefined;
  /** REST: the path after `/a2a/<agent>` and the query, forwarded as they came. */
  restPath: string;
  query: string;
  /** Every task and context the call names (params, body and path), for the ownership check. */
  refs: TaskRefs;
}

/** Serves one `/a2a/...` request from an authenticated caller. */
export async function serveA2a(gw: A2ADoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller): Promise<void> {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const pathPart = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);
  const afterPrefix = pathPart.slice('/a2a/'.length);
  const slash = afterPrefix.indexOf('/');
  const name = slash === -1 ? afterPrefix : afterPrefix.slice(0, slash);
  const rest = slash === -1 ? '' : afterPrefix.slice(slash);
  const httpMethod = (req.method ?? 'GET').toUpperCase();
  const isRpc = httpMethod === 'POST' && (rest === '' || rest === '/');
  const refuse = (code: ErrorCode, message: string, extra: { action?: string; target?: Record<string, unknown>; rpcId?: RpcId; rpcCode?: number; httpStatus?: number } = {}) => {
    gw.pipeline.reject({ id: caller.requestId, protocol: 'a2a', agent: caller.agent, user: caller.user, session: caller.session, action: extra.action, target: extra.target, code, message, status: ERROR_CODES[code].status, startedHr: caller.startedHr });
    if (!req.readableEnded && (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined)) res.setHeader('connection', 'close');
    if (isRpc) sendRpcError(res, caller.requestId, extra.rpcId ?? null, code, message, { rpcCode: extra.rpcCode, httpStatus: extra.httpStatus });
    else sendError(res, caller.requestId, code, message);
  };

  const agent = caller.config.a2a.agents.get(name);
  if (!agent) {
    if (name === '' || name === '.well-known') return refuse('not_found', 'name the remote agent: /a2a/<agent> (its card is at /a2a/<agent>/.well-known/agent-card.json; @a2a-js/sdk needs the base URL with a trailing slash: http://HOST/a2a/<agent>/)');
    return refuse('not_found', `no A2A agent named "${safe(name)}" is configured (see a2a.agents)`, { target: { agent: safe(name) }, httpStatus: 404 });
  }
  if (httpMethod === 'GET' && CARD_PATHS.has(rest)) return serveCard(gw, req, res, caller, agent, refuse);
  if (isRpc) return serveRpc(gw, req, res, caller, agent, refuse);
  return serveRest(gw, req, res, caller, agent, rest, query, httpMethod, refuse);
}

type Refuse = (code: ErrorCode, message: string, extra?: { action?: string; target?: Record<string, unknown>; rpcId?: RpcId; rpcCode?: number; httpStatus?: number }) => void;

/** Printable, bounded text from the URL for messages and records. */
function safe(s: string): string {
  let d: string;
  try {
    d = decodeURIComponent(s);
  } catch {
    d = s;
  }
  return d.replace(/[^\x20-\x7e]/g, '?').slice(0, 100);
}

/** The base URL agents reach this remote agent at, through airlock. */
function publicBase(req: IncomingMessage, caller: Caller, agent: A2ARemoteAgent): string | undefined {
  const configured = caller.config.a2a.publicUrl;
  if (configured !== undefined) return `${configured}/a2a/${agent.name}`;
  const host = req.headers.host;
  if (host === undefined || host.length > 255 || !HOST_RE.test(host)) return undefined;
  return `http://${host}/a2a/${agent.name}`;
}

/** The A2A-Version an agent asked for, as a cache key and for the upstream: `1.0`, `0.3`, or none. */
function askedVersion(req: IncomingMessage): string | undefined {
  const v = req.headers['a2a-version'];
  if (typeof v !== 'string' || !/^\s*\d{1,3}\.\d{1,3}(\.\d{1,3})?\s*$/.test(v)) return undefined;
  return normalizeVersion(v, '1.0');
}

/**
 * Any method of this remote agent the caller's rules allow (or hold for approval)? The card is
 * shown only then: discovery reveals nothing to agents with no business there (as MCP's tools/list).
 */
function mayUse(caller: Caller, agent: A2ARemoteAgent): boolean {
  return ALL_METHODS.some((m) => caller.config.rules.decide(caller.agent.name, `a2a: ${agent.name} ${m}`).decision !== 'deny');
}

async function serveCard(gw: DoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller, agent: A2ARemoteAgent, refuse: Refuse): Promise<void> {
  const target = { agent: agent.name, method: 'GetAgentCard' };
  // A card fetch is discovery, not an exchange, but a kill switch stops it like any call.
  const kill = gw.kills?.covering({ agent: caller.agent.name, team: caller.agent.team, action: `a2a: ${agent.name} GetAgentCard` });
  if (kill) return refuse('killed', killMessage(kill), { action: `a2a: ${agent.name}`, target });
  if (!mayUse(caller, agent)) {
    return refuse('denied', `no rule lets agent "${caller.agent.name}" call A2A agent "${agent.name}", so its card is not shown (add an allow rule such as "a2a: ${agent.name}")`, { action: `a2a: ${agent.name}`, target });
  }
  const base = publicBase(req, caller, agent);
  if (base === undefined) return refuse('bad_request', 'the Host header is missing or malformed, so the card\'s URLs cannot be written (or set a2a.publicUrl)', { target });
  const got = cardsOf(gw).get(agent, askedVersion(req));
  const r = got instanceof Promise ? await got : got;
  if (!r.ok) return refuse(r.code, `${agent.name}: ${r.message}`, { action: `a2a: ${agent.name}`, target });
  const text = cardsOf(gw).served(r.entry, base, agent);
  if (res.destroyed) return;
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', vary: 'A2A-Version', 'x-airlock-request-id': caller.requestId });
  res.end(text);
}

/** Reads the request body within the remote agent's maxBodySize; undefined when it was refused or the agent left. */
async function body(req: IncomingMessage, agent: A2ARemoteAgent, refuse: Refuse, rpc: boolean): Promise<Buffer | undefined> {
  const cl = req.headers['content-length'];
  if (cl !== undefined && Number(cl) > agent.maxBodySize) {
    refuse('payload_too_large', `the request body (${cl} bytes) is over this A2A agent's maxBodySize of ${agent.maxBodySize} bytes`, rpc ? { rpcCode: RPC.INVALID_REQUEST } : {});
    return undefined;
  }
  try {
    return await readBody(req, agent.maxBodySize);
  } catch (e) {
    if ((e as { code?: string }).code === 'payload_too_large') refuse('payload_too_large', `the request body is over this A2A agent's maxBodySize of ${agent.maxBodySize} bytes`, rpc ? { rpcCode: RPC.INVALID_REQUEST } : {});
    return undefined; // the agent went away mid-body: nobody to answer
  }
}

async function serveRpc(gw: A2ADoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller, agent: A2ARemoteAgent, refuse: Refuse): Promise<void> {
  const raw = await body(req, agent, refuse, true);
  if (raw === undefined) return;
  const parsed = parseRpc(raw);
  if (!parsed.ok) return refuse('bad_request', `${parsed.message}; the call was not forwarded`, { rpcId: parsed.id, rpcCode: parsed.rpcCode, target: { agent: agent.name } });
  const { id, method: name, params } = parsed.req;
  const info = methodInfo(name);
  if (!info) {
    return refuse('bad_request', `"${safe(name)}" is not an A2A method airlock knows (${METHOD_LIST_TEXT}); it was not forwarded`, { rpcId: id, rpcCode: RPC.METHOD_NOT_FOUND, target: { agent: agent.name, method: safe(name) } });
  }
  const call: Call = { agent, method: info.method, version: info.version, params, binding: 'JSONRPC', body: raw, rpc: { id, name }, restPath: '', query: '', refs: taskRefs(info.method, info.version, params) };
  return judgeAndForward(gw, req, res, caller, call, refuse);
}

async function serveRest(gw: A2ADoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller, agent: A2ARemoteAgent, rest: string, query: string, httpMethod: string, refuse: Refuse): Promise<void> {
  const route = parseRestPath(httpMethod, rest === '' ? '/' : rest, query);
  if (!route.ok) return refuse(route.code, route.problem, { target: { agent: agent.name } });
  const r = route.route;
  let raw: Buffer | undefined;
  let params: Record<string, unknown> = {};
  if (httpMethod === 'POST' || httpMethod === 'PUT' || httpMethod === 'PATCH') {
    raw = await body(req, agent, refuse, false);
    if (raw === undefined) return;
    if (raw.length > 0) {
      const text = raw.toString('utf8');
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        return refuse('bad_request', 'the request body is not valid JSON; the call was not forwarded', { action: `a2a: ${agent.name} ${r.method}`, target: { agent: agent.name, method: r.method } });
      }
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return refuse('bad_request', 'the request body must be a JSON object', { action: `a2a: ${agent.name} ${r.method}`, target: { agent: agent.name, method: r.method } });
      const ambiguous = ambiguousJson(text);
      if (ambiguous !== undefined) return refuse('bad_request', `the request body cannot be judged as sent (${ambiguous}): the remote agent may read it differently from airlock; send each key once (the call was not forwarded)`, { action: `a2a: ${agent.name} ${r.method}`, target: { agent: agent.name, method: r.method } });
      params = v as Record<string, unknown>;
    }
  }
  // The body's own ids count as much as the path's: a remote agent may read either.
  const refs = taskRefs(r.method, r.version, params);
  if (r.taskId !== undefined) {
    refs.tasks.push(r.taskId);
    params = { ...params, taskId: r.taskId };
  }
  if (r.contextId !== undefined) params = { ...params, contextId: r.contextId };
  const call: Call = { agent, method: r.method, version: r.version, params, binding: 'HTTP+JSON', body: raw, rpc: undefined, restPath: rest, query, refs };
  return judgeAndForward(gw, req, res, caller, call, refuse);
}

/** Builds the exchange, checks push URLs, asks the pipeline, and forwards what it allows. */
async function judgeAndForward(gw: A2ADoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller, call: Call, refuse: Refuse): Promise<void> {
  const { agent, method } = call;
  const action = `a2a: ${agent.name} ${method}`;
  // The audit record names the first task and context the call refers to (as the ownership check read them).
  const ids = { taskId: call.refs.tasks[0]?.slice(0, 200), contextId: call.refs.contexts[0]?.slice(0, 200) };
  const excerpt = messageExcerpt(call.params, caller.config.a2a.excerptChars);
  const target: Record<string, unknown> = { agent: agent.name, method };
  if (ids.taskId !== undefined) target['taskId'] = ids.taskId;
  if (ids.contextId !== undefined) target['contextId'] = ids.contextId;
  if (excerpt !== '') target['excerpt'] = excerpt;
  const rpcId = call.rpc?.id ?? null;

  // Task ownership, before any approval is asked or limit counted. A call that a kill switch or
  // the rules refuse anyway is left to the pipeline, whose refusal names the switch or the rule;
  // should the pipeline let it through after all (a switch lifted meanwhile), it is refused below.
  const owners = gw.a2aTasks;
  const me = caller.agent.name;
  const notOwner = ownershipRefusal(owners, agent.name, me, method, isTaskScoped(method), call.refs);
  if (notOwner !== undefined) {
    const refusedAnyway = gw.kills?.covering({ agent: me, team: caller.agent.team, action }) !== undefined || caller.config.rules.decide(me, action).decision === 'deny';
    if (!refusedAnyway) return refuse(notOwner.code, notOwner.message, { action, target, rpcId, ...(notOwner.code === 'bad_request' ? { rpcCode: RPC.INVALID_PARAMS } : {}) });
  }

  const push = carriesPushUrl(method);
  if (push) {
    const urls = urlsIn(push === 'configuration' ? call.params['configuration'] : call.params);
    for (const u of urls) {
      const problem = await pushUrlProblem(u, agent.allowPrivatePushUrls);
      if (problem !== undefined) return refuse('denied', `${problem}; the call was not forwarded`, { action, target, rpcId });
    }
  }

  const summary = `${method} → A2A agent "${agent.name}"${ids.taskId !== undefined ? ` (task ${ids.taskId})` : ''}${excerpt !== '' ? `\n${excerpt}` : ''}`;
  let bodies: ExchangeBodies | undefined;
  if (caller.config.audit.bodies) {
    bodies = new ExchangeBodies(injectedSecrets(agent.headers));
    if (call.body) bodies.request.describe(req.headers['content-type'], req.headers['content-encoding']).set(call.body);
  }
  const x = gw.pipeline.begin({ id: caller.requestId, protocol: 'a2a', agent: caller.agent, keyId: caller.keyId, user: caller.user, session: caller.session, action, target, argsKey: argsKey(call.params), summary, config: caller.config, bodies });
  // An agent that hangs up cancels its call, whether it is held for approval or already upstream.
  res.on('close', () => {
    if (!res.writableFinished && !x.abort.aborted) x.abort.abort('client_closed');
  });
  const f: Omit<Forwarding, 'url'> = {
    agent,
    method: (req.method ?? 'POST').toUpperCase() === 'GET' ? 'GET' : (req.method ?? '').toUpperCase() === 'DELETE' ? 'DELETE' : 'POST',
    body: call.body,
    rpc: call.rpc ? { id: rpcId } : undefined,
    version: call.version === '1.0' ? '1.0' : undefined,
    card: undefined,
    details: { binding: call.binding === 'JSONRPC' ? 'jsonrpc' : 'http+json', version: call.version, ...(call.rpc && call.rpc.name !== method ? { rpcMethod: call.rpc.name } : {}) },
    // A new task or context in the answer to this agent's message is this agent's.
    claim:
      method === 'SendMessage' || method === 'SendStreamingMessage'
        ? (facts: ResponseFacts) => {
            if (facts.taskId !== undefined) owners.claim(agent.name, 'task', facts.taskId, me);
            if (facts.contextId !== undefined) owners.claim(agent.name, 'context', facts.contextId, me);
          }
        : undefined,
    keepTask: method === 'ListTasks' ? (taskId: string) => owners.owner(agent.name, 'task', taskId) === me : undefined,
  };
  const verdict = await gw.pipeline.decide(x);
  if (verdict.kind === 'deny') return refuseIn(res, x, f, verdict.code, verdict.message, { rule: verdict.rule, retryAfterS: verdict.retryAfterS });
  if (notOwner !== undefined) return failAfterAllow(gw, x, res, f, notOwner.code, notOwner.message);

  const got = cardsOf(gw).get(agent, '1.0');
  const r = got instanceof Promise ? await got : got;
  if (!r.ok) return failAfterAllow(gw, x, res, f, r.code, `${agent.name}: ${r.message}`);
  const endpoint = pickEndpoint(r.entry.card, call.binding, call.version);
  if (!endpoint) {
    return failAfterAllow(gw, x, res, f, 'not_found', `A2A agent "${agent.name}" offers no ${call.binding === 'JSONRPC' ? 'JSON-RPC' : 'HTTP+JSON'} interface in its card`);
  }
  let url = endpoint.url;
  if (call.binding === 'HTTP+JSON') {
    url = new URL(endpoint.url.href);
    url.pathname = `${endpoint.url.pathname.replace(/\/+$/, '')}${call.restPath}`;
    url.search = call.query === '' ? '' : `?${call.query}`;
  }
  if (method === 'GetExtendedAgentCard') {
    const base = publicBase(req, caller, agent);
    if (base === undefined) return failAfterAllow(gw, x, res, f, 'bad_request', 'the Host header is missing or malformed, so the card\'s URLs cannot be written (or set a2a.publicUrl)');
    f.card = { base };
  }
  if (isStreaming(method)) f.details['stream'] = true;
  await forward(gw, x, req, res, { ...f, url });
}

function failAfterAllow(gw: A2ADoorContext, x: Exchange, res: ServerResponse, f: Pick<Forwarding, 'rpc'>, code: ErrorCode, message: string): void {
  refuseIn(res, x, f, code, message);
  gw.pipeline.finish(x, { status: ERROR_CODES[code].status, code, message, bytesIn: 0, bytesOut: 0 });
}

/**
 * What makes two calls "the same" for the loop guard and remembered approvals: the params, less
 * the message id a client makes fresh for every message (an agent repeating itself still repeats).
 */
function argsKey(params: Record<string, unknown>): string {
  const message = params['message'];
  const p = message !== null && typeof message === 'object' && !Array.isArray(message) ? { ...params, message: { ...(message as Record<string, unknown>), messageId: undefined, message_id: undefined } } : params;
  return createHash('sha1').update(canonical(p)).digest('base64');
}
