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

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined);

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
  if (base !== undefined) into.input = base + (read ?? 0) + (created ?? 0);
  if (read !== undefined) into.cached = read;
  const detailCached = num((o['input_tokens_details'] as Record<string, unknown> | undefined)?.['cached_tokens']);
  if (detailCached !== undefined) into.cached = detailCached;
  const output = num(o['output_tokens']);
  if (output !== undefined) into.output = output;
}

/** Usage from a non-streamed JSON reply (`usage` at the top level, or `response.usage`). */
export function usageFromBody(body: Buffer): ReportedUsage {
  const r: ReportedUsage = {};
  // Avoid parsing bodies that cannot carry usage.
  if (body.length === 0 || body.indexOf('"usage"') === -1) return r;
  try {
    const v = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    mergeUsage(r, v['usage'] ?? (v['response'] as Record<string, unknown> | undefined)?.['usage']);
    if (typeof v['model'] === 'string') r.model = v['model'];
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
