/** Header hygiene for forwarding, both ways. */
import type { IncomingHttpHeaders } from 'node:http';

/** RFC 9110 hop-by-hop headers, never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect']);

/** Agent credentials: the agent's key must never reach an upstream. */
const AGENT_CREDENTIALS = new Set(['authorization', 'x-api-key', 'proxy-authorization']);

/**
 * The headers to send upstream: the agent's, less hop-by-hop (including those its Connection header
 * names), less its credentials and `x-airlock-*` (and `alsoDrop`: a door that keeps the agent's
 * cookies to itself, for example), plus the service's configured ones.
 */
export function upstreamRequestHeaders(h: IncomingHttpHeaders, inject: readonly [string, string][], alsoDrop?: ReadonlySet<string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const conn = h.connection;
  const named = conn ? new Set(conn.toLowerCase().split(',').map((s) => s.trim())) : undefined;
  for (const name in h) {
    if (HOP_BY_HOP.has(name) || AGENT_CREDENTIALS.has(name) || name.startsWith('x-airlock-') || named?.has(name) || alsoDrop?.has(name)) continue;
    const v = h[name];
    if (v !== undefined) out[name] = v;
  }
  for (const [k, v] of inject) out[k] = v;
  return out;
}

/**
 * The headers to send to a host through the forward proxy: the agent's, less hop-by-hop (the
 * proxy's own credentials among them) and `x-airlock-*`. Its credentials for that host
 * (`Authorization`, `x-api-key`) go along, unless one carries an airlock agent key.
 */
export function originRequestHeaders(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out = upstreamRequestHeaders(h, []);
  for (const name of ['authorization', 'x-api-key'] as const) {
    const v = h[name];
    if (typeof v === 'string' && !carriesAgentKey(v)) out[name] = v;
  }
  return out;
}

/** Whether a credential carries an airlock agent key: as is, or base64-encoded in `Basic` (the proxy credentials a client repeats for the host). */
function carriesAgentKey(v: string): boolean {
  if (v.includes('alk_')) return true;
  const basic = /^basic\s+(\S+)/i.exec(v);
  return basic !== null && Buffer.from(basic[1]!, 'base64').toString('latin1').includes('alk_');
}

/**
 * The upstream's response headers for the agent, less hop-by-hop (and `alsoDrop`: a door that
 * rewrites the body drops its length, for example).
 */
export function agentResponseHeaders(h: Record<string, string | string[] | undefined>, requestId: string, alsoDrop?: ReadonlySet<string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const conn = h['connection'];
  // The usual `keep-alive` / `close` name no other header: skip building a set for them.
  const named = typeof conn === 'string' && conn !== 'keep-alive' && conn !== 'close' ? new Set(conn.toLowerCase().split(',').map((s) => s.trim())) : undefined;
  for (const name in h) {
    if (HOP_BY_HOP.has(name) || named?.has(name) || alsoDrop?.has(name)) continue;
    const v = h[name];
    if (v !== undefined) out[name] = v;
  }
  out['x-airlock-request-id'] = requestId;
  return out;
}
