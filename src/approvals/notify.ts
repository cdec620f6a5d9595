/**
 * Webhook notifications of new approvals. Each webhook gets a JSON POST with a human-readable
 * `text` (what chat incoming-webhooks display), the structured approval, and the admin API URLs to
 * approve or deny. Failures are retried with backoff in the background: a notification never
 * blocks or loses the approval itself.
 */
import type { Webhooks, WebhookTarget } from '../events/webhooks.js';
import { inert } from '../events/webhooks.js';
import type { Approval } from './types.js';

/** The message a person reads in chat. The summary is quoted line by line: it cannot pass for airlock's own lines. */
export function approvalText(a: Approval, adminUrl: string): string {
  return [
    `airlock: agent "${inert(a.agent)}"${a.user ? ` (for user ${inert(a.user)})` : ''} wants to ${inert(a.action)}`,
    a.summary === undefined ? undefined : a.summary.split(/\r?\n|\r|\u2028|\u2029/).map((line) => `> ${inert(line)}`).join('\n'),
    `Approve: airlock approvals approve ${a.id}   Deny: airlock approvals deny ${a.id} --reason "..."`,
    `(admin API: POST ${adminUrl}/api/approvals/${a.id}; expires ${a.expiresAt})`,
  ].join('\n');
}

export class ApprovalNotifier {
  constructor(private readonly webhooks: Webhooks) {}

  /** Starts notifying every target; returns at once. */
  notify(targets: readonly WebhookTarget[], a: Approval, adminUrl: string): void {
    if (targets.length === 0) return;
    const payload = JSON.stringify({
      text: approvalText(a, adminUrl),
      event: 'approval.created',
      approval: a,
      approveUrl: `${adminUrl}/api/approvals/${a.id}`,
      decide: { method: 'POST', url: `${adminUrl}/api/approvals/${a.id}`, body: { decision: 'approve | deny', reason: '…', remember: '10m' } },
    });
    this.webhooks.post(targets, payload, 'approval', a.id);
  }
}
