/**
 * The bench's fake upstream: a keep-alive node:http server answering every request with the same
 * ~100-byte JSON body. Runs in its own process so it does not share an event loop with the load
 * generator; prints `PORT=<n>` once it listens on 127.0.0.1.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const body = Buffer.from(JSON.stringify({ id: 42, name: 'bench item', tags: ['a', 'b', 'c'], ok: true, note: 'a small JSON reply' }));
const headers = { 'content-type': 'application/json', 'content-length': String(body.length) };

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  // Drain any request body before answering so the connection stays reusable.
  req.resume();
  req.on('end', () => {
    res.writeHead(200, headers);
    res.end(body);
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT=${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
