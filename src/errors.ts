/**
 * The error-code catalogue (SPEC section 10): every error the gateway itself returns has one of
 * these codes. Mirrored, with causes and remedies, in docs/errors.md.
 */
export type ErrorCode =
  | 'unauthenticated'
  | 'denied'
  | 'approval_denied'
  | 'approval_timeout'
  | 'killed'
  | 'tool_changed'
  | 'rate_limited'
  | 'concurrency_limited'
  | 'loop_detected'
  | 'budget_exceeded'
  | 'bad_request'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'upstream_timeout'
  | 'upstream_error'
  | 'internal_error';

interface CodeInfo {
  status: number;
  /** The Anthropic error `type` an Anthropic SDK maps to the right exception class. */
  anthropicType: string;
}

export const ERROR_CODES: Readonly<Record<ErrorCode, CodeInfo>> = {
  unauthenticated: { status: 401, anthropicType: 'authentication_error' },
  denied: { status: 403, anthropicType: 'permission_error' },
  approval_denied: { status: 403, anthropicType: 'permission_error' },
  approval_timeout: { status: 403, anthropicType: 'permission_error' },
  killed: { status: 403, anthropicType: 'permission_error' },
  tool_changed: { status: 403, anthropicType: 'permission_error' },
  rate_limited: { status: 429, anthropicType: 'rate_limit_error' },
  concurrency_limited: { status: 429, anthropicType: 'rate_limit_error' },
  loop_detected: { status: 429, anthropicType: 'rate_limit_error' },
  budget_exceeded: { status: 402, anthropicType: 'billing_error' },
  bad_request: { status: 400, anthropicType: 'invalid_request_error' },
  not_found: { status: 404, anthropicType: 'not_found_error' },
  conflict: { status: 409, anthropicType: 'invalid_request_error' },
  payload_too_large: { status: 413, anthropicType: 'request_too_large' },
  upstream_timeout: { status: 504, anthropicType: 'timeout_error' },
  upstream_error: { status: 502, anthropicType: 'api_error' },
  internal_error: { status: 500, anthropicType: 'api_error' },
};

/** An error the gateway reports to a caller; carries its stable code. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly rule: string | undefined;
  readonly retryAfterS: number | undefined;
  constructor(code: ErrorCode, message: string, opts: { rule?: string | undefined; retryAfterS?: number | undefined } = {}) {
    super(message);
    this.name = 'GatewayError';
    this.code = code;
    this.rule = opts.rule;
    this.retryAfterS = opts.retryAfterS;
  }
  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

/** The SPEC's JSON error body for `/http` and the OpenAI surface. */
export function errorBody(code: ErrorCode, message: string, requestId: string, rule?: string): string {
  const error: Record<string, string> = { type: 'airlock_error', code, message, request_id: requestId };
  if (rule !== undefined) error['rule'] = rule;
  return JSON.stringify({ error });
}
