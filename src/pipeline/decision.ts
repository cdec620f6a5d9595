/** Maps a denial's code to the audit decision it records. */
import type { AuditDecision } from '../audit/record.js';
import type { ErrorCode } from '../errors.js';

export function auditDecisionFor(code: ErrorCode): AuditDecision {
  switch (code) {
    case 'killed':
      return 'killed';
    case 'rate_limited':
    case 'concurrency_limited':
    case 'loop_detected':
    case 'budget_exceeded':
      return 'limited';
    case 'approval_denied':
      return 'rejected';
    case 'approval_timeout':
      return 'expired';
    default:
      return 'denied';
  }
}
