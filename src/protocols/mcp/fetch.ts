/**
 * The `fetch` the SDK's Streamable HTTP client transport uses to reach MCP servers: undici's
 * `request` over one shared keep-alive Agent, answered as a standard `Response`. The global `fetch`
 * costs hundreds of microseconds per call (see ARCHITECTURE.md, "Performance habits"); this is the
 * upstream leg of every tools/call.
 *
 * It does what the transport asks of a fetch and no more: redirects are not followed (the SDK
 * follows them itself, within the origin, with `redirect: "manual"`), JSON and other bodies are read
 * whole, `text/event-stream` bodies are streamed, gzip/deflate/br bodies are decoded, and the
 * request's signal aborts the request and a body still being read. Anything it was not built for
 * (a streamed request body, a Request object) goes to the global `fetch`.
 */
import { readBounded } from '../../upstream/read.js';
import { discard } from '../../upstream/relay.js';
import { STATUS_CODES } from 'node:http';
import { Readable } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { Agent, type Dispatcher } from 'undici';

let shared: Agent | undefined;

/** The keep-alive Agent shared by every MCP upstream connection (the SDK's fetch and the direct tools/call). */
export function sharedAgent(): Agent {
  shared ??= new Agent({ connections: 256, pipelining: 1, keepAliveTimeout: 10_000, keepAliveMaxTimeout: 60_000, connect: { timeout: 10_000 } });
  return shared;
}

const NULL_BODY = new Set([101, 103, 204, 205, 304]);

function plainHeaders(h: HeadersInit | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (h === undefined) return out;
  if (h instanceof Headers || Array.isArray(h)) {
    for (const [k, v] of h as Iterable<[string, string]>) out[k.toLowerCase()] = v;
    return out;
  }
  for (const k of Object.keys(h)) {
    const v = (h as Record<string, string | undefined>)[k];
    if (v !== undefined) out[k.toLowerCase()] = String(v);
  }
  return out;
}

/** The body, decompressed when it came gzip, deflate or br encoded. */
export function decoded(body: Readable, encoding: string | undefined): Readable {
  const e = encoding?.trim().toLowerCase();
  if (!e || e === 'identity') return body;
  const z = e === 'gzip' || e === 'x-gzip' ? createGunzip() : e === 'deflate' ? createInflate() : e === 'br' ? createBrotliDecompress() : undefined;
  if (!z) return body;
  body.on('error', (err) => z.destroy(err));
  // Whoever drops the decoded stream drops the undici body under it too: otherwise the connection
  // stays busy (for a server that keeps the stream open, for good).
  z.once('close', () => {
    if (!body.readableEnded) discard(body);
  });
  return body.pipe(z);
}

/** A fetch-compatible function over undici `request` (the shared Agent unless one is given). */
export function undiciFetch(dispatcher?: Dispatcher): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = init?.body;
    if (input instanceof Request || (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array))) return fetch(input, init);
    const signal = init?.signal ?? undefined;
    if (signal?.aborted) throw signal.reason;
    const method = (init?.method ?? 'GET').toUpperCase();
    const headers = plainHeaders(init?.headers);
    if (typeof body === 'string' && headers['content-type'] === undefined) headers['content-type'] = 'text/plain;charset=UTF-8';
    let r: Dispatcher.ResponseData;
    try {
      r = await (dispatcher ?? sharedAgent()).request({ ...target(input), method: method as Dispatcher.HttpMethod, headers, body: (body ?? null) as string | Uint8Array | null, signal });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new TypeError('fetch failed', { cause: e });
    }
    const h = new Headers();
    for (const [k, v] of Object.entries(r.headers)) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) h.append(k, x);
      else h.append(k, v);
    }
    const statusInit = { status: r.statusCode, statusText: STATUS_CODES[r.statusCode] ?? '', headers: h };
    if (method === 'HEAD' || NULL_BODY.has(r.statusCode)) {
      r.body.resume();
      return new Response(null, statusInit);
    }
    const enc = h.get('content-encoding') ?? undefined;
    const stream = decoded(r.body, enc);
    if (enc) {
      h.delete('content-encoding');
      h.delete('content-length');
    }
    const type = h.get('content-type') ?? '';
    if (type.split(';', 1)[0]!.trim().toLowerCase() === 'text/event-stream') {
      return new Response(Readable.toWeb(stream) as unknown as ReadableStream<Uint8Array>, statusInit);
    }
    let buf: Buffer;
    try {
      buf = await readBounded(stream, Infinity);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new TypeError('fetch failed', { cause: e });
    }
    return new Response(buf as unknown as BodyInit, statusInit);
  }) as typeof fetch;
}

let lastUrl = '';
let lastTarget = { origin: '', path: '' };

/** Origin and path of the URL (the transport asks for the same one on every call). */
function target(input: string | URL): { origin: string; path: string } {
  const s = typeof input === 'string' ? input : input.href;
  if (s !== lastUrl) {
    const u = new URL(s);
    lastTarget = { origin: u.origin, path: `${u.pathname}${u.search}` };
    lastUrl = s;
  }
  return lastTarget;
}
