/** JSON request bodies for the admin API. */
import type { IncomingMessage } from 'node:http';

const ADMIN_BODY_LIMIT = 1024 * 1024;

export class BadBody extends Error {}

/** Reads and parses a JSON object body; an empty body is `{}`. Throws BadBody with a readable reason. */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > ADMIN_BODY_LIMIT) throw new BadBody('the body is over 1 MB');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new BadBody(`the body is not valid JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BadBody('the body must be a JSON object');
  return v as Record<string, unknown>;
}
