/** Reading and bounding request bodies. */
import type { IncomingMessage } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { BodyCapture } from '../../audit/bodies.js';
import { scrubbedJson, scrubSecretText } from '../../audit/secrets.js';

/** Bodies up to this size are read before judging (loop-guard identity, retries, excerpts); larger ones stream. */
export const BUFFERED_BODY_LIMIT = 64 * 1024;

/**
 * Reads a whole body up to `limit` bytes. Past the limit it rejects with code `payload_too_large`
 * and discards the rest, so the caller can still answer 413 (with `connection: close`); it rejects
 * with the socket's error when the client goes away.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const onData = (c: Buffer) => {
      n += c.length;
      if (n > limit) {
        req.off('data', onData);
        req.resume();
        reject(Object.assign(new Error('body too large'), { code: 'payload_too_large' }));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('aborted', () => reject(Object.assign(new Error('client aborted'), { code: 'ECONNRESET' })));
  });
}

/**
 * Passes a streamed body through, counting it, and fails it once it passes `limit`. With a
 * `capture` (audit.bodies), each chunk is also handed to it as it passes.
 */
export class BoundedBody extends Transform {
  bytes = 0;
  tooLarge = false;
  constructor(
    private readonly limit: number,
    private readonly capture?: BodyCapture | undefined,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      this.tooLarge = true;
      cb(Object.assign(new Error('request body is over maxBodySize'), { code: 'payload_too_large' }));
      return;
    }
    this.capture?.write(chunk);
    cb(null, chunk);
  }
}

/**
 * A short, printable excerpt of a body for approval summaries; never more than `max` characters.
 * Secrets are left out as in the other front doors' excerpts: a JSON body is shown with the values
 * under secret-looking keys replaced, other text with secret-looking `key=value` pairs and values replaced.
 */
export function bodyExcerpt(body: Buffer, contentType: string | undefined, max = 500): string | undefined {
  if (contentType && !/json|text|xml|form/i.test(contentType)) return `<${body.length} bytes of ${contentType}>`;
  const text = body.toString('utf8');
  if (contentType ? /json/i.test(contentType) : /^\s*[[{]/.test(text)) {
    try {
      return scrubbedJson(JSON.parse(text), max);
    } catch {
      // not JSON after all: shown as text
    }
  }
  const s = scrubSecretText(text.slice(0, max * 4).replace(/[\x00-\x08\x0b-\x1f\x7f]/g, ''));
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
