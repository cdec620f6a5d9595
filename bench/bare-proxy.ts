/**
 * The floor for any Node gateway: a bare pass-through proxy (node:http in, undici Pool out) that
 * pipes method, path, headers and body to the upstream and the response back, and does nothing
 * else. Usage: `node bare-proxy.js <upstream origin> [--pipeline]`; prints `PORT=<n>` once it listens.
 * `--pipeline` relays the response with `stream.pipeline` instead, the idiomatic but (on Node 20)
 * slow way: the bench shows both, to make plain how much the floor itself moves with that choice.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'upgrade', 'te', 'trailer']);
const pool = new Pool(process.argv[2]!, { connections: 256, pipelining: 1 });
const usePipeline = process.argv[3] === '--pipeline';
const strip = (h: Record<string, string | string[] | undefined>) => Object.fromEntries(Object.entries(h).filter(([k, v]) => v !== undefined && !HOP.has(k))) as Record<string, string | string[]>;

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.request({ method: req.method as 'GET', path: req.url ?? '/', headers: strip(req.headers), body: hasBody ? req : null }).then(
    (up) => {
      res.writeHead(up.statusCode, strip(up.headers));
      if (usePipeline) return void pipeline(up.body, res, () => {});
      // pipe() and explicit teardown, not stream.pipeline: on Node 20 pipeline costs ~60 µs per call.
      up.body.on('error', () => res.destroy());
      res.on('close', () => up.body.destroy());
      up.body.pipe(res);
    },
    () => {
      res.writeHead(502).end();
    },
  );
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT=${(server.address() as AddressInfo).port}\n`));
process.on('SIGTERM', () => process.exit(0));
