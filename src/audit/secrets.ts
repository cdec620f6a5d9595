/**
 * What looks like a secret in text that goes into audit records and approval summaries (MCP tool
 * arguments, A2A message text, HTTP body excerpts and query strings, LLM prompt excerpts): one list,
 * so every front door's excerpts are scrubbed alike.
 */

/** Words that make a key name secret-looking (`password`, `api_key`, `X-Auth-Token` …). */
const SECRET_KEY_WORDS = 'pass(?:word)?|secret|token|api[_-]?key|auth|credential|private[_-]?key|cookie|session';

/** Object keys whose values are taken to be secrets whatever they hold. */
export const SECRET_KEY_RE = new RegExp(SECRET_KEY_WORDS, 'i');

/** Values shaped like well-known credentials: OpenAI and agent keys, GitHub and Slack tokens, AWS key ids, JWTs. */
const SECRET_VALUE_RE = /\b(sk-[A-Za-z0-9_-]{16,}|alk_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+)\b/g;

/**
 * `key=value` and `"key": "value"` pairs (forms, query strings, JSON or YAML text that did not
 * parse) whose key is secret-looking: the value is replaced.
 */
const SECRET_PAIR_RE = new RegExp(`(["']?)([\\w.%-]*(?:${SECRET_KEY_WORDS})[\\w.%-]*)\\1(\\s*[:=]\\s*)("(?:[^"\\\\]|\\\\.)*"?|'[^']*'?|[^\\s&,;"'}\\]][^&,;\\r\\n"'}\\]]*)`, 'gi');

/** `text` with every secret-looking value replaced by `[redacted]`. */
export function scrubSecrets(text: string): string {
  return text.replace(SECRET_VALUE_RE, '[redacted]');
}

/** `text` with secret-looking values, and the values of `key=value` pairs under secret-looking keys, replaced by `[redacted]`. */
export function scrubSecretText(text: string): string {
  return scrubSecrets(text.replace(SECRET_PAIR_RE, (_m, quote: string, key: string, sep: string) => `${quote}${key}${quote}${sep}[redacted]`));
}

/** A JSON value as bounded JSON text (at most `max` characters), values under secret-looking keys and secret-looking values replaced. */
export function scrubbedJson(value: unknown, max: number): string {
  const scrub = (v: unknown, depth: number): unknown => {
    if (depth > 6) return '…';
    if (typeof v === 'string') return scrubSecrets(v.length > max ? `${v.slice(0, max)}…` : v);
    if (Array.isArray(v)) return v.slice(0, 20).map((x) => scrub(x, depth + 1));
    if (v !== null && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v).slice(0, 50)) o[k] = SECRET_KEY_RE.test(k) ? '[redacted]' : scrub(x, depth + 1);
      return o;
    }
    return v;
  };
  const s = JSON.stringify(scrub(value, 0)) ?? '';
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
