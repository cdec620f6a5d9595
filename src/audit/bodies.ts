/**
 * Request and response bodies for the final audit record, with `audit.bodies: true` (SPEC 8:
 * "bodies are stored after redaction"). A front door hands over what it already has: a body it
 * read whole, or the chunks of a streamed one as they pass (a tee of bytes it relays anyway; the
 * agent sees no difference). At most BODY_CAP bytes of each are kept, plus a little more so that a
 * secret straddling the cut is still recognised. Nothing is read, parsed or redacted until the
 * exchange's final record is written, after the agent has its answer.
 *
 * With `audit.bodies` off (the default) no front door makes an ExchangeBodies: no work and no
 * allocation per exchange beyond the flag's check.
 */
import { mayHoldSecrets, REDACTED, redactJsonText, redactText, redactValues, SECRET_KEY_RE, type RedactionCount } from './secrets.js';

/** What a final record's `bodies` holds. */
export interface AuditBodies {
  request?: string;
  response?: string;
  requestTruncated?: true;
  responseTruncated?: true;
}

/** Bytes of each body kept in the record (as UTF-8). */
const BODY_CAP = 64 * 1024;
/**
 * Bytes read past the cap before redacting: a credential or a secret key's value that straddles
 * the cut is replaced whole before the text is cut, not left half visible.
 */
const SLACK = 4 * 1024;
const KEEP = BODY_CAP + SLACK;

/** Content types kept as text; anything else is recorded as `<N bytes of TYPE>`. */
const TEXTUAL = /json|text\/|xml|x-www-form-urlencoded|javascript|ecmascript|yaml|graphql|csv|multipart\//i;
/** Configured secrets shorter than this are not searched for in bodies: too likely to be ordinary text. */
const MIN_SECRET_LENGTH = 8;

function headerText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v.join(', ');
  return undefined;
}

/** One body as it passed: its first KEEP bytes (or its text, when a door has it as a string) and its size. */
export class BodyCapture {
  /** Bytes seen in all, kept or not. */
  total = 0;
  private chunks: Buffer[] = [];
  private kept = 0;
  private text: string | undefined;
  private type: string | undefined;
  private encoding: string | undefined;

  /** Sets the content type and content encoding (header values as received); returns this. */
  describe(contentType: unknown, contentEncoding?: unknown): this {
    this.type = headerText(contentType);
    const enc = headerText(contentEncoding);
    this.encoding = enc === undefined || enc.toLowerCase() === 'identity' ? undefined : enc;
    return this;
  }

  /** A chunk of a streamed body, as it passes. */
  write(chunk: Buffer): void {
    this.total += chunk.length;
    if (this.kept >= KEEP) return;
    const room = KEEP - this.kept;
    const c = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.chunks.push(c);
    this.kept += c.length;
  }

  /** A body read whole; replaces whatever was captured before (an earlier attempt's answer). */
  set(body: Buffer | string): void {
    this.chunks = [];
    this.kept = 0;
    this.total = 0;
    this.text = undefined;
    if (typeof body === 'string') {
      this.text = body;
      this.total = Buffer.byteLength(body);
    } else this.write(body);
  }

  /** The body as the record keeps it (redacted, cut, or a placeholder); undefined when there was none. */
  render(secrets: readonly string[], count: RedactionCount): { text: string; truncated: boolean } | undefined {
    if (this.total === 0) return undefined;
    const type = this.type?.split(';', 1)[0]!.trim().toLowerCase();
    const placeholder = () => ({ text: `<${this.total} bytes${type ? ` of ${type}` : ''}${this.encoding ? `, ${this.encoding}-encoded` : ''}>`, truncated: false });
    if (this.encoding !== undefined || (type !== undefined && type !== '' && !TEXTUAL.test(type))) return placeholder();
    let raw: string;
    let kept: number;
    if (this.text !== undefined) {
      raw = this.text.length > KEEP ? this.text.slice(0, KEEP) : this.text;
      kept = raw.length === this.text.length ? this.total : KEEP;
    } else {
      const bytes = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      if (bytes.includes(0)) return placeholder(); // binary, whatever its type says
      raw = bytes.toString('utf8');
      kept = bytes.length;
    }
    let text = redactBody(raw, type, secrets, count);
    const whole = kept >= this.total;
    const length = Buffer.byteLength(text);
    // Of a body not kept whole, the last SLACK bytes were read only so that a secret across the
    // cap is replaced whole; they may end inside another one, so they go, whatever redaction did
    // to the length before them.
    const max = whole ? (this.total > BODY_CAP ? BODY_CAP : length) : Math.max(0, Math.min(BODY_CAP, length - SLACK));
    if (length > max) text = cutUtf8(text, max);
    return { text, truncated: !whole || length > max };
  }
}

/** The request and response of one exchange, for its final record. */
export class ExchangeBodies {
  readonly request = new BodyCapture();
  readonly response = new BodyCapture();

  /** `secrets`: the credentials injected for this exchange's upstream, replaced wherever they appear. */
  constructor(private readonly secrets: readonly string[]) {}

  /** The record's `bodies` and `redactions` (values replaced); both undefined when neither body had any bytes. */
  render(): { bodies: AuditBodies | undefined; redactions: number | undefined } {
    const count: RedactionCount = { n: 0 };
    const req = this.request.render(this.secrets, count);
    const res = this.response.render(this.secrets, count);
    if (!req && !res) return { bodies: undefined, redactions: undefined };
    // Keys in sorted order: the record's canonical form needs no sort.
    const bodies: AuditBodies = {};
    if (req) bodies.request = req.text;
    if (req?.truncated) bodies.requestTruncated = true;
    if (res) bodies.response = res.text;
    if (res?.truncated) bodies.responseTruncated = true;
    return { bodies, redactions: count.n };
  }
}

/**
 * Body text with secrets replaced by `[redacted]`: JSON (by content type, or by its first
 * character when there is none) read as JSON, each `data:` line of an SSE stream too, anything
 * else (forms, plain text, JSON that does not parse) by the text patterns; then every configured
 * credential found verbatim.
 */
function redactBody(raw: string, type: string | undefined, secrets: readonly string[], count: RedactionCount): string {
  let text: string;
  if (!mayHoldSecrets(raw)) text = raw;
  else if (type === 'text/event-stream') text = redactSse(raw, count);
  else if (type ? type.includes('json') : /^\s*[[{]/.test(raw)) text = redactJsonText(raw, count) ?? redactText(raw, count);
  else text = redactText(raw, count);
  for (const s of secrets) {
    if (!text.includes(s)) continue;
    const parts = text.split(s);
    count.n += parts.length - 1;
    text = parts.join(REDACTED);
  }
  return text;
}

/** An SSE stream's text: JSON `data:` lines read as JSON, other lines as text. */
function redactSse(raw: string, count: RedactionCount): string {
  const lines = raw.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l === '' || l === '\r') continue;
    if (l.startsWith('data:')) {
      const at = l.charCodeAt(5) === 32 ? 6 : 5;
      const data = l.slice(at);
      const c = data.charCodeAt(0);
      const json = c === 123 || c === 91 ? redactJsonText(data, count) : undefined;
      lines[i] = json !== undefined ? (json === data ? l : l.slice(0, at) + json) : l.slice(0, at) + redactText(data, count);
    } else if (!l.startsWith(':')) lines[i] = redactValues(l, count); // event:, id:, retry: — no key=value pairs here
  }
  return lines.join('\n');
}

/** `text` cut to at most `max` bytes of UTF-8, on a character boundary, and not inside a `[redacted]`. */
function cutUtf8(text: string, max: number): string {
  const b = Buffer.from(text, 'utf8');
  let end = max;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  const cut = b.subarray(0, end).toString('utf8');
  const open = cut.lastIndexOf('[', cut.length - 1);
  return open !== -1 && open > cut.length - REDACTED.length && REDACTED.startsWith(cut.slice(open)) ? cut.slice(0, open) : cut;
}

/** Secrets found in injected headers (or environment variables), by the object they come from. */
const injectedCache = new WeakMap<object, readonly string[]>();

/**
 * The values of injected headers or environment variables whose names look secret (`Authorization`,
 * `x-api-key`, `GITHUB_TOKEN` …), as they might show up in a body: whole, and without an auth
 * scheme (`Bearer abc` → `abc`), longest first. Computed once per configured object.
 */
export function injectedSecrets(from: readonly (readonly [string, string])[] | Record<string, string>): readonly string[] {
  let s = injectedCache.get(from);
  if (s) return s;
  const out = new Set<string>();
  const entries = Array.isArray(from) ? from : Object.entries(from);
  for (const [name, value] of entries) {
    if (!SECRET_KEY_RE.test(name) && !/key/i.test(name)) continue;
    const v = value.trim();
    if (v.length >= MIN_SECRET_LENGTH) out.add(v);
    const sp = v.indexOf(' ');
    if (sp !== -1) {
      const bare = v.slice(sp + 1).trim();
      if (bare.length >= MIN_SECRET_LENGTH) out.add(bare);
      // Basic credentials are base64 of `user:password`; an upstream that quotes them back
      // ("invalid login alice:…") does so decoded.
      if (/^basic$/i.test(v.slice(0, sp))) {
        const plain = Buffer.from(bare, 'base64').toString('utf8');
        const colon = plain.indexOf(':');
        if (colon !== -1 && plain.length >= MIN_SECRET_LENGTH) out.add(plain);
        if (colon !== -1 && plain.length - colon - 1 >= MIN_SECRET_LENGTH) out.add(plain.slice(colon + 1));
      }
    }
  }
  s = [...out].sort((a, b) => b.length - a.length);
  injectedCache.set(from, s);
  return s;
}
