/**
 * Webhook delivery shared by approval and alert notifications: a JSON POST to each target, retried
 * with backoff and jitter in the background on connection errors, 429 and 5xx. Delivery never
 * blocks or loses what it reports: the approval or alert exists whether or not a webhook answers.
 */
import { request, type Dispatcher } from 'undici';
import type { Logger } from '../telemetry/logger.js';

const ATTEMPTS = 5;
const FIRST_DELAY_MS = 500;

export interface WebhookTarget {
  webhook: string;
  headers: Record<string, string>;
}

/**
 * Text an agent controls (an action's path, a body excerpt, a user), made inert in chat: `&`, `<`
 * and `>` escaped as Slack-style incoming webhooks expect, so `<!channel>` or
 * `<https://…|Approve here>` stays text.
 */
export function inert(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export class Webhooks {
  private pending = 0;

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly log: Logger,
  ) {}

  /** Deliveries still being tried. */
  get inFlight(): number {
    return this.pending;
  }

  /**
   * Starts posting `payload` to every target; returns at once. `what` and `id` name the approval
   * or alert in the log lines of failed attempts (never the payload: it may quote an agent).
   */
  post(targets: readonly WebhookTarget[], payload: string, what: 'approval' | 'alert', id: string): void {
    for (const t of targets) {
      this.pending++;
      this.deliver(t, payload, what, id).finally(() => this.pending--);
    }
  }

  private async deliver(t: WebhookTarget, payload: string, what: 'approval' | 'alert', id: string): Promise<void> {
    const about = { [what]: id };
    // The host only: a webhook URL often carries its secret in the path (Slack, Teams).
    const webhook = new URL(t.webhook).host;
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
          this.log.warn({ ...about, webhook, status: res.statusCode }, `${what} webhook refused the notification`);
          return;
        }
        this.log.warn({ ...about, webhook, status: res.statusCode, attempt }, `${what} webhook failed; retrying`);
      } catch (e) {
        this.log.warn({ ...about, webhook, err: (e as { code?: string }).code ?? String(e), attempt }, `${what} webhook unreachable; retrying`);
      }
      if (attempt < ATTEMPTS) await new Promise((r) => setTimeout(r, FIRST_DELAY_MS * 2 ** (attempt - 1) * (0.5 + Math.random() / 2)).unref?.());
    }
  }
}
