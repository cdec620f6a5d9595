/**
 * The LLM front door (SPEC section 5.2): `/llm/v1/...` in the OpenAI and Anthropic shapes. Reads
 * and checks the request, turns it into an exchange (action `llm: <model>`, target model + surface
 * + provider, a digest of the body as its arguments, an upper estimate of its tokens and cost for
 * limits and budgets), asks the pipeline, and forwards what is allowed. It never decides who may
 * do what; denials come back from the pipeline and are rendered in the surface's shape.
 */
import { hash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ExchangeBodies, injectedSecrets } from '../../audit/bodies.js';
import { surfacesOf, type LlmModel, type Surface } from '../../config/llm.js';
import { ERROR_CODES, type ErrorCode } from '../../errors.js';
import type { Estimate } from '../../pipeline/types.js';
import type { Caller, DoorContext } from '../../server/context.js';
import { readBody } from '../http/body.js';
import { forwardLlm } from './forward.js';
import { serveModels } from './models.js';
import { priceOf } from './pricing.js';
import { sendLlmError } from './render.js';
import { parseLlmRequest, requestSummary, reserveInputTokens, reserveOutputTokens, type LlmRequest } from './request.js';
import { parseLlmRoute, type Operation } from './routes.js';
import { warmTokenizer } from './tokenizer.js';

/** The most the call may consume: prompt estimate + output cap, at the dearest price along the chain. */
function estimateOf(op: Operation, req: LlmRequest, chain: LlmModel[]): Estimate {
  if (op === 'count_tokens') return { tokens: 0, costUsd: 0 };
  const input = reserveInputTokens(req.body);
  const output = reserveOutputTokens(op, req, chain[0]!.maxOutputTokens);
  let inPrice = 0;
  let outPrice = 0;
  for (const m of chain) {
    const p = priceOf(m);
    if (!p) continue;
    inPrice = Math.max(inPrice, p.input);
    outPrice = Math.max(outPrice, p.output);
  }
  return { tokens: input + output, costUsd: (input * inPrice + output * outPrice) / 1e6 };
}

/** Configs already checked for a mock provider. */
const checked = new WeakSet<object>();

/** Serves one `/llm/...` request from an authenticated caller. */
export async function serveLlm(gw: DoorContext, req: IncomingMessage, res: ServerResponse, caller: Caller): Promise<void> {
  const { requestId } = caller;
  let surface: Surface = 'openai';
  const refuse = (code: ErrorCode, message: string, extra: { action?: string; target?: Record<string, unknown>; close?: boolean } = {}) => {
    gw.pipeline.reject({ id: requestId, protocol: 'llm', agent: caller.agent, user: caller.user, session: caller.session, action: extra.action, target: extra.target, code, message, status: ERROR_CODES[code].status, startedHr: caller.startedHr });
    sendLlmError(res, surface, requestId, code, message, { close: extra.close ?? false });
  };
  const url = req.url ?? '/';
  const method = (req.method ?? 'GET').toUpperCase();
  const parsedRoute = parseLlmRoute(method, url, req.headers);
  if (!parsedRoute.ok) {
    surface = parsedRoute.surface;
    return refuse('not_found', parsedRoute.problem, { close: req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined });
  }
  const route = parsedRoute.route;
  surface = route.surface;
  if (route.op === 'models' || route.op === 'model') return serveModels(gw, res, caller, route);
  const llm = caller.config.llm;
  // The mock counts every reply with the tokenizer: load it before its first call, off the request path.
  if (!checked.has(llm)) {
    checked.add(llm);
    if ([...llm.providers.values()].some((p) => p.type === 'mock')) warmTokenizer();
  }

  const cl = req.headers['content-length'];
  if (cl !== undefined && Number(cl) > llm.maxBodySize) {
    return refuse('payload_too_large', `the request body (${cl} bytes) is over llm.maxBodySize (${llm.maxBodySize} bytes); send a shorter prompt or raise the limit`, { close: true });
  }
  let raw: Buffer;
  try {
    raw = await readBody(req, llm.maxBodySize);
  } catch (e) {
    if ((e as { code?: string }).code === 'payload_too_large') return refuse('payload_too_large', `the request body is over llm.maxBodySize (${llm.maxBodySize} bytes); send a shorter prompt or raise the limit`, { close: true });
    return; // the agent went away mid-body: nothing was forwarded and nobody is left to answer
  }
  const parsed = parseLlmRequest(route.op, raw);
  if (!parsed.ok) return refuse('bad_request', parsed.message);
  const lr = parsed.req;
  const action = `llm: ${lr.model}`;
  const model = llm.models.get(lr.model);
  if (!model) return refuse('not_found', `no model "${lr.model}" is configured (llm.models); GET /llm/v1/models lists the ones this agent may use`, { action, target: { model: lr.model, surface } });
  const target = { model: model.name, operation: route.op, provider: model.provider.name, surface }; // keys in sorted order (see the /http door)
  if (!surfacesOf(model.provider.type).includes(surface)) {
    const other = surface === 'openai' ? 'the Anthropic shape (/llm/v1/messages)' : 'the OpenAI shape (/llm/v1/chat/completions)';
    return refuse('bad_request', `model "${model.name}" is served by provider "${model.provider.name}" (${model.provider.type}), which speaks ${other}; a surface routes only to providers of its own shape`, { action, target });
  }

  // The walks over the request (summary, estimate) are bounded (see parseLlmRequest); should one
  // still throw, the refusal is audited like any other rather than left to the listener's catch-all.
  let summary: string;
  let estimate: Estimate;
  try {
    summary = requestSummary(route.op, lr);
    estimate = estimateOf(route.op, lr, model.chain);
  } catch (e) {
    gw.log.error({ err: e, exchange: requestId }, 'LLM front door could not read a request');
    return refuse('internal_error', 'the gateway could not read this request, so it was not made', { action, target });
  }
  let bodies: ExchangeBodies | undefined;
  if (caller.config.audit.bodies) {
    // Any provider along the fallback chain may answer; none of their keys may show in a record.
    bodies = new ExchangeBodies(model.chain.length === 1 ? injectedSecrets(model.provider.headers) : [...new Set(model.chain.flatMap((m) => injectedSecrets(m.provider.headers)))]);
    bodies.request.describe(req.headers['content-type'], req.headers['content-encoding']).set(raw);
  }
  const x = gw.pipeline.begin({
    id: requestId,
    protocol: 'llm',
    agent: caller.agent,
    keyId: caller.keyId,
    user: caller.user,
    session: caller.session,
    action,
    target,
    argsKey: hash('sha1', raw, 'base64'),
    summary,
    config: caller.config,
    estimate,
    bodies,
  });
  // An agent that hangs up cancels its call, whether it is held for approval or already upstream.
  res.on('close', () => {
    if (!res.writableFinished && !x.abort.aborted) x.abort.abort('client_closed');
  });
  const verdict = await gw.pipeline.decide(x);
  if (verdict.kind === 'deny') {
    sendLlmError(res, surface, requestId, verdict.code, verdict.message, { rule: verdict.rule, retryAfterS: verdict.retryAfterS });
    return;
  }
  await forwardLlm(gw, x, res, { route, req: lr, chain: model.chain, agentHeaders: req.headers });
}
