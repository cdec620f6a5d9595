/**
 * The built-in `mock` provider: answers in-process, deterministically, in either API shape, so the
 * quickstart, demos and tests need no API key. The reply is the configured `reply` text or an echo
 * of the last user message; given tools, it calls the first one (or the one `tool_choice` names)
 * with arguments filled from its schema, then echoes the tool's result; given a JSON
 * `response_format`, it answers JSON. Usage is counted with the tokenizer (real numbers), streams
 * come in real chunks, and `status`, `latency`, `chunkDelay` make it fail or dawdle on demand.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import type { MockSettings } from '../../../config/llm.js';
import { promptText } from '../request.js';
import { countTokensExact as countTokens } from '../tokenizer.js';
import { anthropicBody, anthropicEvents, countTokensBody } from './mock-anthropic.js';
import { chatBody, chatEvents, embeddingsBody, responsesBody, responsesEvents } from './mock-openai.js';
import type { ProviderCall, UpstreamReply } from './types.js';

export interface MockAnswer {
  id: string;
  model: string;
  created: number;
  /** Text reply, when not a tool call. */
  text: string | undefined;
  tool: { id: string; name: string; args: string } | undefined;
  inputTokens: number;
  outputTokens: number;
  /** Text in pieces, as it streams. */
  pieces: string[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A value shaped like a JSON schema asks, with strings set to `text`. */
export function fillSchema(schema: unknown, text: string, depth = 0): unknown {
  if (!isObj(schema) || depth > 8) return text;
  if (Array.isArray(schema['enum']) && schema['enum'].length > 0) return schema['enum'][0];
  if ('const' in schema) return schema['const'];
  const alt = (schema['anyOf'] ?? schema['oneOf']) as unknown[] | undefined;
  if (Array.isArray(alt) && alt.length > 0) return fillSchema(alt.find((s) => !(isObj(s) && s['type'] === 'null')) ?? alt[0], text, depth + 1);
  const type = Array.isArray(schema['type']) ? (schema['type'] as unknown[]).find((t) => t !== 'null') : schema['type'];
  switch (type) {
    case 'string':
      return text;
    case 'number':
    case 'integer':
      return 1;
    case 'boolean':
      return true;
    case 'null':
      return null;
    case 'array':
      return schema['items'] ? [fillSchema(schema['items'], text, depth + 1)] : [];
    default: {
      const props = schema['properties'];
      if (!isObj(props)) return type === 'object' ? {} : text;
      const out: Obj = {};
      for (const [k, s] of Object.entries(props)) out[k] = fillSchema(s, text, depth + 1);
      return out;
    }
  }
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  const parts: string[] = [];
  for (const p of content) {
    if (typeof p === 'string') parts.push(p);
    else if (isObj(p)) {
      if (typeof p['text'] === 'string') parts.push(p['text']);
      else if (p['type'] === 'tool_result') parts.push(textOf(p['content']));
    }
  }
  return parts.join(' ');
}

interface Turn {
  /** The last message's text. */
  text: string;
  /** It carries a tool's result: answer it rather than call a tool again. */
  toolResult: boolean;
}

function lastTurn(body: Obj): Turn {
  const list = body['messages'] ?? body['input'];
  if (typeof list === 'string') return { text: list, toolResult: false };
  if (!Array.isArray(list) || list.length === 0) return { text: '', toolResult: false };
  const m = list[list.length - 1] as unknown;
  if (!isObj(m)) return { text: String(m), toolResult: false };
  if (m['role'] === 'tool' || m['type'] === 'function_call_output') return { text: `tool result: ${textOf(m['content'] ?? m['output'])}`, toolResult: true };
  const content = m['content'];
  if (Array.isArray(content) && content.some((p) => isObj(p) && p['type'] === 'tool_result')) return { text: `tool result: ${textOf(content)}`, toolResult: true };
  return { text: textOf(content), toolResult: false };
}

/** The tool to call, if the request offers tools and does not forbid calling them. */
function pickTool(body: Obj, turn: Turn): { name: string; schema: unknown } | undefined {
  const tools = body['tools'];
  if (!Array.isArray(tools) || tools.length === 0 || turn.toolResult) return undefined;
  const choice = body['tool_choice'];
  if (choice === 'none' || (isObj(choice) && choice['type'] === 'none')) return undefined;
  const named = isObj(choice) ? ((choice['function'] as Obj | undefined)?.['name'] ?? choice['name']) : undefined;
  const defs = tools.filter(isObj).map((t) => {
    const f = isObj(t['function']) ? t['function'] : t; // chat nests under function; Responses and Anthropic do not
    return { name: String(f['name'] ?? 'tool'), schema: f['parameters'] ?? f['input_schema'] };
  });
  return (typeof named === 'string' ? defs.find((d) => d.name === named) : undefined) ?? defs[0];
}

/** The JSON schema a `response_format` (chat) or `text.format` (Responses) asks for; null for any JSON. */
function jsonFormat(body: Obj): unknown {
  const f = (body['response_format'] ?? (body['text'] as Obj | undefined)?.['format']) as Obj | undefined;
  if (!isObj(f)) return undefined;
  if (f['type'] === 'json_object') return null;
  if (f['type'] === 'json_schema') return ((f['json_schema'] as Obj | undefined)?.['schema'] ?? f['schema']) ?? null;
  return undefined;
}

/** The deterministic answer to a request. */
export function mockAnswer(settings: MockSettings, body: Obj, raw: Buffer, model: string): MockAnswer {
  const digest = createHash('sha256').update(raw).digest('hex').slice(0, 24);
  const turn = lastTurn(body);
  const base = settings.reply ?? (turn.text || '(empty message)');
  const tool = pickTool(body, turn);
  const format = jsonFormat(body);
  let text: string | undefined;
  let call: MockAnswer['tool'];
  if (tool) call = { id: `call_${digest}`, name: tool.name, args: JSON.stringify(fillSchema(tool.schema ?? { type: 'object' }, base.slice(0, 200))) };
  else if (format === null) text = JSON.stringify({ reply: base });
  else if (format !== undefined) text = JSON.stringify(fillSchema(format, base));
  else text = base;
  const messages = Array.isArray(body['messages']) ? (body['messages'] as unknown[]).length : 1;
  const out = text ?? `${call!.name}${call!.args}`;
  return {
    id: digest,
    model,
    created: Math.floor(Date.now() / 1000),
    text,
    tool: call,
    inputTokens: countTokens(promptText(body)) + 3 * messages + 3,
    outputTokens: countTokens(out),
    pieces: (text ?? call!.args).match(/\s*\S+|\s+$/g) ?? [],
  };
}

function errorReply(settings: MockSettings, status: number, anthropic: boolean): UpstreamReply {
  const message = settings.message ?? `mock provider configured to fail with ${status}`;
  const aType = status === 429 ? 'rate_limit_error' : status === 529 || status === 503 ? 'overloaded_error' : status >= 500 ? 'api_error' : 'invalid_request_error';
  const oType = status === 429 ? 'rate_limit_exceeded' : status >= 500 ? 'server_error' : 'invalid_request_error';
  const body = JSON.stringify(anthropic ? { type: 'error', error: { type: aType, message } } : { error: { message, type: oType, param: null, code: null } });
  const headers: Record<string, string> = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
  if (status === 429) headers['retry-after'] = '1';
  return { statusCode: status, headers, body: Readable.from([Buffer.from(body)]) };
}

function json(value: unknown): UpstreamReply {
  const body = Buffer.from(JSON.stringify(value));
  return { statusCode: 200, headers: { 'content-type': 'application/json', 'content-length': String(body.length) }, body: Readable.from([body]) };
}

function sse(events: string[], settings: MockSettings, signal: AbortSignal): UpstreamReply {
  async function* gen(): AsyncGenerator<Buffer> {
    for (let i = 0; i < events.length; i++) {
      // Each event is its own chunk on the wire, as a real provider sends them.
      if (i > 0) await (settings.chunkDelayMs > 0 ? sleep(settings.chunkDelayMs, undefined, { signal }) : tick(undefined, { signal }));
      yield Buffer.from(events[i]!);
    }
  }
  return { statusCode: 200, headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' }, body: Readable.from(gen(), { objectMode: false }) };
}

/** Answers a call in-process. */
export async function callMock(call: ProviderCall): Promise<UpstreamReply> {
  const settings = call.model.provider.mock!;
  call.onSent?.(); // in-process: it has the request at once
  const anthropic = call.route.surface === 'anthropic';
  if (settings.latencyMs > 0) await sleep(settings.latencyMs, undefined, { signal: call.signal });
  if (settings.status !== undefined) return errorReply(settings, settings.status, anthropic);
  const body = call.parsed;
  const model = call.model.upstreamModel;
  switch (call.route.op) {
    case 'count_tokens':
      return json(countTokensBody(body));
    case 'embeddings':
      return json(embeddingsBody(body, model));
    case 'messages': {
      if (typeof body['max_tokens'] !== 'number') return { ...errorReply({ ...settings, message: 'max_tokens: Field required' }, 400, true) };
      const a = mockAnswer(settings, body, call.body, model);
      return body['stream'] === true ? sse(anthropicEvents(a), settings, call.signal) : json(anthropicBody(a));
    }
    case 'responses': {
      const a = mockAnswer(settings, body, call.body, model);
      return body['stream'] === true ? sse(responsesEvents(a, body), settings, call.signal) : json(responsesBody(a, body, 'completed'));
    }
    default: {
      const a = mockAnswer(settings, body, call.body, model);
      const includeUsage = (body['stream_options'] as Obj | undefined)?.['include_usage'] === true;
      return body['stream'] === true ? sse(chatEvents(a, includeUsage), settings, call.signal) : json(chatBody(a));
    }
  }
}
