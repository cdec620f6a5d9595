/**
 * Webhook notifications of new approvals. Each webhook gets a JSON POST with a human-readable
 * `text` (what chat incoming-webhooks display), the structured approval, and the admin API URLs to
 * approve or deny. Failures are retried with backoff in the background: a notification never
 * blocks or loses the approval itself.
 */
import { request, type Dispatcher } from 'undici';
import type { Logger } from '../telemetry/logger.js';
import type { Approval } from './types.js';

const ATTEMPTS = 5;
const FIRST_DELAY_MS = 500;

export interface WebhookTarget {
  webhook: string;
  headers: Record<string, string>;
}

/**
 * Text an agent controls (the action's path, the body excerpt, the user), made inert in chat:
 * `&`, `<` and `>` escaped as Slack-style incoming webhooks expect, so `<!channel>` or
 * `<https://…|Approve here>` stays text.
 */
function inert(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

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
  private pending = 0;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly log: Logger,
  ) {}

  /** Notifications still being tried. */
  get inFlight(): number {
    return this.pending;
  }

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
    for (const t of targets) {
      this.pending++;
      this.deliver(t, payload, a.id).finally(() => this.pending--);
    }
  }

  private async deliver(t: WebhookTarget, payload: string, approvalId: string): Promise<void> {
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      try {
        const res = await request(t.webhook, {
          method: 'POST',
          dispatcher: this.dispatcher,
          headers: { 'content-type': 'application/json', ...t.headers },
          body: payload,
          headersTimeout: 5000,
          bodyTimeout: 5000,
        });
        await res.body.dump();
        if (res.statusCode < 300) return;
        if (res.statusCode < 500 && res.statusCode !== 429) {
          this.log.warn({ approval: approvalId, webhook: new URL(t.webhook).host, status: res.statusCode }, 'approval webhook refused the notification');
          return;
        }
        this.log.warn({ approval: approvalId, webhook: new URL(t.webhook).host, status: res.statusCode, attempt }, 'approval webhook failed; retrying');
      } catch (e) {
        this.log.warn({ approval: approvalId, webhook: new URL(t.webhook).host, err: (e as { code?: string }).code ?? String(e), attempt }, 'approval webhook unreachable; retrying');
      }
      if (attempt < ATTEMPTS) await new Promise((r) => setTimeout(r, FIRST_DELAY_MS * 2 ** (attempt - 1) * (0.5 + Math.random() / 2)).unref?.());
    }
  }
}
