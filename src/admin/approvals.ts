/**
 * Admin endpoints for approvals:
 *   GET  /api/approvals?status=pending&limit=    list
 *   GET  /api/approvals/<id>                      one
 *   POST /api/approvals/<id> {decision: "approve"|"deny", reason?, remember?: "10m"}
 *   GET  /api/approvals/remembered                active "remember" grants
 *   DELETE /api/approvals/remembered/<id>         revoke one
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { APPROVAL_STATUSES, type ApprovalStatus } from '../approvals/types.js';
import { parseDuration } from '../config/units.js';
import type { Gateway } from '../gateway.js';
import { sendError, sendJson } from '../server/respond.js';
import { readJson } from './body.js';

const STATUSES = new Set<ApprovalStatus>(APPROVAL_STATUSES);

/** Serves the request if it is an approvals endpoint; returns false otherwise. */
export async function serveApprovals(gw: Gateway, req: IncomingMessage, res: ServerResponse, url: URL, operator: string, requestId: string): Promise<boolean> {
  const path = url.pathname;
  if (path !== '/api/approvals' && !path.startsWith('/api/approvals/')) return false;
  const method = req.method ?? 'GET';
  const fail = (code: 'bad_request' | 'not_found' | 'conflict' | 'internal_error', message: string) => {
    sendError(res, requestId, code, message);
    return true;
  };

  if (path === '/api/approvals' && method === 'GET') {
    const s = url.searchParams.get('status');
    if (s !== null && !STATUSES.has(s as ApprovalStatus)) return fail('bad_request', `status must be one of ${[...STATUSES].join(', ')}`);
    const limit = Number(url.searchParams.get('limit') ?? 100);
    const n = Number.isFinite(limit) ? Math.min(Math.max(limit, 1), 1000) : 100;
    let approvals = gw.approvals.list((s ?? undefined) as ApprovalStatus | undefined, n);
    // In a cluster, calls held on the other gateways wait here too.
    if (gw.cluster && (s === null || s === 'pending')) {
      const elsewhere = await gw.cluster.approvals.pendingElsewhere().catch(() => []);
      if (elsewhere.length > 0) approvals = [...approvals, ...elsewhere].sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1)).slice(0, n);
    }
    sendJson(res, 200, { approvals });
    return true;
  }
  if (path === '/api/approvals/remembered' && method === 'GET') {
    sendJson(res, 200, { remembered: gw.approvals.listRemembered() });
    return true;
  }
  const rem = /^\/api\/approvals\/remembered\/([^/]+)$/.exec(path);
  if (rem && method === 'DELETE') {
    const id = decodeURIComponent(rem[1]!);
    if (!gw.approvals.forget(id)) return fail('not_found', `no active remembered approval "${id}"`);
    sendJson(res, 200, { forgotten: id });
    return true;
  }
  const m = /^\/api\/approvals\/([^/]+)$/.exec(path);
  if (m && method === 'GET') {
    const id = decodeURIComponent(m[1]!);
    const a = gw.approvals.get(id) ?? (await gw.cluster?.approvals.getElsewhere(id).catch(() => undefined));
    if (!a) return fail('not_found', `no approval with id "${m[1]!}"`);
    sendJson(res, 200, a);
    return true;
  }
  if (m && method === 'POST') {
    const body = await readJson(req);
    const decision = body['decision'];
    if (decision !== 'approve' && decision !== 'deny') return fail('bad_request', 'decision must be "approve" or "deny"');
    const reason = body['reason'];
    if (reason !== undefined && typeof reason !== 'string') return fail('bad_request', 'reason must be a string');
    let rememberMs: number | undefined;
    if (body['remember'] !== undefined) {
      if (decision !== 'approve') return fail('bad_request', 'remember goes with an approval');
      rememberMs = typeof body['remember'] === 'string' ? parseDuration(body['remember']) : undefined;
      if (rememberMs === undefined || rememberMs <= 0) return fail('bad_request', 'remember must be a duration such as 10m or 1h');
    }
    const by = typeof body['by'] === 'string' && body['by'] ? `${operator} as ${body['by'].slice(0, 100)}` : operator;
    const id = decodeURIComponent(m[1]!);
    let r = gw.approvals.decide(id, decision, by, reason?.slice(0, 1000), rememberMs);
    // Not held here: in a cluster, the gateway holding it decides.
    if (!r.ok && r.status === 404 && gw.cluster) r = (await gw.cluster.approvals.decideElsewhere(id, decision, by, reason?.slice(0, 1000), rememberMs)) ?? r;
    if (!r.ok) return fail(r.status === 400 ? 'bad_request' : r.status === 404 ? 'not_found' : r.status === 409 ? 'conflict' : 'internal_error', r.message);
    sendJson(res, 200, r.approval);
    return true;
  }
  return false;
}
