/**
 * The SSE tap: splits an upstream event stream into whole events as bytes arrive, hands back the
 * bytes to forward at once (every complete event, never waiting for more), and reads usage, the
 * output text (for estimates) and the stream's terminal event on the way. The one event it may
 * drop is the usage-only chat chunk airlock asked for on the agent's behalf.
 */
import type { Operation } from './routes.js';
import { mergeUsage, type ReportedUsage } from './usage.js';

/** Output text kept for estimates; beyond it only the length is counted. */
const TEXT_SAMPLE = 32_000;
const LF = 10;
const CR = 13;

export class SseTap {
  readonly usage: ReportedUsage = {};
  /** Output text seen (a sample) and its full length. */
  text = '';
  textChars = 0;
  events = 0;
  /** The provider's own end-of-stream marker arrived (`[DONE]`, `message_stop`, `response.completed`). */
  complete = false;
  /** A chat choice finished (`finish_reason`): a clean end after it is complete even without `[DONE]`. */
  finished = false;
  /** The provider sent an error event mid-stream. */
  upstreamError: string | undefined;
  /** The model the provider says answered. */
  model: string | undefined;
  private pending: Buffer | undefined;

  constructor(
    private readonly op: Operation,
    /** Drop the usage-only chat chunk (airlock asked for it, the agent did not). */
    private readonly stripUsageChunk: boolean,
  ) {}

  /** Takes a chunk; returns what to forward now (possibly nothing, when no event is complete yet). */
  push(chunk: Buffer): Buffer | undefined {
    const buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    let start = 0;
    let out: Buffer[] | undefined;
    let fwdStart = 0;
    const n = buf.length;
    for (let i = buf.indexOf(LF); i !== -1 && i < n; i = buf.indexOf(LF, i + 1)) {
      let end: number;
      if (buf[i + 1] === LF) end = i + 2;
      else if (buf[i + 1] === CR && buf[i + 2] === LF) end = i + 3;
      else continue;
      if (!this.event(buf, start, end)) {
        // Drop this event: forward what came before it.
        out ??= [];
        if (start > fwdStart) out.push(buf.subarray(fwdStart, start));
        fwdStart = end;
      }
      start = end;
      i = end - 1;
    }
    this.pending = start < n ? Buffer.from(buf.subarray(start)) : undefined;
    if (!out) return start > 0 ? buf.subarray(0, start) : undefined;
    if (start > fwdStart) out.push(buf.subarray(fwdStart, start));
    return out.length === 0 ? undefined : out.length === 1 ? out[0] : Buffer.concat(out);
  }

  /** Bytes of an event still incomplete when the stream ended. */
  get leftover(): number {
    return this.pending?.length ?? 0;
  }

  /** Reads one event; false to drop it. */
  private event(buf: Buffer, start: number, end: number): boolean {
    this.events++;
    const text = buf.toString('utf8', start, end);
    let name: string | undefined;
    let data = '';
    let lineStart = 0;
    while (lineStart < text.length) {
      let lineEnd = text.indexOf('\n', lineStart);
      if (lineEnd === -1) lineEnd = text.length;
      let line = text.slice(lineStart, lineEnd);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      lineStart = lineEnd + 1;
      if (line.startsWith('data:')) data += (data ? '\n' : '') + (line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5));
      else if (line.startsWith('event:')) name = line.slice(line.charCodeAt(6) === 32 ? 7 : 6);
    }
    if (data === '') return true;
    if (data === '[DONE]') {
      this.complete = true;
      return true;
    }
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(data) as Record<string, unknown>;
    } catch {
      return true;
    }
    if (v === null || typeof v !== 'object') return true;
    const type = name ?? (typeof v['type'] === 'string' ? v['type'] : undefined);
    if (type === 'error' || (v['error'] !== undefined && v['error'] !== null && this.op === 'chat')) {
      const e = v['error'] as { message?: unknown } | undefined;
      this.upstreamError = typeof e?.message === 'string' ? e.message : typeof v['message'] === 'string' ? v['message'] : 'error event';
      return true;
    }
    switch (this.op) {
      case 'chat':
        return this.chatChunk(v);
      case 'responses':
        this.responsesEvent(type, v);
        return true;
      default:
        this.anthropicEvent(type, v);
        return true;
    }
  }

  private addText(s: unknown): void {
    if (typeof s !== 'string' || s.length === 0) return;
    this.textChars += s.length;
    if (this.text.length < TEXT_SAMPLE) this.text += s.slice(0, TEXT_SAMPLE - this.text.length);
  }

  private chatChunk(v: Record<string, unknown>): boolean {
    if (this.model === undefined && typeof v['model'] === 'string') this.model = v['model'];
    const choices = v['choices'];
    if (Array.isArray(choices)) {
      for (const c of choices as { finish_reason?: unknown; delta?: { content?: unknown; refusal?: unknown; tool_calls?: { function?: { name?: unknown; arguments?: unknown } }[] } }[]) {
        if (c?.finish_reason) this.finished = true;
        const d = c?.delta;
        if (!d) continue;
        this.addText(d.content);
        this.addText(d.refusal);
        if (Array.isArray(d.tool_calls)) for (const t of d.tool_calls) (this.addText(t?.function?.name), this.addText(t?.function?.arguments));
      }
    }
    const u = v['usage'];
    if (u !== null && typeof u === 'object') {
      mergeUsage(this.usage, u);
      if (this.stripUsageChunk && Array.isArray(choices) && choices.length === 0) return false;
    }
    return true;
  }

  private responsesEvent(type: string | undefined, v: Record<string, unknown>): void {
    if (type === 'response.output_text.delta' || type === 'response.function_call_arguments.delta' || type === 'response.refusal.delta') this.addText(v['delta']);
    else if (type === 'response.completed' || type === 'response.incomplete' || type === 'response.failed') {
      const r = v['response'] as Record<string, unknown> | undefined;
      mergeUsage(this.usage, r?.['usage']);
      if (typeof r?.['model'] === 'string') this.model = r['model'];
      this.complete = true;
    } else if (type === 'response.created' && this.model === undefined) {
      const r = v['response'] as Record<string, unknown> | undefined;
      if (typeof r?.['model'] === 'string') this.model = r['model'];
    }
  }

  private anthropicEvent(type: string | undefined, v: Record<string, unknown>): void {
    if (type === 'content_block_delta') {
      const d = v['delta'] as Record<string, unknown> | undefined;
      this.addText(d?.['text'] ?? d?.['partial_json'] ?? d?.['thinking']);
    } else if (type === 'message_start') {
      const m = v['message'] as Record<string, unknown> | undefined;
      mergeUsage(this.usage, m?.['usage']);
      if (typeof m?.['model'] === 'string') this.model = m['model'];
    } else if (type === 'message_delta') mergeUsage(this.usage, v['usage']);
    else if (type === 'message_stop') this.complete = true;
  }
}
