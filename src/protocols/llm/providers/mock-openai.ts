/** The mock provider's OpenAI-shaped replies: chat completions, the Responses API, embeddings. */
import { createHash } from 'node:crypto';
import { promptText } from '../request.js';
import { countTokensExact as countTokens } from '../tokenizer.js';
import type { MockAnswer } from './mock.js';

type Obj = Record<string, unknown>;
const event = (data: unknown, name?: string) => `${name ? `event: ${name}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

function chatUsage(a: MockAnswer): Obj {
  return {
    prompt_tokens: a.inputTokens,
    completion_tokens: a.outputTokens,
    total_tokens: a.inputTokens + a.outputTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
}

export function chatBody(a: MockAnswer): Obj {
  const message: Obj = a.tool
    ? { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: a.tool.id, type: 'function', function: { name: a.tool.name, arguments: a.tool.args } }] }
    : { role: 'assistant', content: a.text, refusal: null };
  return {
    id: `chatcmpl-${a.id}`,
    object: 'chat.completion',
    created: a.created,
    model: a.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: a.tool ? 'tool_calls' : 'stop' }],
    usage: chatUsage(a),
    system_fingerprint: 'airlock-mock',
  };
}

export function chatEvents(a: MockAnswer, includeUsage: boolean): string[] {
  const head = { id: `chatcmpl-${a.id}`, object: 'chat.completion.chunk', created: a.created, model: a.model, system_fingerprint: 'airlock-mock' };
  const chunk = (delta: Obj, finish: string | null = null) => event({ ...head, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
  const out: string[] = [];
  if (a.tool) {
    out.push(chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: a.tool.id, type: 'function', function: { name: a.tool.name, arguments: '' } }] }));
    for (const p of a.pieces) out.push(chunk({ tool_calls: [{ index: 0, function: { arguments: p } }] }));
    out.push(chunk({}, 'tool_calls'));
  } else {
    out.push(chunk({ role: 'assistant', content: '', refusal: null }));
    for (const p of a.pieces) out.push(chunk({ content: p }));
    out.push(chunk({}, 'stop'));
  }
  if (includeUsage) out.push(event({ ...head, choices: [], usage: chatUsage(a) }));
  out.push('data: [DONE]\n\n');
  return out;
}

function responsesUsage(a: MockAnswer): Obj {
  return { input_tokens: a.inputTokens, input_tokens_details: { cached_tokens: 0 }, output_tokens: a.outputTokens, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: a.inputTokens + a.outputTokens };
}

function outputItem(a: MockAnswer, done: boolean): Obj {
  if (a.tool) return { type: 'function_call', id: `fc_${a.id}`, call_id: a.tool.id, name: a.tool.name, arguments: done ? a.tool.args : '', status: done ? 'completed' : 'in_progress' };
  return { type: 'message', id: `msg_${a.id}`, status: done ? 'completed' : 'in_progress', role: 'assistant', content: done ? [{ type: 'output_text', text: a.text, annotations: [] }] : [] };
}

export function responsesBody(a: MockAnswer, req: Obj, status: 'in_progress' | 'completed'): Obj {
  const done = status === 'completed';
  return {
    id: `resp_${a.id}`,
    object: 'response',
    created_at: a.created,
    status,
    error: null,
    incomplete_details: null,
    instructions: req['instructions'] ?? null,
    max_output_tokens: req['max_output_tokens'] ?? null,
    model: a.model,
    output: done ? [outputItem(a, true)] : [],
    parallel_tool_calls: true,
    previous_response_id: req['previous_response_id'] ?? null,
    reasoning: { effort: null, summary: null },
    store: false,
    temperature: 1,
    text: req['text'] ?? { format: { type: 'text' } },
    tool_choice: req['tool_choice'] ?? 'auto',
    tools: req['tools'] ?? [],
    top_p: 1,
    truncation: 'disabled',
    usage: done ? responsesUsage(a) : null,
    metadata: {},
  };
}

export function responsesEvents(a: MockAnswer, req: Obj): string[] {
  let seq = 0;
  const ev = (type: string, data: Obj) => event({ type, sequence_number: seq++, ...data }, type);
  const out = [ev('response.created', { response: responsesBody(a, req, 'in_progress') }), ev('response.in_progress', { response: responsesBody(a, req, 'in_progress') })];
  out.push(ev('response.output_item.added', { output_index: 0, item: outputItem(a, false) }));
  if (a.tool) {
    const item_id = `fc_${a.id}`;
    for (const p of a.pieces) out.push(ev('response.function_call_arguments.delta', { item_id, output_index: 0, delta: p }));
    out.push(ev('response.function_call_arguments.done', { item_id, output_index: 0, arguments: a.tool.args }));
  } else {
    const item_id = `msg_${a.id}`;
    const at = { item_id, output_index: 0, content_index: 0 };
    out.push(ev('response.content_part.added', { ...at, part: { type: 'output_text', text: '', annotations: [] } }));
    for (const p of a.pieces) out.push(ev('response.output_text.delta', { ...at, delta: p, logprobs: [] }));
    out.push(ev('response.output_text.done', { ...at, text: a.text, logprobs: [] }));
    out.push(ev('response.content_part.done', { ...at, part: { type: 'output_text', text: a.text, annotations: [] } }));
  }
  out.push(ev('response.output_item.done', { output_index: 0, item: outputItem(a, true) }));
  out.push(ev('response.completed', { response: responsesBody(a, req, 'completed') }));
  return out;
}

/** A deterministic unit vector for a text. */
function vector(text: string, dims: number): number[] {
  const v: number[] = [];
  for (let block = 0; v.length < dims; block++) {
    const h = createHash('sha256').update(`${block}:${text}`).digest();
    for (let i = 0; i + 1 < h.length && v.length < dims; i += 2) v.push(h.readUInt16LE(i) / 32768 - 1);
  }
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  return v.map((x) => x / norm);
}

export function embeddingsBody(req: Obj, model: string): Obj {
  const input = req['input'];
  const texts: string[] = typeof input === 'string' ? [input] : Array.isArray(input) ? input.map((x) => (typeof x === 'string' ? x : JSON.stringify(x))) : [''];
  const dims = typeof req['dimensions'] === 'number' && req['dimensions'] > 0 && req['dimensions'] <= 4096 ? req['dimensions'] : 64;
  const base64 = req['encoding_format'] === 'base64';
  const data = texts.map((t, index) => {
    const v = vector(t, dims);
    return { object: 'embedding', index, embedding: base64 ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v };
  });
  const tokens = countTokens(promptText(req));
  return { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } };
}
