/**
 * The one undici dispatcher for upstream calls: keep-alive pools per origin, never `fetch` (which
 * costs hundreds of microseconds per call).
 */
import { Agent } from 'undici';

export function createDispatcher(): Agent {
  return new Agent({
    connections: 256,
    pipelining: 1,
    keepAliveTimeout: 10_000,
    keepAliveMaxTimeout: 60_000,
    connect: { timeout: 10_000 },
  });
}

/** The code of a forward-proxy connection refused for its address (protocols/http/proxy.ts). */
export const FORBIDDEN_ADDRESS = 'AIRLOCK_FORBIDDEN_ADDRESS';

/** Maps an undici failure to the gateway's error code. */
export function upstreamFailure(e: unknown): { code: 'upstream_timeout' | 'upstream_error'; message: string } {
  const code = (e as { code?: string } | null)?.code ?? '';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return { code: 'upstream_timeout', message: 'the upstream did not answer in time' };
  }
  const detail = code || (e instanceof Error ? e.message : 'unknown error');
  return { code: 'upstream_error', message: `the upstream could not be reached or broke the connection (${detail})` };
}
