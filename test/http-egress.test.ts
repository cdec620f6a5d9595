/**
 * End-to-end tests of the `/http/<service>/<path>` front door (SPEC 5.1, 2, 10): streaming both
 * ways, header hygiene, retries, upstream failures, routing and authentication, client hang-ups.
 * A real gateway, real upstream servers on loopback, real HTTP clients (undici or raw sockets).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { call, KEYS, startGateway, type Reply, type TestGateway } from './support/gateway.js';
import { echo, startUpstream, type Upstream } from './support/upstream.js';

const AUTH = { authorization: `Bearer ${KEYS.alice}` };

/** Asserts the SPEC section 10 error shape, with request_id equal to the header. */
function assertAirlockError(r: Reply, status: number, code: string): string {
  assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status}: ${r.text}`);
  assert.match(String(r.headers['content-type']), /^application\/json/);
  const id = r.headers['x-airlock-request-id'];
  assert.equal(typeof id, 'string');
  assert.match(id as string, /^[0-9a-f-]{36}$/);
  assert.ok(r.json && typeof r.json === 'object', `error body is not JSON: ${r.text}`);
  assert.deepEqual(Object.keys(r.json), ['error']);
  const e = r.json.error;
  assert.equal(e.type, 'airlock_error');
  assert.equal(e.code, code);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 10, 'the message says what happened');
  assert.equal(e.request_id, id);
  for (const k of Object.keys(e)) assert.ok(['type', 'code', 'message', 'request_id', 'rule'].includes(k), `unexpected key ${k}`);
  return id as string;
}

/** The final audit record of an exchange (audit writes are batched: poll briefly). */
async function finalRecord(adminUrl: string, id: string): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const deadline = Date.now() + 3000;
  for (;;) {
    const a = await call(`${adminUrl}/api/audit?protocol=http&limit=1000`);
    const rec = a.json.records.find((x: { id: string; phase: string }) => x.id === id && x.phase === 'final');
    if (rec) return rec;
    if (Date.now() > deadline) assert.fail(`no final audit record for ${id}`);
    await sleep(20);
  }
}

/** Waits for `p`, failing with `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms)));
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A port with nothing listening on it. */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A node:http server with a raw handler (called on arrival, before the body is read). */
async function startRawHttp(h: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer(h);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A TCP server that does what `onSocket` says with each connection (misbehaving upstreams). */
async function startTcp(onSocket: (s: net.Socket) => void): Promise<{ url: string; sockets: net.Socket[]; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Sends raw bytes on a new socket; resolves with what came back once the gateway closes it (or after `ms`). */
function raw(agentUrl: string, data: string | Buffer, ms = 3000): Promise<{ text: string; closed: boolean }> {
  const { port } = new URL(agentUrl);
  return new Promise((resolve) => {
    const s = net.connect(Number(port), '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ text, closed: false });
    }, ms);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    s.write(data);
  });
}

describe('/http egress: bodies stream both ways', () => {
  let t: TestGateway;
  let sink: Awaited<ReturnType<typeof startRawHttp>>;
  let onRequest: (req: IncomingMessage, res: ServerResponse) => void = () => {};
  before(async () => {
    sink = await startRawHttp((req, res) => onRequest(req, res));
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: * sink/**"]
http:
  services:
    sink: { url: "${sink.url}/in", timeout: 5s }
`);
  });
  after(async () => {
    await t.stop();
    await sink.close();
  });

  /** Upstream handler: hashes the body it receives and answers with what it saw. */
  const hashingSink = (req: IncomingMessage, res: ServerResponse) => {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    req.on('end', () => {
      const out = JSON.stringify({ sha256: h.digest('hex'), bytes: n, te: req.headers['transfer-encoding'] ?? null, cl: req.headers['content-length'] ?? null, url: req.url });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(out);
    });
  };

  it('a 5 MB chunked upload (no content-length) arrives intact upstream', async () => {
    onRequest = hashingSink;
    const parts = Array.from({ length: 80 }, () => randomBytes(64 * 1024));
    const want = createHash('sha256');
    for (const p of parts) want.update(p);
    async function* body() {
      for (const p of parts) yield p;
    }
    const r = await request(`${t.agentUrl}/http/sink/upload?x=1`, { method: 'POST', headers: { ...AUTH, 'content-type': 'application/octet-stream' }, body: Readable.from(body()) });
    assert.equal(r.statusCode, 200);
    const got = (await r.body.json()) as { sha256: string; bytes: number; te: string | null; cl: string | null; url: string };
    assert.equal(got.bytes, 80 * 64 * 1024);
    assert.equal(got.sha256, want.digest('hex'));
    assert.equal(got.te, 'chunked');
    assert.equal(got.cl, null);
    assert.equal(got.url, '/in/upload?x=1');
  });

  it('a 5 MB upload with content-length arrives intact with its length', async () => {
    onRequest = hashingSink;
    const buf = randomBytes(5 * 1024 * 1024);
    const r = await request(`${t.agentUrl}/http/sink/upload`, { method: 'PUT', headers: AUTH, body: buf });
    assert.equal(r.statusCode, 200);
    const got = (await r.body.json()) as { sha256: string; bytes: number; cl: string | null };
    assert.equal(got.bytes, buf.length);
    assert.equal(got.cl, String(buf.length));
    assert.equal(got.sha256, createHash('sha256').update(buf).digest('hex'));
  });

  it('the upload is streamed: the upstream gets the first part before the agent sends the rest', async () => {
    const firstArrived = deferred();
    onRequest = (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => {
        chunks.push(c);
        firstArrived.resolve();
      });
      req.on('end', () => res.end(Buffer.concat(chunks).toString()));
    };
    async function* body() {
      yield Buffer.from('part-one;');
      // If the gateway buffered the body, the upstream would see nothing until the end: this times out.
      await within(firstArrived.promise, 3000, 'the upstream never saw the first part while the upload was open');
      yield Buffer.from('part-two');
    }
    const r = await request(`${t.agentUrl}/http/sink/stream-up`, { method: 'POST', headers: AUTH, body: Readable.from(body()) });
    assert.equal(r.statusCode, 200);
    assert.equal(await r.body.text(), 'part-one;part-two');
  });

  it('a response streamed in chunks reaches the agent chunk by chunk, before the upstream ends', async () => {
    const acks = [deferred(), deferred(), deferred()];
    let lastSentAt = 0;
    onRequest = (req, res) => {
      req.resume();
      void (async () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        for (let i = 0; i < 3; i++) {
          res.write(`chunk-${i};`);
          // Wait until the agent has this chunk; a buffering gateway never delivers it, and we give up.
          try {
            await within(acks[i]!.promise, 3000, `chunk ${i} never reached the agent`);
          } catch {
            break;
          }
          await sleep(30);
        }
        lastSentAt = performance.now();
        res.end('done');
      })();
    };
    const r = await request(`${t.agentUrl}/http/sink/stream-down`, { headers: AUTH });
    assert.equal(r.statusCode, 200);
    let text = '';
    let firstAt = 0;
    for await (const c of r.body) {
      if (!firstAt) firstAt = performance.now();
      text += (c as Buffer).toString();
      for (let i = 0; i < 3; i++) if (text.includes(`chunk-${i};`)) acks[i]!.resolve();
    }
    assert.equal(text, 'chunk-0;chunk-1;chunk-2;done');
    assert.ok(firstAt > 0 && lastSentAt > 0 && firstAt < lastSentAt, 'the first chunk arrived before the upstream sent the last');
  });
});

describe('/http egress: URLs and headers', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: * api/**", "http: * plain/**"]
http:
  services:
    api: { url: "${up.url}/v2/", headers: { Authorization: "Bearer upstream-secret", X-Org: acme } }
    plain: { url: "${up.url}" }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('keeps the path and query string exactly as sent', async () => {
    const r = await call(`${t.agentUrl}/http/api/items/a%20b/c.d?a=1&a=2&b=%20x&c=&d&e=%2F..%2F`, { key: KEYS.alice });
    assert.equal(r.status, 200);
    assert.equal(up.received.at(-1)!.url, '/v2/items/a%20b/c.d?a=1&a=2&b=%20x&c=&d&e=%2F..%2F');
    const bare = await call(`${t.agentUrl}/http/plain?q=1`, { key: KEYS.alice });
    assert.equal(bare.status, 200);
    assert.equal(up.received.at(-1)!.url, '/?q=1');
  });

  it('does not forward hop-by-hop headers, those named by Connection, Host or Proxy-Authorization', async () => {
    const before = up.received.length;
    const res = await raw(
      t.agentUrl,
      'GET /http/plain/hop HTTP/1.1\r\nHost: evil.example\r\n' +
        `Authorization: Bearer ${KEYS.alice}\r\n` +
        'Connection: keep-alive, X-Hop-Secret, close\r\nX-Hop-Secret: s3cret\r\nKeep-Alive: timeout=99\r\nTE: trailers\r\nUpgrade: websocket\r\n' +
        'Proxy-Authorization: Basic dXNlcjpwYXNz\r\nProxy-Connection: keep-alive\r\nTrailer: x-t\r\nX-Kept: yes\r\n\r\n',
    );
    assert.match(res.text, /^HTTP\/1\.1 200 /);
    assert.equal(up.received.length, before + 1);
    const h = up.received.at(-1)!.headers;
    assert.equal(h['x-kept'], 'yes');
    for (const name of ['x-hop-secret', 'keep-alive', 'te', 'upgrade', 'proxy-authorization', 'proxy-connection', 'trailer', 'authorization']) {
      assert.equal(h[name], undefined, `${name} was forwarded`);
    }
    assert.notEqual(h.host, 'evil.example');
    assert.ok(!String(h.connection ?? '').toLowerCase().includes('x-hop-secret'));
    assert.ok(!JSON.stringify(h).includes('s3cret'));
  });

  it('strips the agent credentials (x-api-key and authorization) and x-airlock-*', async () => {
    const r = await call(`${t.agentUrl}/http/plain/creds`, { headers: { 'x-api-key': KEYS.alice, 'x-airlock-session': 'abc', 'x-airlock-anything': 'z', 'x-airlock-request-id': 'chosen-by-agent' } });
    assert.equal(r.status, 200);
    assert.match(String(r.headers['x-airlock-request-id']), /^[0-9a-f-]{36}$/, 'the agent cannot choose its request id');
    const h = up.received.at(-1)!.headers;
    assert.equal(h['x-airlock-request-id'], undefined);
    assert.equal(h['x-api-key'], undefined);
    assert.equal(h['x-airlock-session'], undefined);
    assert.equal(h['x-airlock-anything'], undefined);
    const r2 = await call(`${t.agentUrl}/http/plain/creds`, { key: KEYS.alice });
    assert.equal(r2.status, 200);
    assert.equal(up.received.at(-1)!.headers.authorization, undefined);
    assert.ok(!JSON.stringify(up.received.slice(-2).map((x) => x.headers)).includes(KEYS.alice));
  });

  it('injects configured headers, overriding an agent-sent header of the same name', async () => {
    const r = await call(`${t.agentUrl}/http/api/x`, { key: KEYS.alice, headers: { 'X-ORG': 'evil-corp', 'x-other': 'mine' } });
    assert.equal(r.status, 200);
    const h = up.received.at(-1)!.headers;
    assert.equal(h['x-org'], 'acme');
    assert.equal(h.authorization, 'Bearer upstream-secret');
    assert.equal(h['x-other'], 'mine');
  });

  it('passes response headers back (multiple set-cookie), minus hop-by-hop, with its own request id', async () => {
    up.handle((_req, res) => {
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; HttpOnly']);
      res.setHeader('x-upstream', 'here');
      res.setHeader('cache-control', 'max-age=60');
      res.setHeader('connection', 'x-internal');
      res.setHeader('x-internal', 'do-not-leak');
      res.setHeader('proxy-authenticate', 'Basic realm="up"');
      res.setHeader('x-airlock-request-id', 'spoofed-by-upstream');
      res.writeHead(201, { 'content-type': 'text/plain' });
      res.end('made');
    });
    try {
      const r = await call(`${t.agentUrl}/http/plain/cookies`, { key: KEYS.alice });
      assert.equal(r.status, 201);
      assert.equal(r.text, 'made');
      assert.deepEqual(r.headers['set-cookie'], ['a=1; Path=/', 'b=2; HttpOnly']);
      assert.equal(r.headers['x-upstream'], 'here');
      assert.equal(r.headers['cache-control'], 'max-age=60');
      assert.equal(r.headers['x-internal'], undefined);
      assert.equal(r.headers['proxy-authenticate'], undefined);
      assert.match(String(r.headers['x-airlock-request-id']), /^[0-9a-f-]{36}$/);
    } finally {
      up.handle(echo);
    }
  });

  it('passes an encoded response body through byte for byte (no decompression)', async () => {
    const gz = gzipSync(Buffer.from('{"hello":"world"}'.repeat(100)));
    up.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': gz.length });
      res.end(gz);
    });
    try {
      const res = await request(`${t.agentUrl}/http/plain/gz`, { headers: AUTH });
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['content-encoding'], 'gzip');
      assert.equal(res.headers['content-length'], String(gz.length));
      assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), gz);
    } finally {
      up.handle(echo);
    }
  });

  it('x-airlock-request-id is on every response: success, gateway error, upstream error', async () => {
    const ok = await call(`${t.agentUrl}/http/plain/ok`, { key: KEYS.alice });
    assert.equal(ok.status, 200);
    assert.match(String(ok.headers['x-airlock-request-id']), /^[0-9a-f-]{36}$/);

    const gwErr = await call(`${t.agentUrl}/http/nosuch/x`, { key: KEYS.alice });
    assertAirlockError(gwErr, 404, 'not_found');

    up.handle((_req, res) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"message":"upstream broke"}');
    });
    try {
      const upErr = await call(`${t.agentUrl}/http/plain/boom`, { key: KEYS.alice });
      assert.equal(upErr.status, 500);
      assert.equal(upErr.text, '{"message":"upstream broke"}', "the upstream's own error body is passed through untouched");
      assert.match(String(upErr.headers['x-airlock-request-id']), /^[0-9a-f-]{36}$/);
      assert.notEqual(upErr.headers['x-airlock-request-id'], ok.headers['x-airlock-request-id']);
    } finally {
      up.handle(echo);
    }
  });
});

describe('/http egress: retries', () => {
  let t: TestGateway;
  let flaky: Awaited<ReturnType<typeof startRawHttp>>;
  let hits: { method: string; url: string; body: string }[] = [];
  let answer: (n: number, req: IncomingMessage, res: ServerResponse, body: string) => void = (_n, _req, res) => res.end('ok');
  let downPort = 0;
  let refusedPort = 0;
  before(async () => {
    flaky = await startRawHttp((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        hits.push({ method: req.method ?? '', url: req.url ?? '', body });
        answer(hits.length, req, res, body);
      });
    });
    downPort = await freePort();
    refusedPort = await freePort();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: * */**"]
http:
  services:
    flaky: { url: "${flaky.url}", retries: 2, timeout: 3s }
    once: { url: "${flaky.url}", retries: 0 }
    down: { url: "http://127.0.0.1:${downPort}", retries: 2 }
    down0: { url: "http://127.0.0.1:${downPort}", retries: 0 }
    later: { url: "http://127.0.0.1:${refusedPort}", retries: 6 }
`);
  });
  after(async () => {
    await t.stop();
    await flaky.close();
  });
  const reset = (a: typeof answer) => {
    hits = [];
    answer = a;
  };
  const unavailableUntil = (okAt: number, extra: Record<string, string> = {}) =>
    reset((n, _req, res, body) => {
      if (n < okAt) {
        res.writeHead(503, { 'content-type': 'text/plain', ...extra });
        res.end('busy');
      } else {
        res.end(`ok after ${n}: ${body}`);
      }
    });

  it('retries a GET on 503 and then succeeds; the audit counts the attempts', async () => {
    unavailableUntil(3);
    const r = await call(`${t.agentUrl}/http/flaky/thing?v=1`, { key: KEYS.alice });
    assert.equal(r.status, 200);
    assert.equal(r.text, 'ok after 3: ');
    assert.equal(hits.length, 3);
    assert.ok(hits.every((h) => h.url === '/thing?v=1'));
    const rec = await finalRecord(t.adminUrl, String(r.headers['x-airlock-request-id']));
    assert.equal(rec.status, 200);
    assert.equal(rec.details?.attempts, 3);
  });

  it('gives up after `retries` and passes the last 503 through', async () => {
    unavailableUntil(100);
    const r = await call(`${t.agentUrl}/http/flaky/thing`, { key: KEYS.alice });
    assert.equal(r.status, 503);
    assert.equal(r.text, 'busy');
    assert.equal(hits.length, 3);
  });

  it('retries a PUT with a small body, sending the same body each time', async () => {
    unavailableUntil(2);
    const r = await call(`${t.agentUrl}/http/flaky/doc`, { key: KEYS.alice, method: 'PUT', body: '{"v":42}', headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200);
    assert.equal(r.text, 'ok after 2: {"v":42}');
    assert.deepEqual(
      hits.map((h) => h.body),
      ['{"v":42}', '{"v":42}'],
    );
  });

  it('never retries a POST', async () => {
    unavailableUntil(2);
    const r = await call(`${t.agentUrl}/http/flaky/create`, { key: KEYS.alice, method: 'POST', body: 'x' });
    assert.equal(r.status, 503);
    assert.equal(hits.length, 1);
    assert.equal(hits[0]!.method, 'POST');
  });

  it('retries = 0 means exactly one attempt', async () => {
    unavailableUntil(2);
    const r = await call(`${t.agentUrl}/http/once/thing`, { key: KEYS.alice });
    assert.equal(r.status, 503);
    assert.equal(hits.length, 1);
    const t0 = performance.now();
    const d = await call(`${t.agentUrl}/http/down0/thing`, { key: KEYS.alice });
    assertAirlockError(d, 502, 'upstream_error');
    const rec = await finalRecord(t.adminUrl, String(d.headers['x-airlock-request-id']));
    assert.equal(rec.details?.attempts, undefined);
    assert.ok(performance.now() - t0 < 1000);
  });

  it('retries a GET on connection refused, with backoff, then reports 502', async () => {
    const t0 = performance.now();
    const r = await call(`${t.agentUrl}/http/down/thing`, { key: KEYS.alice });
    const took = performance.now() - t0;
    const id = assertAirlockError(r, 502, 'upstream_error');
    assert.ok(took >= 140, `two backoffs (>= 50 + 100 ms) were waited, took ${took}ms`);
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.code, 'upstream_error');
    assert.equal(rec.details?.attempts, 3);
  });

  it('never retries a POST on connection refused either', async () => {
    const r = await call(`${t.agentUrl}/http/down/create`, { key: KEYS.alice, method: 'POST', body: 'x' });
    const id = assertAirlockError(r, 502, 'upstream_error');
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.details?.attempts, undefined, 'one attempt');
  });

  it('a GET whose upstream comes up during the retries succeeds', async () => {
    const pending = call(`${t.agentUrl}/http/later/thing`, { key: KEYS.alice });
    // Wait until the decision record is written: the first attempt (refused) follows at once.
    const deadline = Date.now() + 3000;
    for (;;) {
      const a = await call(`${t.adminUrl}/api/audit?protocol=http&limit=20`);
      if (a.json.records.some((x: { phase: string; action?: string }) => x.phase === 'decision' && x.action === 'http: GET later/thing')) break;
      if (Date.now() > deadline) assert.fail('no decision record for the call');
      await sleep(5);
    }
    await sleep(30);
    const late = createServer((_req, res) => res.end('finally up'));
    await new Promise<void>((r, j) => {
      late.once('error', j);
      late.listen(refusedPort, '127.0.0.1', () => r());
    });
    try {
      const r = await pending;
      assert.equal(r.status, 200);
      assert.equal(r.text, 'finally up');
      const rec = await finalRecord(t.adminUrl, String(r.headers['x-airlock-request-id']));
      assert.ok(rec.details?.attempts >= 2, `attempts: ${rec.details?.attempts}`);
    } finally {
      late.closeAllConnections();
      await new Promise<void>((r) => late.close(() => r()));
    }
  });

  it('honours Retry-After: 1 (waits about a second)', async () => {
    unavailableUntil(2, { 'retry-after': '1' });
    const t0 = performance.now();
    const r = await call(`${t.agentUrl}/http/flaky/slowly`, { key: KEYS.alice });
    const took = performance.now() - t0;
    assert.equal(r.status, 200);
    assert.equal(hits.length, 2);
    assert.ok(took >= 950 && took < 2500, `took ${took}ms`);
  });

  it('passes a Retry-After over the cap (60) to the agent without waiting', async () => {
    unavailableUntil(2, { 'retry-after': '60' });
    const t0 = performance.now();
    const r = await call(`${t.agentUrl}/http/flaky/later`, { key: KEYS.alice });
    const took = performance.now() - t0;
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '60');
    assert.equal(hits.length, 1);
    assert.ok(took < 900, `took ${took}ms`);
  });
});

describe('/http egress: upstream failures', () => {
  let t: TestGateway;
  let silent: Awaited<ReturnType<typeof startTcp>>;
  let resetter: Awaited<ReturnType<typeof startTcp>>;
  let stall: Awaited<ReturnType<typeof startTcp>>;
  let downPort = 0;
  before(async () => {
    downPort = await freePort();
    // Accepts, reads, never answers.
    silent = await startTcp((s) => s.resume());
    // Starts a chunked 200 response, then resets the connection.
    resetter = await startTcp((s) => {
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n6\r\npartia\r\n', () => {
          setTimeout(() => s.resetAndDestroy(), 50);
        });
      });
    });
    // Sends headers and one chunk, then goes quiet.
    stall = await startTcp((s) => {
      s.once('data', () => s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n'));
    });
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: * */**"]
http:
  services:
    down: { url: "http://127.0.0.1:${downPort}" }
    silent: { url: "${silent.url}", timeout: 300ms, retries: 2 }
    resetter: { url: "${resetter.url}" }
    stall: { url: "${stall.url}", timeout: 300ms }
`);
  });
  after(async () => {
    await t.stop();
    await Promise.all([silent.close(), resetter.close(), stall.close()]);
  });

  it('nothing listening → 502 upstream_error, audited', async () => {
    const r = await call(`${t.agentUrl}/http/down/x`, { key: KEYS.alice });
    const id = assertAirlockError(r, 502, 'upstream_error');
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.code, 'upstream_error');
    assert.equal(rec.status, 502);
  });

  it('an upstream that accepts but never answers → 504 upstream_timeout within about the timeout', async () => {
    const t0 = performance.now();
    const r = await call(`${t.agentUrl}/http/silent/x`, { key: KEYS.alice });
    const took = performance.now() - t0;
    const id = assertAirlockError(r, 504, 'upstream_timeout');
    // undici checks its timeouts on a ~500 ms tick, so a 300 ms timeout fires within about 0.3–1 s.
    assert.ok(took >= 280 && took < 2000, `took ${took}ms`);
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.code, 'upstream_timeout');
  });

  it('an upstream that resets mid-response → the agent sees a cut response; audit says upstream_error', async () => {
    const res = await request(`${t.agentUrl}/http/resetter/x`, { headers: AUTH });
    assert.equal(res.statusCode, 200);
    const id = String(res.headers['x-airlock-request-id']);
    await assert.rejects(res.body.text(), 'the body must not look complete');
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.code, 'upstream_error');
  });

  it('an upstream that stalls mid-body is cut after the timeout instead of hanging the agent', async () => {
    const t0 = performance.now();
    const res = await request(`${t.agentUrl}/http/stall/x`, { headers: AUTH });
    assert.equal(res.statusCode, 200);
    const id = String(res.headers['x-airlock-request-id']);
    await assert.rejects(within(res.body.text(), 3000, 'agent left hanging'), (e: Error) => !/timed out after/.test(e.message));
    assert.ok(performance.now() - t0 < 2500);
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.code, 'upstream_timeout');
  });
});

describe('/http egress: routing and authentication', () => {
  let up: Upstream;
  let t: TestGateway;
  before(async () => {
    up = await startUpstream();
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: * */**"]
http:
  services:
    api: { url: "${up.url}" }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  it('unknown service → 404 not_found', async () => {
    assertAirlockError(await call(`${t.agentUrl}/http/nosuch/x`, { key: KEYS.alice }), 404, 'not_found');
  });

  it('unknown route → 404 not_found', async () => {
    assertAirlockError(await call(`${t.agentUrl}/nope`, { key: KEYS.alice }), 404, 'not_found');
    assertAirlockError(await call(`${t.agentUrl}/httpx/api/x`, { key: KEYS.alice }), 404, 'not_found');
  });

  it('missing key → 401 unauthenticated', async () => {
    assertAirlockError(await call(`${t.agentUrl}/http/api/x`), 401, 'unauthenticated');
    assertAirlockError(await call(`${t.agentUrl}/http/api/x`, { headers: { authorization: 'Basic YWxpY2U6cGFzcw==' } }), 401, 'unauthenticated');
  });

  it('unknown key → 401 unauthenticated, via Authorization or x-api-key', async () => {
    assertAirlockError(await call(`${t.agentUrl}/http/api/x`, { key: 'alk_unknownUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU' }), 401, 'unauthenticated');
    assertAirlockError(await call(`${t.agentUrl}/http/api/x`, { headers: { 'x-api-key': 'alk_unknownUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU' } }), 401, 'unauthenticated');
  });

  it('401 comes before 404: unknown callers learn nothing about routes or services', async () => {
    const before = up.received.length;
    for (const path of ['/http/nosuch/x', '/nope', '/http/api/x']) {
      const noKey = await call(`${t.agentUrl}${path}`);
      const badKey = await call(`${t.agentUrl}${path}`, { key: 'alk_unknownUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU' });
      assertAirlockError(noKey, 401, 'unauthenticated');
      assertAirlockError(badKey, 401, 'unauthenticated');
    }
    assert.equal(up.received.length, before, 'nothing reached the upstream');
  });
});

describe('/http egress: the agent hangs up', () => {
  let t: TestGateway;
  let onRequest: (req: IncomingMessage, res: ServerResponse) => void = () => {};
  let up: Awaited<ReturnType<typeof startRawHttp>>;
  before(async () => {
    up = await startRawHttp((req, res) => onRequest(req, res));
    t = await startGateway(`
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: * */**"]
http:
  services:
    up: { url: "${up.url}", timeout: 10s }
`);
  });
  after(async () => {
    await t.stop();
    await up.close();
  });

  /** Opens a raw GET on a new socket. */
  function openRaw(path: string): net.Socket {
    const s = net.connect(Number(new URL(t.agentUrl).port), '127.0.0.1');
    s.on('error', () => {});
    s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEYS.alice}\r\n\r\n`);
    return s;
  }

  it('mid-response: the upstream request is aborted and the audit has a final record', async () => {
    const upstreamClosed = deferred<boolean>();
    onRequest = (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first-chunk');
      const timer = setInterval(() => res.write('.'), 100);
      res.on('close', () => {
        clearInterval(timer);
        upstreamClosed.resolve(res.writableEnded);
      });
    };
    const s = openRaw('/http/up/forever');
    let text = '';
    await within(
      new Promise<void>((r) =>
        s.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.includes('first-chunk')) r();
        }),
      ),
      3000,
      'first chunk',
    );
    const id = /x-airlock-request-id: ([0-9a-f-]{36})/i.exec(text)?.[1];
    assert.ok(id, 'request id header present');
    s.destroy();
    const ended = await within(upstreamClosed.promise, 2000, 'the upstream never saw the call cancelled');
    assert.equal(ended, false, 'the upstream response was cut, not completed');
    const rec = await finalRecord(t.adminUrl, id);
    assert.equal(rec.status, 200);
    assert.ok(rec.bytesOut >= 'first-chunk'.length);
  });

  it('before the response: the upstream request is aborted at once, not at the timeout', async () => {
    const arrived = deferred();
    const upstreamClosed = deferred();
    onRequest = (req, res) => {
      req.resume();
      arrived.resolve();
      res.on('close', () => upstreamClosed.resolve());
    };
    const s = openRaw('/http/up/never');
    await within(arrived.promise, 3000, 'the call reached the upstream');
    const t0 = performance.now();
    s.destroy();
    await within(upstreamClosed.promise, 2000, 'the upstream never saw the call cancelled');
    assert.ok(performance.now() - t0 < 2000);
    // The exchange is closed in the audit too.
    const deadline = Date.now() + 3000;
    for (;;) {
      const a = await call(`${t.adminUrl}/api/audit?protocol=http&limit=20`);
      const rec = a.json.records.find((x: { phase: string; action?: string }) => x.phase === 'final' && x.action === 'http: GET up/never');
      if (rec) break;
      if (Date.now() > deadline) assert.fail('no final record for the abandoned call');
      await sleep(20);
    }
  });
});
