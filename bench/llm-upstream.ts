/**
 * The LLM bench's other processes. By default, a fake provider: an OpenAI-shaped
 * `POST /v1/chat/completions` on 127.0.0.1:0. Non-streamed: a fixed ~600-byte completion with usage.
 * Streamed: `chunks` events `delay` ms apart (from the request's `user` field,
 * `chunks=20,delay=500`), then the usage chunk when asked for, then `[DONE]`.
 * With `--bare <origin>`: the floor for any Node gateway, a bare pass-through proxy (node:http in,
 * undici Pool out) that does nothing else. Either prints `PORT=<n>` once it listens.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';

const usage = { prompt_tokens: 24, completion_tokens: 12, total_tokens: 36, prompt_tokens_details: { cached_tokens: 0 } };
const completion = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'gpt-4o-mini-2024-07-18',
    choices: [{ index: 0, message: { role: 'assistant', content: 'This is a fixed answer from the benchmark provider, about twelve tokens.', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage,
    system_fingerprint: 'fp_bench',
  }),
);
const head = { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4o-mini-2024-07-18' };
const chunk = (content: string) => Buffer.from(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }] })}\n\n`);
const CHUNK = chunk(' word');
const FIRST = Buffer.from(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] })}\n\n`);
const LAST = Buffer.from(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] })}\n\n`);
const USAGE = Buffer.from(`data: ${JSON.stringify({ ...head, choices: [], usage })}\n\n`);
const DONE = Buffer.from('data: [DONE]\n\n');

function stream(res: ServerResponse, chunks: number, delay: number, withUsage: boolean): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(FIRST);
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i++ < chunks) {
      res.write(CHUNK);
      if (delay > 0) setTimeout(next, delay);
      else setImmediate(next);
      return;
    }
    res.write(LAST);
    if (withUsage) res.write(USAGE);
    res.end(DONE);
  };
  next();
}

function bareProxy(origin: string): void {
  const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'upgrade', 'te', 'trailer']);
  const pool = new Pool(origin, { connections: null, pipelining: 1 });
  const strip = (h: Record<string, string | string[] | undefined>) => Object.fromEntries(Object.entries(h).filter(([k, v]) => v !== undefined && !HOP.has(k))) as Record<string, string | string[]>;
  const proxy = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool.request({ method: req.method as 'POST', path: req.url ?? '/', headers: strip(req.headers), body: hasBody ? req : null }).then(
      (up) => {
        res.writeHead(up.statusCode, strip(up.headers));
        pipeline(up.body, res, () => {});
      },
      () => res.writeHead(502).end(),
    );
  });
  proxy.listen(0, '127.0.0.1', 4096, () => process.stdout.write(`PORT=${(proxy.address() as AddressInfo).port}\n`));
}

const bareAt = process.argv.indexOf('--bare');
if (bareAt !== -1) bareProxy(process.argv[bareAt + 1]!);
else provider();
process.on('SIGTERM', () => process.exit(0));

function provider(): void {
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString()) as { stream?: boolean; user?: string; stream_options?: { include_usage?: boolean } };
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(completion.length) });
        res.end(completion);
        return;
      }
      const cfg = Object.fromEntries((body.user ?? '').split(',').map((kv) => kv.split('=') as [string, string]));
      stream(res, Number(cfg['chunks'] ?? 20), Number(cfg['delay'] ?? 0), body.stream_options?.include_usage === true);
    });
  });
  server.listen(0, '127.0.0.1', 4096, () => process.stdout.write(`PORT=${(server.address() as AddressInfo).port}\n`));
}
