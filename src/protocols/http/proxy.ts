/**
 * Forward-proxy mode (SPEC 5.1): agents whose HTTP clients honour `HTTP_PROXY` / `HTTPS_PROXY`
 * send their calls to the agent port as a proxy, authenticated with
 * `Proxy-Authorization: Basic base64(<agent>:<key>)`.
 *
 * - `GET http://host/path` (absolute form): judged as `http: GET host/path` and forwarded like a
 *   `/http` call (same path checks, limits, approvals, audit), to that host.
 * - `CONNECT host:443` (how clients reach https:// URLs through a proxy): judged as
 *   `http: CONNECT host:443`; once allowed, a byte tunnel. airlock sees neither paths nor bodies
 *   inside it (TLS), only the host, the port, the duration and the bytes each way.
 *
 * Off unless `http.forwardProxy` is set: rules written for `/http` services (such as an allow of
 * GET on every service) would otherwise open every host on the internet to the agents they name.
 *
 * Whatever the rules say, the proxy does not reach the gateway's own ports (an agent must not
 * approve its own calls through the admin API) nor link-local addresses (cloud metadata services
 * hand out credentials at 169.254.169.254): checked on the address actually connected to, so a
 * DNS name pointing there does not help.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { connect as netConnect, isIP, type LookupFunction, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Duplex } from 'node:stream';
import { buildConnector, Agent, type Dispatcher } from 'undici';
import type { HttpService } from '../../config/compile.js';
import { ERROR_CODES, errorBody, type ErrorCode } from '../../errors.js';
import type { Exchange } from '../../pipeline/types.js';
import type { Caller, DoorContext } from '../../server/context.js';
import { FORBIDDEN_ADDRESS, upstreamFailure } from '../../upstream/dispatcher.js';
import { refuseHttp, serveDestination } from './door.js';
import { canonicalHost } from './host.js';
import { checkPath } from './route.js';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Why a forward-proxy connection was not made: the address is the gateway's own, or link-local. */
export class ForbiddenAddress extends Error {
  readonly code = FORBIDDEN_ADDRESS;
}

/** The gateway's own listeners, which the proxy must not reach. */
export interface OwnPorts {
  ports(): readonly number[];
}

const LINK_LOCAL = 'link-local and cloud metadata addresses are not reachable through the forward proxy';

/**
 * Link-local addresses, where cloud metadata services hand out the machine's credentials
 * (169.254.169.254 on AWS, GCP, Azure, Oracle), and the metadata addresses outside that range:
 * AWS's IPv6 endpoint fd00:ec2::254 and Alibaba Cloud's 100.100.100.200. An IPv4 address written
 * inside IPv6 (mapped `::ffff:a.b.c.d`, or NAT64 `64:ff9b::a.b.c.d`) is judged as that address.
 */
function isLinkLocal(address: string): boolean {
  const a = embeddedIPv4(address) ?? address.toLowerCase();
  return a.startsWith('169.254.') || a === '100.100.100.200' || /^fe[89ab][0-9a-f]:/.test(a) || a === 'fd00:ec2::254';
}

/** The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address, in dotted form; undefined otherwise. */
function embeddedIPv4(address: string): string | undefined {
  const m = /^(?:::ffff:|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(address);
  if (!m) return undefined;
  if (m[1]) return m[1];
  const hi = parseInt(m[2]!, 16);
  const lo = parseInt(m[3]!, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Whether connecting to `address:port` is refused whatever the rules say (see the module comment). */
export function forbiddenAddress(address: string | undefined, port: number | undefined, own: OwnPorts): string | undefined {
  if (address === undefined) return undefined;
  if (isLinkLocal(address)) return LINK_LOCAL;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (port !== undefined && own.ports().includes(port) && isLocalAddress(a)) return "the gateway's own ports are not reachable through the forward proxy";
  return undefined;
}

/**
 * Name resolution for forward-proxy connections: a name that resolves only to link-local
 * addresses fails before any packet is sent (an IP literal is checked by the caller, as Node does
 * not look it up). The gateway's own ports are checked once connected, when the port is known.
 */
const guardedLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return (callback as (e: Error | null) => void)(err);
    const usable = (addresses as LookupAddress[]).filter((a) => !isLinkLocal(a.address));
    if (usable.length === 0) return (callback as (e: Error | null) => void)(new ForbiddenAddress(LINK_LOCAL));
    if (options.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, usable);
    (callback as (e: null, a: string, f: number) => void)(null, usable[0]!.address, usable[0]!.family);
  });
};

/** Why an IP-literal host is refused before connecting, if it is. */
function forbiddenLiteral(host: string): string | undefined {
  const h = host.startsWith('[') ? host.slice(1, -1) : host;
  return isIP(h) !== 0 && isLinkLocal(h) ? LINK_LOCAL : undefined;
}

function isLocalAddress(a: string): boolean {
  if (a.startsWith('127.') || a === '::1' || a === '0.0.0.0' || a === '::') return true;
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) if (i.address === a) return true;
  return false;
}

/** The undici dispatcher of forward-proxy calls: the usual pools, with the address check on every new connection. */
export function createProxyDispatcher(own: OwnPorts): Dispatcher {
  const base = buildConnector({ timeout: 10_000, lookup: guardedLookup } as buildConnector.BuildOptions);
  return new Agent({
    connections: 256,
    pipelining: 1,
    keepAliveTimeout: 10_000,
    keepAliveMaxTimeout: 60_000,
    connect: (opts, cb) => {
      const literal = forbiddenLiteral(opts.hostname);
      if (literal) return cb(new ForbiddenAddress(literal), null);
      base(opts, (err, socket) => {
        if (err || !socket) return cb(err ?? new Error('no socket'), null);
        const why = forbiddenAddress(socket.remoteAddress, socket.remotePort, own);
        if (!why) return cb(null, socket);
        socket.destroy();
        cb(new ForbiddenAddress(why), null);
      });
    },
  });
}

/** The agent's key from `Proxy-Authorization: Basic base64(agent:key)`: the only place a proxy client sends it. */
export function proxyCredentials(h: IncomingMessage['headers']): { agent: string; key: string } | undefined {
  const pa = h['proxy-authorization'];
  if (pa === undefined || pa.slice(0, 6).toLowerCase() !== 'basic ') return undefined;
  const decoded = Buffer.from(pa.slice(6).trim(), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  return i > 0 ? { agent: decoded.slice(0, i), key: decoded.slice(i + 1) } : undefined;
}

/** How a host is named in actions and targets: `host`, or `host:port` when the port is not the scheme's default. */
function hostLabel(hostname: string, port: number, defaultPort: number): string {
  return port === defaultPort ? hostname : `${hostname}:${port}`;
}

/** A stand-in service for a host: its origin, nothing injected, forward-proxy mode's timeout and size cap. */
function hostService(name: string, origin: string, p: { timeoutMs: number; maxBodySize: number }): HttpService {
  return { name, url: new URL(origin), basePath: '', headers: [], timeoutMs: p.timeoutMs, retries: 0, maxBodySize: p.maxBodySize, process: undefined };
}

/** Serves an absolute-form request (`GET http://host/path`) from an authenticated caller. */
export async function serveProxied(gw: DoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller): Promise<void> {
  const p = caller.config.http.forwardProxy!;
  const raw = req.url ?? '';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return refuseHttp(gw, res, caller, 'bad_request', 'the request target is not a valid absolute URL');
  }
  if (url.protocol !== 'http:') return refuseHttp(gw, res, caller, 'bad_request', `only http:// URLs are proxied this way; ${url.protocol}// goes through CONNECT (HTTPS_PROXY)`);
  if (url.username || url.password) return refuseHttp(gw, res, caller, 'bad_request', 'credentials in the URL are not forwarded; send them in a header');
  if (raw.includes('#')) return refuseHttp(gw, res, caller, 'bad_request', 'a fragment (#) is not allowed in the request target; encode it as %23 if it is part of the path');
  // The path as sent (WHATWG URL parsing would resolve dot segments and hide them from the check).
  const afterHost = raw.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');
  const q = afterHost.indexOf('?');
  const rawPath = (q === -1 ? afterHost : afterHost.slice(0, q)) || '/';
  const query = q === -1 ? '' : afterHost.slice(q);
  const path = checkPath(rawPath);
  if (typeof path !== 'string') return refuseHttp(gw, res, caller, 'bad_request', `${path.problem}; the request was not forwarded`);
  const host = canonicalHost(url.hostname);
  if (host === undefined) return refuseHttp(gw, res, caller, 'bad_request', 'the request target names no valid host');
  const port = url.port === '' ? 80 : Number(url.port);
  const name = hostLabel(host, port, 80);
  return serveDestination(gw, req, res, caller, { svc: hostService(name, `http://${name}`, p), kind: 'host', rawPath, path, query });
}

/** Writes a response on a raw socket (a CONNECT request has no ServerResponse) and closes it. */
function answerRaw(socket: Duplex, status: number, requestId: string, body: string, extra: Record<string, string> = {}): void {
  if (!socket.writable) return void socket.destroy();
  const head = [`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`, 'content-type: application/json', `content-length: ${Buffer.byteLength(body)}`, `x-airlock-request-id: ${requestId}`, 'connection: close'];
  for (const [k, v] of Object.entries(extra)) head.push(`${k}: ${v}`);
  // The agent port keeps half-open sockets (allowHalfOpen), and a CONNECT socket is no longer the
  // HTTP server's to close: ending our side alone would hold it until the client closes, through a
  // drain (server.close() waits for it) and however many a client leaves open.
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 407: 'Proxy Authentication Required', 429: 'Too Many Requests', 500: 'Internal Server Error', 502: 'Bad Gateway', 504: 'Gateway Timeout' };

/** A gateway error on a raw socket, in the SPEC's JSON shape; `unauthenticated` as 407 with the challenge proxy clients expect. */
export function refuseRaw(socket: Duplex, requestId: string, code: ErrorCode, message: string, opts: { rule?: string | undefined; retryAfterS?: number | undefined } = {}): void {
  const extra: Record<string, string> = {};
  if (opts.retryAfterS !== undefined) extra['retry-after'] = String(opts.retryAfterS);
  let status = ERROR_CODES[code].status;
  if (code === 'unauthenticated') {
    status = 407;
    extra['proxy-authenticate'] = 'Basic realm="airlock"';
  }
  answerRaw(socket, status, requestId, errorBody(code, message, requestId, opts.rule), extra);
}

/** `host:port` of a CONNECT request, or undefined when it is not one. */
export function connectTarget(authority: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(authority);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  if (m[1]!.startsWith('[') && isIP(m[1]!.slice(1, -1)) !== 6) return undefined;
  const host = canonicalHost(m[1]!);
  if (host === undefined || (!host.startsWith('[') && host.split('.').some((l) => l.length > 63))) return undefined;
  return { host, port };
}

/** What an agent may send before its tunnel opens (kept for the host); beyond it, its socket is not read until then. */
const EARLY_BYTES_MAX = 64 * 1024;

/**
 * A CONNECT request from an authenticated caller: judged as `http: CONNECT host:port`, then a
 * tunnel until either side closes, a kill switch covers it, or the gateway shuts down.
 */
export async function serveConnect(gw: DoorContext & { own: OwnPorts }, req: IncomingMessage, socket: Duplex, head: Buffer, caller: Caller): Promise<void> {
  const { requestId } = caller;
  const t = connectTarget(req.url ?? '');
  const refuse = (code: ErrorCode, message: string, action?: string, target?: Record<string, unknown>) => {
    gw.pipeline.reject({ id: requestId, protocol: 'http', agent: caller.agent, user: caller.user, session: caller.session, action, target, code, message, status: ERROR_CODES[code].status, startedHr: caller.startedHr });
    refuseRaw(socket, requestId, code, message);
  };
  if (!t) return refuse('bad_request', 'CONNECT needs host:port (for example api.github.com:443)');
  const label = `${t.host}:${t.port}`;
  const action = `http: CONNECT ${label}`;
  const target = { host: label, method: 'CONNECT' };
  const x = gw.pipeline.begin({ id: requestId, protocol: 'http', agent: caller.agent, keyId: caller.keyId, user: caller.user, session: caller.session, action, target, argsKey: '', summary: `CONNECT ${label} (a tunnel: airlock sees the host and port, not what passes inside)`, config: caller.config, tunnel: true });
  const gone = () => {
    if (!x.abort.aborted) x.abort.abort('client_closed');
  };
  socket.once('close', gone); // its 'error' is ignored by connectHandler, which passed it here
  // Until the tunnel opens the agent's socket is read, and what it sends kept for the host (a client
  // may send its TLS hello without waiting for the 200), so that its hanging up is seen: the agent
  // port keeps half-open sockets, and an agent that hangs up while its CONNECT is held for approval
  // or connecting sends a FIN that 'close' never reports (nor, unread, a reset).
  const early: Buffer[] = head.length > 0 ? [head] : [];
  let earlyBytes = head.length;
  const keep = (c: Buffer) => {
    early.push(c);
    earlyBytes += c.length;
    if (earlyBytes >= EARLY_BYTES_MAX) socket.pause();
  };
  socket.on('data', keep);
  socket.once('end', gone);
  socket.resume();
  /** What the agent sent before the tunnel opened; from then on its half-close is the tunnel's to pass on. */
  const takeEarly = () => {
    socket.off('data', keep);
    socket.off('end', gone);
    return Buffer.concat(early);
  };
  const verdict = await gw.pipeline.decide(x);
  if (verdict.kind === 'deny') return refuseRaw(socket, requestId, verdict.code, verdict.message, { rule: verdict.rule, retryAfterS: verdict.retryAfterS });
  tunnel(gw, x, socket, takeEarly, t.host.replace(/^\[|\]$/g, ''), t.port, caller.config.http.forwardProxy!.timeoutMs);
}

function tunnel(gw: DoorContext & { own: OwnPorts }, x: Exchange, client: Duplex, takeEarly: () => Buffer, host: string, port: number, timeoutMs: number): void {
  let bytesIn = 0;
  let bytesOut = 0;
  let opened = false;
  let done = false;
  let upstream: Socket | undefined;
  /**
   * Ends the exchange, once. Before the tunnel opened, the agent is answered with `answer` (the
   * error of `code`); after, its connection is simply closed, as the host's would be.
   */
  const end = (status: number | undefined, code: ErrorCode | undefined, message: string | undefined, answer?: string, refused?: true) => {
    if (done) return;
    done = true;
    x.abort.off('abort', onAbort);
    upstream?.destroy();
    if (!opened && code !== undefined && answer !== undefined) refuseRaw(client, x.id, code, answer);
    else client.destroy();
    gw.pipeline.finish(x, { status, code, message, refused, bytesIn, bytesOut });
  };
  const forbidden = (why: string) => end(403, 'denied', why, why, true);
  const onAbort = () => {
    const reason = x.abort.reason;
    if (reason === 'killed') return end(opened ? 200 : 403, 'killed', 'stopped by a kill switch while in flight', 'a kill switch stopped this call while it was in flight');
    if (reason === 'shutdown') return end(opened ? 200 : 502, 'upstream_error', 'cut short by gateway shutdown', 'the gateway is shutting down; retry');
    if (reason === 'revoked') return end(opened ? 200 : 403, 'denied', 'cut: its key was revoked, or the config no longer lets it through', 'this agent may no longer open this tunnel');
    end(opened ? 200 : undefined, undefined, 'the agent disconnected');
  };
  x.abort.on('abort', onAbort);
  // Called off while its decision record was being written (the agent hung up, a kill switch, a
  // shutdown): answered and recorded as such, its socket closed.
  if (x.abort.aborted) return onAbort();

  const literal = forbiddenLiteral(host);
  if (literal) return forbidden(literal);
  const up = netConnect({ host, port, lookup: guardedLookup });
  upstream = up;
  up.setTimeout(timeoutMs, () => {
    if (opened) return end(200, undefined, `the tunnel was idle for ${timeoutMs} ms`);
    end(504, 'upstream_timeout', 'the upstream did not accept the connection in time', `${host}:${port} did not accept the connection in time`);
  });
  up.once('connect', () => {
    const why = forbiddenAddress(up.remoteAddress, up.remotePort, gw.own);
    if (why) return forbidden(why);
    opened = true;
    gw.log.debug({ exchange: x.id, host, port }, 'tunnel open');
    client.write(`HTTP/1.1 200 Connection Established\r\nx-airlock-request-id: ${x.id}\r\n\r\n`);
    const first = takeEarly();
    if (first.length > 0) {
      bytesIn += first.length;
      up.write(first);
    }
    client.on('data', (c: Buffer) => (bytesIn += c.length));
    up.on('data', (c: Buffer) => (bytesOut += c.length));
    client.pipe(up);
    up.pipe(client);
    client.once('close', () => end(200, undefined, undefined));
    up.once('close', () => end(200, undefined, undefined));
  });
  up.once('error', (e) => {
    if (e instanceof ForbiddenAddress) return forbidden(e.message);
    if (opened) return end(200, 'upstream_error', `the tunnel broke: ${(e as { code?: string }).code ?? e.message}`);
    const f = upstreamFailure(e);
    end(ERROR_CODES[f.code].status, f.code, f.message, `${host}:${port}: ${f.message}`);
  });
}
