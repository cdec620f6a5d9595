/**
 * What looks like a secret in text that goes into audit records and approval summaries (MCP tool
 * arguments, A2A message text): one list, so every front door's excerpts are scrubbed alike.
 */

/** Object keys whose values are taken to be secrets whatever they hold. */
export const SECRET_KEY_RE = /pass(word)?|secret|token|api[_-]?key|auth|credential|private[_-]?key|cookie|session/i;

/** Values shaped like well-known credentials: OpenAI and agent keys, GitHub and Slack tokens, AWS key ids, JWTs. */
const SECRET_VALUE_RE = /\b(sk-[A-Za-z0-9_-]{16,}|alk_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+)\b/g;

/** `text` with every secret-looking value replaced by `[redacted]`. */
export function scrubSecrets(text: string): string {
  return text.replace(SECRET_VALUE_RE, '[redacted]');
}
