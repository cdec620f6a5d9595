/**
 * The admin port's REST API (SPEC section 9): agents and keys, audit query, kill switches, alerts,
 * the SSE event feed, metrics and health. Bearer-token protected whenever a token is configured
 * (and a token is required when the port is not on loopback).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PostgresUnavailable } from '../audit/postgres.js';
import { AUDIT_DECISIONS } from '../audit/record.js';
import { isLoopbackHost } from '../config/compile.js';
import { parseDuration, parseSince } from '../config/units.js';
import type { ErrorCode } from '../errors.js';
import type { Gateway } from '../gateway.js';
import { sameDigest, hashKey } from '../identity/keys.js';
import { createStoredKey, publicKey } from '../identity/keystore.js';
import { PROTOCOLS } from '../pipeline/types.js';
import { PatternError } from '../policies/rules/pattern.js';
import { sendError, sendJson } from '../server/respond.js';
import { ANSWERED_LOCK_WAIT_MS } from '../store/deferred.js';
import type { AuditRow, KillScope } from '../store/types.js';
import { BadBody, readJson } from './body.js';
import { serveApprovals } from './approvals.js';
import { serveConsole } from './console.js';
import { serveEvents } from './events.js';
import { serveTools } from './tools.js';
import { serveUsage } from './usage.js';
import { randomUUID } from 'node:crypto';

/**
 * Audit rows as the API returns them: the record, plus its place in the chain — and, read from
 * PostgreSQL (store.postgres), the node (gateway) whose chain it is in. None of these is part of
 * the hashed record.
 */
export function auditView(r: AuditRow & { node?: string }): Record<string, unknown> {
  const v = JSON.parse(r.record) as Record<string, unknown>;
  return r.node === undefined ? { ...v, seq: r.seq, prevHash: r.prevHash, hash: r.hash } : { ...v, node: r.node, seq: r.seq, prevHash: r.prevHash, hash: r.hash };
}

function killTarget(body: Record<string, unknown>): { scope: KillScope; value: string } | string {
  const given = (['agent', 'team', 'target', 'all'] as const).filter((k) => body[k] !== undefined && body[k] !== false);
  if (given.length !== 1) return 'give exactly one of agent, team, target or all';
  const scope = given[0]!;
  if (scope === 'all') return body['all'] === true ? { scope, value: '*' } : 'all must be true';
  const v = body[scope];
  if (typeof v !== 'string' || v.trim() === '') return `${scope} must be a non-empty string`;
  return { scope, value: v.trim() };
}

/** The longest `expires` a key may be given. */
const MAX_KEY_LIFETIME_MS = 36_500 * 86_400_000;

export function adminHandler(gw: Gateway): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    route(gw, req, res).catch((e: unknown) => {
      const requestId = randomUUID();
      if (e instanceof BadBody) return sendError(res, requestId, 'bad_request', e.message);
      // decodeURIComponent of a path segment such as `%zz` throws URIError: the caller's mistake, not ours.
      if (e instanceof URIError) return sendError(res, requestId, 'bad_request', 'the path has malformed percent-encoding');
      if (e instanceof PostgresUnavailable) {
        gw.log.error({ url: req.url }, e.message);
        return sendError(res, requestId, 'internal_error', e.message);
      }
      gw.log.error({ err: e, url: req.url }, 'admin request failed');
      sendError(res, requestId, 'internal_error', 'the admin request failed; see the gateway log');
    });
  };
}

/**
 * Why a request must be refused as a browser's, or undefined. A browser is the one client that
 * someone else can make call a loopback port: a web page the operator visits sends cross-site
 * requests (which carry Origin; a text/plain POST needs no preflight), and a DNS name rebound to
 * 127.0.0.1 reaches the port with that name in Host. No airlock client sends Origin, and a client
 * of a loopback admin port names a loopback host. The one page allowed is the console, which this
 * port serves itself: its requests carry this very origin (`http://` + Host, or `https://` + Host
 * behind a reverse proxy that ends TLS), which no other page can send.
 */
const SAME_ORIGIN_SCHEMES = ['http://', 'https://'];

function browserRefusal(req: IncomingMessage, listenHost: string): string | undefined {
  const host = req.headers.host;
  const origin = req.headers.origin;
  // https: the console reached through a reverse proxy that ends TLS and passes Host on.
  if (origin !== undefined && (host === undefined || !SAME_ORIGIN_SCHEMES.some((scheme) => origin.toLowerCase() === `${scheme}${host.toLowerCase()}`))) {
    return 'the admin API does not answer requests from other web pages (this one has an Origin header); use the console on this port, the airlock CLI or an HTTP client';
  }
  if (host === undefined || !isLoopbackHost(listenHost)) return undefined;
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.split(':')[0]!;
  if (isLoopbackHost(name.toLowerCase())) return undefined;
  return `the admin port listens on loopback and answers only loopback host names (127.0.0.1, [::1], localhost), not "${host.slice(0, 100)}"`;
}

/**
 * What a client says of its user (`x-airlock-operator`). The console percent-encodes it (a header
 * value is Latin-1 only, and a browser refuses to send any other name), so it is decoded when it
 * decodes; control characters are dropped either way (the CLI prints it on a terminal).
 */
function operatorClaim(header: string | undefined): string | undefined {
  if (!header) return undefined;
  let v = header;
  if (v.includes('%')) {
    try {
      v = decodeURIComponent(v);
    } catch {
      // not percent-encoding: as sent
    }
  }
  return v.replace(/[\u0000-\u001f\u007f-\u009f]/g, '').slice(0, 100) || undefined;
}

async function route(gw: Gateway, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const requestId = randomUUID();
  res.setHeader('x-airlock-request-id', requestId);
  // Answers quote what agents wrote (summaries, actions): no browser may read one as anything but its declared type.
  res.setHeader('x-content-type-options', 'nosniff');
  const fail = (code: ErrorCode, message: string) => sendError(res, requestId, code, message);
  const url = new URL(req.url ?? '/', 'http://admin');
  const path = url.pathname;
  const method = req.method ?? 'GET';

  if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
  if (path === '/readyz') return gw.ready() ? sendJson(res, 200, { status: 'ready' }) : sendJson(res, 503, { status: gw.isDraining() ? 'draining' : 'starting' });

  const refused = browserRefusal(req, gw.config().admin.listen.host);
  if (refused) return fail('denied', refused);
  // The console's files hold no data: they load without the token, and the page asks for it.
  if (serveConsole(path, method, res)) return;

  const tokens = gw.config().admin.tokens;
  let tokenName: string | undefined;
  const auth = req.headers.authorization ?? '';
  const presented = hashKey(auth.toLowerCase().startsWith('bearer ') ? auth.slice(7).trim() : '');
  if (tokens.length > 0) {
    // Compare against every token in constant time, so timing tells nothing about which matched.
    for (const t of tokens) if (sameDigest(presented, hashKey(t.token))) tokenName ??= t.name;
    if (tokenName === undefined) return fail('unauthenticated', 'the admin API needs "Authorization: Bearer <admin token>"');
  }
  // The operator recorded as approver or killer: the named token, plus what the CLI says of its user.
  const claimed = operatorClaim(req.headers['x-airlock-operator'] as string | undefined);
  const operator = tokenName !== undefined ? (claimed ? `${tokenName} (${claimed})` : tokenName) : (claimed ?? 'admin-api');

  if (path === '/metrics' && method === 'GET') {
    const body = await gw.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': gw.metrics.registry.contentType });
    res.end(body);
    return;
  }
  if (path === '/api/events' && method === 'GET') {
    // A feed outlives its request: once a reload drops the token it was opened with, it ends.
    const admitted = () => {
      const now = gw.config().admin.tokens;
      return now.length === 0 || now.some((t) => sameDigest(presented, hashKey(t.token)));
    };
    return serveEvents(gw.bus, req, res, admitted);
  }

  if (path === '/api/agents' && method === 'GET') {
    const c = gw.config();
    const keys = gw.store.listKeys();
    const agents = [...c.agents.values()].map((a) => ({
      name: a.name,
      team: a.team ?? null,
      limits: { requests: a.limits.requests?.text ?? null, tokens: a.limits.tokens?.text ?? null, budget: a.limits.budget?.text ?? null, concurrency: a.limits.concurrency ?? null },
      keys: c.configKeys.filter((k) => k.agent === a.name).length + keys.filter((k) => k.agent === a.name && publicKey(k)['status'] === 'active').length,
    }));
    return sendJson(res, 200, { agents });
  }

  let m = /^\/api\/agents\/([^/]+)\/keys$/.exec(path);
  if (m && method === 'POST') {
    const agent = decodeURIComponent(m[1]!);
    if (!gw.config().agents.has(agent)) return fail('not_found', `no agent named "${agent}" is declared in the config`);
    const body = await readJson(req);
    let expiresInMs: number | undefined;
    if (body['expires'] !== undefined) {
      expiresInMs = typeof body['expires'] === 'string' ? parseDuration(body['expires']) : undefined;
      if (expiresInMs === undefined || expiresInMs <= 0) return fail('bad_request', 'expires must be a duration such as 30d, 12h or 90m');
      // An expiry past what a Date can hold would be stored, then make every key listing throw (toISOString).
      if (expiresInMs > MAX_KEY_LIFETIME_MS) return fail('bad_request', 'expires can be at most 36500d (100 years)');
    }
    let created;
    try {
      // A key is handed out only once it is stored (it must still work after a restart); another
      // process's lock on the store is waited for briefly, not for the 5 s busy timeout.
      created = gw.store.withLockWait(ANSWERED_LOCK_WAIT_MS, () => createStoredKey(gw.store, agent, expiresInMs));
    } catch (e) {
      gw.log.error({ err: e, agent }, 'could not store a new agent key');
      return fail('internal_error', 'the new key could not be stored (the store is locked by another process or failing); no key was made, try again');
    }
    gw.keyCreated(created.record);
    gw.log.info({ agent, keyId: created.record.id, by: operator }, 'agent key created');
    return sendJson(res, 201, { ...publicKey(created.record), key: created.key });
  }
  if (m && method === 'GET') {
    const agent = decodeURIComponent(m[1]!);
    return sendJson(res, 200, { keys: listKeys(gw, agent) });
  }
  if (path === '/api/keys' && method === 'GET') return sendJson(res, 200, { keys: listKeys(gw, url.searchParams.get('agent') ?? undefined) });
  m = /^\/api\/keys\/([^/]+)$/.exec(path);
  if (m && method === 'DELETE') {
    const id = decodeURIComponent(m[1]!);
    if (id.startsWith('config:')) return fail('bad_request', 'this key comes from the config file; remove it there (the config reloads on change)');
    const r = gw.revokeKey(id);
    if (!r) return fail('not_found', `no key with id "${id}"`);
    gw.log.info({ keyId: id, by: operator }, 'agent key revoked');
    return sendJson(res, 200, publicKey(r));
  }

  if (path === '/api/audit' && method === 'GET') {
    const q = url.searchParams;
    const limit = q.get('limit');
    const sinceIso = parseSince(q.get('since'));
    if (sinceIso instanceof Error) return fail('bad_request', 'since must be an ISO time or a duration such as 1h');
    if (limit !== null && !/^\d+$/.test(limit)) return fail('bad_request', 'limit must be a whole number');
    // A misspelt filter (decision=deny) would otherwise answer "no records", which reads as "none happened".
    const filterProblem = auditFilterProblem(q.get('protocol'), q.get('decision'));
    if (filterProblem) return fail('bad_request', filterProblem);
    await gw.audit.settled(); // read-your-writes: records of exchanges already answered are in the result
    const filter = {
      agent: q.get('agent') ?? undefined,
      protocol: q.get('protocol') ?? undefined,
      decision: q.get('decision') ?? undefined,
      since: sinceIso,
      limit: limit === null ? 100 : Number(limit),
    };
    // With store.postgres, every gateway's records (this one's newest shipped first: read-your-writes again).
    const rows = gw.postgres ? await gw.postgres.query(filter) : gw.store.queryAudit(filter);
    return sendJson(res, 200, { records: rows.map(auditView) });
  }

  if (path === '/api/kill') {
    if (method === 'GET') return sendJson(res, 200, { kills: gw.kills.active });
    if (method === 'POST' || method === 'DELETE') {
      const body = await readJson(req);
      const t = killTarget(body);
      if (typeof t === 'string') return fail('bad_request', t);
      if (method === 'POST') {
        // A kill switch on a name nothing carries would stop nothing while looking like it did
        // (a typo during an incident): only declared agents and teams.
        const c = gw.config();
        if (t.scope === 'agent' && !c.agents.has(t.value)) return fail('not_found', `no agent named "${t.value}" is declared in the config, so a kill switch on it would stop nothing; check the name (airlock kill --list shows switches, GET /api/agents the agents)`);
        if (t.scope === 'team' && !c.teams.has(t.value) && ![...c.agents.values()].some((a) => a.team === t.value)) return fail('not_found', `no team named "${t.value}" is declared or used by an agent, so a kill switch on it would stop nothing; check the name`);
        const reason = typeof body['reason'] === 'string' ? body['reason'].slice(0, 500) : undefined;
        try {
          const { kill, aborted } = gw.kill(t.scope, t.value, reason, operator);
          return sendJson(res, 200, { kill, aborted });
        } catch (e) {
          if (e instanceof PatternError) return fail('bad_request', e.message);
          throw e;
        }
      }
      const lifted = gw.unkill(t.scope, t.value, operator);
      if (!lifted) return fail('not_found', `no kill switch on ${t.scope} ${t.value}`);
      return sendJson(res, 200, { lifted: { scope: t.scope, value: t.value } });
    }
  }

  if (await serveApprovals(gw, req, res, url, operator, requestId)) return;
  if (await serveTools(gw, req, res, url, operator, requestId)) return;

  if (path === '/api/usage' && method === 'GET') {
    await gw.audit.settled(); // usage is read from final records: include calls already answered
    const pg = gw.postgres;
    return serveUsage(pg ? (by, since) => pg.usage(by, since) : (by, since) => gw.store.usageSummary(by, since), url, res, (m) => fail('bad_request', m));
  }

  if (path === '/api/alerts' && method === 'GET') {
    const limit = Number(url.searchParams.get('limit') ?? 100);
    return sendJson(res, 200, { alerts: gw.alerts.list(Number.isFinite(limit) ? limit : 100, url.searchParams.get('since') ?? undefined) });
  }

  if (path === '/api/config' && method === 'POST' && url.searchParams.get('action') === 'reload') {
    const r = gw.reload('admin API');
    return r.ok ? sendJson(res, 200, { reloaded: true }) : fail('bad_request', r.error);
  }

  return fail('not_found', `no admin endpoint ${method} ${path}`);
}

function listKeys(gw: Gateway, agent: string | undefined): Record<string, unknown>[] {
  const c = gw.config();
  const out: Record<string, unknown>[] = c.configKeys
    .filter((k) => agent === undefined || k.agent === agent)
    .map((k) => ({ id: k.id, agent: k.agent, prefix: k.prefix, source: 'config', createdAt: null, expiresAt: null, revokedAt: null, status: 'active' }));
  for (const k of gw.store.listKeys(agent)) out.push(publicKey(k));
  return out;
}

/** What is wrong with an audit query's protocol or decision filter, if anything. */
export function auditFilterProblem(protocol: string | null | undefined, decision: string | null | undefined): string | undefined {
  if (protocol != null && !(PROTOCOLS as readonly string[]).includes(protocol)) return `protocol must be one of ${PROTOCOLS.join(', ')}`;
  if (decision != null && !(AUDIT_DECISIONS as readonly string[]).includes(decision)) return `decision must be one of ${AUDIT_DECISIONS.join(', ')}`;
  return undefined;
}
