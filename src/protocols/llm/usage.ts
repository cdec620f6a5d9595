/**
 * Token usage as providers report it, normalised: OpenAI chat and embeddings (`prompt_tokens`,
 * `completion_tokens`, `prompt_tokens_details.cached_tokens`), the Responses API (`input_tokens`,
 * `output_tokens`, `input_tokens_details.cached_tokens`) and Anthropic (`input_tokens` without the
 * cache, `cache_read_input_tokens`, `cache_creation_input_tokens`, `output_tokens`).
 * `inputTokens` always includes cached input.
 */

import { CLOSE_BRACE, isSpace, OPEN_BRACE, OPEN_BRACKET, QUOTE, stringEnd, StructuralScan } from '../json.js';

const COLON = 0x3a;

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

/** Index of the `}` closing the object that opens at `start`, skipping strings; -1 if unbalanced. */
function objectEnd(b: Buffer, start: number): number {
  let depth = 0;
  for (let i = start; i < b.length; i++) {
    const c = b[i]!;
    if (c === QUOTE) {
      i = stringEnd(b, i) - 1;
      if (i < 0) return -1;
    } else if (c === OPEN_BRACE) depth++;
    else if (c === CLOSE_BRACE && --depth === 0) return i;
  }
  return -1;
}

/**
 * Where the values of the object's own members named in `names` start (the object opens at
 * `open`). Keys deeper down are not its members: a Responses object echoes the agent's `metadata`
 * after its `usage`, and content can hold anything, so a `"usage":` found by searching the text is
 * not necessarily the reply's. One pass over the quotes and brackets (see json.ts).
 */
function membersOf(b: Buffer, open: number, names: readonly string[]): Map<string, number> {
  const found = new Map<string, number>();
  const longest = Math.max(...names.map((n) => n.length));
  const scan = new StructuralScan(b);
  let depth = 0;
  for (let at = scan.from(open); at !== -1; at = scan.from(at)) {
    const c = b[at]!;
    if (c === QUOTE) {
      const end = stringEnd(b, at);
      if (end === -1) return found;
      if (depth === 1 && end - at - 2 <= longest) {
        // A string followed by a colon is a key; values are followed by a comma or the closing brace.
        let j = end;
        while (isSpace(b[j])) j++;
        const key = b.toString('latin1', at + 1, end - 1);
        if (b[j] === COLON && names.includes(key) && !found.has(key)) {
          j++;
          while (isSpace(b[j])) j++;
          found.set(key, j);
          if (found.size === names.length) return found;
        }
      }
      at = end;
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if (--depth <= 0) return found;
    at++;
  }
  return found;
}

/** The JSON object whose value starts at `at`, parsed; undefined when it is not an object. */
function objectAt(b: Buffer, at: number | undefined): unknown {
  if (at === undefined || b[at] !== OPEN_BRACE) return undefined;
  const end = objectEnd(b, at);
  return end === -1 ? undefined : JSON.parse(b.toString('utf8', at, end + 1));
}

/** The short string whose value starts at `at`, if it is one without escapes. */
function nameAt(b: Buffer, at: number | undefined): string | undefined {
  if (at === undefined || b[at] !== QUOTE) return undefined;
  const end = b.indexOf(QUOTE, at + 1);
  if (end === -1 || end - at >= 256) return undefined;
  const name = b.toString('utf8', at + 1, end);
  return name.includes('\\') ? undefined : name;
}

/**
 * Usage from a non-streamed JSON reply (the top-level `usage`, or `response.usage`), and the model
 * the provider names (top-level `model`, or `response.model`). Reads only those values rather than
 * parsing the whole reply: replies can be large (embeddings), and this runs on every call.
 */
export function usageFromBody(body: Buffer): ReportedUsage {
  const r: ReportedUsage = {};
  let open = 0;
  while (isSpace(body[open])) open++;
  if (body[open] !== OPEN_BRACE) return r;
  try {
    const top = membersOf(body, open, ['usage', 'model', 'response']);
    let usage = objectAt(body, top.get('usage'));
    let model = nameAt(body, top.get('model'));
    const resp = top.get('response');
    if ((usage === undefined || model === undefined) && resp !== undefined && body[resp] === OPEN_BRACE) {
      const inner = membersOf(body, resp, ['usage', 'model']);
      usage ??= objectAt(body, inner.get('usage'));
      model ??= nameAt(body, inner.get('model'));
    }
    mergeUsage(r, usage);
    if (model !== undefined) r.model = model;
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
