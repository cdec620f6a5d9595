/**
 * Watches an upstream response as it passes to the agent — never holding it back — to learn what
 * the audit record needs: the task and context ids, the task's last state, an upstream error, the
 * number of stream events. A JSON body is copied up to a bound and read at the end; an SSE stream
 * is read event by event.
 */
import { StringDecoder } from 'node:string_decoder';
import { responseFacts, type ResponseFacts } from './methods.js';

/** JSON bodies (and SSE events) larger than this are passed through without being read for the audit. */
const TAP_LIMIT = 256 * 1024;

export interface TapOptions {
  /** Read bodies and events up to this many bytes (default 256 KB). */
  limit?: number | undefined;
  /**
   * Told the facts of each body or event as soon as it is read: for an SSE event, before it is
   * passed on to the agent (task ownership is known before the agent can use the id).
   */
  onFacts?: ((f: ResponseFacts) => void) | undefined;
}

export class ResponseTap {
  readonly facts: ResponseFacts & { events: number } = { events: 0 };
  /** SSE: true when everything written so far ends on an event boundary (safe to append an event). */
  atBoundary = true;
  private readonly decoder = new StringDecoder('utf8');
  private chunks: Buffer[] = [];
  private size = 0;
  private line = '';
  private data: string | undefined;
  private overflow = false;

  private readonly limit: number;
  private readonly onFacts: ((f: ResponseFacts) => void) | undefined;

  constructor(
    readonly kind: 'json' | 'sse',
    opts: TapOptions = {},
  ) {
    this.limit = opts.limit ?? TAP_LIMIT;
    this.onFacts = opts.onFacts;
  }

  write(chunk: Buffer): void {
    if (this.kind === 'json') {
      if (this.size + chunk.length <= this.limit) this.chunks.push(chunk);
      this.size += chunk.length;
      return;
    }
    const text = this.line + this.decoder.write(chunk);
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      if (nl === -1) break;
      let l = text.slice(start, nl);
      if (l.endsWith('\r')) l = l.slice(0, -1);
      this.onLine(l);
      start = nl + 1;
    }
    this.line = text.slice(start);
    if (this.line.length > this.limit) {
      this.line = '';
      this.overflow = true;
    }
    this.atBoundary = this.line === '' && this.data === undefined && !this.overflow;
  }

  /** Reads the collected JSON body (json kind); a no-op for streams. */
  end(): void {
    if (this.kind !== 'json' || this.size === 0 || this.size > this.limit) return;
    try {
      this.merge(responseFacts(JSON.parse(Buffer.concat(this.chunks).toString('utf8'))));
    } catch {
      // Not JSON: nothing to learn; the agent got the bytes as they were.
    }
    this.chunks = [];
  }

  private onLine(l: string): void {
    if (l === '') {
      if (this.data !== undefined && !this.overflow) {
        this.facts.events++;
        try {
          this.merge(responseFacts(JSON.parse(this.data)));
        } catch {
          // An event that is not JSON passes through untouched.
        }
      } else if (this.overflow) this.facts.events++;
      this.data = undefined;
      this.overflow = false;
      return;
    }
    if (this.overflow) return;
    if (l.startsWith('data:')) {
      const d = l.charCodeAt(5) === 32 ? l.slice(6) : l.slice(5);
      this.data = this.data === undefined ? d : `${this.data}\n${d}`;
      if (this.data.length > this.limit) {
        this.data = undefined;
        this.overflow = true;
      }
    } else if (this.data === undefined && !l.startsWith(':')) {
      // `event:` / `id:` lines open an event too: until its blank line we are not on a boundary.
      this.data = '';
    }
  }

  private merge(f: ResponseFacts): void {
    this.onFacts?.(f);
    this.facts.taskId ??= f.taskId;
    this.facts.contextId ??= f.contextId;
    if (f.state !== undefined) this.facts.state = f.state;
    if (f.error !== undefined) this.facts.error = f.error;
  }
}
