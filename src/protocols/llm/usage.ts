/**
 * Token usage as providers report it, normalised: OpenAI chat and embeddings (`prompt_tokens`,
 * `completion_tokens`, `prompt_tokens_details.cached_tokens`), the Responses API (`input_tokens`,
 * `output_tokens`, `input_tokens_details.cached_tokens`) and Anthropic (`input_tokens` without the
 * cache, `cache_read_input_tokens`, `cache_creation_input_tokens`, `output_tokens`).
 * `inputTokens` always includes cached input.
 */

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  /** True when any part was counted by airlock rather than reported by the provider. */
  estimated: boolean;
}

/** What a stream or body has told so far; fields stay undefined until reported. */
export interface ReportedUsage {
  input?: number | undefined;
  output?: number | undefined;
  cached?: number | undefined;
  /** The model the provider says answered. */
  model?: string | undefined;
}

/**
 * A token count as reported, or undefined when it cannot be one: counts are whole, non-negative and
 * countable exactly. A larger number (say 1e308) would make sums and costs Infinity, which no
 * counter or budget can hold; such a report is treated as absent, and the usage estimated.
 */
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

/** Merges one provider `usage` object into `into` (later reports win: Anthropic's message_delta is cumulative). */
export function mergeUsage(into: ReportedUsage, u: unknown): void {
  if (u === null || typeof u !== 'object') return;
  const o = u as Record<string, unknown>;
  if ('prompt_tokens' in o || 'completion_tokens' in o) {
    const input = num(o['prompt_tokens']);
    if (input !== undefined) into.input = input;
    const output = num(o['completion_tokens']);
    if (output !== undefined) into.output = output;
    else if (input !== undefined && into.output === undefined && 'total_tokens' in o) into.output = 0; // embeddings
    const cached = num((o['prompt_tokens_details'] as Record<string, unknown> | undefined)?.['cached_tokens']);
    if (cached !== undefined) into.cached = cached;
    return;
  }
  const base = num(o['input_tokens']);
  const read = num(o['cache_read_input_tokens']);
  const created = num(o['cache_creation_input_tokens']);
  if (base !== undefined) {
    const input = base + (read ?? 0) + (created ?? 0);
    if (Number.isSafeInteger(input)) into.input = input;
  }
  if (read !== undefined) into.cached = read;
  const detailCached = num((o['input_tokens_details'] as Record<string, unknown> | undefined)?.['cached_tokens']);
  if (detailCached !== undefined) into.cached = detailCached;
  const output = num(o['output_tokens']);
  if (output !== undefined) into.output = output;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Index of the `}` closing the object that opens at `start`, skipping strings; -1 if unbalanced. */
function objectEnd(b: Buffer, start: number): number {
  let depth = 0;
  for (let i = start; i < b.length; i++) {
    const c = b[i]!;
    if (c === QUOTE) {
      for (i++; i < b.length && b[i] !== QUOTE; i++) if (b[i] === BACKSLASH) i++;
    } else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) return i;
  }
  return -1;
}

const KEYS = { usage: Buffer.from('"usage"'), model: Buffer.from('"model"') };

/** Where the value of key `"name"` starts (after the colon and spaces), searching back from `from`. */
function valueAt(b: Buffer, name: keyof typeof KEYS, from: number, backwards: boolean): number {
  const key = KEYS[name];
  for (let i = backwards ? b.lastIndexOf(key, from) : b.indexOf(key, from); i !== -1; i = backwards ? b.lastIndexOf(key, i - 1) : b.indexOf(key, i + 1)) {
    let j = i + key.length;
    while (b[j] === 0x20 || b[j] === 0x0a || b[j] === 0x0d || b[j] === 0x09) j++;
    if (b[j] !== 0x3a) continue; // a string value "usage", not a key
    j++;
    while (b[j] === 0x20 || b[j] === 0x0a || b[j] === 0x0d || b[j] === 0x09) j++;
    return j;
  }
  return -1;
}

/**
 * Usage from a non-streamed JSON reply (`usage` at the top level, or `response.usage`), and the
 * model the provider names. Reads only those two values rather than parsing the whole reply: replies
 * can be large (embeddings), and this runs on every call.
 */
export function usageFromBody(body: Buffer): ReportedUsage {
  const r: ReportedUsage = {};
  if (body.length === 0) return r;
  try {
    const u = valueAt(body, 'usage', body.length, true);
    if (u !== -1 && body[u] === 0x7b) {
      const end = objectEnd(body, u);
      if (end !== -1) mergeUsage(r, JSON.parse(body.toString('utf8', u, end + 1)));
    }
    const m = valueAt(body, 'model', 0, false);
    if (m !== -1 && body[m] === QUOTE) {
      const end = body.indexOf(QUOTE, m + 1);
      if (end !== -1 && end - m < 256) {
        const name = body.toString('utf8', m + 1, end);
        if (!name.includes('\\')) r.model = name;
      }
    }
  } catch {
    // not JSON: nothing reported
  }
  return r;
}

/** Completes what was reported with airlock's own counts, marking the result estimated if it had to. */
export function settleUsage(reported: ReportedUsage, estimateInput: () => number, estimateOutput: () => number): Usage {
  let estimated = false;
  let input = reported.input;
  if (input === undefined) {
    input = estimateInput();
    estimated = true;
  }
  let output = reported.output;
  if (output === undefined) {
    output = estimateOutput();
    estimated = true;
  }
  return { inputTokens: input, outputTokens: output, cachedInputTokens: Math.min(reported.cached ?? 0, input), estimated };
}

/** The generated text of a non-streamed reply (for estimates when the provider reported no usage). */
export function replyText(body: Buffer): string {
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    return body.toString('utf8');
  }
  const out: string[] = [];
  const walk = (x: unknown, key: string | undefined, depth: number): void => {
    if (depth > 8) return;
    if (typeof x === 'string') {
      if (key === 'content' || key === 'text' || key === 'arguments' || key === 'refusal') out.push(x);
    } else if (Array.isArray(x)) for (const y of x) walk(y, key, depth + 1);
    else if (x !== null && typeof x === 'object') for (const [k, y] of Object.entries(x)) if (k !== 'usage') walk(y, k, depth + 1);
  };
  walk(v, undefined, 0);
  return out.join('');
}
