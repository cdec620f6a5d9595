/**
 * An LLM request body as the front door needs it: validated just enough to route and judge it
 * (model, stream, output cap), with the prompt's text for estimates and a short summary for
 * approvals. Everything else is the provider's to validate.
 */
import { scrubSecrets } from '../../audit/secrets.js';
import { nestedDeeperThan } from '../json.js';
import type { Operation } from './routes.js';

export interface LlmRequest {
  raw: Buffer;
  body: Record<string, unknown>;
  model: string;
  stream: boolean;
  /** `max_tokens` / `max_completion_tokens` / `max_output_tokens`, when the request sets one. */
  maxOutputTokens: number | undefined;
  /** Chat streams: the client asked for the usage chunk itself. */
  wantsUsageChunk: boolean;
}

export type Parsed = { ok: true; req: LlmRequest } | { ok: false; message: string };

/** How deep a request body may nest arrays and objects. */
const MAX_DEPTH = 256;

const OUTPUT_CAP_FIELDS = ['max_tokens', 'max_completion_tokens', 'max_output_tokens'] as const;

/** Parses and checks a request body for `op`. */
export function parseLlmRequest(op: Operation, raw: Buffer): Parsed {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    return { ok: false, message: `the request body is not valid JSON (${(e as Error).message})` };
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return { ok: false, message: 'the request body must be a JSON object' };
  // JSON.parse copes with any depth, but walking the result (prompt text, summaries, re-serializing
  // a renamed model's body) recurses; no real request comes near this depth.
  if (nestedDeeperThan(raw, MAX_DEPTH)) return { ok: false, message: `the request body has arrays and objects nested more than ${MAX_DEPTH} levels deep; flatten it` };
  const b = body as Record<string, unknown>;
  const model = b['model'];
  if (model === undefined) return { ok: false, message: 'the request has no "model": name one of the models configured in llm.models' };
  if (typeof model !== 'string' || model.length === 0 || model.length > 200) return { ok: false, message: '"model" must be a non-empty string' };
  const stream = b['stream'];
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') return { ok: false, message: `"stream" must be true or false, not ${JSON.stringify(stream).slice(0, 40)}` };
  if ((op === 'embeddings' || op === 'count_tokens') && stream === true) return { ok: false, message: `"stream" is not supported by ${op === 'embeddings' ? 'embeddings' : 'count_tokens'}` };
  let maxOutputTokens: number | undefined;
  for (const f of OUTPUT_CAP_FIELDS) {
    const v = b[f];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return { ok: false, message: `"${f}" must be a whole number of tokens` };
    maxOutputTokens = Math.max(maxOutputTokens ?? 0, v);
  }
  const so = b['stream_options'];
  if (so !== undefined && so !== null && (typeof so !== 'object' || Array.isArray(so))) return { ok: false, message: '"stream_options" must be an object' };
  const wantsUsageChunk = (so as Record<string, unknown> | null | undefined)?.['include_usage'] === true;
  for (const f of ['messages', 'tools'] as const) {
    if (b[f] !== undefined && !Array.isArray(b[f])) return { ok: false, message: `"${f}" must be an array` };
  }
  return { ok: true, req: { raw, body: b, model, stream: stream === true, maxOutputTokens, wantsUsageChunk } };
}

/** Calls that generate output, and so reserve an output cap. */
const GENERATES: ReadonlySet<Operation> = new Set(['chat', 'responses', 'messages']);

/**
 * The most output a call may generate: its output cap (`max_tokens` …, else `defaultCap`, the
 * model's `maxOutputTokens`) times its `n` choices; 0 for calls that generate none.
 */
export function reserveOutputTokens(op: Operation, req: LlmRequest, defaultCap: number): number {
  if (!GENERATES.has(op)) return 0;
  // `n` choices each generate up to the cap.
  const n = typeof req.body['n'] === 'number' && Number.isInteger(req.body['n']) && req.body['n'] > 1 ? Math.min(req.body['n'], 128) : 1;
  return (req.maxOutputTokens ?? defaultCap) * n;
}

const PROMPT_FIELDS = ['system', 'instructions', 'messages', 'input', 'prompt', 'tools', 'functions'] as const;
const SKIP_KEYS = new Set(['type', 'role', 'id', 'tool_call_id', 'tool_use_id', 'media_type', 'cache_control', 'detail', 'image_url', 'source', 'file_id', 'file_data']);
/** Caps the prompt text gathered for estimates (the tokenizer samples long texts anyway). */
const PROMPT_CAP = 1_000_000;

function collect(v: unknown, out: string[], room: { left: number }): void {
  if (room.left <= 0) return;
  if (typeof v === 'string') {
    // Inline images and files are not text; providers count them their own way.
    if (v.length > 200 && v.startsWith('data:')) return;
    const s = v.length > room.left ? v.slice(0, room.left) : v;
    out.push(s);
    room.left -= s.length;
  } else if (Array.isArray(v)) {
    for (const x of v) collect(x, out, room);
  } else if (v !== null && typeof v === 'object') {
    for (const k in v as Record<string, unknown>) if (!SKIP_KEYS.has(k)) collect((v as Record<string, unknown>)[k], out, room);
  }
}

/** The prompt's text (messages, system, input, tools), for token estimates. */
export function promptText(body: Record<string, unknown>): string {
  const out: string[] = [];
  const room = { left: PROMPT_CAP };
  for (const f of PROMPT_FIELDS) if (body[f] !== undefined) collect(body[f], out, room);
  return out.join('\n');
}

/** Messages in the prompt (for the per-message overhead of estimates). */
function messageCount(body: Record<string, unknown>): number {
  const m = body['messages'] ?? body['input'];
  return Array.isArray(m) ? m.length : 1;
}

/**
 * A quick upper estimate of input tokens for reservations, without a tokenizer: about 3 characters
 * per token (real text runs nearer 4) plus a few tokens per message. The settlement uses real usage.
 */
export function reserveInputTokens(body: Record<string, unknown>): number {
  let chars = 0;
  const out: string[] = [];
  for (const f of PROMPT_FIELDS) if (body[f] !== undefined) collect(body[f], out, { left: PROMPT_CAP });
  for (const s of out) chars += s.length;
  return Math.ceil(chars / 3) + 4 * messageCount(body) + 3;
}

function excerpt(s: string, max: number): string {
  const clean = scrubSecrets(s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '').trim());
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** The last message's text, for summaries. */
function lastMessageText(body: Record<string, unknown>): { role: string; text: string } | undefined {
  const list = body['messages'] ?? body['input'];
  if (typeof list === 'string') return { role: 'user', text: list };
  if (!Array.isArray(list) || list.length === 0) return undefined;
  const last = list[list.length - 1] as unknown;
  if (typeof last === 'string') return { role: 'input', text: last };
  if (last === null || typeof last !== 'object') return undefined;
  const o = last as Record<string, unknown>;
  const out: string[] = [];
  collect(o['content'] ?? o['output'] ?? o, out, { left: 2000 });
  return { role: typeof o['role'] === 'string' ? o['role'] : typeof o['type'] === 'string' ? o['type'] : 'message', text: out.join(' ') };
}

/** "model + last message excerpt": what an approver reads. */
export function requestSummary(op: Operation, req: LlmRequest): string {
  const n = Array.isArray(req.body['messages']) ? (req.body['messages'] as unknown[]).length : undefined;
  const head = `${op === 'chat' ? 'chat completion' : op === 'count_tokens' ? 'count tokens' : op} with model ${req.model}${n !== undefined ? `, ${n} message${n === 1 ? '' : 's'}` : ''}${req.stream ? ', streaming' : ''}`;
  const last = lastMessageText(req.body);
  return last ? `${head}\n${last.role}: ${excerpt(last.text, 500)}` : head;
}
