/** Approvals (SPEC section 6): a held exchange waiting for a human. */

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled';

/** Every approval status, for checking filters. */
export const APPROVAL_STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'denied', 'expired', 'cancelled'];

export interface Approval {
  id: string;
  exchangeId: string;
  agent: string;
  team: string | undefined;
  user: string | undefined;
  session: string | undefined;
  protocol: string;
  action: string;
  /** Human-readable: method, URL and body excerpt; tool and arguments; model and prompt excerpt. */
  summary: string;
  /** Identity of the arguments, for `remember`. */
  argsKey: string;
  rule: string | undefined;
  createdAt: string;
  expiresAt: string;
  status: ApprovalStatus;
  decidedBy: string | undefined;
  decidedAt: string | undefined;
  reason: string | undefined;
}

/** "Approve the same agent + action + arguments for a while." */
export interface Remembered {
  id: string;
  agent: string;
  action: string;
  argsKey: string;
  approvalId: string;
  createdBy: string;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | undefined;
}
