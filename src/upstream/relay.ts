/**
 * Relays an upstream response body to the agent: `stream.pipeline(src, res, done)` for the one
 * case the doors need, one readable into one ServerResponse, with plain listeners.
 *
 * Why not `stream.pipeline`: on Node 20 every call creates an AbortController and aborts it when
 * the streams finish, which constructs a DOMException with a captured stack. `npm run bench`
 * measured that at about 60 µs of CPU per response (a bare proxy went from 115 to 52 µs per request
 * and doubled its throughput by dropping it), more than everything else a proxy does.
 *
 * Same contract as pipeline: `done()` once, on the next tick, after the response has finished;
 * `done(err)` once if either side fails or closes early (ERR_STREAM_PREMATURE_CLOSE), after both
 * streams have been destroyed (destroying the upstream body cancels the upstream request).
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';

export function relay(src: Readable, dst: ServerResponse, done: (err: NodeJS.ErrnoException | undefined) => void): void {
  let settled = false;
  const settle = (err?: NodeJS.ErrnoException) => {
    if (settled) return;
    settled = true;
    if (err) {
      src.destroy();
      dst.destroy();
    }
    process.nextTick(done, err);
  };
  const premature = () => Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  src.on('error', settle);
  src.on('close', () => {
    if (!src.readableEnded) settle(premature());
  });
  dst.on('error', settle);
  dst.on('finish', () => settle());
  dst.on('close', () => {
    if (!dst.writableFinished) settle(premature());
  });
  src.pipe(dst);
}

/**
 * Drops an upstream body that will not be read. undici's body emits an error when destroyed before
 * its end, and an 'error' event nobody listens for takes the whole process down.
 */
export function discard(body: Readable): void {
  body.on('error', () => {});
  body.destroy();
}
