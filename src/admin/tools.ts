/**
 * Admin endpoints for MCP tool pins (SPEC 5.3, rug-pull defence):
 *   GET  /api/tools                         every pinned tool, with status pinned | changed, and the
 *                                           pinning mode in force (what a changed status means:
 *                                           quarantined under strict, still callable under warn)
 *   POST /api/tools/accept {server, tool}   pins a changed definition (404 when nothing waits) and
 *                                           tells connected MCP clients that the tool list changed
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Gateway } from '../gateway.js';
import type { ListKind } from '../protocols/mcp/upstream.js';
import { sendError, sendJson } from '../server/respond.js';
import { readJson } from './body.js';

const TOOLS: ReadonlySet<ListKind> = new Set(['tools']);

/** Serves the request if it is a tools endpoint; returns false otherwise. */
export async function serveTools(gw: Gateway, req: IncomingMessage, res: ServerResponse, url: URL, operator: string, requestId: string): Promise<boolean> {
  const path = url.pathname;
  if (path !== '/api/tools' && !path.startsWith('/api/tools/')) return false;
  const method = req.method ?? 'GET';

  if (path === '/api/tools' && method === 'GET') {
    const status = url.searchParams.get('status');
    if (status !== null && status !== 'pinned' && status !== 'changed') {
      sendError(res, requestId, 'bad_request', 'status must be pinned or changed');
      return true;
    }
    const tools = gw.pins.list().filter((p) => status === null || p.status === status);
    sendJson(res, 200, { pinning: gw.config().mcp.pinning, tools });
    return true;
  }
  if (path === '/api/tools/accept' && method === 'POST') {
    const body = await readJson(req);
    const { server, tool } = body;
    if (typeof server !== 'string' || server === '' || typeof tool !== 'string' || tool === '') {
      sendError(res, requestId, 'bad_request', 'give server and tool, as non-empty strings');
      return true;
    }
    const before = gw.pins.get(server, tool);
    if (!gw.pins.accept(server, tool)) {
      sendError(res, requestId, 'not_found', before ? `${server}/${tool} has no changed definition waiting to be accepted` : `no tool ${server}/${tool} has been seen`);
      return true;
    }
    const pin = gw.pins.get(server, tool)!;
    gw.log.warn({ server, tool, from: before?.fingerprint, to: pin.fingerprint, by: operator }, 'changed MCP tool definition accepted');
    // The tool is visible again: connected agents hear it now instead of at their next reconnect.
    gw.mcpHub.announce(server, TOOLS);
    gw.bus.emit('tool_accepted', { server, tool, fingerprint: pin.fingerprint, previousFingerprint: before?.fingerprint, by: operator, at: new Date().toISOString() });
    sendJson(res, 200, { accepted: pin });
    return true;
  }
  return false;
}
