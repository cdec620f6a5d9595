/**
 * Bad input at the `/http/<service>/<path>` front door: oversized bodies, path traversal, header
 * injection, slow clients, request smuggling. Each gets a clear error, nothing reaches the upstream
 * that should not, and the gateway keeps serving. Raw sockets wherever a client would tidy the
 * request up before sending it.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { call, KEYS, startGateway, type Reply, type TestGateway } from './support/gateway.js';

const AUTH_LINE = `Authorization: Bearer ${KEYS.alice}\r\n`;

/** What came back on a raw socket. */
interface RawReply {
  /** Everything received, as latin1. */
  text: string;
  /** The gateway closed the socket (before `ms` ran out). */
  closed: boolean;
  /** How many HTTP responses are in `text`. */
  responses: number;
  status: number | undefined;
  headers: Record<string, string>;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- checked field by field
}

function parseRaw(text: string, closed: boolean): RawReply {
  const responses = (text.match(/(^|\r\n)HTTP\/1\.1 \d{3} /g) ?? []).length;
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
  const headers: Record<string, string> = {};
  const end = text.indexOf('\r\n\r\n');
  for (const line of text.slice(0, end === -1 ? text.length : end).split('\r\n').slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let json: unknown;
  if (end !== -1) {
    const len = Number(headers['content-length'] ?? NaN);
    const body = Number.isNaN(len) ? text.slice(end + 4) : text.slice(end + 4, end + 4 + len);
    try {
      json = JSON.parse(body);
    } catch {
      json = undefined;
    }
  }
  return { text, closed, responses, status: m ? Number(m[1]) : undefined, headers, json };
}

/** Sends `data` on a fresh socket; resolves when the gateway closes it, or after `ms`. */
function raw(agentUrl: string, data: string | Buffer, ms = 3000): Promise<RawReply> {
  const port = Number(new URL(agentUrl).port);
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(parseRaw(text, false));
    }, ms);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(parseRaw(text, true));
    });
    s.write(data);
  });
}

/** Asserts the SPEC section 10 error shape (status, code, request_id equal to the header). */
function assertAirlockError(status: number | undefined, headers: Record<string, unknown>, json: any, wantStatus: number, code: string): void { // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(status, wantStatus, `expected ${wantStatus} ${code}, got ${status}: ${JSON.stringify(json)}`);
  const id = headers['x-airlock-request-id'];
  assert.equal(typeof id, 'string', 'x-airlock-request-id header');
  assert.match(id as string, /^[0-9a-f-]{36}$/);
  assert.ok(json && typeof json === 'object', 'JSON error body');
  assert.deepEqual(Object.keys(json), ['error']);
  assert.equal(json.error.type, 'airlock_error');
  assert.equal(json.error.code, code);
  assert.equal(typeof json.error.message, 'string');
  assert.ok(json.error.message.length > 10);
  assert.equal(json.error.request_id, id);
}
const assertReplyError = (r: Reply, status: number, code: string) => assertAirlockError(r.status, r.headers, r.json, status, code);
const assertRawError = (r: RawReply, status: number, code: string) => assertAirlockError(r.status, r.headers, r.json, status, code);

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

describe('/http bad input', () => {
  let t: TestGateway;
  let upUrl = '';
  let upServer: ReturnType<typeof createServer>;
  /** Requests that reached the upstream (counted on arrival, before any body is read). */
  let arrivals: { method: string; url: string }[] = [];
  let onRequest: (req: IncomingMessage, res: ServerResponse) => void;
  const echo = (req: IncomingMessage, res: ServerResponse) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => res.end(JSON.stringify({ url: req.url, bytes: n })));
    req.on('error', () => {});
  };

  before(async () => {
    upServer = createServer((req, res) => {
      arrivals.push({ method: req.method ?? '', url: req.url ?? '' });
      onRequest(req, res);
    });
    await new Promise<void>((r) => upServer.listen(0, '127.0.0.1', r));
    upUrl = `http://127.0.0.1:${(upServer.address() as AddressInfo).port}`;
    t = await startGateway(`
server: { headersTimeout: 1s }
agents:
  alice: { keys: ["${KEYS.alice}"] }
rules:
  - name: all
    allow: ["http: * */**"]
  - name: no-admin
    deny: ["http: * svc/admin/**"]
http:
  services:
    svc: { url: "${upUrl}/base", maxBodySize: 1kb, timeout: 2s }
    big: { url: "${upUrl}/base", maxBodySize: 1mb, timeout: 5s }
`);
  });
  after(async () => {
    await t.stop();
    upServer.closeAllConnections();
    await new Promise<void>((r) => upServer.close(() => r()));
  });
  beforeEach(() => {
    arrivals = [];
    onRequest = echo;
  });

  /** The gateway still answers a normal call. */
  async function stillServing(): Promise<void> {
    const r = await call(`${t.agentUrl}/http/svc/alive`, { key: KEYS.alice });
    assert.equal(r.status, 200, 'the gateway keeps serving');
    assert.equal(JSON.parse(r.text).url, '/base/alive');
  }

  describe('maxBodySize', () => {
    it('Content-Length over the limit → 413 payload_too_large without contacting the upstream', async () => {
      const r = await call(`${t.agentUrl}/http/svc/upload`, { key: KEYS.alice, method: 'POST', body: Buffer.alloc(2000, 97) });
      assertReplyError(r, 413, 'payload_too_large');
      assert.match(r.json.error.message, /maxBodySize/);
      assert.deepEqual(arrivals, []);
      const rec = await finalRecord(t.adminUrl, r.json.error.request_id);
      assert.equal(rec.code, 'payload_too_large');
      await stillServing();
    });

    it('a body exactly at the limit goes through', async () => {
      const r = await call(`${t.agentUrl}/http/svc/upload`, { key: KEYS.alice, method: 'POST', body: Buffer.alloc(1024, 97) });
      assert.equal(r.status, 200);
      assert.equal(JSON.parse(r.text).bytes, 1024);
    });

    it('a chunked body growing past the limit → 413, and the gateway keeps serving', async () => {
      async function* body() {
        for (let i = 0; i < 10; i++) {
          yield Buffer.alloc(256, 98);
          await sleep(5);
        }
      }
      const res = await request(`${t.agentUrl}/http/svc/upload`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.alice}` }, body: Readable.from(body()) });
      const text = await res.body.text();
      assertAirlockError(res.statusCode, res.headers, JSON.parse(text), 413, 'payload_too_large');
      const rec = await finalRecord(t.adminUrl, String(res.headers['x-airlock-request-id']));
      assert.equal(rec.code, 'payload_too_large');
      await stillServing();
    });

    it('a chunked body growing past the limit after the upstream answered → the connection is cut, and the gateway keeps serving', async () => {
      onRequest = (req, res) => {
        req.on('error', () => {});
        req.resume();
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('early answer;');
      };
      let sawEarly: () => void = () => {};
      const early = new Promise<void>((r) => (sawEarly = r));
      async function* body() {
        yield Buffer.alloc(256, 98);
        await early;
        for (let i = 0; i < 10; i++) {
          yield Buffer.alloc(256, 98);
          await sleep(5);
        }
      }
      const res = await request(`${t.agentUrl}/http/svc/upload`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.alice}` }, body: Readable.from(body()) });
      assert.equal(res.statusCode, 200);
      const id = String(res.headers['x-airlock-request-id']);
      const read = (async () => {
        let text = '';
        for await (const c of res.body) {
          text += (c as Buffer).toString();
          if (text.includes('early answer;')) sawEarly();
        }
        return text;
      })();
      await assert.rejects(read, 'the response must not look complete');
      const rec = await finalRecord(t.adminUrl, id);
      assert.equal(rec.code, 'payload_too_large', `audit says ${rec.code}: ${rec.message}`);
      onRequest = echo;
      await stillServing();
    });

    it('a 50 MB body (Content-Length) gets its clear 413 error', async () => {
      const res = await request(`${t.agentUrl}/http/big/upload`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.alice}` }, body: Buffer.alloc(50 * 1024 * 1024, 99) });
      const text = await res.body.text();
      assertAirlockError(res.statusCode, res.headers, JSON.parse(text), 413, 'payload_too_large');
      assert.deepEqual(arrivals, []);
      await stillServing();
    });

    it('a 50 MB chunked body gets its clear 413 error', async () => {
      async function* body() {
        const chunk = Buffer.alloc(1024 * 1024, 99);
        for (let i = 0; i < 50; i++) yield chunk;
      }
      const res = await request(`${t.agentUrl}/http/big/upload`, { method: 'POST', headers: { authorization: `Bearer ${KEYS.alice}` }, body: Readable.from(body()) });
      const text = await res.body.text();
      assertAirlockError(res.statusCode, res.headers, JSON.parse(text), 413, 'payload_too_large');
      await stillServing();
    });
  });

  describe('path traversal cannot escape the base URL', () => {
    const attempts = [
      '/http/svc/../x',
      '/http/svc/./x',
      '/http/svc/a/../../x',
      '/http/svc/a/..',
      '/http/svc/%2e%2e/x',
      '/http/svc/.%2e/x',
      '/http/svc/%2E%2e%2fx',
      '/http/svc/a/..%2f..%2fx',
      '/http/svc/a/%2e%2e',
      '/http/svc//x',
      '/http/svc/a//b',
      '/http/svc/..\\x',
      '/http/svc/a\\..\\..\\x',
      '/http/svc/..%5cx',
      '/http/svc/%5c..%5cx',
      '/http/svc/x%00',
      '/http/svc/%zz',
      // Servlet containers cut `;params` off a segment: `..;` is `..` to them, `admin;x` is `admin`.
      '/http/svc/a/..;/x',
      '/http/svc/..;x/..;/x',
      '/http/svc/admin;a=b/users',
      // Line and paragraph separators, and other controls: a `**` glob must not be skipped by them.
      '/http/svc/admin/%E2%80%A8',
      '/http/svc/a%E2%80%A9b',
      '/http/svc/a%C2%85b',
      '/http/svc/a%1fb',
    ];
    for (const path of attempts) {
      it(`${path} → 400 bad_request, upstream receives nothing`, async () => {
        const r = await raw(t.agentUrl, `GET ${path} HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Connection: close\r\n\r\n`);
        assertRawError(r, 400, 'bad_request');
        assert.deepEqual(arrivals, []);
      });
    }

    it('dots inside names and in the query string are fine', async () => {
      const r = await raw(t.agentUrl, `GET /http/svc/a..b/.well-known/v1.2?path=../x HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Connection: close\r\n\r\n`);
      assert.equal(r.status, 200);
      assert.deepEqual(arrivals, [{ method: 'GET', url: '/base/a..b/.well-known/v1.2?path=../x' }]);
    });
  });

  describe('rules cannot be side-stepped through the URL', () => {
    it('the denied path itself is denied (control)', async () => {
      const r = await raw(t.agentUrl, `GET /http/svc/admin HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Connection: close\r\n\r\n`);
      assertRawError(r, 403, 'denied');
      assert.deepEqual(arrivals, []);
    });

    // A fragment is never part of a request target (RFC 9112 origin-form), but Node's parser lets it
    // through; forwarded, `/admin#x` is judged as path "admin#x" yet served by most upstreams as /admin.
    for (const path of ['/http/svc/admin#x', '/http/svc/admin#/x', '/http/svc/admin/#', '/http/svc/ok?q=1#frag']) {
      it(`a fragment in the request target (${path}) → 400 bad_request, upstream receives nothing`, async () => {
        const r = await raw(t.agentUrl, `GET ${path} HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Connection: close\r\n\r\n`);
        assertRawError(r, 400, 'bad_request');
        assert.deepEqual(arrivals, []);
      });
    }

    for (const path of ['/http/svc/%61dmin', '/http/svc/admin%2fusers', '/http/svc/admin/', '/http/svc/admin?x=/../ok']) {
      it(`${path} is judged on its decoded path and denied`, async () => {
        const r = await raw(t.agentUrl, `GET ${path} HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Connection: close\r\n\r\n`);
        assertRawError(r, 403, 'denied');
        assert.deepEqual(arrivals, []);
      });
    }

    it('an encoded # (%23) is an ordinary character, forwarded still encoded', async () => {
      const r = await raw(t.agentUrl, `GET /http/svc/tag%23x HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Connection: close\r\n\r\n`);
      assert.equal(r.status, 200);
      assert.deepEqual(arrivals, [{ method: 'GET', url: '/base/tag%23x' }]);
    });
  });

  describe('header injection', () => {
    const injections: [string, string][] = [
      ['a bare CR in a header value', `X-Evil: a\rInjected: yes\r\n`],
      ['a bare LF in a header value', `X-Evil: a\nInjected: yes\r\n`],
      ['a NUL in a header value', `X-Evil: a\0b\r\n`],
      ['a CR in a header name', `X-Ev\ril: a\r\n`],
      ['an obsolete line folding', `X-Evil: a\r\n Injected: yes\r\n`],
    ];
    for (const [what, line] of injections) {
      it(`${what} → 400 from the HTTP parser, socket closed, gateway still serving`, async () => {
        const r = await raw(t.agentUrl, `GET /http/svc/x HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}${line}\r\n`);
        assert.equal(r.status, 400, r.text);
        assert.ok(r.closed, 'the socket was closed');
        assert.equal(r.responses, 1);
        assertRawError(r, 400, 'bad_request');
        assert.deepEqual(arrivals, []);
        await stillServing();
      });
    }

    it('x-airlock-session with non-ASCII → 400 bad_request', async () => {
      const req = Buffer.concat([Buffer.from(`GET /http/svc/x HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Connection: close\r\nx-airlock-session: caf`), Buffer.from('é☃', 'utf8'), Buffer.from('\r\n\r\n')]);
      const r = await raw(t.agentUrl, req);
      assertRawError(r, 400, 'bad_request');
      assert.match(r.json.error.message, /x-airlock-session/);
      assert.deepEqual(arrivals, []);
    });

    it('x-airlock-session too long, or x-airlock-user with a space → 400 bad_request', async () => {
      const long = await call(`${t.agentUrl}/http/svc/x`, { key: KEYS.alice, headers: { 'x-airlock-session': 's'.repeat(201) } });
      assertReplyError(long, 400, 'bad_request');
      const spaced = await call(`${t.agentUrl}/http/svc/x`, { key: KEYS.alice, headers: { 'x-airlock-user': 'bob smith' } });
      assertReplyError(spaced, 400, 'bad_request');
      assert.match(spaced.json.error.message, /x-airlock-user/);
      assert.deepEqual(arrivals, []);
      const ok = await call(`${t.agentUrl}/http/svc/x`, { key: KEYS.alice, headers: { 'x-airlock-session': 's'.repeat(200) } });
      assert.equal(ok.status, 200, 'a 200-character session is fine');
    });
  });

  describe('oversized and unusual requests', () => {
    it('headers over the size limit → 431 with the error shape, gateway still serving', async () => {
      const r = await raw(t.agentUrl, `GET /http/svc/x HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
      assertRawError(r, 431, 'bad_request');
      assert.ok(r.closed);
      assert.deepEqual(arrivals, []);
      await stillServing();
    });

    it('a space or raw UTF-8 in the request target → 400 from the parser', async () => {
      const spaced = await raw(t.agentUrl, `GET /http/svc/a b HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}\r\n`);
      assertRawError(spaced, 400, 'bad_request');
      const utf8 = await raw(t.agentUrl, Buffer.concat([Buffer.from('GET /http/svc/caf'), Buffer.from('é', 'utf8'), Buffer.from(` HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}\r\n`)]));
      assertRawError(utf8, 400, 'bad_request');
      assert.deepEqual(arrivals, []);
    });

    it('Expect: 100-continue works, and the expectation is not forwarded', async () => {
      const port = Number(new URL(t.agentUrl).port);
      const text = await new Promise<string>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        let got = '';
        let sent = false;
        s.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          if (!sent && got.includes('100 Continue')) {
            sent = true;
            s.write('hello');
          }
        });
        s.on('error', () => {});
        s.on('close', () => resolve(got));
        setTimeout(() => s.destroy(), 3000);
        s.write(`POST /http/svc/continue HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Connection: close\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n`);
      });
      assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
      assert.match(text, /"bytes":5/);
      assert.deepEqual(arrivals, [{ method: 'POST', url: '/base/continue' }]);
    });

    it('a 50 MB body from an unknown caller gets a clear 401, not a broken connection', async () => {
      const res = await request(`${t.agentUrl}/http/big/upload`, { method: 'POST', body: Buffer.alloc(50 * 1024 * 1024, 99) });
      const text = await res.body.text();
      assertAirlockError(res.statusCode, res.headers, JSON.parse(text), 401, 'unauthenticated');
      assert.deepEqual(arrivals, []);
    });
  });

  describe('slow clients', () => {
    it('slowloris: headers one byte per 200 ms get closed after headersTimeout, while others are served', async () => {
      const port = Number(new URL(t.agentUrl).port);
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      const closed = new Promise<number>((r) => s.on('close', () => r(performance.now())));
      const t0 = performance.now();
      const req = `GET /http/svc/slow HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}X-Padding: ${'p'.repeat(100)}\r\n\r\n`;
      let i = 0;
      const drip = setInterval(() => {
        if (i < req.length && !s.destroyed) s.write(req[i++]!);
      }, 200);
      // Meanwhile, normal calls keep being answered.
      let served = 0;
      let done = false;
      void closed.then(() => (done = true));
      const limit = performance.now() + 5000;
      while (!done && performance.now() < limit) {
        const r = await call(`${t.agentUrl}/http/svc/meanwhile`, { key: KEYS.alice });
        assert.equal(r.status, 200);
        served++;
        await sleep(100);
      }
      clearInterval(drip);
      assert.ok(done, 'the slow socket was closed');
      const closedAt = await closed;
      s.destroy();
      const took = closedAt - t0;
      assert.ok(took >= 900 && took < 3500, `closed after ${Math.round(took)} ms`);
      assert.ok(i < req.length, 'closed before the headers were complete');
      assert.ok(got === '' || /^HTTP\/1\.1 408 /.test(got), `got: ${got}`);
      assert.ok(served >= 5, `served ${served} calls meanwhile`);
      assert.ok(!arrivals.some((a) => a.url === '/base/slow'));
    });
  });

  describe('request smuggling', () => {
    const smuggled = `GET /http/svc/smuggled HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}\r\n`;
    it('Content-Length and Transfer-Encoding: chunked together → 400, nothing reaches the upstream', async () => {
      const r = await raw(t.agentUrl, `POST /http/svc/x HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`);
      assertRawError(r, 400, 'bad_request');
      assert.ok(r.closed);
      assert.equal(r.responses, 1, 'no second response');
      await sleep(100);
      assert.deepEqual(arrivals, []);
      await stillServing();
    });

    it('two different Content-Length headers → 400, nothing reaches the upstream', async () => {
      const r = await raw(t.agentUrl, `POST /http/svc/x HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Content-Length: 4\r\nContent-Length: ${4 + smuggled.length}\r\n\r\nabcd${smuggled}`);
      assertRawError(r, 400, 'bad_request');
      assert.ok(r.closed);
      assert.equal(r.responses, 1, 'no second response');
      await sleep(100);
      assert.deepEqual(arrivals, []);
      await stillServing();
    });

    it('Transfer-Encoding other than chunked last → 400, nothing reaches the upstream', async () => {
      const r = await raw(t.agentUrl, `POST /http/svc/x HTTP/1.1\r\nHost: x\r\n${AUTH_LINE}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${smuggled}`);
      assert.equal(r.status, 400, r.text);
      assert.ok(r.closed);
      assert.equal(r.responses, 1, 'no second response');
      await sleep(100);
      assert.deepEqual(arrivals, []);
    });
  });
});
