/** The mock provider's Anthropic-shaped replies: messages (plain and streamed) and count_tokens. */
import { promptText } from '../request.js';
import { countTokensExact as countTokens } from '../tokenizer.js';
import type { MockAnswer } from './mock.js';

type Obj = Record<string, unknown>;
const event = (type: string, data: Obj) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

function usage(a: MockAnswer, output: number): Obj {
  return { input_tokens: a.inputTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: output };
}

function block(a: MockAnswer): Obj {
  return a.tool ? { type: 'tool_use', id: `toolu_${a.id}`, name: a.tool.name, input: JSON.parse(a.tool.args) as unknown } : { type: 'text', text: a.text };
}

export function anthropicBody(a: MockAnswer): Obj {
  return {
    id: `msg_${a.id}`,
    type: 'message',
    role: 'assistant',
    model: a.model,
    content: [block(a)],
    stop_reason: a.tool ? 'tool_use' : 'end_turn',
    stop_sequence: null,
    usage: usage(a, a.outputTokens),
  };
}

export function anthropicEvents(a: MockAnswer): string[] {
  const out = [
    event('message_start', { message: { id: `msg_${a.id}`, type: 'message', role: 'assistant', model: a.model, content: [], stop_reason: null, stop_sequence: null, usage: usage(a, 1) } }),
    event('content_block_start', { index: 0, content_block: a.tool ? { type: 'tool_use', id: `toolu_${a.id}`, name: a.tool.name, input: {} } : { type: 'text', text: '' } }),
    event('ping', {}),
  ];
  for (const p of a.pieces) out.push(event('content_block_delta', { index: 0, delta: a.tool ? { type: 'input_json_delta', partial_json: p } : { type: 'text_delta', text: p } }));
  out.push(event('content_block_stop', { index: 0 }));
  out.push(event('message_delta', { delta: { stop_reason: a.tool ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: a.outputTokens } }));
  out.push(event('message_stop', {}));
  return out;
}

export function countTokensBody(req: Obj): Obj {
  const messages = Array.isArray(req['messages']) ? (req['messages'] as unknown[]).length : 1;
  return { input_tokens: countTokens(promptText(req)) + 3 * messages + 3 };
}
