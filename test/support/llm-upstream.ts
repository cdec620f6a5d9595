/**
 * Fake LLM providers on 127.0.0.1:0, written from the public API references (not from airlock's
 * code): an OpenAI-shaped server (chat completions, Responses, embeddings) and an Anthropic-shaped
 * one (messages, count_tokens), with real SSE framing and the failure modes a gateway must survive:
 * an error status (429 with Retry-After, 500), a slow first token, a reset mid-stream, a hang.
 * Usage numbers are fixed so tests can check costs exactly.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests inspect fields
  raw: Buffer;
  /** Set when the gateway hung up before the reply ended (a cancelled call). */
  aborted: boolean;
}

/** How the next replies misbehave. */
export type Behavior =
  | { status: number; retryAfter?: string; body?: string }
  | { firstTokenDelayMs: number }
  | { delayMs: number }
  | { resetAfterEvents: number }
  | { endAfterEvents: number }
  | { chunkDelayMs: number }
  | { noUsage: true }
  /** Reports this as the reply's `usage` (chat completions and the Responses API), however absurd. */
  | { usage: unknown }
  | { hang: true };

export interface FakeLlm {
  url: string;
  seen: Seen[];
  /** Queue behaviours for the next calls (consumed one per call); `always` for every call. */
  next(...b: Behavior[]): void;
  always(b: Behavior | undefined): void;
  close(): Promise<void>;
}

/** Fixed usage: OpenAI style. Input includes 3 cached tokens. */
export const OPENAI_USAGE = { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18, prompt_tokens_details: { cached_tokens: 3 } };
/** Fixed usage: Anthropic style (input_tokens excludes the 5 cache reads). */
export const ANTHROPIC_USAGE = { input_tokens: 20, cache_read_input_tokens: 5, cache_creation_input_tokens: 0, output_tokens: 9 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Writer = (res: ServerResponse, body: any, seen: Seen, b: Behavior | undefined) => Promise<void>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function start(routes: Record<string, Writer>, errorBody: (status: number) => string): Promise<FakeLlm> {
  const queue: Behavior[] = [];
  let always: Behavior | undefined;
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let body: unknown;
      try {
        body = JSON.parse(raw.toString());
      } catch {
        body = undefined;
      }
      const s: Seen = { url: req.url ?? '', headers: req.headers, body, raw, aborted: false };
      seen.push(s);
      res.on('close', () => {
        if (!res.writableFinished) s.aborted = true;
      });
      const b = queue.shift() ?? always;
      void (async (): Promise<void> => {
        if (b && 'status' in b) {
          const text = b.body ?? errorBody(b.status);
          res.writeHead(b.status, { 'content-type': 'application/json', ...(b.retryAfter ? { 'retry-after': b.retryAfter } : {}) });
          res.end(text);
          return;
        }
        if (b && 'hang' in b) return;
        if (b && 'delayMs' in b) await sleep(b.delayMs);
        const route = routes[(req.url ?? '').split('?')[0]!];
        if (!route) {
          res.writeHead(404, { 'content-type': 'application/json' });
          res.end(errorBody(404));
          return;
        }
        await route(res, body, s, b);
      })().catch(() => res.destroy());
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    next: (...b) => queue.push(...b),
    always: (b) => (always = b),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Writes SSE events with the behaviour's timing and failures. */
async function sse(res: ServerResponse, events: string[], b: Behavior | undefined): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-request-id': 'req_fake' });
  res.flushHeaders();
  if (b && 'firstTokenDelayMs' in b) await sleep(b.firstTokenDelayMs);
  for (let i = 0; i < events.length; i++) {
    if (b && 'resetAfterEvents' in b && i === b.resetAfterEvents) {
      res.socket?.resetAndDestroy();
      return;
    }
    if (b && 'endAfterEvents' in b && i === b.endAfterEvents) return void res.end();
    if (res.destroyed) return;
    res.write(events[i]);
    await sleep(b && 'chunkDelayMs' in b ? b.chunkDelayMs : 1);
  }
  res.end();
}

const ev = (data: unknown, name?: string) => `${name ? `event: ${name}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

function lastText(body: any): string { // eslint-disable-line @typescript-eslint/no-explicit-any
  const m = body?.messages?.at?.(-1) ?? body?.input;
  const c = typeof m === 'string' ? m : m?.content;
  if (typeof c === 'string') return c;
  if (Array.isArray(c)) return c.map((p: { text?: string; content?: string }) => p.text ?? p.content ?? '').join(' ');
  return '';
}

/** An OpenAI-shaped provider (base URL `<url>/v1`). Replies "echo: <last message>". */
export function startFakeOpenAI(): Promise<FakeLlm> {
  const created = 1_700_000_000;
  const chat: Writer = async (res, body, _s, b) => {
    const text = `echo: ${lastText(body)}`;
    const noUsage = b !== undefined && 'noUsage' in b;
    const usage = b && 'usage' in b ? b.usage : OPENAI_USAGE;
    const tool = Array.isArray(body.tools) && body.tools.length > 0 && body.tool_choice !== 'none' && body.messages.at(-1)?.role !== 'tool' ? body.tools[0].function.name : undefined;
    const json = body.response_format?.type === 'json_schema' || body.response_format?.type === 'json_object';
    const content = json ? JSON.stringify({ answer: text }) : text;
    if (!body.stream) {
      const message = tool ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: tool, arguments: '{"city":"Paris"}' } }] } : { role: 'assistant', content, refusal: null };
      const out = { id: 'chatcmpl-1', object: 'chat.completion', created, model: `${body.model}-2024-07-18`, choices: [{ index: 0, message, logprobs: null, finish_reason: tool ? 'tool_calls' : 'stop' }], ...(noUsage ? {} : { usage }) };
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'req_fake', 'set-cookie': 'tracker=1' });
      return void res.end(JSON.stringify(out));
    }
    const inc = body.stream_options?.include_usage === true && !noUsage;
    const head = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created, model: `${body.model}-2024-07-18`, ...(inc ? { usage: null } : {}) };
    const chunk = (delta: unknown, finish: string | null = null) => ev({ ...head, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
    const events: string[] = [];
    if (tool) {
      events.push(chunk({ role: 'assistant', content: null, tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: tool, arguments: '' } }] }));
      for (const p of ['{"city"', ':"Paris"}']) events.push(chunk({ tool_calls: [{ index: 0, function: { arguments: p } }] }));
      events.push(chunk({}, 'tool_calls'));
    } else {
      events.push(chunk({ role: 'assistant', content: '' }));
      for (const w of content.match(/\s*\S+/g) ?? []) events.push(chunk({ content: w }));
      events.push(chunk({}, 'stop'));
    }
    if (inc) events.push(ev({ ...head, choices: [], usage }));
    events.push('data: [DONE]\n\n');
    await sse(res, events, b);
  };
  const responses: Writer = async (res, body, _s, b) => {
    const text = `echo: ${lastText(body)}`;
    const usage = b && 'usage' in b ? b.usage : { input_tokens: 11, input_tokens_details: { cached_tokens: 3 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 18 };
    const item = { id: 'msg_1', type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] };
    const resp = (status: string, done: boolean) => ({ id: 'resp_1', object: 'response', created_at: created, status, model: body.model, output: done ? [item] : [], usage: done ? usage : null, error: null, incomplete_details: null, instructions: null, metadata: body.metadata ?? {}, parallel_tool_calls: true, temperature: 1, tool_choice: 'auto', tools: [], top_p: 1 });
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(resp('completed', true)));
    }
    let seq = 0;
    const e = (type: string, d: object) => ev({ type, sequence_number: seq++, ...d }, type);
    const at = { item_id: 'msg_1', output_index: 0, content_index: 0 };
    const events = [e('response.created', { response: resp('in_progress', false) }), e('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } }), e('response.content_part.added', { ...at, part: { type: 'output_text', text: '', annotations: [] } })];
    for (const w of text.match(/\s*\S+/g) ?? []) events.push(e('response.output_text.delta', { ...at, delta: w }));
    events.push(e('response.output_text.done', { ...at, text }), e('response.content_part.done', { ...at, part: item.content[0]! }), e('response.output_item.done', { output_index: 0, item }), e('response.completed', { response: resp('completed', true) }));
    await sse(res, events, b);
  };
  const embeddings: Writer = async (res, body) => {
    const inputs: unknown[] = Array.isArray(body.input) ? body.input : [body.input];
    const vec = [0.5, -0.25, 0.125, 1];
    const data = inputs.map((_, index) => ({ object: 'embedding', index, embedding: body.encoding_format === 'base64' ? Buffer.from(new Float32Array(vec).buffer).toString('base64') : vec }));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data, model: body.model, usage: { prompt_tokens: 8, total_tokens: 8 } }));
  };
  return start({ '/v1/chat/completions': chat, '/v1/responses': responses, '/v1/embeddings': embeddings }, (status) =>
    JSON.stringify({ error: { message: status === 429 ? 'Rate limit reached for requests' : status === 404 ? 'not found' : 'The server had an error while processing your request.', type: status === 429 ? 'requests' : 'server_error', param: null, code: status === 429 ? 'rate_limit_exceeded' : null } }),
  );
}

/** An Anthropic-shaped provider (base URL `<url>`). Replies "echo: <last message>". */
export function startFakeAnthropic(): Promise<FakeLlm> {
  const messages: Writer = async (res, body, _s, b) => {
    const text = `echo: ${lastText(body)}`;
    const tool = Array.isArray(body.tools) && body.tools.length > 0 && !(Array.isArray(body.messages.at(-1)?.content) && body.messages.at(-1).content.some((p: { type?: string }) => p.type === 'tool_result')) ? body.tools[0].name : undefined;
    const block = tool ? { type: 'tool_use', id: 'toolu_1', name: tool, input: { city: 'Paris' } } : { type: 'text', text };
    const msg = { id: 'msg_1', type: 'message', role: 'assistant', model: `${body.model}-20241022`, content: [block], stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null, usage: ANTHROPIC_USAGE };
    if (!body.stream) {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_fake' });
      return void res.end(JSON.stringify(msg));
    }
    const e = (type: string, d: object) => ev({ type, ...d }, type);
    const events = [e('message_start', { message: { ...msg, content: [], stop_reason: null, usage: { ...ANTHROPIC_USAGE, output_tokens: 1 } } }), e('content_block_start', { index: 0, content_block: tool ? { ...block, input: {} } : { type: 'text', text: '' } }), e('ping', {})];
    if (tool) for (const p of ['{"city"', ': "Paris"}']) events.push(e('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: p } }));
    else for (const w of text.match(/\s*\S+/g) ?? []) events.push(e('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } }));
    events.push(e('content_block_stop', { index: 0 }), e('message_delta', { delta: { stop_reason: msg.stop_reason, stop_sequence: null }, usage: { output_tokens: 9 } }), e('message_stop', {}));
    await sse(res, events, b);
  };
  const count: Writer = async (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ input_tokens: 42 }));
  };
  return start({ '/v1/messages': messages, '/v1/messages/count_tokens': count }, (status) =>
    JSON.stringify({ type: 'error', error: { type: status === 429 ? 'rate_limit_error' : status === 529 ? 'overloaded_error' : status === 404 ? 'not_found_error' : 'api_error', message: status === 429 ? 'Number of requests has exceeded your rate limit' : 'Internal server error' } }),
  );
}
