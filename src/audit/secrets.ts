/**
 * What looks like a secret in text that goes into audit records and approval summaries (MCP tool
 * arguments, A2A message text, HTTP body excerpts and query strings, LLM prompt excerpts, and the
 * bodies `audit.bodies: true` keeps): one list, so every front door's text is scrubbed alike.
 */

/**
 * Words that make a key name secret-looking (`password`, `api_key`, `X-Auth-Token` …). Token
 * counts (`max_tokens`, `prompt_tokens`, `token_count`), MCP progress tokens, pagination cursors
 * (`nextPageToken`) and authors are not credentials: LLM and A2A bodies are full of them, and a
 * record with every usage number replaced would say nothing.
 */
/**
 * What stands before `tokens` in the token counts of LLM APIs (`max_tokens`, `prompt_tokens`,
 * `cache_read_input_tokens`, `maxOutputTokens` …). Only these are spared: `tokens`,
 * `access_tokens` or `apiTokens` hold credentials.
 */
const TOKEN_COUNTS = '(?:max|prompt|completion|total|input|output|cached|reasoning|audio|text|image|prediction|num)';
const SECRET_KEY_WORDS = `pass(?:word)?|secret|(?<!progress_?|page_?|${TOKEN_COUNTS}_?)token(?!s?_?count|izer)|api[_-]?key|auth(?!or(?!i))|credential|private[_-]?key|cookie|session`;

/** Object keys whose values are taken to be secrets whatever they hold. */
export const SECRET_KEY_RE = new RegExp(SECRET_KEY_WORDS, 'i');

/** Shapes of well-known credentials, as prefix and rest: OpenAI and agent keys, GitHub and Slack tokens, AWS key ids, JWTs. */
const CREDENTIAL_SHAPES: readonly (readonly [prefix: string, rest: string])[] = [
  ['sk-', '[A-Za-z0-9_-]{16,}'],
  ['alk_', '[A-Za-z0-9]{16,}'],
  ['gh[pousr]_', '[A-Za-z0-9]{20,}'],
  ['xox[abpr]-', '[A-Za-z0-9-]{10,}'],
  ['AKIA', '[0-9A-Z]{16}'],
  ['eyJ', '[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]+'],
];

/** Values shaped like well-known credentials. */
const SECRET_VALUE_RE = new RegExp(`\\b(${CREDENTIAL_SHAPES.map(([p, r]) => p + r).join('|')})\\b`, 'g');
/** Any credential's prefix, anywhere (no word boundary: in JSON text `\\nsk-…` has none before the key). */
const CREDENTIAL_PREFIX_RE = new RegExp(CREDENTIAL_SHAPES.map(([p]) => p).join('|'));

/**
 * `key=value` and `"key": "value"` pairs (forms, query strings, JSON or YAML text that did not
 * parse) whose key is secret-looking: the value is replaced. The key is read whole and only from
 * the start of a run of key characters (lookaheads, which do not backtrack): tried at every
 * position and shortened a character at a time, a long run of word characters with a secret word
 * in the text took time quadratic in its length (seconds for 64 KiB).
 */
const SECRET_PAIR_RE = new RegExp(`(["']?)(?<![\\w.%-])(?=[\\w.%-]*?(?:${SECRET_KEY_WORDS}))(?=([\\w.%-]+))\\2\\1(\\s*[:=]\\s*)("(?:[^"\\\\]|\\\\.)*"?|'[^']*'?|[^\\s&,;"'}\\]][^&,;\\r\\n"'}\\]]*)`, 'gi');

export const REDACTED = '[redacted]';

/**
 * False when no pattern here can replace anything in `text`, or in the strings of `text` read as
 * JSON: no credential prefix, no secret-looking word, no `\\u` escape that could spell one. One pass
 * of two regexes, so that a body with nothing to replace costs no more than that.
 */
export function mayHoldSecrets(text: string): boolean {
  return CREDENTIAL_PREFIX_RE.test(text) || SECRET_KEY_RE.test(text) || text.includes('\\u');
}

/** Counts the values a redaction replaced (the audit record's `redactions`). */
export interface RedactionCount {
  n: number;
}

/** `text` with every credential-shaped value replaced by `[redacted]`, each one counted in `count`. */
export function redactValues(text: string, count: RedactionCount): string {
  return text.replace(SECRET_VALUE_RE, () => {
    count.n++;
    return REDACTED;
  });
}

/** `text` with the values of secret-looking `key=value` pairs and credential-shaped values replaced, each one counted in `count`. */
export function redactText(text: string, count: RedactionCount): string {
  // The pair pattern is slow to fail (it tries a key at every position); most text has no secret word at all.
  if (!SECRET_KEY_RE.test(text)) return redactValues(text, count);
  const paired = text.replace(SECRET_PAIR_RE, (_m, quote: string, key: string, sep: string) => {
    count.n++;
    return `${quote}${key}${quote}${sep}${REDACTED}`;
  });
  return redactValues(paired, count);
}

/**
 * `text` with every secret-looking value replaced by `[redacted]`. Uncounted, with a replacement
 * string rather than a function: it runs on every MCP and A2A call (argument and message
 * excerpts), and a replace callback costs twice as much even when nothing matches.
 */
export function scrubSecrets(text: string): string {
  return text.replace(SECRET_VALUE_RE, REDACTED);
}

/** `text` with secret-looking values, and the values of `key=value` pairs under secret-looking keys, replaced by `[redacted]`. */
export function scrubSecretText(text: string): string {
  return scrubSecrets(text.replace(SECRET_PAIR_RE, (_m, quote: string, key: string, sep: string) => `${quote}${key}${quote}${sep}${REDACTED}`));
}

/** A JSON value as bounded JSON text (at most `max` characters), values under secret-looking keys and secret-looking values replaced. */
export function scrubbedJson(value: unknown, max: number): string {
  const scrub = (v: unknown, depth: number): unknown => {
    if (depth > 6) return '…';
    if (typeof v === 'string') return scrubSecrets(v.length > max ? `${v.slice(0, max)}…` : v);
    if (Array.isArray(v)) return v.slice(0, 20).map((x) => scrub(x, depth + 1));
    if (v !== null && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v).slice(0, 50)) o[k] = SECRET_KEY_RE.test(k) ? REDACTED : scrub(x, depth + 1);
      return o;
    }
    return v;
  };
  const s = JSON.stringify(scrub(value, 0)) ?? '';
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

const QUOTE = 34;
const BACKSLASH = 92;

/** The index just past the string that opens at `i` (a `"`), or -1 when the text ends inside it. */
function stringEnd(text: string, i: number): number {
  for (let j = text.indexOf('"', i + 1); j !== -1; j = text.indexOf('"', j + 1)) {
    let k = j - 1;
    while (text.charCodeAt(k) === BACKSLASH) k--;
    if ((j - 1 - k) % 2 === 0) return j + 1; // an even number of backslashes before it: not escaped
  }
  return -1;
}

function isSpace(c: number): boolean {
  return c === 32 || c === 10 || c === 13 || c === 9;
}

/** Ends a literal (number, true, false, null) or a value being skipped. */
function isDelimiter(c: number): boolean {
  return c === 44 || c === 125 || c === 93 || c === 58 || isSpace(c); // , } ] :
}

/** The index just past the JSON value that starts at `i`, or -1 when the text ends inside it. */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return stringEnd(text, i);
  if (c === 123 || c === 91) {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (d === QUOTE) {
        const e = stringEnd(text, j);
        if (e === -1) return -1;
        j = e - 1;
      } else if (d === 123 || d === 91) depth++;
      else if (d === 125 || d === 93) {
        if (--depth === 0) return j + 1;
      }
    }
    return -1;
  }
  let j = i;
  while (j < text.length && !isDelimiter(text.charCodeAt(j))) j++;
  return j;
}

/**
 * The text of a JSON string's contents (between its quotes) scrubbed as text: `key=value` pairs
 * under secret-looking keys and credential-shaped values replaced (a tool argument or a file's
 * contents often carries `password=…` or a `.env` line). `plain`: the raw JSON text holds neither
 * a credential-shaped value nor a secret-looking word anywhere, so only a string with escapes can
 * hide one.
 */
function redactStringContent(raw: string, count: RedactionCount, plain: boolean): string {
  if (raw.indexOf('\\') === -1) return plain ? raw : redactText(raw, count);
  // Escapes (`\n`, `\u0073k-…`) are read first, or a secret after one would pass unseen.
  let decoded: string;
  try {
    decoded = JSON.parse(`"${raw}"`) as string;
  } catch {
    return redactText(raw, count);
  }
  const before = count.n;
  const out = redactText(decoded, count);
  return count.n === before ? raw : JSON.stringify(out).slice(1, -1);
}

/**
 * The part of a string that the text ends inside (a body kept up to a cap), scrubbed like a whole
 * string: a file's contents or a long prompt is one string, and its `.env` lines and `password:`
 * pairs before the cut are what the record keeps. An escape cut in half (a lone backslash, `\u00`) is dropped
 * so that what comes before it can be decoded.
 */
function redactCutString(raw: string, count: RedactionCount): string {
  if (raw.indexOf('\\') === -1) return redactText(raw, count);
  for (let cut = 0; cut <= 5 && cut <= raw.length; cut++) {
    let decoded: string;
    try {
      decoded = JSON.parse(`"${cut === 0 ? raw : raw.slice(0, -cut)}"`) as string;
    } catch {
      continue;
    }
    const before = count.n;
    const out = redactText(decoded, count);
    return count.n === before ? raw : JSON.stringify(out).slice(1, -1);
  }
  return redactText(raw, count);
}

const enum Expect {
  Value,
  Key,
  Colon,
  After,
}

/**
 * JSON text with every value under a secret-looking key replaced by `"[redacted]"` (whatever it
 * holds: a string, a number, a whole object), and strings and keys scrubbed as text (secret
 * `key=value` pairs and credential-shaped values inside them replaced); everything else is kept byte for byte (no re-serialization: big numbers, key order,
 * duplicate keys and spacing stay as sent). Several values in a row (NDJSON) and text cut off
 * anywhere (a body kept up to a cap) are read too; the part of a cut-off string is scrubbed as
 * text. Undefined (and nothing counted) when the text is not JSON. Each replacement is counted in `count`.
 */
export function redactJsonText(text: string, count: RedactionCount): string | undefined {
  const n0 = count.n;
  const out = scanJson(text, count);
  if (out === undefined) count.n = n0;
  return out;
}

function scanJson(text: string, count: RedactionCount): string | undefined {
  const n0 = count.n;
  const plain = !CREDENTIAL_PREFIX_RE.test(text) && !SECRET_KEY_RE.test(text);
  let out = '';
  let copied = 0; // text[copied, i) is still to be copied to out
  const stack: number[] = [];
  let expect = Expect.Value;
  let secretNext = false;
  const replace = (from: number, to: number, s: string) => {
    out += text.slice(copied, from) + s;
    copied = to;
  };
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    const top = stack.length > 0 ? stack[stack.length - 1] : undefined;
    if (expect === Expect.After) {
      if (c === 44 && top !== undefined) {
        expect = top === 123 ? Expect.Key : Expect.Value;
        i++;
      } else if ((c === 125 && top === 123) || (c === 93 && top === 91)) {
        stack.pop();
        i++;
      } else if (top === undefined) expect = Expect.Value; // the next of several values (NDJSON)
      else return undefined;
      continue;
    }
    if (expect === Expect.Colon) {
      if (c !== 58) return undefined;
      expect = Expect.Value;
      i++;
      continue;
    }
    if (expect === Expect.Key) {
      if (c === 125 && top === 123) {
        stack.pop();
        expect = Expect.After;
        i++;
        continue;
      }
      if (c !== QUOTE) return undefined;
      const end = stringEnd(text, i);
      if (end === -1) {
        replace(i + 1, text.length, redactCutString(text.slice(i + 1), count));
        break;
      }
      const raw = text.slice(i + 1, end - 1);
      let key = raw;
      if (raw.indexOf('\\') !== -1) {
        try {
          key = JSON.parse(text.slice(i, end)) as string;
        } catch {
          return undefined;
        }
      }
      secretNext = SECRET_KEY_RE.test(key);
      const scrubbed = redactStringContent(raw, count, plain);
      if (scrubbed !== raw) replace(i + 1, end - 1, scrubbed);
      expect = Expect.Colon;
      i = end;
      continue;
    }
    // A value.
    if (c === 93 && top === 91) {
      // `[]`, or a trailing comma some writers leave
      stack.pop();
      expect = Expect.After;
      i++;
      continue;
    }
    if (secretNext) {
      secretNext = false;
      const end = valueEnd(text, i);
      count.n++;
      replace(i, end === -1 ? text.length : end, `"${REDACTED}"`);
      if (end === -1) break;
      expect = Expect.After;
      i = end;
      continue;
    }
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (end === -1) {
        replace(i + 1, text.length, redactCutString(text.slice(i + 1), count));
        break;
      }
      const raw = text.slice(i + 1, end - 1);
      const scrubbed = redactStringContent(raw, count, plain);
      if (scrubbed !== raw) replace(i + 1, end - 1, scrubbed);
      expect = Expect.After;
      i = end;
      continue;
    }
    if (c === 123 || c === 91) {
      stack.push(c);
      expect = c === 123 ? Expect.Key : Expect.Value;
      i++;
      continue;
    }
    const end = valueEnd(text, i);
    if (end === i || !/^(?:-?[0-9][0-9.eE+-]*|true|false|null)$/.test(text.slice(i, end))) {
      // A cut-off literal at the very end (`tr`, `-1.`) is still JSON; anything else is not.
      if (end === text.length && /^(?:-|-?[0-9][0-9.eE+-]*|t|tr|tru|f|fa|fal|fals|n|nu|nul)$/.test(text.slice(i, end))) break;
      return undefined;
    }
    expect = Expect.After;
    i = end;
  }
  if (count.n === n0) return text;
  return out + text.slice(copied);
}
