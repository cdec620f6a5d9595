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
import { promptText } from './request.js';
import { countTokens } from './tokenizer.js';
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
   * Ends the exchange: metrics, then the pipeline's final record. Never throws, and always reaches
   * the pipeline: it runs in a stream's 'end' listener (where a throw would end the process), and an
   * exchange never finished would hold its concurrency slot and budget reservation forever.
   */
  end(model: LlmModel, f: EndFields): void {
    if (this.finished) return;
    this.finished = true;
    const x = this.x;
    const usage = f.usage;
    let costUsd: number | undefined;
    const details: Record<string, unknown> = {
      model: model.name,
      provider: model.provider.name,
      upstreamModel: f.upstreamModel ?? model.upstreamModel,
      stream: this.call.req.stream,
    };
    try {
      costUsd = usage ? costOf(usage, priceOf(model)) : undefined;
      // Only an absurd configured price gets here; an infinite cost would spend every budget for good.
      if (costUsd !== undefined && !Number.isFinite(costUsd)) throw new Error(`cost of ${JSON.stringify(usage)} is not a finite number`);
      if (usage) {
        const m = this.gw.metrics;
        m.llmTokens.labels(x.agent.name, model.name, 'input').inc(usage.inputTokens);
        m.llmTokens.labels(x.agent.name, model.name, 'output').inc(usage.outputTokens);
        if (usage.cachedInputTokens > 0) m.llmTokens.labels(x.agent.name, model.name, 'cached_input').inc(usage.cachedInputTokens);
        if (costUsd !== undefined && costUsd > 0) m.llmCost.labels(x.agent.name, model.name).inc(costUsd);
      }
      if (this.attempts.length > 0) details['attempts'] = [...this.attempts, { model: model.name, ...(f.status !== undefined ? { status: f.status } : {}), ...(f.code ? { error: f.code } : {}) }];
      if (f.ttftMs !== undefined && f.ttftMs > 0) details['ttftMs'] = f.ttftMs;
      if (usage && costUsd === undefined) details['price'] = 'unknown: set llm.models.<name>.price';
    } catch (e) {
      if (costUsd !== undefined && !Number.isFinite(costUsd)) costUsd = undefined;
      this.gw.log.error({ err: e, exchange: x.id }, 'recording the usage of an LLM call failed; its outcome is recorded without it');
    } finally {
      this.gw.pipeline.finish(x, { status: f.status, code: f.code, message: f.message, bytesIn: this.call.req.raw.length, bytesOut: f.bytesOut ?? 0, usage, costUsd, details });
    }
  }

  /** Ends an exchange whose serving threw (a bug): logged, and recorded as `internal_error`. */
  broke(model: LlmModel, e: unknown, f: { status?: number | undefined; bytesOut?: number } = {}): void {
    this.gw.log.error({ err: e, exchange: this.x.id }, 'LLM forwarding failed');
    this.end(model, { status: f.status ?? 500, code: 'internal_error', message: 'the gateway failed while serving this call', ...(f.bytesOut !== undefined ? { bytesOut: f.bytesOut } : {}) });
  }

  /** Ends an exchange cut before anything was sent: a kill switch, shutdown, or the agent hanging up. */
  aborted(res: ServerResponse, model: LlmModel): void {
    const reason: unknown = this.x.abort.reason;
    if (reason === 'killed') {
      sendLlmError(res, this.surface, this.x.id, 'killed', 'a kill switch stopped this call while it was in flight');
      return this.end(model, { status: ERROR_CODES.killed.status, code: 'killed', message: 'stopped by a kill switch while in flight' });
    }
    if (reason === 'shutdown') {
      sendLlmError(res, this.surface, this.x.id, 'upstream_error', 'the gateway is shutting down; retry');
      return this.end(model, { status: 502, code: 'upstream_error', message: 'cut short by gateway shutdown' });
    }
    this.gw.log.debug({ exchange: this.x.id }, 'agent disconnected; LLM call cancelled');
    return this.end(model, { status: undefined, message: 'the agent disconnected before the response began; the provider call was cancelled' });
  }
}
