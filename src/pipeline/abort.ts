/**
 * How an exchange is called off (kill switch, shutdown, the agent hanging up, a timeout).
 *
 * Why not an AbortController per exchange: on Node 20 constructing one, and adding and removing
 * its listeners, cost about 7 µs of CPU per call (measured with `npm run bench`), for something
 * most calls never use. This is an EventEmitter, which undici accepts as a request's `signal`
 * (it listens for 'abort' and reads `aborted` and `reason`), and a real AbortSignal is made only
 * when some API asks for `signal`.
 */
import { EventEmitter } from 'node:events';

export class ExchangeAbort extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;
  private controller: AbortController | undefined;

  /** A real AbortSignal that follows this one, for APIs that need one (fetch, timers, SDKs). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
    this.emit('abort');
  }
}
