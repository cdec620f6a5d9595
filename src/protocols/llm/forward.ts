/**
 * Forwards an allowed LLM call along its model's chain: the model, then its fallbacks on 429, 5xx,
 * timeouts (including a stream's first-token timeout) and connection errors — only while nothing has
 * reached the agent. Non-streamed replies are read whole (to read their usage) and sent with their
 * own bytes; streams go through the SSE tap event by event (see stream.ts).
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { LlmModel } from '../../config/llm.js';
import { ERROR_CODES } from '../../errors.js';
import type { Exchange } from '../../pipeline/types.js';
import { killMessage } from '../../policies/kill/switches.js';
import type { DoorContext } from '../../server/context.js';
import { upstreamFailure } from '../../upstream/dispatcher.js';
import { readBounded } from '../../upstream/read.js';
import { LlmOutcome } from './outcome.js';
import { callHttpProvider } from './providers/http.js';
import { callMock } from './providers/mock.js';
import type { UpstreamReply } from './providers/types.js';
import { sendLlmError } from './render.js';
import type { LlmRequest } from './request.js';
import type { LlmRoute } from './routes.js';
import { llmResponseHeaders, pumpStream } from './stream.js';
import { replyText, settleUsage, usageFromBody } from './usage.js';

export interface LlmCall {
  route: LlmRoute;
  req: LlmRequest;
  chain: LlmModel[];
  agentHeaders: IncomingHttpHeaders;
}

/** Largest non-streamed reply airlock reads (embeddings of big batches are the large ones). */
const MAX_REPLY_BYTES = 64 * 1024 * 1024;

type AttemptResult =
  | { kind: 'done' }
  /** `sent`: the request had reached the provider, which may bill it. */
  | { kind: 'aborted'; sent: boolean }
  | { kind: 'failed'; code: 'upstream_error' | 'upstream_timeout'; message: string }
  | { kind: 'status'; reply: UpstreamReply };

/** The bytes and parsed body to send to `model`: the agent's own bytes unless something must change. */
function requestFor(call: LlmCall, model: LlmModel): { body: Buffer; parsed: Record<string, unknown>; strip: boolean } {
  const { req, route } = call;
  const renamed = model.upstreamModel !== req.model;
  // Chat streams report usage only when asked; ask on the agent's behalf and drop the extra chunk.
  const askUsage = route.op === 'chat' && req.stream && !req.wantsUsageChunk && model.provider.includeUsage;
  if (!renamed && !askUsage) return { body: req.raw, parsed: req.body, strip: false };
  const parsed: Record<string, unknown> = { ...req.body };
  if (renamed) parsed['model'] = model.upstreamModel;
  if (askUsage) parsed['stream_options'] = { ...((req.body['stream_options'] as object | null | undefined) ?? {}), include_usage: true };
  return { body: Buffer.from(JSON.stringify(parsed)), parsed, strip: askUsage };
}


const retryableStatus = (s: number) => s === 429 || s === 408 || s >= 500;

/**
 * The kill switch covering a call of `model` by this exchange's agent, found as the kill policy
 * finds it (for the action `llm: <model>`). Fallbacks serve under the requested model's decision, so
 * the rules are not asked again; a kill switch acts on the target that would really be called.
 */
function killOf(gw: DoorContext, x: Exchange, model: LlmModel) {
  return gw.kills?.covering({ agent: x.agent.name, team: x.agent.team, action: `llm: ${model.name}` });
}

/** Serves an allowed exchange; always ends it exactly once, even if this code has a bug. */
export async function forwardLlm(gw: DoorContext, x: Exchange, res: ServerResponse, call: LlmCall): Promise<void> {
  const out = new LlmOutcome(gw, x, call);
  try {
    await serveChain(gw, x, res, call, out);
  } catch (e) {
    sendLlmError(res, call.route.surface, x.id, 'internal_error', 'the gateway failed while serving this call');
    out.broke(call.chain[0]!, e);
  }
}

async function serveChain(gw: DoorContext, x: Exchange, res: ServerResponse, call: LlmCall, out: LlmOutcome): Promise<void> {
  const surface = call.route.surface;
  const { chain } = call;
  // The requested model passed the kill stage; a switch set since then answers as that stage would.
  const stop = killOf(gw, x, chain[0]!);
  if (stop) {
    const message = killMessage(stop);
    sendLlmError(res, surface, x.id, 'killed', message);
    return out.end(chain[0]!, { status: ERROR_CODES.killed.status, code: 'killed', message });
  }
  for (let i = 0; ; ) {
    const model = chain[i]!;
    const r = await attempt(gw, x, res, call, model, out);
    if (r.kind === 'done') return;
    if (r.kind === 'aborted') return out.aborted(res, model, r.sent);
    out.attempts.push({ model: model.name, ...(r.kind === 'status' ? { status: r.reply.statusCode } : { error: r.code }) });
    const retry = r.kind === 'failed' || retryableStatus(r.reply.statusCode);
    // The next fallback no kill switch covers; killed ones are skipped as if not configured, and
    // listed in the attempts. With none left, this model's own failure is the answer.
    let next = -1;
    if (retry) {
      for (let j = i + 1; j < chain.length && next === -1; j++) {
        const k = killOf(gw, x, chain[j]!);
        if (!k) next = j;
        else {
          out.attempts.push({ model: chain[j]!.name, error: 'killed' });
          gw.log.info({ exchange: x.id, model: chain[j]!.name, kill: `${k.scope} ${k.value}` }, 'LLM fallback skipped: a kill switch covers it');
        }
      }
    }
    if (next !== -1) {
      // undici turns destroy() into an error event; nobody else listens any more.
      if (r.kind === 'status') r.reply.body.on('error', () => {}).destroy();
      x.servedAction = `llm: ${chain[next]!.name}`; // a kill switch on the fallback now cuts this call
      gw.log.info({ exchange: x.id, model: model.name, next: chain[next]!.name, why: r.kind === 'status' ? r.reply.statusCode : r.code }, 'LLM call failed before any byte reached the agent; trying the fallback');
      i = next;
      continue;
    }
    if (r.kind === 'failed') {
      sendLlmError(res, surface, x.id, r.code, `${model.name}: ${r.message}`);
      return out.end(model, { status: ERROR_CODES[r.code].status, code: r.code, message: r.message });
    }
    if (r.reply.statusCode === 401 || r.reply.statusCode === 407) {
      // The provider refused airlock's own credentials: the agent's key is fine, and the provider's
      // message (which may quote part of the provider key) is not the agent's to read.
      r.reply.body.on('error', () => {}).resume();
      const message = `provider "${model.provider.name}" refused airlock's credentials (HTTP ${r.reply.statusCode}); an operator must fix llm.providers.${model.provider.name}.key`;
      gw.log.warn({ exchange: x.id, model: model.name, provider: model.provider.name, status: r.reply.statusCode }, 'LLM provider refused the configured key');
      sendLlmError(res, surface, x.id, 'upstream_error', message);
      return out.end(model, { status: 502, code: 'upstream_error', message });
    }
    // The provider's own error, in its own shape: the agent's SDK parses it as if it called direct.
    let buf: Buffer;
    try {
      buf = await readBounded(r.reply.body, MAX_REPLY_BYTES);
    } catch (e) {
      if (x.abort.aborted) return out.aborted(res, model, false); // it answered with an error: nothing to bill
      const f = upstreamFailure(e);
      sendLlmError(res, surface, x.id, f.code, `${model.name}: ${f.message}`);
      return out.end(model, { status: ERROR_CODES[f.code].status, code: f.code, message: f.message });
    }
    const headers = llmResponseHeaders(r.reply.headers, x.id);
    headers['content-length'] = String(buf.length);
    res.writeHead(r.reply.statusCode, headers);
    res.end(buf);
    x.bodies?.response.describe(r.reply.headers['content-type'], r.reply.headers['content-encoding']).set(buf);
    return out.end(model, { status: r.reply.statusCode, message: `${model.name} (${model.provider.name}) answered ${r.reply.statusCode}`, bytesOut: buf.length });
  }
}

async function attempt(gw: DoorContext, x: Exchange, res: ServerResponse, call: LlmCall, model: LlmModel, out: LlmOutcome): Promise<AttemptResult> {
  const { route, req } = call;
  if (x.abort.aborted) return { kind: 'aborted', sent: false };
  let firstTokenTimer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const ftt = req.stream ? model.firstTokenTimeoutMs : undefined;
  // A first-token timeout must cancel this attempt alone: it gets its own signal, tied to the exchange's.
  let signal = x.abort.signal;
  let release = () => {};
  if (ftt !== undefined) {
    const ac = new AbortController();
    const onAbort = () => ac.abort(x.abort.reason);
    x.abort.signal.addEventListener('abort', onAbort, { once: true });
    release = () => x.abort.signal.removeEventListener('abort', onAbort);
    signal = ac.signal;
    firstTokenTimer = setTimeout(() => {
      timedOut = true;
      ac.abort('first_token_timeout');
    }, ftt);
  }
  const stopTimer = () => clearTimeout(firstTokenTimer);
  const failed = (e: unknown): AttemptResult => {
    stopTimer();
    release();
    if (x.abort.aborted) return { kind: 'aborted', sent };
    const f = timedOut ? { code: 'upstream_timeout' as const, message: `no first token within ${ftt}ms (firstTokenTimeout)` } : upstreamFailure(e);
    // A provider that was sent the prompt bills it, answer or not: a timed-out attempt is booked at
    // an estimate, whether a fallback follows or the timeout reaches the agent.
    if (sent && f.code === 'upstream_timeout') out.charge(model, out.cutUsage(model));
    return { kind: 'failed', code: f.code, message: f.message };
  };

  let sent = false;
  const request = requestFor(call, model);
  const pc = { route, model, body: request.body, parsed: request.parsed, agentHeaders: call.agentHeaders, signal, timeoutMs: model.timeoutMs, onSent: () => (sent = true) };
  const t0 = performance.now();
  let reply: UpstreamReply;
  try {
    reply = model.provider.type === 'mock' ? await callMock(pc) : await callHttpProvider(gw.llmDispatcher ?? gw.dispatcher, pc);
  } catch (e) {
    return failed(e);
  }
  gw.metrics.upstreamDuration.labels('llm', model.name).observe((performance.now() - t0) / 1000);
  if (reply.statusCode < 200 || reply.statusCode >= 300) {
    stopTimer();
    release();
    return { kind: 'status', reply };
  }

  const ct = reply.headers['content-type'];
  if (req.stream && typeof ct === 'string' && ct.includes('text/event-stream')) {
    const r = await pumpStream(res, x, reply, route.op, request.strip, out, model, stopTimer, release);
    if (r === 'committed') return { kind: 'done' };
    if (r === 'empty') return failed(Object.assign(new Error('the provider ended the stream before sending any event'), { code: 'UND_ERR_SOCKET' }));
    return failed(r.error);
  }

  let buf: Buffer;
  try {
    buf = await readBounded(reply.body, MAX_REPLY_BYTES);
  } catch (e) {
    return failed(e);
  }
  stopTimer();
  release();
  const reported = usageFromBody(buf);
  const usage =
    route.op === 'count_tokens'
      ? undefined
      : settleUsage(
          reported,
          () => out.promptTokens(),
          () => out.countText(replyText(buf)),
        );
  x.bodies?.response.describe(reply.headers['content-type'], reply.headers['content-encoding']).set(buf);
  if (res.destroyed) {
    // Too late for the agent, but the provider answered in full and reported what it bills.
    out.end(model, { status: undefined, message: 'the agent disconnected before the reply was sent; the provider had answered', usage, upstreamModel: reported.model });
    return { kind: 'done' };
  }
  const headers = llmResponseHeaders(reply.headers, x.id);
  headers['content-length'] = String(buf.length);
  res.writeHead(reply.statusCode, headers);
  res.end(buf);
  out.end(model, { status: reply.statusCode, bytesOut: buf.length, usage, upstreamModel: reported.model });
  return { kind: 'done' };
}
