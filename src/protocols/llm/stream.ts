/**
 * Streams a provider's SSE reply to the agent through the tap. Nothing is written until the first
 * complete event arrives (so a fallback is still possible until then); from then on each event is
 * written as it completes, with backpressure both ways. A stream that breaks, ends early or is cut
 * by a kill switch ends with an error event in the surface's shape, and the outcome says why.
 */
import type { ServerResponse } from 'node:http';
import type { LlmModel } from '../../config/llm.js';
import type { ErrorCode } from '../../errors.js';
import type { Exchange } from '../../pipeline/types.js';
import { upstreamFailure } from '../../upstream/dispatcher.js';
import { agentResponseHeaders } from '../../upstream/headers.js';
import type { LlmOutcome } from './outcome.js';
import type { UpstreamReply } from './providers/types.js';
import { sseErrorEvent } from './render.js';
import type { Operation } from './routes.js';
import { SseTap } from './sse.js';
import { settleUsage } from './usage.js';

/** Never passed back: hop-by-hop, the length (airlock may change the body), provider cookies. */
/** A provider reply's body may be rewritten (usage chunk stripped), and providers' cookies are not the agent's. */
const LLM_DROP: ReadonlySet<string> = new Set(['content-length', 'set-cookie']);

/** A provider's response headers for the agent. */
export function llmResponseHeaders(h: UpstreamReply['headers'], requestId: string): Record<string, string | string[]> {
  return agentResponseHeaders(h, requestId, LLM_DROP);
}

export type PumpResult = 'committed' | 'empty' | { error: unknown };

/**
 * Pumps `reply` into `res`. Resolves once the first event went out ('committed'; the exchange is
 * then ended by this function when the stream ends), or with why nothing could be sent.
 */
export function pumpStream(res: ServerResponse, x: Exchange, reply: UpstreamReply, op: Operation, strip: boolean, out: LlmOutcome, model: LlmModel, stopTimer: () => void, release: () => void): Promise<PumpResult> {
  return new Promise((resolve) => {
    const tap = new SseTap(op, strip);
    const body = reply.body;
    const surface = out.surface;
    let committed = false;
    let bytesOut = 0;
    let paused = false;
    let ttftMs = 0;
    // With audit.bodies on: what the agent is sent, copied (up to a cap) as it goes.
    const capture = x.bodies?.response;
    const resume = () => {
      paused = false;
      body.resume();
    };
    const onData = (chunk: Buffer) => {
      const fwd = tap.push(chunk);
      if (!fwd) return;
      if (!committed) {
        committed = true;
        stopTimer();
        capture?.describe(reply.headers['content-type'], reply.headers['content-encoding']);
        ttftMs = Math.round((performance.now() - x.startedHr) * 1000) / 1000;
        res.writeHead(reply.statusCode, llmResponseHeaders(reply.headers, x.id));
        resolve('committed');
      }
      bytesOut += fwd.length;
      if (capture) capture.write(fwd);
      if (!res.write(fwd) && !paused && !res.destroyed) {
        paused = true;
        body.pause();
        res.once('drain', resume);
      }
    };
    // Runs in the body's listeners: a throw there would end the process and leave the exchange in
    // flight, so a bug in settling still ends the agent's response and the exchange.
    const finish = (error: unknown) => {
      try {
        settle(error);
      } catch (e) {
        if (!res.writableEnded) res.destroy();
        out.broke(model, e, { status: reply.statusCode, bytesOut });
      }
    };
    const settle = (error: unknown) => {
      release();
      body.off('data', onData);
      res.off('drain', resume);
      const reason: unknown = x.abort.aborted ? x.abort.reason : undefined;
      // Some OpenAI-compatible servers end a finished chat stream without `[DONE]`.
      const ended = tap.complete || (op === 'chat' && tap.finished && tap.leftover === 0);
      const complete = error === undefined && ended && tap.upstreamError === undefined;
      const outputEstimate = () => Math.max(tap.usage.output ?? 0, tap.textChars > tap.text.length ? Math.ceil((out.countText(tap.text) * tap.textChars) / Math.max(1, tap.text.length)) : out.countText(tap.text));
      // An unfinished stream's output count (Anthropic's message_start says 1) is not the real one.
      const usage = settleUsage(complete ? tap.usage : { ...tap.usage, output: undefined }, () => out.promptTokens(), outputEstimate);
      let code: ErrorCode | undefined;
      let message: string | undefined;
      let event: string | undefined;
      if (reason === 'killed') {
        code = 'killed';
        message = 'stopped by a kill switch while streaming';
        event = sseErrorEvent(surface, code, 'a kill switch stopped this call while it was streaming', x.id);
      } else if (reason === 'shutdown') {
        code = 'upstream_error';
        message = 'cut short by gateway shutdown';
        event = sseErrorEvent(surface, code, 'the gateway is shutting down; retry', x.id);
      } else if (reason !== undefined) {
        message = 'the agent disconnected before the stream ended; the provider call was cancelled';
      } else if (error !== undefined) {
        const f = upstreamFailure(error);
        code = f.code;
        message = `the stream broke after ${tap.events} events: ${f.message}`;
        event = sseErrorEvent(surface, code, `${model.name}: ${message}`, x.id);
      } else if (tap.upstreamError !== undefined) {
        // The provider's own error event already went to the agent.
        code = 'upstream_error';
        message = `the provider sent an error event mid-stream: ${tap.upstreamError.slice(0, 300)}`;
      } else if (!ended) {
        code = 'upstream_error';
        message = `the provider ended the stream after ${tap.events} events without finishing it`;
        event = sseErrorEvent(surface, code, `${model.name}: ${message}`, x.id);
      }
      if (!res.destroyed && !res.writableEnded) {
        if (event) {
          bytesOut += Buffer.byteLength(event);
          capture?.write(Buffer.from(event));
          res.write(event);
        }
        res.end();
      }
      out.end(model, { status: reply.statusCode, code, message, bytesOut, usage, upstreamModel: tap.model, ttftMs });
    };
    body.on('data', onData);
    body.once('end', () => (committed ? finish(undefined) : resolve('empty')));
    body.once('error', (e: unknown) => {
      if (committed) finish(e);
      else resolve({ error: e });
    });
  });
}
