/**
 * `GET /api/events`: a Server-Sent Events feed of exchange records, kill switches and alerts. A
 * subscriber that stops reading is dropped once 1 MB waits for it, so it cannot grow the gateway.
 * `admitted` is asked again at each config reload: a feed whose admin token was removed ends there.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EventBus } from '../events/bus.js';

const MAX_BUFFERED = 1024 * 1024;
const HEARTBEAT_MS = 15_000;

export function serveEvents(bus: EventBus, req: IncomingMessage, res: ServerResponse, admitted: () => boolean): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  res.write(': airlock events\n\n');
  const unsubscribe = bus.subscribe((e) => {
    if (e.type === 'config' && !admitted()) {
      res.end();
      done();
      return;
    }
    if (res.writableLength > MAX_BUFFERED) {
      res.destroy();
      return;
    }
    res.write(`event: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`);
  });
  const beat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
  const done = () => {
    clearInterval(beat);
    unsubscribe();
  };
  req.on('close', done);
  res.on('close', done);
}
