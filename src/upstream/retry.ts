/** When and how long to wait before trying an upstream again. */

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const RETRY_STATUS = new Set([502, 503, 504]);
/** Connection-level failures where the request surely did not get a response. */
const RETRY_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** The longest Retry-After honoured; a longer one is passed to the agent rather than waited out. */
export const RETRY_AFTER_CAP_MS = 5000;
const BASE_DELAY_MS = 100;

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

export function isRetryableStatus(status: number): boolean {
  return RETRY_STATUS.has(status);
}

export function isRetryableError(e: unknown): boolean {
  const code = (e as { code?: string } | null)?.code;
  return code !== undefined && RETRY_ERRORS.has(code);
}

/** Exponential backoff with full jitter in [d/2, d]: 100ms, 200ms, 400ms … */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const d = BASE_DELAY_MS * 2 ** attempt;
  return Math.round(d / 2 + random() * (d / 2));
}

/** Retry-After (seconds or HTTP date) in ms; undefined when absent or unreadable. */
export function retryAfterMs(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || s === '') return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}
