/**
 * The MCP front door (SPEC section 5.3): `/mcp` is one Streamable HTTP MCP server aggregating every
 * configured server (tools and prompts named `<server>__<name>`), `/mcp/<server>` exposes one
 * server with its own names. Both protocol generations are served: the session-based one
 * (`initialize`, `Mcp-Session-Id`, GET stream; 2025-11-25 and earlier) and the stateless 2026-07-28
 * one (`server/discover`, per-request `_meta`, `Mcp-Method`/`Mcp-Name` headers checked against the
 * body, `subscriptions/listen`). Listings show an agent only what its rules let it use; calls are
 * judged in calls.ts.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ExchangeAbort } from '../../pipeline/abort.js';
import { ERROR_CODES, type ErrorCode } from '../../errors.js';
import type { Caller, DoorContext } from '../../server/context.js';
import { mcpResourceAction } from '../../policies/rules/pattern.js';
import { readBody } from '../http/body.js';
import { completionRequest, serveCompletion, type CompletionRef } from './completion.js';
import { judgedCall, type JudgedCall, type JudgedMethod } from './calls.js';
import type { McpHub } from './hub.js';
import { SessionTable, type Session } from './sessions.js';
import { NotificationStreams } from './streams.js';
import type { ListKind } from './upstream.js';
import { nestedDeeperThan } from '../json.js';
import { fromHeaderValue } from './direct.js';
import { LEGACY_VERSIONS, MODERN_VERSION, PROTOCOL_VERSION_META, Reply, RPC, SERVER_INFO, SUBSCRIPTION_ID_META, type RpcId } from './wire.js';

export interface McpDoorContext extends DoorContext {
  readonly mcpHub: McpHub;
}

const SEP = '__';
const SESSION_IDLE_MS = 60 * 60_000;
/** Levels of objects and arrays a JSON-RPC message may nest: far beyond any tool's arguments, far below what overflows the stack. */
const MAX_NESTING = 100;
const ALL_LISTS: ReadonlySet<ListKind> = new Set(['tools', 'prompts', 'resources']);
const CAPABILITIES = { tools: { listChanged: true }, resources: { listChanged: true }, prompts: { listChanged: true } };
const LISTINGS = new Set(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list']);
const WITH_COMPLETIONS = { ...CAPABILITIES, completions: {} };

/** airlock's capabilities: completions only when a server behind this path offers them. */
function capabilitiesOf(hub: McpHub, servers: string[]): Record<string, unknown> {
  return servers.some((s) => hub.get(s)?.capabilities?.['completions'] !== undefined) ? WITH_COMPLETIONS : CAPABILITIES;
}

interface DoorState {
  sessions: SessionTable;
  streams: NotificationStreams;
  /** In-flight requests by caller key + session + JSON-RPC id, for notifications/cancelled. */
  inFlight: Map<string, { abort(reason?: unknown): void }>;
}

const states = new WeakMap<McpHub, DoorState>();

function stateOf(hub: McpHub): DoorState {
  let s = states.get(hub);
  if (!s) {
    const st: DoorState = { sessions: new SessionTable(), streams: new NotificationStreams(), inFlight: new Map() };
    hub.onChange((server, lists) => st.streams.changed(server, lists));
    setInterval(() => st.sessions.sweep(Date.now(), SESSION_IDLE_MS), 60_000).unref();
    states.set(hub, st);
    s = st;
  }
  return s;
}

/** How many notification streams (session GET streams and subscriptions/listen) are open on this hub's door. */
export function openNotificationStreams(hub: McpHub): number {
  return states.get(hub)?.streams.size ?? 0;
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

/** Serves one `/mcp...` request from an authenticated caller. */
export async function serveMcp(gw: McpDoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller): Promise<void> {
  const hub = gw.mcpHub;
  const st = stateOf(hub);
  const path = (req.url ?? '/').split('?', 1)[0]!;
  const rest = path.replace(/^\/mcp\/?/, '');
  let scope: string | undefined;
  if (rest !== '') {
    let name = rest.replace(/\/+$/, '');
    try {
      name = decodeURIComponent(name);
    } catch {
      /* kept as sent */
    }
    scope = name;
  }
  const method = (req.method ?? 'GET').toUpperCase();
  const refuseHttp = (code: ErrorCode, message: string, rpcCode: number = RPC.INVALID_REQUEST, id: RpcId | null = null, status = ERROR_CODES[code].status) => {
    gw.pipeline.reject({ id: caller.requestId, protocol: 'mcp', agent: caller.agent, user: caller.user, session: caller.session, target: scope !== undefined ? { server: printable(scope) } : undefined, code, message, status, startedHr: caller.startedHr });
    if (!req.readableEnded && (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined)) res.setHeader('connection', 'close');
    new Reply(res, caller.requestId).error(id, rpcCode, `airlock: ${code}: ${message}`, { airlock_code: code, request_id: caller.requestId }, status);
  };
  if (scope !== undefined && (scope.includes('/') || !caller.config.mcp.servers.has(scope))) {
    return refuseHttp('not_found', `no MCP server named "${printable(scope)}" is configured (see mcp.servers); /mcp serves them all`);
  }

  const sid = req.headers['mcp-session-id'];
  const sessionOf = (): Session | 'missing' | 'unknown' => {
    if (typeof sid !== 'string') return 'missing';
    // Another agent's session id is as good as unknown (and is not marked as used).
    const s = st.sessions.get(sid);
    if (!s || s.keyId !== caller.keyId || s.scope !== scope) return 'unknown';
    return st.sessions.use(sid, Date.now())!;
  };

  if (method === 'GET') {
    const s = sessionOf();
    if (s === 'missing') return refuseHttp('bad_request', 'a GET stream needs the Mcp-Session-Id of an initialized session (2026-07-28 clients use subscriptions/listen)', RPC.INVALID_REQUEST, null, 405);
    if (s === 'unknown') return refuseHttp('not_found', 'unknown or expired MCP session; initialize again');
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no', 'mcp-session-id': s.id });
    res.flushHeaders();
    st.streams.add({ res, scope, subscriptionId: undefined, lists: ALL_LISTS }, caller.config.mcp.keepAliveMs);
    s.streams.add(res);
    res.on('close', () => s.streams.delete(res));
    return;
  }
  if (method === 'DELETE') {
    const s = sessionOf();
    if (typeof s === 'string') return refuseHttp('not_found', 'unknown or expired MCP session');
    st.sessions.delete(s.id);
    for (const r of s.streams) r.end();
    res.writeHead(200, { 'content-length': 0 }).end();
    return;
  }
  if (method !== 'POST') return refuseHttp('bad_request', `${printable(method)} is not an MCP method here: POST JSON-RPC, GET a session stream, DELETE a session`, RPC.INVALID_REQUEST, null, 405);

  const max = caller.config.mcp.maxBodySize;
  const cl = req.headers['content-length'];
  if (cl !== undefined && Number(cl) > max) return refuseHttp('payload_too_large', `the request (${cl} bytes) is over mcp.maxBodySize (${max} bytes); the session is unharmed`);
  let raw: Buffer;
  try {
    raw = await readBody(req, max);
  } catch (e) {
    if ((e as { code?: string }).code === 'payload_too_large') return refuseHttp('payload_too_large', `the request is over mcp.maxBodySize (${max} bytes); the session is unharmed`);
    return;
  }
  let msg: unknown;
  try {
    msg = JSON.parse(raw.toString('utf8'));
  } catch {
    return refuseHttp('bad_request', 'the body is not valid JSON', RPC.PARSE_ERROR, null, 400);
  }
  if (Array.isArray(msg)) return refuseHttp('bad_request', 'JSON-RPC batches are not supported by MCP (since 2025-06-18); send one message per request', RPC.INVALID_REQUEST, null, 400);
  if (msg === null || typeof msg !== 'object') return refuseHttp('bad_request', 'the body must be a JSON-RPC message object', RPC.INVALID_REQUEST, null, 400);
  const m = msg as Record<string, unknown>;
  const id = m['id'];
  const validId = typeof id === 'string' || (typeof id === 'number' && Number.isFinite(id));
  const name = m['method'];
  // Refused before anything walks it: canonical() (the loop guard's key), the SDK and the upstream
  // all recurse once per level, and arguments nested ~10,000 deep overflow the stack.
  if (nestedDeeperThan(raw, MAX_NESTING)) {
    return refuseHttp('bad_request', `the message is nested more than ${MAX_NESTING} levels deep (objects and arrays); flatten the arguments`, RPC.INVALID_PARAMS, validId ? (id as RpcId) : null, 400);
  }
  if (m['jsonrpc'] !== '2.0') return refuseHttp('bad_request', 'not a JSON-RPC 2.0 message ("jsonrpc": "2.0" missing)', RPC.INVALID_REQUEST, validId ? (id as RpcId) : null, 400);
  const params = m['params'] ?? {};
  if (params === null || typeof params !== 'object' || Array.isArray(params)) return refuseHttp('bad_request', 'params must be an object', RPC.INVALID_PARAMS, validId ? (id as RpcId) : null, 400);
  const p = params as Record<string, unknown>;
  const meta = p['_meta'] !== null && typeof p['_meta'] === 'object' ? (p['_meta'] as Record<string, unknown>) : {};
  const headerVersion = req.headers['mcp-protocol-version'];
  const modern = headerVersion === MODERN_VERSION || meta[PROTOCOL_VERSION_META] === MODERN_VERSION;

  // Responses to server requests and notifications from the client: nothing airlock asked for.
  if (typeof name !== 'string') {
    if (('result' in m || 'error' in m) && validId) return void res.writeHead(202, { 'content-length': 0 }).end();
    return refuseHttp('bad_request', 'a JSON-RPC request needs a string "method"', RPC.INVALID_REQUEST, validId ? (id as RpcId) : null, 400);
  }
  if (modern) {
    const hm = req.headers['mcp-method'];
    if (hm !== undefined && hm !== name) return refuseHttp('bad_request', `the Mcp-Method header ("${printable(String(hm))}") disagrees with the body's method ("${printable(name)}")`, RPC.INVALID_REQUEST, validId ? (id as RpcId) : null, 400);
    const rawName = req.headers['mcp-name'];
    const hn = typeof rawName === 'string' ? fromHeaderValue(rawName) : rawName;
    const bodyName = name === 'resources/read' ? p['uri'] : name === 'tools/call' || name === 'prompts/get' ? p['name'] : undefined;
    if (rawName !== undefined && bodyName !== undefined && hn !== bodyName) {
      return refuseHttp('bad_request', `the Mcp-Name header ("${printable(String(rawName))}") disagrees with the body ("${printable(String(bodyName))}")`, RPC.INVALID_REQUEST, validId ? (id as RpcId) : null, 400);
    }
  }
  const inFlightKey = (rid: unknown) => `${caller.keyId}\n${typeof sid === 'string' ? sid : ''}\n${JSON.stringify(rid)}`;
  if (!('id' in m)) {
    if (name === 'notifications/cancelled') st.inFlight.get(inFlightKey(p['requestId']))?.abort();
    res.writeHead(202, { 'content-length': 0 }).end();
    return;
  }
  if (!validId) return refuseHttp('bad_request', 'the JSON-RPC id must be a string or a number', RPC.INVALID_REQUEST, null, 400);
  const rid = id as RpcId;
  // The stateless generation has no handshake: a client that claims it and still sends
  // `initialize` gets told so (there is no session to answer it with).
  if (modern && name === 'initialize') {
    return refuseHttp('bad_request', `initialize belongs to the session-based protocol (${LEGACY_VERSIONS[0]} and earlier); a ${MODERN_VERSION} client calls server/discover instead, or leaves out the ${MODERN_VERSION} version to open a session`, RPC.INVALID_REQUEST, rid, 400);
  }

  // Session handling (the session-based generation only).
  const extra: Record<string, string> = {};
  let session: Session | undefined;
  if (!modern) {
    if (name === 'initialize') {
      const asked = typeof p['protocolVersion'] === 'string' ? p['protocolVersion'] : LEGACY_VERSIONS[0]!;
      session = { id: randomUUID(), agent: caller.agent.name, keyId: caller.keyId, scope, protocolVersion: LEGACY_VERSIONS.includes(asked) ? asked : LEGACY_VERSIONS[0]!, streams: new Set(), lastSeen: Date.now() };
      const refused = st.sessions.open(session);
      if (refused === 'agent_full') {
        return refuseHttp('concurrency_limited', `agent "${printable(caller.agent.name)}" already has ${st.sessions.perAgent} MCP sessions, each with an open GET stream; end one (DELETE) or close its stream before starting another`, RPC.INVALID_REQUEST, rid);
      }
      if (refused === 'table_full') {
        return refuseHttp('concurrency_limited', `airlock already holds its ${st.sessions.max} MCP sessions, none of them this agent's to replace; retry later, end sessions no longer used (DELETE), or speak ${MODERN_VERSION}, which needs no session`, RPC.INVALID_REQUEST, rid);
      }
    } else {
      const s = sessionOf();
      if (s === 'missing') return refuseHttp('bad_request', `no Mcp-Session-Id: initialize first (or speak ${MODERN_VERSION} with the MCP-Protocol-Version header)`, RPC.INVALID_REQUEST, rid, 400);
      if (s === 'unknown') return refuseHttp('not_found', 'unknown or expired MCP session; initialize again', RPC.INVALID_REQUEST, rid, 404);
      session = s;
    }
    extra['mcp-session-id'] = session.id;
  }
  const reply = new Reply(res, caller.requestId, extra, modern);
  const complete = (r: Record<string, unknown>) => r;
  const listResult = (r: Record<string, unknown>) => {
    reply.cacheable = true;
    return r;
  };

  const servers = scope !== undefined ? [scope] : hub.names();
  const may = (action: string) => caller.config.rules.decide(caller.agent.name, action).decision !== 'deny';
  const external = (server: string, n: string) => (scope !== undefined ? n : `${server}${SEP}${n}`);
  /** A name from the agent → server and upstream name; undefined when it names no configured server. */
  const internal = (n: string): { server: string; name: string } | undefined => {
    if (scope !== undefined) return { server: scope, name: n };
    const i = n.indexOf(SEP);
    if (i <= 0) return undefined;
    const server = n.slice(0, i);
    return hub.get(server) ? { server, name: n.slice(i + SEP.length) } : undefined;
  };

  // Listings are answered whole, in one page: airlock never hands out a cursor, so any cursor is not one of its own.
  if (LISTINGS.has(name) && p['cursor'] !== undefined) {
    return reply.error(rid, RPC.INVALID_PARAMS, 'airlock: bad_request: invalid cursor: airlock answers every listing in one page and never gives out cursors', { airlock_code: 'bad_request', request_id: caller.requestId });
  }

  switch (name) {
    case 'initialize':
      return reply.result(rid, { protocolVersion: session!.protocolVersion, capabilities: capabilitiesOf(hub, servers), serverInfo: SERVER_INFO, instructions: scope !== undefined ? `MCP server "${scope}" through airlock.` : `Every MCP server airlock offers, tools named <server>${SEP}<tool>.` });
    case 'server/discover':
      return reply.result(rid, { supportedVersions: [MODERN_VERSION, ...LEGACY_VERSIONS], capabilities: capabilitiesOf(hub, servers), resultType: 'complete', ttlMs: 0, cacheScope: 'private', _meta: { 'io.modelcontextprotocol/serverInfo': SERVER_INFO } });
    case 'ping':
      return reply.result(rid, complete({}));
    case 'logging/setLevel':
      return reply.result(rid, complete({}));
    case 'tools/list': {
      const tools: Record<string, unknown>[] = [];
      for (const s of servers) for (const t of hub.tools(s)) if (may(`mcp: ${s}/${t.name}`)) tools.push({ ...t, name: external(s, t.name) });
      return reply.result(rid, listResult({ tools }));
    }
    case 'prompts/list': {
      const prompts: Record<string, unknown>[] = [];
      for (const s of servers) for (const pr of hub.get(s)?.catalogue.prompts ?? []) if (may(`mcp-prompt: ${s}/${String(pr['name'])}`)) prompts.push({ ...pr, name: external(s, String(pr['name'])) });
      return reply.result(rid, listResult({ prompts }));
    }
    case 'resources/list': {
      const resources: Record<string, unknown>[] = [];
      for (const s of servers) for (const r of hub.get(s)?.catalogue.resources ?? []) if (may(mcpResourceAction(s, String(r['uri'])))) resources.push(r);
      return reply.result(rid, listResult({ resources }));
    }
    case 'resources/templates/list': {
      const resourceTemplates: Record<string, unknown>[] = [];
      // A template is judged as the resource its URI template names (as completion/complete is):
      // `mcp-resource: docs/file:///handbook/*` lists `file:///handbook/{name}`.
      for (const s of servers) for (const r of hub.get(s)?.catalogue.templates ?? []) if (may(mcpResourceAction(s, String(r['uriTemplate'])))) resourceTemplates.push(r);
      return reply.result(rid, listResult({ resourceTemplates }));
    }
    case 'subscriptions/listen': {
      const n = (p['notifications'] ?? {}) as Record<string, unknown>;
      const lists = new Set<ListKind>();
      if (n['toolsListChanged'] === true) lists.add('tools');
      if (n['promptsListChanged'] === true) lists.add('prompts');
      if (n['resourcesListChanged'] === true) lists.add('resources');
      reply.stream();
      reply.notify('notifications/subscriptions/acknowledged', { notifications: n, _meta: { [SUBSCRIPTION_ID_META]: rid } });
      st.streams.add({ res, scope, subscriptionId: rid, lists }, caller.config.mcp.keepAliveMs);
      const key = inFlightKey(rid);
      const ac = new AbortController();
      st.inFlight.set(key, ac);
      ac.signal.addEventListener('abort', () => reply.result(rid, { resultType: 'complete', _meta: { [SUBSCRIPTION_ID_META]: rid } }));
      res.on('close', () => st.inFlight.delete(key));
      return;
    }
    case 'completion/complete': {
      const creq = completionRequest(p, rid);
      if (typeof creq === 'string') return reply.error(rid, RPC.INVALID_PARAMS, `airlock: bad_request: ${creq}`, { airlock_code: 'bad_request', request_id: caller.requestId });
      const ref = p['ref'] as Record<string, unknown> | null | undefined;
      const type = ref !== null && typeof ref === 'object' ? ref['type'] : undefined;
      let cref: CompletionRef | undefined;
      let what: string;
      if (type === 'ref/prompt' && typeof ref!['name'] === 'string') {
        const where = internal(ref!['name']);
        what = `prompt "${printable(ref!['name'])}"`;
        const up = where && hub.get(where.server);
        if (where && up && (!up.connected || up.catalogue.prompts.some((x) => x['name'] === where.name))) cref = { server: where.server, type, name: where.name };
      } else if (type === 'ref/resource' && typeof ref!['uri'] === 'string') {
        const uri = ref!['uri'];
        what = `resource template ${printable(uri)}`;
        const server = scope ?? templateOwner(hub, servers, uri) ?? serverOfUri(hub, servers, uri);
        if (server !== undefined) cref = { server, type, name: uri };
      } else {
        return reply.error(rid, RPC.INVALID_PARAMS, 'airlock: bad_request: completion/complete needs ref: {type: "ref/prompt", name} or {type: "ref/resource", uri}', { airlock_code: 'bad_request', request_id: caller.requestId });
      }
      if (!cref) return reply.error(rid, RPC.INVALID_PARAMS, `airlock: not_found: no MCP server offers the ${what}${scope === undefined && type === 'ref/prompt' ? ` (on /mcp prompts are named <server>${SEP}<prompt>)` : ''}`, { airlock_code: 'not_found', request_id: caller.requestId });
      const ac = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) ac.abort();
      });
      return serveCompletion(gw, hub, caller, cref, creq, reply, ac.signal);
    }
    case 'tools/call':
    case 'prompts/get':
    case 'resources/read': {
      let call: JudgedCall;
      const progressToken = meta['progressToken'];
      const base = { method: name as JudgedMethod, rpcId: rid, progressToken: typeof progressToken === 'string' || typeof progressToken === 'number' ? progressToken : undefined, bytesIn: raw.length, raw };
      const args = p['arguments'];
      if (args !== undefined && (args === null || typeof args !== 'object' || Array.isArray(args))) return reply.error(rid, RPC.INVALID_PARAMS, 'airlock: bad_request: arguments must be an object', { airlock_code: 'bad_request', request_id: caller.requestId });
      if (name === 'resources/read') {
        const uri = p['uri'];
        if (typeof uri !== 'string' || uri === '') return reply.error(rid, RPC.INVALID_PARAMS, 'airlock: bad_request: resources/read needs a string uri', { airlock_code: 'bad_request', request_id: caller.requestId });
        const server = scope ?? serverOfUri(hub, servers, uri);
        if (server === undefined) return reply.error(rid, RPC.INVALID_PARAMS, `airlock: not_found: no MCP server offers the resource ${printable(uri)}`, { airlock_code: 'not_found', request_id: caller.requestId });
        call = { ...base, server, target: uri, args: undefined };
      } else {
        const n = p['name'];
        if (typeof n !== 'string' || n === '') return reply.error(rid, RPC.INVALID_PARAMS, `airlock: bad_request: ${name} needs a string name`, { airlock_code: 'bad_request', request_id: caller.requestId });
        const where = internal(n);
        if (!where) {
          const what = name === 'tools/call' ? 'tool' : 'prompt';
          const message = scope === undefined ? `no ${what} named "${printable(n)}": on /mcp names are <server>${SEP}<${what}> and the server must be configured` : `no ${what} named "${printable(n)}"`;
          if (name === 'tools/call') return reply.result(rid, complete({ content: [{ type: 'text', text: `airlock: not_found: ${message}` }], isError: true, _meta: { 'airlock/error': { code: 'not_found', requestId: caller.requestId } } }));
          return reply.error(rid, RPC.INVALID_PARAMS, `airlock: not_found: ${message}`, { airlock_code: 'not_found', request_id: caller.requestId });
        }
        call = { ...base, server: where.server, target: where.name, args: args as Record<string, unknown> | undefined };
      }
      reply.cacheable = name !== 'tools/call';
      if (call.progressToken !== undefined && acceptsSse(req)) reply.stream();
      const key = inFlightKey(rid);
      const cancel = new ExchangeAbort();
      st.inFlight.set(key, cancel);
      res.on('close', () => {
        if (!res.writableFinished) cancel.abort('client_closed');
      });
      try {
        await judgedCall(gw, hub, caller, call, reply, cancel);
      } finally {
        st.inFlight.delete(key);
      }
      return;
    }
    default:
      return reply.error(rid, RPC.METHOD_NOT_FOUND, `airlock: bad_request: method "${printable(name)}" is not supported`, { airlock_code: 'bad_request', request_id: caller.requestId });
  }
}

function acceptsSse(req: IncomingMessage): boolean {
  const a = req.headers.accept;
  return typeof a === 'string' && a.includes('text/event-stream');
}

/** The server that lists this exact URI template. */
function templateOwner(hub: McpHub, servers: string[], uriTemplate: string): string | undefined {
  return servers.find((s) => hub.get(s)?.catalogue.templates.some((t) => t['uriTemplate'] === uriTemplate));
}

/** The server whose resources (or templates' fixed prefix) contain this URI. */
function serverOfUri(hub: McpHub, servers: string[], uri: string): string | undefined {
  for (const s of servers) if (hub.get(s)?.catalogue.resources.some((r) => r['uri'] === uri)) return s;
  for (const s of servers) {
    for (const t of hub.get(s)?.catalogue.templates ?? []) {
      const tpl = String(t['uriTemplate'] ?? '');
      const prefix = tpl.split('{', 1)[0]!;
      if (prefix !== '' && uri.startsWith(prefix)) return s;
    }
  }
  return undefined;
}
