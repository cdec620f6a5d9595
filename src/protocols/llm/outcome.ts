/**
 * How an LLM exchange ended, reported exactly once: usage and cost (priced for the model that
 * answered), the metrics of SPEC section 9, and the audit details (answering model, provider,
 * attempts along the fallback chain, time to first token).
 */
import type { ServerResponse } from 'node:http';
import type { LlmModel, Surface } from '../../config/llm.js';
import { ERROR_CODES, type ErrorCode } from '../../errors.js';
import type { Exchange } from '../../pipeline/types.js';
import type { DoorContext } from '../../server/context.js';
import type { LlmCall } from './forward.js';
import { costOf, priceOf } from './pricing.js';
import { sendLlmError } from './render.js';
import { promptText, reserveOutputTokens } from './request.js';
import { countTokens, countTokensIfLoaded } from './tokenizer.js';
import type { Usage } from './usage.js';

export interface EndFields {
  status: number | undefined;
  code?: ErrorCode | undefined;
  message?: string | undefined;
  bytesOut?: number;
  usage?: Usage | undefined;
  upstreamModel?: string | undefined;
  ttftMs?: number;
}

export class LlmOutcome {
  readonly attempts: { model: string; status?: number; error?: string }[] = [];
  readonly surface: Surface;
  private finished = false;
  private promptTokenCount: number | undefined;
  /** Attempts cut after they reached a provider, booked with the exchange at their own model's price. */
  private readonly charged: { model: LlmModel; usage: Usage }[] = [];

  constructor(
    private readonly gw: DoorContext,
    private readonly x: Exchange,
    private readonly call: LlmCall,
  ) {
    this.surface = call.route.surface;
  }

  /** Tokens in the prompt, counted once (for estimates). */
  promptTokens(): number {
    this.promptTokenCount ??= countTokens(promptText(this.call.req.body));
    return this.promptTokenCount;
  }

  countText(s: string): number {
    return countTokens(s);
  }

  /**
   * What an attempt cut after its request reached the provider is booked at (providers bill a
   * prompt they were sent): the prompt, counted; plus, for a non-streamed call, the output cap the
   * reservation held (the provider finishes a reply nobody waits for, and its length is unknown);
   * a stream cut before its first event generated nothing that arrived, and providers stop a stream
   * whose reader left. Undefined for count_tokens, which costs nothing. The prompt is not counted
   * by loading the tokenizer: that stalls the event loop ~0.4 s, just when a fallback should start.
   */
  cutUsage(model: LlmModel): Usage | undefined {
    const { route, req } = this.call;
    if (route.op === 'count_tokens') return undefined;
    const output = req.stream ? 0 : reserveOutputTokens(route.op, req, model.maxOutputTokens);
    const input = this.promptTokenCount ?? countTokensIfLoaded(promptText(req.body));
    return { inputTokens: input, outputTokens: output, cachedInputTokens: 0, estimated: true };
  }

  /** Books a cut attempt with the exchange, whatever ends it (a fallback's answer, an error). */
  charge(model: LlmModel, usage: Usage | undefined): void {
    if (usage) this.charged.push({ model, usage });
  }

  /**
   * Ends the exchange: metrics, then the pipeline's final record. Never throws, and always reaches
   * the pipeline: it runs in a stream's 'end' listener (where a throw would end the process), and an
   * exchange never finished would hold its concurrency slot and budget reservation forever.
   */
  end(model: LlmModel, f: EndFields): void {
    if (this.finished) return;
    this.finished = true;
    const x = this.x;
    let usage: Usage | undefined;
    let costUsd: number | undefined;
    const details: Record<string, unknown> = {
      model: model.name,
      provider: model.provider.name,
      upstreamModel: f.upstreamModel ?? model.upstreamModel,
      stream: this.call.req.stream,
    };
    try {
      // The answer (or failure) that ended the exchange, and any attempts cut on the way, each at
      // its own model's price and under its own model in the metrics.
      const parts = f.usage ? [...this.charged, { model, usage: f.usage }] : this.charged;
      const m = this.gw.metrics;
      for (const p of parts) {
        const cost = costOf(p.usage, priceOf(p.model));
        // Only an absurd configured price gets here; an infinite cost would spend every budget for good.
        if (cost !== undefined && !Number.isFinite(cost)) throw new Error(`the cost of ${JSON.stringify(p.usage)} on ${p.model.name} is not a finite number`);
        if (cost !== undefined) costUsd = Math.round(((costUsd ?? 0) + cost) * 1e9) / 1e9;
        usage = usage ? addUsage(usage, p.usage) : p.usage;
        m.llmTokens.labels(x.agent.name, p.model.name, 'input').inc(p.usage.inputTokens);
        m.llmTokens.labels(x.agent.name, p.model.name, 'output').inc(p.usage.outputTokens);
        if (p.usage.cachedInputTokens > 0) m.llmTokens.labels(x.agent.name, p.model.name, 'cached_input').inc(p.usage.cachedInputTokens);
        if (cost !== undefined && cost > 0) m.llmCost.labels(x.agent.name, p.model.name).inc(cost);
      }
      if (this.attempts.length > 0) details['attempts'] = [...this.attempts, { model: model.name, ...(f.status !== undefined ? { status: f.status } : {}), ...(f.code ? { error: f.code } : {}) }];
      if (f.ttftMs !== undefined && f.ttftMs > 0) details['ttftMs'] = f.ttftMs;
      if (usage && costUsd === undefined) details['price'] = 'unknown: set llm.models.<name>.price';
    } catch (e) {
      usage ??= f.usage;
      this.gw.log.error({ err: e, exchange: x.id }, 'recording the usage of an LLM call failed; its outcome is recorded with what was counted');
    } finally {
      this.gw.pipeline.finish(x, { status: f.status, code: f.code, message: f.message, bytesIn: this.call.req.raw.length, bytesOut: f.bytesOut ?? 0, usage, costUsd, details });
    }
  }

  /** Ends an exchange whose serving threw (a bug): logged, and recorded as `internal_error`. */
  broke(model: LlmModel, e: unknown, f: { status?: number | undefined; bytesOut?: number } = {}): void {
    this.gw.log.error({ err: e, exchange: this.x.id }, 'LLM forwarding failed');
    this.end(model, { status: f.status ?? 500, code: 'internal_error', message: 'the gateway failed while serving this call', ...(f.bytesOut !== undefined ? { bytesOut: f.bytesOut } : {}) });
  }

  /**
   * Ends an exchange cut before anything was sent to the agent: a kill switch, shutdown, or the
   * agent hanging up. `sent`: the request had reached the provider, so it is booked at an estimate.
   */
  aborted(res: ServerResponse, model: LlmModel, sent: boolean): void {
    const reason: unknown = this.x.abort.reason;
    const usage = sent ? this.cutUsage(model) : undefined;
    const booked = usage ? '; it had reached the provider and is booked at an estimate' : '';
    if (reason === 'killed') {
      sendLlmError(res, this.surface, this.x.id, 'killed', 'a kill switch stopped this call while it was in flight');
      return this.end(model, { status: ERROR_CODES.killed.status, code: 'killed', message: `stopped by a kill switch while in flight${booked}`, usage });
    }
    if (reason === 'shutdown') {
      sendLlmError(res, this.surface, this.x.id, 'upstream_error', 'the gateway is shutting down; retry');
      return this.end(model, { status: 502, code: 'upstream_error', message: `cut short by gateway shutdown${booked}`, usage });
    }
    this.gw.log.debug({ exchange: this.x.id }, 'agent disconnected; LLM call cancelled');
    return this.end(model, { status: undefined, message: `the agent disconnected before the response began; the provider call was cancelled${booked}`, usage });
  }
}

/** Two usages as one (an exchange's cut attempts plus the attempt that ended it). */
function addUsage(a: Usage, b: Usage): Usage {
  return { inputTokens: a.inputTokens + b.inputTokens, outputTokens: a.outputTokens + b.outputTokens, cachedInputTokens: a.cachedInputTokens + b.cachedInputTokens, estimated: a.estimated || b.estimated };
}
