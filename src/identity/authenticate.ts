/**
 * Finds the agent key a caller presented, wherever its client puts an API key:
 * `Authorization: Bearer`, `x-api-key`, or `Proxy-Authorization: Basic base64(agent:key)`.
 */
import type { IncomingHttpHeaders } from 'node:http';

export interface Presented {
  key: string;
  /** For Proxy-Authorization: the agent name the caller claims; must match the key's agent. */
  claimedAgent?: string;
}

/** The presented key, or undefined when the caller sent none. */
export function presentedKey(h: IncomingHttpHeaders): Presented | undefined {
  const auth = h.authorization;
  if (auth !== undefined && auth.length > 7 && auth.slice(0, 7).toLowerCase() === 'bearer ') return { key: auth.slice(7).trim() };
  const xk = h['x-api-key'];
  if (typeof xk === 'string' && xk.length > 0) return { key: xk.trim() };
  const pa = h['proxy-authorization'];
  if (pa !== undefined && pa.slice(0, 6).toLowerCase() === 'basic ') {
    const decoded = Buffer.from(pa.slice(6).trim(), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i > 0) return { key: decoded.slice(i + 1), claimedAgent: decoded.slice(0, i) };
  }
  return undefined;
}

const ATTRIBUTION_RE = /^[\x21-\x7e]{1,200}$/;

/** An attribution header value (`x-airlock-session`, `x-airlock-user`): visible ASCII, at most 200. */
export function validAttribution(v: string): boolean {
  return ATTRIBUTION_RE.test(v);
}
